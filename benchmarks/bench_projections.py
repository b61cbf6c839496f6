"""Benchmark: parallel-beam line integrals with the Fourier-slice projector vs skimage radon.

Reported (nothing asserted: machines are shared and noisy):

- small case (128 × 128 slices, 64 rows, 180 angles): row-projections per second of
  :class:`insitu.simulators.imaging.xray.Projector` and of ``skimage.transform.radon`` on the same
  data (the reference, one slice at a time), their ratio, and the projector's error against the
  analytic chord of a disc (relative to the peak, away from the edge);
- full size (2000 × 2000 slices, one slab of 16 rows, 1500 angles): the projector's time per
  row, extrapolated to the 1143 rows of the APS 2-BM detector (one full scan's line integrals).

Usage: ``.venv/bin/python benchmarks/bench_projections.py [--full-rows 16] [--skip-full]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from skimage.transform import radon

from insitu.simulators.imaging.xray import Projector


def disc_slab(n: int, rows: int, mu: float = 500.0) -> tuple[np.ndarray, float]:
    """A slab of identical discs (radius 0.4 n), edge voxels weighted by covered fraction."""
    radius = 0.4 * n
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2.0
    sub = (np.arange(4) + 0.5) / 4 - 0.5
    img = sum(((yy + a) ** 2 + (xx + b) ** 2 <= radius**2) for a in sub for b in sub) / 16.0
    return np.repeat((img * mu)[None].astype(np.float32), rows, axis=0), radius


def chord_error(p: np.ndarray, u: np.ndarray, radius: float, mu: float) -> float:
    """Largest error relative to the peak chord, for |u| < R − 4 (away from the edge)."""
    exact = 2 * np.sqrt(np.clip(radius**2 - u**2, 0, None)) * mu
    inside = np.abs(u) < radius - 4
    return float(np.abs(p[..., inside] - exact[inside]).max() / exact.max())


def small_case(n: int = 128, rows: int = 64, n_angles: int = 180) -> dict[str, float]:
    """Projector vs skimage radon on the same slab."""
    slab, radius = disc_slab(n, rows)
    angles = np.linspace(0, np.pi, n_angles, endpoint=False)
    projector = Projector((n, n), angles, voxel_size_m=1.0)
    projector.project(slab[:1])  # plan once, outside the timing (done once per scan)
    t0 = time.perf_counter()
    ours = projector.project(slab)
    t_ours = time.perf_counter() - t0
    err_ours = chord_error(ours, projector.u_px, radius, 500.0)

    # skimage: angles in degrees, sinogram (detector, angle); circle=False pads to the
    # diagonal like the projector does.
    degrees = np.degrees(angles)
    t0 = time.perf_counter()
    for s in slab:
        radon(s, theta=degrees, circle=False)
    t_sk = time.perf_counter() - t0
    return {
        "ours_s": t_ours,
        "skimage_s": t_sk,
        "ours_rate": rows * n_angles / t_ours,
        "skimage_rate": rows * n_angles / t_sk,
        "ours_err": err_ours,
    }


def full_case(rows: int = 16, n: int = 2000, n_angles: int = 1500) -> dict[str, float]:
    """One slab at full APS size; extrapolate to the 1143-row detector."""
    rng = np.random.default_rng(0)
    slab = (rng.random((rows, n, n), dtype=np.float32) * 500.0).astype(np.float32)
    angles = np.linspace(0, np.pi, n_angles, endpoint=False)
    t0 = time.perf_counter()
    projector = Projector((n, n), angles, voxel_size_m=0.7e-6, rows_per_batch=8)
    projector.project(slab[:8])  # plan + warm-up
    t_setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    projector.project(slab)
    t = time.perf_counter() - t0
    per_row = t / rows
    return {
        "setup_s": t_setup,
        "slab_s": t,
        "per_row_s": per_row,
        "rate": rows * n_angles / t,
        "scan_s": per_row * 1143,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full-rows", type=int, default=16)
    parser.add_argument("--skip-full", action="store_true")
    args = parser.parse_args()

    small = small_case()
    print("small case: 128 x 128 slices, 64 rows, 180 angles")
    print(f"{'method':<26}{'time (s)':>10}{'row-proj/s':>14}{'err/peak':>10}")
    print(
        f"{'Projector (finufft)':<26}{small['ours_s']:>10.3f}{small['ours_rate']:>14.0f}"
        f"{small['ours_err']:>10.1e}"
    )
    print(
        f"{'skimage radon (reference)':<26}{small['skimage_s']:>10.3f}"
        f"{small['skimage_rate']:>14.0f}{'-':>10}"
    )
    print(f"speed-up over skimage radon: {small['skimage_s'] / small['ours_s']:.1f}x")
    if args.skip_full:
        return
    full = full_case(args.full_rows)
    print(f"\nfull size: 2000 x 2000 slices, {args.full_rows} rows, 1500 angles")
    print(f"setup + warm-up       {full['setup_s']:8.2f} s")
    print(f"slab                  {full['slab_s']:8.2f} s  ({full['per_row_s']:.3f} s/row)")
    print(f"row-projections/s     {full['rate']:8.0f}")
    print(
        f"full scan, 1143 rows  {full['scan_s']:8.0f} s  ({full['scan_s'] / 60:.1f} min, "
        "line integrals only)"
    )


if __name__ == "__main__":
    main()
