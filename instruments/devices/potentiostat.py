"""A potentiostat as an ophyd flyer: any :class:`~.potentiostat.Potentiostat` driver in Bluesky.

:class:`PotentiostatDevice` wraps a driver. A plan prepares it with a technique (a dataclass
or its JSON-friendly dict), kicks it off (the technique runs in a background thread that
iterates :meth:`Potentiostat.stream`), collects the points that arrived so far as often as it
likes, and waits for completion::

    def hold(flyer, technique):
        yield from bps.open_run()
        yield from bps.prepare(flyer, technique, wait=True)
        yield from bps.kickoff(flyer, wait=True)
        status = yield from bps.complete(flyer, wait=False)
        while not status.done:
            yield from bps.collect(flyer)
            yield from bps.sleep(0.5)
        yield from bps.wait()
        yield from bps.collect(flyer)
        yield from bps.close_run()

Collection format (bluesky 1.15)
--------------------------------
By default :meth:`PotentiostatDevice.describe_collect` returns the *old-style*, doubly nested
``{stream_name: {data_key: DataKey}}``: a plain ``bps.collect(flyer)`` makes the descriptor
from it, with no stream to declare (the RunEngine of 1.15 asserts that a flat dict was
pre-declared). The RunEngine's ``declare_stream(..., collect=True)`` of 1.15, however, puts
the nested dict itself into the descriptor as if it were flat (an invalid descriptor), so
plans that declare the stream and collect with ``name=`` create the device with
``collect_style="flat"``: ``{data_key: DataKey}``, then
``bps.declare_stream(flyer, name=flyer.stream_name, collect=True)`` and
``bps.collect(flyer, name=flyer.stream_name)``. ``stream=True`` is refused by the RunEngine
of 1.15 whatever the device does: every ``collect`` emits one EventPage.

The stream is ``"electrochem"`` for time series (``time_s``, ``voltage_V``, ``current_A``,
``step``) and ``"eis"`` for impedance (``frequency_Hz``, ``z_real_ohm``, ``z_imag_ohm``). The
RunEngine caches ``describe_collect`` per device and run: one device runs one kind of technique
per run (use a second device, or a second run, to mix EIS with time series in one run).

Safety
------
The driver's :meth:`~.potentiostat.Potentiostat.stream` switches the cell off when the
technique ends abnormally or is closed early; the worker thread always closes the stream, so
the cell is off whatever goes wrong in the driver or in this device. The RunEngine does not
stop flyers when a plan fails or is aborted: plans wrap themselves in
``bpp.finalize_wrapper(..., stop_plan)`` calling :meth:`PotentiostatDevice.stop`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd
from ophyd import Component as Cpt
from ophyd import Device, Signal
from ophyd.status import Status

from ..errors import LimitError
from ..potentiostat import (
    EIS_COLUMNS,
    STEP_END,
    TIME_SERIES_COLUMNS,
    CurrentSequence,
    CurrentStep,
    GalvanostaticHold,
    Impedance,
    OpenCircuit,
    Potentiostat,
    Technique,
)

__all__ = [
    "EIS_STREAM",
    "TECHNIQUES",
    "TIME_SERIES_STREAM",
    "PotentiostatDevice",
    "SampleLimits",
    "technique_from_dict",
    "technique_to_dict",
]

log = logging.getLogger(__name__)

TIME_SERIES_STREAM = "electrochem"
EIS_STREAM = "eis"

#: Technique classes by the name used in the JSON-friendly dict form.
TECHNIQUES: dict[str, type[Technique]] = {
    cls.__name__: cls for cls in (OpenCircuit, GalvanostaticHold, CurrentSequence, Impedance)
}

_UNITS = {
    "time_s": "s",
    "voltage_V": "V",
    "current_A": "A",
    "frequency_Hz": "Hz",
    "z_real_ohm": "ohm",
    "z_imag_ohm": "ohm",
}
_INTEGER_COLUMNS = frozenset({"step"})


# --- technique <-> dict ----------------------------------------------------------------------
def technique_to_dict(technique: Technique) -> dict[str, Any]:
    """The JSON-friendly form of ``technique``: ``{"technique": NAME, **parameters}``.

    Parameters
    ----------
    technique : Technique
        One of the technique dataclasses of :mod:`insitu.instruments.potentiostat`.

    Returns
    -------
    dict
        Plain ``str``/``float``/``int``/``list`` values; the steps of a
        :class:`CurrentSequence` become a list of ``{"current_A", "duration_s"}`` dicts.
        :func:`technique_from_dict` turns it back into an equal technique.
    """
    if not dataclasses.is_dataclass(technique) or type(technique).__name__ not in TECHNIQUES:
        raise TypeError(
            f"{technique!r} is not a technique; use one of {', '.join(sorted(TECHNIQUES))}"
        )
    out: dict[str, Any] = {"technique": type(technique).__name__}
    for f in dataclasses.fields(technique):
        value = getattr(technique, f.name)
        if f.name == "steps":
            value = [
                {"current_A": float(s.current_A), "duration_s": float(s.duration_s)} for s in value
            ]
        out[f.name] = value
    return out


def technique_from_dict(spec: Mapping[str, Any]) -> Technique:
    """Build a technique from its JSON-friendly dict (see :func:`technique_to_dict`).

    Parameters
    ----------
    spec : mapping
        ``{"technique": "GalvanostaticHold", "current_A": 1e-4, "duration_s": 3600, ...}``;
        omitted parameters take the dataclass defaults. Steps of a ``CurrentSequence`` may be
        dicts ``{"current_A", "duration_s"}``, pairs ``[current_A, duration_s]`` or
        :class:`CurrentStep` objects.

    Raises
    ------
    ValueError
        For an unknown technique name or unknown/missing parameters (the message lists the
        valid ones).
    """
    if not isinstance(spec, Mapping) or "technique" not in spec:
        raise ValueError(
            f"a technique dict needs a 'technique' key naming one of "
            f"{', '.join(sorted(TECHNIQUES))}; got {spec!r}"
        )
    name = spec["technique"]
    cls = TECHNIQUES.get(str(name))
    if cls is None:
        raise ValueError(
            f"unknown technique {name!r}; choose one of {', '.join(sorted(TECHNIQUES))}"
        )
    params = {k: v for k, v in spec.items() if k != "technique"}
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise ValueError(
            f"{name} has no parameter(s) {', '.join(unknown)}; its parameters are "
            f"{', '.join(fields)}"
        )
    if "steps" in params:
        params["steps"] = tuple(_step(s) for s in params["steps"])
    try:
        return cls(**params)
    except TypeError as exc:
        required = [
            n
            for n, f in fields.items()
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        raise ValueError(
            f"cannot build {name} from {dict(params)!r} ({exc}); it requires {', '.join(required)}"
        ) from exc


def _step(step: Any) -> CurrentStep:
    if isinstance(step, CurrentStep):
        return step
    if isinstance(step, Mapping):
        return CurrentStep(float(step["current_A"]), float(step["duration_s"]))
    current_A, duration_s = step
    return CurrentStep(float(current_A), float(duration_s))


def stream_name_for(technique: Technique) -> str:
    """The event stream a technique's points go to: ``"eis"`` or ``"electrochem"``."""
    return EIS_STREAM if isinstance(technique, Impedance) else TIME_SERIES_STREAM


