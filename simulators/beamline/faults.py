"""Faults at the simulated beamline, chosen per run: lost frames, a stalled stage, beam losses.

A :class:`BeamlineFaults` is the description, parsed from the command line's form
(:meth:`BeamlineFaults.parse`, the same comma-separated ``kind=value`` items as
:meth:`insitu.simulators.faults.WireFaults.parse`), e.g. ``"lose_frame=12,beam_loss=40:5"``:

``lose_frame=N``
    The camera's N-th frame is lost on its way from the detector; the camera exposes it again
    (at most twice, each retake counted in the scan's file), then gives up with
    :class:`~insitu.simulators.beamline.devices.FrameLostError`. Repeat the item for more
    frames (three in a row lose one frame for good).
``stall=N``
    The rotation stage's N-th move stalls half way (a motor following error): the scan ends
    with :class:`~insitu.simulators.beamline.devices.StageStalledError` as its reason.
``beam_loss=N[:S]``
    The beam is dumped as the camera's N-th frame is read out, and comes back after ``S``
    simulated seconds (without ``:S`` it never does). A scan's beam-loss suspender then
    suspends the scan and resumes it when the beam is back. Repeat for more losses.

Frames are the camera's exposures (darks and flats included, a lost frame and its retake
counting as two) and moves the stage's moves, both counted from the moment the faults are
applied, i.e. from the bench's opening: over one scan for ``insitu tomo-scan``, over the
whole experiment for ``insitu experiment run``.

Why frames and not simulated time: the simulation clock runs at ``speedup`` times real time,
so the simulated time at which a given frame is taken depends on how long the software
itself took in real time (machine load, the catalog, the analysis), and a fault keyed on
time would land on a different frame, or between two scans, from one run to the next. A
frame count lands at the same place whatever the speed-up and the load, so the same faults
give the same run.

:meth:`BeamlineFaults.apply` applies the faults to an in-process
:class:`~insitu.simulators.beamline.devices.SimTomoBench` through the devices' own hooks
(``SimTomoCamera.lose_frames``, ``SimRotationStage.stall_at_move``,
``SimRingCurrent.beam_dump``) and returns a :class:`BeamlineFaultInjector` that counts what
was done. :meth:`BeamlineFaults.apply_beam_losses` does the part any beamline with a
beam-dump command can do (the IOC's ``BeamDump`` PV); :meth:`BeamlineFaults.check_flavour`
refuses, before anything opens, what a flavour cannot do.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import SimulatorInputError

if TYPE_CHECKING:  # the devices import ophyd: a description need not
    from .devices import SimTomoBench

__all__ = ["BeamLoss", "BeamlineFaultInjector", "BeamlineFaults"]

#: The kinds of item :meth:`BeamlineFaults.parse` reads.
BEAMLINE_KINDS = ("lose_frame", "stall", "beam_loss")
_EXAMPLE = "e.g. lose_frame=12,stall=3,beam_loss=40:5"


@dataclass(frozen=True)
class BeamLoss:
    """One beam dump: at a frame, for a while (``None``: the beam never comes back).

    Parameters
    ----------
    at_frame : int
        The beam goes as the camera's ``at_frame``-th frame is read out (1-based).
    outage_s : float, optional
        Simulated seconds without beam; ``None``: until the end of the run.
    """

    at_frame: int
    outage_s: float | None = None

    def __str__(self) -> str:
        return f"beam_loss={self.at_frame}" + (
            "" if self.outage_s is None else f":{self.outage_s:g}"
        )


@dataclass(frozen=True)
class BeamlineFaults:
    """What goes wrong at the beamline, counted in frames and moves (see the module).

    Parameters
    ----------
    lose_frames : tuple of int
        Frames (1-based, counted since the faults were applied) lost by the camera.
    stall_at_move : int, optional
        The stage move (1-based) that stalls half way.
    beam_losses : tuple of BeamLoss
        Beam dumps, by the frame they happen at.
    """

    lose_frames: tuple[int, ...] = ()
    stall_at_move: int | None = None
    beam_losses: tuple[BeamLoss, ...] = ()

    def __post_init__(self) -> None:
        if any(n < 1 for n in self.lose_frames):
            raise SimulatorInputError("lose_frame counts frames from 1: give numbers ≥ 1")
        if self.stall_at_move is not None and self.stall_at_move < 1:
            raise SimulatorInputError("stall counts stage moves from 1: give a number ≥ 1")
        for loss in self.beam_losses:
            if loss.at_frame < 1:
                raise SimulatorInputError("beam_loss counts frames from 1: give a number ≥ 1")
            if loss.outage_s is not None and not loss.outage_s > 0:
                raise SimulatorInputError(
                    f"{loss}: the outage must be positive simulated seconds (leave out ':S' "
                    "for a beam that never comes back)"
                )

    @property
    def any(self) -> bool:
        """Whether any fault can happen."""
        return bool(self.lose_frames or self.stall_at_move is not None or self.beam_losses)

    def __str__(self) -> str:
        items = [f"lose_frame={n}" for n in self.lose_frames]
        if self.stall_at_move is not None:
            items.append(f"stall={self.stall_at_move}")
        items += [str(loss) for loss in self.beam_losses]
        return ",".join(items)

    @classmethod
    def parse(cls, text: str) -> BeamlineFaults:
        """Read the command line's form: comma-separated ``kind=value`` items.

        ``lose_frame=N`` (repeat for more frames), ``stall=N`` (once), ``beam_loss=N[:S]``
        (repeat for more losses); see the module for what each does.

        Raises
        ------
        SimulatorInputError
            An unknown kind, a value that is not a whole number (or, after ``:``, a number of
            seconds), or a second ``stall``; the message names the item and the valid kinds.
        """
        lost: list[int] = []
        stalls: list[int] = []
        losses: list[BeamLoss] = []
        for raw in filter(None, (item.strip() for item in text.split(","))):
            kind, sep, value = raw.partition("=")
            kind = kind.strip().lower()
            if not sep or kind not in BEAMLINE_KINDS:
                raise SimulatorInputError(
                    f"beamline fault {raw!r}: give kind=value with kind one of "
                    f"{', '.join(BEAMLINE_KINDS)} ({_EXAMPLE})"
                )
            if kind == "beam_loss":
                losses.append(_beam_loss(raw, value))
            else:
                (lost if kind == "lose_frame" else stalls).append(_whole(raw, value))
        if len(stalls) > 1:
            raise SimulatorInputError(
                f"beamline fault stall given {len(stalls)} times: a stalled stage ends the "
                "scan, so give one stall=N"
            )
        return cls(
            lose_frames=tuple(sorted(set(lost))),
            stall_at_move=stalls[0] if stalls else None,
            beam_losses=tuple(sorted(losses, key=lambda loss: loss.at_frame)),
        )

    # --- where they can be applied ----------------------------------------------------------
    def check_flavour(self, flavour: str) -> None:
        """Refuse what a simulated beamline flavour cannot do.

        Parameters
        ----------
        flavour : {"sim", "sim-epics"}
            In-process devices do everything; the EPICS flavour (a caproto IOC in another
            process) can only lose the beam (its ``BeamDump`` PV): it has no PV that loses a
            frame or stalls the stage.

        Raises
        ------
        SimulatorInputError
            Naming the items the flavour cannot do and what to use instead.
        """
        if flavour != "sim-epics":
            return
        unsupported = [f"lose_frame={n}" for n in self.lose_frames]
        if self.stall_at_move is not None:
            unsupported.append(f"stall={self.stall_at_move}")
        if unsupported:
            raise SimulatorInputError(
                f"beamline faults {','.join(unsupported)}: the EPICS flavour of the simulated "
                "beamline (sim-epics) can only lose the beam (beam_loss=N[:S], through its "
                "BeamDump PV); its IOC has no PV that loses a frame or stalls the stage: use "
                "the in-process beamline (tomography: sim) for those"
            )

    def apply(self, bench: SimTomoBench) -> BeamlineFaultInjector:
        """Apply every fault to an in-process simulated beamline, counted from now.

        Parameters
        ----------
        bench : SimTomoBench
            Its camera loses the frames, its stage stalls, its ring current is dumped.

        Returns
        -------
        BeamlineFaultInjector
            What was done, counted as it happens (``injected``); ``detach()`` stops the beam
            losses that have not happened yet.
        """
        camera, stage = bench.camera, bench.stage
        injector = BeamlineFaultInjector(
            self,
            frame_counter=camera.frame_counter,
            ring_current=bench.ring_current,
            dump=bench.ring_current.beam_dump,
            camera=camera,
            stage=stage,
        )
        # Offsets: "the N-th frame (move) from now", whatever the devices did before.
        camera.lose_frames |= {camera.exposures + n for n in self.lose_frames}
        if self.stall_at_move is not None:
            stage.stall_at_move = stage.moves_started + self.stall_at_move
        return injector

    def apply_beam_losses(
        self,
        *,
        frame_counter: Any,
        ring_current: Any,
        dump: Callable[[float | None], Any],
    ) -> BeamlineFaultInjector:
        """Apply the beam losses to any beamline that can dump its beam on command.

        Parameters
        ----------
        frame_counter : ophyd signal
            The camera's frame counter (frames read out); watched for the losses' frames.
        ring_current : ophyd signal
            The ring current, watched to count the beam coming back.
        dump : callable
            ``dump(outage_s)`` loses the beam (``None``: until restored), e.g. the EPICS
            flavour's ``BeamDump`` PV.

        Raises
        ------
        SimulatorInputError
            If frames are to be lost or the stage to stall: this path cannot do that.
        """
        self.check_flavour("sim-epics")
        return BeamlineFaultInjector(
            self,
            frame_counter=frame_counter,
            ring_current=ring_current,
            dump=dump,
            dump_in_thread=True,
        )


def _whole(raw: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise SimulatorInputError(
            f"beamline fault {raw!r}: {value!r} is not a whole number ({_EXAMPLE})"
        ) from None


def _beam_loss(raw: str, value: str) -> BeamLoss:
    frame, sep, seconds = value.partition(":")
    at = _whole(raw, frame)
    if not sep:
        return BeamLoss(at)
    try:
        outage = float(seconds)
    except ValueError:
        raise SimulatorInputError(
            f"beamline fault {raw!r}: {seconds!r} is not a number of seconds "
            "(beam_loss=FRAME:SECONDS, or beam_loss=FRAME for a beam that never comes back)"
        ) from None
    return BeamLoss(at, outage)


class BeamlineFaultInjector:
    """What :class:`BeamlineFaults` does to a beamline, counted as it happens.

    Made by :meth:`BeamlineFaults.apply` (in-process devices) or
    :meth:`BeamlineFaults.apply_beam_losses`; it watches the camera's frame counter and dumps
    the beam at the frames asked for.

    Attributes
    ----------
    faults : BeamlineFaults
        What was asked for.
    """

    def __init__(
        self,
        faults: BeamlineFaults,
        *,
        frame_counter: Any,
        ring_current: Any,
        dump: Callable[[float | None], Any],
        camera: Any = None,
        stage: Any = None,
        dump_in_thread: bool = False,
    ) -> None:
        self.faults = faults
        self._camera, self._stage = camera, stage
        self._dump = dump
        self._dump_in_thread = dump_in_thread
        self._lock = threading.Lock()
        self._frames_lost_from = getattr(camera, "exposures", 0)
        self._retaken_from = getattr(camera, "frames_retaken", 0)
        self._beam_lost = self._beam_back = 0
        self._beam_down = False
        first = self._frames(frame_counter.get()) if faults.beam_losses else 0
        # Frame counter values (absolute) at which the beam goes, in order.
        self._pending = [(first + loss.at_frame, loss.outage_s) for loss in faults.beam_losses]
        self._subscriptions: list[tuple[Any, int]] = []
        if self._pending:
            self._subscriptions = [
                (frame_counter, frame_counter.subscribe(self._on_frame, run=False)),
                (ring_current, ring_current.subscribe(self._on_ring, run=False)),
            ]

    # --- watching -------------------------------------------------------------------------
    def _frames(self, counter: Any) -> int:
        """Frames so far: the camera's exposures where it counts them (a lost frame and its
        retake are two, as ``lose_frame`` counts), else its frame counter's value."""
        if self._camera is not None:
            return int(self._camera.exposures)
        return int(counter or 0)

    def _on_frame(self, value: Any = None, **kwargs: Any) -> None:
        # ">=": a monitor over Channel Access may skip values; each loss happens once.
        frames = self._frames(value)
        due: list[float | None] = []
        with self._lock:
            while self._pending and frames >= self._pending[0][0]:
                due.append(self._pending.pop(0)[1])
                self._beam_lost += 1
                self._beam_down = True
        for outage_s in due:
            if self._dump_in_thread:
                # A Channel Access put from inside a monitor callback would wait on the
                # thread that delivers the callback: put from a thread of its own.
                threading.Thread(target=self._dump, args=(outage_s,), daemon=True).start()
            else:
                # In-process: at once, before the next frame starts, so the loss lands on
                # the same frame every run.
                self._dump(outage_s)

    def _on_ring(self, value: Any = None, **kwargs: Any) -> None:
        with self._lock:
            if self._beam_down and value is not None and float(value) > 0:
                self._beam_down = False
                self._beam_back += 1

    def detach(self) -> None:
        """Stop watching: beam losses not yet reached will not happen (idempotent)."""
        for signal, cid in self._subscriptions:
            signal.unsubscribe(cid)
        self._subscriptions = []
        with self._lock:
            self._pending = []

    # --- counts ---------------------------------------------------------------------------
    @property
    def injected(self) -> dict[str, int]:
        """What was done so far: ``frames_lost``, ``frames_retaken`` (in-process devices),
        ``stage_stalls``, ``beam_losses`` and ``beam_back`` (losses the beam came back from).
        """
        out: dict[str, int] = {}
        camera, stage = self._camera, self._stage
        if camera is not None:
            exposures = int(camera.exposures)
            out["frames_lost"] = sum(
                1 for n in camera.lose_frames if self._frames_lost_from < n <= exposures
            )
            out["frames_retaken"] = int(camera.frames_retaken) - self._retaken_from
        if stage is not None:
            stall = stage.stall_at_move
            out["stage_stalls"] = int(stall is not None and stage.moves_started >= stall)
        with self._lock:
            out["beam_losses"] = self._beam_lost
            out["beam_back"] = self._beam_back
        return out
