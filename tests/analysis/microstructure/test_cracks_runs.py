"""The run-based crack pipeline against the cc3d pipeline it replaced.

The slabs used to be read as boolean volumes, labelled with ``cc3d`` (uint32, 4 bytes a
voxel), measured from the label volume, joined across slab boundaries through the label
planes, and labelled again with ``cc3d`` to write the kept components. They are now scanned
once into runs along x (pore phase & mask & not-reference, the reference read as packed bits
where it is packed), labelled by union-find over the runs, measured and written from the runs.

The replaced code is kept here (``_reference_*``, verbatim but for names) and the new path
must give the same labels voxel for voxel and the same tables bit for bit, on random volumes
with a 2-D, 3-D or no mask, a dense, packed or no reference, every connectivity, a slab with
no set voxel and a reference that is the volume itself.
"""

from __future__ import annotations

from typing import Any

import cc3d
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi
from scipy import sparse
from scipy.sparse import csgraph

from insitu.analysis.microstructure import cracks
from insitu.analysis.microstructure.cracks import find_cracks, label_pores
from insitu.analysis.microstructure.experiment import _PackedBits

_OFFSETS = {
    6: [(0, 0)],
    18: [(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)],
    26: [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)],
}


# --- the replaced code (reference) ----------------------------------------------------------
def _reference_slab(slabs: cracks._Slabs, z0: int, z1: int) -> np.ndarray:
    """The replaced ``_Slabs.__call__``: the slab as a boolean volume."""
    a = np.asarray(slabs.binary[z0:z1], dtype=bool)
    m = slabs.mask_rows(z0, z1)
    if m is not None:
        a = np.logical_and(a, m)
    elif slabs.reference is not None:
        a = a.copy()
    if slabs.reference is not None:
        np.greater(a, np.asarray(slabs.reference[z0:z1], dtype=bool), out=a)
    return a


def _reference_label_slab(a: np.ndarray, connectivity: int) -> tuple[np.ndarray, int]:
    lab, n = cc3d.connected_components(a, connectivity=connectivity, return_N=True)
    return lab, int(n)


def _reference_boundary_edges(
    last: np.ndarray, first: np.ndarray, connectivity: int
) -> tuple[np.ndarray, np.ndarray]:
    ny, nx = last.shape
    src, dst = [], []
    for dy, dx in _OFFSETS[connectivity]:
        a = last[max(0, -dy) : ny - max(0, dy), max(0, -dx) : nx - max(0, dx)]
        b = first[max(0, dy) : ny - max(0, -dy), max(0, dx) : nx - max(0, -dx)]
        both = (a > 0) & (b > 0)
        src.append(a[both])
        dst.append(b[both])
    return np.concatenate(src), np.concatenate(dst)


def _reference_components(slabs, bounds, connectivity, bands, keep_runs=False):
    """The replaced pass 1 (cc3d per slab, moments of the label slab, label planes)."""
    moments, boxes, offsets = [], [], []
    src, dst = [], []
    total = 0
    last = None
    for z0, z1 in bounds:
        lab, n = _reference_label_slab(_reference_slab(slabs, z0, z1), connectivity)
        offsets.append(total)
        m, bb = cracks._accumulate(lab, n, z0, bands)
        moments.append(m)
        boxes.append(bb)
        first = np.where(lab[0] > 0, lab[0].astype(np.int64) + total, 0)
        if last is not None:
            s, d = _reference_boundary_edges(last, first, connectivity)
            src.append(s)
            dst.append(d)
        last = np.where(lab[-1] > 0, lab[-1].astype(np.int64) + total, 0)
        total += n
    if total == 0:
        empty = np.empty(0, np.int64), np.zeros((0, 12)), np.zeros((0, 6), np.int64)
        return *empty, offsets, None
    s = np.concatenate(src) - 1 if src else np.empty(0, np.int64)
    d = np.concatenate(dst) - 1 if dst else np.empty(0, np.int64)
    graph = sparse.coo_matrix((np.ones(s.size), (s, d)), shape=(total, total))
    _, comp = csgraph.connected_components(graph, directed=False)
    first_label = np.full(comp.max() + 1, total, dtype=np.int64)
    np.minimum.at(first_label, comp, np.arange(total))
    rank = np.empty_like(first_label)
    rank[np.argsort(first_label)] = np.arange(first_label.size)
    root = rank[comp]
    m_all, bb_all = np.concatenate(moments), np.concatenate(boxes)
    ncomp = first_label.size
    sums = np.zeros((ncomp, 12))
    np.add.at(sums, root, m_all)
    bbox = np.empty((ncomp, 6), dtype=np.int64)
    bbox[:, 0::2] = np.iinfo(np.int64).max
    bbox[:, 1::2] = -1
    for c in range(6):
        (np.minimum if c % 2 == 0 else np.maximum).at(bbox[:, c], root, bb_all[:, c])
    return root, sums, bbox, offsets, None  # no runs kept: the dense paths after it


