"""``insitu ccd`` and ``insitu conductivity``: the lab tests on a bench potentiostat.

What they run is :mod:`insitu.protocols.workflows.lab`; here are the options, the progress
bar and the printed summary.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from tqdm import tqdm

from insitu.simulators.errors import SimulatorInputError
from insitu.simulators.faults import InstrumentFaults, WireFaults

from ..errors import InvalidInputError
from .common import (
    add_emulator_option,
    add_output_options,
    add_storage_options,
    emit,
    floats,
    open_store,
    require_positive,
)

__all__ = ["cmd_ccd", "cmd_conductivity", "register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``ccd`` and ``conductivity`` to the ``insitu`` parser."""
    _add_ccd(subparsers)
    _add_conductivity(subparsers)


def _add_sim_options(parser: argparse.ArgumentParser, default_emulator: str) -> None:
    sim = parser.add_argument_group("simulated bench (only for --instrument sim:MATERIAL)")
    sim.add_argument(
        "--speedup",
        type=float,
        default=1e5,
        help="simulated seconds per real second (default 1e5: the 68 h lab CCD in seconds)",
    )
    sim.add_argument("--seed", type=int, default=0, help="seed of noise and damage (default 0)")
    sim.add_argument(
        "--faults",
        metavar="SPEC",
        type=_faults,
        help="a faulty cable between the driver and the emulator, e.g. "
        "'delay=1%%:0.2,garble=0.5%%,drop=0.1%%,split=1%%,disconnect=400' (per reply line; "
        "disconnect=N cuts the link after N reply lines; the seed is --seed's), and faults of "
        "the instrument itself: error=N (its own error after N points), overload=N (in "
        "compliance after N points)",
    )
    add_emulator_option(
        sim,
        default=default_emulator,
        help=f"which instrument the simulated bench emulates (default {default_emulator})",
    )


def _faults(text: str) -> tuple[WireFaults, InstrumentFaults]:
    """``--faults SPEC``: the wire's and the instrument's (the seed is set later, from
    ``--seed``)."""
    try:
        return WireFaults.parse(text), InstrumentFaults.parse(text)
    except SimulatorInputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_ccd(subparsers: argparse._SubParsersAction) -> None:
    ccd = subparsers.add_parser(
        "ccd",
        help="critical-current-density test (the seed paper's lab protocol by default)",
        description="Run a CCD test as a Bluesky plan: stepwise current density, 1 h "
        "half-cycles, 2 cycles per step, until the cell shorts; the test stops and switches "
        "the cell off at the short. RESOURCE is a real instrument (e.g. "
        "TCPIP::192.168.0.10::5025::SOCKET, /dev/ttyACM0) or sim:MATERIAL. Every point is "
        "stored in the catalog.",
    )
    ccd.add_argument("--instrument", required=True, metavar="RESOURCE")
    ccd.add_argument("--area-cm2", type=float, default=1.0, help="electrode area (default 1.0)")
    ccd.add_argument(
        "--densities",
        type=floats,
        metavar="J1,J2,...",
        help="current densities in mA/cm² (default 0.1,0.25,0.5,...,4.0)",
    )
    ccd.add_argument("--half-cycle", type=float, default=3600.0, help="half-cycle, s (3600)")
    ccd.add_argument("--cycles", type=int, default=2, help="cycles per current density (2)")
    ccd.add_argument("--interval", type=float, default=10.0, help="sampling interval, s (10)")
    ccd.add_argument("--voltage-limit", type=float, default=10.0, help="stop above |V| (10)")
    ccd.add_argument("--sample", help="sample name for the run's metadata")
    ccd.add_argument("--timeout", type=float, default=5.0, help="instrument timeout, s (5)")
    add_output_options(ccd, progress=True)
    _add_sim_options(ccd, "keithley2450")
    add_storage_options(ccd)
    ccd.set_defaults(func=cmd_ccd)


