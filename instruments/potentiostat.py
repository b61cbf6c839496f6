"""The ``Potentiostat`` interface: what plans need from any electrochemistry instrument.

A technique is a small frozen dataclass (:class:`OpenCircuit`, :class:`GalvanostaticHold`,
:class:`CurrentSequence`, :class:`Impedance`). A driver streams the points of a technique as
pandas DataFrames with SI-unit column names while it runs; :meth:`Potentiostat.run` collects
them into one frame. Drivers implement :meth:`Potentiostat._stream`, :meth:`identify`,
:meth:`cell_off` and :meth:`close`; the base class checks capabilities and limits before
anything is sent and switches the cell off whenever a technique ends abnormally, including
when the consumer stops iterating early. A :class:`CurrentSequence` of several steps is
handed to the driver one step (one half-cycle) at a time, so that no instrument ever holds
more than one step: a host that dies leaves the cell at rest within one step.

Column names (``time_s`` is relative to the start of the technique):

========================  ==============================================================
``time_s``                seconds since the technique started
``voltage_V``             cell voltage, working minus counter electrode
``current_A``             current, positive from working to counter electrode
``step``                  index of the step of a :class:`CurrentSequence` (0 otherwise)
``frequency_Hz``          EIS frequency
``z_real_ohm``            real part of the impedance
``z_imag_ohm``            imaginary part of the impedance (negative for capacitive)
========================  ==============================================================

``DataFrame.attrs["end_reason"]`` of the frame from :meth:`Potentiostat.run` (and of the
last streamed chunk) says why the technique ended: ``"completed"``, ``"voltage_limit"``.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import pandas as pd

from .errors import ComplianceError, LimitError, UnsupportedTechniqueError

__all__ = [
    "EIS_COLUMNS",
    "STEP_END",
    "TIME_SERIES_COLUMNS",
    "CurrentSequence",
    "CurrentStep",
    "GalvanostaticHold",
    "Identity",
    "Impedance",
    "Limits",
    "OpenCircuit",
    "Potentiostat",
    "Technique",
    "as_sequence",
    "split_steps",
    "steps_from_densities",
]

log = logging.getLogger(__name__)

TIME_SERIES_COLUMNS = ("time_s", "voltage_V", "current_A", "step")
EIS_COLUMNS = ("frequency_Hz", "z_real_ohm", "z_imag_ohm")

EndReason = Literal["completed", "voltage_limit"]


#: Attribute of the (empty) chunk :meth:`Potentiostat.stream` hands over after each step of a
#: multi-step sequence: the index of the step that ended, before the next one is sent.
STEP_END = "step_end"


@dataclass(frozen=True)
class Identity:
    """Who the instrument says it is."""

    manufacturer: str
    model: str
    serial: str
    firmware: str
    resource: str = ""

    def __str__(self) -> str:
        return f"{self.manufacturer} {self.model} (serial {self.serial}, firmware {self.firmware})"


@dataclass(frozen=True)
class Limits:
    """What the instrument may be asked to do; checked before anything is sent."""

    max_abs_current_A: float
    max_abs_voltage_V: float
    min_interval_s: float = 1e-3
    max_frequency_Hz: float | None = None
    min_frequency_Hz: float | None = None


class Technique:
    """Base class of techniques (frozen dataclasses)."""


@dataclass(frozen=True)
class OpenCircuit(Technique):
    """Record the open-circuit voltage (no current)."""

    duration_s: float
    interval_s: float = 1.0


@dataclass(frozen=True)
class GalvanostaticHold(Technique):
    """Hold a constant current, sampling the voltage.

    The hold ends early (``end_reason == "voltage_limit"``) when the voltage leaves
    ``[voltage_min_V, voltage_max_V]`` or the instrument's own voltage range, whichever is
    narrower.
    """

    current_A: float
    duration_s: float
    interval_s: float = 1.0
    voltage_min_V: float = -10.0
    voltage_max_V: float = 10.0


@dataclass(frozen=True)
class CurrentStep:
    """One step of a :class:`CurrentSequence`."""

    current_A: float
    duration_s: float


@dataclass(frozen=True)
class CurrentSequence(Technique):
    """Constant-current steps back to back without switching the cell off between them.

    When the voltage leaves ``[voltage_min_V, voltage_max_V]``: with ``on_limit="stop"`` the
    sequence ends (``end_reason == "voltage_limit"``); with ``on_limit="next_step"`` it moves on
    to the next step (the in-situ protocol's 10 V cut-off). :meth:`Potentiostat.stream` sends
    the instrument one step at a time (see :func:`split_steps`).
    """

    steps: tuple[CurrentStep, ...]
    interval_s: float = 1.0
    voltage_min_V: float = -10.0
    voltage_max_V: float = 10.0
    on_limit: Literal["stop", "next_step"] = "stop"

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", tuple(self.steps))


@dataclass(frozen=True)
class Impedance(Technique):
    """Electrochemical impedance spectroscopy, log-spaced from start to stop frequency.

    ``mode="potentiostatic"`` applies ``amplitude`` volts RMS around ``dc_V`` (PEIS);
    ``mode="galvanostatic"`` applies ``amplitude`` amperes RMS around ``dc_A`` (GEIS).
    """

    frequency_start_Hz: float = 1e6
    frequency_stop_Hz: float = 0.1
    points_per_decade: int = 10
    amplitude: float = 0.010
    mode: Literal["potentiostatic", "galvanostatic"] = "potentiostatic"
    dc_V: float = 0.0
    dc_A: float = 0.0


class Potentiostat(abc.ABC):
    """A driver for an instrument that can run electrochemistry techniques.

    Subclasses set :attr:`capabilities` and :attr:`limits` and implement :meth:`_stream`,
    :meth:`identify`, :meth:`cell_off` and :meth:`close`. Use it as a context manager.
    """

    #: Technique classes this instrument can run.
    capabilities: ClassVar[frozenset[type[Technique]]] = frozenset()
    #: Instrument limits; drivers set them per model (or per instance after identifying).
    limits: Limits = Limits(max_abs_current_A=0.1, max_abs_voltage_V=10.0)
    #: Human-readable name used in error messages: model and resource string.
    name: str = "potentiostat"
    #: Points the instrument measured that never reached the host readable (a streamed data
    #: package garbled on the wire cannot be asked for again). Drivers count them here; the
    #: plans record the count in the run, so lost points are reported, never hidden.
    points_lost: int = 0

    # --- what drivers implement ---------------------------------------------------------
    @abc.abstractmethod
    def identify(self) -> Identity:
        """Ask the instrument who it is."""

    @abc.abstractmethod
    def cell_off(self) -> None:
        """Switch the cell off (output off / open circuit). Must be safe to call repeatedly."""

    @abc.abstractmethod
    def close(self) -> None:
        """Switch the cell off and release the connection."""

    @abc.abstractmethod
    def _stream(self, technique: Technique) -> Iterator[pd.DataFrame]:
        """Run ``technique`` on the instrument, yielding chunks of points as they arrive.

        The last chunk carries ``attrs["end_reason"]``. Called only after :meth:`check`.
        """

    # --- what everyone uses -------------------------------------------------------------
    def supports(self, technique: Technique | type[Technique]) -> bool:
        """Whether this instrument can run ``technique``."""
        kind = technique if isinstance(technique, type) else type(technique)
        return kind in self.capabilities

    def check(self, technique: Technique) -> None:
        """Raise if ``technique`` is unsupported or outside :attr:`limits`; sends nothing."""
        if not self.supports(technique):
            can = ", ".join(sorted(t.__name__ for t in self.capabilities)) or "nothing"
            raise UnsupportedTechniqueError(
                f"{type(technique).__name__} is not possible on this instrument (it can run: "
                f"{can}); use an instrument that supports it",
                instrument=self.name,
            )
        _check_limits(technique, self.limits, self.name)

    def stream(self, technique: Technique) -> Iterator[pd.DataFrame]:
        """Run ``technique`` and yield DataFrame chunks as points arrive.

        If anything goes wrong, or the consumer stops iterating early, the cell is switched
        off before the exception (or ``GeneratorExit``) propagates.
        """
        self.check(technique)
        completed = False
        try:
            if isinstance(technique, CurrentSequence) and len(technique.steps) > 1:
                yield from self._stream_step_by_step(technique)
            else:
                yield from self._stream(technique)
            completed = True
        finally:
            if not completed:
                self._safe_cell_off()

    def _stream_step_by_step(self, seq: CurrentSequence) -> Iterator[pd.DataFrame]:
        """Run ``seq`` one step (one half-cycle) at a time, as one continuous technique.

        The instrument never holds more than one step: every driver's technique ends with
        the cell off, so if the host dies the instrument finishes the step it holds and
        leaves the cell at rest, instead of cycling on to the end of the sequence. The next
        step is sent only once the previous one has ended and all its points were read.

        The points read as if the instrument had run the whole sequence at once: ``time_s``
        runs on from the last point of the previous step (a step's first point comes one
        interval after it, as inside one trigger model or script), ``step`` is the step's
        index in ``seq``, and leaving the voltage window ends the sequence
        (``on_limit="stop"``) or only the step (``"next_step"``). The short time the driver
        needs to send the next step, with the cell off, is not counted in ``time_s``.
        """
        offset_s = 0.0
        hit_limit = False
        for k, one in enumerate(split_steps(seq)):
            end_s = offset_s
            reason = "completed"
            try:
                for chunk in self._stream(one):
                    reason = str(chunk.attrs.get("end_reason", reason))
                    out = _shifted(chunk, offset_s, k)
                    if len(out):
                        end_s = float(out["time_s"].iloc[-1])
                    if "end_time_s" in chunk.attrs:
                        # The step's last point, even one lost on the way (a driver that
                        # knows says so): later steps keep the instrument's time.
                        end_s = offset_s + float(chunk.attrs["end_time_s"])
                    yield out
            except ComplianceError as exc:
                if exc.time_s is not None:
                    exc.time_s += offset_s  # the sequence's time, as the points carry
                raise
            offset_s = end_s
            # The step has ended and all its points were handed over: this marker lets the
            # consumer look at them (a short?) before the next step reaches the instrument; a
            # consumer that stops here never sends it.
            marker = _empty_time_series()
            marker.attrs[STEP_END] = k
            yield marker
            if reason == "voltage_limit":
                hit_limit = True
                if seq.on_limit == "stop":
                    break
        end = _empty_time_series()
        end.attrs["end_reason"] = (
            "voltage_limit" if hit_limit and seq.on_limit == "stop" else "completed"
        )
        yield end

    def run(self, technique: Technique) -> pd.DataFrame:
        """Run ``technique`` to the end and return all its points in one DataFrame."""
        chunks = list(self.stream(technique))
        end_reason = chunks[-1].attrs.get("end_reason", "completed") if chunks else "completed"
        frames = [c for c in chunks if len(c)]
        if frames:
            data = pd.concat(frames, ignore_index=True)
        else:
            cols = EIS_COLUMNS if isinstance(technique, Impedance) else TIME_SERIES_COLUMNS
            data = pd.DataFrame({c: pd.Series(dtype=float) for c in cols})
        data.attrs["end_reason"] = end_reason
        data.attrs["technique"] = type(technique).__name__
        return data

    def _safe_cell_off(self) -> None:
        # Called while another exception propagates: never mask it with a second one.
        try:
            self.cell_off()
        except Exception as exc:
            # One line for the operator (the error that ended the technique follows); the
            # traceback only for whoever debugs with logging at DEBUG.
            log.warning("%s: could not switch the cell off after an error: %s", self.name, exc)
            log.debug("switch-off failure", exc_info=True)

    def __enter__(self) -> Potentiostat:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_limits(technique: Technique, limits: Limits, name: str) -> None:
    def fail(what: str) -> None:
        raise LimitError(what, instrument=name)

    def check_current(i: float) -> None:
        if abs(i) > limits.max_abs_current_A:
            fail(
                f"current {i:g} A exceeds the instrument limit of ±{limits.max_abs_current_A:g} A;"
                " lower the current density or use a smaller electrode area"
            )

    def check_voltage(v: float, label: str) -> None:
        if abs(v) > limits.max_abs_voltage_V:
            fail(f"{label} {v:g} V exceeds the instrument limit of ±{limits.max_abs_voltage_V:g} V")

    def check_timing(duration: float, interval: float) -> None:
        if not duration > 0:
            fail(f"duration must be positive, got {duration:g} s")
        if not interval >= limits.min_interval_s:
            fail(
                f"sampling interval {interval:g} s is below the instrument minimum of "
                f"{limits.min_interval_s:g} s"
            )

    if isinstance(technique, OpenCircuit):
        check_timing(technique.duration_s, technique.interval_s)
    elif isinstance(technique, GalvanostaticHold):
        check_current(technique.current_A)
        check_timing(technique.duration_s, technique.interval_s)
        # The voltage window is a stop criterion, not something the instrument sources: a
        # window wider than the instrument's range just means its own range stops first.
        _check_window(technique.voltage_min_V, technique.voltage_max_V, fail)
    elif isinstance(technique, CurrentSequence):
        if not technique.steps:
            fail("a current sequence needs at least one step")
        for step in technique.steps:
            check_current(step.current_A)
            check_timing(step.duration_s, technique.interval_s)
        # The voltage window is a stop criterion, not something the instrument sources: a
        # window wider than the instrument's range just means its own range stops first.
        _check_window(technique.voltage_min_V, technique.voltage_max_V, fail)
    elif isinstance(technique, Impedance):
        lo = min(technique.frequency_start_Hz, technique.frequency_stop_Hz)
        hi = max(technique.frequency_start_Hz, technique.frequency_stop_Hz)
        if not lo > 0:
            fail("EIS frequencies must be positive")
        if limits.max_frequency_Hz is not None and hi > limits.max_frequency_Hz:
            fail(
                f"EIS frequency {hi:g} Hz is above the instrument maximum "
                f"{limits.max_frequency_Hz:g} Hz"
            )
        if limits.min_frequency_Hz is not None and lo < limits.min_frequency_Hz:
            fail(
                f"EIS frequency {lo:g} Hz is below the instrument minimum "
                f"{limits.min_frequency_Hz:g} Hz"
            )
        if technique.points_per_decade < 1:
            fail("EIS needs at least one point per decade")
        if not technique.amplitude > 0:
            fail("EIS amplitude must be positive")
        if technique.mode == "galvanostatic":
            check_current(abs(technique.dc_A) + technique.amplitude * 2**0.5)
        else:
            check_voltage(abs(technique.dc_V) + technique.amplitude * 2**0.5, "EIS voltage")


def _check_window(v_min: float, v_max: float, fail) -> None:
    if not v_min < v_max:
        fail(f"lower voltage limit {v_min:g} V must be below the upper limit {v_max:g} V")


def as_sequence(technique: GalvanostaticHold) -> CurrentSequence:
    """A hold is a one-step sequence; drivers may implement only sequences."""
    return CurrentSequence(
        steps=(CurrentStep(technique.current_A, technique.duration_s),),
        interval_s=technique.interval_s,
        voltage_min_V=technique.voltage_min_V,
        voltage_max_V=technique.voltage_max_V,
        on_limit="stop",
    )


def split_steps(seq: CurrentSequence) -> tuple[CurrentSequence, ...]:
    """One one-step sequence per step of ``seq``, with its sampling and voltage window.

    What :meth:`Potentiostat.stream` sends to the instrument, one after the other, so that
    the instrument never holds more than one step (one half-cycle of a cycling protocol).
    Each ends at the window (``on_limit="stop"``); ``seq.on_limit`` decides what follows.
    """
    return tuple(
        CurrentSequence(
            steps=(step,),
            interval_s=seq.interval_s,
            voltage_min_V=seq.voltage_min_V,
            voltage_max_V=seq.voltage_max_V,
            on_limit="stop",
        )
        for step in seq.steps
    )


def _shifted(chunk: pd.DataFrame, offset_s: float, step: int) -> pd.DataFrame:
    """A chunk of a one-step technique as points of step ``step`` of the whole sequence."""
    out = chunk.copy()
    out.attrs = {k: v for k, v in chunk.attrs.items() if k not in ("end_reason", "end_time_s")}
    out["time_s"] = out["time_s"].to_numpy(dtype=float) + offset_s
    out["step"] = np.full(len(out), step, dtype=int)
    return out


def _empty_time_series() -> pd.DataFrame:
    return pd.DataFrame(
        {c: pd.Series(dtype=int if c == "step" else float) for c in TIME_SERIES_COLUMNS}
    )


def steps_from_densities(
    current_densities_A_m2: Sequence[float], duration_s: float, area_m2: float
) -> tuple[CurrentStep, ...]:
    """Current steps from current densities (A/m²) on an electrode of ``area_m2``."""
    return tuple(CurrentStep(j * area_m2, duration_s) for j in current_densities_A_m2)