def _reference_fragment_joins(fragments, joinable, boxes, pores, reference, bounds, conn):
    """The replaced ``_fragment_joins`` (whole-window reads and box; ``boxes`` unused)."""
    n = int(fragments.max()) if fragments.size else 0
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    src, dst = [], []
    nz = fragments.shape[0]
    for z0, z1 in bounds:
        a, b = max(0, z0 - 3), min(nz, z1 + 3)
        frag = np.asarray(fragments[a:b])
        big = joinable[frag]
        ys = np.flatnonzero(big.any(axis=(0, 2)))
        if ys.size == 0:
            continue
        xs = np.flatnonzero(big.any(axis=(0, 1)))
        ny, nx = big.shape[1:]
        y0, y1 = max(0, ys[0] - 1), min(ny, ys[-1] + 2)
        x0, x1 = max(0, xs[0] - 1), min(nx, xs[-1] + 2)
        frag, big = frag[:, y0:y1, x0:x1], big[:, y0:y1, x0:x1]
        ref = np.asarray(reference[a:b, y0:y1, x0:x1], dtype=bool)
        whole = pores.window(a, b, slice(None), slice(None))  # the replaced pores(a, b)
        old_pores = whole[:, y0:y1, x0:x1] & ref
        grown = ndi.maximum_filter(big.view(np.uint8), size=3, mode="constant", cval=0)
        shell = grown.view(bool) & old_pores & (frag == 0)
        joined = cc3d.connected_components(big | shell, connectivity=conn)
        pairs = np.unique(np.stack([joined[big], frag[big]], axis=1), axis=0)
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
    root = np.full(comp.max() + 1, n + 1, dtype=np.int64)
    np.minimum.at(root, comp, np.arange(1, n + 1))
    return root[comp]


def _reference_runs(self: cracks._Slabs, z0: int, z1: int, connectivity: int) -> cracks._Runs:
    """``_Slabs.runs`` through the replaced path: the boolean slab labelled by cc3d."""
    lab, n = _reference_label_slab(_reference_slab(self, z0, z1), connectivity)
    nz, ny, nx = lab.shape
    starts, ends, labels, counts = [], [], [], []
    for row in lab.reshape(nz * ny, nx):
        # Neighbours in a row are connected: a run is a stretch of set voxels.
        step = np.diff(np.concatenate([[0], (row > 0).astype(np.int8), [0]]))
        s, e = np.flatnonzero(step == 1), np.flatnonzero(step == -1)
        counts.append(s.size)
        starts += s.tolist()
        ends += e.tolist()
        labels += row[s].tolist()
    row_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return cracks._Runs(
        (nz, ny, nx),
        row_start,
        np.asarray(starts, np.int32),
        np.asarray(ends, np.int32),
        np.asarray(labels, np.int64),
        n,
    )