def _add_conductivity(subparsers: argparse._SubParsersAction) -> None:
    cond = subparsers.add_parser(
        "conductivity",
        help="ionic conductivity over temperature (EIS at each oven temperature)",
        description="At each temperature: set the oven, wait until it settles, measure EIS; "
        "then σ = L/(R·A) per temperature and Eₐ in both Arrhenius conventions.",
    )
    cond.add_argument("--instrument", required=True, metavar="RESOURCE")
    cond.add_argument("--oven", metavar="RESOURCE", help="Lake Shore 336 resource (sim: auto)")
    cond.add_argument(
        "--temperatures",
        type=floats,
        default=[25.0, 40.0, 60.0, 80.0],
        metavar="T1,T2,...",
        help="oven temperatures in °C (default 25,40,60,80)",
    )
    cond.add_argument("--thickness-cm", type=float, help="pellet thickness (sim: the cell's)")
    cond.add_argument("--area-cm2", type=float, help="electrode area (sim: the cell's)")
    cond.add_argument("--f-start", type=float, default=1e6, help="highest frequency, Hz (1e6)")
    cond.add_argument("--f-stop", type=float, default=0.1, help="lowest frequency, Hz (0.1)")
    cond.add_argument("--points-per-decade", type=int, default=10)
    cond.add_argument("--amplitude", type=float, default=0.010, help="EIS amplitude, V (0.010)")
    cond.add_argument("--settle-time", type=float, default=600.0, help="oven settle time, s (600)")
    cond.add_argument("--sample", help="sample name for the run's metadata")
    cond.add_argument("--timeout", type=float, default=5.0, help="instrument timeout, s (5)")
    add_output_options(cond, progress=True)
    _add_sim_options(cond, "methodscript")
    add_storage_options(cond)
    cond.set_defaults(func=cmd_conductivity)


@contextmanager
def _progress(total_s: float, desc: str, quiet: bool, area_cm2: float = 1.0) -> Iterator[Any]:
    """A progress bar on stderr fed by the workflow's (stream, time, point) calls."""
    bar = tqdm(total=total_s, unit="s", desc=desc, disable=quiet, file=sys.stderr, leave=False)

    def update(stream: str, time_s: float, point: Mapping[str, Any]) -> None:
        if stream == "electrochem":
            j = abs(float(point.get("current_A", 0.0))) / area_cm2 * 1e3
            bar.set_postfix_str(f"step {int(point.get('step', 0))}, {j:.2f} mA/cm²", refresh=False)
            bar.update(max(time_s - bar.n, 0))
        elif stream == "eis":
            bar.set_postfix_str(f"EIS {float(point.get('frequency_Hz', 0)):.3g} Hz", refresh=True)

    try:
        yield update
    finally:
        bar.close()


def _metadata(args: argparse.Namespace) -> dict[str, str]:
    return {"sample": args.sample} if args.sample else {}


#: Exit status of a command stopped by Ctrl-C or a signal (128 + SIGINT, as shells report).
INTERRUPTED = 130


def _report_interrupted(args: argparse.Namespace, exc: Any) -> int:
    """One line on stderr for a run stopped from outside: why, which run, how to export it.

    ``exc`` is a :class:`~insitu.protocols.workflows.interrupts.RunInterrupted`. stdout is
    left alone: it carries ``--json`` results only.
    """
    if exc.uid is None:
        print(f"insitu: {exc.reason}: stopped before the run started", file=sys.stderr)
        return INTERRUPTED
    where = [
        f"--{name.replace('_', '-')} {shlex.quote(str(getattr(args, name)))}"
        for name in ("data", "catalog")
        if getattr(args, name, None)
    ]
    export = " ".join(["insitu export", exc.uid[:8], "--format csv", *where])
    print(
        f"insitu: {exc.reason}: the cell was switched off; run {exc.uid} closed as abort "
        f"with its {exc.points} points; export them with `{export}`",
        file=sys.stderr,
    )
    return INTERRUPTED