# --- the device ------------------------------------------------------------------------------
class _Reading(Signal):
    """A soft signal whose ``describe()`` carries units (plain ``Signal`` has none)."""

    def __init__(self, *args: Any, units: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._units = units

    def describe(self) -> dict[str, dict[str, Any]]:
        desc = super().describe()
        if self._units:
            desc[self.name]["units"] = self._units
        return desc


@dataclasses.dataclass(frozen=True)
class SampleLimits:
    """What one sample may see, over what the instrument can do.

    Parameters
    ----------
    max_abs_current_A : float, optional
        The largest current (the sample's current-density limit times its area).
    max_abs_voltage_V : float, optional
        The largest cell voltage either way.
    """

    max_abs_current_A: float | None = None
    max_abs_voltage_V: float | None = None

    def check(self, technique: Technique, name: str) -> None:
        """Raise :class:`LimitError` if ``technique`` could drive the sample beyond them."""
        currents: list[float] = []
        windows: list[tuple[float, float]] = []
        if isinstance(technique, GalvanostaticHold):
            currents.append(technique.current_A)
            windows.append((technique.voltage_min_V, technique.voltage_max_V))
        elif isinstance(technique, CurrentSequence):
            currents.extend(step.current_A for step in technique.steps)
            windows.append((technique.voltage_min_V, technique.voltage_max_V))
        elif isinstance(technique, Impedance) and technique.mode == "galvanostatic":
            currents.append(abs(technique.dc_A) + technique.amplitude * 2**0.5)
        i_max, v_max = self.max_abs_current_A, self.max_abs_voltage_V
        for i in currents:
            if i_max is not None and abs(i) > i_max * (1 + 1e-9):
                raise LimitError(
                    f"{abs(i):g} A is above this sample's limit of {i_max:g} A "
                    "(limits.max_current_density_mA_cm2 × area); nothing was sent",
                    instrument=name,
                )
        for lo, hi in windows:
            if v_max is not None and max(abs(lo), abs(hi)) > v_max * (1 + 1e-9):
                raise LimitError(
                    f"the voltage window {lo:g}…{hi:g} V reaches beyond this sample's limit of "
                    f"±{v_max:g} V (limits.max_voltage_V); nothing was sent",
                    instrument=name,
                )


class PotentiostatDevice(Device):
    """A potentiostat driver as an ophyd flyer.

    Parameters
    ----------
    driver : Potentiostat
        A connected driver (the caller owns it and closes it).
    name : str
        Device name (used in signal names and in the data-key sources).
    stop_timeout_s : float
        Real seconds :meth:`stop` waits for the technique to end (and the cell to be off).
    **kwargs
        Passed to :class:`ophyd.Device`.

    Attributes
    ----------
    voltage, current : Signal
        Hinted; the last point of every chunk while a time-series technique runs (for
        ``LivePlot``/``LiveTable`` through ``bps.monitor``).
    state : Signal
        ``"idle"``, ``"running"``, ``"done"``, ``"stopped"`` or ``"failed"``.
    technique_name, technique, identity : Signal
        Configuration: the technique class name, its parameters as JSON, and the driver's
        identity (asked once and cached).

    Notes
    -----
    Event data keys are the plain column names of
    :mod:`insitu.instruments.potentiostat`; event timestamps are the wall-clock time at which
    each point arrived from the instrument, while ``time_s`` is the instrument's time since
    the technique started.
    """

    voltage = Cpt(_Reading, value=math.nan, kind="hinted", units="V")
    current = Cpt(_Reading, value=math.nan, kind="hinted", units="A")
    state = Cpt(Signal, value="idle", kind="normal")
    technique_name = Cpt(Signal, value="", kind="config")
    technique = Cpt(Signal, value="{}", kind="config")
    identity = Cpt(Signal, value="", kind="config")

    def __init__(
        self,
        driver: Potentiostat,
        *,
        name: str,
        stop_timeout_s: float = 5.0,
        collect_style: Literal["nested", "flat"] = "nested",
        **kwargs: Any,
    ) -> None:
        if collect_style not in ("nested", "flat"):
            raise ValueError(f"collect_style must be 'nested' or 'flat', got {collect_style!r}")
        super().__init__(name=name, **kwargs)
        self.driver = driver
        self.collect_style = collect_style
        self.stop_timeout_s = float(stop_timeout_s)
        self._lock = threading.RLock()
        self._technique: Technique | None = None
        self._thread: threading.Thread | None = None
        self._stop_requested = threading.Event()
        self._kickoff_status: Status | None = None
        self._complete_status: Status | None = None
        self._chunks: list[pd.DataFrame] = []
        self._arrivals: list[float] = []  # wall-clock arrival time of each chunk
        self._n_points = 0
        self._collected = 0  # points handed to collect_pages() so far
        self._end_reason: str | None = None
        self._error: BaseException | None = None
        self._identity_cache: str | None = None
        self._lost_at_start = 0
        #: This sample's own limits (a current density and voltage its cell must not see),
        #: enforced here as well as by the plan: :meth:`prepare` refuses a technique beyond
        #: them, and a point beyond the voltage ends the technique at once (cell off), should
        #: the instrument's own window stop fail or be wider.
        self.sample_limits: SampleLimits | None = None
        #: Called by the technique's thread between two steps of a multi-step sequence, after
        #: the ended step's points arrived and before the next step is sent; a true answer
        #: stops the technique there (the cell is off between steps). Plans set it to look
        #: for a short before the cell is driven again, whatever their own polling pace.
        self.step_gate: Callable[[], bool] | None = None

    # --- what the technique is --------------------------------------------------------------
    @property
    def prepared_technique(self) -> Technique | None:
        """The technique given to :meth:`prepare` (``None`` before)."""
        return self._technique

    @property
    def stream_name(self) -> str:
        """``"eis"`` for :class:`Impedance`, ``"electrochem"`` otherwise."""
        if self._technique is None:
            raise RuntimeError(f"{self.name}: no technique prepared; call prepare() first")
        return stream_name_for(self._technique)

    @property
    def columns(self) -> tuple[str, ...]:
        """Data columns of the prepared technique."""
        return EIS_COLUMNS if isinstance(self._technique, Impedance) else TIME_SERIES_COLUMNS

    @property
    def end_reason(self) -> str | None:
        """Why the last technique ended: ``"completed"``, ``"voltage_limit"``, ``"stopped"``
        or ``"failed"``; ``None`` while it runs or before it started."""
        return self._end_reason

    @property
    def error(self) -> BaseException | None:
        """The exception that ended the last technique, if it failed."""
        return self._error

    @property
    def running(self) -> bool:
        """Whether a technique is running in the background thread."""
        return self._thread is not None and self._thread.is_alive()

    # --- bluesky verbs -----------------------------------------------------------------------
    def prepare(self, technique: Technique | Mapping[str, Any]) -> Status:
        """Store the technique to run at the next :meth:`kickoff`.

        Parameters
        ----------
        technique : Technique or mapping
            A technique dataclass or its dict form (:func:`technique_from_dict`).

        Returns
        -------
        Status
            Already finished: nothing is sent to the instrument except, the first time,
            the identity query.

        Raises
        ------
        ValueError, LimitError, UnsupportedTechniqueError
            A bad dict, or a technique the instrument refuses (checked before anything is
            sent, so a plan fails at once rather than at kickoff).
        RuntimeError
            If a technique is running.
        """
        if self.running:
            raise RuntimeError(
                f"{self.name}: a technique is running; stop() it or wait for complete() first"
            )
        if isinstance(technique, Mapping):
            technique = technique_from_dict(technique)
        if not isinstance(technique, Technique):
            raise TypeError(f"{self.name}: {technique!r} is not a technique or technique dict")
        self.driver.check(technique)
        if self.sample_limits is not None:
            self.sample_limits.check(technique, self.name)
        self._technique = technique
        self.technique_name.put(type(technique).__name__)
        self.technique.put(json.dumps(technique_to_dict(technique)))
        self._cache_identity()
        status = Status(obj=self)
        status.set_finished()
        return status

    def kickoff(self) -> Status:
        """Start the prepared technique in a background thread.

        Returns
        -------
        Status
            Finished when the first points arrived (the technique runs), or when the
            technique ended without any; failed if the driver raised before that.
        """
        if self._technique is None:
            raise RuntimeError(f"{self.name}: nothing to run; call prepare(technique) first")
        if self.running:
            raise RuntimeError(f"{self.name}: a technique is already running")
        # The identity must be known before the RunEngine reads the configuration, which
        # happens while the technique runs (and some drivers hold their port meanwhile).
        self._cache_identity()
        with self._lock:
            self._chunks.clear()
            self._arrivals.clear()
            self._n_points = 0
            self._collected = 0
            self._end_reason = None
            self._error = None
            self._lost_at_start = self.driver.points_lost
            self._stop_requested.clear()
            self._kickoff_status = Status(obj=self)
            self._complete_status = Status(obj=self)
        self.state.put("running")
        self._thread = threading.Thread(
            target=self._worker,
            args=(self._technique, self._kickoff_status, self._complete_status),
            name=f"{self.name}-technique",
            daemon=True,
        )
        self._thread.start()
        return self._kickoff_status

    def complete(self) -> Status:
        """The status of the running (or last) technique.

        Finished when the technique ends normally or after :meth:`stop`; failed with the
        driver's exception otherwise (the cell is off by then).
        """
        if self._complete_status is None:
            raise RuntimeError(f"{self.name}: complete() before kickoff()")
        return self._complete_status

    def describe_collect(self) -> dict[str, Any]:
        """Data keys of the prepared technique's points.

        ``{stream_name: {column: DataKey}}`` with ``collect_style="nested"`` (the default, for
        a plain ``bps.collect(flyer)``), ``{column: DataKey}`` with ``collect_style="flat"``
        (for ``bps.declare_stream(flyer, name=flyer.stream_name, collect=True)`` and
        ``bps.collect(flyer, name=flyer.stream_name)``); see the module docstring.
        """
        keys: dict[str, dict[str, Any]] = {}
        for column in self.columns:
            integer = column in _INTEGER_COLUMNS
            key: dict[str, Any] = {
                "source": f"{self.name}:{column}",
                "dtype": "integer" if integer else "number",
                "dtype_numpy": np.dtype(np.int64 if integer else np.float64).str,
                "shape": [],
            }
            if column in _UNITS:
                key["units"] = _UNITS[column]
            keys[column] = key
        return keys if self.collect_style == "flat" else {self.stream_name: keys}

    def collect_pages(self) -> Iterator[dict[str, Any]]:
        """Yield one event page per arrived chunk of points not collected yet.

        bluesky prefers this to :meth:`collect` when both exist: a page of a few thousand
        points costs one document instead of one validated event per point, which is what
        keeps a 25 000-point CCD run from spending seconds in the RunEngine.
        """
        columns = self.columns
        for frame, arrival in self._take_uncollected():
            n = len(frame)
            # tolist() gives Python scalars: documents stay JSON/msgpack friendly.
            yield {
                "time": [arrival] * n,
                "data": {c: frame[c].to_numpy().tolist() for c in columns},
                "timestamps": {c: [arrival] * n for c in columns},
            }

    def _take_uncollected(self) -> list[tuple[pd.DataFrame, float]]:
        """Chunks (and their arrival times) not collected yet; marks them collected."""
        with self._lock:
            start = self._collected
            rows: list[tuple[pd.DataFrame, float]] = []
            seen = 0
            for chunk, arrival in zip(self._chunks, self._arrivals, strict=True):
                end = seen + len(chunk)
                if end > start and len(chunk):
                    rows.append((chunk.iloc[max(start - seen, 0) :], arrival))
                seen = end
            self._collected = seen
        return rows

    def stop(self, *, success: bool = False) -> None:
        """End the running technique early; the driver switches the cell off.

        The stream is closed by the worker thread as soon as the driver hands over its next
        chunk; this call waits up to :attr:`stop_timeout_s` real seconds for that, so when it
        returns the cell is normally off already. Safe to call when nothing runs.
        """
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        self._stop_requested.set()
        if thread is not threading.current_thread():
            thread.join(self.stop_timeout_s)
            if thread.is_alive():
                log.warning(
                    "%s: the driver has not handed over a chunk within %g s; the technique "
                    "will be closed (cell off) when it does",
                    self.name,
                    self.stop_timeout_s,
                )

    # --- data for in-plan analysis ------------------------------------------------------------
    def points(self, last_s: float | None = None) -> pd.DataFrame:
        """Points of the running (or last) technique so far, collected or not.

        Parameters
        ----------
        last_s : float, optional
            Only the chunks that reach into the last ``last_s`` seconds of instrument time
            (``time_s``), so that a plan watching a long technique (e.g. for a short) pays
            for the recent data only, not for everything since the start.
        """
        with self._lock:
            frames = [c for c in self._chunks if len(c)]
            end_reason = self._end_reason
        if last_s is not None and frames and "time_s" in frames[-1]:
            cutoff = float(frames[-1]["time_s"].iloc[-1]) - last_s
            first = len(frames)
            while first > 0 and float(frames[first - 1]["time_s"].iloc[-1]) >= cutoff:
                first -= 1
            frames = frames[max(first - 1, 0) :]
        if frames:
            data = pd.concat(frames, ignore_index=True)
        else:
            data = pd.DataFrame(
                {
                    c: pd.Series(dtype=np.int64 if c in _INTEGER_COLUMNS else float)
                    for c in self.columns
                }
            )
        data.attrs["end_reason"] = end_reason
        if self._technique is not None:
            data.attrs["technique"] = type(self._technique).__name__
        return data

    @property
    def points_lost(self) -> int:
        """Points of the running (or last) technique that the instrument measured but that
        never arrived readable (the driver's count, e.g. data packages garbled on the wire)."""
        return self.driver.points_lost - self._lost_at_start

    @property
    def n_points(self) -> int:
        """How many points arrived so far."""
        return self._n_points

    # --- configuration -----------------------------------------------------------------------
    def read_configuration(self) -> dict[str, dict[str, Any]]:
        """Technique name and parameters (JSON) and the instrument identity."""
        if not self.running:
            self._cache_identity()
        return super().read_configuration()

    def _cache_identity(self) -> None:
        if self._identity_cache is None:
            self._identity_cache = str(self.driver.identify())
            self.identity.put(self._identity_cache)

    # --- the worker ---------------------------------------------------------------------------
    def _worker(self, technique: Technique, kickoff: Status, complete: Status) -> None:
        stream = self.driver.stream(technique)
        end_reason = "completed"
        try:
            for chunk in stream:
                self._receive(chunk)
                if not kickoff.done:
                    kickoff.set_finished()
                if "end_reason" in chunk.attrs:
                    end_reason = str(chunk.attrs["end_reason"])
                if self._stop_requested.is_set():
                    end_reason = "stopped"
                    break
                if self._beyond_sample_voltage(chunk):
                    end_reason = "voltage_limit"
                    break
                if STEP_END in chunk.attrs and self._gate_says_stop():
                    end_reason = "stopped"
                    break
        except BaseException as exc:
            # The driver's stream switched the cell off before re-raising; an error of our
            # own (raised here, after a chunk) reaches it through this close().
            try:
                stream.close()
            except BaseException:
                log.exception("%s: closing the stream after an error failed", self.name)
            log.error("%s: %s failed: %s", self.name, type(technique).__name__, exc)
            self._finish("failed", exc, kickoff, complete)
            return
        try:
            # Closing a suspended stream raises GeneratorExit in it: the driver's base class
            # switches the cell off. A finished stream ignores it.
            stream.close()
        except BaseException as exc:
            self._finish("failed", exc, kickoff, complete)
            return
        self._finish(end_reason, None, kickoff, complete)

    def _beyond_sample_voltage(self, chunk: pd.DataFrame) -> bool:
        limits = self.sample_limits
        if limits is None or limits.max_abs_voltage_V is None or "voltage_V" not in chunk:
            return False
        beyond = np.abs(chunk["voltage_V"].to_numpy(dtype=float)) > limits.max_abs_voltage_V
        if beyond.any():
            log.warning(
                "%s: %g V is beyond this sample's limit of ±%g V; switching the cell off",
                self.name,
                float(chunk["voltage_V"].to_numpy()[beyond.argmax()]),
                limits.max_abs_voltage_V,
            )
        return bool(beyond.any())

    def _gate_says_stop(self) -> bool:
        """Ask :attr:`step_gate` between two steps; a failing gate stops too (a bug there
        must not let the sequence run on unwatched)."""
        gate = self.step_gate
        if gate is None:
            return False
        try:
            return bool(gate())
        except Exception:
            log.exception("%s: the step gate failed; stopping the technique", self.name)
            return True

    def _receive(self, chunk: pd.DataFrame) -> None:
        arrival = time.time()
        if len(chunk):
            frame = chunk.loc[:, list(self.columns)].reset_index(drop=True)
            with self._lock:
                self._chunks.append(frame)
                self._arrivals.append(arrival)
                self._n_points += len(frame)
            self._publish(frame, arrival)

    def _publish(self, frame: pd.DataFrame, arrival: float) -> None:
        if "voltage_V" in frame:
            self.voltage.put(float(frame["voltage_V"].iloc[-1]), timestamp=arrival)
            self.current.put(float(frame["current_A"].iloc[-1]), timestamp=arrival)

    def _finish(
        self, end_reason: str, error: BaseException | None, kickoff: Status, complete: Status
    ) -> None:
        with self._lock:
            self._end_reason = end_reason
            self._error = error
        state = {"completed": "done", "voltage_limit": "done"}.get(end_reason, end_reason)
        self.state.put(state)
        if error is not None:
            exc = error if isinstance(error, Exception) else RuntimeError(repr(error))
            if not kickoff.done:
                kickoff.set_exception(exc)
            complete.set_exception(exc)
        else:
            if not kickoff.done:
                kickoff.set_finished()
            complete.set_finished()