def _use_reference(monkeypatch) -> None:
    monkeypatch.setattr(cracks, "_components", _reference_components)
    monkeypatch.setattr(cracks, "_fragment_joins", _reference_fragment_joins)
    monkeypatch.setattr(cracks._Slabs, "runs", _reference_runs)


# --- volumes ---------------------------------------------------------------------------------
def _volume(seed: int, shape: tuple[int, int, int], level: float = 0.6) -> np.ndarray:
    rng = np.random.default_rng(seed)
    field = ndi.gaussian_filter(rng.standard_normal(shape), 1.2)
    return field > level * field.std()


def _two_steps(seed: int, shape=(30, 37, 45)) -> tuple[np.ndarray, np.ndarray]:
    """A pore phase and a later one: the pores, some noise, and two sheets grown from the top."""
    before = _volume(seed, shape, 0.9)
    rng = np.random.default_rng(seed + 100)
    after = before | (rng.random(shape) < 0.01)
    after[2:20, 5:30, 20:22] = True
    after[8:24, 25:27, 3:40] = True
    after[-6:] = before[-6:]  # the last rows: nothing new (slabs with no set voxel)
    return before, after


def _disc_mask(shape: tuple[int, int, int]) -> np.ndarray:
    ny, nx = shape[1:]
    y, x = np.ogrid[:ny, :nx]
    return (y - ny / 2) ** 2 + (x - nx / 2 + 3) ** 2 <= (0.45 * ny) ** 2


def _densify(runs: cracks._Runs) -> np.ndarray:
    out = np.zeros(runs.shape, np.int64)
    runs.write(np.arange(runs.n + 1, dtype=np.int64), out)
    return out


# --- the kernels -----------------------------------------------------------------------------
@pytest.mark.parametrize("connectivity", [6, 18, 26])
@pytest.mark.parametrize("mask_kind", ["none", "2d", "3d"])
@pytest.mark.parametrize("ref_kind", ["none", "dense", "packed", "itself"])
def test_runs_label_like_cc3d(connectivity, mask_kind, ref_kind) -> None:
    shape = (9, 23, 37)  # 37 columns: packed rows end in a partial byte
    before, after = _two_steps(1, shape)
    mask = {"none": None, "2d": _disc_mask(shape), "3d": _volume(2, shape, -0.8)}[mask_kind]
    reference = {
        "none": None,
        "dense": before,
        "packed": _PackedBits(before),
        "itself": _PackedBits(after),
    }[ref_kind]
    slabs = cracks._Slabs(after, mask, reference)
    counts = []
    for z0, z1 in [(0, 9), (2, 5), (8, 9)]:
        runs = slabs.runs(z0, z1, connectivity)
        lab, n = _reference_label_slab(_reference_slab(slabs, z0, z1), connectivity)
        assert runs.n == n
        np.testing.assert_array_equal(_densify(runs), lab)
        counts.append(n)
    if ref_kind == "itself":
        assert counts == [0, 0, 0]  # no set voxel: no run
    else:
        assert counts[0] > 3


def test_runs_of_an_empty_slab() -> None:
    runs = cracks._Slabs(np.zeros((3, 8, 16), bool), None, None).runs(0, 3, 26)
    assert runs.n == 0 and runs.start.size == 0
    m, bb = runs.accumulate(0, 0, ((0, 0), (0, 0)))
    assert m.shape == (0, 12) and bb.shape == (0, 6)