def cmd_ccd(args: argparse.Namespace) -> int:
    """Run a CCD test and print CCD, charge-to-failure and the run uid.

    Ctrl-C, SIGTERM or SIGHUP stop it within a sampling interval: the cell switched off, the
    run closed as ``abort`` with every point, one line on stderr, exit status 130.
    """
    from ..plans.electrochem import lab_ccd_densities_mA_cm2
    from ..workflows.interrupts import RunInterrupted
    from ..workflows.lab import run_ccd

    densities = args.densities or lab_ccd_densities_mA_cm2()
    require_positive(
        area_cm2=args.area_cm2,
        half_cycle=args.half_cycle,
        interval=args.interval,
        voltage_limit=args.voltage_limit,
        cycles=args.cycles,
    )
    if any(not j > 0 for j in densities):
        raise InvalidInputError(f"--densities must all be positive mA/cm², got {densities}")
    total_s = len(densities) * args.cycles * 2 * args.half_cycle
    quiet = args.quiet or args.json
    try:
        # The progress bar is closed before the interruption's line is printed.
        with (
            open_store(args) as store,
            _progress(total_s, "CCD", quiet, args.area_cm2) as progress,
        ):
            result = run_ccd(
                args.instrument,
                store=store,
                area_cm2=args.area_cm2,
                current_densities_mA_cm2=densities,
                half_cycle_s=args.half_cycle,
                cycles_per_step=args.cycles,
                interval_s=args.interval,
                voltage_limit_V=args.voltage_limit,
                speedup=args.speedup,
                seed=args.seed,
                emulator=args.emulator,
                faults=args.faults and args.faults[0],
                instrument_faults=args.faults and args.faults[1],
                timeout_s=args.timeout,
                md=_metadata(args),
                progress=progress,
            )
    except RunInterrupted as exc:
        return _report_interrupted(args, exc)
    ccd = result["ccd_mA_cm2"]
    human = [
        "no short: the cell survived the protocol"
        if ccd is None
        else f"CCD: {ccd:g} mA/cm² (short at {result['short_time_s'] / 3600:.3f} h)"
    ]
    human += [
        f"charge-to-failure ({k}): {v:.3f} C/cm²"
        for k, v in result["charge_to_failure_C_cm2"].items()
    ]
    human.append(f"run: {result['run_uid']}  (insitu report {result['run_uid'][:8]})")
    return emit(args, {"instrument": args.instrument, **result}, human)


def cmd_conductivity(args: argparse.Namespace) -> int:
    """Measure EIS over temperatures and print σ per temperature and Eₐ per convention.

    Ctrl-C, SIGTERM or SIGHUP stop it as they stop ``insitu ccd`` (exit status 130).
    """
    from ..workflows.interrupts import RunInterrupted
    from ..workflows.lab import run_conductivity

    if not args.temperatures:
        raise InvalidInputError("give at least one temperature with --temperatures")
    for name in ("thickness_cm", "area_cm2"):
        if getattr(args, name) is not None:
            require_positive(**{name: getattr(args, name)})
    quiet = args.quiet or args.json
    try:
        with open_store(args) as store, _progress(0.0, "conductivity", quiet) as progress:
            result = run_conductivity(
                args.instrument,
                store=store,
                oven=args.oven,
                temperatures_C=args.temperatures,
                thickness_cm=args.thickness_cm,
                area_cm2=args.area_cm2,
                frequency_start_Hz=args.f_start,
                frequency_stop_Hz=args.f_stop,
                points_per_decade=args.points_per_decade,
                amplitude_V=args.amplitude,
                speedup=args.speedup,
                seed=args.seed,
                emulator=args.emulator,
                faults=args.faults and args.faults[0],
                instrument_faults=args.faults and args.faults[1],
                oven_settle_time_s=args.settle_time,
                timeout_s=args.timeout,
                md=_metadata(args),
                progress=progress,
            )
    except RunInterrupted as exc:
        return _report_interrupted(args, exc)
    human = [f"σ at {t} °C: {s:.4g} S/cm" for t, s in result["sigma_S_cm"].items()]
    human += [f"Eₐ ({k}): {v:.4f} eV" for k, v in result["ea_eV"].items()]
    human.append(f"run: {result['run_uid']}")
    return emit(args, {"instrument": args.instrument, **result}, human)
