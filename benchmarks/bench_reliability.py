"""Benchmark: a simulated CCD test under a mixed fault load on the wire, against a clean run.

For each emulator, ``insitu ccd --instrument sim:A-LPS`` runs twice with the same seed (the
same cell, the same damage): once on a clean cable, once through the faulty link
(:mod:`insitu.simulators.faults`) with, by default, 1 % of reply lines delayed (0.05 s), 0.5 %
garbled and one disconnect (halfway through the clean run's reply lines, which the link
counted). Printed per emulator:

- how each run ended (exit status, the stop reason) and its CCD / charge-to-failure;
- points measured: the faulty run's points against the clean run's points up to the time
  the faulty run reached (expected), and the points lost (expected − measured; the issue's
  target is 0);
- the faults the link injected;
- the cell within its limits: the largest |current density| and |voltage| recorded, against
  the schedule's highest current density and the voltage limit.

Usage: ``.venv/bin/python benchmarks/bench_reliability.py [--faults SPEC] [--emulators ...]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

DEFAULT_FAULTS = "delay=1%:0.05,garble=0.5%"
#: The clean run goes through the link too, with no fault that can happen in practice: the
#: link then counts the reply lines, and the faulty run's one disconnect is put halfway
#: through them (the Keithley 2450 answers a whole CCD in ~120 buffered lines, the EmStat4
#: in ~5000 packages: a fixed count would miss one of them).
COUNTING_ONLY = "delay=1e-12"
VOLTAGE_LIMIT_V = 10.0


def run(emulator: str, data: Path, faults: str | None) -> tuple[int, dict, str]:
    """One ``insitu ccd`` run; (exit status, its JSON or {}, stderr)."""
    cmd = [sys.executable, "-m", "insitu.protocols.cli.app", "ccd", "--instrument", "sim:A-LPS"]
    cmd += ["--emulator", emulator, "--json", "--data", str(data)]
    if faults:
        cmd += ["--faults", faults]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    try:
        result = json.loads(done.stdout)
    except json.JSONDecodeError:
        result = {}
    return done.returncode, result, done.stderr.strip()


def latest_points(data: Path) -> tuple[pd.DataFrame, dict]:
    """The latest run's electrochem points and stop document, read back from the catalog."""
    from insitu.protocols.storage.catalog import RunStore

    with RunStore(data) as store:
        run = store.load(-1)
        return run.stream("electrochem"), dict(run.stop or {})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--faults", default=DEFAULT_FAULTS)
    ap.add_argument("--emulators", nargs="+", default=["keithley2450", "methodscript"])
    args = ap.parse_args()
    print(f"faults: {args.faults}")
    for emulator in args.emulators:
        with tempfile.TemporaryDirectory(prefix="bench-rel-") as tmp:
            clean_dir, faulty_dir = Path(tmp, "clean"), Path(tmp, "faulty")
            rc0, clean, _ = run(emulator, clean_dir, COUNTING_ONLY)
            spec = args.faults
            if "disconnect" not in spec:
                lines = int(clean.get("wire_faults", {}).get("lines", 0))
                spec += f",disconnect={max(lines // 2, 1)}"
            rc1, faulty, err1 = run(emulator, faulty_dir, spec)
            points0, _ = latest_points(clean_dir)
            points1, stop1 = latest_points(faulty_dir)
        reached = float(points1["time_s"].max()) if len(points1) else 0.0
        expected = int(np.count_nonzero(points0["time_s"] <= reached + 1e-9))
        lost = expected - len(points1)
        j_max = float(np.abs(points1["current_A"]).max()) * 1e3 if len(points1) else 0.0
        v_max = float(np.abs(points1["voltage_V"]).max()) if len(points1) else 0.0
        print(f"\n{emulator}  (faults: {spec})")
        print(
            f"  clean : exit {rc0}, CCD {clean.get('ccd_mA_cm2')} mA/cm², "
            f"{clean.get('charge_to_failure_C_cm2')}, {len(points0)} points"
        )
        print(
            f"  faulty: exit {rc1}, CCD {faulty.get('ccd_mA_cm2')} mA/cm², "
            f"{faulty.get('charge_to_failure_C_cm2')}, stop {stop1.get('exit_status')}: "
            f"{str(stop1.get('reason'))[:120]}"
        )
        if rc1 != 0:
            print(f"  faulty stderr: {err1.splitlines()[-1][:200] if err1 else ''}")
        print(
            f"  points: {len(points1)} measured of {expected} expected up to t = {reached:g} s "
            f"-> lost {lost} (the driver counted {faulty.get('points_lost', '?')} lost on "
            f"the wire); link: {faulty.get('wire_faults', {})}"
        )
        print(
            f"  limits: max |j| {j_max:.3g} mA/cm² (area 1 cm²), max |V| {v_max:.3g} V "
            f"(limit {VOLTAGE_LIMIT_V:g} V)"
        )


if __name__ == "__main__":
    main()
