"""Benchmark: threshold, porosity and local-thickness pore size distribution, in z-slabs.

Reported (nothing asserted: machines are shared and noisy), all measured in this run on a
synthetic A-LPS-like uint8 volume (pores: Gaussian-filtered noise, σ = 1.8 µm at 0.7 µm
voxels, porosity ≈ 0.48, in a 1.4 mm-wide field of view):

- wall time per step: pooled 256-bin histogram + ImageJ threshold, porosity, and
  :func:`insitu.analysis.microstructure.pores.pore_analysis` (distance pass + local thickness
  pass);
- voxels per second of each step and the peak resident memory of the process;
- the extrapolation to the beamline volume, 2000 × 1143 × 1000 voxels: time scales with the
  number of voxels at fixed pore size (every step is linear in voxels; the painting cost is
  pore voxels × mean ridge-ball volume, set by the pore size, not the volume), memory does
  not grow with the number of rows (slabs) but with the slice area: about 14 bytes per slab
  voxel plus the input slab, so ``memory_budget_gib`` bounds it.

Then the distance transforms on the same pores (the volume's first 64 rows), each timed and
checked against scipy's exact ``distance_transform_edt`` (max abs difference of the squared
distances, 0 for an exact transform): ours (numba, envelope), ours bounded (the windowed one
the local-thickness slabs use, compared after clamping to the pass's ``dmax``), the ``edt``
package when installed, and scipy itself; ``pore_analysis`` is printed as a ratio to scipy's
EDT of the same voxels (both measured in this run).

Usage: ``.venv/bin/python benchmarks/bench_tomo_porosity.py [--rows 96] [--ny 572] [--nx 500]
[--psd-fraction F]`` (defaults: 1/4 of the full slice area, 96 rows; the full slice is
``--ny 1143 --nx 1000``).
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np
from scipy import ndimage as ndi

from insitu.analysis.microstructure.pores import (
    _edt_sq,
    _edt_sq_bounded,
    _guess_dmax,
    local_thickness,
    pore_analysis,
    porosity,
)
from insitu.analysis.microstructure.segment import StudyThreshold

FULL = (2000, 1143, 1000)
VOXEL_UM = 0.7
SIGMA_VOX = 1.8 / VOXEL_UM


def synthetic_volume(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """uint8 grey volume: pores (≈ 48 %) at grey 40, solid at 180, noise σ = 15."""
    rng = np.random.default_rng(seed)
    field = ndi.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), SIGMA_VOX)
    cut = np.quantile(field[::4, ::4, ::4], 0.48)
    grey = np.where(field < cut, 40.0, 180.0).astype(np.float32)
    grey += rng.normal(0.0, 15.0, shape).astype(np.float32)
    return np.clip(np.rint(grey), 0, 255).astype(np.uint8)


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=96)
    ap.add_argument("--ny", type=int, default=572)
    ap.add_argument("--nx", type=int, default=500)
    ap.add_argument("--budget-gib", type=float, default=2.0)
    ap.add_argument("--psd-fraction", type=float, default=None)
    args = ap.parse_args()
    shape = (args.rows, args.ny, args.nx)
    n = int(np.prod(shape))
    print(f"volume {shape} uint8 ({n / 1e6:.1f} Mvoxel), {os.cpu_count()} CPUs")

    # Compile the kernels on a tiny volume first: the JIT is a one-off, not a cost per scan.
    local_thickness(np.ones((4, 4, 4), bool) & (np.arange(4) > 0)[:, None, None])
    tiny = np.where(np.indices((160, 8, 8)).sum(axis=0) % 5 == 0, 200, 40).astype(np.uint8)
    pore_analysis(tiny, 128.0, voxel_um=VOXEL_UM)  # the slab path's kernels, too
    t = time.perf_counter()
    vol = synthetic_volume(shape)
    print(f"synthetic volume: {time.perf_counter() - t:.1f} s, rss {peak_rss_gib():.2f} GiB")

    steps: dict[str, float] = {}
    t = time.perf_counter()
    thr = StudyThreshold.from_volumes([vol], method="default")
    steps["histogram + threshold"] = time.perf_counter() - t
    t = time.perf_counter()
    phi = porosity(vol, thr)
    steps["porosity"] = time.perf_counter() - t
    t = time.perf_counter()
    res = pore_analysis(
        vol,
        thr,
        voxel_um=VOXEL_UM,
        memory_budget_gib=args.budget_gib,
        psd_fraction=args.psd_fraction,
    )
    steps["pore_analysis (distance + local thickness)"] = time.perf_counter() - t

    scale = np.prod(FULL) / n
    print(f"threshold level {thr.level} (value {thr.value}), porosity {phi:.4f}")
    print(f"mean diameter {res.psd.mean_um:.2f} µm, median {res.psd.median_um:.2f} µm")
    for name, s in steps.items():
        print(
            f"{name:45s} {s:8.2f} s  {n / s / 1e6:8.1f} Mvoxel/s  "
            f"→ full size ≈ {s * scale / 60:6.1f} min"
        )
    print(f"peak RSS {peak_rss_gib():.2f} GiB (input volume {vol.nbytes / 2**30:.2f} GiB)")
    print(
        "full size: the input is read in slabs, so peak memory ≈ this run's working set at "
        f"the same slice area × ({FULL[1] * FULL[2]} / {args.ny * args.nx}) — bounded by "
        "--budget-gib plus one input slab, not by the number of rows"
    )
    compare_distance_transforms(vol[:64] < thr.value, steps[list(steps)[-1]] / n)


def compare_distance_transforms(pores: np.ndarray, lt_s_per_voxel: float) -> None:
    """Time the distance transforms on ``pores``; check each against scipy's."""
    t = time.perf_counter()
    ref = np.rint(ndi.distance_transform_edt(pores) ** 2)
    scipy_s = time.perf_counter() - t
    padded = np.pad(pores, ((1, 1), (0, 0), (0, 0)))  # solid rows beyond, as pore_analysis
    dmax = _guess_dmax(lambda a, b: padded[a:b], padded.shape[0]) or int(ref.max())
    _edt_sq(pores[:4, :8, :8])  # compiled before timing
    _edt_sq_bounded(pores[:4, :8, :8], dmax, np.empty((4, 8, 8), np.int32))
    rows: list[tuple[str, float, float]] = []
    t = time.perf_counter()
    ours = _edt_sq(pores)
    rows.append(("ours (numba envelope)", time.perf_counter() - t, np.abs(ours - ref).max()))
    buf = np.empty(pores.shape, np.int32)
    t = time.perf_counter()
    bounded = _edt_sq_bounded(pores, dmax, buf)
    s = time.perf_counter() - t
    diff = np.abs(np.minimum(bounded, dmax) - np.minimum(ref, dmax)).max()
    rows.append((f"ours bounded (dmax {dmax})", s, diff))
    try:
        import edt  # LGPL-3.0-or-later, optional: measured when installed
    except ImportError:
        print("edt package not installed: pip install edt to compare")
    else:
        for threads in (1, 2):
            t = time.perf_counter()
            e = edt.edtsq(pores, black_border=False, parallel=threads)
            s = time.perf_counter() - t
            rows.append((f"edt.edtsq parallel={threads}", s, np.abs(e - ref).max()))
    rows.append(("scipy distance_transform_edt", scipy_s, 0.0))
    n = pores.size
    print(f"distance transforms on {pores.shape} ({n / 1e6:.0f} Mvoxel):")
    for name, sec, err in rows:
        print(
            f"  {name:32s} {sec:7.2f} s  {n / sec / 1e6:7.1f} Mvoxel/s  "
            f"x{scipy_s / sec:5.1f} vs scipy  max |ΔD| {err:g}"
        )
    print(
        f"pore_analysis per voxel / scipy EDT per voxel: {lt_s_per_voxel / (scipy_s / n):.2f} "
        "(local thickness and all, against the distance transform alone)"
    )


if __name__ == "__main__":
    main()