@pytest.mark.parametrize("with_lut", [False, True])
def test_moments_from_runs_equal_those_of_the_label_slab(with_lut) -> None:
    shape = (12, 40, 53)
    slabs = cracks._Slabs(_volume(3, shape, 0.3), _disc_mask(shape), None)
    runs = slabs.runs(0, 12, 26)
    lab = _densify(runs)
    bands = ((5, 7), (14, 16))
    if with_lut:
        lut = np.random.default_rng(3).integers(0, 9, size=runs.n + 1)
        lut[0] = 0
        m, bb = runs.accumulate(8, 5, bands, lut=lut)
        m_ref, bb_ref = cracks._accumulate(lab, 8, 5, bands, lut=lut)
    else:
        m, bb = runs.accumulate(runs.n, 5, bands)
        m_ref, bb_ref = cracks._accumulate(lab, runs.n, 5, bands)
    np.testing.assert_array_equal(m, m_ref)  # bit for bit
    np.testing.assert_array_equal(bb, bb_ref)


@pytest.mark.parametrize("connectivity", [6, 18, 26])
def test_edges_across_a_boundary_join_what_cc3d_joins(connectivity) -> None:
    vol = _volume(4, (8, 30, 30), 0.4)
    slabs = cracks._Slabs(vol, None, None)
    top, bottom = slabs.runs(0, 4, connectivity), slabs.runs(4, 8, connectivity)
    s, d = top.edges_to(bottom, connectivity)
    last = np.where(_densify(top)[-1] > 0, _densify(top)[-1], 0)
    first = np.where(_densify(bottom)[0] > 0, _densify(bottom)[0] + top.n, 0)
    s_ref, d_ref = _reference_boundary_edges(last, first, connectivity)
    assert s.size > 0
    assert set(zip(s.tolist(), (d + top.n).tolist(), strict=True)) == set(
        zip(s_ref.tolist(), d_ref.tolist(), strict=True)
    )


# --- the pipeline ----------------------------------------------------------------------------
def _run_all(before: np.ndarray, after: np.ndarray, mask: Any, packed: bool) -> list[Any]:
    reference = _PackedBits(before) if packed else before
    kwargs = {"voxel_um": 0.7, "interfaces": (1.3, 27.6), "mask": mask, "slab_rows": 5}
    out = []
    for ref, extra in [
        (reference, {}),  # grown since the reference, joined fragments
        (None, {"planarity_min": 0.2}),  # per scan
        (_PackedBits(after) if packed else after, {}),  # the reference is the volume itself
        (reference, {"min_fragment_voxels": 0}),  # no joining
    ]:
        labels, table = find_cracks(after, min_volume_um3=6.0, reference=ref, **kwargs, **extra)
        _, table_only = find_cracks(
            after, min_volume_um3=6.0, reference=ref, labels=False, **kwargs, **extra
        )
        out += [labels, table, table_only]
    labels, table = label_pores(after, **kwargs)
    out += [labels, table]
    reused = np.full(after.shape, 9, dtype=np.uint8)  # a reused output is cleared
    out.append(find_cracks(after, min_volume_um3=6.0, reference=None, out=reused, **kwargs)[0])
    return out


@pytest.mark.parametrize("seed", [5, 6])
@pytest.mark.parametrize("mask_kind", ["none", "2d"])
@pytest.mark.parametrize("packed", [False, True])
def test_pipeline_equals_the_cc3d_pipeline(monkeypatch, seed, mask_kind, packed) -> None:
    before, after = _two_steps(seed)
    mask = None if mask_kind == "none" else _disc_mask(after.shape)
    new = _run_all(before, after, mask, packed)
    assert len(new[1]) > 0 and len(new[4]) > 0  # cracks under both conventions
    assert len(new[7]) == 0 and not new[6].any()  # against itself: none
    _use_reference(monkeypatch)
    old = _run_all(before, after, mask, packed)
    for a, b in zip(new, old, strict=True):
        if isinstance(a, pd.DataFrame):
            pd.testing.assert_frame_equal(a, b, check_exact=True)
        elif a is None:
            assert b is None
        else:
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)


