"""Benchmark: the full lab CCD protocol through a driver, the wire and an emulator.

For each emulator (Keithley 2450 over TCP/pyvisa-py, MethodSCRIPT over socket://) the whole
lab CCD protocol (68 h: every step, past the short) streams from a virtual cell through the
driver at a high speed-up. Reported: wall seconds per simulated hour and, as the reference
measured in the same run, the same protocol simulated directly on the cell (no wire), so that
the ratio says what the wire and the drivers cost. Nothing is asserted: machines here are
shared and noisy.

Usage: ``.venv/bin/python benchmarks/bench_ccd_protocol.py [--material LiI-AT] [--json]``
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from insitu.protocols.bench import BenchSpec, open_bench
from insitu.protocols.plans.electrochem import (
    cycling_sequence,
    lab_ccd_densities_mA_cm2,
)
from insitu.simulators.cell.model import CellGeometry, VirtualCell


def direct(material: str, interval_s: float) -> tuple[float, float]:
    """Simulate the whole protocol on the cell alone; return (wall s, simulated s)."""
    cell = VirtualCell(material, CellGeometry.lab_ccd(), seed=0)
    t0 = time.perf_counter()
    now = 0.0
    for j in lab_ccd_densities_mA_cm2():
        for sign in (1, -1, 1, -1):
            times = now + np.arange(1, 3600 / interval_s + 1) * interval_s
            cell.hold(sign * j * 1e-3 * 1.0, times)
            now = float(times[-1])
    return time.perf_counter() - t0, now


def through_wire(material: str, emulator: str, interval_s: float, speedup: float) -> dict:
    """Stream the whole protocol through driver + emulator; return timings."""
    sequence = cycling_sequence(
        lab_ccd_densities_mA_cm2(),
        area_cm2=1.0,
        half_cycle_s=3600.0,
        cycles=2,
        interval_s=interval_s,
        voltage_limit_V=10.0,
    )
    t0 = time.perf_counter()
    points = 0
    last_time_s = 0.0
    spec = BenchSpec(f"sim:{material}", emulator=emulator, speedup=speedup, timeout_s=30)
    with open_bench(spec) as bench:
        for chunk in bench.potentiostat.driver.stream(sequence):
            if len(chunk):
                points += len(chunk)
                last_time_s = float(chunk["time_s"].iloc[-1])
    wall = time.perf_counter() - t0
    return {
        "wall_s": wall,
        "simulated_h": last_time_s / 3600,
        "wall_s_per_simulated_h": wall / (last_time_s / 3600),
        "points": points,
        "points_per_wall_s": points / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--material", default="LiI-AT")
    parser.add_argument("--interval", type=float, default=10.0, help="sampling interval, s")
    parser.add_argument("--speedup", type=float, default=1e7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    wall, simulated = direct(args.material, args.interval)
    report = {
        "material": args.material,
        "interval_s": args.interval,
        "speedup": args.speedup,
        "reference_direct_cell": {
            "wall_s": wall,
            "simulated_h": simulated / 3600,
            "wall_s_per_simulated_h": wall / (simulated / 3600),
        },
    }
    for emulator in ("keithley2450", "methodscript"):
        run = through_wire(args.material, emulator, args.interval, args.speedup)
        run["ratio_to_direct"] = (
            run["wall_s_per_simulated_h"]
            / report["reference_direct_cell"]["wall_s_per_simulated_h"]
        )
        report[emulator] = run
    if args.json:
        print(json.dumps(report, indent=2))
        return
    ref = report["reference_direct_cell"]
    print(
        f"lab CCD protocol, {args.material}, {args.interval:g} s sampling, speed-up "
        f"{args.speedup:g}"
    )
    print(
        f"  direct cell (reference): {ref['wall_s_per_simulated_h'] * 1e3:8.2f} ms per "
        f"simulated hour ({ref['simulated_h']:.2f} h simulated)"
    )
    for emulator in ("keithley2450", "methodscript"):
        run = report[emulator]
        print(
            f"  {emulator:<13}: {run['wall_s_per_simulated_h'] * 1e3:8.2f} ms per simulated "
            f"hour ({run['simulated_h']:.2f} h, {run['points']} points, "
            f"{run['points_per_wall_s']:.0f} points/s), {run['ratio_to_direct']:.1f}× the "
            "reference"
        )


if __name__ == "__main__":
    main()
