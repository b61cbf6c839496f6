"""Simulated APS 2-BM tomography hardware: ophyd v1 devices running in-process on a SimClock.

:class:`SimRotationStage`, :class:`SimShutter`, :class:`SimRingCurrent` and
:class:`SimTomoCamera` keep the component names of their EPICS counterparts (an ``EpicsMotor``
for the stage: ``user_readback``, ``user_setpoint``, ``velocity``, ``acceleration``; plain
``EpicsSignal`` records for the shutter, the ring current and the camera controls), so an EPICS
(caproto) flavour can replace them without touching the plans.

Time is simulated: a move of the stage or an exposure of the camera lasts its simulated
duration on the shared :class:`~insitu.simulators.clock.SimClock` (``speedup`` times faster than
real time), and every status completes from a worker thread as real hardware would.

The camera takes its pixels from a ``frame_source(angle_rad, kind)`` callable, so it is
independent of any phantom or projector, writes every frame to an APS Data Exchange file
(:class:`~insitu.instruments.dxchange.DataExchangeWriter`) and references the frames from the
run with ``stream_resource``/``stream_datum`` documents (mimetype ``application/x-hdf5``), which
bluesky-tiled-plugins' ``TiledWriter`` registers as external HDF5 data: frames are referenced,
never copied into the run.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from ophyd import Component as Cpt
from ophyd import Device, Signal
from ophyd.status import Status

from insitu.instruments.devices.tomo_assets import FrameAssets, image_data_key
from insitu.instruments.dxchange import DataExchangeWriter

from ..clock import SimClock

__all__ = [
    "FRAME_KINDS",
    "FrameLostError",
    "FrameSource",
    "SimRingCurrent",
    "SimRotationStage",
    "SimShutter",
    "SimTomoBench",
    "SimTomoCamera",
    "StageStalledError",
    "sim_tomo_bench",
]

#: Kinds of frame a frame source is asked for.
FRAME_KINDS = ("dark", "flat", "projection")
#: ``frame_source(angle_rad, kind) -> (rows, cols) array`` of detector counts.
FrameSource = Callable[[float, str], np.ndarray]


def _done_later(clock: SimClock, until_s: float, then: Callable[[], None]) -> Status:
    """A status finished from a daemon thread once simulated time reaches ``until_s``."""
    status = Status()

    def run() -> None:
        clock.sleep_until(until_s)
        try:
            then()
        except Exception as exc:  # a failing device must fail the status, not the thread
            status.set_exception(exc)
        else:
            status.set_finished()

    threading.Thread(target=run, daemon=True, name="sim-beamline").start()
    return status


# --------------------------------------------------------------------------------------------
# Rotation stage
# --------------------------------------------------------------------------------------------


class StageStalledError(RuntimeError):
    """A move of the rotation stage stopped short (a motor fault, simulated on request)."""


class FrameLostError(RuntimeError):
    """A frame the camera exposed never arrived (a dropped frame, simulated on request)."""


@dataclass(frozen=True)
class _Move:
    """A trapezoidal (or triangular) move profile in simulated time."""

    t0: float
    start: float
    end: float
    velocity: float  # peak speed, deg/s
    accel: float  # deg/s²
    t_acc: float  # time spent accelerating (= decelerating), s
    duration: float

    def position(self, t: float) -> float:
        dt = min(max(t - self.t0, 0.0), self.duration)
        sign = 1.0 if self.end >= self.start else -1.0
        if dt <= self.t_acc:
            s = 0.5 * self.accel * dt**2
        elif dt <= self.duration - self.t_acc:
            s = 0.5 * self.accel * self.t_acc**2 + self.velocity * (dt - self.t_acc)
        else:
            rest = self.duration - dt
            s = abs(self.end - self.start) - 0.5 * self.accel * rest**2
        return self.start + sign * s

    def time_at(self, angle: float) -> float:
        """Simulated time at which the move passes ``angle`` (clamped to the move)."""
        distance = abs(self.end - self.start)
        s = min(max((angle - self.start) * (1 if self.end >= self.start else -1), 0.0), distance)
        s_acc = 0.5 * self.accel * self.t_acc**2
        if s <= s_acc:
            dt = math.sqrt(2 * s / self.accel) if self.accel > 0 else 0.0
        elif s <= distance - s_acc:
            dt = self.t_acc + (s - s_acc) / self.velocity
        else:
            dt = self.duration - math.sqrt(max(2 * (distance - s) / self.accel, 0.0))
        return self.t0 + dt


def move_time_s(distance_deg: float, velocity_deg_s: float, acceleration_s: float) -> float:
    """Duration of a point-to-point move with EPICS motor-record semantics.

    Parameters
    ----------
    distance_deg : float
        Length of the move.
    velocity_deg_s : float
        Cruise speed (motor record ``VELO``).
    acceleration_s : float
        Time to reach the cruise speed from rest (motor record ``ACCL``, seconds).

    Returns
    -------
    float
        ``|d|/v + t_acc`` when the move reaches cruise speed, else the triangular profile
        ``2·sqrt(|d|/a)`` with ``a = v/t_acc``.
    """
    d = abs(distance_deg)
    if d == 0:
        return 0.0
    if acceleration_s <= 0:
        return d / velocity_deg_s
    if d >= velocity_deg_s * acceleration_s:
        return d / velocity_deg_s + acceleration_s
    accel = velocity_deg_s / acceleration_s
    return 2.0 * math.sqrt(d / accel)


class _ProfileReadback(Signal):
    """Readback computed from the current move profile on every read (no polling thread)."""

    def get(self, **kwargs: Any) -> float:
        stage = self.parent
        value = stage._position_now() if stage is not None else super().get()
        self._readback = value
        return value


class SimRotationStage(Device):
    """Rotation stage in degrees with velocity and acceleration, in simulated time.

    Components follow ``ophyd.EpicsMotor``: ``user_readback`` (named like the device, hinted),
    ``user_setpoint``, ``velocity`` (deg/s, motor record ``VELO``), ``acceleration`` (seconds
    to reach ``velocity``, motor record ``ACCL``) and ``motor_done_move``.

    ``set(angle)`` returns a status that finishes when the simulated move ends. With
    ``stall_at_move = N`` the N-th move (counted from 1 since the stage was made) stalls half
    way, as a motor with a following error does: the stage stays there and the move's status
    fails with :class:`StageStalledError` at the time it stopped. A *fly* move is
    an ordinary move at the fly speed: set ``velocity`` first; the readback follows the
    trapezoidal profile, so between the acceleration ramps the stage turns at constant speed.
    :meth:`wait_until_angle` blocks until the stage passes an angle (what a position-compare
    output on the motion controller does for a camera trigger).
    """

    user_readback = Cpt(_ProfileReadback, value=0.0, kind="hinted")
    user_setpoint = Cpt(Signal, value=0.0, kind="normal")
    velocity = Cpt(Signal, value=30.0, kind="config")
    acceleration = Cpt(Signal, value=0.5, kind="config")
    motor_done_move = Cpt(Signal, value=1, kind="omitted")

    def __init__(self, *args: Any, clock: SimClock, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.clock = clock
        self._lock = threading.Lock()
        # Recent move profiles, newest last: the angle at a past time (a hardware-triggered
        # frame the RunEngine reads late) must come from the move under way at that time.
        self._moves: list[_Move] = [_Move(clock.now(), 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)]
        # EpicsMotor names its readback after itself so that events carry "<stage>" as the key.
        self.user_readback.name = self.name
        #: Fault injection: the move (1-based) that stalls half way; None: none does.
        self.stall_at_move: int | None = None
        self.moves_started = 0

    # -- profile --------------------------------------------------------------------------
    def _move_at(self, t: float) -> _Move:
        for move in reversed(self._moves):
            if move.t0 <= t:
                return move
        return self._moves[0]

    def _position_now(self) -> float:
        return self.position_at(self.clock.now())

    @property
    def position(self) -> float:
        """Current angle in degrees."""
        return self._position_now()

    @property
    def moving(self) -> bool:
        """True while a move is in progress."""
        with self._lock:
            move = self._moves[-1]
            return self.clock.now() < move.t0 + move.duration

    def move_time(self, target_deg: float) -> float:
        """Simulated seconds a move from the current position to ``target_deg`` takes."""
        return move_time_s(target_deg - self.position, self.velocity.get(), self.acceleration.get())

    def set(self, value: float, **kwargs: Any) -> Status:
        """Move to ``value`` degrees; the status finishes when the simulated move ends."""
        target = float(value)
        velocity = float(self.velocity.get())
        t_acc = float(self.acceleration.get())
        if not velocity > 0:
            raise ValueError(f"{self.name}: velocity must be > 0 deg/s, got {velocity}")
        with self._lock:
            now = self.clock.now()
            start = self._move_at(now).position(now)
            self.moves_started += 1
            stalled_at = None
            if self.moves_started == self.stall_at_move:
                stalled_at = start + (target - start) / 2
                target = stalled_at
            distance = abs(target - start)
            duration = move_time_s(distance, velocity, t_acc)
            if t_acc > 0 and distance < velocity * t_acc:
                # Triangular profile: never reaches the cruise speed.
                accel = velocity / t_acc
                t_ramp = duration / 2
                peak = accel * t_ramp
            else:
                accel = velocity / t_acc if t_acc > 0 else math.inf
                t_ramp = t_acc if t_acc > 0 else 0.0
                peak = velocity
            if not math.isfinite(accel):
                accel = 0.0
            move = _Move(now, start, target, peak, accel, t_ramp, duration)
            self._push(move)
            end_time = now + duration
        self.user_setpoint.put(target)
        self.motor_done_move.put(0)

        def arrive() -> None:
            with self._lock:
                current = self._moves[-1] is move
            if current:
                self.motor_done_move.put(1)
            if stalled_at is not None:
                raise StageStalledError(
                    f"{self.name} stalled at {stalled_at:.3f}° on its way to {value:.3f}° "
                    "(motor fault)"
                )

        return _done_later(self.clock, end_time, arrive)

    def _push(self, move: _Move) -> None:
        self._moves.append(move)
        del self._moves[:-8]

    def stop(self, *, success: bool = False) -> None:
        """Stop where the stage is now (the pending status still finishes at its time)."""
        with self._lock:
            now = self.clock.now()
            here = self._move_at(now).position(now)
            self._push(_Move(now, here, here, 0.0, 0.0, 0.0, 0.0))
        self.motor_done_move.put(1)

    def time_at(self, angle_deg: float) -> float:
        """Simulated time at which the latest move passes ``angle_deg`` (clamped to the move)."""
        with self._lock:
            return self._moves[-1].time_at(angle_deg)

    def wait_until_angle(self, angle_deg: float) -> float:
        """Block until the stage passes ``angle_deg``; return the simulated time then."""
        t = self.time_at(angle_deg)
        self.clock.sleep_until(t)
        return t

    def position_at(self, t: float) -> float:
        """Angle (deg) at simulated time ``t`` (past or future) from the recorded moves."""
        with self._lock:
            return self._move_at(t).position(t)


# --------------------------------------------------------------------------------------------
# Shutter and ring current
# --------------------------------------------------------------------------------------------


class SimShutter(Device):
    """Photon shutter: ``set("open")`` / ``set("close")`` finish after the actuation time.

    ``readback`` is ``"open"`` or ``"closed"``; ``setpoint`` the last command. The camera
    reads ``is_open`` at each exposure: a closed shutter gives a dark frame.
    """

    setpoint = Cpt(Signal, value="close", kind="omitted")
    readback = Cpt(Signal, value="closed", kind="normal")
    actuation_time = Cpt(Signal, value=0.5, kind="config")

    _COMMANDS: ClassVar[dict[str, str]] = {"open": "open", "close": "closed", "closed": "closed"}

    def __init__(self, *args: Any, clock: SimClock, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.clock = clock

    @property
    def is_open(self) -> bool:
        """True when the shutter is open."""
        return self.readback.get() == "open"

    def set(self, value: str, **kwargs: Any) -> Status:
        """``"open"`` or ``"close"``."""
        state = self._COMMANDS.get(str(value).lower())
        if state is None:
            raise ValueError(
                f"{self.name}: shutter command must be 'open' or 'close', got {value!r}"
            )
        self.setpoint.put(str(value).lower())
        return _done_later(
            self.clock,
            self.clock.now() + float(self.actuation_time.get()),
            lambda: self.readback.put(state),
        )

    def open(self) -> Status:
        """Open the shutter."""
        return self.set("open")

    def close(self) -> Status:
        """Close the shutter."""
        return self.set("close")


class SimRingCurrent(Signal):
    """Storage-ring current in mA (APS: ~130 mA in top-up).

    :meth:`beam_dump` drops it to zero at once and, after ``outage_s`` simulated seconds,
    refills it back to the nominal current, so suspenders on this signal fire and clear.
    """

    def __init__(
        self, *, clock: SimClock, nominal_mA: float = 130.0, name: str = "ring_current", **kw: Any
    ) -> None:
        kw.setdefault("kind", "normal")
        super().__init__(value=float(nominal_mA), name=name, **kw)
        self.clock = clock
        self.nominal_mA = float(nominal_mA)

    def beam_dump(self, outage_s: float | None = None) -> Status | None:
        """Lose the beam now; with ``outage_s`` it comes back after that long (simulated).

        Returns
        -------
        Status or None
            Finishes when the current is back (``None`` if no recovery was scheduled).
        """
        self.put(0.0)
        if outage_s is None:
            return None
        return _done_later(self.clock, self.clock.now() + float(outage_s), self.recover)

    def recover(self) -> None:
        """Beam back at the nominal current."""
        self.put(self.nominal_mA)


# --------------------------------------------------------------------------------------------
# Camera
# --------------------------------------------------------------------------------------------


class SimTomoCamera(Device):
    """Tomography camera writing APS Data Exchange HDF5 and referencing it from the run.

    Parameters
    ----------
    frame_source : callable
        ``frame_source(angle_rad, kind) -> (rows, cols)`` counts for a 1 s exposure at
        ``kind`` ∈ {"dark", "flat", "projection"}; the camera scales flats and projections
        by the exposure time.
    clock : SimClock
        Simulated time.
    shape : tuple of int
        ``(rows, cols)``.
    shutter : SimShutter, optional
        Checked at each exposure: closed (or absent-and-``frame_type`` dark) gives a dark.
    stage : SimRotationStage, optional
        Source of the angle of each frame (at mid-exposure) and, in ``"position"`` trigger
        mode, of the hardware trigger (fly scans).
    metadata : mapping, optional
        Data Exchange metadata (:data:`insitu.instruments.dxchange.METADATA_PATHS` keys).

    Notes
    -----
    Components (names as the areaDetector/tomoScan PVs they stand for): ``acquire_time`` (s),
    ``acquire_period`` (s, minimum frame period), ``frame_type`` ("dark" | "flat" |
    "projection"), ``trigger_mode`` ("internal": expose at once; "position": the k-th frame
    after the mode was set starts when the stage passes ``pso_start + k·pso_step`` degrees,
    as the position-synchronised output (PSO) of the 2-BM motion controller triggers the
    camera; the angle of a frame is fixed by the stage, however late the RunEngine asks
    for it), ``frame_counter``, ``theta`` (rad, angle of the last frame),
    ``file_path`` / ``file_name`` / ``file_number``, ``full_file_name``; the ``image`` data key
    is external (``"STREAM:"``).

    A file is opened at :meth:`stage` and closed at :meth:`unstage`: one file per scan.
    Asset documents: one ``stream_resource`` per frame kind (dataset) per staging, emitted
    with the first frame of that kind, and one ``stream_datum`` per frame (indices
    ``[i, i+1)``).
    """

    acquire_time = Cpt(Signal, value=0.1, kind="config")
    acquire_period = Cpt(Signal, value=0.0, kind="config")
    frame_type = Cpt(Signal, value="projection", kind="config")
    # No NaN for "no trigger": Signal.set waits until the value reads back equal, and NaN never
    # does (nor does it travel well over Channel Access).
    trigger_mode = Cpt(Signal, value="internal", kind="config")
    pso_start = Cpt(Signal, value=0.0, kind="config")
    pso_step = Cpt(Signal, value=1.0, kind="config")
    frame_counter = Cpt(Signal, value=0, kind="normal")
    theta = Cpt(Signal, value=0.0, kind="hinted")
    file_path = Cpt(Signal, value="", kind="config")
    file_name = Cpt(Signal, value="", kind="config")
    file_number = Cpt(Signal, value=1, kind="config")
    full_file_name = Cpt(Signal, value="", kind="config")

    def __init__(
        self,
        *args: Any,
        frame_source: FrameSource,
        clock: SimClock,
        shape: tuple[int, int],
        shutter: SimShutter | None = None,
        stage: SimRotationStage | None = None,
        metadata: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.frame_source = frame_source
        self.clock = clock
        self.shape = (int(shape[0]), int(shape[1]))
        self.shutter = shutter
        self.rotation_stage = stage
        self.metadata: dict[str, Any] = dict(metadata or {})
        self._writer: DataExchangeWriter | None = None
        self._lock = threading.Lock()
        self._assets: FrameAssets | None = None
        # (kind, index) of the frame taken last, and of the one not yet recorded by the run.
        self.last_frame: tuple[str, int] | None = None
        self._pending_frame: tuple[str, int] | None = None
        self._last_frame_end = -math.inf
        self._pso_index = 0
        #: Fault injection: the exposures (1-based, counted over the camera's life) whose
        #: frame is lost. A lost frame is exposed again, at most ``frame_retakes`` times
        #: (each counted in the scan's file), then the trigger fails with FrameLostError.
        self.lose_frames: set[int] = set()
        self.frame_retakes = 2
        self.exposures = 0
        #: Frames lost and exposed again, over the camera's life (each scan's file has its own).
        self.frames_retaken = 0
        # Setting the trigger mode re-arms the position-compare counter.
        self.trigger_mode.subscribe(self._rearm, run=False)

    def _rearm(self, **kwargs: Any) -> None:
        self._pso_index = 0

    @property
    def image_key(self) -> str:
        """Data key of the external image."""
        return f"{self.name}_image"

    # -- staging: one Data Exchange file per scan -------------------------------------------
    def stage(self) -> list[Any]:
        """Open a new Data Exchange file (never overwriting) and reset the asset bookkeeping.

        A frame source with ``prepare_scan(path)`` (e.g.
        :class:`~insitu.simulators.imaging.cell_imaging.CellImagingSource`) is told first, so the
        scan images the sample as it is now; a source with ``metadata`` updates the file's.
        """
        folder = Path(self.file_path.get() or ".")
        name = self.file_name.get()
        if not name:
            # Numbered names skip files already in the folder (another bench or an earlier
            # session wrote them); an explicit file_name that exists is refused by the writer.
            number = int(self.file_number.get())
            while (folder / f"tomo_{number:04d}.h5").exists():
                number += 1
            self.file_number.put(number)
            name = f"tomo_{number:04d}.h5"
        path = (folder / name).resolve()
        prepare = getattr(self.frame_source, "prepare_scan", None)
        if callable(prepare):
            # Before the writer: the file's sample description is the state at this scan's
            # start. No truth beside a file the writer is about to refuse (an earlier scan's).
            prepare(None if path.exists() else path)
        source_md = getattr(self.frame_source, "metadata", None)
        if isinstance(source_md, Mapping):
            self.metadata.update(source_md)
        meta = {**self.metadata, "exposure_s": float(self.acquire_time.get())}
        self._writer = DataExchangeWriter(path, shape=self.shape, metadata=meta)
        self.full_file_name.put(str(path))
        self._assets = FrameAssets(path.as_uri(), self.image_key, self.shape)
        self.last_frame = None
        self._pending_frame = None
        return super().stage()

    def unstage(self) -> list[Any]:
        """Close the file and move on to the next file number."""
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
                if not self.file_name.get():
                    self.file_number.put(int(self.file_number.get()) + 1)
        return super().unstage()

    # -- acquisition ------------------------------------------------------------------------
    def _kind_now(self) -> str:
        if self.shutter is not None and not self.shutter.is_open:
            return "dark"
        kind = str(self.frame_type.get())
        if kind not in FRAME_KINDS:
            raise ValueError(f"frame_type must be one of {', '.join(FRAME_KINDS)}, got {kind!r}")
        return kind

    def trigger(self) -> Status:
        """Take one frame (in a worker thread); the status finishes when it is written."""
        if self._writer is None:
            raise RuntimeError(
                f"{self.name} is not staged: stage it (bps.stage or bpp.stage_wrapper) so that "
                "it has a Data Exchange file to write to"
            )
        exposure = float(self.acquire_time.get())
        period = max(float(self.acquire_period.get()), exposure)
        trigger_mode = str(self.trigger_mode.get())
        if trigger_mode not in ("internal", "position"):
            raise ValueError(
                f"{self.name}: trigger_mode must be 'internal' or 'position', got {trigger_mode!r}"
            )
        trigger_at: float | None = None  # simulated time of the position-compare pulse
        if trigger_mode == "position" and self.rotation_stage is not None:
            angle = float(self.pso_start.get()) + self._pso_index * float(self.pso_step.get())
            self._pso_index += 1
            trigger_at = self.rotation_stage.time_at(angle)
        status = Status(obj=self)

        def acquire() -> None:
            try:
                if trigger_at is not None:
                    # Hardware-triggered: the exposure began when the stage passed the angle,
                    # even if that was before this call.
                    t0 = trigger_at
                else:
                    # The camera cannot start a frame before the previous frame period ends.
                    t0 = max(self.clock.now(), self._last_frame_end + period - exposure)
                    self.clock.sleep_until(t0)
                angle_deg = (
                    self.rotation_stage.position_at(t0 + exposure / 2)
                    if self.rotation_stage is not None
                    else 0.0
                )
                self.clock.sleep_until(t0 + exposure)
                self._last_frame_end = t0 + exposure
                kind = self._kind_now()
                for attempt in range(self.frame_retakes + 1):
                    self.exposures += 1
                    if self.exposures not in self.lose_frames:
                        break
                    if attempt == self.frame_retakes:
                        raise FrameLostError(
                            f"{self.name}: a {kind} frame was exposed "
                            f"{self.frame_retakes + 1} times and never arrived"
                        )
                    # Lost on the way from the detector: expose again, as the acquisition
                    # software of a real camera retries a dropped frame, and count it.
                    self._retaken()
                    self.clock.sleep(period)
                self._store(kind, math.radians(angle_deg), exposure)
            except Exception as exc:
                status.set_exception(exc)
            else:
                status.set_finished()

        threading.Thread(target=acquire, daemon=True, name=f"{self.name}-acquire").start()
        return status

    def _counts(self, kind: str, angle_rad: float, exposure: float) -> np.ndarray:
        """The pixels of one frame exposed for ``exposure`` s, as the file will hold them.

        A source that reads out frames itself at this very exposure (``frame_adu`` and
        ``exposure_s``, as :class:`~insitu.simulators.imaging.frame_source.PelletFrameSource`)
        gives them as they are: its per-second counts times the same exposure, rounded, are
        these ADU, and three float64 frames a frame are saved (≈ 12 ms at full size).
        """
        adu = getattr(self.frame_source, "frame_adu", None)
        if callable(adu) and getattr(self.frame_source, "exposure_s", None) == exposure:
            return np.asarray(adu(angle_rad, kind))
        counts = np.asarray(self.frame_source(angle_rad, kind), dtype=float)
        if kind != "dark":
            counts = counts * exposure  # the frame source gives counts per second of beam
        return counts

    def _store(self, kind: str, angle_rad: float, exposure: float) -> None:
        counts = self._counts(kind, angle_rad, exposure)
        with self._lock:
            writer = self._writer
            if writer is None:
                raise RuntimeError(f"{self.name} was unstaged during an exposure")
            # Provisional until collect_asset_docs hands its datum to the RunEngine: a frame
            # retaken after a suspension replaces a frame the run never recorded.
            index = writer.append(kind, counts, theta_rad=angle_rad, pending=True)  # type: ignore[arg-type]
            self.last_frame = self._pending_frame = (kind, index)
        self.frame_counter.put(int(self.frame_counter.get()) + 1)
        self.theta.put(angle_rad)

    def _retaken(self) -> None:
        """Count, in the scan's file, a frame that was lost and taken again."""
        with self._lock:
            self.frames_retaken += 1
            if self._writer is not None:
                self._writer.note_retake()

    # -- documents --------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """Data keys, the external ``<name>_image`` included."""
        out = dict(super().describe())
        out[self.image_key] = image_data_key(f"SIM:{self.name}:image", self.shape)
        if "units" not in out.get(self.theta.name, {}):
            out[self.theta.name]["units"] = "rad"
        return out

    def commit_frame(self) -> tuple[str, int] | None:
        """Make the frame taken last permanent in the file, as the run records it now.

        Returns
        -------
        tuple of (str, int) or None
            ``(kind, index)`` of the committed frame; ``None`` if no frame was pending.
        """
        with self._lock:
            frame, self._pending_frame = self._pending_frame, None
            if frame is not None and self._writer is not None:
                self._writer.commit(frame[0])  # type: ignore[arg-type]
            return frame

    def collect_asset_docs(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """``stream_resource`` (first frame of a kind) and ``stream_datum`` of the last frame."""
        assets = self._assets
        frame = self.commit_frame()
        if frame is None or assets is None:
            return
        yield from assets.docs(*frame)


# --------------------------------------------------------------------------------------------
# Bench
# --------------------------------------------------------------------------------------------


@dataclass
class SimTomoBench:
    """The simulated 2-BM tomography devices of one bench."""

    clock: SimClock
    stage: SimRotationStage
    shutter: SimShutter
    ring_current: SimRingCurrent
    camera: SimTomoCamera


#: Defaults after the APS 2-BM setup of the seed paper (25 keV, 2× objective, ~0.7 µm voxel).
DEFAULT_METADATA: dict[str, Any] = {
    "energy_keV": 25.0,
    "pixel_size_um": 0.69,
    "pixel_size_y_um": 0.69,
    "magnification": 2.0,
    "sample_detector_distance_mm": 50.0,
    "beamline": "2-BM",
    "source_name": "APS",
    "detector_manufacturer": "simulated",
    "detector_model": "SimTomoCamera",
}


def sim_tomo_bench(
    frame_source: FrameSource,
    *,
    clock: SimClock,
    path: str | Path,
    shape: tuple[int, int] | None = None,
    velocity_deg_s: float = 30.0,
    acceleration_s: float = 0.5,
    shutter_time_s: float = 0.5,
    ring_current_mA: float = 130.0,
    metadata: Mapping[str, Any] | None = None,
    prefix: str = "",
) -> SimTomoBench:
    """Build the simulated stage, shutter, ring current and camera on one clock.

    Parameters
    ----------
    frame_source : callable
        ``frame_source(angle_rad, kind)`` for the camera.
    clock : SimClock
        Shared simulation clock.
    path : str or pathlib.Path
        Folder the camera writes its Data Exchange files to (``tomo_0001.h5``, …).
    shape : tuple of int, optional
        ``(rows, cols)``; by default the shape of ``frame_source(0.0, "flat")``.
    velocity_deg_s, acceleration_s : float
        Stage speed and acceleration time.
    shutter_time_s : float
        Shutter actuation time.
    ring_current_mA : float
        Nominal storage-ring current.
    metadata : mapping, optional
        Data Exchange metadata overriding :data:`DEFAULT_METADATA`.
    prefix : str
        Prefix of the device names.
    """
    if shape is None:
        shape = tuple(np.shape(frame_source(0.0, "flat")))  # type: ignore[assignment]
        if len(shape) != 2:  # type: ignore[arg-type]
            raise ValueError(f"frame_source must return a 2-D frame, got shape {shape}")
    stage = SimRotationStage(name=f"{prefix}rotation", clock=clock)
    stage.velocity.put(float(velocity_deg_s))
    stage.acceleration.put(float(acceleration_s))
    shutter = SimShutter(name=f"{prefix}shutter", clock=clock)
    shutter.actuation_time.put(float(shutter_time_s))
    ring = SimRingCurrent(clock=clock, nominal_mA=ring_current_mA, name=f"{prefix}ring_current")
    camera = SimTomoCamera(
        name=f"{prefix}camera",
        frame_source=frame_source,
        clock=clock,
        shape=shape,  # type: ignore[arg-type]
        shutter=shutter,
        stage=stage,
        metadata={**DEFAULT_METADATA, **(metadata or {})},
    )
    Path(path).mkdir(parents=True, exist_ok=True)
    camera.file_path.put(str(Path(path).resolve()))
    return SimTomoBench(clock, stage, shutter, ring, camera)