def test_pipeline_with_runs_not_kept_equals_the_kept_runs(monkeypatch) -> None:
    """Over the budget of kept runs, pass 2 scans again and the joins read the labels."""
    before, after = _two_steps(7)
    new = _run_all(before, after, _disc_mask(after.shape), True)
    monkeypatch.setattr(cracks, "_KEPT_RUNS_MAX", 10)
    again = _run_all(before, after, _disc_mask(after.shape), True)
    for a, b in zip(new, again, strict=True):
        if isinstance(a, pd.DataFrame):
            pd.testing.assert_frame_equal(a, b, check_exact=True)
        elif a is not None:
            np.testing.assert_array_equal(a, b)


def test_packed_bits_read_like_the_volume() -> None:
    vol = _volume(8, (4, 6, 21))
    packed = _PackedBits(vol)
    np.testing.assert_array_equal(packed[1:3], vol[1:3])
    np.testing.assert_array_equal(packed[0:4, 2:5, 3:17], vol[0:4, 2:5, 3:17])
    assert packed[1:3].dtype == bool
    np.testing.assert_array_equal(packed.packed_rows(1, 3), np.packbits(vol[1:3], axis=-1))


# --- growth matching from the non-zero voxels -------------------------------------------------
class _Sliced:
    """Slices like the array it holds, and nothing more: ``match_cracks`` reads it by slab."""

    def __init__(self, array: np.ndarray) -> None:
        self.array, self.shape, self.dtype = array, array.shape, array.dtype

    def __getitem__(self, index: Any) -> np.ndarray:
        return self.array[index]


def test_match_from_nonzero_voxels_equals_the_slab_by_slab_match() -> None:
    from insitu.analysis.microstructure.cracks import match_cracks
    from insitu.analysis.microstructure.experiment import _SparseLabels

    rng = np.random.default_rng(11)
    shape = (20, 30, 40)
    before = np.zeros(shape, np.uint8)
    after = np.zeros(shape, np.uint8)
    before[2:9, 5:20, 10:12] = 1  # grows into after's 1
    before[12:15, 3:6, 30:35] = 2  # closed
    before[4:6, 20:25, 2:4] = 3  # merged with 1 after
    after[2:12, 5:24, 10:12] = 1
    after[4:6, 20:25, 2:4] = 1
    after[15:19, 25:29, 5:30] = 2  # new
    after[rng.random(shape) < 0.002] = 3  # specks: a crack of scattered voxels
    slabwise = match_cracks(_Sliced(before), _Sliced(after), voxel_um=0.7, slab_rows=3)
    assert set(slabwise["status"]) >= {"merged", "new", "closed"}
    for a, b in [
        (_SparseLabels(before), _SparseLabels(after)),
        (_SparseLabels(before), after),
        (before, after),
        (_SparseLabels(np.zeros(shape, np.uint8)), _SparseLabels(after)),
    ]:
        expected = match_cracks(_Sliced(np.asarray(a[:])), _Sliced(np.asarray(b[:])), voxel_um=0.7)
        pd.testing.assert_frame_equal(match_cracks(a, b, voxel_um=0.7), expected, check_exact=True)
    fast = match_cracks(_SparseLabels(before), _SparseLabels(after), voxel_um=0.7)
    pd.testing.assert_frame_equal(fast, slabwise, check_exact=True)


def test_sparse_labels_store_the_nonzero_voxels() -> None:
    from insitu.analysis.microstructure.experiment import _SparseLabels

    labels = np.zeros((5, 6, 7), np.uint16)
    labels[1, 2, 3] = 300
    labels[4, 5, 6] = 2
    labels[1, 0, 0] = 7
    sparse_labels = _SparseLabels(labels)
    index, values = sparse_labels.nonzero_voxels()
    np.testing.assert_array_equal(index, np.flatnonzero(labels))
    np.testing.assert_array_equal(values, labels.ravel()[np.flatnonzero(labels)])
    np.testing.assert_array_equal(sparse_labels[0:5], labels)
    assert _SparseLabels(np.zeros((3, 4, 4), np.uint8)).nonzero_voxels()[0].size == 0
