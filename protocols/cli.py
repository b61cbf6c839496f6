"""The ``insitu`` command line.

Every command that produces numbers takes ``--json`` and then prints exactly one JSON object
on stdout. Errors a user can cause print one line on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version

from tqdm import tqdm

from insitu.instruments.errors import InstrumentError

__all__ = ["main"]


def _version() -> str:
    try:
        return version("insitu")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0+unknown"


def _add_sim_options(parser: argparse.ArgumentParser) -> None:
    sim = parser.add_argument_group("simulated bench (only for --instrument sim:MATERIAL)")
    sim.add_argument(
        "--speedup",
        type=float,
        default=1e5,
        help="simulated seconds per real second (default 1e5: the 68 h lab CCD in ~3 s)",
    )
    sim.add_argument("--seed", type=int, default=0, help="seed of noise and damage (default 0)")
    sim.add_argument(
        "--sim-protocol",
        choices=("keithley2450", "methodscript"),
        default="keithley2450",
        help="which instrument the simulated bench emulates (default keithley2450)",
    )


def _cmd_ccd(args: argparse.Namespace) -> int:
    from insitu.protocols.lab_ccd import lab_ccd_densities_mA_cm2, run_ccd
    from insitu.protocols.simbench import open_instrument

    densities = args.densities or lab_ccd_densities_mA_cm2()
    # Check what the user typed before any instrument or emulator is touched.
    for name, value in (
        ("--area-cm2", args.area_cm2),
        ("--half-cycle", args.half_cycle),
        ("--interval", args.interval),
        ("--voltage-limit", args.voltage_limit),
        ("--cycles", args.cycles),
    ):
        if not value > 0:
            raise ValueError(f"{name} must be positive, got {value:g}")
    if any(not j > 0 for j in densities):
        raise ValueError(f"--densities must all be positive mA/cm², got {densities}")
    with open_instrument(
        args.instrument,
        speedup=args.speedup,
        seed=args.seed,
        sim_protocol=args.sim_protocol,
        timeout_s=args.timeout,
    ) as (driver, _bench):
        bar = _progress_bar(
            total=len(densities) * args.cycles * 2 * args.half_cycle,
            unit="s",
            desc="CCD",
            quiet=args.quiet or args.json,
        )
        try:

            def progress(time_s: float, density_mA_cm2: float) -> None:
                bar.set_postfix_str(f"{density_mA_cm2:.2f} mA/cm²", refresh=False)
                bar.update(time_s - bar.n)

            result = run_ccd(
                driver,
                area_cm2=args.area_cm2,
                densities_mA_cm2=densities,
                half_cycle_s=args.half_cycle,
                cycles_per_step=args.cycles,
                interval_s=args.interval,
                voltage_limit_V=args.voltage_limit,
                progress=progress,
            )
        finally:
            bar.close()
    if args.csv:
        result.data.to_csv(args.csv, index=False)
    summary = {"instrument": args.instrument, **result.summary()}
    if args.json:
        print(json.dumps(summary))
    else:
        if result.ccd_mA_cm2 is None:
            print(f"no short: the cell survived the protocol ({result.stopped_because})")
        else:
            print(
                f"CCD: {result.ccd_mA_cm2:g} mA/cm² (short at {result.short.time_s / 3600:.3f} h)"
            )
        for convention, q in result.charge_to_failure_C_cm2.items():
            print(f"charge {convention}: {q:.3f} C/cm²")
        if args.csv:
            print(f"data: {args.csv}")
    return 0


def _cmd_sim_serve(args: argparse.Namespace) -> int:
    from insitu.protocols.simbench import start_emulator
    from insitu.simulators.cell import CellGeometry

    # Install the SIGTERM handler before the resource is printed: a client may read it and
    # ask us to stop at once, and the emulator must still shut down cleanly.
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    geometry = CellGeometry.lab_ccd()
    if args.temperature_C is not None:
        geometry = CellGeometry(
            **{**geometry.__dict__, "temperature_K": args.temperature_C + 273.15}
        )
    with start_emulator(
        args.material,
        protocol=args.protocol,
        speedup=args.speedup,
        seed=args.seed,
        geometry=geometry,
        port=args.port,
        transport=args.transport,
    ) as bench:
        if args.json:
            print(json.dumps({"resource": bench.resource, "material": args.material}), flush=True)
        else:
            print(bench.resource, flush=True)
            print(
                f"serving a virtual {args.material} cell as {args.protocol} at speed-up "
                f"{args.speedup:g}; Ctrl-C stops",
                file=sys.stderr,
                flush=True,
            )
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
    return 0


def _cmd_sim_materials(args: argparse.Namespace) -> int:
    from insitu.simulators.materials import MATERIALS

    rows = [m.__dict__ for m in MATERIALS.values()]
    if args.json:
        print(json.dumps(rows))
    else:
        for m in MATERIALS.values():
            print(
                f"{m.name:<11} σ(25 °C) {m.sigma_rt_S_cm:.2e} S/cm  "
                f"Eₐ {m.activation_energy_eV:.3f} eV  CCD {m.ccd_mA_cm2:g} mA/cm²"
                f"  — {m.description}"
            )
    return 0


def _cmd_instrument_info(args: argparse.Namespace) -> int:
    from insitu.instruments.resources import open_potentiostat

    with open_potentiostat(args.resource, timeout_s=args.timeout) as driver:
        ident = driver.identify()
        caps = sorted(t.__name__ for t in driver.capabilities)
    if args.json:
        print(json.dumps({**ident.__dict__, "resource": args.resource, "capabilities": caps}))
    else:
        print(ident)
        print(f"resource: {args.resource}")
        print(f"can run: {', '.join(caps)}")
    return 0


def _progress_bar(total: float, unit: str, desc: str, quiet: bool) -> tqdm:
    return tqdm(total=total, unit=unit, desc=desc, disable=quiet, file=sys.stderr, leave=False)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="insitu",
        description="Run and analyse in-situ experiments on solid-state battery cells.",
    )
    parser.add_argument("--version", action="version", version=f"insitu {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ccd = sub.add_parser(
        "ccd",
        help="critical-current-density test (the seed paper's lab protocol by default)",
        description="Run a CCD test: stepwise current density, 1 h half-cycles, 2 cycles per "
        "step, until the cell shorts. RESOURCE is a real instrument (e.g. "
        "TCPIP::192.168.0.10::5025::SOCKET, /dev/ttyACM0) or sim:MATERIAL.",
    )
    ccd.add_argument("--instrument", required=True, metavar="RESOURCE")
    ccd.add_argument("--area-cm2", type=float, default=1.0, help="electrode area (default 1.0)")
    ccd.add_argument(
        "--densities",
        type=lambda s: [float(x) for x in s.split(",")],
        metavar="J1,J2,...",
        help="current densities in mA/cm² (default 0.1,0.25,0.5,...,4.0)",
    )
    ccd.add_argument("--half-cycle", type=float, default=3600.0, help="half-cycle, s (3600)")
    ccd.add_argument("--cycles", type=int, default=2, help="cycles per current density (2)")
    ccd.add_argument("--interval", type=float, default=10.0, help="sampling interval, s (10)")
    ccd.add_argument("--voltage-limit", type=float, default=10.0, help="stop above |V| (10)")
    ccd.add_argument("--csv", metavar="FILE", help="also write every point to this CSV file")
    ccd.add_argument("--timeout", type=float, default=5.0, help="instrument timeout, s (5)")
    ccd.add_argument("--json", action="store_true", help="print one JSON object with results")
    ccd.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_sim_options(ccd)
    ccd.set_defaults(func=_cmd_ccd)

    sim = sub.add_parser("sim", help="simulators: emulator servers and material presets")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True, metavar="SIMCOMMAND")
    serve = sim_sub.add_parser(
        "serve",
        help="serve a virtual cell through an instrument emulator on 127.0.0.1",
        description="Start an emulator and print the resource string a client should use.",
    )
    serve.add_argument("--protocol", choices=("keithley2450", "methodscript"), required=True)
    serve.add_argument("--material", required=True, help="A-LPS, LPS:0.5LiI, LiI-AT or LiI-AN")
    serve.add_argument("--speedup", type=float, default=1.0, help="simulated s per real s (1)")
    serve.add_argument("--port", type=int, default=0, help="TCP port (default: a free one)")
    serve.add_argument(
        "--transport",
        choices=("tcp", "pty"),
        default="tcp",
        help="methodscript only: socket:// URL (tcp) or pseudo-terminal path (pty)",
    )
    serve.add_argument("--seed", type=int, default=0)
    serve.add_argument("--temperature-C", type=float, default=None, help="cell temperature (60)")
    serve.add_argument("--json", action="store_true")
    serve.set_defaults(func=_cmd_sim_serve)
    materials = sim_sub.add_parser("materials", help="list the material presets")
    materials.add_argument("--json", action="store_true")
    materials.set_defaults(func=_cmd_sim_materials)

    inst = sub.add_parser("instrument", help="talk to an instrument")
    inst_sub = inst.add_subparsers(dest="inst_command", required=True, metavar="INSTCOMMAND")
    info = inst_sub.add_parser("info", help="connect and print the instrument's identity")
    info.add_argument("resource", metavar="RESOURCE")
    info.add_argument("--timeout", type=float, default=5.0)
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=_cmd_instrument_info)
    return parser


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``insitu`` console script."""
    args = _parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    if threading.current_thread() is threading.main_thread():
        # A polite kill (SIGTERM) unwinds like Ctrl-C, so every driver switches its cell off.
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        return func(args)
    except (InstrumentError, ValueError, OSError) as exc:
        print(f"insitu: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("insitu: interrupted; the cell was switched off", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
