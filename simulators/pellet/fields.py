"""Random fields of the virtual pellet: slab-independent pore noise and smooth heterogeneity.

Two fields make the pore structure of :class:`insitu.simulators.pellet.model.VirtualPellet`:

* **Pore field** ``g``: white Gaussian noise filtered by a separable Gaussian kernel whose
  width sets the pore size, normalised to unit variance. The noise is drawn per block of
  :data:`BLOCK_ROWS` rows from a seed that depends only on the block index, and the z-filter
  reads the neighbouring blocks as a halo, so any slab of rows equals the same rows of the
  whole volume (the full-size volume is never built whole).
* **Heterogeneity field** ``h``: a sum of random Fourier modes (Gaussian covariance of length
  ``length_m``), unit variance, analytic at any point. It is evaluated on a coarse node grid
  and linearly interpolated, which keeps its cost negligible at full size.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np
from scipy import ndimage

__all__ = ["BLOCK_ROWS", "FourierField", "gaussian_kernel", "interpolation_matrix", "pore_field"]

#: Rows per independently seeded noise block.
BLOCK_ROWS = 8
_BLOCK_OFFSET = 1 << 20  # keeps block seeds non-negative for rows above the grid (halo)


@lru_cache(maxsize=32)
def gaussian_kernel(sigma_vox: float) -> np.ndarray:
    """Normalised Gaussian weights (radius ≥ 1, 4 σ) for a filter ``sigma_vox`` voxels wide."""
    radius = max(1, int(np.ceil(4.0 * sigma_vox)))
    x = np.arange(-radius, radius + 1, dtype=float)
    w = np.exp(-0.5 * (x / max(sigma_vox, 1e-3)) ** 2)
    return (w / w.sum()).astype(np.float32)


def _noise_block(entropy: tuple[int, ...], block: int, ny: int, nx: int) -> np.ndarray:
    """White noise of one block; its seed depends only on ``entropy`` and the block index."""
    seq = np.random.SeedSequence([*entropy, block + _BLOCK_OFFSET])
    rng = np.random.default_rng(seq)
    return rng.standard_normal((BLOCK_ROWS, ny, nx), dtype=np.float32)


def pore_field(
    entropy: tuple[int, ...], z0: int, z1: int, ny: int, nx: int, sigma_vox: float
) -> np.ndarray:
    """Unit-variance Gaussian-filtered noise for rows ``z0:z1`` (identical to the whole).

    Parameters
    ----------
    entropy : tuple of int
        Seed material of the volume (seed, material index).
    z0, z1 : int
        Row range, ``z0 < z1``; rows outside the grid are allowed (they are drawn the same way).
    ny, nx : int
        In-plane size.
    sigma_vox : float
        Filter width in voxels (pore size).

    Returns
    -------
    ndarray of float32, shape (z1 - z0, ny, nx)
    """
    w = gaussian_kernel(float(sigma_vox))
    r = (w.size - 1) // 2
    b0, b1 = (z0 - r) // BLOCK_ROWS, (z1 + r - 1) // BLOCK_ROWS
    start = z0 - r - b0 * BLOCK_ROWS
    n = z1 - z0
    noise = np.empty(((b1 + 1 - b0) * BLOCK_ROWS, ny, nx), dtype=np.float32)
    g = np.empty((n, ny, nx), dtype=np.float32)
    norm = np.float32(np.sqrt(np.sum(w.astype(float) ** 2)) ** 3)

    def draw(b: int) -> None:
        i = (b - b0) * BLOCK_ROWS
        noise[i : i + BLOCK_ROWS] = _noise_block(entropy, b, ny, nx)

    def filtered(i0: int, i1: int) -> None:
        # z-filter as an explicit weighted sum of shifted rows: each output row is computed
        # from its own inputs in a fixed order, so a slab (or a thread's share of one)
        # reproduces the whole volume bit for bit; the in-plane filters work row by row.
        rows = np.zeros((i1 - i0, ny, nx), dtype=np.float32)
        for k, wk in enumerate(w):
            rows += wk * noise[start + k + i0 : start + k + i1]
        rows = ndimage.correlate1d(rows, w, axis=1, mode="reflect")
        rows = ndimage.correlate1d(rows, w, axis=2, mode="reflect")
        # The filtered white noise has variance (Σw²)³; dividing makes it a standard normal.
        g[i0:i1] = rows / norm

    # Threads: the noise generator and the filters release the GIL, and every row is
    # computed alone, so the result does not depend on the number of workers (a full-size
    # pellet's pore field is ≈ 0.4 s per row single-threaded).
    shares = [(i, min(n, i + _ROWS_PER_TASK)) for i in range(0, n, _ROWS_PER_TASK)]
    with ThreadPoolExecutor(max_workers=_workers()) as pool:
        list(pool.map(draw, range(b0, b1 + 1)))
        list(pool.map(lambda share: filtered(*share), shares))
    return g


#: Output rows per filtering task of :func:`pore_field`.
_ROWS_PER_TASK = 4


def _workers() -> int:
    """Threads for :func:`pore_field`: the CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class FourierField:
    """Smooth unit-variance Gaussian random field from random Fourier modes.

    ``h(x) = sqrt(2/K) Σ cos(k_i·x + φ_i)`` with ``k_i ~ N(0, I/ℓ²)`` has covariance
    ``exp(-r²/(2ℓ²))``; it is analytic, so any point (also outside the voxel grid) evaluates
    without reference to a grid.

    Parameters
    ----------
    length_m : float
        Correlation length ℓ.
    rng : numpy.random.Generator
        Source of the modes.
    n_modes : int
        Number of modes K.
    """

    def __init__(self, length_m: float, rng: np.random.Generator, n_modes: int = 64) -> None:
        self.length_m = float(length_m)
        self.k = rng.normal(0.0, 1.0 / self.length_m, size=(n_modes, 3))
        self.phase = rng.uniform(0.0, 2.0 * np.pi, size=n_modes)
        self.amplitude = np.sqrt(2.0 / n_modes)

    def __call__(self, z: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """The field at points (broadcast arrays of metres)."""
        z, y, x = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (z, y, x)))
        out = np.zeros(z.shape)
        for (kz, ky, kx), ph in zip(self.k, self.phase, strict=True):
            out += np.cos(kz * z + ky * y + kx * x + ph)
        return self.amplitude * out


def interpolation_matrix(nodes: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Dense linear-interpolation weights, shape (len(points), len(nodes)); nodes ascending."""
    i = np.clip(np.searchsorted(nodes, points) - 1, 0, nodes.size - 2)
    t = np.clip((points - nodes[i]) / (nodes[i + 1] - nodes[i]), 0.0, 1.0)
    m = np.zeros((points.size, nodes.size))
    rows = np.arange(points.size)
    m[rows, i] = 1.0 - t
    m[rows, i + 1] = t
    return m
