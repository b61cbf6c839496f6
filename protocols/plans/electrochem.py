"""Bluesky plans for electrochemistry: EIS, holds, plating/stripping, CCD and conductivity.

Every plan is a generator function with typed, JSON-friendly arguments, so the same plan runs
in IPython (``RE(ccd_test(pstat))``), in a script, and under bluesky-queueserver (which passes
devices by name and the rest as JSON). Devices are a potentiostat flyer
(:class:`~insitu.instruments.devices.potentiostat.PotentiostatDevice`) and, for temperature
series, a temperature controller
(:class:`~insitu.instruments.devices.temperature.TemperatureController`).

Each technique runs as a flyer inside the run: ``prepare`` → ``kickoff`` → repeated
``collect`` while it runs (so every point is stored as it is measured, and a plan can watch
the data, e.g. for a short) → ``complete`` → final ``collect``. Time-series points go to the
stream ``electrochem``; impedance spectra to ``eis``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any, Literal

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import pandas as pd
from bluesky.utils import FailedStatus, Msg
from ophyd import Signal

from insitu.analysis.electrochem.shorts import ccd_from_trace, find_short
from insitu.analysis.provenance import software_version
from insitu.instruments.potentiostat import (
    CurrentSequence,
    CurrentStep,
    GalvanostaticHold,
    Impedance,
    Technique,
)

__all__ = [
    "LAB_CCD_DENSITIES_MA_CM2",
    "ccd_test",
    "conductivity_vs_temperature",
    "cycling_sequence",
    "eis",
    "galvanostatic_hold",
    "lab_ccd_densities_mA_cm2",
    "plate_strip",
    "run_technique",
]

Plan = Generator[Msg, Any, Any]


def lab_ccd_densities_mA_cm2(
    first: float = 0.1, increment: float = 0.25, last: float = 4.0
) -> list[float]:
    """Current densities of the lab CCD protocol: ``first``, then ``increment`` … ``last``.

    The paper's list (0.1, 0.25, 0.50, …, 4.0 mA/cm²) by default.
    """
    n = round(last / increment)
    return [first, *(round(increment * k, 10) for k in range(1, n + 1))]


LAB_CCD_DENSITIES_MA_CM2 = tuple(lab_ccd_densities_mA_cm2())


def _instrument_metadata(device: Any) -> dict[str, str]:
    """Identity of the instrument behind a device, for the run's start document."""
    identify = getattr(getattr(device, "driver", None), "identify", None)
    if identify is None:
        return {"instrument": getattr(device, "name", str(device))}
    ident = identify()
    return {
        "instrument": f"{ident.manufacturer} {ident.model}",
        "instrument_serial": ident.serial,
        "instrument_firmware": ident.firmware,
        "instrument_resource": ident.resource,
    }


