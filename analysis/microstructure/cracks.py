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
(``slab_rows`` rows at a time, only the electrolyte rows): each slab is labelled with
``cc3d``, its provisional labels get a global offset, labels that touch across a slab
boundary (the 9, 5 or 1 neighbours of 26-, 18- or 6-connectivity) are joined as graph edges,
and the graph's connected components (``scipy.sparse.csgraph``) give the global components.
Per-component moments are accumulated per slab and summed over each global component, then a
second pass relabels each slab and writes the kept components as compact labels (uint8 when
there are fewer than 255 cracks). Peak memory is the input, the output labels (1 byte a voxel
for < 255 cracks) and a few times the slab (``slab_rows × ny × nx × ~12 bytes``): at 2000 ×
1000 pixels and 64 rows ≈ 1.5 GB. The input may be any array that slices like numpy (Zarr,
HDF5), so it need not be in memory; ``out=`` takes the output likewise. The slab-wise result
equals the whole-volume one (tested).

Speed
-----
The per-slab moments are summed in one compiled (numba) pass over the slab, in the float64
order of the per-row numpy code it replaced, so the tables are bit-identical to it (tested
against that code). Labels are written through compiled lookups; slabs with no kept
component are not labelled a second time, and ``labels=False`` (the table only) skips the
second pass altogether. On a quarter-size step (286 × 1000 × 2000, 2 busy cores) the two
crack conventions went from 34 s and 23 s (two steps) to 10 s and 12 s; 5 s with
``labels=False``; about half of what is left is ``cc3d``'s labelling.
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

_OFFSETS = {
    # In-plane offsets (dy, dx) of the neighbours in the next row for each connectivity.
    6: [(0, 0)],
    18: [(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)],
    26: [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)],
}

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
    if connectivity not in _OFFSETS:
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

    def mask_rows(self, z0: int, z1: int) -> np.ndarray | None:
        if self.mask is None:
            return None
        return self.mask[None] if self.mask.ndim == 2 else self.mask[z0:z1]

    def __call__(self, z0: int, z1: int) -> np.ndarray:
        """Pore phase of rows z0:z1 inside the mask; with a reference, only new voxels."""
        a = np.asarray(self.binary[z0:z1], dtype=bool)
        m = self.mask_rows(z0, z1)
        if m is not None:
            a = np.logical_and(a, m)
        elif self.reference is not None:
            a = a.copy()  # written below; the input is the caller's
        if self.reference is not None:
            # a & ~reference without a temporary for ~reference: for booleans that is a > ref.
            np.greater(a, np.asarray(self.reference[z0:z1], dtype=bool), out=a)
        return a


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


def _label_slab(a: np.ndarray, connectivity: int) -> tuple[np.ndarray, int]:
    lab, n = cc3d.connected_components(a, connectivity=connectivity, return_N=True)
    return lab, int(n)


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


@numba.njit(cache=True)
def _pair_keys(a: np.ndarray, b: np.ndarray, width: int, keys: np.ndarray, n: int) -> int:
    """Appends ``a * width + b`` where both labels are set to ``keys[n:]``; returns the new n.

    A key equal to the one just written is skipped: neighbouring pixels mostly repeat the
    same pair, so the buffer (and the sort that makes the keys unique) stays small.
    """
    prev = -1
    for y in range(a.shape[0]):
        for x in range(a.shape[1]):
            p, q = a[y, x], b[y, x]
            if p > 0 and q > 0:
                key = p * width + q
                if key != prev:
                    keys[n] = key
                    n += 1
                    prev = key
    return n


