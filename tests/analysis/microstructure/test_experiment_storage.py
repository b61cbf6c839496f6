"""The compact volumes an experiment keeps between steps read back exactly."""

from __future__ import annotations

import numpy as np
import pytest

from insitu.analysis.microstructure.cracks import match_cracks
from insitu.analysis.microstructure.experiment import _PackedBits, _SparseLabels


def _labels(shape=(9, 13, 21), seed=0, dtype=np.uint16) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 400, size=shape).astype(dtype)
    labels[rng.random(shape) < 0.9] = 0  # sparse, as cracks are
    return labels


def test_sparse_labels_give_back_every_row_slice() -> None:
    labels = _labels()
    sparse = _SparseLabels(labels)
    assert sparse.shape == labels.shape and sparse.dtype == labels.dtype
    for z0, z1 in [(0, 9), (0, 1), (3, 7), (8, 9), (5, 5), (7, 100)]:
        np.testing.assert_array_equal(sparse[z0:z1], labels[z0:z1])
    np.testing.assert_array_equal(sparse[:], labels)
    assert sparse.nbytes < labels.nbytes  # 10 % non-zero: cheaper than dense uint16
    with pytest.raises(TypeError, match="row slices"):
        sparse[1]


def test_sparse_labels_of_an_empty_volume() -> None:
    sparse = _SparseLabels(np.zeros((4, 5, 6), np.uint8))
    assert not sparse[0:4].any() and sparse.nbytes == 0


def test_packed_bits_give_back_the_volume() -> None:
    rng = np.random.default_rng(1)
    vol = rng.random((5, 7, 19)) < 0.3  # 19 columns: not a multiple of 8
    packed = _PackedBits(vol)
    np.testing.assert_array_equal(packed[1:4], vol[1:4])
    np.testing.assert_array_equal(packed[2:3, 1:5, 3:17], vol[2:3, 1:5, 3:17])
    np.testing.assert_array_equal(np.asarray(packed), vol)


def test_matching_against_sparse_labels_equals_dense() -> None:
    before = _labels(seed=2, dtype=np.uint16)
    after = _labels(seed=3, dtype=np.uint8)  # label dtypes of two steps may differ
    dense = match_cracks(before, after, voxel_um=0.7, slab_rows=4)
    sparse = match_cracks(_SparseLabels(before), after, voxel_um=0.7, slab_rows=4)
    assert dense.equals(sparse) and len(dense) > 0
    with pytest.raises(ValueError, match="integer crack labels"):
        match_cracks(before.astype(float), after, voxel_um=0.7)
