"""Porosity and the continuous pore size distribution (local thickness) of the electrolyte.

Porosity
--------
A pore is a voxel of the electrolyte rows, inside the pellet, whose grey value is below the
study threshold (:class:`~insitu.analysis.microstructure.segment.StudyThreshold`: solid iff
``grey ≥ value``). Porosity = pores / voxels analysed. Cracks are pores here as well (the
crack analysis separates them by size).

Local thickness (Hildebrand–Rüegsegger, as ImageJ's "Local Thickness" plugin)
--------------------------------------------------------------------------------
The local thickness of a pore voxel is the diameter of the largest ball that fits inside the
pore space and contains the voxel. The steps and pixel conventions reproduce Dougherty's
ImageJ/Fiji plugin ("Local Thickness (complete process)"):

1. **Distance map**: ``D`` = squared Euclidean distance, in voxels, from each pore voxel's
   centre to the nearest non-pore voxel's centre (exact, integer; a pore voxel touching the
   solid has ``D = 1``). The edges of the array are *not* solid (ImageJ's and scipy's
   convention); :func:`pore_analysis` puts explicit solid rows beyond the electrolyte rows,
   because there the pores end at the Li.
2. **Distance ridge**: a voxel is dropped when the grid ball ``{o : |o|² ≤ D}`` around it
   lies inside the grid ball of one of its 26 neighbours (exact integer-grid containment,
   the same test as ImageJ's templates); dropping it cannot change the result.
3. **Painting**: every ridge voxel writes ``max(current, D)`` into its ball
   ``{o : |o|² ≤ D}``; the thickness is ``2·√D`` (ImageJ multiplies by 2 to report the
   *diameter*). The map is then masked to the pore voxels (the balls reach one voxel into the
   solid: Fiji's/BoneJ's "mask thickness map").
4. **Clean-up** (optional, on by default as in the complete process): pore voxels with a
   non-pore 26-neighbour are replaced by the mean thickness of their neighbours that are
   interior pore voxels (ImageJ's "Cleaned-Up Local Thickness").

Diameters are reported in µm: ``2·√D · voxel_um``. Pixel convention: a digital ball of
radius R (voxel centres within R of the centre) has ``D = R² + 1`` at its centre, so ImageJ —
and this module — report ``2√(R²+1) ≈ 2R`` for it, about one voxel less than its extent
counted in voxel edges (2R + 1). That bias is ImageJ's; we keep it so that numbers compare.

Chunking and memory
-------------------
The volume is read in z-slabs (any array-like with slicing: numpy, zarr, h5py). The slabs
need the largest distance ``R = √max D``: it is guessed (with 50 % to spare) from three
sample slabs and verified by the local-thickness pass itself, slab by slab (every voxel lies
in one slab's core, where distances are exact); a slab beyond the guess sends the run to an
exact first pass that computes ``R`` slab by slab (a slab's distances are exact wherever they
do not exceed its halo, which is checked and grown), as it always does when ``slab_rows`` is
given. The local-thickness pass processes slabs with a halo of ``2·⌈R⌉ + 3`` rows: ``R`` for
the distances of ball centres reaching the core, ``R`` for the balls themselves, and 3 rows
for the ridge test and the clean-up neighbourhood, so **the chunked result equals the
unchunked one exactly**, whether ``R`` was guessed or computed.

Only the rows the core needs are painted (the core, one row each side for the clean-up, from
the centres within reach of them), and the slabs' distances come from a *bounded* transform:
exact up to ``dmax`` (a window of ``2⌊√dmax⌋ + 1`` per axis), above it elsewhere, which after
the clamp to ``dmax`` every slab needs anyway is the exact transform voxel for voxel.

Working memory, in buffers reused from slab to slab (first touches of fresh memory cost more
than the arithmetic on the 2-core test machine): per slab voxel 1 (pore mask) + 4 (D, then
the float32 thickness of the core), per core voxel 4 (painted D) + 2 (clean-up flags), ≈ 11
bytes, plus two input slabs: the next slab's grey rows are read (and decoded, for Zarr or
HDF5) in a background thread while this one is computed. Slabs are sized from
``memory_budget_gib``: for a 2000 × 1143 × 1000 uint8 volume at a 2 GiB budget a slab is
≈ 190 rows including the halo. Time scales
linearly with the number of pore voxels times the mean ball volume of the ridge voxels (see
``benchmarks/bench_tomo_porosity.py``).

Speed option
------------
``pore_analysis(psd_fraction=f, psd_seed=s)`` measures the distribution on a random subset of
the rows: ``f`` of the blocks of :data:`PSD_BLOCK_ROWS` rows, drawn by
``numpy.random.default_rng(s)`` (:func:`psd_sample_blocks`). Each sampled block keeps its
halo, so its thickness is exactly the whole volume's there: the subset's distribution is a
sample of the full one, not an approximation of each value. The fraction, seed and rows are
recorded in ``PoreAnalysis.psd_sample``; the porosity still counts every row.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import numba
import numpy as np

from ..errors import AnalysisInputError

__all__ = [
    "PSD_BLOCK_ROWS",
    "PoreAnalysis",
    "PoreSizeDistribution",
    "distance_map_sq",
    "local_thickness",
    "pore_analysis",
    "pore_size_distribution",
    "porosity",
    "psd_sample_blocks",
]

_INF = np.int32(2**31 - 1)
_BYTES_PER_VOXEL = 11


# --- numba kernels ----------------------------------------------------------------------------
@numba.njit(cache=True)
def _envelope_1d(f: np.ndarray, out: np.ndarray, v: np.ndarray, zb: np.ndarray) -> None:
    """Felzenszwalb–Huttenlocher 1-D squared distance transform of ``f`` into ``out``.

    ``f`` holds squared distances (int64, ``_INF`` where unknown); ``out[q] = min_p f[p] +
    (q - p)²``.
    """
    n = f.size
    inf = 2**31 - 1
    k = -1
    for q in range(n):
        fq = f[q]
        if fq >= inf:
            continue
        if k < 0:
            k = 0
            v[0] = q
            zb[0] = -np.inf
            zb[1] = np.inf
            continue
        s = ((fq + q * q) - (f[v[k]] + v[k] * v[k])) / (2.0 * (q - v[k]))
        while s <= zb[k]:
            k -= 1
            s = ((fq + q * q) - (f[v[k]] + v[k] * v[k])) / (2.0 * (q - v[k]))
        k += 1
        v[k] = q
        zb[k] = s
        zb[k + 1] = np.inf
    if k < 0:
        for q in range(n):
            out[q] = inf
        return
    k = 0
    for q in range(n):
        while zb[k + 1] < q:
            k += 1
        d = q - v[k]
        val = d * d + f[v[k]]
        out[q] = val if val < inf else inf


@numba.njit(parallel=True, cache=True, nogil=True)
def _edt_sq(mask: np.ndarray) -> np.ndarray:
    """Exact squared Euclidean distance (voxels) to the nearest False voxel; 0 on False."""
    nz, ny, nx = mask.shape
    inf = 2**31 - 1
    d = np.empty((nz, ny, nx), dtype=np.int32)
    # x: two sweeps per line give the distance to the nearest background in the line.
    for z in numba.prange(nz):
        for y in range(ny):
            last = -1
            for x in range(nx):
                if not mask[z, y, x]:
                    last = x
                    d[z, y, x] = 0
                elif last < 0:
                    d[z, y, x] = inf
                else:
                    t = x - last
                    d[z, y, x] = t * t
            last = -1
            for x in range(nx - 1, -1, -1):
                if not mask[z, y, x]:
                    last = x
                elif last >= 0:
                    t = last - x
                    if t * t < d[z, y, x]:
                        d[z, y, x] = t * t
    # y, then z: lower envelopes of parabolas.
    for z in numba.prange(nz):
        f = np.empty(ny, dtype=np.int64)
        o = np.empty(ny, dtype=np.int64)
        v = np.empty(ny, dtype=np.int64)
        zb = np.empty(ny + 1, dtype=np.float64)
        for x in range(nx):
            for y in range(ny):
                f[y] = d[z, y, x]
            _envelope_1d(f, o, v, zb)
            for y in range(ny):
                d[z, y, x] = o[y]
    for y in numba.prange(ny):
        f = np.empty(nz, dtype=np.int64)
        o = np.empty(nz, dtype=np.int64)
        v = np.empty(nz, dtype=np.int64)
        zb = np.empty(nz + 1, dtype=np.float64)
        for x in range(nx):
            for z in range(nz):
                f[z] = d[z, y, x]
            _envelope_1d(f, o, v, zb)
            for z in range(nz):
                d[z, y, x] = o[z]
    return d


@numba.njit(cache=True)
def _isqrt(n: int) -> int:
    r = int(math.sqrt(n))
    while r * r > n:
        r -= 1
    while (r + 1) * (r + 1) <= n:
        r += 1
    return r


@numba.njit(parallel=True, cache=True)
def _containment_template(dmax: int) -> np.ndarray:
    """``t[c, D]``: smallest squared radius a neighbour at offset class c (1: face, 2: edge,
    3: corner) needs for its grid ball to contain the grid ball ``|o|² ≤ D`` of the origin."""
    t = np.zeros((4, dmax + 1), dtype=np.int64)
    for dd in numba.prange(dmax + 1):
        r = _isqrt(dd)
        for c in range(1, 4):
            ny_ = 1 if c >= 2 else 0
            nz_ = 1 if c >= 3 else 0
            best = 0
            for oz in range(-r, r + 1):
                for oy in range(-r, r + 1):
                    rem = dd - oz * oz - oy * oy
                    if rem < 0:
                        continue
                    # The farthest point of this column from the neighbour (at +1 in x) is
                    # the one at the most negative x.
                    ox = -_isqrt(rem)
                    val = (ox - 1) ** 2 + (oy - ny_) ** 2 + (oz - nz_) ** 2
                    if val > best:
                        best = val
            t[c, dd] = best
    return t


# Why our own kernels and not the ``edt`` package (LGPL, multi-threaded): measured on the
# same 64 × 1000 × 2000 pore mask (porosity 0.2, benchmarks' pores), 2 cores, all exact
# (max |ΔD| = 0 against scipy): ``_edt_sq_bounded`` (dmax 63) 0.38 s, ``_edt_sq`` 1.39 s,
# ``edt.edtsq`` 4.17 s (parallel=1) / 5.38 s (parallel=2), scipy's distance_transform_edt
# 27.5 s. The slabs only need distances up to dmax, which the bounded window finds with
# whole-row vector operations; ``edt`` stays out of the dependencies.
@numba.njit(cache=True)
def _window_min_rows(a2: np.ndarray, r: int, cap: int) -> None:
    """In place along axis 0 of ``a2``: ``a2[i] = min(cap, min_{|k| ≤ r} a2[i + k] + k²)``.

    One pass of the bounded distance transform: whole rows at a time, so the inner loop runs
    over contiguous x and vectorises. ``a2`` holds values ≤ ``cap`` (no overflow).
    """
    n, m = a2.shape
    src = a2.copy()
    acc = np.empty(m, dtype=np.int32)
    for i in range(n):
        for x in range(m):
            acc[x] = src[i, x]
        for k in range(max(0, i - r), min(n, i + r + 1)):
            if k == i:
                continue
            off = np.int32((k - i) * (k - i))
            for x in range(m):
                acc[x] = min(acc[x], np.int32(src[k, x] + off))
        for x in range(m):
            a2[i, x] = min(acc[x], cap)


@numba.njit(parallel=True, cache=True, nogil=True)
def _edt_sq_bounded(mask: np.ndarray, dmax: int, d: np.ndarray) -> np.ndarray:
    """Squared distances exact where they are ≤ ``dmax``; ``dmax + 1`` elsewhere.

    A distance ≤ ``dmax`` has its nearest non-pore voxel within ``r = ⌊√dmax⌋`` rows and
    columns, so a min over a window of ``2r + 1`` per axis finds it exactly; every candidate
    is a true distance to some non-pore voxel, so a distance > ``dmax`` stays > ``dmax``.
    After clamping to ``dmax`` (as the local-thickness slabs do anyway) the result equals
    ``minimum(_edt_sq(mask), dmax)`` voxel for voxel. Written into ``d`` (int32, the
    mask's shape), a buffer reused from slab to slab: first touches of fresh memory cost
    more than the transform here (0.5 s a 512 MiB array on the 2-core test machine).
    """
    nz, ny, nx = mask.shape
    cap = dmax + 1
    r = _isqrt(dmax)
    far = 2 * nx + 2 * cap
    for z in numba.prange(nz):
        for y in range(ny):
            # Branch-free (the mask is random, branches on it mispredict): on a non-pore
            # voxel ``last = x`` and its distance comes out 0.
            last = -far
            for x in range(nx):
                last = x if not mask[z, y, x] else last
                t = min(x - last, cap)
                d[z, y, x] = min(t * t, cap)
            last = nx + far
            for x in range(nx - 1, -1, -1):
                last = x if not mask[z, y, x] else last
                t = min(last - x, cap)
                d[z, y, x] = min(d[z, y, x], t * t)
    for z in numba.prange(nz):
        _window_min_rows(d[z], r, cap)
    for y in numba.prange(ny):
        _window_min_rows(d[:, y, :], r, cap)
    return d


@numba.njit(cache=True)
def _isqrt_table(dmax: int) -> np.ndarray:
    out = np.empty(dmax + 1, dtype=np.int64)
    for i in range(dmax + 1):
        out[i] = _isqrt(i)
    return out


@numba.njit(cache=True)
def _is_ridge(d: np.ndarray, t: np.ndarray, z: int, y: int, x: int) -> bool:
    nz, ny, nx = d.shape
    d0 = d[z, y, x]
    for dz in range(-1, 2):
        z1 = z + dz
        if z1 < 0 or z1 >= nz:
            continue
        for dy in range(-1, 2):
            y1 = y + dy
            if y1 < 0 or y1 >= ny:
                continue
            for dx in range(-1, 2):
                x1 = x + dx
                if x1 < 0 or x1 >= nx:
                    continue
                c = abs(dz) + abs(dy) + abs(dx)
                if c == 0:
                    continue
                if d[z1, y1, x1] >= t[c, d0]:
                    return False
    return True


@numba.njit(cache=True, nogil=True)
def _paint_rows(
    d: np.ndarray,
    t: np.ndarray,
    sq: np.ndarray,
    out: np.ndarray,
    o0: int,
    z0: int,
    z1: int,
    y0: int,
    y1: int,
) -> None:
    """Paint the balls of the ridge voxels centred in rows z0..z1-1, lines y0..y1-1 of ``d``
    into ``out``, whose row 0 is row ``o0`` of ``d`` (rows outside ``out`` are not written).

    Balls of ``D = 1`` are skipped: they write 1, which :func:`_paint` has already put on
    every pore voxel (see there).
    """
    _, ny, nx = d.shape
    o1 = o0 + out.shape[0]
    for z in range(z0, z1):
        for y in range(y0, y1):
            for x in range(nx):
                dd = d[z, y, x]
                if dd <= 1 or not _is_ridge(d, t, z, y, x):
                    continue
                r = sq[dd]
                for k in range(max(o0, z - r), min(o1, z + r + 1)):
                    rk = (k - z) * (k - z)
                    for j in range(max(0, y - r), min(ny, y + r + 1)):
                        rjk = rk + (j - y) * (j - y)
                        if rjk > dd:
                            continue
                        w = sq[dd - rjk]
                        row = out[k - o0, j]
                        # Branch-free max: the x run is contiguous and vectorises.
                        for i in range(max(0, x - w), min(nx, x + w + 1)):
                            row[i] = max(row[i], dd)


@numba.njit(parallel=True, cache=True, nogil=True)
def _paint(
    d: np.ndarray, t: np.ndarray, rmax: int, c0: int, c1: int, o0: int, out: np.ndarray
) -> np.ndarray:
    """Max of the ridge balls' squared radii over rows ``o0:o1`` of ``d``, from the ridge
    voxels centred in rows ``c0:c1`` (every centre whose ball can reach), into ``out`` (rows
    ``o0:o0 + len(out)``; a buffer reused from slab to slab). Exact on the pore voxels
    (``d > 0``), the only ones read afterwards; elsewhere ≤ the full painting.

    Why pore voxels start at 1 and the ``D = 1`` balls are skipped: every pore voxel lies in
    some ridge ball (its own, or one containing it), so its full painting is ≥ 1, and a
    ``D = 1`` ball writes only 1: ``max(painted without them, 1)`` is the same value. Those
    balls were 60 % of the ridge voxels of the benchmark's pores.
    """
    nk, ny, nx = out.shape
    for k in numba.prange(nk):
        for y in range(ny):
            for x in range(nx):
                out[k, y, x] = 1 if d[o0 + k, y, x] > 0 else 0
    sq = _isqrt_table(max(rmax * rmax, 1))
    # Stripes of lines (y) wider than a ball's reach: stripes of one parity never write the
    # same voxel, so they run in parallel without races (the result is deterministic). Along
    # y there are many stripes for the threads to share; along z a slab has only a few.
    width = 2 * rmax + 2
    nstripes = (ny + width - 1) // width
    for parity in range(2):
        nsel = (nstripes - parity + 1) // 2
        for s in numba.prange(nsel):
            a = (2 * s + parity) * width
            _paint_rows(d, t, sq, out, o0, c0, c1, a, min(ny, a + width))
    return out


@numba.njit(parallel=True, cache=True, nogil=True)
def _interior(
    mask: np.ndarray, e0: int, e1: int, ex: np.ndarray, exy: np.ndarray, out: np.ndarray
) -> np.ndarray:
    """Pore voxels of rows ``e0:e1`` whose 26 in-range neighbours are all pore voxels.

    The 3×3×3 erosion done separably (x, y, then z): the box is a product of three windows.
    ``ex``, ``exy`` (rows ``e0 - 1 .. e1``) and ``out`` (rows ``e0:e1``) are buffers.
    """
    nz, ny, nx = mask.shape
    m0, m1 = max(0, e0 - 1), min(nz, e1 + 1)
    for z in numba.prange(m0, m1):
        for y in range(ny):
            for x in range(nx):
                v = mask[z, y, x]
                if x > 0:
                    v = v and mask[z, y, x - 1]
                if x < nx - 1:
                    v = v and mask[z, y, x + 1]
                ex[z - m0, y, x] = v
    for z in numba.prange(m1 - m0):
        for y in range(ny):
            for x in range(nx):
                v = ex[z, y, x]
                if y > 0:
                    v = v and ex[z, y - 1, x]
                if y < ny - 1:
                    v = v and ex[z, y + 1, x]
                exy[z, y, x] = v
    for z in numba.prange(e0, e1):
        for y in range(ny):
            for x in range(nx):
                v = exy[z - m0, y, x]
                if z > 0:
                    v = v and exy[z - 1 - m0, y, x]
                if z < nz - 1:
                    v = v and exy[z + 1 - m0, y, x]
                out[z - e0, y, x] = v
    return out


def _finish_rows(
    mask: np.ndarray,
    painted: np.ndarray,
    p0: int,
    z0: int,
    z1: int,
    lut: np.ndarray,
    clean_up: bool,
    lt: np.ndarray,
    scratch: np.ndarray,
) -> np.ndarray:
    """Diameters of rows ``z0:z1`` of ``mask`` (``lut[D] = 2√D·scale``), with ImageJ's clean-up.

    ``painted[k]`` is row ``p0 + k`` and covers rows ``z0 - 1 .. z1`` within the array. A pore
    voxel with a non-pore 26-neighbour (a surface voxel) takes the mean thickness of its
    interior pore neighbours. That mean sums ≤ 27 float32 values in float64, which is exact
    (their exponents differ by < 24), so it does not depend on the order of the sum.
    ``lt`` (rows ``z0:z1``) receives the result; ``scratch`` holds ≥ 2 × (z1 - z0 + 4)
    rows of booleans. With the clean-up, ``painted`` is overwritten (its memory holds the
    interior voxels' thickness for it).
    """
    nz = mask.shape[0]
    _fill_rows(mask, painted, p0, z0, z1, lut, lt)
    if not clean_up:
        return lt
    e0, e1 = max(0, z0 - 1), min(nz, z1 + 1)
    m0, m1 = max(0, e0 - 1), min(nz, e1 + 1)
    k = m1 - m0
    # ``inner`` overwrites ``ex``, which is no longer read once ``exy`` is built.
    inner = _interior(mask, e0, e1, scratch[:k], scratch[k : 2 * k], scratch[: e1 - e0])
    # The painting is not read again: its memory takes the interior voxels' thickness.
    values = painted.view(np.float32)
    _interior_values(painted, p0, inner, e0, lut, values)
    _clean_up_rows(mask, values, p0, inner, e0, z0, z1, lt, 8 * numba.get_num_threads())
    return lt


@numba.njit(parallel=True, cache=True, nogil=True)
def _fill_rows(
    mask: np.ndarray,
    painted: np.ndarray,
    p0: int,
    z0: int,
    z1: int,
    lut: np.ndarray,
    lt: np.ndarray,
) -> None:
    """``lt`` = ``lut[painted]`` on the pore voxels of rows ``z0:z1``, 0 elsewhere."""
    _, ny, nx = mask.shape
    for z in numba.prange(z0, z1):
        for y in range(ny):
            for x in range(nx):
                lt[z - z0, y, x] = lut[painted[z - p0, y, x]] if mask[z, y, x] else 0.0


@numba.njit(parallel=True, cache=True, nogil=True)
def _interior_values(
    painted: np.ndarray, p0: int, inner: np.ndarray, e0: int, lut: np.ndarray, values: np.ndarray
) -> None:
    """``values`` = the thickness ``lut[painted]`` of the interior voxels, 0 elsewhere, on the
    rows of ``inner`` (row ``e0 + k``; ``painted[k]`` is row ``p0 + k``).

    ``values`` may be ``painted``'s own memory viewed as float32: each voxel is read before it
    is written, and the painting is not read again.
    """
    ne, ny, nx = inner.shape
    for k in numba.prange(ne):
        for y in range(ny):
            for x in range(nx):
                d = painted[e0 + k - p0, y, x]
                values[e0 + k - p0, y, x] = lut[d] if inner[k, y, x] else np.float32(0.0)


@numba.njit(parallel=True, cache=True, nogil=True)
def _clean_up_rows(
    mask: np.ndarray,
    values: np.ndarray,
    p0: int,
    inner: np.ndarray,
    e0: int,
    z0: int,
    z1: int,
    lt: np.ndarray,
    blocks: int,
) -> None:
    """ImageJ's clean-up of rows ``z0:z1`` of ``lt``: each surface voxel (a pore voxel that is
    not interior) takes the mean thickness of its interior 26-neighbours, when it has any.

    ``values`` (:func:`_interior_values`) holds the interior voxels' thickness and 0
    elsewhere, row ``p0 + k`` at ``values[k]``; ``inner[k]`` is row ``e0 + k`` (rows
    ``z0 - 1 .. z1`` within the array). For a line (z, y) with a surface voxel, the nine
    neighbouring lines are summed per x once (``col``, and ``cnt``, the interior voxels),
    then each surface voxel adds three of those sums. Every partial sum is of ≤ 27 float32
    values in float64, which is exact (see :func:`_finish_rows`): the same value, bit for
    bit, as the voxel-by-voxel sum it replaced (kept in the tests), which read 27 neighbours
    and branched on each for every surface voxel — 84 % of the pore voxels of the
    benchmark's pores; this reads 9 values per x of the line, without a branch, and was
    measured 35–45 % faster on a beamline-width slab. ``blocks``: the lines are split into
    that many runs, each with its own line sums.
    """
    _, ny, nx = mask.shape
    e1 = e0 + inner.shape[0]
    lines = (z1 - z0) * ny
    for blk in numba.prange(blocks):
        col = np.empty(nx, dtype=np.float64)
        cnt = np.empty(nx, dtype=np.int32)
        for zy in range(blk * lines // blocks, (blk + 1) * lines // blocks):
            z = z0 + zy // ny
            y = zy % ny
            surface = False
            for x in range(nx):
                if mask[z, y, x] and not inner[z - e0, y, x]:
                    surface = True
                    break
            if not surface:
                continue
            za, zb = max(e0, z - 1), min(e1, z + 2)
            ya, yb = max(0, y - 1), min(ny, y + 2)
            for x in range(nx):
                col[x] = 0.0
                cnt[x] = 0
            for k in range(za, zb):
                for j in range(ya, yb):
                    for x in range(nx):
                        v = values[k - p0, j, x]
                        col[x] += v
                        # Interior iff > 0: an interior voxel is a pore voxel, painted ≥ 1,
                        # so its thickness 2·√D·voxel is > 0.
                        cnt[x] += v > 0
            for x in range(nx):
                if not mask[z, y, x] or inner[z - e0, y, x]:
                    continue
                acc = 0.0
                n = 0
                for i in range(max(0, x - 1), min(nx, x + 2)):
                    acc += col[i]
                    n += cnt[i]
                if n > 0:
                    lt[z - z0, y, x] = acc / n


def _thickness_lut(dmax: int, scale: float) -> np.ndarray:
    """``2·√D·scale`` as float32 for D = 0..dmax, rounded as the per-voxel formula was."""
    return (2.0 * np.sqrt(np.arange(dmax + 1, dtype=np.float64)) * scale).astype(np.float32)


@numba.njit(parallel=True, cache=True, nogil=True)
def _histogram_rows(
    lt: np.ndarray, pores: np.ndarray, edges: np.ndarray
) -> tuple[np.ndarray, int, float, float]:
    """``np.histogram(lt[pores], edges)`` counts, the number, sum and max of ``lt[pores]``.

    Per row, then summed: no float64 copy of the values and no sort (``np.histogram`` sorts
    when given bin edges). A value's bin is the largest ``k`` with ``edges[k] ≤ v`` (what
    ``searchsorted(edges, v, "right") - 1`` gives, the last bin closed): guessed as if the
    bins were even, then corrected by comparing with the edges, which is exact for any
    ascending edges and one or two comparisons for the default even ones (a binary search
    took 8 % of the local-thickness pass at beamline size).
    """
    nz, ny, nx = lt.shape
    nb = edges.size - 1
    counts = np.zeros((nz, nb), dtype=np.int64)
    sums = np.zeros(nz, dtype=np.float64)
    nums = np.zeros(nz, dtype=np.int64)
    maxs = np.zeros(nz, dtype=np.float64)
    lo, hi = edges[0], edges[-1]
    per_bin = nb / (hi - lo) if hi > lo else 0.0
    for z in numba.prange(nz):
        for y in range(ny):
            line = 0.0
            for x in range(nx):
                if not pores[z, y, x]:
                    continue
                v = np.float64(lt[z, y, x])
                line += v
                nums[z] += 1
                maxs[z] = max(maxs[z], v)
                if v < lo or v > hi:
                    continue
                k = min(max(int((v - lo) * per_bin), 0), nb)
                while k < nb and edges[k + 1] <= v:
                    k += 1
                while k > 0 and edges[k] > v:
                    k -= 1
                counts[z, min(k, nb - 1)] += 1
            sums[z] += line
    return counts.sum(axis=0), int(nums.sum()), float(sums.sum()), float(maxs.max())


# --- in-memory API ----------------------------------------------------------------------------
def _check_voxel(voxel_um: float) -> float:
    v = float(voxel_um)
    if not (np.isfinite(v) and v > 0):
        raise ValueError(f"voxel_um must be a positive number of µm, got {voxel_um!r}")
    return v


def _as_pores(pores: np.ndarray) -> np.ndarray:
    p = np.asarray(pores)
    if p.ndim != 3:
        raise ValueError(f"pores must be a 3-D (z, y, x) boolean array, got shape {p.shape}")
    if p.dtype != bool:
        raise ValueError(
            f"pores must be boolean (True = pore), got dtype {p.dtype}; binarise first, "
            "e.g. pores = ~binarize(volume, threshold) & inside"
        )
    return np.ascontiguousarray(p)


def distance_map_sq(pores: np.ndarray) -> np.ndarray:
    """Exact squared Euclidean distance map of the pore space, in voxels².

    Parameters
    ----------
    pores : ndarray of bool, shape (nz, ny, nx)
        True in the pore space.

    Returns
    -------
    ndarray of int32
        Squared distance from each pore voxel to the nearest non-pore voxel (0 on non-pore
        voxels; ``2**31 - 1`` if the array holds no non-pore voxel). Equals
        ``scipy.ndimage.distance_transform_edt(pores) ** 2``.
    """
    return _edt_sq(_as_pores(pores))


def _lt_slab(mask: np.ndarray, clean_up: bool, voxel_um: float) -> tuple[np.ndarray, int]:
    d = _edt_sq(mask)
    dmax = int(d.max()) if d.size else 0
    if dmax >= _INF:
        raise ValueError("pores holds no solid voxel, so no ball is bounded; check the mask")
    t = _containment_template(dmax)
    buf = _SlabBuffers(mask.shape[0], mask.shape[0], mask.shape[1:])
    lt = _lt_rows(mask, d, t, dmax, 0, mask.shape[0], _thickness_lut(dmax, voxel_um), clean_up, buf)
    return lt.copy(), dmax


class _SlabBuffers:
    """Work arrays of the largest slab, reused (their first rows) by every slab.

    First touches of fresh memory cost more than the arithmetic here: 0.5 s of page faults
    for a 512 MiB array on the 2-core test machine, against 0.07 s to fill it again.
    ``d`` holds the distances, then (as float32) the thickness: ≈ 5 bytes per slab voxel
    with the mask, plus 6 per core voxel (``painted``, ``scratch``).
    """

    def __init__(self, rows: int, core_rows: int, plane: tuple[int, ...]) -> None:
        self.d = np.empty((rows, *plane), dtype=np.int32)
        self.painted = np.empty((core_rows + 2, *plane), dtype=np.int32)
        self.scratch = np.empty((2 * (core_rows + 4), *plane), dtype=bool)


def _lt_rows(
    mask: np.ndarray,
    d: np.ndarray,
    t: np.ndarray,
    dmax: int,
    a: int,
    b: int,
    lut: np.ndarray,
    clean_up: bool,
    buf: _SlabBuffers,
) -> np.ndarray:
    """Thickness of rows ``a:b`` of a slab from its clamped distances ``d`` (a view of
    ``buf.d``, overwritten: the result is a view of the same memory)."""
    nz = mask.shape[0]
    rmax = _isqrt_py(dmax) + 1
    # Only the rows a-1..b are painted (the core and the clean-up's neighbours), from the
    # centres whose balls can reach them.
    o0, o1 = max(0, a - 1), min(nz, b + 1)
    painted = _paint(d, t, rmax, max(0, o0 - rmax), min(nz, o1 + rmax), o0, buf.painted[: o1 - o0])
    lt = (
        buf.d.reshape(-1)
        .view(np.float32)[: (b - a) * mask[0].size]
        .reshape((b - a, *mask.shape[1:]))
    )
    return _finish_rows(mask, painted, o0, a, b, lut, clean_up, lt, buf.scratch)


def _isqrt_py(n: int) -> int:
    return math.isqrt(int(n))


def local_thickness(
    pores: Any,
    *,
    voxel_um: float = 1.0,
    clean_up: bool = True,
    slab_rows: int | None = None,
    out: Any = None,
) -> Any:
    """Local thickness (diameter, µm) of every pore voxel, ImageJ-compatible.

    Parameters
    ----------
    pores : array_like of bool, shape (nz, ny, nx)
        True in the pore space. A numpy array, or (with ``slab_rows``) any array-like that
        slices along z, e.g. a zarr array.
    voxel_um : float, optional
        Voxel edge in µm; the result is ``2·√D·voxel_um`` (see the module notes for
        ImageJ's pixel convention).
    clean_up : bool, optional
        ImageJ's clean-up of the surface voxels (on in its complete process).
    slab_rows : int, optional
        Process in z-slabs of this many core rows (bounded memory); the result equals the
        unchunked one exactly. Default: the whole array at once.
    out : array_like of float32, shape (nz, ny, nx), optional
        Where to write the result (e.g. a zarr array); allocated if None.

    Returns
    -------
    ndarray or the given ``out``, float32
        0 outside the pores.
    """
    v = _check_voxel(voxel_um)
    if slab_rows is None:
        p = _as_pores(pores)
        lt, _ = _lt_slab(p, clean_up, v)
        if out is None:
            return lt
        out[...] = lt
        return out
    shape = tuple(pores.shape)
    if len(shape) != 3:
        raise ValueError(f"pores must be a 3-D (z, y, x) array, got shape {shape}")
    if out is None:
        out = np.zeros(shape, dtype=np.float32)

    def read(a: int, b: int) -> np.ndarray:
        return _as_pores(np.asarray(pores[a:b]))

    for a, b, lt, _ in _chunked_lt(read, shape[0], _core_slabs(shape[0], slab_rows), clean_up, v):
        out[a:b] = lt
    return out


# --- chunked driver ---------------------------------------------------------------------------
def _max_distance_sq(read: Callable[[int, int], np.ndarray], n: int, slab_rows: int) -> int:
    """Exact global max of the squared distance map, slab by slab with a self-checked halo."""
    dmax = 0
    halo = 16
    a = 0
    while a < n:
        b = min(n, a + slab_rows)
        lo, hi = max(0, a - halo), min(n, b + halo)
        d = _edt_sq(read(lo, hi))
        core_max = int(d[a - lo : b - lo].max()) if b > a else 0
        # A core distance is exact when it does not exceed the distance to an open face of
        # the slab (a face that is not the array's edge): the truth is then inside the slab.
        open_face = lo > 0 or hi < n
        if open_face and core_max > halo * halo:
            halo = 2 * halo if core_max >= _INF else max(2 * halo, _isqrt_py(core_max) + 2)
            continue
        if core_max >= _INF:
            raise ValueError("pores holds no solid voxel, so no ball is bounded; check the mask")
        dmax = max(dmax, core_max)
        a = b
    return dmax


#: Largest ``⌊√dmax⌋`` for which the slabs use the windowed distance transform. Its cost
#: grows with the window (2·(2r + 1) row operations a voxel), the envelope's does not:
#: measured on a 64 × 1000 × 2000 slab of the benchmark's pores (2 threads), windowed
#: 0.38 s (r = 7) against 2.5 s for the envelope; it stays ahead up to r ≈ 30.
_WINDOW_R_MAX = 24


def _slab_distances(mask: np.ndarray, dmax: int, buf: _SlabBuffers) -> np.ndarray:
    """Squared distances of a slab, exact where ≤ ``dmax`` and > ``dmax`` elsewhere."""
    d = buf.d[: mask.shape[0]]
    if _isqrt_py(dmax) <= _WINDOW_R_MAX:
        return _edt_sq_bounded(mask, dmax, d)
    d[...] = np.minimum(_edt_sq(mask), dmax + 1)
    return d


def _core_slabs(n: int, slab_rows: int) -> list[tuple[int, int]]:
    """Consecutive core row ranges of ``slab_rows`` rows covering ``0:n``."""
    if slab_rows < 1:
        raise ValueError(f"slab_rows must be ≥ 1, got {slab_rows}")
    return [(a, min(n, a + slab_rows)) for a in range(0, n, slab_rows)]


def _chunked_lt(
    read: Callable[[int, int], np.ndarray],
    n: int,
    cores: list[tuple[int, int]],
    clean_up: bool,
    voxel_um: float,
    dmax: int | None = None,
    check_bound: bool = False,
    observed: list[int] | None = None,
):
    """Yield ``(a, b, thickness[a:b], pores[a:b])`` for each core ``(a, b)`` of an n-row volume.

    The cores need not cover the volume (a random subset of slabs): each one's result is
    that of the whole volume's local thickness on its rows.

    With ``check_bound``, ``dmax`` is an upper bound to be verified: a slab whose distances
    exceed it within ``⌊√dmax⌋ + 3`` rows of its core raises :class:`_GuessTooSmall`;
    ``observed[0]`` receives the largest core distance seen (the exact global maximum once
    cores covering the volume have passed). Why that band suffices: a ball centred outside
    it that reached the rows ``a - 1 .. b`` (the core and the clean-up's neighbours) would
    contain a ball of radius > ⌊√dmax⌋ + 1 around a voxel of the band's outer row, whose
    distance would then exceed ``dmax``; and the band's distances are exact where they are
    within ``dmax`` (their nearest solid voxel is then inside the halo).
    """
    if dmax is None:
        dmax = _max_distance_sq(read, n, max(1, max((b - a for a, b in cores), default=1)))
    halo = _halo_rows(dmax)
    t = _containment_template(dmax)
    lut = _thickness_lut(dmax, voxel_um)
    band = _isqrt_py(dmax) + 3
    buf: _SlabBuffers | None = None
    prefetch = getattr(read, "prefetch", None)
    for i, (a, b) in enumerate(cores):
        lo, hi = max(0, a - halo), min(n, b + halo)
        mask = read(lo, hi)
        if prefetch is not None and i + 1 < len(cores):
            a1, b1 = cores[i + 1]
            prefetch(max(0, a1 - halo), min(n, b1 + halo))
        if buf is None:
            core = max(b2 - a2 for a2, b2 in cores)
            buf = _SlabBuffers(min(n, core + 2 * halo), core, mask.shape[1:])
        d = _slab_distances(mask, dmax, buf)
        # Halo voxels far from the core may see too few solid voxels and overestimate D;
        # their balls cannot reach the core (see the module notes), but they must stay
        # within the template and the painting stripes. The clamp also gives each row's
        # largest distance before it, for the checks below.
        row_max = _clamp_rows(d, dmax)
        if check_bound:
            band_max = int(row_max[max(lo, a - band) - lo : min(hi, b + band) - lo].max())
            if band_max > dmax:
                raise _GuessTooSmall(band_max)
            if observed is not None and b > a:
                observed[0] = max(observed[0], int(row_max[a - lo : b - lo].max()))
        lt = _lt_rows(mask, d, t, dmax, a - lo, b - lo, lut, clean_up, buf)
        yield a, b, lt, mask[a - lo : b - lo]


@numba.njit(parallel=True, cache=True, nogil=True)
def _clamp_rows(d: np.ndarray, cap: int) -> np.ndarray:
    """Clamps ``d`` to ``cap`` in place; returns each row's maximum before the clamp.

    One parallel pass for what were three serial ones (two maxima and ``np.minimum``).
    """
    nz, ny, nx = d.shape
    row_max = np.zeros(nz, dtype=np.int64)
    for z in numba.prange(nz):
        top = 0
        for y in range(ny):
            for x in range(nx):
                v = d[z, y, x]
                top = max(top, v)
                d[z, y, x] = min(v, cap)
        row_max[z] = top
    return row_max


class _GuessTooSmall(Exception):
    """A slab's distances exceed the guessed maximum (the run restarts with the exact one)."""


def _guess_dmax(read: Callable[[int, int], np.ndarray], n: int) -> int | None:
    """An upper bound of the largest squared distance from three sample slabs, or None.

    The exact maximum costs a distance transform of the whole volume; pores are much alike
    along z, so the largest distance in three 48-row samples, with 50 % to spare, is an
    upper bound that the local-thickness pass then verifies slab by slab. None when a sample
    cannot tell (a distance beyond its own halo, or no solid at all).
    """
    halo, rows = 16, 48
    if n <= 3 * rows:
        return None
    found = 0
    centres = (n // 4, n // 2, 3 * n // 4)
    samples = [(lo, min(n, lo + rows)) for lo in (max(0, c - rows // 2) for c in centres)]
    prefetch = getattr(read, "prefetch", None)
    buf: np.ndarray | None = None
    for i, (lo, hi) in enumerate(samples):
        mask = read(lo, hi)
        if prefetch is not None and i + 1 < len(samples):
            prefetch(*samples[i + 1])
        if buf is None or buf.shape != mask.shape:
            buf = np.empty(mask.shape, dtype=np.int32)
        # Only distances up to halo² matter here, so the bounded transform (exact up to its
        # bound, above it elsewhere) gives the same answer as the exact one: a third of the
        # time of the whole pass at beamline size with the envelope transform. A small
        # bound first (pores are mostly small), the halo's when it is exceeded.
        for bound in (64, halo * halo):
            d = _edt_sq_bounded(mask, bound, buf)
            core = d[halo : hi - lo - halo]
            core_max = int(core.max()) if core.size else 0
            if core_max <= bound:
                break
        if core_max > halo * halo:
            return None
        found = max(found, core_max)
    return math.ceil(1.5 * found) + 1


# --- porosity and the distribution ------------------------------------------------------------
def _grey_value(threshold: Any) -> float:
    value = getattr(threshold, "value", threshold)
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"threshold must be a StudyThreshold or a finite grey value, got {value}")
    return value


def _region(
    volume: Any, mask: np.ndarray | None, rows: tuple[int, int] | None
) -> tuple[np.ndarray, int, int]:
    """The (y, x) mask and rows ``z0:z1`` a measurement reads, checked against the volume."""
    shape = tuple(volume.shape)
    if len(shape) != 3:
        raise AnalysisInputError(f"volume must be 3-D (z, y, x), got shape {shape}")
    m2 = np.ones(shape[1:], dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if m2.shape != shape[1:]:
        raise AnalysisInputError(
            f"mask must be the (y, x) inside of the pellet with shape {shape[1:]} "
            f"(see segment.pellet_mask), got {m2.shape}"
        )
    z0, z1 = (0, shape[0]) if rows is None else (int(rows[0]), int(rows[1]))
    if not 0 <= z0 < z1 <= shape[0]:
        raise AnalysisInputError(
            f"rows must satisfy 0 <= z0 < z1 <= {shape[0]} (see segment.electrolyte_rows), "
            f"got {rows}"
        )
    return m2, z0, z1


def porosity(
    volume: Any,
    threshold: Any,
    *,
    mask: np.ndarray | None = None,
    rows: tuple[int, int] | None = None,
    slab_rows: int = 64,
) -> float:
    """Porosity of the electrolyte: pores / voxels analysed.

    Parameters
    ----------
    volume : array_like, shape (nz, ny, nx)
        Grey values, read in z-slabs.
    threshold : StudyThreshold or float
        The study threshold (pore iff ``grey < value``).
    mask : ndarray of bool, shape (ny, nx), optional
        Inside of the pellet (:func:`~insitu.analysis.microstructure.segment.pellet_mask`). Give it
        whenever the reconstruction circle or the outside of the pellet is in the slices:
        their low grey values would count as pores.
    rows : (int, int), optional
        Electrolyte rows ``z0:z1``
        (:func:`~insitu.analysis.microstructure.segment.electrolyte_rows`).
    slab_rows : int, optional
        Rows read at a time.

    Returns
    -------
    float
    """
    value = _grey_value(threshold)
    m2, z0, z1 = _region(volume, mask, rows)
    n_pore = 0
    for a in range(z0, z1, slab_rows):
        slab = np.asarray(volume[a : min(z1, a + slab_rows)])
        n_pore += int(np.count_nonzero(slab[:, m2] < value))
    total = (z1 - z0) * int(m2.sum())
    if total == 0:
        raise ValueError("mask selects no voxel; check mask and rows")
    return n_pore / total


@dataclass(frozen=True)
class PoreSizeDistribution:
    """Volume-weighted distribution of the local thickness (pore diameter).

    Attributes
    ----------
    bin_edges_um : ndarray
        Diameter bin edges, µm.
    counts : ndarray of int64
        Pore voxels per bin.
    volume_fraction : ndarray
        ``counts / counts.sum()``: fraction of the pore volume per bin.
    mean_um : float
        Volume-weighted mean diameter (mean over pore voxels).
    median_um : float
        Volume-weighted median diameter, interpolated in the histogram (within one bin).
    max_um : float
        Largest diameter.
    n_voxels : int
        Pore voxels.
    """

    bin_edges_um: np.ndarray
    counts: np.ndarray
    mean_um: float
    median_um: float
    max_um: float
    n_voxels: int
    volume_fraction: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        c = np.asarray(self.counts)
        object.__setattr__(self, "volume_fraction", c / max(1, int(c.sum())))

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly record."""
        d = asdict(self)
        for k in ("bin_edges_um", "counts", "volume_fraction"):
            d[k] = np.asarray(d[k]).tolist()
        return d


def _median_from_hist(edges: np.ndarray, counts: np.ndarray) -> float:
    total = counts.sum()
    if total == 0:
        return float("nan")
    c = np.cumsum(counts)
    k = int(np.searchsorted(c, total / 2.0))
    before = c[k - 1] if k > 0 else 0
    frac = (total / 2.0 - before) / counts[k] if counts[k] else 0.0
    return float(edges[k] + frac * (edges[k + 1] - edges[k]))


def _default_edges(dmax: int, voxel_um: float) -> np.ndarray:
    # Half-voxel bins up to the largest possible diameter 2√Dmax.
    top = 2.0 * math.sqrt(max(dmax, 1)) * voxel_um
    width = 0.5 * voxel_um
    return np.arange(0.0, top + 2 * width, width)


def pore_size_distribution(
    thickness: np.ndarray,
    *,
    bin_edges_um: np.ndarray | None = None,
    voxel_um: float = 1.0,
) -> PoreSizeDistribution:
    """Volume-weighted pore size distribution of a local thickness map.

    Parameters
    ----------
    thickness : ndarray
        :func:`local_thickness` output (µm; 0 outside the pores).
    bin_edges_um : ndarray, optional
        Bin edges in µm; default half-voxel bins from 0 to the largest diameter.
    voxel_um : float, optional
        Voxel edge, for the default bins.

    Returns
    -------
    PoreSizeDistribution
    """
    v = _check_voxel(voxel_um)
    lt = np.asarray(thickness)
    vals = lt[lt > 0].astype(np.float64)
    if bin_edges_um is None:
        top = float(vals.max()) if vals.size else v
        bin_edges_um = np.arange(0.0, top + v, 0.5 * v)
    edges = np.asarray(bin_edges_um, dtype=np.float64)
    counts = np.histogram(vals, bins=edges)[0].astype(np.int64)
    return PoreSizeDistribution(
        bin_edges_um=edges,
        counts=counts,
        mean_um=float(vals.mean()) if vals.size else float("nan"),
        median_um=float(np.median(vals)) if vals.size else float("nan"),
        max_um=float(vals.max()) if vals.size else 0.0,
        n_voxels=int(vals.size),
    )


@dataclass(frozen=True)
class PoreAnalysis:
    """Porosity and pore size distribution of one scan's electrolyte.

    Attributes
    ----------
    porosity : float
        Pores / voxels analysed.
    n_pore, n_voxels : int
        Pore voxels and voxels analysed (inside the pellet, in ``rows``).
    rows : (int, int)
        Electrolyte rows analysed.
    threshold : dict
        The study threshold used (:meth:`StudyThreshold.to_dict`, or ``{"value": v}``).
    voxel_um : float
        Voxel edge.
    psd : PoreSizeDistribution
        Local-thickness distribution (median from the histogram, half-voxel bins).
    psd_sample : dict or None
        When the distribution was measured on a random subset of the rows
        (``psd_fraction``): ``fraction``, ``seed``, ``block_rows``, the ``rows`` ``[z0, z1)``
        measured and their number ``n_rows``; None when on every row.
    """

    porosity: float
    n_pore: int
    n_voxels: int
    rows: tuple[int, int]
    threshold: dict[str, Any]
    voxel_um: float
    psd: PoreSizeDistribution
    psd_sample: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly record (the threshold is stored with the results)."""
        d = {k: getattr(self, k) for k in ("porosity", "n_pore", "n_voxels", "voxel_um")}
        d["rows"] = list(self.rows)
        d["threshold"] = dict(self.threshold)
        d["psd"] = self.psd.to_dict()
        d["psd_sample"] = None if self.psd_sample is None else dict(self.psd_sample)
        return d


def _auto_slab_rows(plane: int, budget_gib: float, halo: int, bytes_per_voxel: int) -> int:
    """Core rows per slab so that core + two halos fit the budget (at least 8 rows)."""
    rows = int(budget_gib * 2**30 / (plane * bytes_per_voxel)) - 2 * halo
    return max(8, rows)


def _halo_rows(dmax: int) -> int:
    """Rows each side of a slab for an exact local thickness (see the module notes)."""
    return 2 * (_isqrt_py(dmax) + 1) + 3


def _psd_pass(
    read: Callable[[int, int], np.ndarray],
    n: int,
    cores: list[tuple[int, int]],
    clean_up: bool,
    voxel_um: float,
    dmax: int,
    bin_edges_um: np.ndarray | None,
    out: Any,
    dmax_is_a_guess: bool,
    pores_out: Any = None,
) -> tuple[np.ndarray, np.ndarray, int, float, float]:
    """The local-thickness pass of :func:`pore_analysis`: edges, counts, n, sum, max."""
    observed = [0]
    edges = (
        _default_edges(dmax, voxel_um)
        if bin_edges_um is None
        else np.asarray(bin_edges_um, dtype=np.float64)
    )
    counts = np.zeros(edges.size - 1, dtype=np.int64)
    n_pore, total_um, max_um = 0, 0.0, 0.0
    slabs = _chunked_lt(
        read,
        n,
        cores,
        clean_up,
        voxel_um,
        dmax=dmax,
        check_bound=dmax_is_a_guess,
        observed=observed,
    )
    for a, b, lt, pores in slabs:
        # Drop the virtual solid rows.
        ra, rb = max(a, 1), min(b, n - 1)
        if rb <= ra:
            continue
        lt_rows = lt[ra - a : rb - a]
        c, k, total, top = _histogram_rows(lt_rows, pores[ra - a : rb - a], edges)
        counts += c
        n_pore += k
        total_um += total
        max_um = max(max_um, top)
        if out is not None:
            out[ra - 1 : rb - 1] = lt_rows
        if pores_out is not None:
            pores_out[ra - 1 : rb - 1] = pores[ra - a : rb - a]
    if dmax_is_a_guess and bin_edges_um is None:
        # The default bins run to the largest diameter: those of the exact maximum are a
        # prefix of the guess's (same start and width), and no value lies beyond them.
        exact = _default_edges(observed[0], voxel_um)
        if counts[exact.size - 1 :].any():
            raise RuntimeError("local thickness beyond the largest distance (a bug: report it)")
        edges, counts = exact, counts[: exact.size - 1]
    return edges, counts, n_pore, total_um, max_um


#: Rows of one block of the random subset of :func:`pore_analysis` (``psd_fraction``).
PSD_BLOCK_ROWS = 64


def psd_sample_blocks(
    n_rows: int, fraction: float, seed: int, block_rows: int = PSD_BLOCK_ROWS
) -> list[tuple[int, int]]:
    """The blocks of rows the pore size distribution is measured on when sampling.

    The rows ``0:n_rows`` are cut into consecutive blocks of ``block_rows`` rows (the last
    may be shorter); ``max(1, round(fraction · blocks))`` of them are drawn without
    replacement by ``numpy.random.default_rng(seed)``, so a seed always draws the same
    blocks. Drawn blocks that touch are returned merged.

    Parameters
    ----------
    n_rows : int
        Rows to sample from.
    fraction : float
        Fraction of the blocks, in (0, 1].
    seed : int
        Seed of the draw (≥ 0).
    block_rows : int, optional
        Rows per block.

    Returns
    -------
    list of (int, int)
        Row ranges ``[a, b)``, ascending.
    """
    _check_fraction(fraction, seed)
    starts = list(range(0, n_rows, block_rows))
    k = max(1, round(fraction * len(starts)))
    rng = np.random.default_rng(seed)
    drawn = sorted(int(i) for i in rng.choice(len(starts), size=k, replace=False))
    ranges: list[tuple[int, int]] = []
    for i in drawn:
        a, b = starts[i], min(n_rows, starts[i] + block_rows)
        if ranges and ranges[-1][1] == a:
            ranges[-1] = (ranges[-1][0], b)
        else:
            ranges.append((a, b))
    return ranges


def _check_fraction(fraction: float, seed: int) -> None:
    f = float(fraction)
    if not (np.isfinite(f) and 0.0 < f <= 1.0):
        raise AnalysisInputError(
            f"psd_fraction must be in (0, 1] (the fraction of the electrolyte's row blocks "
            f"the pore size distribution is measured on), got {fraction!r}"
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise AnalysisInputError(f"psd_seed must be an integer ≥ 0, got {seed!r}")


def _count_pores(
    volume: Any, value: float, m2: np.ndarray, z0: int, z1: int, pores_out: Any = None
) -> int:
    """Pore voxels of rows ``z0:z1`` inside the mask, read slab by slab (and written to
    ``pores_out``, whose row 0 is row ``z0``, when given)."""
    n = 0
    for a in range(z0, z1, 64):
        g = np.asarray(volume[a : min(z1, a + 64)])
        p = (g < value) & m2
        n += int(np.count_nonzero(p))
        if pores_out is not None:
            pores_out[a - z0 : a - z0 + len(p)] = p
    return n


@numba.njit(parallel=True, cache=True, nogil=True)
def _below_in_mask(grey: np.ndarray, value: float, m2: np.ndarray, out: np.ndarray) -> None:
    """``out = (grey < value) & m2`` (m2 broadcast over z) in one parallel pass."""
    nz, ny, nx = grey.shape
    for z in numba.prange(nz):
        for y in range(ny):
            for x in range(nx):
                out[z, y, x] = m2[y, x] and grey[z, y, x] < value


#: Grey dtypes :func:`_below_in_mask` compiles for; others take numpy's two passes.
_KERNEL_DTYPES = frozenset(np.dtype(t) for t in ("uint8", "uint16", "float32", "float64"))


class _PoreReader:
    """Pore phase of virtual rows ``a:b`` (one solid row beyond each end of the electrolyte).

    ``read(a, b)`` returns a view of a buffer that the next call overwrites: every caller
    here is done with a slab before it reads the next. Why a buffer: a fresh slab-sized
    array each call cost its page faults (≈ 0.3 GB a slab at beamline size), and the
    threshold, the mask and the zero rows were three single-threaded passes; now one
    parallel pass writes into memory already touched.

    ``read.prefetch(a, b)`` starts reading (and decoding: Zarr, HDF5) the grey rows of the
    next slab in a background thread while this one is computed; ``read.close()`` ends it.
    """

    def __init__(self, volume: Any, value: float, m2: np.ndarray, z0: int, n: int) -> None:
        self.volume, self.value, self.m2, self.z0, self.n = volume, value, m2, z0, n
        self._buf = np.empty((0, *m2.shape), dtype=bool)
        self._pool: ThreadPoolExecutor | None = None
        self._next: tuple[tuple[int, int], Future[np.ndarray]] | None = None

    def _grey(self, ra: int, rb: int) -> np.ndarray:
        return np.asarray(self.volume[self.z0 + ra - 1 : self.z0 + rb - 1])

    def prefetch(self, a: int, b: int) -> None:
        """Start reading the grey rows of ``read(a, b)`` in the background."""
        ra, rb = max(a, 1), min(b, self.n - 1)
        if rb <= ra:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="insitu-pores-read")
        self._next = ((ra, rb), self._pool.submit(self._grey, ra, rb))

    def close(self) -> None:
        """Stop the background reader (waiting for a read in flight)."""
        self._next = None
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __call__(self, a: int, b: int) -> np.ndarray:
        if b - a > self._buf.shape[0]:
            self._buf = np.empty((b - a, *self.m2.shape), dtype=bool)
        res = self._buf[: b - a]
        ra, rb = max(a, 1), min(b, self.n - 1)
        res[: max(0, ra - a)] = False
        res[max(0, rb - a) :] = False
        if rb > ra:
            ahead, self._next = self._next, None
            grey = ahead[1].result() if ahead and ahead[0] == (ra, rb) else self._grey(ra, rb)
            rows = res[ra - a : rb - a]
            if grey.dtype in _KERNEL_DTYPES:
                _below_in_mask(grey, float(self.value), self.m2, rows)
            else:
                np.less(grey, self.value, out=rows)
                rows &= self.m2
        return res


def _split(ranges: list[tuple[int, int]], slab_rows: int) -> list[tuple[int, int]]:
    """Row ranges cut into cores of at most ``slab_rows`` rows."""
    return [(a + c0, a + c1) for a, b in ranges for c0, c1 in _core_slabs(b - a, slab_rows)]


def _thickness_histogram(
    read: _PoreReader,
    n: int,
    ranges: list[tuple[int, int]],
    slab_rows: int | None,
    memory_budget_gib: float,
    clean_up: bool,
    voxel_um: float,
    bin_edges_um: np.ndarray | None,
    out: Any,
    pores_out: Any,
) -> tuple[np.ndarray, np.ndarray, int, float, float]:
    """The local-thickness pass of :func:`pore_analysis` over the virtual rows ``ranges``,
    with slabs sized from a guessed largest distance when it can (verified as it goes), else
    from the exact one: edges, counts, n, sum, max."""
    plane = int(np.prod(read.m2.shape))
    if slab_rows is None:
        guess = _guess_dmax(read, n)
        if guess is not None:
            # Slabs sized from the guessed halo; the pass verifies the guess and finds the
            # exact maximum as it goes, saving the whole-volume distance pass (a third of the
            # time).
            rows = _auto_slab_rows(plane, memory_budget_gib, _halo_rows(guess), _BYTES_PER_VOXEL)
            cores = _split(ranges, rows)
            try:
                return _psd_pass(
                    read, n, cores, clean_up, voxel_um, guess, bin_edges_um, out, True, pores_out
                )
            except _GuessTooSmall:
                pass
        # Slabs are sized from the real halo, known once the largest distance is: a guessed
        # 40-row halo left 8-row cores in 90-row slabs at beamline width (many times the
        # work). The distance pass holds only the mask and D (≈ 6 B/voxel).
        dmax = _max_distance_sq(read, n, _auto_slab_rows(plane, memory_budget_gib, 16, 6))
        slab_rows = _auto_slab_rows(plane, memory_budget_gib, _halo_rows(dmax), _BYTES_PER_VOXEL)
    else:
        dmax = _max_distance_sq(read, n, slab_rows)
    cores = _split(ranges, slab_rows)
    return _psd_pass(read, n, cores, clean_up, voxel_um, dmax, bin_edges_um, out, False, pores_out)


def pore_analysis(
    volume: Any,
    threshold: Any,
    *,
    voxel_um: float,
    mask: np.ndarray | None = None,
    rows: tuple[int, int] | None = None,
    clean_up: bool = True,
    slab_rows: int | None = None,
    memory_budget_gib: float = 2.0,
    bin_edges_um: np.ndarray | None = None,
    out: Any = None,
    psd_fraction: float | None = None,
    psd_seed: int = 0,
    pores_out: Any = None,
) -> PoreAnalysis:
    """Porosity and local-thickness pore size distribution of the electrolyte, in z-slabs.

    Parameters
    ----------
    volume : array_like, shape (nz, ny, nx)
        Grey values (numpy, zarr, h5py: anything that slices along z).
    threshold : StudyThreshold or float
        The study's global threshold; pore iff ``grey < value``.
    voxel_um : float
        Voxel edge in µm.
    mask : ndarray of bool, shape (ny, nx), optional
        Inside of the pellet (:func:`~insitu.analysis.microstructure.segment.pellet_mask`).
    rows : (int, int), optional
        Electrolyte rows ``z0:z1``
        (:func:`~insitu.analysis.microstructure.segment.electrolyte_rows`);
        one solid row is assumed beyond each end (the Li), so pores end there.
    clean_up : bool, optional
        ImageJ's clean-up of surface voxels.
    slab_rows : int, optional
        Core rows per slab; default from ``memory_budget_gib``.
    memory_budget_gib : float, optional
        Working memory aimed at when choosing ``slab_rows`` (≈ 11 bytes per slab voxel).
    bin_edges_um : ndarray, optional
        Histogram bin edges in µm; default half-voxel bins up to the largest diameter.
    out : array_like of float32, shape (z1 - z0, ny, nx), optional
        Receives the local thickness map of the analysed rows (e.g. a zarr array); with
        ``psd_fraction``, of the sampled rows only (the others are not written).
    psd_fraction : float, optional
        Measure the pore size distribution on a random subset of the rows only, for speed:
        this fraction of the blocks of :data:`PSD_BLOCK_ROWS` rows, drawn with ``psd_seed``
        (:func:`psd_sample_blocks`). Each sampled row's local thickness is exactly the whole
        volume's on that row (the slabs keep their halos), so the distribution is a sample of
        the full one. The porosity is still counted on every row. None (default): all rows.
    psd_seed : int, optional
        Seed of the draw; the same seed draws the same blocks.
    pores_out : array_like of bool, shape (z1 - z0, ny, nx), optional
        Receives the pore phase of the analysed rows (``grey < value`` inside the mask): the
        slabs read for the local thickness hold it anyway, so a caller that needs it too
        (the experiment's cracks) saves a read of the volume.

    Returns
    -------
    PoreAnalysis
        With ``psd_fraction``, ``psd_sample`` records the fraction, seed, block size and the
        rows measured, and ``psd.n_voxels`` counts the sampled pore voxels.
    """
    v = _check_voxel(voxel_um)
    value = _grey_value(threshold)
    m2, z0, z1 = _region(volume, mask, rows)
    nrows = z1 - z0
    for name, given in (("out", out), ("pores_out", pores_out)):
        if given is not None and tuple(given.shape) != (nrows, *m2.shape):
            raise ValueError(
                f"{name} must have shape {(nrows, *m2.shape)}, got {tuple(given.shape)}"
            )
    n = nrows + 2  # virtual rows: one solid row above and below the electrolyte

    ranges, sample = [(0, n)], None
    if psd_fraction is not None:
        blocks = psd_sample_blocks(nrows, psd_fraction, psd_seed)
        ranges = [(a + 1, b + 1) for a, b in blocks]  # in the virtual rows
        sample = {
            "fraction": float(psd_fraction),
            "seed": int(psd_seed),
            "block_rows": PSD_BLOCK_ROWS,
            "rows": [[z0 + a, z0 + b] for a, b in blocks],
            "n_rows": sum(b - a for a, b in blocks),
        }
    read = _PoreReader(volume, value, m2, z0, n)
    try:
        result = _thickness_histogram(
            read,
            n,
            ranges,
            slab_rows,
            memory_budget_gib,
            clean_up,
            v,
            bin_edges_um,
            out,
            None if sample else pores_out,
        )
    finally:
        read.close()
    edges, counts, n_psd, total_um, max_um = result
    n_vox = nrows * int(m2.sum())
    if n_vox == 0:
        raise ValueError("mask selects no voxel; check mask and rows")
    # With a sample, the cores leave rows out: the pore phase comes from the porosity's pass.
    n_pore = n_psd if sample is None else _count_pores(volume, value, m2, z0, z1, pores_out)
    psd = PoreSizeDistribution(
        bin_edges_um=edges,
        counts=counts,
        mean_um=total_um / n_psd if n_psd else float("nan"),
        median_um=_median_from_hist(edges, counts),
        max_um=max_um,
        n_voxels=n_psd,
    )
    thr = threshold.to_dict() if hasattr(threshold, "to_dict") else {"value": value}
    return PoreAnalysis(
        porosity=n_pore / n_vox,
        n_pore=n_pore,
        n_voxels=n_vox,
        rows=(z0, z1),
        threshold=thr,
        voxel_um=v,
        psd=psd,
        psd_sample=sample,
    )