def _boundary_edges(
    last: np.ndarray, first: np.ndarray, connectivity: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of global labels that touch across a slab boundary (last row → next row).

    Each pair once (their order does not matter: they only feed a connected-components).
    """
    ny, nx = last.shape
    width = int(max(last.max(), first.max())) + 1
    keys = np.empty(ny * nx * len(_OFFSETS[connectivity]), dtype=np.int64)
    n = 0
    for dy, dx in _OFFSETS[connectivity]:
        a = last[max(0, -dy) : ny - max(0, dy), max(0, -dx) : nx - max(0, dx)]
        b = first[max(0, dy) : ny - max(0, -dy), max(0, dx) : nx - max(0, -dx)]
        n = _pair_keys(a, b, width, keys, n)
    keys = np.unique(keys[:n])
    return keys // width, keys % width


def _components(
    slabs: _Slabs,
    bounds: list[tuple[int, int]],
    connectivity: int,
    bands: tuple[tuple[int, int], tuple[int, int]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """Pass 1: global component of every provisional label, and the per-component sums.

    Returns the root (0-based component index, ordered by first voxel in raster order) of
    each provisional label, moment sums and bounding boxes per component, and each slab's
    label offset.
    """
    moments, boxes, offsets = [], [], []
    src, dst = [], []
    total = 0
    last: np.ndarray | None = None
    for z0, z1 in bounds:
        lab, n = _label_slab(slabs(z0, z1), connectivity)
        offsets.append(total)
        m, bb = _accumulate(lab, n, z0, bands)
        moments.append(m)
        boxes.append(bb)
        first = np.where(lab[0] > 0, lab[0].astype(np.int64) + total, 0)
        if last is not None:
            s, d = _boundary_edges(last, first, connectivity)
            src.append(s)
            dst.append(d)
        last = np.where(lab[-1] > 0, lab[-1].astype(np.int64) + total, 0)
        total += n
    if total == 0:
        return np.empty(0, np.int64), np.zeros((0, _N_MOMENTS)), np.zeros((0, 6), np.int64), offsets
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
    return root, sums, bbox, offsets


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
) -> tuple[Any, pd.DataFrame]:
    """Shared core of :func:`label_pores` and :func:`find_cracks`; ``write=False``: the table
    only (labels None), without the second, relabelling pass."""
    voxel_um = _check_positive(voxel_um, "voxel_um")
    connectivity = _check_connectivity(connectivity)
    shape = _check_volume(binary)
    rows = _row_range(shape[0], interfaces)
    slabs = _Slabs(binary, mask, reference)
    bounds = _slab_bounds(rows, slab_rows)
    bands = _bands(rows, interfaces, origin_band_rows)
    root, sums, bbox, offsets = _components(slabs, bounds, connectivity, bands)
    table = _table(sums, bbox, voxel_um, bands, interfaces is not None)
    table, new_id = _keep(table, keep, reference, slabs, slab_rows)
    if not write:
        return None, table
    dtype = _smallest_uint(len(table))
    out = _output(out, shape, dtype)
    # Rows outside the analysed range stay 0 (written explicitly: `out` may be a reused array).
    zero = np.zeros((1, *shape[1:]), dtype=dtype)
    for z in [*range(0, rows[0]), *range(rows[1], shape[0])]:
        out[z : z + 1] = zero
    # Pass 2: relabel each slab (cc3d is deterministic) and write the kept components.
    lut_all = new_id[root + 1] if root.size else np.zeros(0, np.int64)
    ends = [*offsets[1:], root.size] if offsets else []
    for (z0, z1), off, end in zip(bounds, offsets, ends, strict=True):
        if not lut_all[off:end].any():
            # No kept component in this slab: nothing to relabel.
            out[z0:z1] = np.zeros((z1 - z0, *shape[1:]), dtype=dtype)
            continue
        lab, n = _label_slab(slabs(z0, z1), connectivity)
        lut = np.zeros(n + 1, dtype=dtype)
        lut[1:] = lut_all[off : off + n]
        _write_lut(out, z0, z1, lab, lut)
    return out, table


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
    )
    joinable = np.zeros(len(pieces) + 1, dtype=bool)
    joinable[1:] = pieces["voxels"].to_numpy() >= int(min_fragment_voxels)
    return _joined_cracks(
        fragments,
        joinable,
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


def _window_box(big: np.ndarray) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """(y0, y1), (x0, x1): the box of the set voxels grown by one voxel; None when empty."""
    ys = np.flatnonzero(big.any(axis=(0, 2)))
    if ys.size == 0:
        return None
    xs = np.flatnonzero(big.any(axis=(0, 1)))
    ny, nx = big.shape[1:]
    return (max(0, ys[0] - 1), min(ny, ys[-1] + 2)), (max(0, xs[0] - 1), min(nx, xs[-1] + 2))


def _fragment_joins(
    fragments: np.ndarray,
    joinable: np.ndarray,
    pores: _Slabs,
    reference: Any,
    bounds: list[tuple[int, int]],
    connectivity: int,
) -> np.ndarray:
    """Root fragment of each fragment label, joined through the old pores next to them.

    Only the fragments marked in ``joinable`` (indexed by label) join; the others stay apart.

    Each slab is read with ``_JOIN_HALO`` rows either side, so that every join (at most four
    rows: a fragment, two shell voxels, a fragment) lies wholly inside some slab's window;
    joins are unions, so finding one twice changes nothing.
    """
    n = int(fragments.max()) if fragments.size else 0
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    src, dst = [], []
    nz = fragments.shape[0]
    for z0, z1 in bounds:
        a, b = max(0, z0 - _JOIN_HALO), min(nz, z1 + _JOIN_HALO)
        frag = np.asarray(fragments[a:b])
        big = joinable[frag]
        box = _window_box(big)
        if box is None:
            continue
        (y0, y1), (x0, x1) = box
        # Nothing outside the joinable fragments' box (and one voxel around it) can join
        # them: the rest of the window is left out of the dilation and the labelling.
        frag, big = frag[:, y0:y1, x0:x1], big[:, y0:y1, x0:x1]
        ref = np.asarray(reference[a:b, y0:y1, x0:x1], dtype=bool)
        old_pores = pores(a, b)[:, y0:y1, x0:x1] & ref
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

    ``write=False``: the table only (labels None)."""
    shape = fragments.shape
    rows = _row_range(shape[0], interfaces)
    bounds = _slab_bounds(rows, slab_rows)
    bands = _bands(rows, interfaces, origin_band_rows)
    root = _fragment_joins(fragments, joinable, pores, reference, bounds, connectivity)
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
    for z0, z1 in bounds:
        m, bb = _accumulate(np.asarray(fragments[z0:z1]), g, z0, bands, lut=lut)
        sums += m
        bbox[:, 0::2] = np.minimum(bbox[:, 0::2], bb[:, 0::2])
        bbox[:, 1::2] = np.maximum(bbox[:, 1::2], bb[:, 1::2])
    table = _table(sums, bbox, voxel_um, bands, interfaces is not None)
    table, new_id = _keep(table, keep, reference, pores, slab_rows)
    if not write:
        return None, table
    dtype = _smallest_uint(len(table))
    final = new_id[lut].astype(dtype)
    if out is None and isinstance(fragments, np.ndarray) and fragments.dtype == dtype:
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
    bounds = _slab_bounds((0, shape[0]), slab_rows)
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
