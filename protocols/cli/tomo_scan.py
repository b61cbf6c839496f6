"""``insitu tomo-scan``: a simulated tomography scan of a virtual pellet.

What it runs is :func:`insitu.protocols.workflows.tomo.run_tomo_scan`; here are the options,
the progress bar and the printed summary.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from contextlib import nullcontext
from typing import TYPE_CHECKING

from tqdm import tqdm

from insitu.simulators.errors import SimulatorInputError

from ..errors import InvalidInputError
from .common import add_output_options, add_storage_options, emit, open_store, require_positive

if TYPE_CHECKING:
    from insitu.simulators.beamline.faults import BeamlineFaults

__all__ = ["cmd_tomo_scan", "register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``tomo-scan`` to the ``insitu`` parser."""
    tomo = subparsers.add_parser(
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
        choices=("small", "medium", "full", "region"),
        default="small",
        help="small: 64×128×128 voxels of 3 µm, seconds; medium: the same pellet at "
        "128×256×256 of 1.5 µm, tens of seconds; full: 1143×2000×2000 of 0.7 µm, "
        "~7 min on 2 shared cores (≈ 7 min of CPU) and ~14 GB of scratch disk; "
        "region: the full size's rows "
        "through a 96×96-column window, tens of seconds (reconstruct it with "
        "--sample-diameter-um 3000 --center 47.5) (default small)",
    )
    tomo.add_argument(
        "--projections",
        type=int,
        help="projections over 180° (default 180 small, 360 medium, 1500 full and region)",
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
        "--faults",
        metavar="SPEC",
        help="faults of the simulated beamline, counted from the scan's first frame (darks "
        "and flats included) and move: lose_frame=N (frame N is lost and retaken, at most "
        "twice; repeat for more), stall=N (the N-th stage move stalls: the scan ends, exit "
        "2, the frames so far kept), beam_loss=N[:S] (the beam goes at frame N and comes "
        "back after S simulated s, never without :S; the scan suspends and resumes), e.g. "
        "'lose_frame=12,beam_loss=40:5'; the JSON then has beamline_faults, what was done",
    )
    tomo.add_argument(
        "--store",
        action="store_true",
        help="also store the run in the catalog (frames referenced from --out; the embedded "
        "catalog serves them only if --out lies under its data folder)",
    )
    add_output_options(tomo, progress=True)
    add_storage_options(tomo)
    tomo.set_defaults(func=cmd_tomo_scan)


def _check(args: argparse.Namespace) -> BeamlineFaults | None:
    """The option values, checked before the virtual cell is built; the faults parsed."""
    if not args.charge_mC >= 0:
        raise InvalidInputError(f"--charge-mC must be zero or positive, got {args.charge_mC:g}")
    require_positive(exposure=args.exposure, speedup=args.speedup)
    if args.projections is not None and args.projections < 2:
        raise InvalidInputError(f"--projections must be at least 2, got {args.projections}")
    for name in ("darks", "flats"):
        if getattr(args, name) < 1:
            raise InvalidInputError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.faults is None:
        return None
    # Here, not at the top: the beamline's room imports ophyd, which `insitu --help` skips.
    from insitu.simulators.beamline.faults import BeamlineFaults

    try:
        faults = BeamlineFaults.parse(args.faults)
    except SimulatorInputError as exc:
        raise InvalidInputError(f"--faults: {exc}") from None
    return faults if faults.any else None


class _FrameBar:
    """A frame counter on stderr, opened with the first frame: an early error prints alone."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar: tqdm | None = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = tqdm(
                total=total,
                unit="frame",
                desc="tomo-scan",
                disable=self.quiet,
                file=sys.stderr,
                leave=False,
            )
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def cmd_tomo_scan(args: argparse.Namespace) -> int:
    """Scan a virtual pellet on the simulated beamline; print the file and the ground truth."""
    from insitu.simulators.materials import get_material

    from ..workflows.tomo import run_tomo_scan

    material = get_material(args.sim).name  # unknown names fail before anything runs
    faults = _check(args)
    quiet = args.quiet or args.json
    bar = _FrameBar(quiet)
    # With --json, stdout carries the one JSON object only: the RunEngine's own messages (a
    # suspension for a beam loss) go to stderr meanwhile.
    quiet_stdout = contextlib.redirect_stdout(sys.stderr) if args.json else nullcontext()
    try:
        with quiet_stdout, open_store(args) if args.store else nullcontext() as store:
            result = run_tomo_scan(
                material,
                args.out,
                charge_mC=args.charge_mC,
                size=args.size,
                n_projections=args.projections,
                exposure_s=args.exposure,
                mode=args.mode,
                n_darks=args.darks,
                n_flats=args.flats,
                speedup=args.speedup,
                seed=args.seed,
                overwrite=args.overwrite,
                store=store,
                workdir=args.workdir,
                precompute_progress=None if not quiet else False,
                progress=bar,
                faults=faults,
            )
    finally:
        bar.close()
    truth = result["ground_truth"]
    human = [
        f"wrote {result['file']}  ({' × '.join(map(str, result['shape']))} projections)",
        f"{material} after {truth['charge_passed_mC']:.3g} mC"
        + (" (shorted)" if truth["shorted"] else "")
        + f": porosity {truth['porosity']:.3f}, {truth['n_cracks']} crack(s), "
        f"crack volume {truth['crack_volume_m3'] * 1e18:.4g} µm³",
        f"ground truth: {result['truth_json']}",
        f"run: {result['run_uid']}" + ("" if result["stored"] else " (not stored; --store)"),
    ]
    if "beamline_faults" in result:
        human.append(_faults_line(result["beamline_faults"]))
    return emit(args, result, human)


def _faults_line(done: dict) -> str:
    """What the beamline faults did, in one line."""
    return (
        f"beamline faults {done['asked']}: {done['frames_lost']} frame(s) lost, "
        f"{done['frames_retaken']} retaken; {done['beam_losses']} beam loss(es), "
        f"{done['suspensions']} suspension(s) of the scan"
    )
