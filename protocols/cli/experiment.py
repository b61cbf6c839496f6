"""``insitu demo`` and ``insitu experiment run|resume|status|report``: the in-situ experiment.

``insitu demo`` is the README's main job: the whole in-situ experiment (EIS, pristine scan,
plating and stripping at rising current density with a scan after every half-cycle, the short,
the failed cell's scan, EIS after) on the simulated bench, with the background analysis and the
HTML report, in a few minutes. What they run is :mod:`insitu.protocols.workflows.experiment`
(the file and the demo's settings: :mod:`~insitu.protocols.workflows.experiment_setup`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from typing import Any

from .common import add_emulator_option, print_json

__all__ = [
    "cmd_demo",
    "cmd_experiment_report",
    "cmd_experiment_resume",
    "cmd_experiment_run",
    "cmd_experiment_status",
    "register",
]

_CONFIG_HELP = """\
CONFIG is a YAML file; every key but `material` has the seed paper's value as default:

  sample: S1
  material: A-LPS                # A-LPS, LPS:0.5LiI, LiI-AT, LiI-AN (simulated) or any name
  geometry: {area_cm2: 0.0707}   # 3 mm pellet
  schedule:
    current_densities_mA_cm2: [0.04, 0.08, 0.1, 0.2, 0.3, 0.4, 0.5, ...]
    half_cycle_s: 1800           # 30 min per plating / stripping
    cycles_per_step: 1
    interval_s: 10
    voltage_limit_V: 10          # exceeding it moves on to the next current density
    drop_fraction: 0.2           # a short: |V| below this fraction of the half-cycle's
    short_confirm_ratio: 0.5     # EIS confirms it: |Z(f_min)| below this × before
    eis: {f_start_Hz: 1e6, f_stop_Hz: 0.1, points_per_decade: 10, amplitude_V: 0.01}
  limits: {max_current_density_mA_cm2: null, max_voltage_V: null}  # this sample's own
  scan: {n_projections: 180, exposure_s: 0.1, n_darks: 10, n_flats: 10, mode: step,
         min_ring_current_mA: 10, every_half_cycles: 1}
  adaptive: {after_crack_onset_every: null, crack_onset_um3: 1000, stop_before_charge_mC: null}
  analysis: {enabled: true, scheduler: process, workers: 1, psd: false, memory_gib: 2}
  catalog: {data: ./insitu-data}     # or {uri: http://host:8000, api_key_file: ~/.tiled.key}
  devices:
    potentiostat: sim            # or TCPIP::10.0.0.5::5025::SOCKET, /dev/ttyACM0, ...
    tomography: sim              # sim | sim-epics | epics (with epics_prefix: "2bma:") | none
    simulation: {emulator: methodscript, speedup: 2e4, rest_speedup: 100, seed: 0,
                 size: small}
  faults:                        # simulated devices only (a real one with faults is refused)
    potentiostat: "delay=1%:0.2,garble=0.5%,disconnect=400"  # as `insitu ccd --faults`:
                                 # per reply line delay=P[:S] garble=P drop=P split=P,
                                 # disconnect=N (after N lines); error=N overload=N (points)
    beamline: "lose_frame=12,beam_loss=40:5"  # as `insitu tomo-scan --faults`, counted from
                                 # the bench's opening: lose_frame=N (frame N lost, retaken),
                                 # stall=N (stage move N stalls), beam_loss=N[:S] (at frame N,
                                 # back after S simulated s); the JSON's `faults` says what
                                 # was done
  output: experiments            # the experiment's folder is OUTPUT/ID
