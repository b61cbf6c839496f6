"""Benchmark: a short simulated in-situ experiment under a mixed fault load, against a clean run.

For each emulator, a short in-situ experiment (EIS, pristine scan, then at 0.04 and
0.08 mA/cm² plate, scan, strip, scan, then EIS; 10 min half-cycles at 10 s, scans of 30
projections; ``sim:A-LPS``, seed 0, the in-process beamline) runs twice with the same seed:

- *clean*: through a cable that counts reply lines but does nothing to them
  (``delay=1e-9``: a probability of one in a billion per line), so the number of reply lines
  the experiment needs is known;
- *faulty*: the issue's mixed load, given in the experiment file's ``faults`` section: by
  default 1 % of reply lines delayed by 0.2 s, 0.5 % garbled, one disconnect half way through
  the clean run's reply lines, one lost frame (the 12th) and one beam loss (at frame 40, back
  after 5 simulated s).

Printed per emulator and run: how it ended (finished with its end reason, or stopped with
the error), the points of the half-cycles measured against those expected (the clean run's,
up to where the faulty run got, and the schedule's: ``half_cycle_s / interval_s`` per
half-cycle) and lost (expected − measured; the driver's own count beside it), the EIS
points against the clean run's, the frames retaken, the scans written (complete, with every
projection), the scan suspensions (from the runs' ``interruptions`` streams), what
the link and the beamline injected, and the largest |current density| and |voltage| the
cell saw against the sample's limits. Nothing is asserted: the table is the result.

Usage: ``.venv/bin/python benchmarks/bench_reliability_experiment.py [--faults SPEC]
[--beamline SPEC] [--emulators ...]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from insitu.protocols.bench import Bench
from insitu.protocols.storage.catalog import RunStore
from insitu.protocols.storage.journal import read_journal
from insitu.protocols.workflows.experiment import run_experiment

DEFAULT_WIRE = "delay=1%:0.2,garble=0.5%"  # + disconnect=N, N from the clean run
DEFAULT_BEAMLINE = "lose_frame=12,beam_loss=40:5"
CLEAN_WIRE = "delay=1e-9"  # a link that counts lines and (in practice) does nothing
DENSITIES = [0.04, 0.08]
HALF_CYCLE_S, INTERVAL_S = 600.0, 10.0
LIMITS = {"max_current_density_mA_cm2": 0.1, "max_voltage_V": 10.0}
AREA_CM2 = np.pi * 0.15**2
N_PROJECTIONS = 30


def config(tmp: Path, emulator: str, faults: dict[str, str]) -> dict[str, Any]:
    """The short experiment, on the simulated bench."""
    return {
        "sample": "reliability",
        "material": "A-LPS",
        "schedule": {
            "current_densities_mA_cm2": DENSITIES,
            "half_cycle_s": HALF_CYCLE_S,
            "interval_s": INTERVAL_S,
            "voltage_limit_V": LIMITS["max_voltage_V"],
        },
        "limits": LIMITS,
        "scan": {"n_projections": N_PROJECTIONS, "n_darks": 4, "n_flats": 4},
        "analysis": {"enabled": False},
        "catalog": {"data": str(tmp / "data")},
        "output": str(tmp / "experiments"),
        "devices": {
            "potentiostat": "sim",
            "tomography": "sim",
            "simulation": {"emulator": emulator, "seed": 0},
        },
        "faults": faults,
    }


class BenchKeeper:
    """An experiment observer factory that keeps the bench (its fault counts survive an
    experiment that stops with an error, when no summary is returned)."""

    def __init__(self) -> None:
        self.bench: Bench | None = None

    def __call__(self, bench: Bench) -> None:
        self.bench = bench


def run(tmp: Path, emulator: str, faults: dict[str, str]) -> dict[str, Any]:
    """One experiment; how it ended, what its runs hold, what the faults did."""
    keeper = BenchKeeper()
    t0 = time.perf_counter()
    try:
        result = run_experiment(
            config(tmp, emulator, faults),
            experiment_id="bench",
            out=None,
            report=False,
            observers=[keeper],
        )
        ended = f"finished ({result['end_reason']})"
        summary = result.get("faults") or {}
    except Exception as exc:  # a stopped experiment is a result here, not a crash
        journal = read_journal(tmp / "experiments" / "bench")
        where = journal.interrupted or {"index": "?", "label": "between segments"}
        ended = (
            f"stopped in segment {where['index']} ({where['label']}): {type(exc).__name__}: {exc}"
        )
        summary = {}
    wall = time.perf_counter() - t0
    bench = keeper.bench
    injected = summary.get("injected") or (bench.faults_injected() if bench else {})
    driver = getattr(getattr(bench, "potentiostat", None), "driver", None)
    return {
        "ended": ended,
        "wall_s": wall,
        "injected": injected,
        "points_lost_driver": int(getattr(driver, "points_lost", 0)),
        **read_back(tmp / "data"),
        **scans(tmp / "experiments" / "bench" / "scans"),
    }


def _stream(run: Any, name: str) -> pd.DataFrame | None:
    try:
        return run.stream(name)
    except Exception:  # a run without that stream (or that never got a point)
        return None


def read_back(data: Path) -> dict[str, Any]:
    """From the catalog: the half-cycles' points by segment, the EIS points, the scans'
    suspensions and every electrochem point (the OCV during scans included)."""
    half: dict[int, pd.DataFrame] = {}
    every: list[pd.DataFrame] = []
    eis = suspended = 0
    with RunStore(data) as store:
        for uid in store.runs()["uid"]:
            run = store.load(uid)
            kind = run.start.get("experiment_segment")
            points = _stream(run, "electrochem")
            if points is not None:
                every.append(points)
                if kind in ("plate", "strip"):
                    half[int(run.start["segment_index"])] = points
            spectrum = _stream(run, "eis")
            eis += 0 if spectrum is None else len(spectrum)
            breaks = _stream(run, "interruptions")
            if breaks is not None and len(breaks):
                marks = breaks["interruption"].astype(str)
                suspended += int((~marks.isin(["pause", "resume"])).sum())
    points = pd.concat(every, ignore_index=True) if every else pd.DataFrame()
    return {"half_cycles": half, "points": points, "eis_points": eis, "suspended": suspended}


def scans(folder: Path) -> dict[str, Any]:
    """Scan files written, how many hold every projection, frames retaken in them."""
    files = sorted(p for p in folder.glob("tomo_*.h5") if ".partial" not in p.name)
    complete = retaken = 0
    for path in files:
        with h5py.File(path, "r") as f:
            complete += int(f["/exchange/data"].shape[0] == N_PROJECTIONS)
            key = "/process/acquisition/frames_retaken"
            retaken += int(f[key][()]) if key in f else 0
    return {"scans": len(files), "complete": complete, "retaken_in_files": retaken}


def expected_points(clean: dict[int, pd.DataFrame], faulty: dict[int, pd.DataFrame]) -> int:
    """The clean run's half-cycle points up to where the faulty run got, segment by segment."""
    if not faulty:
        return 0
    last = max(faulty)
    total = 0
    for index, points in clean.items():
        if index < last:
            total += len(points)
        elif index == last:
            reached = float(faulty[last]["time_s"].max()) if len(faulty[last]) else 0.0
            total += int(np.count_nonzero(points["time_s"] <= reached + 1e-9))
    return total


