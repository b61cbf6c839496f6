"""The lab workflows end to end: bench → plan → RunEngine → catalog → numbers.

These are what ``insitu ccd`` and ``insitu conductivity`` run; a script can call them too.
The numbers are always computed from the stored run with the analysis functions, so a run
analysed today and re-analysed later from the catalog give the same answer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from bluesky import RunEngine
from bluesky.utils import RunEngineInterrupted

from insitu.analysis.electrochem.conductivity import (
    activation_energies,
    conductivity_S_cm,
    sigma_at,
)
from insitu.analysis.electrochem.eis import electrolyte_resistance
from insitu.analysis.electrochem.runs import spectra_by_temperature
from insitu.analysis.electrochem.shorts import ccd_from_trace
from insitu.simulators.cell.model import CellGeometry
from insitu.simulators.faults import InstrumentFaults, WireFaults

from ..bench import BenchSpec, EmulatorKind, is_sim_resource, open_bench
from ..errors import InvalidInputError
from ..plans.electrochem import ccd_test, conductivity_vs_temperature
from ..storage.catalog import RunStore, StoredRun
from .interrupts import RunInterrupted, abort_on_signals, failures_at_debug

__all__ = ["ccd_summary", "conductivity_summary", "run_ccd", "run_conductivity"]

#: Called with (stream name, instrument time in s, last point's data) as points arrive.
Progress = Callable[[str, float, Mapping[str, Any]], None]


#: The streams whose events are measured points (the others: oven readings, results).
_POINT_STREAMS = ("electrochem", "eis")


def _run_engine(store: RunStore, progress: Progress | None) -> RunEngine:
    # No metadata persistence between sessions: every run's metadata is what the plan says.
    # No bluesky SIGINT handler (context_managers=[]): its first Ctrl-C waits for a
    # checkpoint, which these plans do not have; abort_on_signals stops the run instead.
    RE = RunEngine({}, context_managers=[])
    store.subscribe(RE)
    if progress is not None:
        RE.subscribe(_ProgressRelay(progress))
    return RE


class _ProgressRelay:
    """Turns event pages into progress calls (stream name, time, last point)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.streams: dict[str, str] = {}

    def __call__(self, name: str, doc: dict) -> None:
        if name == "descriptor":
            self.streams[doc["uid"]] = doc["name"]
        elif name in ("event", "event_page"):
            data = doc["data"]
            last = {k: (v[-1] if name == "event_page" else v) for k, v in data.items()}
            self.progress(
                self.streams.get(doc["descriptor"], ""), float(last.get("time_s", 0)), last
            )


def _injected(bench: Any) -> dict[str, Any]:
    """What went wrong on the way and what it cost: ``points_lost`` (points the instrument
    measured that never arrived readable), and ``{"wire_faults": {kind: count}}`` when the
    bench's cable was faulty."""
    report: dict[str, Any] = {"points_lost": int(bench.potentiostat.driver.points_lost)}
    link = getattr(getattr(bench, "sim", None), "link", None)
    if link is not None:
        report["wire_faults"] = dict(link.injected)
    return report


def _lab_bench(
    instrument: str,
    *,
    seed: int | None,
    faults: WireFaults | None,
    **spec: Any,
) -> BenchSpec:
    """The bench of a lab command; the wire faults are drawn from the run's seed (the same
    run, the same faults)."""
    if faults is not None and seed is not None:
        faults = replace(faults, seed=seed)
    return BenchSpec(instrument, seed=seed, faults=faults, **spec)


def _emulator(emulator: EmulatorKind, sim_protocol: EmulatorKind | None) -> EmulatorKind:
    """``emulator``, or ``sim_protocol`` (its former name) where a caller still gives that."""
    if sim_protocol is None or sim_protocol == emulator:
        return emulator
    return sim_protocol


class _StartUids:
    """Remembers the uid of every run a RunEngine opens (``RE(plan)`` loses them on abort)."""

    def __init__(self) -> None:
        self.uids: list[str] = []

    def __call__(self, name: str, doc: dict) -> None:
        self.uids.append(doc["uid"])


def _execute(RE: RunEngine, plan: Any, store: RunStore) -> str:
    """Run a plan; the uid of its run.

    Ctrl-C, SIGTERM, SIGHUP or :func:`~.interrupts.emergency_stop` abort the run: the plan
    switches the cell off, bluesky stores every point and closes the run as ``abort``; then
    :class:`~.interrupts.RunInterrupted` says which run and why. A plan that fails (a limit
    error, an instrument that stops answering) raises its error, without bluesky's traceback
    in the terminal.
    """
    starts = _StartUids()
    token = RE.subscribe(starts, "start")
    try:
        with failures_at_debug():
            try:
                with abort_on_signals(RE) as signals:
                    uids = RE(plan)
            except RunEngineInterrupted:
                if RE.state == "paused":  # paused from outside (RE.request_pause): end it
                    RE.abort(signals.reason or "paused and aborted")
                uid = starts.uids[-1] if starts.uids else None
                raise _interrupted(store, uid, signals.reason) from None
    finally:
        RE.unsubscribe(token)
    return uids[0]


