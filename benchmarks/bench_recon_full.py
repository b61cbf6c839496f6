"""Benchmark: a full beamline-size scan reconstructed end to end within a memory budget.

Writes a Data Exchange scan of the APS 2-BM size (1500 projections of 1143 × 2000 pixels,
uint16, ≈ 6.9 GB; darks and flats included) from an analytic phantom — cylinders whose
sinogram is computed exactly, with a ring-causing column gain error — then reconstructs it
with :func:`insitu.analysis.tomo.pipeline.reconstruct_scan` (automatic centre, Fourier-wavelet
ring removal, gridrec) in a *child process*, so that the peak resident memory reported is
that of the reconstruction alone. Reported (nothing asserted): the time to write the scan,
the reconstruction's wall time, seconds per slice, peak RSS against the budget, and the
reconstruction's error on the phantom's middle slice.

Usage::

    .venv/bin/python benchmarks/bench_recon_full.py [--rows 1143] [--cols 2000]
        [--angles 1500] [--budget-gib 8] [--workdir DIR] [--keep] [--reuse]

Smaller ``--rows`` gives a quick check on the same per-slice path.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

MU = 0.004  # 1/pixel: a 1400-pixel chord transmits e^-5.6, within a 16-bit camera's range


def phantom(cols: int) -> list[tuple[float, float, float, float]]:
    s = cols / 2000
    return [
        (0.0, 0.0, 700 * s, MU),
        (200 * s, -150 * s, 120 * s, -MU),
        (-250 * s, 220 * s, 60 * s, -MU),
        (300 * s, 300 * s, 25 * s, MU),
    ]


def sinogram(theta: np.ndarray, cols: int, center: float) -> np.ndarray:
    t = np.arange(cols) - center
    sino = np.zeros((theta.size, cols))
    for x0, y0, r, mu in phantom(cols):
        t0 = x0 * np.cos(theta)[:, None] + y0 * np.sin(theta)[:, None]
        sino += 2 * mu * np.sqrt(np.clip(r**2 - (t - t0) ** 2, 0, None))
    return sino


def write_scan(path: Path, n_angles: int, rows: int, cols: int, center: float) -> None:
    theta = np.arange(n_angles) * math.pi / n_angles
    transmission = np.exp(-sinogram(theta, cols, center)).astype(np.float32)
    rng = np.random.default_rng(0)
    gain = (1 + 0.01 * rng.standard_normal(cols)).astype(np.float32)  # ring-causing columns
    flat_row = (20000 * (0.9 + 0.1 * np.cos(np.arange(cols) / 300))).astype(np.float32)
    dark = 100.0
    with h5py.File(path, "w") as f:
        data = f.create_dataset(
            "/exchange/data", (n_angles, rows, cols), dtype=np.uint16, chunks=(1, rows, cols)
        )
        # Projection by projection: never more than one frame in memory.
        for k in range(n_angles):
            frame = dark + (flat_row * gain * transmission[k])[None, :].repeat(rows, axis=0)
            data[k] = np.round(frame).astype(np.uint16)
        flat = np.round(dark + flat_row[None, :].repeat(rows, axis=0)).astype(np.uint16)
        f["/exchange/data_white"] = np.repeat(flat[None], 10, axis=0)
        f["/exchange/data_dark"] = np.full((10, rows, cols), dark, dtype=np.uint16)
        f["/exchange/theta"] = theta
        f["/exchange/theta"].attrs["units"] = "rad"


def truth_slice(cols: int) -> np.ndarray:
    c = (cols - 1) / 2
    y, x = np.mgrid[:cols, :cols] - c
    img = np.zeros((cols, cols), dtype=np.float32)
    for x0, y0, r, mu in phantom(cols):
        img += mu * (((x - x0) ** 2 + (y - y0) ** 2) <= r**2)
    return img


CHILD = """
import json, sys
from insitu.analysis.tomo.pipeline import ReconOptions, reconstruct_scan
scan, out, budget = sys.argv[1], sys.argv[2], float(sys.argv[3])
summary = reconstruct_scan(scan, out, ReconOptions(memory_budget_gib=budget), progress=True)
print(json.dumps(summary))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1143)
    parser.add_argument("--cols", type=int, default=2000)
    parser.add_argument("--angles", type=int, default=1500)
    parser.add_argument("--budget-gib", type=float, default=8.0)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the scan and the volume")
    parser.add_argument(
        "--reuse", action="store_true", help="reconstruct the scan already in --workdir"
    )
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="insitu-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    scan, volume = work / "scan.h5", work / "volume.zarr"
    center = (args.cols - 1) / 2 + 12.5
    out: dict[str, object] = {"shape": [args.angles, args.rows, args.cols]}
    try:
        if not (args.reuse and scan.exists()):
            t0 = time.perf_counter()
            write_scan(scan, args.angles, args.rows, args.cols, center)
            out["write_scan_s"] = time.perf_counter() - t0
        out["scan_bytes"] = scan.stat().st_size
        t0 = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(scan), str(volume), str(args.budget_gib)],
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        )
        out["recon_wall_s"] = time.perf_counter() - t0
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        out["recon_s_per_slice"] = out["recon_wall_s"] / args.rows  # type: ignore[operator]
        out["peak_rss_gib"] = peak / 2**30
        out["budget_gib"] = args.budget_gib
        out["slabs"] = summary["slabs"]
        out["rows_per_slab"] = summary["rows_per_slab"]
        out["timings_s"] = summary.get("timings_s")  # where the time went, per step
        out["center_found"] = summary["center"]
        out["center_true"] = center
        import zarr

        mid = zarr.open_array(str(volume), mode="r")[args.rows // 2]
        truth = truth_slice(args.cols)
        c = (args.cols - 1) / 2
        y, x = np.mgrid[: args.cols, : args.cols] - c
        inside = x**2 + y**2 < (0.45 * args.cols) ** 2
        out["nrmse_of_range_mid_slice"] = float(
            np.sqrt(np.mean((mid[inside] - truth[inside]) ** 2)) / np.ptp(truth)
        )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
