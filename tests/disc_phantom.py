"""Discs of known attenuation: exact parallel-beam sinograms and pixel-averaged images,
the analytic truth the reconstruction tests compare against."""

from __future__ import annotations

import numpy as np


def disc_sinogram(theta, n_det, center, discs):
    """Exact chords through discs (x0, y0, radius, value), sampled at the pixel centres."""
    t = np.arange(n_det) - center
    sino = np.zeros((theta.size, n_det))
    for x0, y0, r, value in discs:
        t0 = x0 * np.cos(theta)[:, None] + y0 * np.sin(theta)[:, None]
        sino += 2 * value * np.sqrt(np.clip(r**2 - (t - t0) ** 2, 0, None))
    return sino


def disc_image(n, discs, supersample=4):
    """Discs averaged over each pixel (rows y, columns x, from the slice centre): the truth a
    band-limited reconstruction aims at."""
    c = (n - 1) / 2
    sub = (np.arange(supersample) + 0.5) / supersample - 0.5
    img = np.zeros((n, n))
    y, x = np.mgrid[:n, :n] - c
    for dy in sub:
        for dx in sub:
            for x0, y0, r, value in discs:
                img += value * (((x + dx - x0) ** 2 + (y + dy - y0) ** 2) <= r**2)
    return img / supersample**2
