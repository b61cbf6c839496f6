"""The compiled moment accumulation of the crack analysis against the per-row numpy reference.

``_reference_accumulate`` is the per-row ``np.bincount`` code that ``cracks._accumulate``
replaced (kept here verbatim, less the closure): the compiled pass must give the same moment
sums bit for bit (the crack tables are computed from them) and the same bounding boxes, on
random label volumes with empty rows, labels absent from the slab, and a lookup table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from insitu.analysis.microstructure import cracks
from insitu.analysis.microstructure.cracks import find_cracks, label_pores, pore_component_table


def _reference_accumulate(
    lab: np.ndarray, n: int, z0: int, bands: tuple[tuple[int, int], tuple[int, int]]
) -> tuple[np.ndarray, np.ndarray]:
    """The replaced per-row numpy accumulation (the reference)."""
    m = np.zeros((n + 1, 12))
    bb = np.empty((n + 1, 6), dtype=np.int64)
    bb[:, 0::2] = np.iinfo(np.int64).max
    bb[:, 1::2] = -1
    nx = lab.shape[2]
    for i in range(lab.shape[0]):
        plane = lab[i].ravel()
        idx = np.flatnonzero(plane)
        if idx.size == 0:
            continue
        k = plane[idx].astype(np.intp)
        z = float(z0 + i)
        y = (idx // nx).astype(np.float64)
        x = (idx % nx).astype(np.float64)
        cnt = np.bincount(k, minlength=n + 1).astype(np.float64)
        sy = np.bincount(k, weights=y, minlength=n + 1)
        sx = np.bincount(k, weights=x, minlength=n + 1)
        m[:, 0] += cnt
        m[:, 1] += z * cnt
        m[:, 2] += sy
        m[:, 3] += sx
        m[:, 4] += z * z * cnt
        m[:, 5] += np.bincount(k, weights=y * y, minlength=n + 1)
        m[:, 6] += np.bincount(k, weights=x * x, minlength=n + 1)
        m[:, 7] += z * sy
        m[:, 8] += z * sx
        m[:, 9] += np.bincount(k, weights=y * x, minlength=n + 1)
        if bands[0][0] <= z0 + i < bands[0][1]:
            m[:, 10] += cnt
        if bands[1][0] <= z0 + i < bands[1][1]:
            m[:, 11] += cnt
        present = cnt > 0
        bb[present, 0] = np.minimum(bb[present, 0], z0 + i)
        bb[present, 1] = np.maximum(bb[present, 1], z0 + i + 1)
        yi, xi = idx // nx, idx % nx
        for col, vals, red in ((2, yi, np.minimum), (4, xi, np.minimum)):
            b = np.full(n + 1, np.iinfo(np.int64).max)
            red.at(b, k, vals)
            bb[:, col] = red(bb[:, col], b)
        for col, vals in ((3, yi), (5, xi)):
            b = np.full(n + 1, -1, dtype=np.int64)
            np.maximum.at(b, k, vals + 1)
            bb[:, col] = np.maximum(bb[:, col], b)
    return m[1:], bb[1:]


def _random_labels(seed: int, shape: tuple[int, int, int], n: int, dtype: type) -> np.ndarray:
    """Labels 0..n with blobs, empty rows and some labels never used."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal(shape), 1.5)
    lab = rng.integers(1, n + 1, size=shape).astype(dtype)
    lab[field < 0.3 * field.std()] = 0
    lab[rng.random(shape[0]) < 0.3] = 0  # whole empty rows
    lab[np.isin(lab, rng.choice(np.arange(1, n + 1), size=n // 3, replace=False))] = 0
    return lab


@pytest.mark.parametrize(
    ("seed", "shape", "n", "dtype", "z0", "bands"),
    [
        (0, (12, 17, 23), 40, np.uint16, 0, ((0, 0), (0, 0))),
        (1, (9, 31, 8), 300, np.uint32, 57, ((57, 59), (64, 66))),
        (2, (20, 16, 16), 5, np.uint8, 3, ((3, 5), (21, 23))),
        (3, (7, 40, 50), 2000, np.uint64, 1000, ((1000, 1002), (1005, 1007))),
        (4, (6, 10, 10), 30, np.int32, 0, ((0, 2), (4, 6))),
    ],
)
def test_accumulate_equals_the_per_row_reference(seed, shape, n, dtype, z0, bands) -> None:
    lab = _random_labels(seed, shape, n, dtype)
    assert (lab.reshape(shape[0], -1) == 0).all(axis=1).any() or shape[0] < 8
    m, bb = cracks._accumulate(lab, n, z0, bands)
    m_ref, bb_ref = _reference_accumulate(lab, n, z0, bands)
    assert (m_ref[:, 0] == 0).any()  # some labels are absent from the slab
    np.testing.assert_array_equal(m, m_ref)  # bit-identical float64 sums
    np.testing.assert_array_equal(bb, bb_ref)


def test_accumulate_through_a_lookup_table_equals_the_relabelled_slab() -> None:
    lab = _random_labels(5, (10, 25, 30), 60, np.uint32)
    rng = np.random.default_rng(5)
    lut = np.zeros(61, dtype=np.int64)
    lut[1:] = rng.integers(0, 8, size=60)  # groups 1..7, some labels dropped (0)
    bands = ((4, 6), (12, 14))
    m, bb = cracks._accumulate(lab, 7, 4, bands, lut=lut)
    m_ref, bb_ref = _reference_accumulate(lut[lab], 7, 4, bands)
    np.testing.assert_array_equal(m, m_ref)
    np.testing.assert_array_equal(bb, bb_ref)


def test_accumulate_of_an_empty_slab_is_empty() -> None:
    m, bb = cracks._accumulate(np.zeros((4, 5, 6), np.uint32), 3, 0, ((0, 0), (0, 0)))
    m_ref, bb_ref = _reference_accumulate(np.zeros((4, 5, 6), np.uint32), 3, 0, ((0, 0), (0, 0)))
    np.testing.assert_array_equal(m, m_ref)
    np.testing.assert_array_equal(bb, bb_ref)


def test_component_table_of_a_random_label_volume_equals_the_reference() -> None:
    lab = _random_labels(6, (15, 30, 30), 80, np.uint16)
    table = pore_component_table(lab, voxel_um=0.7)
    m_ref, bb_ref = _reference_accumulate(lab, 80, 0, ((0, 0), (0, 0)))
    present = m_ref[:, 0] > 0
    expected = cracks._table(m_ref[present], bb_ref[present], 0.7, ((0, 0), (0, 0)), False)
    expected["label"] = np.flatnonzero(present) + 1
    pd.testing.assert_frame_equal(table, expected, check_exact=True)


def test_negative_labels_are_refused() -> None:
    lab = np.zeros((2, 3, 3), dtype=np.int16)
    lab[1, 1, 1] = -2
    with pytest.raises(ValueError, match="labels must be integers"):
        pore_component_table(lab)


def test_crack_tables_equal_those_from_the_reference_accumulation(monkeypatch) -> None:
    """find_cracks (with and without a reference) and label_pores, old vs new accumulation."""
    rng = np.random.default_rng(7)
    shape = (40, 48, 48)
    field = ndimage.gaussian_filter(rng.standard_normal(shape), 1.5)
    before = field > 0.9 * field.std()
    after = before.copy()
    after[4:30, 10:40, 20:22] = True  # a planar crack from the top
    after[10:25, 30:32, 5:40] = True
    kwargs = {"voxel_um": 0.7, "interfaces": (3.2, 37.6), "slab_rows": 7}

    def run() -> list[pd.DataFrame]:
        lab_a, crack_a = find_cracks(after, min_volume_um3=50.0, reference=before, **kwargs)
        lab_b, crack_b = find_cracks(after, min_volume_um3=50.0, **kwargs)
        lab_c, pores = label_pores(after, **kwargs)
        labels = pd.DataFrame({"a": lab_a.ravel(), "b": lab_b.ravel(), "c": lab_c.ravel()})
        return [crack_a, crack_b, pores, labels]

    new = run()
    assert len(new[0]) > 0 and len(new[1]) > 0

    def reference(lab, n, z0, bands, lut=None):
        return _reference_accumulate(lab if lut is None else lut[lab], n, z0, bands)

    monkeypatch.setattr(cracks, "_accumulate", reference)
    old = run()
    for a, b in zip(new, old, strict=True):
        pd.testing.assert_frame_equal(a, b, check_exact=True)


def _two_step_volumes() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(8)
    shape = (40, 40, 40)
    field = ndimage.gaussian_filter(rng.standard_normal(shape), 1.5)
    before = field > 0.9 * field.std()
    after = before.copy()
    after[3:14, 8:30, 20:22] = True  # a crack in the top rows only
    return before, after


@pytest.mark.parametrize("with_reference", [False, True])
def test_table_only_equals_the_table_with_labels(with_reference) -> None:
    before, after = _two_step_volumes()
    reference = before if with_reference else None
    kwargs = {"voxel_um": 0.7, "min_volume_um3": 40.0, "interfaces": (1.0, 39.0), "slab_rows": 6}
    labels, table = find_cracks(after, reference=reference, **kwargs)
    none, table_only = find_cracks(after, reference=reference, labels=False, **kwargs)
    assert none is None and labels.max() == len(table) > 0
    pd.testing.assert_frame_equal(table_only, table, check_exact=True)


def test_table_only_refuses_an_output_array() -> None:
    _, after = _two_step_volumes()
    with pytest.raises(ValueError, match="labels=False"):
        find_cracks(
            after, voxel_um=1.0, min_volume_um3=1.0, labels=False, out=np.zeros(after.shape)
        )


def test_slabs_without_a_kept_crack_are_cleared_in_a_reused_output() -> None:
    """Slabs whose components are all dropped are written as zeros without relabelling."""
    rng = np.random.default_rng(9)
    after = rng.random((40, 30, 30)) < 0.02  # isolated voxels: dropped
    after[3:14, 8:30, 20:22] = True  # the one crack, in the top slabs
    kwargs = {"voxel_um": 1.0, "min_volume_um3": 300.0, "slab_rows": 5}
    fresh, table = find_cracks(after, **kwargs)
    assert len(table) > 0 and not fresh[30:].any()  # the lower slabs hold no kept crack
    reused = np.full(after.shape, 7, dtype=fresh.dtype)
    labels, _ = find_cracks(after, out=reused, **kwargs)
    np.testing.assert_array_equal(labels, fresh)


@pytest.mark.parametrize("specks", [10, 400])
def test_crack_labels_with_few_or_many_fragments(specks) -> None:
    """Fragment labels relabelled in place (uint8 both) or copied (uint16 fragments)."""
    before = np.zeros((30, 40, 40), dtype=bool)
    after = before.copy()
    flat = np.random.default_rng(10).choice(after.size, size=specks, replace=False)
    after.ravel()[flat] = True  # new specks, far below a crack's volume
    after[:, :, :3] = False  # none touching the crack
    crack = np.zeros_like(after)
    crack[2:20, 5:35, 1:2] = True
    after |= crack
    labels, table = find_cracks(
        after, voxel_um=1.0, min_volume_um3=100.0, reference=before, min_fragment_voxels=1
    )
    assert labels.dtype == np.uint8 and len(table) == 1
    np.testing.assert_array_equal(labels, crack.astype(np.uint8))
