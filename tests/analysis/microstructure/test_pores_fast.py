"""The fast local-thickness path: bounded distances, the histogram, the random subset of rows.

* The windowed distance transform of the slabs equals the exact one clamped to ``dmax``.
* The row-wise histogram equals ``np.histogram`` (edges included).
* ``pore_analysis(psd_fraction=...)``: on a volume of balls of known radii, the sampled rows'
  local thickness is exactly the whole volume's on those rows, the subset's median is within
  a stated tolerance of the full one, and a seed always draws the same rows.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from scipy import ndimage as ndi

from insitu.analysis.errors import AnalysisInputError
from insitu.analysis.microstructure.experiment import TomoSettings
from insitu.analysis.microstructure.pores import (
    PSD_BLOCK_ROWS,
    _edt_sq_bounded,
    _histogram_rows,
    pore_analysis,
    psd_sample_blocks,
)


def random_pores(shape: tuple[int, int, int], sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ndi.gaussian_filter(rng.standard_normal(shape), sigma) > 0.3


@pytest.mark.parametrize("dmax", [1, 2, 9, 41, 63])
def test_bounded_distances_equal_the_exact_ones_clamped(dmax: int) -> None:
    pores = random_pores((30, 40, 50), 2.5, seed=dmax)
    exact = np.rint(ndi.distance_transform_edt(pores) ** 2).astype(np.int64)
    d = _edt_sq_bounded(pores, dmax, np.empty(pores.shape, dtype=np.int32))
    assert np.array_equal(np.minimum(d, dmax), np.minimum(exact, dmax))
    assert np.array_equal(d > dmax, exact > dmax)


def test_row_histogram_equals_numpy() -> None:
    rng = np.random.default_rng(0)
    edges = np.arange(0.0, 5.5, 0.5)
    values = rng.choice(np.r_[edges, rng.uniform(-1, 6, 50)], size=(6, 7, 8)).astype(np.float32)
    pores = rng.random(values.shape) < 0.7
    counts, n, total, top = _histogram_rows(values, pores, edges)
    sel = values[pores].astype(np.float64)
    np.testing.assert_array_equal(counts, np.histogram(sel, bins=edges)[0])
    assert n == sel.size and top == sel.max()
    assert total == pytest.approx(sel.sum(), rel=1e-12)


def balls_volume(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Grey volume of 512 balls, radius 2..7 voxels drawn at random, one per 16³ cell."""
    rng = np.random.default_rng(seed)
    cell, cells = 16, (32, 4, 4)
    shape = tuple(c * cell for c in cells)
    radii = rng.integers(2, 8, size=cells)
    o = np.arange(cell) - cell // 2
    r2 = o[:, None, None] ** 2 + o[None, :, None] ** 2 + o[None, None, :] ** 2
    grey = np.full(shape, 220, dtype=np.uint8)
    for (i, j, k), r in np.ndenumerate(radii):
        block = grey[
            i * cell : (i + 1) * cell, j * cell : (j + 1) * cell, k * cell : (k + 1) * cell
        ]
        block[r2 <= r * r] = 30
    return grey, radii


def test_subset_of_rows_gives_the_full_maps_rows_and_a_close_median() -> None:
    grey, radii = balls_volume()
    nz = grey.shape[0]
    full_map = np.zeros(grey.shape, dtype=np.float32)
    full = pore_analysis(grey, 128.0, voxel_um=0.7, out=full_map)
    # Analytic: every voxel of a ball of radius R has 2·√(R² + 1) voxels (ImageJ's convention).
    diameters = {round(float(2 * np.sqrt(r * r + 1) * 0.7), 4) for r in np.unique(radii)}
    assert {round(float(v), 4) for v in np.unique(full_map[full_map > 0])} == diameters

    sub_map = np.zeros(grey.shape, dtype=np.float32)
    sub = pore_analysis(grey, 128.0, voxel_um=0.7, out=sub_map, psd_fraction=0.5, psd_seed=3)
    sample = sub.psd_sample
    assert sample is not None and sample["fraction"] == 0.5 and sample["seed"] == 3
    assert sample["block_rows"] == PSD_BLOCK_ROWS
    assert sample["n_rows"] == nz // 2  # 4 of the 8 blocks of 64 rows
    sampled = np.zeros(nz, dtype=bool)
    for a, b in sample["rows"]:
        sampled[a:b] = True
    # Exact on the sampled rows (the slabs keep their halos); nothing written elsewhere.
    assert np.array_equal(sub_map[sampled], full_map[sampled])
    assert not sub_map[~sampled].any()
    assert sub.psd.n_voxels == int((full_map[sampled] > 0).sum())
    assert sub.porosity == full.porosity and sub.n_pore == full.n_pore
    # The stated tolerance: half of the full distribution's interquartile range (here
    # 2.76 µm, from 7.14 to 9.90 µm: radius 5 to radius 7). Seeds 0-5 all pass; the largest
    # gap, 1.10 µm (seed 0), is one voxel-and-a-half of diameter.
    q1, q3 = np.percentile(full_map[full_map > 0], [25, 75])
    assert abs(sub.psd.median_um - full.psd.median_um) <= 0.5 * (q3 - q1)
    # The same seed draws the same rows and gives the same answer; another seed, others.
    again = pore_analysis(grey, 128.0, voxel_um=0.7, psd_fraction=0.5, psd_seed=3)
    assert again.to_dict() == sub.to_dict()
    other = pore_analysis(grey, 128.0, voxel_um=0.7, psd_fraction=0.5, psd_seed=4)
    assert other.psd_sample["rows"] != sample["rows"]
    record = json.loads(json.dumps(sub.to_dict()))
    assert record["psd_sample"]["seed"] == 3 and record["psd_sample"]["fraction"] == 0.5


def test_sample_blocks_are_seeded_and_merged() -> None:
    blocks = psd_sample_blocks(1000, 0.3, seed=7)
    assert blocks == psd_sample_blocks(1000, 0.3, seed=7)
    rows = sum(b - a for a, b in blocks)
    # round(0.3 · 16) = 5 blocks of 64 rows, the last block (rows 960-999) 40 rows long.
    assert rows in (5 * 64, 4 * 64 + 1000 % 64)
    assert all(b1 < a2 for (_, b1), (a2, _) in itertools.pairwise(blocks))  # merged, sorted
    assert psd_sample_blocks(10, 0.01, seed=0) == [(0, 10)]  # at least one block
    assert psd_sample_blocks(200, 1.0, seed=0) == [(0, 200)]


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5, float("nan")])
def test_bad_fraction_is_a_user_error(fraction: float) -> None:
    grey = np.full((8, 6, 6), 200, dtype=np.uint8)
    with pytest.raises(AnalysisInputError, match="psd_fraction"):
        pore_analysis(grey, 128.0, voxel_um=1.0, psd_fraction=fraction)
    with pytest.raises(AnalysisInputError, match="psd_fraction"):
        TomoSettings(voxel_um=1.0, psd_fraction=fraction)
    with pytest.raises(AnalysisInputError, match="psd_seed"):
        TomoSettings(voxel_um=1.0, psd_fraction=0.5, psd_seed=-1)
