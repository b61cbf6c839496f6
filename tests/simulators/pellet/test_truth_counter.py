"""The ground truth counted from the slabs a caller makes anyway; the pore field's noise cache."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

import insitu.simulators.pellet.fields as fields
from insitu.simulators.cell.model import CellGeometry, VirtualCell
from insitu.simulators.pellet.model import VirtualPellet


def _cracked_state():
    """A-LPS above its critical current (0.08 mA/cm², 10 min half-cycles): cracks with Li."""
    geometry = CellGeometry.insitu()
    cell = VirtualCell("A-LPS", geometry, seed=0)
    current = 0.08 * 10.0 * geometry.area_m2
    t = 0.0
    for k in range(8):
        times = t + np.linspace(0.0, 600.0, 11)[1:]
        cell.hold((1 if k % 2 == 0 else -1) * current, times)
        t = float(times[-1])
    return cell.state


def test_truth_counted_from_slabs_equals_the_ground_truth() -> None:
    state = _cracked_state()
    assert state.cracks  # the crack tallies are exercised
    pellet = VirtualPellet("A-LPS", seed=3)
    counter = pellet.truth_counter(state)
    nz = pellet.geometry.shape[0]
    # Any slabs, any order: the labels are the rows', the counts the whole volume's.
    for z0, z1 in [(40, nz), (0, 7), (7, 40)]:
        np.testing.assert_array_equal(counter.labels(z0, z1), pellet.labels(z0, z1, state))
    assert counter.result() == pellet.ground_truth(state)


def test_truth_counter_refuses_rows_twice_or_missing() -> None:
    pellet = VirtualPellet("LiI-AN", seed=0)
    counter = pellet.truth_counter()
    counter.labels(0, 10)
    with pytest.raises(ValueError, match="already counted"):
        counter.labels(5, 12)
    with pytest.raises(ValueError, match="not counted"):
        counter.result()


def _reference_pore_field(entropy, z0, z1, ny, nx, sigma):
    """The pore field as numpy and scipy.ndimage compute it (the definition)."""
    w = fields.gaussian_kernel(float(sigma))
    r = (w.size - 1) // 2
    b0, b1 = (z0 - r) // fields.BLOCK_ROWS, (z1 + r - 1) // fields.BLOCK_ROWS
    start, n = z0 - r - b0 * fields.BLOCK_ROWS, z1 - z0
    noise = np.concatenate([fields._noise_block(entropy, b, ny, nx) for b in range(b0, b1 + 1)])
    rows = np.zeros((n, ny, nx), dtype=np.float32)
    for k, wk in enumerate(w):
        rows += wk * noise[start + k : start + k + n]
    rows = ndimage.correlate1d(rows, w, axis=1, mode="reflect")
    rows = ndimage.correlate1d(rows, w, axis=2, mode="reflect")
    return rows / np.float32(np.sqrt(np.sum(w.astype(float) ** 2)) ** 3)


@pytest.mark.parametrize(("ny", "nx", "sigma"), [(33, 29, 1.7), (40, 52, 2.57), (9, 7, 3.0)])
def test_compiled_filters_equal_numpy_and_ndimage_bit_for_bit(ny, nx, sigma) -> None:
    # (9, 7, 3.0): a kernel wider than the plane, where "reflect" folds more than once.
    got = fields.pore_field((5, 2), -3, 21, ny, nx, sigma)
    np.testing.assert_array_equal(got, _reference_pore_field((5, 2), -3, 21, ny, nx, sigma))


def test_noise_cache_gives_the_same_field_slab_after_slab() -> None:
    whole = fields.pore_field((1, 1), 0, 48, 30, 30, 2.0)
    cache: dict = {}
    parts = [
        fields.pore_field((1, 1), z, z + 12, 30, 30, 2.0, cache=cache) for z in (0, 12, 24, 36)
    ]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    assert cache  # this call's blocks, for the next slab
    # A cache of another volume's blocks is never used for this one.
    other = fields.pore_field((2, 1), 36, 48, 30, 30, 2.0, cache=cache)
    np.testing.assert_array_equal(other, fields.pore_field((2, 1), 36, 48, 30, 30, 2.0))
