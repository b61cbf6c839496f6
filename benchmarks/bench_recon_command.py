"""Benchmark: the whole ``insitu recon`` command on a few rows, against algotom's DFI.

What a user pays to check the centre or the ring settings on a 2048 × 1500 scan: the
command's start-up, planning, reading, pre-processing, gridding and writing, measured from
outside (a child process, as typed). The reference is algotom's direct Fourier inversion
(``algotom.rec.reconstruction.dfi_reconstruction``, Apache-2.0; ``pip install algotom``) on
the same rows, given the same centre, in this process: its import and start-up are not
counted, and its rows are read and normalised with numpy beforehand, so the ratio favours
DFI. Both runs use the same cores, in the same run (machines here are shared and noisy).

The scan is written once (an analytic phantom, bench_recon_full's), 1500 projections of
``--rows`` × 2048 pixels; the command runs with a fixed centre and without ring removal, so
that both sides do the same job (flat/dark normalisation, -log, filtered back-projection).

Reported (nothing asserted): wall seconds of ``insitu recon --rows 0,N`` for each N (the best
of three runs, each listed), DFI's
seconds on the same rows, and their ratio; the NRMSE of each against the phantom's slice.

Usage: ``.venv/bin/python benchmarks/bench_recon_command.py [--rows 2,32] [--cols 2048]``
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np


def _full_bench():
    """bench_recon_full's scan writer and phantom (benchmarks are scripts, not a package)."""
    path = Path(__file__).with_name("bench_recon_full.py")
    spec = importlib.util.spec_from_file_location("bench_recon_full", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def insitu_recon(scan: Path, out: Path, rows: int, center: float) -> tuple[float, dict]:
    """Seconds of the whole command, from outside, and its JSON summary."""
    argv = [sys.executable, "-m", "insitu.protocols.cli", "recon", str(scan), "--out", str(out)]
    argv += ["--rows", f"0,{rows}", "--center", str(center), "--rings", "none", "--json"]
    argv += ["--overwrite", "--quiet"]
    t0 = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"insitu recon failed: {done.stderr}")
    return seconds, json.loads(done.stdout)


def dfi_rows(scan: Path, rows: int, center: float) -> tuple[float, np.ndarray]:
    """algotom DFI on rows 0..rows, one sinogram at a time; seconds of the reconstruction."""
    from algotom.rec.reconstruction import dfi_reconstruction

    with h5py.File(scan, "r") as f:
        data = f["/exchange/data"][:, :rows, :].astype(np.float32)
        flat = f["/exchange/data_white"][:, :rows, :].mean(axis=0)
        dark = f["/exchange/data_dark"][:, :rows, :].mean(axis=0)
    sino = -np.log(np.clip((data - dark) / (flat - dark), 1e-6, None))
    t0 = time.perf_counter()
    slices = [dfi_reconstruction(sino[:, r, :], center, apply_log=False) for r in range(rows)]
    return time.perf_counter() - t0, np.asarray(slices)


def nrmse(rec: np.ndarray, truth: np.ndarray) -> float:
    n = truth.shape[0]
    y, x = np.mgrid[:n, :n] - (n - 1) / 2
    inside = x**2 + y**2 < (0.45 * n) ** 2
    return float(np.sqrt(np.mean((rec[inside] - truth[inside]) ** 2)) / np.ptp(truth))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="2,32", help="row counts to time, comma-separated")
    parser.add_argument("--cols", type=int, default=2048)
    parser.add_argument("--angles", type=int, default=1500)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    counts = sorted(int(n) for n in args.rows.split(","))
    full = _full_bench()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-recon-command-"))
    work.mkdir(parents=True, exist_ok=True)
    scan = work / "scan.h5"
    center = (args.cols - 1) / 2
    t0 = time.perf_counter()
    full.write_scan(scan, args.angles, max(counts), args.cols, center)
    print(f"scan written in {time.perf_counter() - t0:.1f} s: {scan}", flush=True)
    truth = full.truth_slice(args.cols)
    try:
        import algotom
    except ImportError:
        algotom = None
    results = []
    for rows in counts:
        # Best of three, as bench_gridrec: the machine is shared, the fastest run is the
        # least disturbed one (every run is listed).
        runs = [insitu_recon(scan, work / f"vol-{rows}.zarr", rows, center) for _ in range(3)]
        seconds, summary = min(runs, key=lambda run: run[0])
        import zarr

        ours = np.asarray(zarr.open_array(str(work / f"vol-{rows}.zarr"), mode="r")[0])
        row = {
            "rows": rows,
            "insitu_recon_s": round(seconds, 2),
            "insitu_runs_s": [round(run[0], 2) for run in runs],
            "insitu_nrmse": nrmse(ours, truth),
        }
        if "timings_s" in summary:
            row["insitu_timings_s"] = summary["timings_s"]
        if algotom is not None:
            dfi_s, dfi = dfi_rows(scan, rows, center)
            row |= {
                "dfi_s": round(dfi_s, 2),
                "dfi_over_insitu": round(dfi_s / seconds, 1),
                "dfi_nrmse": nrmse(dfi[0], truth),
            }
        results.append(row)
        print(json.dumps(row), flush=True)
    if algotom is None:
        print("algotom is not installed (pip install algotom): no reference measured")


if __name__ == "__main__":
    main()
