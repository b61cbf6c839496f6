"""Benchmark: the in-situ experiment of ``insitu demo`` against its parts run alone.

The experiment (EIS, pristine scan, plate/scan/strip/scan to the short, failed-cell scan,
EIS; small scans, background reconstruction and analysis, report) runs on the simulated bench.
References measured in the same run, on the same machine:

- a bare ``tomo_scan`` of the same size on the simulated beamline, imaging a pellet prepared
  beforehand (``pellet_frame_source``), at the experiment's rest speed-up: what a scan costs
  without the coupling to the live cell, the OCV recording and the journal;
- a bare 30 min galvanostatic hold through the same driver and emulator at the experiment's
  cycling speed-up: what a half-cycle costs without the experiment around it.

Both references store their runs in an embedded catalog, as the experiment does.

Reported: each kind of segment's mean wall time and its ratio to its reference; the
reconstruction and measurement time per scan in the background; the whole experiment's wall
time. Nothing is asserted: machines here are shared and noisy.

Usage: ``.venv/bin/python benchmarks/bench_experiment.py [--material A-LPS] [--json]``
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from bluesky import RunEngine

from insitu.protocols.bench import BenchSpec, insitu_geometry, open_bench
from insitu.protocols.experiment_config import validate_config
from insitu.protocols.plans.electrochem import galvanostatic_hold
from insitu.protocols.plans.tomo import tomo_scan
from insitu.protocols.storage.catalog import RunStore
from insitu.protocols.workflows.experiment import run_experiment
from insitu.simulators.imaging.frame_source import pellet_frame_source


def reference_scan(cfg, folder: Path, store: RunStore) -> float:
    """Wall seconds of a bare scan of the same size (frame source built beforehand)."""
    source = pellet_frame_source(cfg.material, 0.0, size="small", n_projections=cfg.n_projections)
    spec = BenchSpec(
        tomography="sim",
        frame_source=source,
        scans=folder,
        speedup=cfg.devices.simulation.rest_speedup,
    )
    with open_bench(spec) as bench:
        RE = RunEngine({})
        store.subscribe(RE)
        t0 = time.perf_counter()
        RE(
            tomo_scan(
                bench.camera,
                bench.stage,
                bench.shutter,
                n_projections=cfg.n_projections,
                exposure_s=cfg.scan.exposure_s,
                n_darks=cfg.scan.n_darks,
                n_flats=cfg.scan.n_flats,
                ring_current=bench.ring_current,
            )
        )
        wall = time.perf_counter() - t0
    source.close()
    return wall


def reference_hold(cfg, store: RunStore) -> float:
    """Wall seconds of a bare 30 min hold at the first current density, same driver."""
    sim = cfg.devices.simulation
    j = cfg.schedule.current_densities_mA_cm2[0]
    spec = BenchSpec(
        f"sim:{cfg.material}",
        emulator=sim.emulator,
        speedup=sim.speedup,
        geometry=insitu_geometry(cfg),
    )
    with open_bench(spec) as bench:
        RE = RunEngine({})
        store.subscribe(RE)
        t0 = time.perf_counter()
        RE(
            galvanostatic_hold(
                bench.potentiostat,
                current_A=j * 1e-3 * cfg.geometry.area_cm2,
                duration_s=cfg.schedule.half_cycle_s,
                interval_s=cfg.schedule.interval_s,
            )
        )
        return time.perf_counter() - t0


class SegmentTimer:
    """Observer: wall seconds of every segment, by kind."""

    def __init__(self) -> None:
        self.walls: dict[str, list[float]] = defaultdict(list)
        self._t0 = 0.0

    def segment_started(self, segment, state) -> None:
        self._t0 = time.perf_counter()

    def segment_done(self, segment, outcome, state) -> None:
        kind = "half-cycle" if segment.half_cycle else segment.kind
        self.walls[kind].append(time.perf_counter() - self._t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--material", default="A-LPS")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cfg = validate_config(
            {
                "material": args.material,
                "catalog": {"data": str(root / "data")},
                "output": str(root / "experiments"),
            }
        )
        # The references store their runs in a catalog too, as the experiment does.
        with RunStore(root / "ref-data") as store:
            scan_ref = reference_scan(cfg, root / "ref", store)
            hold_ref = reference_hold(cfg, store)
        timer = SegmentTimer()
        t0 = time.perf_counter()
        result = run_experiment(cfg, out=None, observers=[lambda bench: timer])
        wall = time.perf_counter() - t0
        live = [
            json.loads(p.read_text())["data"]
            for p in sorted((Path(result["folder"]) / "analysis" / "live").glob("*.json"))
        ]
    refs = {"tomogram": scan_ref, "half-cycle": hold_ref}
    rows = {}
    for kind, walls in sorted(timer.walls.items()):
        mean = float(np.mean(walls))
        rows[kind] = {
            "count": len(walls),
            "mean_wall_s": mean,
            "reference_s": refs.get(kind),
            "ratio": mean / refs[kind] if kind in refs else None,
        }
    report = {
        "material": args.material,
        "experiment_wall_s": wall,
        "plan_wall_s": result["run_s"],
        "charge_to_failure_mC": result["charge_to_failure_mC"],
        "segments": rows,
        "recon_s_per_scan": float(np.mean([d["recon_s"] for d in live if d])),
        "measure_s_per_scan": float(np.mean([d["measure_s"] for d in live if d])),
    }
    if args.json:
        print(json.dumps(report))
        return
    print(f"in-situ experiment, {args.material}: {wall:.1f} s wall ({result['run_s']:.1f} s plan)")
    print(f"{'segment':<12}{'n':>3}{'mean s':>9}{'reference s':>13}{'ratio':>8}")
    for kind, row in rows.items():
        ref = "" if row["reference_s"] is None else f"{row['reference_s']:13.2f}"
        ratio = "" if row["ratio"] is None else f"{row['ratio']:8.2f}"
        print(f"{kind:<12}{row['count']:>3}{row['mean_wall_s']:9.2f}{ref:>13}{ratio:>8}")
    print(
        f"background per scan: reconstruction {report['recon_s_per_scan']:.2f} s, "
        f"measurement {report['measure_s_per_scan']:.2f} s"
    )


if __name__ == "__main__":
    main()
