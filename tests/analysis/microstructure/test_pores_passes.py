"""The local-thickness pass's slab plumbing: the pore reader, the clamp, the histogram's bins.

Each replaced numpy code that is kept here as the reference:

* ``_PoreReader``: ``np.zeros`` + ``np.less`` + ``&= mask`` on a fresh array per slab, now one
  parallel pass into a reused buffer, with the next slab's grey rows read in the background;
* ``_clamp_rows``: two ``max`` passes and ``np.minimum``, now one pass;
* ``_histogram_rows``: a binary search per value, now a guess from even bins corrected
  against the edges (exact for any ascending edges);
* the clean-up (``_finish_rows``): each surface voxel summed its 27 neighbours, now the nine
  lines around a line are summed once per x, over the painting's memory.
"""

from __future__ import annotations

import math
import threading

import numba
import numpy as np
import pytest
import zarr
from scipy import ndimage as ndi

from insitu.analysis.microstructure.pores import (
    _clamp_rows,
    _containment_template,
    _edt_sq,
    _fill_rows,
    _finish_rows,
    _histogram_rows,
    _paint,
    _PoreReader,
    _thickness_lut,
    pore_analysis,
)


def reference_read(volume, value, m2, z0, n, a, b):
    """The reader before: a fresh array, threshold, mask, zero virtual rows."""
    res = np.zeros((b - a, *m2.shape), dtype=bool)
    ra, rb = max(a, 1), min(b, n - 1)
    if rb > ra:
        g = np.asarray(volume[z0 + ra - 1 : z0 + rb - 1])
        np.less(g, value, out=res[ra - a : rb - a])
        res[ra - a : rb - a] &= m2
    return res


def grey_volume(dtype, shape=(40, 23, 29), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.uniform(-5.0, 260.0, size=shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -300), min(info.max, 300), size=shape).astype(dtype)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32", "float64", "int16", "int32"])
@pytest.mark.parametrize("value", [120.0, 117.5, 0.0])
def test_reader_equals_the_numpy_passes(dtype: str, value: float) -> None:
    grey = grey_volume(dtype)
    m2 = np.random.default_rng(1).random(grey.shape[1:]) < 0.8
    z0, nrows = 5, 30
    n = nrows + 2
    read = _PoreReader(grey, value, m2, z0, n)
    # Every kind of range: both virtual rows, one, none, a single row, growing and shrinking
    # (the buffer is reused and regrown).
    for a, b in [(0, n), (0, 3), (3, 9), (n - 4, n), (7, 8), (0, 1), (n - 1, n), (2, n - 2)]:
        got = read(a, b)
        assert got.shape == (b - a, *m2.shape)
        np.testing.assert_array_equal(got, reference_read(grey, value, m2, z0, n, a, b))


def test_reader_uses_a_prefetch_only_for_its_own_rows() -> None:
    grey = grey_volume("uint8")
    m2 = np.ones(grey.shape[1:], dtype=bool)
    n = 32
    read = _PoreReader(grey, 100.0, m2, 4, n)
    try:
        read.prefetch(10, 20)
        np.testing.assert_array_equal(read(10, 20), reference_read(grey, 100.0, m2, 4, n, 10, 20))
        read.prefetch(10, 20)  # not the rows read next: dropped, read afresh
        np.testing.assert_array_equal(read(11, 25), reference_read(grey, 100.0, m2, 4, n, 11, 25))
        read.prefetch(0, 1)  # only a virtual row: nothing to read
        np.testing.assert_array_equal(read(0, 1), np.zeros((1, *m2.shape), dtype=bool))
    finally:
        read.close()
    np.testing.assert_array_equal(read(3, 9), reference_read(grey, 100.0, m2, 4, n, 3, 9))


class CountingVolume:
    """A volume that records which thread read which rows, and can fail at a given row."""

    def __init__(self, grey: np.ndarray, fail_at: int | None = None) -> None:
        self.grey, self.shape, self.dtype = grey, grey.shape, grey.dtype
        self.fail_at = fail_at
        self.reads: list[tuple[int, int, str]] = []

    def __getitem__(self, index):
        self.reads.append((index.start, index.stop, threading.current_thread().name))
        if self.fail_at is not None and index.start <= self.fail_at < index.stop:
            raise OSError(f"chunk of row {self.fail_at} is corrupt")
        return self.grey[index]