def _start_metadata(
    plan_name: str, device: Any, parameters: Mapping[str, Any], md: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Rich start metadata: who, what, how; user ``md`` wins over defaults."""
    meta: dict[str, Any] = {
        "plan_name": plan_name,
        "protocol_parameters": dict(parameters),
        "software": "insitu",
        "software_version": software_version(),
        **_instrument_metadata(device),
    }
    meta.update(md or {})
    return meta


def run_technique(
    device: Any,
    technique: Technique,
    *,
    stop_when: Callable[[pd.DataFrame], str | None] | None = None,
    watch_s: float | None = None,
    poll_s: float = 0.05,
) -> Plan:
    """Run one technique on a potentiostat flyer inside an open run.

    Parameters
    ----------
    device : PotentiostatDevice
        The potentiostat flyer.
    technique : Technique
        What to run.
    stop_when : callable, optional
        Called with the points so far after each collection; returning a non-empty string
        stops the technique (the cell is switched off) and that string is returned as the
        reason.
    watch_s : float, optional
        Give ``stop_when`` only the points it has not seen yet and the ``watch_s`` seconds of
        instrument time before them (all points by default).
    poll_s : float
        Real seconds between collections while the technique runs.

    Returns
    -------
    str
        Why the technique ended: the device's end reason, or ``stop_when``'s answer.
    """
    stop_reason: str | None = None
    gate_reason: list[str] = []  # written by the technique's thread, between two steps

    def gate() -> bool:
        # Between two steps the cell is off and the next step not sent yet: the check the
        # plan makes at its own pace (below) is made here too, so a fast simulation or a
        # slow event loop cannot let the next half-cycle start after a short.
        reason = stop_when(device.points(last_s=watch_s)) if stop_when is not None else None
        if reason:
            gate_reason.append(reason)
        return bool(reason)

    yield from bps.prepare(device, technique, wait=True)
    if hasattr(device, "step_gate"):
        device.step_gate = gate if stop_when is not None else None
    yield from _device_errors(device, bps.kickoff(device, wait=True))
    status = yield from bps.complete(device, group="technique", wait=False)
    checked_s: float | None = None  # instrument time of the newest point stop_when has seen

    def window() -> pd.DataFrame:
        """The points stop_when has not seen yet, with ``watch_s`` of history before them.

        Not just the latest ``watch_s``: when points arrive faster than the plan looks (a
        fast simulation, a slow event loop), a short older than the latest window would
        otherwise never be looked at, and the test would run on past it.
        """
        nonlocal checked_s
        if watch_s is None:
            data = device.points()
        else:
            newest = device.points(last_s=0.0)
            now_s = float(newest["time_s"].iloc[-1]) if len(newest) else None
            backlog = 0.0 if checked_s is None or now_s is None else max(0.0, now_s - checked_s)
            data = device.points(last_s=None if checked_s is None else watch_s + backlog)
        if len(data):
            checked_s = float(data["time_s"].iloc[-1])
        return data

    def watch() -> Plan:
        nonlocal stop_reason
        while not status.done:
            yield from bps.collect(device, return_payload=False)
            if stop_when is not None and stop_reason is None:
                stop_reason = stop_when(window())
                if stop_reason:
                    device.stop()
            yield from bps.sleep(poll_s)
        yield from _device_errors(device, bps.wait(group="technique"))
        yield from bps.collect(device, return_payload=False)

    def switch_off() -> Plan:
        # bluesky does not stop flyers when a plan fails or is aborted: do it here, so the
        # cell is switched off whatever ends the plan.
        if not status.done:
            device.stop()
        if hasattr(device, "step_gate"):
            device.step_gate = None  # this technique's check must not watch the next one
        yield from bps.null()

    # A failed technique reaches the plan as FailedStatus at any message (bluesky throws it
    # in as soon as the status fails), hence the whole watch inside _device_errors.
    yield from bpp.finalize_wrapper(_device_errors(device, watch()), switch_off())
    lost = int(getattr(device, "points_lost", 0))
    if lost:
        # Lost points are reported in the run, never hidden: a stream of their own, so the
        # run's data streams keep only measured points.
        yield from _emit_results({"points_lost": lost}, stream="data_quality")
    return stop_reason or (gate_reason[0] if gate_reason else None) or device.end_reason


def _device_errors(device: Any, plan: Plan) -> Plan:
    """Run ``plan``; a failed status of ``device`` raises the driver's own error instead.

    bluesky reports a failed status as ``FailedStatus``, whose message is the status's repr:
    the run's stop reason and the user's error would read ``Status(obj=..., done=True,
    success=False)``. The driver's error (an instrument that stopped answering, a refusal)
    says what happened and what to do.
    """
    try:
        return (yield from plan)
    except FailedStatus as exc:
        error = getattr(device, "error", None)
        if isinstance(error, Exception):
            raise error from exc
        raise


def _emit_results(results: Mapping[str, float | str | None], stream: str = "results") -> Plan:
    """Record scalar results of a plan as one event in their own stream."""
    signals = []
    for key, value in results.items():
        if value is None:
            value = math.nan
        signals.append(Signal(name=key, value=value))
    yield from bps.create(name=stream)
    for sig in signals:
        yield from bps.read(sig)
    yield from bps.save()


def eis(
    potentiostat: Any,
    *,
    frequency_start_Hz: float = 1e6,
    frequency_stop_Hz: float = 0.1,
    points_per_decade: int = 10,
    amplitude_V: float = 0.010,
    dc_V: float = 0.0,
    md: dict[str, Any] | None = None,
) -> Plan:
    """Potentiostatic EIS from ``frequency_start_Hz`` down to ``frequency_stop_Hz``.

    Defaults are the paper's: 1 MHz–100 mHz, 10 mV amplitude.
    """
    technique = Impedance(
        frequency_start_Hz=frequency_start_Hz,
        frequency_stop_Hz=frequency_stop_Hz,
        points_per_decade=points_per_decade,
        amplitude=amplitude_V,
        dc_V=dc_V,
    )
    parameters = technique.__dict__
    uid = yield from bps.open_run(_start_metadata("eis", potentiostat, parameters, md))
    reason = yield from run_technique(potentiostat, technique)
    yield from bps.close_run(reason=reason)
    return uid


def galvanostatic_hold(
    potentiostat: Any,
    *,
    current_A: float,
    duration_s: float,
    interval_s: float = 1.0,
    voltage_min_V: float = -10.0,
    voltage_max_V: float = 10.0,
    md: dict[str, Any] | None = None,
) -> Plan:
    """Hold a constant current, ending early when the voltage leaves the window."""
    technique = GalvanostaticHold(
        current_A=current_A,
        duration_s=duration_s,
        interval_s=interval_s,
        voltage_min_V=voltage_min_V,
        voltage_max_V=voltage_max_V,
    )
    uid = yield from bps.open_run(
        _start_metadata("galvanostatic_hold", potentiostat, technique.__dict__, md)
    )
    reason = yield from run_technique(potentiostat, technique)
    yield from bps.close_run(reason=reason)
    return uid


def cycling_sequence(
    current_densities_mA_cm2: Sequence[float],
    *,
    area_cm2: float,
    half_cycle_s: float,
    cycles: int,
    interval_s: float,
    voltage_limit_V: float,
    on_limit: Literal["next_step", "stop"] = "stop",
) -> CurrentSequence:
    """The current sequence of a plating/stripping or CCD protocol.

    For each current density, ``cycles`` × (plate for ``half_cycle_s``, strip for
    ``half_cycle_s``), back to back; positive current plates Li on the counter electrode.
    """
    return CurrentSequence(
        steps=_cycling_steps(current_densities_mA_cm2, area_cm2, half_cycle_s, cycles),
        interval_s=interval_s,
        voltage_min_V=-voltage_limit_V,
        voltage_max_V=voltage_limit_V,
        on_limit=on_limit,
    )


def _cycling_steps(
    densities_mA_cm2: Sequence[float], area_cm2: float, half_cycle_s: float, cycles: int
) -> tuple[CurrentStep, ...]:
    if area_cm2 <= 0:
        raise ValueError(f"electrode area must be positive, got {area_cm2} cm²")
    if cycles < 1:
        raise ValueError(f"need at least one cycle per current density, got {cycles}")
    steps: list[CurrentStep] = []
    for j in densities_mA_cm2:
        if not j > 0:
            raise ValueError(f"current densities must be positive mA/cm², got {j}")
        current_A = j * 1e-3 * area_cm2
        for _ in range(cycles):
            steps += [CurrentStep(current_A, half_cycle_s), CurrentStep(-current_A, half_cycle_s)]
    return tuple(steps)


def plate_strip(
    potentiostat: Any,
    *,
    current_densities_mA_cm2: Sequence[float],
    area_cm2: float,
    half_cycle_s: float = 1800.0,
    cycles: int = 1,
    interval_s: float = 1.0,
    voltage_limit_V: float = 10.0,
    on_limit: Literal["next_step", "stop"] = "next_step",
    md: dict[str, Any] | None = None,
) -> Plan:
    """Plate and strip at each current density: ``cycles`` × (plate, strip) half-cycles.

    The in-situ protocol's defaults: 30 min half-cycles, 10 V cut-off moving on to the next
    step when the polarisation exceeds it. Positive current plates Li on the counter
    electrode.
    """
    technique = cycling_sequence(
        current_densities_mA_cm2,
        area_cm2=area_cm2,
        half_cycle_s=half_cycle_s,
        cycles=cycles,
        interval_s=interval_s,
        voltage_limit_V=voltage_limit_V,
        on_limit=on_limit,
    )
    parameters = {
        "current_densities_mA_cm2": list(current_densities_mA_cm2),
        "area_cm2": area_cm2,
        "half_cycle_s": half_cycle_s,
        "cycles": cycles,
        "interval_s": interval_s,
        "voltage_limit_V": voltage_limit_V,
        "on_limit": on_limit,
    }
    meta = _start_metadata("plate_strip", potentiostat, parameters, md)
    meta.setdefault("area_cm2", area_cm2)
    uid = yield from bps.open_run(meta)
    reason = yield from run_technique(potentiostat, technique)
    yield from bps.close_run(reason=reason)
    return uid


def ccd_test(
    potentiostat: Any,
    *,
    area_cm2: float = 1.0,
    current_densities_mA_cm2: Sequence[float] | None = None,
    half_cycle_s: float = 3600.0,
    cycles_per_step: int = 2,
    interval_s: float = 10.0,
    voltage_limit_V: float = 10.0,
    drop_fraction: float = 0.2,
    poll_s: float = 0.02,
    md: dict[str, Any] | None = None,
) -> Plan:
    """Critical-current-density test: rising current density until the cell shorts.

    Defaults are the paper's lab protocol (60 °C is the cell's business): 0.1, 0.25, 0.50 …
    4.0 mA/cm², 1 h half-cycles, 2 cycles per current density. The plan watches the data as
    it arrives; at a short (the voltage collapsing mid-half-cycle, see
    :func:`insitu.analysis.electrochem.shorts.find_short`) it stops the test, which switches the
    cell
    off, and records why it stopped. The run gets a ``results`` stream with the CCD and the
    charge-to-failure under each convention.
    """
    densities = list(current_densities_mA_cm2 or LAB_CCD_DENSITIES_MA_CM2)
    technique = cycling_sequence(
        densities,
        area_cm2=area_cm2,
        half_cycle_s=half_cycle_s,
        cycles=cycles_per_step,
        interval_s=interval_s,
        voltage_limit_V=voltage_limit_V,
    )
    parameters = {
        "current_densities_mA_cm2": densities,
        "area_cm2": area_cm2,
        "half_cycle_s": half_cycle_s,
        "cycles_per_step": cycles_per_step,
        "interval_s": interval_s,
        "voltage_limit_V": voltage_limit_V,
        "drop_fraction": drop_fraction,
    }
    meta = _start_metadata("ccd_test", potentiostat, parameters, md)
    meta.setdefault("area_cm2", area_cm2)
    window_s = 2 * half_cycle_s + 2 * interval_s

    def short_in(recent: pd.DataFrame) -> str | None:
        if len(recent) == 0:
            return None
        event = find_short(recent, drop_fraction=drop_fraction, min_current_A=1e-12)
        return None if event is None else "short"

    uid = yield from bps.open_run(meta)
    # Only the latest half-cycles can hold a new short: watching the tail keeps the check as
    # cheap at hour 60 as at hour 1.
    reason = yield from run_technique(
        potentiostat, technique, stop_when=short_in, watch_s=window_s, poll_s=poll_s
    )
    # The same analysis the command line and reports apply to the stored run.
    analysis = ccd_from_trace(potentiostat.points(), area_cm2, drop_fraction=drop_fraction)
    results: dict[str, float | str | None] = {
        "ccd_mA_cm2": analysis.ccd_mA_cm2,
        "short_time_s": None if analysis.short is None else analysis.short.time_s,
        **{f"charge_to_failure_{k}_C_cm2": v for k, v in analysis.charge_to_failure_C_cm2.items()},
    }
    yield from _emit_results(results)
    stopped = "short" if analysis.shorted else reason
    yield from bps.close_run(reason=stopped)
    return uid


def conductivity_vs_temperature(
    potentiostat: Any,
    oven: Any,
    *,
    temperatures_C: Sequence[float] = (25.0, 40.0, 60.0, 80.0),
    frequency_start_Hz: float = 1e6,
    frequency_stop_Hz: float = 0.1,
    points_per_decade: int = 10,
    amplitude_V: float = 0.010,
    thickness_cm: float | None = None,
    area_cm2: float = 1.0,
    md: dict[str, Any] | None = None,
) -> Plan:
    """At each temperature: set the oven, wait until it has settled, measure EIS.

    One run: before each spectrum the settled oven is read into the ``temperature`` stream,
    then the spectrum goes to the ``eis`` stream; each spectrum belongs to the latest
    ``temperature`` event before it (see :func:`spectra_by_temperature`).
    """
    if not temperatures_C:
        raise ValueError("give at least one temperature")
    parameters = {
        "temperatures_C": list(temperatures_C),
        "frequency_start_Hz": frequency_start_Hz,
        "frequency_stop_Hz": frequency_stop_Hz,
        "points_per_decade": points_per_decade,
        "amplitude_V": amplitude_V,
        "thickness_cm": thickness_cm,
        "area_cm2": area_cm2,
    }
    meta = _start_metadata("conductivity_vs_temperature", potentiostat, parameters, md)
    meta.setdefault("area_cm2", area_cm2)
    if thickness_cm is not None:
        meta.setdefault("thickness_cm", thickness_cm)
    technique = Impedance(
        frequency_start_Hz=frequency_start_Hz,
        frequency_stop_Hz=frequency_stop_Hz,
        points_per_decade=points_per_decade,
        amplitude=amplitude_V,
    )
    uid = yield from bps.open_run(meta)
    for temperature_C in temperatures_C:
        yield from bps.mv(oven, temperature_C + 273.15)
        # The oven's settled temperature, recorded once per setpoint in its own stream.
        yield from bps.trigger_and_read([oven], name="temperature")
        yield from run_technique(potentiostat, technique)
    yield from bps.close_run()
    return uid