def _interrupted(store: RunStore, uid: str | None, reason: str | None) -> RunInterrupted:
    """The interruption of run ``uid``, with the reason and points its stop document holds."""
    if uid is None:
        return RunInterrupted(reason or "interrupted", None, 0)
    stop = store.load(uid, streams=()).stop or {}
    counts = stop.get("num_events") or {}
    points = sum(int(counts.get(name, 0)) for name in _POINT_STREAMS)
    return RunInterrupted(str(stop.get("reason") or reason or "interrupted"), uid, points)


def ccd_summary(run: StoredRun) -> dict[str, Any]:
    """CCD, charge-to-failure per convention and short time of a stored CCD run."""
    data = run.stream("electrochem")
    area_cm2 = float(run.start.get("area_cm2", 1.0))
    analysis = ccd_from_trace(data, area_cm2)
    stop = run.stop or {}
    return {
        "ccd_mA_cm2": analysis.ccd_mA_cm2,
        "charge_to_failure_C_cm2": analysis.charge_to_failure_C_cm2,
        "short_time_s": None if analysis.short is None else analysis.short.time_s,
        "stopped_because": stop.get("reason") or stop.get("exit_status"),
        "points": len(data),
        "area_cm2": area_cm2,
        "run_uid": run.uid,
    }


def run_ccd(
    instrument: str,
    *,
    store: RunStore,
    area_cm2: float = 1.0,
    current_densities_mA_cm2: Sequence[float] | None = None,
    half_cycle_s: float = 3600.0,
    cycles_per_step: int = 2,
    interval_s: float = 10.0,
    voltage_limit_V: float = 10.0,
    speedup: float = 1e5,
    seed: int | None = 0,
    emulator: EmulatorKind = "keithley2450",
    timeout_s: float = 5.0,
    md: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
    sim_protocol: EmulatorKind | None = None,
    faults: WireFaults | None = None,
    instrument_faults: InstrumentFaults | None = None,
) -> dict[str, Any]:
    """Run a CCD test on ``instrument`` (or ``sim:MATERIAL``), store it, return its numbers.

    ``emulator`` is the simulated potentiostat's wire protocol (``sim_protocol``: its former
    name, still accepted); ``faults`` puts a faulty cable between its driver and the emulator
    (seeded with ``seed``; :mod:`insitu.simulators.faults`), ``instrument_faults`` makes the
    emulated instrument itself fail (its own error, or compliance, after N points).
    """
    meta = dict(md or {})
    if is_sim_resource(instrument):
        meta.setdefault("material", instrument.strip()[len("sim:") :])
        meta.setdefault("simulated", True)
    geometry = CellGeometry.lab_ccd()
    if is_sim_resource(instrument):
        geometry = replace(geometry, area_m2=area_cm2 * 1e-4)
        meta.setdefault("thickness_cm", geometry.thickness_m * 100)
        meta.setdefault("temperature_C", round(geometry.temperature_K - 273.15, 2))
        meta.setdefault("stack_pressure_MPa", geometry.stack_pressure_Pa / 1e6)
    spec = _lab_bench(
        instrument,
        emulator=_emulator(emulator, sim_protocol),
        speedup=speedup,
        seed=seed,
        geometry=geometry,
        timeout_s=timeout_s,
        faults=faults,
        instrument_faults=instrument_faults,
    )
    with open_bench(spec) as bench:
        # The catalog is opened once the hardware answered: a typo in the resource fails fast.
        RE = _run_engine(store, progress)
        uid = _execute(
            RE,
            ccd_test(
                bench.potentiostat,
                area_cm2=area_cm2,
                current_densities_mA_cm2=current_densities_mA_cm2,
                half_cycle_s=half_cycle_s,
                cycles_per_step=cycles_per_step,
                interval_s=interval_s,
                voltage_limit_V=voltage_limit_V,
                md=meta,
            ),
            store,
        )
        injected = _injected(bench)
    return {**ccd_summary(store.load(uid)), **injected}