"""


def _human(result: dict[str, Any]) -> list[str]:
    lines = [f"experiment {result['experiment_id']} ({result.get('material')})"]
    reason = result.get("end_reason")
    lines.append(
        f"ended: {reason}; charge passed {result.get('charge_passed_mC', 0):.4g} mC in "
        f"{result.get('n_segments')} segments, {result.get('n_scans')} scans"
    )
    if result.get("charge_to_failure_mC") is not None:
        lines.append(
            f"short at {result.get('ccd_mA_cm2')} mA/cm²; in-situ charge-to-failure "
            f"{result['charge_to_failure_mC']:.4g} mC"
        )
    scans = [t for t in result.get("tomograms") or [] if t.get("porosity") is not None]
    if scans:
        lines.append(
            f"{'scan':<36}{'charge mC':>10}{'porosity':>10}{'cracks µm³':>12}"
            f"{'crack count':>12}{'transparent µm³':>17}"
        )
        for t in scans:
            lines.append(
                f"{t.get('label') or t.get('step')!s:<36}{t.get('charge_mC') or 0:>10.3f}"
                f"{t['porosity']:>10.4f}{t.get('crack_volume_um3') or 0:>12.4g}"
                f"{t.get('crack_count') or 0:>12.0f}{t.get('transparent_volume_um3') or 0:>17.5g}"
            )
    for note in result.get("notes") or []:
        lines.append(f"note: {note}")
    if result.get("faults"):
        lines.append(_faults_line(result["faults"]))
    if result.get("report"):
        lines.append(f"report: {result['report']}")
    if result.get("wall_s") is not None:
        lines.append(f"took {result['wall_s']:.1f} s")
    return lines


def _faults_line(faults: dict[str, Any]) -> str:
    """What the file's faults did, in one line."""
    injected = faults.get("injected") or {}
    parts = []
    wire = injected.get("wire")
    if wire:
        done = ", ".join(f"{k} {v}" for k, v in wire.items() if k != "lines" and v)
        parts.append(f"wire {done or 'nothing'} in {wire.get('lines', 0)} reply lines")
    beam = injected.get("beamline")
    if beam:
        # The EPICS flavour counts beam losses only: say what was counted.
        words = {
            "frames_lost": "frame(s) lost",
            "frames_retaken": "retaken",
            "stage_stalls": "stall(s)",
            "beam_losses": "beam loss(es)",
        }
        done = ", ".join(f"{beam[k]} {w}" for k, w in words.items() if k in beam)
        parts.append(f"beamline {done}")
    parts.append(f"{faults.get('scan_suspensions', 0)} scan suspension(s)")
    parts.append(f"{faults.get('points_lost', 0)} point(s) lost")
    return "faults injected: " + "; ".join(parts)


def _quiet_stdout(args: argparse.Namespace) -> contextlib.AbstractContextManager[Any]:
    """With --json, stdout carries the one JSON object only: the RunEngine's own messages
    (a suspension for a beam loss, a deferred pause) go to stderr meanwhile."""
    if getattr(args, "json", False):
        return contextlib.redirect_stdout(sys.stderr)
    return contextlib.nullcontext()


def _print(args: argparse.Namespace, result: dict[str, Any]) -> int:
    if args.json:
        print_json(result, default=str, allow_nan=False)
    else:
        print("\n".join(_human(result)))
    return 0


def cmd_experiment_run(args: argparse.Namespace) -> int:
    """Validate the file, then run the experiment to its end."""
    from ..workflows.experiment import run_experiment
    from ..workflows.experiment_setup import load_experiment

    cfg = load_experiment(args.config, output=args.output, data=args.data)
    if args.check:
        print(json.dumps(cfg.to_dict(), indent=2) if args.json else f"{args.config}: valid")
        return 0
    with _quiet_stdout(args):
        result = run_experiment(
            cfg,
            experiment_id=args.id,
            out=None if args.quiet else sys.stderr,
            analysis=False if args.no_analysis else None,
        )
    return _print(args, result)


def cmd_experiment_resume(args: argparse.Namespace) -> int:
    """Continue an interrupted experiment from its next segment."""
    from ..workflows.experiment import resume_experiment

    with _quiet_stdout(args):
        result = resume_experiment(
            args.id,
            output=args.output,
            out=None if args.quiet else sys.stderr,
            analysis=False if args.no_analysis else None,
        )
    return _print(args, result)


def cmd_experiment_status(args: argparse.Namespace) -> int:
    """Print where an experiment stands."""
    from ..workflows.experiment import experiment_status

    status = experiment_status(args.id, args.output)
    if args.json:
        print_json(status, default=str)
        return 0
    state = (
        f"finished ({status['finished']})"
        if status["finished"]
        else "interrupted during segment "
        f"{status['interrupted']['index']} ({status['interrupted']['label']})"
        if status["interrupted"]
        else "in progress or stopped between segments"
    )
    print(f"experiment {status['experiment_id']} ({status['material']}): {state}")
    for seg in status["segments"]:
        print(
            f"  {seg['index']:3d} {seg['label']:<28} {seg['end_reason']:<14} "
            f"{seg['charge_mC']:8.3f} mC  {seg['run_uid'] or ''}"
        )
    if status["next_segment"]:
        print(f"next: {status['next_segment']['label']}")
    if status["report"]:
        print(f"report: {status['report']}")
    return 0


def cmd_experiment_report(args: argparse.Namespace) -> int:
    """Rebuild the report from the catalog and the analysis folder."""
    from ..workflows.experiment import experiment_report

    return _print(args, experiment_report(args.id, output=args.output))


