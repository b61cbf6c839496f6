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

import numba
import numpy as np

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


def _noise_block(
    entropy: tuple[int, ...], block: int, ny: int, nx: int, out: np.ndarray | None = None
) -> np.ndarray:
    """White noise of one block; its seed depends only on ``entropy`` and the block index.

    Drawn into ``out`` (BLOCK_ROWS, ny, nx) float32 when given: the same numbers.
    """
    seq = np.random.SeedSequence([*entropy, block + _BLOCK_OFFSET])
    rng = np.random.default_rng(seq)
    if out is None:
        return rng.standard_normal((BLOCK_ROWS, ny, nx), dtype=np.float32)
    return rng.standard_normal(dtype=np.float32, out=out)


class _NoiseRing:
    """Noise blocks of one volume in kept slots: a block drawn once serves the next slabs.

    A caller walking the rows slab by slab needs the previous slab's last blocks again (the
    z-filter's halo); they stay in their slots, and new blocks are drawn into the slots of
    blocks no longer needed, so the noise is never copied and its memory is reused (fresh
    arrays of this size cost a page fault per page, ≈ 0.1 s a full-size slab).
    """

    def __init__(self, key: tuple, slots: int) -> None:
        _, ny, nx = key
        self.key = key
        self.data = np.empty((slots * BLOCK_ROWS, ny, nx), dtype=np.float32)
        self.blocks: dict[int, int] = {}  # block index -> slot

    @classmethod
    def get(cls, cache: dict | None, key: tuple, slots: int) -> _NoiseRing:
        """The cache's ring of this volume with at least ``slots`` slots (or a new one)."""
        ring = None if cache is None else cache.get("ring")
        if not isinstance(ring, cls) or ring.key != key:
            ring = cls(key, slots)
        elif ring.data.shape[0] < slots * BLOCK_ROWS:
            grown = cls(key, slots)
            for slot, (block, old) in enumerate(ring.blocks.items()):
                grown.data[slot * BLOCK_ROWS : (slot + 1) * BLOCK_ROWS] = ring.slot(old)
                grown.blocks[block] = slot
            ring = grown
        if cache is not None:
            cache.clear()
            cache["ring"] = ring
        return ring

    def slot(self, slot: int) -> np.ndarray:
        """The rows of one slot."""
        return self.data[slot * BLOCK_ROWS : (slot + 1) * BLOCK_ROWS]

    def fill(self, b0: int, b1: int) -> None:
        """Hold blocks ``b0..b1``: keep those held, draw the others into freed slots."""
        wanted = range(b0, b1 + 1)
        self.blocks = {b: s for b, s in self.blocks.items() if b in wanted}
        free = sorted(set(range(self.data.shape[0] // BLOCK_ROWS)) - set(self.blocks.values()))
        todo = [(b, free.pop(0)) for b in wanted if b not in self.blocks]
        entropy, ny, nx = self.key

        def draw(job: tuple[int, int]) -> None:
            _noise_block(entropy, job[0], ny, nx, out=self.slot(job[1]))

        if todo:
            with ThreadPoolExecutor(max_workers=min(_workers(), len(todo))) as pool:
                # Threads: the noise generator releases the GIL.
                list(pool.map(draw, todo))
        self.blocks.update(todo)

    def rows(self, z0: int, z1: int) -> np.ndarray:
        """Where volume rows ``z0:z1`` lie in :attr:`data` (their blocks held)."""
        z = np.arange(z0, z1)
        block, within = np.divmod(z, BLOCK_ROWS)
        slots = np.array([self.blocks[int(b)] for b in block], dtype=np.int64)
        return slots * BLOCK_ROWS + within


def pore_field(
    entropy: tuple[int, ...],
    z0: int,
    z1: int,
    ny: int,
    nx: int,
    sigma_vox: float,
    *,
    cache: dict | None = None,
    out: np.ndarray | None = None,
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
    cache : dict, optional
        Kept between calls: the noise blocks of the previous call, reused where this call
        needs them, their memory reused for the blocks it draws: a caller that walks the
        rows slab by slab then draws every block once instead of redrawing the z-filter's
        halo (2.5× the noise of a 16-row slab).
    out : ndarray of float32, shape (z1 - z0, ny, nx), optional
        Where to write the field (a buffer the caller keeps).

    Returns
    -------
    ndarray of float32, shape (z1 - z0, ny, nx)
    """
    w = gaussian_kernel(float(sigma_vox))
    r = (w.size - 1) // 2
    b0, b1 = (z0 - r) // BLOCK_ROWS, (z1 + r - 1) // BLOCK_ROWS
    n = z1 - z0
    # The filtered white noise has variance (Σw²)³; dividing by its root gives a standard normal.
    norm = np.float32(np.sqrt(np.sum(w.astype(float) ** 2)) ** 3)
    ring = _NoiseRing.get(cache, (tuple(entropy), ny, nx), b1 + 1 - b0)
    ring.fill(b0, b1)
    if out is None:
        out = np.empty((n, ny, nx), dtype=np.float32)
    elif out.shape != (n, ny, nx) or out.dtype != np.float32:
        raise ValueError(f"out must be float32 of shape {(n, ny, nx)}, got {out.dtype} {out.shape}")
    # Each output row is computed from its own inputs in a fixed order, so a slab reproduces
    # the rows of the whole volume bit for bit, whatever the threads: the z-filter as
    # Σ_k w_k·noise[row + k] in float32, then the in-plane filters with the arithmetic of
    # scipy.ndimage.correlate1d (float64, "reflect"), in compiled loops that keep a few
    # rows in cache instead of numpy/ndimage passes over whole frames (5× faster).
    _zfilter(ring.data, ring.rows(z0 - r, z1 + r), w, out)
    _filter_plane_rows(out, w, norm)
    return out


@numba.njit(parallel=True, nogil=True, cache=True)
def _zfilter(noise: np.ndarray, rows: np.ndarray, w: np.ndarray, out: np.ndarray) -> None:
    """``out[i] = Σ_k w[k]·noise[rows[i + k]]`` in float32, k ascending (no FMA contraction).

    ``rows`` maps the slab's input rows (its halo included) to rows of ``noise``. Parallel
    over the frame's rows (y): one y-row of every input row (a few hundred KB) stays in
    cache while all output rows are summed from it.
    """
    n, ny, nx = out.shape
    taps = w.size
    for y in numba.prange(ny):
        acc = np.empty(nx, dtype=np.float32)
        for i in range(n):
            acc[:] = 0.0
            for k in range(taps):
                wk = w[k]
                src = noise[rows[i + k], y]
                for x in range(nx):
                    acc[x] = acc[x] + wk * src[x]
            out[i, y] = acc


@numba.njit(cache=True)
def _reflect(i: int, n: int) -> int:
    """Index ``i`` of a line of ``n`` extended as ndimage's ``mode="reflect"`` (d c b a | a b)."""
    m = i % (2 * n)
    return 2 * n - 1 - m if m >= n else m


@numba.njit(parallel=True, nogil=True, cache=True)
def _filter_plane_rows(g: np.ndarray, w: np.ndarray, norm: np.float32) -> None:
    """In place: ``g[i] = correlate1d(correlate1d(g[i], w, axis=0), w, axis=1) / norm``.

    The arithmetic is ndimage's for a symmetric kernel (float64 sums, the centre tap first,
    then the pairs from the outermost in), so the result equals scipy's bit for bit.
    """
    n, ny, nx = g.shape
    r = (w.size - 1) // 2
    wd = w.astype(np.float64)
    tmp = np.empty((ny, nx), dtype=np.float32)
    for i in range(n):
        plane = g[i]
        for y in numba.prange(ny):  # along y (axis 0 of the plane): whole rows at a time
            acc = np.empty(nx, dtype=np.float64)
            src = plane[y]
            for x in range(nx):
                acc[x] = np.float64(src[x]) * wd[r]
            for j in range(r, 0, -1):
                a = plane[_reflect(y - j, ny)]
                b = plane[_reflect(y + j, ny)]
                wj = wd[r - j]
                for x in range(nx):
                    acc[x] += (np.float64(a[x]) + np.float64(b[x])) * wj
            for x in range(nx):
                tmp[y, x] = np.float32(acc[x])
        for y in numba.prange(ny):  # along x, on an extended copy of the line
            line = np.empty(nx + 2 * r, dtype=np.float64)
            for x in range(nx + 2 * r):
                line[x] = tmp[y, _reflect(x - r, nx)]
            acc = np.empty(nx, dtype=np.float64)
            for x in range(nx):
                acc[x] = line[x + r] * wd[r]
            # Tap by tap over the whole line (vectorised), each pixel's sum in ndimage's order.
            for j in range(r, 0, -1):
                wj = wd[r - j]
                for x in range(nx):
                    acc[x] += (line[x + r - j] + line[x + r + j]) * wj
            for x in range(nx):
                plane[y, x] = np.float32(acc[x]) / norm


def _workers() -> int:
    """Threads for :func:`pore_field`'s noise: the CPUs this process may use."""
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
