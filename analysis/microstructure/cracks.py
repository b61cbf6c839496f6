"""Cracks in a binarised tomography volume: components of the pore phase, shape, origin, growth.

Definitions (REFERENCE.md, "Analysis definitions")
--------------------------------------------------
* The **pore phase** is the X-ray transparent part of the binarised electrolyte (pores,
  cracks, Li in cracks: they share a grey level). Its connected components are labelled with
  26-connectivity (:func:`label_pores`), and components below a volume threshold are removed:
  what is left are the cracks of the paper ("over-estimated but consistent").
* **Shape**: the covariance (second central moments) of each component's voxel centres, plus
  the 1/12 voxel² that every voxel contributes as a unit cube, has eigenvalues
  ``λ1 ≥ λ2 ≥ λ3``. The **planarity** ``1 − λ3/λ2`` is 0 for a ball (and for a rod, whose two
  small eigenvalues are equal) and tends to 1 for a sheet, whose thickness is small against
  both in-plane extents. It is invariant to the size of the component and, thanks to the
  unit-cube term, a single voxel or a short run of voxels is not a "sheet" (their λ3 would
  otherwise be 0). ``thickness_um = √(12 λ3)`` is the thickness of the slab with the same
  third moment.
* **Origin**: the interface (top = working Li|SE, bottom = SE|counter Li, as rows of the
  volume) a crack touches; when a crack reaches both, the face where its cross-section is
  widest, since a crack opens as an edge chip at its origin interface and tapers as it grows
  through the thickness (``origin_band_rows`` rows next to each interface are compared).
* **Growth** between two aligned steps (:func:`match_cracks`): overlap of the crack labels.

Why a reference scan
--------------------
At the porosities of these electrolytes (0.48 for A-LPS, 0.15 for LiI-AT) the pores
percolate: a 26-connected pore phase is one component holding nearly all the pores *and* every
crack, and no component-wise filter can split them. Where the earlier (pristine) scan of the
same, aligned cell is at hand, ``find_cracks(..., reference=pristine)`` labels the voxels that
have become transparent since. That crack sheet has holes where it cut through old pores, a
fraction φ of it on average, so each crack's volume is also reported corrected,
``volume_corrected_um3 = volume_um3 / (1 − φ)``, φ the reference's porosity in the crack's
bounding box (local, since porosity is heterogeneous and cracks steer toward porous regions).
On the simulator's label volumes after damage this recovers the true crack volume within
≈ 8 % for every preset (A-LPS −8 %, LiI-AT 0 %, LPS:0.5LiI 0 %, LiI-AN −1 %; tests hold it
to 15 %), where the reference-free definition counts every pore connected to a crack (LiI-AN:
+40 %; A-LPS and LiI-AT: the whole pore network). Closing the holes morphologically was tried
and rejected: the holes are as wide as the pores (several voxels), and a ball large enough to
bridge them fattens the sheet.

The holes also cut a crack into pieces: at A-LPS's porosity (0.48) about half the sheet was
already pore, and its new voxels fall apart into several components, each counted as a crack
(simulated A-LPS at 20 mC: 5 components ≥ 1000 µm³ where the truth has 3 cracks). So the
pieces are joined again **through the old pores next to them**: fragments of at least
``min_fragment_voxels`` new voxels (smaller ones are grey-level noise between the scans), the
old-pore voxels within one voxel of a fragment, and two fragments that this set connects are
one crack; the crack's count, volume and shape are those of its new voxels. The size floor
matters: without it the joining set percolates through the pore network with the noise (one
"crack" of 290 000 µm³ at 20 mC). Measured on simulated A-LPS scans against the truth
labels: 3 cracks at 20 mC, each one truth crack; at 27.5 mC 2, the truth label volume's 2
connected components (two of the simulator's 3 cracks have grown into each other, which no
component count can separate).

Memory at full size
-------------------
A full scan is 1143 × 2000 × 2000 voxels (2000 × 1143 × 1000 after cropping to the pellet):
2.3–4.6 G voxels. A whole-volume ``cc3d`` labelling needs uint32 labels, 4 bytes a voxel:
9–18 GB, over the 8 GiB this project allows. Here the volume is labelled **slab by slab**
(``slab_rows`` rows at a time, only the electrolyte rows). Each slab is scanned once, in a
compiled pass that reads the pore phase, the mask and the reference (as packed bits when it
is stored so), into **runs** of set voxels along x; the runs are labelled by union-find (26-,
18- or 6-connectivity: a run touches the runs of the previous rows whose intervals, grown by
one for diagonal neighbours, overlap it), numbered in raster order of their first voxel as
``cc3d`` numbers components. Labels that touch across a slab boundary are joined as graph
edges (from the runs of the two boundary rows), and the graph's connected components
(``scipy.sparse.csgraph``) give the global components. Per-component moments are
accumulated per slab from the runs and summed over each global component; the kept
components are written as compact labels (uint8 when there are fewer than 255 cracks) from
the runs, kept from the first pass when they are few (the new voxels of a step) or found
again. Peak memory is the input, the output labels (1 byte a voxel for < 255 cracks) and the
runs of a slab (~16 bytes a run, ~2 M runs for a dense 64-row slab at 2000 × 1000 pixels).
The input may be any array that slices like numpy (Zarr, HDF5), so it need not be in memory;
``out=`` takes the output likewise. The slab-wise result equals the whole-volume one (tested).

Speed
-----
The per-slab moments are summed in one compiled pass, in the float64 order of the per-row
numpy code it replaced, so the tables are bit-identical to it (tested against that code, and
the run pipeline against the ``cc3d`` one it replaced). A slab without a set voxel (a step
against itself as reference) costs its scan only. On a full-size step (857 × 1000 × 2000
electrolyte rows, 2 busy cores, load 4–5) the grown convention went from 15–17 s (first
step) and 18–30 s (second) to 1.4–2.4 s and 3.7–8.3 s, the per-scan one (``labels=False``)
from 10–24 s to 6–7.5 s, with identical tables and labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cc3d
import numba
import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from scipy import sparse
from scipy.sparse import csgraph

__all__ = [
    "crack_summary",
    "find_cracks",
    "label_pores",
    "match_cracks",
    "pore_component_table",
]

#: Moment accumulators per component: n, Σz, Σy, Σx, Σzz, Σyy, Σxx, Σzy, Σzx, Σyx, n_top, n_bot.
_N_MOMENTS = 12

_COLUMNS = [
    "label",
    "voxels",
    "volume_um3",
    "z0",
    "z1",
    "y0",
    "y1",
    "x0",
    "x1",
    "centroid_z",
    "centroid_y",
    "centroid_x",
    "lambda1_um2",
    "lambda2_um2",
    "lambda3_um2",
    "planarity",
    "thickness_um",
    "voxels_top",
    "voxels_bottom",
    "touches_top",
    "touches_bottom",
    "origin",
]


# --- input checks ---------------------------------------------------------------------------
def _check_connectivity(connectivity: int) -> int:
    if connectivity not in _RUN_REACH:
        raise ValueError(f"connectivity must be 6, 18 or 26, got {connectivity!r}")
    return int(connectivity)


def _check_volume(binary: Any, name: str = "binary") -> tuple[int, int, int]:
    shape = tuple(getattr(binary, "shape", ()))
    if len(shape) != 3:
        raise ValueError(f"{name} must be a 3-D array (z, y, x), got shape {shape}")
    return shape  # type: ignore[return-value]


def _check_positive(value: float, name: str) -> float:
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number (µm), got {value!r}")
    return float(value)


def _row_range(nz: int, interfaces: Sequence[float] | None) -> tuple[int, int]:
    """Rows whose centres lie in ``[top, bottom)``: the electrolyte between the interfaces."""
    if interfaces is None:
        return 0, nz
    if len(interfaces) != 2:
        raise ValueError(
            f"interfaces must be (top_row, bottom_row) of the electrolyte, got {interfaces!r}"
        )
    top, bot = (float(v) for v in interfaces)
    if not top < bot:
        raise ValueError(
            f"interfaces must be (top_row, bottom_row) with top < bottom, got {top}, {bot}"
        )
    z0 = int(np.clip(np.ceil(top - 0.5), 0, nz))
    z1 = int(np.clip(np.ceil(bot - 0.5), z0, nz))
    return z0, z1


class _Slabs:
    """Reads the (masked, optionally reference-differenced) pore phase slab by slab."""

    def __init__(self, binary: Any, mask: Any | None, reference: Any | None) -> None:
        self.binary = binary
        self.shape = _check_volume(binary)
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape not in (self.shape, self.shape[1:]):
                raise ValueError(
                    f"mask must have the volume's shape {self.shape} or its cross-section "
                    f"{self.shape[1:]}, got {mask.shape}"
                )
        self.mask = mask
        if reference is not None and _check_volume(reference, "reference") != self.shape:
            raise ValueError(
                f"reference must have the shape of binary {self.shape} (aligned scans), "
                f"got {tuple(reference.shape)}"
            )
        self.reference = reference
        self._extents: tuple[np.ndarray, np.ndarray] | None = None

    def mask_rows(self, z0: int, z1: int) -> np.ndarray | None:
        if self.mask is None:
            return None
        return self.mask[None] if self.mask.ndim == 2 else self.mask[z0:z1]

    def window(self, z0: int, z1: int, ys: slice, xs: slice) -> np.ndarray:
        """Pore phase of rows z0:z1, box ``ys`` × ``xs``, inside the mask; with a reference,
        only new voxels."""
        a = np.asarray(self.binary[z0:z1, ys, xs], dtype=bool)
        m = self.mask_rows(z0, z1)
        if m is not None:
            a = np.logical_and(a, m[:, ys, xs])
        elif self.reference is not None:
            a = a.copy()  # written below; the input is the caller's
        if self.reference is not None:
            # a & ~reference without a temporary for ~reference: for booleans that is a > ref.
            np.greater(a, np.asarray(self.reference[z0:z1, ys, xs], dtype=bool), out=a)
        return a

    def _row_extents(self) -> tuple[np.ndarray, np.ndarray]:
        """Per image row y, the columns ``[first, last)`` the mask reaches (all without one).

        Voxels outside them are never set: the run scan skips them (a pellet disc fills
        π/4 of its bounding square, and often half of the detector's width or less)."""
        ny, nx = self.shape[1:]
        if self.mask is None:
            return np.zeros(ny, np.int64), np.full(ny, nx, np.int64)
        plane = self.mask if self.mask.ndim == 2 else self.mask.any(axis=0)
        inside = plane.any(axis=1)
        first = np.where(inside, np.argmax(plane, axis=1), 0).astype(np.int64)
        last = np.where(inside, nx - np.argmax(plane[:, ::-1], axis=1), 0).astype(np.int64)
        return first, last

    def runs(self, z0: int, z1: int, connectivity: int) -> _Runs:
        """The set voxels of rows z0:z1 (pore phase, mask, new since the reference) as labelled
        runs, in one compiled pass over the rows: no boolean or label volume of the slab."""
        if self._extents is None:
            self._extents = self._row_extents()
        pores = np.asarray(self.binary[z0:z1], dtype=bool)
        mode = 0
        mask = _NO_MASK
        if self.mask is not None:
            mode |= _MASK
            mask = self.mask[None] if self.mask.ndim == 2 else self.mask[z0:z1]
        ref = _NO_REF
        if self.reference is not None:
            packed = getattr(self.reference, "packed_rows", None)
            if packed is not None:
                # 8 voxels a byte (the experiment's first scan): read without unpacking.
                mode |= _PACKED_REF
                ref = packed(z0, z1)
            else:
                mode |= _DENSE_REF
                ref = np.asarray(self.reference[z0:z1], dtype=bool).view(np.uint8)
        return _Runs.scan(pores, mask, ref, mode, *self._extents, connectivity)


#: ``_scan_runs`` modes: which of the mask and the reference (dense or packed) apply.
_MASK, _DENSE_REF, _PACKED_REF = 1, 2, 4
_NO_MASK = np.ones((1, 1, 1), dtype=bool)
_NO_REF = np.zeros((1, 1, 1), dtype=np.uint8)

#: Per connectivity, how far (in columns) a run reaches into the runs of the rows before it
#: in raster order: (z, y - 1), (z - 1, y - 1), (z - 1, y), (z - 1, y + 1); -1: no contact.
#: 1 = diagonal neighbours too (the run's interval grown by one), 0 = face neighbours only.
_RUN_REACH = {
    6: np.array([0, -1, 0, -1], dtype=np.int64),
    18: np.array([1, 0, 1, 0], dtype=np.int64),
    26: np.array([1, 1, 1, 1], dtype=np.int64),
}


@numba.njit(inline="always")
def _voxel_set(
    pores: np.ndarray, mask: np.ndarray, ref: np.ndarray, mode: int, i: int, y: int, x: int
) -> bool:
    if not pores[i, y, x]:
        return False
    if mode & 1 and not mask[0 if mask.shape[0] == 1 else i, y, x]:
        return False
    if mode & 2:
        return ref[i, y, x] == 0
    if mode & 4:
        # np.packbits order: the first voxel of each byte is its most significant bit.
        return (ref[i, y, x >> 3] >> (7 - (x & 7))) & 1 == 0
    return True


# The run scans are compiled with ``parallel=True`` even where one thread runs them: numba's
# serial compilation of the same loops measured 10-15× slower (1.7 s against 0.12 s a
# 64-row slab, one thread both).
@numba.njit(parallel=True, cache=True, nogil=True)
def _count_runs(
    pores: np.ndarray,
    mask: np.ndarray,
    ref: np.ndarray,
    mode: int,
    first: np.ndarray,
    last: np.ndarray,
    counts: np.ndarray,
) -> None:
    """Number of runs of set voxels along x in each image row ``i * ny + y`` of the slab."""
    nz, ny = pores.shape[0], pores.shape[1]
    for r in numba.prange(nz * ny):
        i = r // ny
        y = r - i * ny
        k = 0
        prev = False
        for x in range(first[y], last[y]):
            v = _voxel_set(pores, mask, ref, mode, i, y, x)
            if v and not prev:
                k += 1
            prev = v
        counts[r] = k


@numba.njit(parallel=True, cache=True, nogil=True)
def _fill_runs(
    pores: np.ndarray,
    mask: np.ndarray,
    ref: np.ndarray,
    mode: int,
    first: np.ndarray,
    last: np.ndarray,
    row_start: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
) -> None:
    """Half-open columns ``[start, end)`` of each run; ``row_start``: each row's first run."""
    nz, ny = pores.shape[0], pores.shape[1]
    for r in numba.prange(nz * ny):
        k = row_start[r]
        if k == row_start[r + 1]:
            continue
        i = r // ny
        y = r - i * ny
        prev = False
        for x in range(first[y], last[y]):
            v = _voxel_set(pores, mask, ref, mode, i, y, x)
            if v != prev:
                if v:
                    start[k] = x
                else:
                    end[k] = x
                    k += 1
                prev = v
        if prev:
            end[k] = last[y]


@numba.njit(cache=True, nogil=True)
def _root(parent: np.ndarray, a: int) -> int:
    while parent[a] != a:
        parent[a] = parent[parent[a]]  # path halving
        a = parent[a]
    return a


@numba.njit(cache=True, nogil=True)
def _label_runs(
    row_start: np.ndarray, start: np.ndarray, end: np.ndarray, ny: int, reach: np.ndarray
) -> tuple[np.ndarray, int]:
    """Component label (1..n) of each run, numbered in raster order of their first voxel.

    Runs in one row never touch (a gap separates them); a run touches the runs of the four
    rows before it in raster order whose column intervals, grown by ``reach``, overlap its
    own. Union-find keeps the smallest run of a set as its root, so numbering the roots in
    run order numbers the components in raster order of their first voxel, as cc3d does.
    """
    nr = start.size
    nrows = row_start.size - 1
    parent = np.arange(nr)
    dzs = (0, -1, -1, -1)
    dys = (-1, -1, 0, 1)
    for r in range(nrows):
        a0, a1 = row_start[r], row_start[r + 1]
        if a0 == a1:
            continue
        i = r // ny
        y = r - i * ny
        for t in range(4):
            e = reach[t]
            yy = y + dys[t]
            if e < 0 or i + dzs[t] < 0 or yy < 0 or yy >= ny:
                continue
            q = (i + dzs[t]) * ny + yy
            ia, ib, b1 = a0, row_start[q], row_start[q + 1]
            while ia < a1 and ib < b1:
                if start[ia] < end[ib] + e and start[ib] < end[ia] + e:
                    ra, rb = _root(parent, ia), _root(parent, ib)
                    if ra < rb:
                        parent[rb] = ra
                    elif rb < ra:
                        parent[ra] = rb
                # The run that ends first can touch no later run of the other row.
                if end[ia] < end[ib]:
                    ia += 1
                else:
                    ib += 1
    labels = np.empty(nr, np.int64)
    n = 0
    for j in range(nr):
        p = _root(parent, j)
        if p == j:
            n += 1
            labels[j] = n
        else:
            labels[j] = labels[p]
    return labels, n


@numba.njit(cache=True, nogil=True)
def _run_edges(
    rows_a: np.ndarray,
    start_a: np.ndarray,
    end_a: np.ndarray,
    label_a: np.ndarray,
    rows_b: np.ndarray,
    start_b: np.ndarray,
    end_b: np.ndarray,
    label_b: np.ndarray,
    reach: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Label pairs (a, b) of runs that touch across a slab boundary: ``rows_a`` indexes the
    runs of the last row of one slab, ``rows_b`` those of the first row of the next, per
    image row y (``ny + 1`` entries each). Pairs may repeat (they feed a connected
    components, where a repeated edge changes nothing)."""
    ny = rows_a.size - 1
    cap = 3 * (rows_a[ny] - rows_a[0] + rows_b[ny] - rows_b[0])
    src = np.empty(cap, np.int64)
    dst = np.empty(cap, np.int64)
    n = 0
    for y in range(ny):
        b0, b1 = rows_b[y], rows_b[y + 1]
        if b0 == b1:
            continue
        for dy in (-1, 0, 1):
            e = reach[2 + dy]  # the (z - 1, y + dy) neighbours of _RUN_REACH
            yy = y + dy
            if e < 0 or yy < 0 or yy >= ny:
                continue
            ia, a1, ib = rows_a[yy], rows_a[yy + 1], b0
            while ia < a1 and ib < b1:
                if start_a[ia] < end_b[ib] + e and start_b[ib] < end_a[ia] + e:
                    src[n] = label_a[ia]
                    dst[n] = label_b[ib]
                    n += 1
                if end_a[ia] < end_b[ib]:
                    ia += 1
                else:
                    ib += 1
    return src[:n], dst[:n]


@numba.njit(cache=True, nogil=True)
def _accumulate_runs_kernel(
    row_start: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    run_label: np.ndarray,
    lut: np.ndarray,
    ny: int,
    z0: int,
    bands: np.ndarray,
    m: np.ndarray,
    bb: np.ndarray,
) -> None:
    """``_accumulate_kernel`` over runs: the same voxels in the same (raster) order, so the
    same float64 sums bit for bit; labels are ``lut[run_label]``."""
    nz = (row_start.size - 1) // ny
    size = m.shape[0]
    cnt = np.zeros(size, np.int64)
    sy = np.zeros(size)
    sx = np.zeros(size)
    syy = np.zeros(size)
    sxx = np.zeros(size)
    syx = np.zeros(size)
    touched = np.empty(size, np.int64)
    for i in range(nz):
        z_row = z0 + i
        nt = 0
        for r in range(ny):
            row = i * ny + r
            y = float(r)
            for j in range(row_start[row], row_start[row + 1]):
                k = lut[run_label[j]]
                if k == 0:
                    continue
                if cnt[k] == 0:
                    touched[nt] = k
                    nt += 1
                    bb[k, 0] = min(bb[k, 0], z_row)
                    bb[k, 1] = max(bb[k, 1], z_row + 1)
                # Voxel by voxel into the same accumulators: the float64 additions of the
                # voxel loop, in its order.
                a_y, a_x, a_yy, a_xx, a_yx = sy[k], sx[k], syy[k], sxx[k], syx[k]
                for c in range(start[j], end[j]):
                    x = float(c)
                    a_y += y
                    a_x += x
                    a_yy += y * y
                    a_xx += x * x
                    a_yx += y * x
                sy[k], sx[k], syy[k], sxx[k], syx[k] = a_y, a_x, a_yy, a_xx, a_yx
                cnt[k] += end[j] - start[j]
                bb[k, 2] = min(bb[k, 2], r)
                bb[k, 3] = max(bb[k, 3], r + 1)
                bb[k, 4] = min(bb[k, 4], start[j])
                bb[k, 5] = max(bb[k, 5], end[j])
        _add_row(m, touched, nt, z_row, bands, cnt, sy, sx, syy, sxx, syx)


@numba.njit(parallel=True, cache=True)
def _write_runs(
    row_start: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    run_label: np.ndarray,
    lut: np.ndarray,
    select: np.ndarray,
    out: np.ndarray,
) -> None:
    """``out[run] = lut[label]`` for each run whose ``select[label]`` is set."""
    ny = out.shape[1]
    for r in numba.prange(row_start.size - 1):
        i = r // ny
        y = r - i * ny
        for j in range(row_start[r], row_start[r + 1]):
            k = run_label[j]
            if select[k]:
                out[i, y, start[j] : end[j]] = lut[k]


class _Runs:
    """The set voxels of a slab as runs along x, each with its component label in the slab.

    ``row_start[r]:row_start[r + 1]`` are the runs of image row ``r = i * ny + y`` (slab row
    i), in column order; ``labels`` numbers the slab's components 1..n in raster order of
    their first voxel, as ``cc3d`` does (the crack numbering and the float64 order of the
    sums rely on it). A few bytes per run instead of 4 bytes per voxel of a label slab.
    """

    def __init__(
        self,
        shape: tuple[int, int, int],
        row_start: np.ndarray,
        start: np.ndarray,
        end: np.ndarray,
        labels: np.ndarray,
        n: int,
    ) -> None:
        self.shape = shape
        self.row_start, self.start, self.end = row_start, start, end
        self.labels, self.n = labels, int(n)

    @classmethod
    def scan(
        cls,
        pores: np.ndarray,
        mask: np.ndarray,
        ref: np.ndarray,
        mode: int,
        first: np.ndarray,
        last: np.ndarray,
        connectivity: int,
    ) -> _Runs:
        nz, ny, nx = pores.shape
        counts = np.empty(nz * ny, np.int64)
        _count_runs(pores, mask, ref, mode, first, last, counts)
        row_start = np.zeros(nz * ny + 1, np.int64)
        np.cumsum(counts, out=row_start[1:])
        start = np.empty(int(row_start[-1]), np.int32)
        end = np.empty(start.size, np.int32)
        if start.size == 0:
            return cls((nz, ny, nx), row_start, start, end, np.zeros(0, np.int64), 0)
        _fill_runs(pores, mask, ref, mode, first, last, row_start, start, end)
        labels, n = _label_runs(row_start, start, end, ny, _RUN_REACH[connectivity])
        return cls((nz, ny, nx), row_start, start, end, labels, n)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.row_start, self.start, self.end, self.labels))

    def accumulate(
        self,
        n: int,
        z0: int,
        bands: tuple[tuple[int, int], tuple[int, int]],
        lut: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """:func:`_accumulate` of the slab's label volume (``lut[labels]`` with a lut)."""
        m = np.zeros((n + 1, _N_MOMENTS))
        bb = np.empty((n + 1, 6), dtype=np.int64)
        bb[:, 0::2] = np.iinfo(np.int64).max
        bb[:, 1::2] = -1
        if self.start.size:
            lut = np.arange(self.n + 1, dtype=np.int64) if lut is None else lut
            band_array = np.array([*bands[0], *bands[1]], dtype=np.int64)
            _accumulate_runs_kernel(
                self.row_start,
                self.start,
                self.end,
                self.labels,
                np.asarray(lut, np.int64),
                self.shape[1],
                int(z0),
                band_array,
                m,
                bb,
            )
        return m[1:], bb[1:]

    def edges_to(self, after: _Runs, connectivity: int) -> tuple[np.ndarray, np.ndarray]:
        """Label pairs (this slab's, ``after``'s) of runs that touch across the boundary from
        this slab's last row to the first row of the slab ``after`` it."""
        ny = self.shape[1]
        nz = self.shape[0]
        return _run_edges(
            self.row_start[(nz - 1) * ny :],
            self.start,
            self.end,
            self.labels,
            after.row_start[: ny + 1],
            after.start,
            after.end,
            after.labels,
            _RUN_REACH[connectivity],
        )

    def write(self, lut: np.ndarray, out: np.ndarray, select: np.ndarray | None = None) -> None:
        """``out[voxel] = lut[label]`` for the set voxels whose ``select[label]`` is set
        (default: where ``lut[label]`` is not 0); ``out``: the slab, a numpy array."""
        if self.start.size:
            select = lut != 0 if select is None else select
            _write_runs(self.row_start, self.start, self.end, self.labels, lut, select, out)


def _slab_bounds(rows: tuple[int, int], slab_rows: int | None) -> list[tuple[int, int]]:
    z0, z1 = rows
    if slab_rows is None:
        return [(z0, z1)] if z1 > z0 else []
    if int(slab_rows) < 1:
        raise ValueError(
            f"slab_rows must be a positive number of rows (or None), got {slab_rows!r}"
        )
    step = int(slab_rows)
    return [(a, min(a + step, z1)) for a in range(z0, z1, step)]


@numba.njit(cache=True, inline="always")
def _add_row(
    m: np.ndarray,
    touched: np.ndarray,
    nt: int,
    z_row: int,
    bands: np.ndarray,
    cnt: np.ndarray,
    sy: np.ndarray,
    sx: np.ndarray,
    syy: np.ndarray,
    sxx: np.ndarray,
    syx: np.ndarray,
) -> None:
    """Adds one row's sums of the ``nt`` labels in ``touched`` to their moments ``m`` (times
    z where the moment has a z; the interface bands' counts) and clears them for the next
    row: the per-row numpy code's order, which keeps the moments bit-identical to it."""
    z = float(z_row)
    top = bands[0] <= z_row < bands[1]
    bot = bands[2] <= z_row < bands[3]
    for t in range(nt):
        k = touched[t]
        n = float(cnt[k])
        m[k, 0] += n
        m[k, 1] += z * n
        m[k, 2] += sy[k]
        m[k, 3] += sx[k]
        m[k, 4] += z * z * n
        m[k, 5] += syy[k]
        m[k, 6] += sxx[k]
        m[k, 7] += z * sy[k]
        m[k, 8] += z * sx[k]
        m[k, 9] += syx[k]
        if top:
            m[k, 10] += n
        if bot:
            m[k, 11] += n
        cnt[k] = 0
        sy[k] = sx[k] = syy[k] = sxx[k] = syx[k] = 0.0


@numba.njit(cache=True)
def _accumulate_kernel(
    lab: np.ndarray,
    lut: np.ndarray,
    z0: int,
    bands: np.ndarray,
    m: np.ndarray,
    bb: np.ndarray,
) -> int:
    """Adds the moments and boxes of ``lut[lab]`` (labels 1..n) of a slab into ``m`` and ``bb``.

    One pass over the slab, no temporaries of the slab's size. The float64 sums are formed in
    the order of the per-row numpy code this replaced (each row's sums of y, x, y², x², y·x per
    label in raster order, then added to the totals, times z where the moment has a z), so the
    moments are bit-identical to it. Returns 1 at the first label that is negative or beyond
    ``lut`` (nothing more is added then), else 0.
    """
    nz, ny, nx = lab.shape
    size = m.shape[0]
    cnt = np.zeros(size, np.int64)
    sy = np.zeros(size)
    sx = np.zeros(size)
    syy = np.zeros(size)
    sxx = np.zeros(size)
    syx = np.zeros(size)
    touched = np.empty(size, np.int64)
    for i in range(nz):
        z_row = z0 + i
        nt = 0
        for r in range(ny):
            y = float(r)
            for c in range(nx):
                raw = lab[i, r, c]
                if raw == 0:
                    continue
                if raw < 0 or raw >= lut.size:
                    return 1
                k = lut[raw]
                if k == 0:
                    continue
                if cnt[k] == 0:
                    touched[nt] = k
                    nt += 1
                    bb[k, 0] = min(bb[k, 0], z_row)
                    bb[k, 1] = max(bb[k, 1], z_row + 1)
                cnt[k] += 1
                x = float(c)
                sy[k] += y
                sx[k] += x
                syy[k] += y * y
                sxx[k] += x * x
                syx[k] += y * x
                bb[k, 2] = min(bb[k, 2], r)
                bb[k, 3] = max(bb[k, 3], r + 1)
                bb[k, 4] = min(bb[k, 4], c)
                bb[k, 5] = max(bb[k, 5], c + 1)
        _add_row(m, touched, nt, z_row, bands, cnt, sy, sx, syy, sxx, syx)
    return 0


def _accumulate(
    lab: np.ndarray,
    n: int,
    z0: int,
    bands: tuple[tuple[int, int], tuple[int, int]],
    lut: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Moment sums (n, _N_MOMENTS) and bounding boxes (n, 6) of labels 1..n of a slab.

    Coordinates are voxel indices, the rows' relative to ``z0``, in float64. With ``lut``,
    the labels are ``lut[lab]`` (an integer array indexed by the raw labels), without the
    slab-sized temporary that indexing would make.
    """
    m = np.zeros((n + 1, _N_MOMENTS))
    bb = np.empty((n + 1, 6), dtype=np.int64)
    bb[:, 0::2] = np.iinfo(np.int64).max
    bb[:, 1::2] = -1
    lab = np.asarray(lab)
    if lab.size == 0:
        return m[1:], bb[1:]
    lut = np.arange(n + 1, dtype=np.int64) if lut is None else np.asarray(lut, np.int64)
    band_array = np.array([*bands[0], *bands[1]], dtype=np.int64)
    if _accumulate_kernel(lab, lut, int(z0), band_array, m, bb):
        raise ValueError(
            f"labels must be integers in 0..{lut.size - 1}, got {lab.min()}..{lab.max()}"
        )
    return m[1:], bb[1:]


#: Runs kept from the first pass for the second (a few per cent of the electrolyte are new
#: voxels); beyond this many, the second pass scans its slabs again.
_KEPT_RUNS_MAX = 8_000_000


def _components(
    slabs: _Slabs,
    bounds: list[tuple[int, int]],
    connectivity: int,
    bands: tuple[tuple[int, int], tuple[int, int]],
    keep_runs: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int], list[_Runs] | None]:
    """Pass 1: global component of every provisional label, and the per-component sums.

    Returns the root (0-based component index, ordered by first voxel in raster order) of
    each provisional label, moment sums and bounding boxes per component, each slab's
    label offset, and with ``keep_runs`` each slab's runs (None when they were too many).
    """
    moments, boxes, offsets = [], [], []
    src, dst = [], []
    kept: list[_Runs] | None = [] if keep_runs else None
    n_kept = 0
    total = 0
    last: tuple[_Runs, int] | None = None
    for z0, z1 in bounds:
        runs = slabs.runs(z0, z1, connectivity)
        n = runs.n
        offsets.append(total)
        m, bb = runs.accumulate(n, z0, bands)
        moments.append(m)
        boxes.append(bb)
        if kept is not None:
            n_kept += runs.start.size
            if n_kept <= _KEPT_RUNS_MAX:
                kept.append(runs)
            else:
                kept = None
        # A slab without a set voxel (e.g. a step against itself as reference) has no label
        # to join across its boundaries.
        if last is not None and n:
            s, d = last[0].edges_to(runs, connectivity)
            src.append(s + last[1])
            dst.append(d + total)
        last = (runs, total) if n else None
        total += n
    if total == 0:
        empty = np.empty(0, np.int64), np.zeros((0, _N_MOMENTS)), np.zeros((0, 6), np.int64)
        return *empty, offsets, kept
    s = np.concatenate(src) - 1 if src else np.empty(0, np.int64)
    d = np.concatenate(dst) - 1 if dst else np.empty(0, np.int64)
    graph = sparse.coo_matrix((np.ones(s.size), (s, d)), shape=(total, total))
    _, comp = csgraph.connected_components(graph, directed=False)
    # Number components by their smallest provisional label: cc3d numbers labels in raster
    # order of their first voxel, slabs come in row order, so this is the raster order of
    # each component's first voxel, the same whatever the slab size.
    first_label = np.full(comp.max() + 1, total, dtype=np.int64)
    np.minimum.at(first_label, comp, np.arange(total))
    rank = np.empty_like(first_label)
    rank[np.argsort(first_label)] = np.arange(first_label.size)
    root = rank[comp]
    m_all, bb_all = np.concatenate(moments), np.concatenate(boxes)
    ncomp = first_label.size
    sums = np.zeros((ncomp, _N_MOMENTS))
    np.add.at(sums, root, m_all)
    bbox = np.empty((ncomp, 6), dtype=np.int64)
    bbox[:, 0::2] = np.iinfo(np.int64).max
    bbox[:, 1::2] = -1
    for c in range(6):
        (np.minimum if c % 2 == 0 else np.maximum).at(bbox[:, c], root, bb_all[:, c])
    return root, sums, bbox, offsets, kept


def _table(
    sums: np.ndarray,
    bbox: np.ndarray,
    voxel_um: float,
    bands: tuple[tuple[int, int], tuple[int, int]],
    has_interfaces: bool,
) -> pd.DataFrame:
    """Per-component table from the moment sums."""
    n = sums[:, 0]
    ncomp = n.size
    mean = sums[:, 1:4] / n[:, None]
    # Central second moments (voxel²) with the unit cube's own 1/12 on the diagonal.
    cov = np.empty((ncomp, 3, 3))
    diag = [(0, 4), (1, 5), (2, 6)]
    for a, k in diag:
        cov[:, a, a] = sums[:, k] / n - mean[:, a] ** 2 + 1.0 / 12.0
    for (a, b), k in (((0, 1), 7), ((0, 2), 8), ((1, 2), 9)):
        cov[:, a, b] = cov[:, b, a] = sums[:, k] / n - mean[:, a] * mean[:, b]
    lam = np.linalg.eigvalsh(cov)[:, ::-1] if ncomp else np.zeros((0, 3))
    lam = np.clip(lam, 1.0 / 12.0, None)  # round-off of large sums must not go below a voxel
    planarity = 1.0 - lam[:, 2] / lam[:, 1]
    top_n, bot_n = sums[:, 10], sums[:, 11]
    touches_top, touches_bot = top_n > 0, bot_n > 0
    if has_interfaces:
        origin = np.where(
            touches_top & touches_bot,
            np.where(top_n >= bot_n, "top", "bottom"),
            np.where(touches_top, "top", np.where(touches_bot, "bottom", "none")),
        )
    else:
        origin = np.full(ncomp, "unknown")
    v2 = voxel_um**2
    df = pd.DataFrame(
        {
            "label": np.arange(1, ncomp + 1, dtype=np.int64),
            "voxels": n.astype(np.int64),
            "volume_um3": n * voxel_um**3,
            "z0": bbox[:, 0],
            "z1": bbox[:, 1],
            "y0": bbox[:, 2],
            "y1": bbox[:, 3],
            "x0": bbox[:, 4],
            "x1": bbox[:, 5],
            "centroid_z": mean[:, 0] + 0.5,
            "centroid_y": mean[:, 1] + 0.5,
            "centroid_x": mean[:, 2] + 0.5,
            "lambda1_um2": lam[:, 0] * v2,
            "lambda2_um2": lam[:, 1] * v2,
            "lambda3_um2": lam[:, 2] * v2,
            "planarity": planarity,
            "thickness_um": np.sqrt(12.0 * lam[:, 2]) * voxel_um,
            "voxels_top": top_n.astype(np.int64),
            "voxels_bottom": bot_n.astype(np.int64),
            "touches_top": touches_top,
            "touches_bottom": touches_bot,
            "origin": origin,
        },
        columns=_COLUMNS,
    )
    return df


def _bands(
    rows: tuple[int, int], interfaces: Sequence[float] | None, band: int
) -> tuple[tuple[int, int], tuple[int, int]]:
    if interfaces is None:
        return (0, 0), (0, 0)
    if band < 1:
        raise ValueError(f"origin_band_rows must be >= 1, got {band!r}")
    z0, z1 = rows
    return (z0, min(z1, z0 + band)), (max(z0, z1 - band), z1)


def _bbox_porosity(
    reference: Any, slabs: _Slabs, table: pd.DataFrame, slab_rows: int | None
) -> np.ndarray:
    """Porosity of the reference scan inside each crack's bounding box (and the mask).

    The local porosity the crack ran through: pores are heterogeneous (and cracks steer
    toward the more porous regions), so the box is a better estimate than the global mean.
    """
    phi = np.zeros(len(table))
    for i, r in enumerate(table.itertuples(index=False)):
        pores = total = 0
        for z0, z1 in _slab_bounds((int(r.z0), int(r.z1)), slab_rows):
            ref = np.asarray(reference[z0:z1, r.y0 : r.y1, r.x0 : r.x1], dtype=bool)
            m = slabs.mask_rows(z0, z1)
            if m is None:
                pores += int(np.count_nonzero(ref))
                total += ref.size
            else:
                m = np.broadcast_to(m[:, r.y0 : r.y1, r.x0 : r.x1], ref.shape)
                pores += int(np.count_nonzero(ref & m))
                total += int(np.count_nonzero(m))
        phi[i] = pores / total if total else 0.0
    return phi


def _smallest_uint(n: int) -> type[np.unsignedinteger]:
    for dt in (np.uint8, np.uint16, np.uint32):
        if n <= np.iinfo(dt).max:
            return dt
    return np.uint64


def _keep(
    table: pd.DataFrame, keep: Any, reference: Any | None, slabs: _Slabs, slab_rows: int | None
) -> tuple[pd.DataFrame, np.ndarray]:
    """The kept components, numbered 1..n in order, with their reference correction.

    Returns the table and the new label of each old one (``new_id[old]``, 0 if dropped).
    """
    kept = np.asarray(keep(table), dtype=bool)
    new_id = np.zeros(len(table) + 1, dtype=np.int64)
    new_id[1:][kept] = np.arange(1, int(kept.sum()) + 1)
    table = table[kept].reset_index(drop=True)
    table["label"] = np.arange(1, len(table) + 1, dtype=np.int64)
    if reference is None:
        table["porosity_reference"] = np.nan
        table["volume_corrected_um3"] = table["volume_um3"]
    else:
        phi = _bbox_porosity(reference, slabs, table, slab_rows)
        table["porosity_reference"] = phi
        # The crack is the new voxels plus the old pores it cut through, a fraction φ of its
        # sheet on average: n_new / (1 - φ).
        table["volume_corrected_um3"] = table["volume_um3"] / np.clip(1.0 - phi, 1e-3, None)
    return table, new_id


def _output(out: Any | None, shape: tuple[int, ...], dtype: type) -> Any:
    """Where the labels go: ``out`` checked against the volume's shape, or a new array."""
    if out is None:
        return np.zeros(shape, dtype=dtype)
    if tuple(out.shape) != shape:
        raise ValueError(f"out must have the volume's shape {shape}, got {tuple(out.shape)}")
    return out


@numba.njit(parallel=True, cache=True)
def _apply_lut(lab: np.ndarray, lut: np.ndarray, out: np.ndarray) -> None:
    """``out[...] = lut[lab]`` without the index temporaries of numpy's fancy indexing."""
    for i in numba.prange(lab.shape[0]):
        for r in range(lab.shape[1]):
            for c in range(lab.shape[2]):
                out[i, r, c] = lut[lab[i, r, c]]


def _write_lut(out: Any, z0: int, z1: int, lab: np.ndarray, lut: np.ndarray) -> None:
    """Writes ``lut[lab]`` to rows z0:z1 of ``out`` (in place when it is a numpy array)."""
    if isinstance(out, np.ndarray) and out.dtype == lut.dtype:
        _apply_lut(lab, lut, out[z0:z1])
    else:
        buf = np.empty(lab.shape, dtype=lut.dtype)
        _apply_lut(lab, lut, buf)
        out[z0:z1] = buf


def _label_volume(
    binary: Any,
    *,
    voxel_um: float,
    connectivity: int,
    interfaces: Sequence[float] | None,
    mask: Any | None,
    reference: Any | None,
    slab_rows: int | None,
    origin_band_rows: int,
    keep: Any,
    out: Any | None,
    write: bool = True,
    runs_out: list[tuple[_Runs, np.ndarray] | None] | None = None,
) -> tuple[Any, pd.DataFrame]:
    """Shared core of :func:`label_pores` and :func:`find_cracks`; ``write=False``: the table
    only (labels None), without the second, relabelling pass. ``runs_out`` (a list) receives
    each slab's runs and the lut that wrote them (None for a slab with nothing written), or
    nothing when they were too many to keep."""
    voxel_um = _check_positive(voxel_um, "voxel_um")
    connectivity = _check_connectivity(connectivity)
    shape = _check_volume(binary)
    rows = _row_range(shape[0], interfaces)
    slabs = _Slabs(binary, mask, reference)
    bounds = _slab_bounds(rows, slab_rows)
    bands = _bands(rows, interfaces, origin_band_rows)
    root, sums, bbox, offsets, kept = _components(slabs, bounds, connectivity, bands, write)
    table = _table(sums, bbox, voxel_um, bands, interfaces is not None)
    table, new_id = _keep(table, keep, reference, slabs, slab_rows)
    if not write:
        return None, table
    dtype = _smallest_uint(len(table))
    # A new array is zeros already: only the kept components' voxels are written (no page of
    # the volume is touched for nothing); a reused ``out`` is cleared explicitly.
    fresh = out is None
    out = _output(out, shape, dtype)
    if not fresh:
        zero = np.zeros((1, *shape[1:]), dtype=dtype)
        for z in [*range(0, rows[0]), *range(rows[1], shape[0])]:
            out[z : z + 1] = zero
    # Pass 2: write the kept components of each slab from its runs (kept from pass 1, or
    # found again: the labelling is deterministic).
    lut_all = new_id[root + 1] if root.size else np.zeros(0, np.int64)
    ends = [*offsets[1:], root.size] if offsets else []
    slab_runs = kept if kept is not None else [None] * len(bounds)
    # The runs are handed on only when all were kept (a few, e.g. the new voxels of a step).
    collect = runs_out is not None and kept is not None
    for (z0, z1), off, end, runs in zip(bounds, offsets, ends, slab_runs, strict=True):
        if not lut_all[off:end].any():
            # No kept component in this slab: nothing to write.
            if not fresh:
                out[z0:z1] = np.zeros((z1 - z0, *shape[1:]), dtype=dtype)
            if collect:
                runs_out.append(None)
            continue
        runs = runs if runs is not None else slabs.runs(z0, z1, connectivity)
        lut = np.zeros(runs.n + 1, dtype=dtype)
        lut[1:] = lut_all[off:end]
        _write_runs_to(out, z0, z1, runs, lut, fresh)
        if collect:
            runs_out.append((runs, lut))
    return out, table


def _write_runs_to(out: Any, z0: int, z1: int, runs: _Runs, lut: np.ndarray, fresh: bool) -> None:
    """Writes ``lut[labels]`` of a slab's runs to rows z0:z1 of ``out`` (0 elsewhere there);
    ``fresh``: those rows are 0 already."""
    if isinstance(out, np.ndarray) and out.dtype == lut.dtype:
        target = out[z0:z1]
        if not fresh:
            target[...] = 0
        runs.write(lut, target)
    else:
        buf = np.zeros((z1 - z0, *runs.shape[1:]), dtype=lut.dtype)
        runs.write(lut, buf)
        out[z0:z1] = buf


def label_pores(
    binary: Any,
    connectivity: int = 26,
    *,
    voxel_um: float = 1.0,
    interfaces: Sequence[float] | None = None,
    mask: Any | None = None,
    slab_rows: int | None = None,
    origin_band_rows: int = 2,
    out: Any | None = None,
) -> tuple[Any, pd.DataFrame]:
    """Connected components of the pore phase and their statistics.

    Parameters
    ----------
    binary : array_like of bool, shape (nz, ny, nx)
        Pore phase (True = transparent), e.g. a volume below the global threshold. Anything
        that slices like numpy (Zarr, HDF5) works; it is read ``slab_rows`` rows at a time.
    connectivity : {26, 18, 6}
        Voxel neighbourhood of the components.
    voxel_um : float
        Voxel edge in µm.
    interfaces : (float, float), optional
        ``(top_row, bottom_row)`` of the electrolyte (continuous rows, 0 at the top edge of
        row 0): only rows whose centres lie in between are analysed (the Li electrodes are
        transparent too), and the table says which interface each component touches.
    mask : array_like of bool, optional
        Region of interest, shape ``(ny, nx)`` (a cross-section, e.g. the pellet disc) or the
        volume's: transparent voxels outside it (the air around the pellet) are ignored.
    slab_rows : int, optional
        Rows per slab for bounded memory; None labels the analysed rows at once. The result
        does not depend on it.
    origin_band_rows : int
        Rows next to each interface that count as touching it.
    out : array_like, optional
        Where to write the labels (e.g. a Zarr array of the volume's shape and an unsigned
        dtype wide enough for the count).

    Returns
    -------
    labels : ndarray of unsigned int, shape (nz, ny, nx)
        0 outside the pore phase, components 1..n in raster order of their first voxel; the
        smallest unsigned dtype that holds n.
    table : pandas.DataFrame
        One row per component: ``label``, ``voxels``, ``volume_um3``, bounding box
        ``z0, z1, y0, y1, x0, x1`` (half-open, voxels), ``centroid_z/y/x`` (voxels, 0 at the
        volume's corner), inertia eigenvalues ``lambda1_um2 ≥ lambda2_um2 ≥ lambda3_um2``,
        ``planarity`` (1 − λ3/λ2), ``thickness_um`` (√(12 λ3)), ``voxels_top`` /
        ``voxels_bottom`` (in the interface bands), ``touches_top``, ``touches_bottom`` and
        ``origin`` (see the module notes).
    """
    return _label_volume(
        binary,
        voxel_um=voxel_um,
        connectivity=connectivity,
        interfaces=interfaces,
        mask=mask,
        reference=None,
        slab_rows=slab_rows,
        origin_band_rows=origin_band_rows,
        keep=lambda t: np.ones(len(t), dtype=bool),
        out=out,
    )


def pore_component_table(labels: np.ndarray, *, voxel_um: float = 1.0) -> pd.DataFrame:
    """Statistics of an existing label volume (the columns of :func:`label_pores`).

    Components are taken as given (no relabelling); interfaces are not known here, so
    ``origin`` is ``"unknown"``.
    """
    labels = np.asarray(labels)
    _check_volume(labels, "labels")
    if labels.dtype.kind not in "ui":
        raise ValueError(f"labels must be an integer label volume, got dtype {labels.dtype}")
    n = int(labels.max()) if labels.size else 0
    m, bb = _accumulate(labels, n, 0, ((0, 0), (0, 0)))
    present = m[:, 0] > 0
    t = _table(
        m[present], bb[present], _check_positive(voxel_um, "voxel_um"), ((0, 0), (0, 0)), False
    )
    t["label"] = np.flatnonzero(present) + 1
    return t


def find_cracks(
    binary: Any,
    *,
    voxel_um: float,
    min_volume_um3: float,
    planarity_min: float = 0.0,
    interfaces: Sequence[float] | None = None,
    mask: Any | None = None,
    reference: Any | None = None,
    connectivity: int = 26,
    slab_rows: int | None = 64,
    origin_band_rows: int = 2,
    min_fragment_voxels: int = 20,
    out: Any | None = None,
    labels: bool = True,
) -> tuple[Any, pd.DataFrame]:
    """Cracks: components of the pore phase above a volume (and optional planarity) threshold.

    Parameters
    ----------
    binary : array_like of bool, shape (nz, ny, nx)
        Pore phase of one step (pores, cracks and Li in cracks are all transparent).
    voxel_um : float
        Voxel edge in µm.
    min_volume_um3 : float
        Components smaller than this are pores, not cracks (the paper's definition). Choose
        it above the largest pore of the pristine scan: ``label_pores(pristine)`` tells.
    planarity_min : float
        Also require ``planarity ≥ planarity_min`` (0 = volume only, the paper's definition);
        ≈ 0.6 separates sheets from round pores (planarity of a ball ≈ 0, of a sheet 5× wider
        than thick > 0.9). Curved cracks score lower than flat ones: keep it moderate.
    interfaces : (float, float), optional
        ``(top_row, bottom_row)`` of the electrolyte; restricts the analysis to its rows and
        gives each crack's origin.
    mask : array_like of bool, optional
        Region of interest, ``(ny, nx)`` or the volume's shape (e.g. the pellet disc).
    reference : array_like of bool, optional
        Pore phase of an earlier scan of the same, aligned cell (the pristine one): cracks are
        then the components of the voxels that became transparent since, and their volume is
        corrected for the old pores they run through (``volume_corrected_um3``, see the
        module notes). Needed for a crack volume that is not dominated by pores when the
        pore phase percolates.
    connectivity : {26, 18, 6}
        Neighbourhood of the components.
    slab_rows : int or None
        Rows per slab (bounded memory; the result does not depend on it).
    origin_band_rows : int
        Rows next to each interface that count as touching it.
    min_fragment_voxels : int
        With a reference: pieces of new voxels at least this large are joined through the old
        pores next to them into one crack (see the module notes); smaller pieces stay apart
        (and count as cracks only when they are one above ``min_volume_um3``). 0 turns the
        joining off.
    out : array_like, optional
        Where to write the crack labels.
    labels : bool
        False: the table only, labels are not made (None is returned for them), which
        saves the second labelling pass over the volume. ``out`` must then be None.

    Returns
    -------
    labels : ndarray of unsigned int or None
        Crack labels 1..n (0 elsewhere), smallest unsigned dtype; ``labels > 0`` is the
        crack mask. None when ``labels`` is False.
    table : pandas.DataFrame
        One row per crack, the columns of :func:`label_pores`.

    See Also
    --------
    crack_summary : volume and count per origin.
    match_cracks : growth between steps.
    """
    min_volume_um3 = float(min_volume_um3)
    if not (np.isfinite(min_volume_um3) and min_volume_um3 >= 0):
        raise ValueError(f"min_volume_um3 must be >= 0 µm³, got {min_volume_um3!r}")
    if not 0.0 <= planarity_min <= 1.0:
        raise ValueError(f"planarity_min must be in [0, 1], got {planarity_min!r}")
    if not labels and out is not None:
        raise ValueError("out is not written with labels=False: pass one or the other")

    def keep(t: pd.DataFrame) -> np.ndarray:
        return (t["volume_um3"] >= min_volume_um3).to_numpy() & (
            t["planarity"] >= planarity_min
        ).to_numpy()

    if reference is None or int(min_fragment_voxels) <= 0:
        return _label_volume(
            binary,
            voxel_um=voxel_um,
            connectivity=connectivity,
            interfaces=interfaces,
            mask=mask,
            reference=reference,
            slab_rows=slab_rows,
            origin_band_rows=origin_band_rows,
            keep=keep,
            out=out,
            write=labels,
        )
    # Pieces smaller than both the joining floor and the smallest crack can matter to
    # nothing: dropped at once, so the fragment labels stay few (and narrow) at full size.
    smallest_crack = int(np.ceil(min_volume_um3 / _check_positive(voxel_um, "voxel_um") ** 3))
    floor = max(1, min(int(min_fragment_voxels), smallest_crack))
    # The fragments are a few per cent of the volume at most: their runs are kept, and the
    # joined cracks are measured and written from them rather than from the label volume.
    frag_runs: list[tuple[_Runs, np.ndarray] | None] = []
    fragments, pieces = _label_volume(
        binary,
        voxel_um=voxel_um,
        connectivity=connectivity,
        interfaces=interfaces,
        mask=mask,
        reference=reference,
        slab_rows=slab_rows,
        origin_band_rows=origin_band_rows,
        keep=lambda t: (t["voxels"] >= floor).to_numpy(),
        out=None,
        runs_out=frag_runs,
    )
    joinable = np.zeros(len(pieces) + 1, dtype=bool)
    joinable[1:] = pieces["voxels"].to_numpy() >= int(min_fragment_voxels)
    return _joined_cracks(
        fragments,
        joinable,
        pieces[["z0", "z1", "y0", "y1", "x0", "x1"]].to_numpy(np.int64),
        frag_runs or None,
        _Slabs(binary, mask, None),
        reference,
        voxel_um=_check_positive(voxel_um, "voxel_um"),
        connectivity=connectivity,
        interfaces=interfaces,
        slab_rows=slab_rows,
        origin_band_rows=origin_band_rows,
        keep=keep,
        out=out,
        write=labels,
    )


#: Rows a join between two fragments can span: fragment, shell, shell, fragment.
_JOIN_HALO = 3


def _fragment_joins(
    fragments: np.ndarray,
    joinable: np.ndarray,
    boxes: np.ndarray,
    pores: _Slabs,
    reference: Any,
    bounds: list[tuple[int, int]],
    connectivity: int,
) -> np.ndarray:
    """Root fragment of each fragment label, joined through the old pores next to them.

    Only the fragments marked in ``joinable`` (indexed by label) join; the others stay apart.
    ``boxes`` (one row per fragment: z0, z1, y0, y1, x0, x1) bound where they lie.

    Each slab is read with ``_JOIN_HALO`` rows either side, so that every join (at most four
    rows: a fragment, two shell voxels, a fragment) lies wholly inside some slab's window;
    joins are unions, so finding one twice changes nothing.
    """
    n = joinable.size - 1
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    src, dst = [], []
    nz, ny, nx = fragments.shape
    join_boxes = boxes[joinable[1:]]
    for z0, z1 in bounds:
        a, b = max(0, z0 - _JOIN_HALO), min(nz, z1 + _JOIN_HALO)
        near = join_boxes[(join_boxes[:, 0] < b) & (join_boxes[:, 1] > a)]
        if near.size == 0:
            continue
        # Nothing outside the joinable fragments' boxes (and one voxel around them) can join
        # them: only that part of the window is read, dilated and labelled. (A larger box
        # than the tightest one finds the same joins: the extra voxels are not set.)
        ys = slice(max(0, int(near[:, 2].min()) - 1), min(ny, int(near[:, 3].max()) + 1))
        xs = slice(max(0, int(near[:, 4].min()) - 1), min(nx, int(near[:, 5].max()) + 1))
        frag = np.asarray(fragments[a:b, ys, xs])
        big = joinable[frag]
        ref = np.asarray(reference[a:b, ys, xs], dtype=bool)
        old_pores = np.logical_and(pores.window(a, b, ys, xs), ref, out=ref)
        # The 3×3×3 dilation as three 1-D maxima (the same set, border 0 as binary_dilation).
        grown = ndi.maximum_filter(big.view(np.uint8), size=3, mode="constant", cval=0)
        shell = grown.view(bool) & old_pores & (frag == 0)
        joined = cc3d.connected_components(big | shell, connectivity=connectivity)
        pairs = np.unique(np.stack([joined[big], frag[big]], axis=1), axis=0)
        # Fragments sharing a joined component: an edge from each to the component's first.
        first = {}
        for comp, label in pairs:
            if comp in first:
                src.append(first[comp])
                dst.append(int(label))
            else:
                first[comp] = int(label)
    graph = sparse.coo_matrix(
        (np.ones(len(src)), (np.asarray(src, np.int64) - 1, np.asarray(dst, np.int64) - 1)),
        shape=(n, n),
    )
    _, comp = csgraph.connected_components(graph, directed=False)
    # The root of a group is its smallest label: fragments are numbered in raster order of
    # their first voxel, so cracks are too, whatever the slab size.
    root = np.full(comp.max() + 1 if n else 0, n + 1, dtype=np.int64)
    np.minimum.at(root, comp, np.arange(1, n + 1))
    return root[comp]


def _joined_cracks(
    fragments: np.ndarray,
    joinable: np.ndarray,
    boxes: np.ndarray,
    runs: list[tuple[_Runs, np.ndarray] | None] | None,
    pores: _Slabs,
    reference: Any,
    *,
    voxel_um: float,
    connectivity: int,
    interfaces: Sequence[float] | None,
    slab_rows: int | None,
    origin_band_rows: int,
    keep: Any,
    out: Any | None,
    write: bool = True,
) -> tuple[Any, pd.DataFrame]:
    """Cracks from fragment labels: join, measure the new voxels of each group, keep, relabel.

    ``boxes``: each fragment's bounding box; ``runs``: each slab's fragment runs and the lut
    from their labels to the fragments' (None: read ``fragments`` instead).
    ``write=False``: the table only (labels None)."""
    shape = fragments.shape
    rows = _row_range(shape[0], interfaces)
    bounds = _slab_bounds(rows, slab_rows)
    bands = _bands(rows, interfaces, origin_band_rows)
    root = _fragment_joins(fragments, joinable, boxes, pores, reference, bounds, connectivity)
    n_frag = root.size
    # Groups numbered 1..g by their root (raster order of their first voxel).
    roots, group = np.unique(root, return_inverse=True)
    lut = np.zeros(n_frag + 1, dtype=np.int64)
    lut[1:] = group + 1
    g = roots.size
    sums = np.zeros((g, _N_MOMENTS))
    bbox = np.empty((g, 6), dtype=np.int64)
    bbox[:, 0::2] = np.iinfo(np.int64).max
    bbox[:, 1::2] = -1
    for (z0, z1), slab in zip(bounds, runs or [None] * len(bounds), strict=True):
        if runs is None:
            m, bb = _accumulate(np.asarray(fragments[z0:z1]), g, z0, bands, lut=lut)
        elif slab is None:
            continue  # no fragment in this slab: nothing to add
        else:
            # The same voxels in the same order as the slab of ``fragments``.
            m, bb = slab[0].accumulate(g, z0, bands, lut=lut[slab[1]])
        sums += m
        bbox[:, 0::2] = np.minimum(bbox[:, 0::2], bb[:, 0::2])
        bbox[:, 1::2] = np.maximum(bbox[:, 1::2], bb[:, 1::2])
    table = _table(sums, bbox, voxel_um, bands, interfaces is not None)
    table, new_id = _keep(table, keep, reference, pores, slab_rows)
    if not write:
        return None, table
    dtype = _smallest_uint(len(table))
    final = new_id[lut].astype(dtype)
    in_place = out is None and isinstance(fragments, np.ndarray) and fragments.dtype == dtype
    if runs is not None and out is None:
        # Only the fragments' voxels are written: in place, the fragment labels (this call's
        # own array, 0 elsewhere) become crack labels; else a new array, zeros already.
        target = fragments if in_place else np.zeros(shape, dtype=dtype)
        for (z0, z1), slab in zip(bounds, runs, strict=True):
            if slab is not None:
                slab_runs, frag_lut = slab
                slab_runs.write(final[frag_lut], target[z0:z1], select=frag_lut != 0)
        return target, table
    if in_place:
        # The fragment labels are this call's own array: relabelled in place, which spares
        # a second volume (its rows outside the analysed range are 0 already).
        for z0, z1 in bounds:
            _apply_lut(fragments[z0:z1], final, fragments[z0:z1])
        return fragments, table
    out = _output(out, shape, dtype)
    for z0, z1 in [(0, rows[0]), *bounds, (rows[1], shape[0])]:
        if z1 > z0:
            _write_lut(out, z0, z1, np.asarray(fragments[z0:z1]), final)
    return out, table


def crack_summary(table: pd.DataFrame) -> dict[str, float | int]:
    """Crack count and volume, in all and per origin interface, of one step's crack table.

    Returns
    -------
    dict
        ``count``, ``volume_um3``, and ``count_<origin>`` / ``volume_um3_<origin>`` for
        origins ``top``, ``bottom``, ``none`` (``unknown`` when interfaces were not given).
    """
    out: dict[str, float | int] = {
        "count": len(table),
        "volume_um3": float(table["volume_um3"].sum()),
    }
    for origin in ("top", "bottom", "none", "unknown"):
        sel = table["origin"] == origin
        if origin == "unknown" and not sel.any():
            continue
        out[f"count_{origin}"] = int(sel.sum())
        out[f"volume_um3_{origin}"] = float(table.loc[sel, "volume_um3"].sum())
    return out


@numba.njit(parallel=True, cache=True)
def _fill_nonzero_rows(
    rows: np.ndarray, row_start: np.ndarray, index: np.ndarray, values: np.ndarray
) -> None:
    width = rows.shape[1]
    for z in numba.prange(rows.shape[0]):
        k = row_start[z]
        if k == row_start[z + 1]:
            continue
        for j in range(width):
            v = rows[z, j]
            if v != 0:
                index[k] = z * width + j
                values[k] = v
                k += 1


def _flat_nonzero(volume: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``flatnonzero`` of a C-contiguous volume and the values there, in one compiled pass
    per row (no boolean or index temporary of the volume's size)."""
    rows = volume.reshape(volume.shape[0], int(np.prod(volume.shape[1:])))
    # numpy's count_nonzero (vectorised) per row; the compiled pass visits only rows that
    # hold a label (cracks are in a few rows; an empty volume costs the count alone).
    counts = np.array([np.count_nonzero(row) for row in rows], dtype=np.int64)
    row_start = np.zeros(rows.shape[0] + 1, np.int64)
    np.cumsum(counts, out=row_start[1:])
    index = np.empty(int(row_start[-1]), np.int64)
    values = np.empty(index.size, volume.dtype)
    _fill_nonzero_rows(rows, row_start, index, values)
    return index, values


def _nonzero_voxels(labels: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """Flat indices (ascending) and values of a label volume's non-zero voxels, where that
    is cheap: a sparse store that has them, or a C-contiguous numpy array; else None."""
    stored = getattr(labels, "nonzero_voxels", None)
    if stored is not None:
        return stored()
    if isinstance(labels, np.ndarray) and labels.flags.c_contiguous and labels.ndim == 3:
        return _flat_nonzero(labels)
    return None


def _counts(values: np.ndarray) -> dict[int, int]:
    u, c = np.unique(values, return_counts=True)
    return dict(zip(u.tolist(), c.tolist(), strict=True))


def _overlap_counts(
    before: tuple[np.ndarray, np.ndarray], after: tuple[np.ndarray, np.ndarray]
) -> tuple[dict[int, int], dict[int, int], dict[tuple[int, int], int]]:
    """Voxels of each label before and after, and of each overlapping (before, after) pair,
    from the non-zero voxels of both steps (a few per cent of the volume)."""
    # Labels are positive (signed label volumes: negative values are no crack).
    (ia, va), (ib, vb) = ((i[v > 0], v[v > 0]) for i, v in (before, after))
    _, pa, pb = np.intersect1d(ia, ib, assume_unique=True, return_indices=True)
    pairs: dict[tuple[int, int], int] = {}
    if pa.size:
        both = np.stack([va[pa].astype(np.int64), vb[pb].astype(np.int64)], axis=1)
        u, c = np.unique(both, axis=0, return_counts=True)
        pairs = {(ka, kb): v for (ka, kb), v in zip(u.tolist(), c.tolist(), strict=True)}
    return _counts(va.astype(np.int64)), _counts(vb.astype(np.int64)), pairs


def _overlap_counts_by_slab(
    labels_before: Any, labels_after: Any, slab_rows: int | None
) -> tuple[dict[int, int], dict[int, int], dict[tuple[int, int], int]]:
    """:func:`_overlap_counts` for any arrays that slice like numpy, slab by slab."""
    bounds = _slab_bounds((0, labels_before.shape[0]), slab_rows)
    pairs: dict[tuple[int, int], int] = {}
    vol_a: dict[int, int] = {}
    vol_b: dict[int, int] = {}
    for z0, z1 in bounds:
        a = np.asarray(labels_before[z0:z1]).ravel()
        b = np.asarray(labels_after[z0:z1]).ravel()
        # Cracks are a small fraction of the volume: widen only their voxels, not the slab
        # (two int64 slabs were 2 GB at beamline size, the peak of a whole experiment).
        where = np.flatnonzero(a | b)
        a = a[where].astype(np.int64)
        b = b[where].astype(np.int64)
        for vol, x in ((vol_a, a), (vol_b, b)):
            u, c = np.unique(x[x > 0], return_counts=True)
            for k, v in zip(u.tolist(), c.tolist(), strict=True):
                vol[k] = vol.get(k, 0) + v
        both = (a > 0) & (b > 0)
        if both.any():
            u, c = np.unique(np.stack([a[both], b[both]], axis=1), axis=0, return_counts=True)
            for (ka, kb), v in zip(u.tolist(), c.tolist(), strict=True):
                pairs[(ka, kb)] = pairs.get((ka, kb), 0) + v
    return vol_a, vol_b, pairs


def match_cracks(
    labels_before: Any,
    labels_after: Any,
    *,
    voxel_um: float,
    slab_rows: int | None = 64,
) -> pd.DataFrame:
    """Match the cracks of two aligned steps by voxel overlap: new, grown, merged, closed.

    Parameters
    ----------
    labels_before, labels_after : array_like of unsigned int, shape (nz, ny, nx)
        Crack labels of step k and k + 1 (:func:`find_cracks`), on the same grid.
    voxel_um : float
        Voxel edge in µm.
    slab_rows : int or None
        Rows per slab for bounded memory.

    Returns
    -------
    pandas.DataFrame
        One row per crack of step k + 1 (``label_after``) and one per crack of step k that
        overlaps nothing after (``label_after`` = 0): ``labels_before`` (tuple of the
        overlapping cracks of step k), ``volume_before_um3`` (their summed volume),
        ``volume_after_um3``, ``growth_um3`` (after − before), ``overlap_um3`` and
        ``status``: ``"new"`` (no predecessor), ``"grown"`` / ``"shrunk"`` / ``"unchanged"``
        (one predecessor; it is also counted ``"split"`` when that predecessor overlaps
        several cracks after), ``"merged"`` (several predecessors), ``"closed"`` (a crack of
        step k with no successor, e.g. Li stripped out of it and the binarisation lost it).
    """
    voxel_um = _check_positive(voxel_um, "voxel_um")
    shape = _check_volume(labels_before, "labels_before")
    if _check_volume(labels_after, "labels_after") != shape:
        raise ValueError(
            f"labels_before {shape} and labels_after {tuple(labels_after.shape)} must have "
            "the same shape: align the volumes first"
        )
    for name, labels in (("labels_before", labels_before), ("labels_after", labels_after)):
        if np.dtype(labels.dtype).kind not in "ui":
            raise ValueError(f"{name} must be integer crack labels, got dtype {labels.dtype}")
    sparse_a, sparse_b = _nonzero_voxels(labels_before), _nonzero_voxels(labels_after)
    if sparse_a is not None and sparse_b is not None:
        vol_a, vol_b, pairs = _overlap_counts(sparse_a, sparse_b)
    else:
        vol_a, vol_b, pairs = _overlap_counts_by_slab(labels_before, labels_after, slab_rows)
    v3 = voxel_um**3
    successors: dict[int, list[int]] = {}
    predecessors: dict[int, list[int]] = {}
    for ka, kb in pairs:
        successors.setdefault(ka, []).append(kb)
        predecessors.setdefault(kb, []).append(ka)
    rows = []
    for kb in sorted(vol_b):
        pre = sorted(predecessors.get(kb, []))
        before = sum(vol_a[k] for k in pre)
        after = vol_b[kb]
        if not pre:
            status = "new"
        elif len(pre) > 1:
            status = "merged"
        elif len(successors[pre[0]]) > 1:
            status = "split"
        else:
            status = "grown" if after > before else "shrunk" if after < before else "unchanged"
        rows.append(
            {
                "label_after": kb,
                "labels_before": tuple(pre),
                "volume_before_um3": before * v3,
                "volume_after_um3": after * v3,
                "growth_um3": (after - before) * v3,
                "overlap_um3": sum(pairs[(k, kb)] for k in pre) * v3,
                "status": status,
            }
        )
    for ka in sorted(set(vol_a) - set(successors)):
        rows.append(
            {
                "label_after": 0,
                "labels_before": (ka,),
                "volume_before_um3": vol_a[ka] * v3,
                "volume_after_um3": 0.0,
                "growth_um3": -vol_a[ka] * v3,
                "overlap_um3": 0.0,
                "status": "closed",
            }
        )
    columns = [
        "label_after",
        "labels_before",
        "volume_before_um3",
        "volume_after_um3",
        "growth_um3",
        "overlap_um3",
        "status",
    ]
    return pd.DataFrame(rows, columns=columns)
