"""The ``insitu`` command line: the parser and the error handling.

Every command that produces numbers takes ``--json`` and then prints exactly one JSON object
on stdout. Errors a user can cause print one line on stderr and exit with status 2. What each
command does is in :mod:`insitu.protocols.cli.lab`.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Sequence

from insitu.analysis.provenance import software_version
from insitu.instruments.errors import InstrumentError

from . import lab as commands
from .analyze_tomo import add_analyze_tomo_parser
from .experiment import add_demo_parser, add_experiment_parser
from .materials import add_analyze_materials_parser
from .queue_server import add_queue_server_parser
from .recon import add_recon_parser

__all__ = ["main"]


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas, got {text!r}"
        ) from None


def _add_sim_options(parser: argparse.ArgumentParser, default_protocol: str | None) -> None:
    sim = parser.add_argument_group("simulated bench (only for --instrument sim:MATERIAL)")
    sim.add_argument(
        "--speedup",
        type=float,
        default=1e5,
        help="simulated seconds per real second (default 1e5: the 68 h lab CCD in seconds)",
    )
    sim.add_argument("--seed", type=int, default=0, help="seed of noise and damage (default 0)")
    sim.add_argument(
        "--sim-protocol",
        choices=("keithley2450", "methodscript"),
        default=default_protocol,
        help=f"which instrument the simulated bench emulates (default {default_protocol})",
    )


def _add_storage_options(parser: argparse.ArgumentParser) -> None:
    store = parser.add_argument_group("storage")
    store.add_argument(
        "--data",
        metavar="DIR",
        default=None,
        help="folder of the embedded catalog (default ./insitu-data or $INSITU_DATA)",
    )
    store.add_argument("--catalog", metavar="URI", help="a tiled server instead of the folder")
    store.add_argument("--api-key", help="API key of the tiled server")


def _add_output_options(parser: argparse.ArgumentParser, progress: bool = False) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object with results")
    if progress:
        parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="insitu",
        description="Run and analyse in-situ experiments on solid-state battery cells.",
    )
    parser.add_argument("--version", action="version", version=f"insitu {software_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add_demo_parser(sub)
    add_experiment_parser(sub)

    ccd = sub.add_parser(
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
        type=_floats,
        metavar="J1,J2,...",
        help="current densities in mA/cm² (default 0.1,0.25,0.5,...,4.0)",
    )
    ccd.add_argument("--half-cycle", type=float, default=3600.0, help="half-cycle, s (3600)")
    ccd.add_argument("--cycles", type=int, default=2, help="cycles per current density (2)")
    ccd.add_argument("--interval", type=float, default=10.0, help="sampling interval, s (10)")
    ccd.add_argument("--voltage-limit", type=float, default=10.0, help="stop above |V| (10)")
    ccd.add_argument("--sample", help="sample name for the run's metadata")
    ccd.add_argument("--timeout", type=float, default=5.0, help="instrument timeout, s (5)")
    _add_output_options(ccd, progress=True)
    _add_sim_options(ccd, "keithley2450")
    _add_storage_options(ccd)
    ccd.set_defaults(func=commands.cmd_ccd)

    cond = sub.add_parser(
        "conductivity",
        help="ionic conductivity over temperature (EIS at each oven temperature)",
        description="At each temperature: set the oven, wait until it settles, measure EIS; "
        "then σ = L/(R·A) per temperature and Eₐ in both Arrhenius conventions.",
    )
    cond.add_argument("--instrument", required=True, metavar="RESOURCE")
    cond.add_argument("--oven", metavar="RESOURCE", help="Lake Shore 336 resource (sim: auto)")
    cond.add_argument(
        "--temperatures",
        type=_floats,
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
    _add_output_options(cond, progress=True)
    _add_sim_options(cond, "methodscript")
    _add_storage_options(cond)
    cond.set_defaults(func=commands.cmd_conductivity)

    tomo = sub.add_parser(
        "tomo-scan",
        help="simulated tomography scan of a virtual pellet (APS Data Exchange file)",
        description="Cycle a virtual Li|SE|Li cell through the in-situ protocol until "
        "--charge-mC has passed (or it shorts), then run the tomo_scan plan (darks, flats, "
        "projections over 180°, flats and darks) on the simulated 2-BM bench. Writes the Data "
        "Exchange file at --out, the ground truth next to it as FILE.truth.json and (small "
        "size) the label volume as FILE.truth.h5.",
    )
    tomo.add_argument("--sim", required=True, metavar="MATERIAL", help="A-LPS, LPS:0.5LiI, ...")
    tomo.add_argument("--out", required=True, metavar="FILE.h5", help="Data Exchange file")
    tomo.add_argument(
        "--charge-mC", type=float, default=0.0, help="charge passed before the scan (0: pristine)"
    )
    tomo.add_argument(
        "--size",
        choices=("small", "full"),
        default="small",
        help="small: 64×128×128 voxels of 3 µm, seconds; full: 1143×2000×2000 of 0.7 µm, "
        "~30–45 min on 2 cores and ~14 GB of scratch disk (default small)",
    )
    tomo.add_argument(
        "--projections", type=int, help="projections over 180° (default 180 small, 1500 full)"
    )
    tomo.add_argument("--exposure", type=float, default=0.1, help="exposure per frame, s (0.1)")
    tomo.add_argument("--mode", choices=("step", "fly"), default="step", help="scan mode (step)")
    tomo.add_argument("--darks", type=int, default=10, help="darks before and after (10)")
    tomo.add_argument("--flats", type=int, default=10, help="flats before and after (10)")
    tomo.add_argument(
        "--speedup", type=float, default=1e3, help="simulated s per real s of the bench (1e3)"
    )
    tomo.add_argument("--seed", type=int, default=0, help="seed of cracks, pores, noise (0)")
    tomo.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    tomo.add_argument("--workdir", metavar="DIR", help="scratch folder for the full size")
    tomo.add_argument(
        "--store",
        action="store_true",
        help="also store the run in the catalog (frames referenced from --out; the embedded "
        "catalog serves them only if --out lies under its data folder)",
    )
    _add_output_options(tomo, progress=True)
    _add_storage_options(tomo)
    tomo.set_defaults(func=commands.cmd_tomo_scan)

    add_recon_parser(sub)
    add_queue_server_parser(sub)

    analyze = sub.add_parser("analyze", help="analyse measured files or stored runs")
    an_sub = analyze.add_subparsers(dest="what", required=True, metavar="WHAT")
    an_eis = an_sub.add_parser(
        "eis",
        help="electrolyte resistance (and σ) of a spectrum",
        description="SOURCE is a file (.mpt, .mpr, .csv) or a stored run (uid, uid prefix or "
        "index; its 'eis' stream).",
    )
    an_eis.add_argument("source", metavar="SOURCE")
    an_eis.add_argument("--cell", choices=("blocking", "li"), default="blocking")
    an_eis.add_argument(
        "--method", choices=("fit", "spike_intercept", "hf_intercept"), default="fit"
    )
    an_eis.add_argument("--thickness-cm", type=float, help="for σ = L/(R·A)")
    an_eis.add_argument("--area-cm2", type=float, help="for σ = L/(R·A)")
    _add_output_options(an_eis)
    _add_storage_options(an_eis)
    an_eis.set_defaults(func=commands.cmd_analyze_eis)
    an_ccd = an_sub.add_parser(
        "ccd",
        help="CCD and charge-to-failure of a cycling trace",
        description="SOURCE is a file (.mpt, .mpr, .csv) or a stored run ('electrochem').",
    )
    an_ccd.add_argument("source", metavar="SOURCE")
    an_ccd.add_argument("--area-cm2", type=float, help="electrode area (runs record it)")
    _add_output_options(an_ccd)
    _add_storage_options(an_ccd)
    an_ccd.set_defaults(func=commands.cmd_analyze_ccd)
    add_analyze_tomo_parser(an_sub)
    _add_storage_options(add_analyze_materials_parser(an_sub))

    runs = sub.add_parser("runs", help="list the stored runs")
    runs.add_argument("--limit", type=int, default=None, help="only the last N runs")
    runs.add_argument(
        "--experiment", metavar="ID", help="only the runs of this in-situ experiment, in order"
    )
    _add_output_options(runs)
    _add_storage_options(runs)
    runs.set_defaults(func=commands.cmd_runs)

    export = sub.add_parser("export", help="write a stored run's data as CSV, Parquet or .mpt")
    export.add_argument("run", metavar="RUN", help="uid, uid prefix or index (-1: latest)")
    export.add_argument("--format", choices=("csv", "parquet", "mpt"), default="csv")
    export.add_argument("--stream", help="which stream (default electrochem, else eis)")
    export.add_argument("--out", metavar="PATH", help="output file (default UID-STREAM.FORMAT)")
    _add_output_options(export)
    _add_storage_options(export)
    export.set_defaults(func=commands.cmd_export)

    report = sub.add_parser("report", help="write the HTML report of a stored run")
    report.add_argument("run", metavar="RUN", help="uid, uid prefix or index (-1: latest)")
    report.add_argument("--out", metavar="FILE.html", help="default UID-report.html")
    _add_output_options(report)
    _add_storage_options(report)
    report.set_defaults(func=commands.cmd_report)

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
    serve.set_defaults(func=commands.cmd_sim_serve)
    materials = sim_sub.add_parser("materials", help="list the material presets")
    materials.add_argument("--json", action="store_true")
    materials.set_defaults(func=commands.cmd_sim_materials)

    inst = sub.add_parser("instrument", help="talk to an instrument")
    inst_sub = inst.add_subparsers(dest="inst_command", required=True, metavar="INSTCOMMAND")
    info = inst_sub.add_parser("info", help="connect and print the instrument's identity")
    info.add_argument("resource", metavar="RESOURCE")
    info.add_argument("--timeout", type=float, default=5.0)
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=commands.cmd_instrument_info)
    return parser


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _quiet_libraries() -> None:
    # Library chatter is not for the user of a command line: keep stdout for results and
    # stderr for our one-line errors and the progress bar.
    logging.getLogger("tiled").setLevel(logging.WARNING)
    logging.getLogger("bluesky").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*httpx.*starlette.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``insitu`` console script."""
    args = _parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    _quiet_libraries()
    if threading.current_thread() is threading.main_thread():
        # A polite kill (SIGTERM) unwinds like Ctrl-C, so every driver switches its cell off.
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        return func(args)
    except (InstrumentError, ValueError, OSError, KeyError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"insitu: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("insitu: interrupted; the cell was switched off", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