def conductivity_summary(
    run: StoredRun, *, thickness_cm: float | None = None, area_cm2: float | None = None
) -> dict[str, Any]:
    """σ per temperature and Eₐ per convention of a stored conductivity run."""
    start = run.start
    thickness_cm = thickness_cm or start.get("thickness_cm")
    area_cm2 = area_cm2 or start.get("area_cm2")
    if not thickness_cm or not area_cm2:
        raise InvalidInputError(
            "the run does not record the pellet's thickness and area; pass thickness_cm= and "
            "area_cm2= (--thickness-cm, --area-cm2)"
        )
    spectra = spectra_by_temperature(run.stream("eis"), run.stream("temperature"))
    temperatures_K = np.array(list(spectra))
    fits = {t: electrolyte_resistance(s, cell="blocking") for t, s in spectra.items()}
    resistance = np.array([fits[t].electrolyte_resistance_ohm for t in spectra])
    sigma = np.asarray(conductivity_S_cm(resistance, thickness_cm, area_cm2), dtype=float)
    # Keyed by the setpoint (°C, as the user typed it), measured temperatures alongside.
    setpoints = (start.get("protocol_parameters") or {}).get("temperatures_C") or []
    if len(setpoints) == len(spectra):
        keys = [f"{t:g}" for t in setpoints]
    else:  # a run that stopped early, or one from elsewhere: the measured temperatures
        keys = [f"{t - 273.15:.2f}" for t in temperatures_K]
    result: dict[str, Any] = {
        "sigma_S_cm": dict(zip(keys, map(float, sigma), strict=True)),
        "temperature_K": dict(zip(keys, map(float, temperatures_K), strict=True)),
        "resistance_ohm": dict(zip(keys, map(float, resistance), strict=True)),
        "methods": dict(zip(keys, (fits[t].method for t in spectra), strict=True)),
        "thickness_cm": float(thickness_cm),
        "area_cm2": float(area_cm2),
        "run_uid": run.uid,
    }
    if len(spectra) >= 2:
        arrhenius = activation_energies(temperatures_K, sigma)
        result["ea_eV"] = {c: f.activation_energy_eV for c, f in arrhenius.items()}
        result["sigma_25C_S_cm"] = {c: sigma_at(f) for c, f in arrhenius.items()}
    else:
        result["ea_eV"] = {}
    return result


def run_conductivity(
    instrument: str,
    *,
    store: RunStore,
    oven: str | None = None,
    temperatures_C: Sequence[float] = (25.0, 40.0, 60.0, 80.0),
    thickness_cm: float | None = None,
    area_cm2: float | None = None,
    frequency_start_Hz: float = 1e6,
    frequency_stop_Hz: float = 0.1,
    points_per_decade: int = 10,
    amplitude_V: float = 0.010,
    speedup: float = 1e5,
    seed: int | None = 0,
    emulator: EmulatorKind = "methodscript",
    oven_settle_time_s: float = 600.0,
    timeout_s: float = 5.0,
    md: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
    sim_protocol: EmulatorKind | None = None,
    faults: WireFaults | None = None,
    instrument_faults: InstrumentFaults | None = None,
) -> dict[str, Any]:
    """Measure EIS over temperatures, store the run, return σ(T) and Eₐ.

    On a simulated bench the pellet is the conductivity cell (carbon-coated Al blocking
    electrodes, 88 MPa) in an emulated oven; its thickness and area come from the cell.
    ``emulator`` is the simulated potentiostat's wire protocol (``sim_protocol``: its former
    name, still accepted).
    """
    meta = dict(md or {})
    geometry = None
    if is_sim_resource(instrument):
        oven = oven or "sim"
        geometry = CellGeometry.conductivity(temperature_K=temperatures_C[0] + 273.15)
        if area_cm2 is not None:
            geometry = replace(geometry, area_m2=area_cm2 * 1e-4)
        if thickness_cm is not None:
            geometry = replace(geometry, thickness_m=thickness_cm * 1e-2)
        thickness_cm = geometry.thickness_m * 100
        area_cm2 = geometry.area_m2 * 1e4
        meta.setdefault("material", instrument.strip()[len("sim:") :])
        meta.setdefault("simulated", True)
        meta.setdefault("stack_pressure_MPa", geometry.stack_pressure_Pa / 1e6)
    if oven is None:
        raise InvalidInputError("a temperature series needs an oven: give --oven RESOURCE")
    if thickness_cm is None or area_cm2 is None:
        raise InvalidInputError("give the pellet's --thickness-cm and --area-cm2")
    spec = _lab_bench(
        instrument,
        emulator=_emulator(emulator, sim_protocol),
        speedup=speedup,
        seed=seed,
        geometry=geometry,
        timeout_s=timeout_s,
        faults=faults,
        instrument_faults=instrument_faults,
        oven=oven,
        oven_settle_time_s=oven_settle_time_s,
    )
    with open_bench(spec) as bench:
        RE = _run_engine(store, progress)
        limits = bench.potentiostat.driver.limits
        start_Hz = frequency_start_Hz
        if limits.max_frequency_Hz is not None and start_Hz > limits.max_frequency_Hz:
            # The paper measured from 1 MHz; an instrument that stops lower still shows the
            # electrolyte as an intercept well above its blocking spike. Say so in the run.
            start_Hz = limits.max_frequency_Hz
            meta.setdefault(
                "notes",
                f"EIS started at {start_Hz:g} Hz, the instrument's highest frequency, instead "
                f"of {frequency_start_Hz:g} Hz",
            )
        uid = _execute(
            RE,
            conductivity_vs_temperature(
                bench.potentiostat,
                bench.oven,
                temperatures_C=list(temperatures_C),
                frequency_start_Hz=start_Hz,
                frequency_stop_Hz=frequency_stop_Hz,
                points_per_decade=points_per_decade,
                amplitude_V=amplitude_V,
                thickness_cm=thickness_cm,
                area_cm2=area_cm2,
                md=meta,
            ),
            store,
        )
        injected = _injected(bench)
    return {**conductivity_summary(store.load(uid)), **injected}
