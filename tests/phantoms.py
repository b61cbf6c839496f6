"""Phantoms with an analytic truth for the reconstruction tests: discs and Gaussian blobs,
their exact parallel-beam sinograms and their images, and the slice's inner circle."""

from __future__ import annotations

import math

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


def gaussian_sinogram(theta, n_det, center, blobs):
    """Exact Radon transform of Gaussian blobs (x0, y0, sigma, amplitude), pixel units."""
    t = np.arange(n_det) - center
    sino = np.zeros((theta.size, n_det))
    for x0, y0, sigma, amp in blobs:
        t0 = x0 * np.cos(theta)[:, None] + y0 * np.sin(theta)[:, None]
        sino += amp * math.sqrt(2 * math.pi) * sigma * np.exp(-((t - t0) ** 2) / (2 * sigma**2))
    return sino


def gaussian_image(n, blobs):
    """The blobs sampled at the pixel centres (rows y, columns x, from the slice centre)."""
    c = (n - 1) / 2
    y, x = np.mgrid[:n, :n] - c
    img = np.zeros((n, n))
    for x0, y0, sigma, amp in blobs:
        img += amp * np.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * sigma**2))
    return img


def inner(n, frac=0.45):
    """Pixels of an n × n slice within ``frac · n`` of its centre."""
    c = (n - 1) / 2
    y, x = np.mgrid[:n, :n] - c
    return x**2 + y**2 < (frac * n) ** 2