def porous_grey(shape=(200, 40, 44), seed=3) -> np.ndarray:
    """Random pores; 200 rows: tall enough for the pass's three-sample distance guess."""
    rng = np.random.default_rng(seed)
    field = ndi.gaussian_filter(rng.standard_normal(shape), 1.5)
    return np.where(field > 0.3 * field.std(), 40, 200).astype(np.uint8)


def analysis_key(result):
    psd = result.psd
    return (
        result.n_pore,
        psd.n_voxels,
        psd.mean_um,
        psd.max_um,
        tuple(psd.counts),
        tuple(psd.bin_edges_um),
    )


def test_background_reads_give_the_same_analysis_and_stop_with_it(monkeypatch) -> None:
    grey = porous_grey()
    kw = {"voxel_um": 0.7, "rows": (4, 196), "memory_budget_gib": 0.0015}
    volume = CountingVolume(grey)
    out, pores_out = np.zeros((192, 40, 44), np.float32), np.zeros((192, 40, 44), bool)
    result = pore_analysis(volume, 120.0, out=out, pores_out=pores_out, **kw)
    background = [r for r in volume.reads if r[2].startswith("insitu-pores-read")]
    assert background, "no slab was read ahead"
    assert not [t for t in threading.enumerate() if t.name.startswith("insitu-pores-read")]

    monkeypatch.setattr(_PoreReader, "prefetch", lambda self, a, b: None)
    out2, pores2 = np.zeros_like(out), np.zeros_like(pores_out)
    expected = pore_analysis(grey, 120.0, out=out2, pores_out=pores2, **kw)
    assert analysis_key(result) == analysis_key(expected)
    np.testing.assert_array_equal(out, out2)
    np.testing.assert_array_equal(pores_out, pores2)


def test_a_failed_background_read_is_raised_and_the_reader_stops() -> None:
    grey = porous_grey()
    volume = CountingVolume(grey, fail_at=190)  # a row only the last slab reads
    with pytest.raises(OSError, match="row 190 is corrupt"):
        pore_analysis(volume, 120.0, voxel_um=0.7, rows=(4, 196), memory_budget_gib=0.0015)
    assert any(r[2].startswith("insitu-pores-read") for r in volume.reads)
    assert not [t for t in threading.enumerate() if t.name.startswith("insitu-pores-read")]


def test_zarr_volume_gives_the_numpy_volumes_analysis(tmp_path) -> None:
    grey = porous_grey()
    store = zarr.open_array(
        str(tmp_path / "v.zarr"), mode="w", shape=grey.shape, chunks=(7, 20, 44), dtype="uint8"
    )
    store[:] = grey
    kw = {"voxel_um": 0.7, "rows": (4, 196), "memory_budget_gib": 0.0015}
    assert analysis_key(pore_analysis(store, 120.0, **kw)) == analysis_key(
        pore_analysis(grey, 120.0, **kw)
    )


@pytest.mark.parametrize("cap", [0, 1, 7, 45])
def test_clamp_equals_minimum_and_gives_the_row_maxima(cap: int) -> None:
    d = np.random.default_rng(cap).integers(0, 60, size=(9, 13, 17)).astype(np.int32)
    before = d.copy()
    row_max = _clamp_rows(d, cap)
    np.testing.assert_array_equal(d, np.minimum(before, cap))
    np.testing.assert_array_equal(row_max, before.max(axis=(1, 2)))


def reference_histogram(lt, pores, edges):
    """The kernel before, in numpy: ``searchsorted(edges, v, "right") - 1``, last bin closed."""
    v = lt[pores].astype(np.float64)
    inside = v[(v >= edges[0]) & (v <= edges[-1])]
    k = np.minimum(np.searchsorted(edges, inside, side="right") - 1, edges.size - 2)
    return np.bincount(k, minlength=edges.size - 1), v.size, v.max() if v.size else 0.0


