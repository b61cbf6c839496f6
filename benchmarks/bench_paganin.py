"""Benchmark: Paganin phase retrieval of 2048 × 2048 projections.

Reported (nothing asserted: machines are shared and noisy), all measured in this run:

- :func:`insitu.analysis.tomo.prep.phase.retrieve_phase` (float32 ``scipy.fft.rfft2``, padding of
  8 Paganin lengths to a fast size, all CPUs): seconds per projection;
- the reference: a naive, TomoPy-shaped implementation in float64 ``numpy.fft`` — pad to the
  next power of two of ``cols + π λ d / pixel²`` (TomoPy's rule), complex ``fft2`` — on the
  same frames, its seconds per projection and the ratio;
- the largest difference between the two outputs on open-beam-normalised data (they differ
  only by the padding, so near the frame's edges);
- the implied time for one 1500-projection scan.

algotom (Apache-2.0, on PyPI) has no Paganin filter to compare with, so it is not used here.

Usage: ``.venv/bin/python benchmarks/bench_paganin.py [--frames 4] [--size 2048]``
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np

from insitu.analysis.tomo.prep.phase import alpha_from_delta_beta, paganin_length, retrieve_phase

# APS 2-BM-like geometry (REFERENCE.md): 25 keV, 0.7 µm pixels; 10 cm propagation, δ/β = 500.
PIXEL_CM = 7e-5
DIST_CM = 10.0
ENERGY_KEV = 25.0
DELTA_BETA = 500.0
HC_KEV_CM = 1.239841984e-7


def naive_paganin(frame: np.ndarray) -> np.ndarray:
    """Reference: float64 numpy.fft, TomoPy's power-of-two padding, full complex spectrum."""
    rows, cols = frame.shape
    lam = HC_KEV_CM / ENERGY_KEV
    pad_pix = math.ceil(math.pi * lam * DIST_CM / PIXEL_CM**2)
    ny = 2 ** math.ceil(math.log2(rows + pad_pix))
    nx = 2 ** math.ceil(math.log2(cols + pad_pix))
    top, left = (ny - rows) // 2, (nx - cols) // 2
    padded = np.pad(
        frame.astype(np.float64), ((top, ny - rows - top), (left, nx - cols - left)), mode="edge"
    )
    fy = np.fft.fftfreq(ny, d=PIXEL_CM)
    fx = np.fft.fftfreq(nx, d=PIXEL_CM)
    kernel = 1.0 / (1.0 + math.pi * lam * DIST_CM * DELTA_BETA * np.add.outer(fy**2, fx**2))
    filtered = np.real(np.fft.ifft2(np.fft.fft2(padded) * kernel))
    return filtered[top : top + rows, left : left + cols]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--size", type=int, default=2048)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    n = args.size
    xx = np.arange(n) - (n - 1) / 2.0
    body = np.exp(-0.5 * np.sqrt(np.clip(1 - (xx / (0.45 * n)) ** 2, 0, None)))[None, :]
    frames = (body + 0.02 * rng.standard_normal((args.frames, n, n))).astype(np.float32)
    length = paganin_length(PIXEL_CM, DIST_CM, ENERGY_KEV, alpha_from_delta_beta(DELTA_BETA))
    print(
        f"{args.frames} frames of {n} × {n}, Paganin length {length:.1f} px, {os.cpu_count()} CPUs"
    )

    retrieve_phase(frames[:1], PIXEL_CM, DIST_CM, ENERGY_KEV, delta_beta=DELTA_BETA)  # warm-up
    start = time.perf_counter()
    ours = retrieve_phase(frames, PIXEL_CM, DIST_CM, ENERGY_KEV, delta_beta=DELTA_BETA)
    t_ours = (time.perf_counter() - start) / args.frames

    start = time.perf_counter()
    reference = np.stack([naive_paganin(f) for f in frames[: max(1, args.frames // 2)]])
    t_ref = (time.perf_counter() - start) / reference.shape[0]

    inner = slice(n // 8, n - n // 8)
    diff_inner = np.abs(ours[: reference.shape[0], inner, inner] - reference[:, inner, inner])
    print(f"insitu retrieve_phase : {t_ours:.3f} s/projection")
    print(
        f"naive float64 (ref)   : {t_ref:.3f} s/projection   ratio ref/insitu = "
        f"{t_ref / t_ours:.1f}×"
    )
    print(
        f"max |insitu − ref| (inner ¾ of the frame): {diff_inner.max():.2e}  "
        f"(signal range {np.ptp(reference):.2f})"
    )
    print(
        f"one 1500-projection scan: {1500 * t_ours / 60:.1f} min (ref {1500 * t_ref / 60:.1f} min)"
    )


if __name__ == "__main__":
    main()