def cmd_demo(args: argparse.Namespace) -> int:
    """The whole in-situ experiment on the simulated bench, analysis and report included."""
    from ..workflows.experiment import run_experiment
    from ..workflows.experiment_setup import demo_config

    t0 = time.perf_counter()
    cfg = demo_config(
        args.material,
        speedup=args.speedup,
        seed=args.seed,
        tomography=args.tomography,
        emulator=args.emulator,
        output=args.output,
        data=args.data,
    )
    if not args.json and not args.quiet:
        print(
            f"insitu demo: the in-situ experiment on a virtual {args.material} cell "
            f"(3 mm pellet, EmStat4/Keithley emulator over TCP, simulated 2-BM beamline "
            f"{'over EPICS' if args.tomography == 'sim-epics' else 'in-process'}); "
            f"{args.speedup:g}× simulated time",
            file=sys.stderr,
        )
    with _quiet_stdout(args):
        result = run_experiment(cfg, out=None if args.quiet else sys.stderr)
    result["wall_s"] = time.perf_counter() - t0
    return _print(args, result)


def _common(parser: argparse.ArgumentParser, *, output: bool = True) -> None:
    if output:
        parser.add_argument(
            "--output", metavar="DIR", help="folder of the experiments (default ./experiments)"
        )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``demo`` and ``experiment run|resume|status|report`` to the ``insitu`` parser."""
    _add_demo(subparsers)
    _add_experiment(subparsers)


def _add_experiment(subparsers: argparse._SubParsersAction) -> None:
    exp = subparsers.add_parser(
        "experiment",
        help="the in-situ experiment: plate/strip with a tomogram after every step",
        description="Run, resume and inspect in-situ experiments.",
    )
    exp_sub = exp.add_subparsers(dest="experiment_command", required=True, metavar="ACTION")
    run = exp_sub.add_parser(
        "run",
        help="run an experiment described by a YAML file",
        description="Validate CONFIG, then run the experiment: EIS, pristine scan, then per "
        "current density plate, scan, strip, scan, until the cell shorts (confirmed by "
        "EIS), then the failed cell's scan and EIS. Scans are reconstructed and analysed in "
        "the background; the report is written at the end.",
        epilog=_CONFIG_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("config", metavar="CONFIG", help="experiment YAML file")
    run.add_argument("--id", help="experiment id (default SAMPLE-DATE-TIME-xxxx)")
    run.add_argument("--data", metavar="DIR", help="catalog folder (overrides the file's)")
    run.add_argument("--check", action="store_true", help="only validate CONFIG")
    run.add_argument("--no-analysis", action="store_true", help="no reconstruction/analysis")
    run.add_argument("--quiet", action="store_true", help="no live view")
    _common(run)
    run.set_defaults(func=cmd_experiment_run)

    resume = exp_sub.add_parser(
        "resume",
        help="continue an interrupted experiment from its next segment",
        description="After a kill, a Ctrl-C or a restart: keep what the interrupted segment "
        "measured (electrochemistry is never repeated; a partial scan is retaken), restore "
        "the simulated cell, and continue.",
    )
    resume.add_argument("id", metavar="ID", help="experiment id (or its folder)")
    resume.add_argument("--no-analysis", action="store_true")
    resume.add_argument("--quiet", action="store_true")
    _common(resume)
    resume.set_defaults(func=cmd_experiment_resume)

    status = exp_sub.add_parser("status", help="where an experiment stands (from its journal)")
    status.add_argument("id", metavar="ID")
    _common(status)
    status.set_defaults(func=cmd_experiment_status)

    report = exp_sub.add_parser("report", help="write the experiment's HTML report again")
    report.add_argument("id", metavar="ID")
    _common(report)
    report.set_defaults(func=cmd_experiment_report)


def _add_demo(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="the whole in-situ experiment on the simulated bench (about a minute)",
        description="Run the in-situ experiment on a virtual cell: one cell behind a "
        "potentiostat emulator over TCP and imaged by the simulated beamline; scans "
        "reconstructed and analysed as they come in; the HTML report at the end.",
    )
    demo.add_argument("--material", default="A-LPS", help="A-LPS, LPS:0.5LiI, LiI-AT, LiI-AN")
    demo.add_argument("--speedup", type=float, default=2e4, help="simulated s per real s (2e4)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument(
        "--tomography",
        choices=("sim", "sim-epics"),
        default="sim",
        help="the simulated beamline in-process, or as an EPICS IOC (Channel Access)",
    )
    add_emulator_option(
        demo, default="methodscript", help="emulated potentiostat (the Keithley has no EIS)"
    )
    demo.add_argument("--output", default="experiments", metavar="DIR")
    demo.add_argument("--data", default=None, metavar="DIR", help="catalog folder")
    demo.add_argument("--quiet", action="store_true")
    _common(demo, output=False)
    demo.set_defaults(func=cmd_demo)