def print_run(
    name: str, r: dict[str, Any], expected: int, schedule: int, eis_expected: int
) -> None:
    measured = sum(len(p) for p in r["half_cycles"].values())
    points = r["points"]
    j_max = v_max = 0.0
    if len(points):
        j_max = float(np.abs(points["current_A"]).max()) * 1e3 / AREA_CM2
        v_max = float(np.abs(points["voltage_V"]).max())
    beam = r["injected"].get("beamline", {})
    wire = {k: v for k, v in r["injected"].get("wire", {}).items() if v}
    print(f"  {name}: {r['ended'][:260]}  ({r['wall_s']:.1f} s)")
    print(
        f"    points: {measured} measured of {expected} expected (clean run, up to where it "
        f"got; schedule {schedule}) -> lost {expected - measured} (driver counts "
        f"{r['points_lost_driver']}, any technique); EIS {r['eis_points']} of {eis_expected}"
    )
    print(
        f"    scans: {r['scans']} written, {r['complete']} with all {N_PROJECTIONS} "
        f"projections; frames retaken {beam.get('frames_retaken', r['retaken_in_files'])} "
        f"(files say {r['retaken_in_files']}); beam losses {beam.get('beam_losses', 0)}, "
        f"scan suspensions {r['suspended']}"
    )
    print(f"    wire: {wire or '-'}")
    print(
        f"    cell: max |j| {j_max:.4g} mA/cm² (limit {LIMITS['max_current_density_mA_cm2']:g}),"
        f" max |V| {v_max:.4g} V (limit {LIMITS['max_voltage_V']:g})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--faults", default=DEFAULT_WIRE, help="wire/instrument faults (no cut)")
    ap.add_argument("--beamline", default=DEFAULT_BEAMLINE)
    ap.add_argument("--emulators", nargs="+", default=["methodscript", "keithley2450"])
    args = ap.parse_args()
    schedule = int(2 * len(DENSITIES) * HALF_CYCLE_S / INTERVAL_S)
    for emulator in args.emulators:
        with tempfile.TemporaryDirectory(prefix="bench-rel-exp-") as tmp:
            clean = run(Path(tmp, "clean"), emulator, {"potentiostat": CLEAN_WIRE})
            lines = clean["injected"].get("wire", {}).get("lines", 0)
            wire = f"{args.faults},disconnect={max(lines // 2, 1)}"
            faults = {"potentiostat": wire, "beamline": args.beamline}
            faulty = run(Path(tmp, "faulty"), emulator, faults)
        print(f"\n{emulator}: clean run {lines} reply lines; faulty: {wire} | {args.beamline}")
        measured = sum(len(p) for p in clean["half_cycles"].values())
        print_run("clean ", clean, measured, schedule, clean["eis_points"])
        expected = expected_points(clean["half_cycles"], faulty["half_cycles"])
        print_run("faulty", faulty, expected, schedule, clean["eis_points"])


if __name__ == "__main__":
    main()