@pytest.mark.parametrize(
    "edges",
    [
        np.arange(0.0, 9.1, 0.35),  # the default kind: even half-voxel bins
        np.geomspace(0.2, 12.0, 17),  # uneven, narrow bins first: the guess is low
        12.2 - np.geomspace(0.2, 12.0, 17)[::-1],  # wide bins first: the guess is high
        np.array([1.0, 1.5, 1.5, 4.0, 9.0]),  # a repeated edge (an empty bin)
        np.array([0.0, 10.0]),  # one bin
    ],
)
def test_histogram_bins_equal_searchsorted(edges: np.ndarray) -> None:
    rng = np.random.default_rng(edges.size)
    values = rng.choice(
        np.r_[edges, np.nextafter(edges, -np.inf), np.nextafter(edges, np.inf)], size=400
    )
    values = np.r_[values, rng.uniform(-1.0, 13.0, size=600)]
    lt = rng.permutation(np.resize(values, 8 * 9 * 11)).astype(np.float32).reshape(8, 9, 11)
    pores = rng.random(lt.shape) < 0.8
    counts, n, _, top = _histogram_rows(lt, pores, edges)
    expected, n_ref, top_ref = reference_histogram(lt, pores, edges.astype(np.float64))
    np.testing.assert_array_equal(counts, expected)
    assert (n, top) == (n_ref, top_ref)


def test_each_slab_and_sample_after_the_first_is_read_once_in_the_background() -> None:
    grey = porous_grey()
    volume = CountingVolume(grey)
    pore_analysis(volume, 120.0, voxel_um=0.7, rows=(4, 196), memory_budget_gib=0.0015)
    samples, passes = volume.reads[:3], volume.reads[3:]
    assert [thread.startswith("insitu-pores-read") for *_, thread in samples] == [
        False,
        True,
        True,
    ]
    assert len(passes) >= 3
    assert passes[0][2] == "MainThread"
    assert all(thread.startswith("insitu-pores-read") for *_, thread in passes[1:])
    starts = [a for a, *_ in passes]
    assert starts == sorted(set(starts))  # in order, none twice


@numba.njit(parallel=True, cache=True)
def clean_up_voxel_by_voxel(mask, painted, p0, inner, e0, z0, z1, lut, lt):
    """The clean-up before the line sums: each surface voxel sums its interior neighbours."""
    _, ny, nx = mask.shape
    e1 = e0 + inner.shape[0]
    for zy in numba.prange((z1 - z0) * ny):
        z = z0 + zy // ny
        y = zy % ny
        za, zb = max(e0, z - 1), min(e1, z + 2)
        ya, yb = max(0, y - 1), min(ny, y + 2)
        for x in range(nx):
            if not mask[z, y, x] or inner[z - e0, y, x]:
                continue
            xa, xb = max(0, x - 1), min(nx, x + 2)
            acc = 0.0
            n = 0
            for k in range(za, zb):
                for j in range(ya, yb):
                    for i in range(xa, xb):
                        if inner[k - e0, j, i]:
                            acc += lut[painted[k - p0, j, i]]
                            n += 1
            if n > 0:
                lt[z - z0, y, x] = acc / n


@pytest.mark.parametrize(("core", "voxel_um"), [((0, 40), 0.7), ((9, 31), 1.0), ((39, 40), 2.3)])
def test_clean_up_by_line_sums_equals_the_voxel_by_voxel_sums(core, voxel_um) -> None:
    pores = porous_grey(shape=(40, 37, 53)) < 120
    a, b = core
    nz = pores.shape[0]
    d = _edt_sq(pores)
    dmax = int(d.max())
    t, rmax = _containment_template(dmax), math.isqrt(dmax) + 1
    o0, o1 = max(0, a - 1), min(nz, b + 1)
    painted = _paint(
        d, t, rmax, max(0, o0 - rmax), min(nz, o1 + rmax), o0, np.empty((o1 - o0, 37, 53), np.int32)
    )
    lut = _thickness_lut(dmax, voxel_um)
    lt = np.empty((b - a, 37, 53), np.float32)
    _fill_rows(pores, painted, o0, a, b, lut, lt)
    inner = ndi.binary_erosion(pores, np.ones((3, 3, 3)), border_value=1)[o0:o1]
    expected = lt.copy()
    clean_up_voxel_by_voxel(pores, painted, o0, inner, o0, a, b, lut, expected)
    assert not np.array_equal(expected, lt)
    got = lt.copy()
    scratch = np.empty((2 * (b - a + 4), 37, 53), bool)
    _finish_rows(pores, painted, o0, a, b, lut, True, got, scratch)
    assert np.array_equal(got.view(np.uint32), expected.view(np.uint32))
