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

Working memory per slab voxel: 1 (pore mask) + 4 (D, int32) + 4 (painted D, int32) + 4
(thickness, float32) + 1 (surface flag) = 14 bytes, plus the input slab itself. Slabs are
sized from ``memory_budget_gib``: for a 2000 × 1143 × 1000 uint8 volume (z = 2000 rows of
1143 × 1000) at a 2 GiB budget a slab is ≈ 130 rows including the halo; the whole
analysis stays around 2–3 GiB whatever the number of rows. Time scales linearly with the
number of pore voxels times the mean ball volume of the ridge voxels (see
``benchmarks/bench_tomo_porosity.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numba
import numpy as np

from ..errors import AnalysisInputError

__all__ = [
    "PoreAnalysis",
    "PoreSizeDistribution",
    "distance_map_sq",
    "local_thickness",
    "pore_analysis",
    "pore_size_distribution",
    "porosity",
]

_INF = np.int32(2**31 - 1)
_BYTES_PER_VOXEL = 14


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


@numba.njit(parallel=True, cache=True)
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


@numba.njit(cache=True)
def _paint_rows(d: np.ndarray, t: np.ndarray, out: np.ndarray, z0: int, z1: int) -> None:
    """Paint the balls of the ridge voxels with centres in rows z0..z1-1 into ``out``."""
    nz, ny, nx = d.shape
    for z in range(z0, z1):
        for y in range(ny):
            for x in range(nx):
                dd = d[z, y, x]
                if dd <= 0 or not _is_ridge(d, t, z, y, x):
                    continue
                r = _isqrt(dd)
                for k in range(max(0, z - r), min(nz, z + r + 1)):
                    rk = (k - z) * (k - z)
                    for j in range(max(0, y - r), min(ny, y + r + 1)):
                        rjk = rk + (j - y) * (j - y)
                        if rjk > dd:
                            continue
                        w = _isqrt(dd - rjk)
                        for i in range(max(0, x - w), min(nx, x + w + 1)):
                            if out[k, j, i] < dd:
                                out[k, j, i] = dd


@numba.njit(parallel=True, cache=True)
def _paint(d: np.ndarray, t: np.ndarray, rmax: int) -> np.ndarray:
    """Max of the ridge balls' squared radii at every voxel (0 where no ball reaches)."""
    nz = d.shape[0]
    out = np.zeros(d.shape, dtype=np.int32)
    # Stripes of rows wider than a ball's reach: stripes of one parity never write the same
    # voxel, so they run in parallel without races (and the result is deterministic).
    width = 2 * rmax + 2
    nstripes = (nz + width - 1) // width
    for parity in range(2):
        nsel = (nstripes - parity + 1) // 2
        for s in numba.prange(nsel):
            a = (2 * s + parity) * width
            _paint_rows(d, t, out, a, min(nz, a + width))
    return out


@numba.njit(parallel=True, cache=True)
def _finish(mask: np.ndarray, painted: np.ndarray, clean_up: bool, scale: float) -> np.ndarray:
    """Diameters ``2√D·scale`` on the pore voxels, optionally with ImageJ's clean-up."""
    nz, ny, nx = mask.shape
    lt = np.zeros((nz, ny, nx), dtype=np.float32)
    for z in numba.prange(nz):
        for y in range(ny):
            for x in range(nx):
                if mask[z, y, x]:
                    lt[z, y, x] = 2.0 * math.sqrt(painted[z, y, x]) * scale
    if not clean_up:
        return lt
    surface = np.zeros((nz, ny, nx), dtype=np.bool_)
    for z in numba.prange(nz):
        for y in range(ny):
            for x in range(nx):
                if not mask[z, y, x]:
                    continue
                hit = False
                for dz in range(-1, 2):
                    for dy in range(-1, 2):
                        for dx in range(-1, 2):
                            z1, y1, x1 = z + dz, y + dy, x + dx
                            if 0 <= z1 < nz and 0 <= y1 < ny and 0 <= x1 < nx:
                                if not mask[z1, y1, x1]:
                                    hit = True
                surface[z, y, x] = hit
    out = lt.copy()
    for z in numba.prange(nz):
        for y in range(ny):
            for x in range(nx):
                if not surface[z, y, x]:
                    continue
                n = 0
                acc = 0.0
                for dz in range(-1, 2):
                    for dy in range(-1, 2):
                        for dx in range(-1, 2):
                            z1, y1, x1 = z + dz, y + dy, x + dx
                            if 0 <= z1 < nz and 0 <= y1 < ny and 0 <= x1 < nx:
                                if mask[z1, y1, x1] and not surface[z1, y1, x1]:
                                    n += 1
                                    acc += lt[z1, y1, x1]
                if n > 0:
                    out[z, y, x] = acc / n
    return out


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
    painted = _paint(d, t, _isqrt_py(dmax) + 1)
    del d
    return _finish(mask, painted, clean_up, voxel_um), dmax


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

    for a, b, lt, _ in _chunked_lt(read, shape[0], slab_rows, clean_up, v):
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


def _chunked_lt(
    read: Callable[[int, int], np.ndarray],
    n: int,
    slab_rows: int,
    clean_up: bool,
    voxel_um: float,
    dmax: int | None = None,
    check_bound: bool = False,
    observed: list[int] | None = None,
):
    """Yield ``(a, b, thickness[a:b], pores[a:b])`` for the core slabs of an n-row volume.

    With ``check_bound``, ``dmax`` is an upper bound to be verified: a slab whose core holds
    a larger squared distance raises :class:`_GuessTooSmall`; ``observed[0]`` receives the
    largest core distance seen (the exact global maximum once every slab has passed).
    """
    if slab_rows < 1:
        raise ValueError(f"slab_rows must be ≥ 1, got {slab_rows}")
    if dmax is None:
        dmax = _max_distance_sq(read, n, slab_rows)
    halo = _halo_rows(dmax)
    t = _containment_template(dmax)
    for a in range(0, n, slab_rows):
        b = min(n, a + slab_rows)
        lo, hi = max(0, a - halo), min(n, b + halo)
        mask = read(lo, hi)
        d = _edt_sq(mask)
        if check_bound:
            # dmax was a guess: every voxel is in some core, and a core's distances are exact
            # (they are within the halo), so cores within the guess mean all are.
            core_max = int(d[a - lo : b - lo].max()) if b > a else 0
            if core_max > dmax:
                raise _GuessTooSmall(core_max)
            if observed is not None:
                observed[0] = max(observed[0], core_max)
        # Halo voxels far from the core may see too few solid voxels and overestimate D;
        # their balls cannot reach the core (see the module notes), but they must stay
        # within the template and the painting stripes.
        np.minimum(d, dmax, out=d)
        painted = _paint(d, t, _isqrt_py(dmax) + 1)
        del d
        lt = _finish(mask, painted, clean_up, voxel_um)
        yield a, b, lt[a - lo : b - lo], mask[a - lo : b - lo]


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
    for centre in (n // 4, n // 2, 3 * n // 4):
        lo = max(0, centre - rows // 2)
        hi = min(n, lo + rows)
        d = _edt_sq(read(lo, hi))
        core = d[halo : hi - lo - halo]
        core_max = int(core.max()) if core.size else 0
        if core_max >= _INF or core_max > halo * halo:
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
    """

    porosity: float
    n_pore: int
    n_voxels: int
    rows: tuple[int, int]
    threshold: dict[str, Any]
    voxel_um: float
    psd: PoreSizeDistribution

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly record (the threshold is stored with the results)."""
        d = {k: getattr(self, k) for k in ("porosity", "n_pore", "n_voxels", "voxel_um")}
        d["rows"] = list(self.rows)
        d["threshold"] = dict(self.threshold)
        d["psd"] = self.psd.to_dict()
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
    slab_rows: int,
    clean_up: bool,
    voxel_um: float,
    dmax: int,
    bin_edges_um: np.ndarray | None,
    out: Any,
    dmax_is_a_guess: bool,
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
        slab_rows,
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
        vals = lt_rows[pores[ra - a : rb - a]].astype(np.float64)
        n_pore += vals.size
        total_um += float(vals.sum())
        if vals.size:
            max_um = max(max_um, float(vals.max()))
        counts += np.histogram(vals, bins=edges)[0]
        if out is not None:
            out[ra - 1 : rb - 1] = lt_rows
    if dmax_is_a_guess and bin_edges_um is None:
        # The default bins run to the largest diameter: those of the exact maximum are a
        # prefix of the guess's (same start and width), and no value lies beyond them.
        exact = _default_edges(observed[0], voxel_um)
        if counts[exact.size - 1 :].any():
            raise RuntimeError("local thickness beyond the largest distance (a bug: report it)")
        edges, counts = exact, counts[: exact.size - 1]
    return edges, counts, n_pore, total_um, max_um


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
        Working memory aimed at when choosing ``slab_rows`` (≈ 14 bytes per slab voxel).
    bin_edges_um : ndarray, optional
        Histogram bin edges in µm; default half-voxel bins up to the largest diameter.
    out : array_like of float32, shape (z1 - z0, ny, nx), optional
        Receives the local thickness map of the analysed rows (e.g. a zarr array).

    Returns
    -------
    PoreAnalysis
    """
    v = _check_voxel(voxel_um)
    value = _grey_value(threshold)
    m2, z0, z1 = _region(volume, mask, rows)
    nrows = z1 - z0
    if out is not None and tuple(out.shape) != (nrows, *m2.shape):
        raise ValueError(f"out must have shape {(nrows, *m2.shape)}, got {tuple(out.shape)}")
    n = nrows + 2  # virtual rows: one solid row above and below the electrolyte

    def read(a: int, b: int) -> np.ndarray:
        res = np.zeros((b - a, *m2.shape), dtype=bool)
        ra, rb = max(a, 1), min(b, n - 1)
        if rb > ra:
            g = np.asarray(volume[z0 + ra - 1 : z0 + rb - 1])
            res[ra - a : rb - a] = (g < value) & m2
        return res

    plane = int(m2.size)
    guess = _guess_dmax(read, n) if slab_rows is None else None
    result = None
    if guess is not None:
        # Slabs sized from the guessed halo; the pass verifies the guess and finds the exact
        # maximum as it goes, saving the whole-volume distance pass (a third of the time).
        rows = _auto_slab_rows(plane, memory_budget_gib, _halo_rows(guess), _BYTES_PER_VOXEL)
        try:
            result = _psd_pass(read, n, rows, clean_up, v, guess, bin_edges_um, out, True)
        except _GuessTooSmall:
            result = None
    if result is None:
        if slab_rows is None:
            # Slabs are sized from the real halo, known once the largest distance is: a
            # guessed 40-row halo left 8-row cores in 90-row slabs at beamline width (many
            # times the work). The distance pass holds only the mask and D (≈ 6 B/voxel).
            dmax = _max_distance_sq(read, n, _auto_slab_rows(plane, memory_budget_gib, 16, 6))
            slab_rows = _auto_slab_rows(
                plane, memory_budget_gib, _halo_rows(dmax), _BYTES_PER_VOXEL
            )
        else:
            dmax = _max_distance_sq(read, n, slab_rows)
        result = _psd_pass(read, n, slab_rows, clean_up, v, dmax, bin_edges_um, out, False)
    edges, counts, n_pore, total_um, max_um = result
    n_vox = nrows * int(m2.sum())
    if n_vox == 0:
        raise ValueError("mask selects no voxel; check mask and rows")
    psd = PoreSizeDistribution(
        bin_edges_um=edges,
        counts=counts,
        mean_um=total_um / n_pore if n_pore else float("nan"),
        median_um=_median_from_hist(edges, counts),
        max_um=max_um,
        n_voxels=n_pore,
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
    )
