"""Benchmark: the full lab CCD protocol through a driver, the wire and an emulator.

For each emulator (Keithley 2450 over TCP/pyvisa-py, MethodSCRIPT over socket:// and a
pseudo-terminal) the lab CCD protocol runs on a virtual cell until it shorts, at a high
speed-up. Reported: wall seconds per simulated hour and, as the reference measured in the
same run, the same protocol simulated directly on the cell (no wire), so that the ratio says
what the wire and the drivers cost. Nothing is asserted: machines here are shared and noisy.

Usage: ``.venv/bin/python benchmarks/bench_ccd_protocol.py [--material LiI-AT] [--json]``
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from insitu.protocols.lab_ccd import lab_ccd_densities_mA_cm2, run_ccd
from insitu.protocols.simbench import open_instrument
from insitu.simulators.cell import CellGeometry, VirtualCell


def direct(material: str, interval_s: float) -> tuple[float, float]:
    """Simulate the protocol on the cell alone; return (wall s, simulated s until short)."""
    cell = VirtualCell(material, CellGeometry.lab_ccd(), seed=0)
    t0 = time.perf_counter()
    now = 0.0
    for j in lab_ccd_densities_mA_cm2():
        for sign in (1, -1, 1, -1):
            times = now + np.arange(1, 3600 / interval_s + 1) * interval_s
            cell.hold(sign * j * 1e-3 * 1.0, times)
            now = float(times[-1])
            if cell.shorted:
                return time.perf_counter() - t0, now
    return time.perf_counter() - t0, now


def through_wire(material: str, protocol: str, interval_s: float, speedup: float) -> dict:
    """Run the protocol through driver + emulator; return timings and results."""
    t0 = time.perf_counter()
    with open_instrument(
        f"sim:{material}", speedup=speedup, sim_protocol=protocol, timeout_s=30
    ) as (driver, _bench):
        result = run_ccd(driver, interval_s=interval_s)
    wall = time.perf_counter() - t0
    simulated = float(result.data["time_s"].iloc[-1])
    return {
        "wall_s": wall,
        "simulated_h": simulated / 3600,
        "wall_s_per_simulated_h": wall / (simulated / 3600),
        "points": len(result.data),
        "ccd_mA_cm2": result.ccd_mA_cm2,
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
    for protocol in ("keithley2450", "methodscript"):
        run = through_wire(args.material, protocol, args.interval, args.speedup)
        run["ratio_to_direct"] = (
            run["wall_s_per_simulated_h"]
            / report["reference_direct_cell"]["wall_s_per_simulated_h"]
        )
        report[protocol] = run
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
    for protocol in ("keithley2450", "methodscript"):
        run = report[protocol]
        print(
            f"  {protocol:<13}: {run['wall_s_per_simulated_h'] * 1e3:8.2f} ms per simulated "
            f"hour ({run['simulated_h']:.2f} h, {run['points']} points, CCD "
            f"{run['ccd_mA_cm2']} mA/cm²), {run['ratio_to_direct']:.1f}× the reference"
        )


if __name__ == "__main__":
    main()
