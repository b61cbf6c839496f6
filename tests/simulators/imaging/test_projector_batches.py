"""The projector's batch path: kept buffers, labels paired through the table, a fast window."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import fft as sfft

from insitu.simulators.imaging.xray import (
    Projector,
    _even_fast_length,
    attenuation_coefficients,
    label_table,
)

VOXEL = 0.7e-6


def _smooth(n: int) -> bool:
    """Whether n has no prime factor above 11."""
    for p in (2, 3, 5, 7, 11):
        while n % p == 0:
            n //= p
    return n == 1


def test_window_is_even_and_fast_and_unchanged_where_it_was() -> None:
    angles = np.linspace(0, np.pi, 4)
    # The full size's window was 2026 = 2 · 1013 (Bluestein in the inverse FFT).
    full = Projector((2000, 2000), angles, voxel_size_m=VOXEL, outer_radius_m=1.5e-3)
    assert full.m == 2048
    # Sizes whose window was already even and fast keep it (their line integrals too).
    assert Projector((128, 128), angles, voxel_size_m=VOXEL).m == 180
    assert Projector((256, 256), angles, voxel_size_m=VOXEL).m == 320
    region = Projector((96, 96), angles, voxel_size_m=VOXEL, outer_radius_m=1.5e-3)
    assert region.m == 108
    for n in range(2, 3000):
        m = _even_fast_length(n)
        assert m >= n and m % 2 == 0 and _smooth(m)
        assert m == n or not any(_smooth(k) for k in range(n + (n % 2), m, 2))
    assert sfft.next_fast_len(2025, real=True) == 2025  # why: odd, then 2026 is not smooth


def test_labels_projected_through_the_table_equal_the_values_projected() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, size=(5, 40, 40)).astype(np.uint8)
    table = label_table(attenuation_coefficients("A-LPS"))
    angles = np.linspace(0, np.pi, 30, endpoint=False)
    for outer in (None, 40 * VOXEL):
        p = Projector((40, 40), angles, voxel_size_m=VOXEL, outer_radius_m=outer, rows_per_batch=4)
        got = p.project_labels(labels, table)
        np.testing.assert_array_equal(got, p.project(table[labels]))
        # The last batch alone, then the slab again: the kept buffers (of a smaller batch in
        # between) give the same numbers. (Rows paired otherwise would differ in their last
        # digits: a row's transform is shared with its partner's.)
        np.testing.assert_array_equal(p.project_labels(labels[4:], table), got[:, 4:])
        np.testing.assert_array_equal(p.project_labels(labels, table), got)


def test_buffers_are_kept_from_call_to_call() -> None:
    p = Projector((32, 32), np.linspace(0, np.pi, 8), voxel_size_m=VOXEL, rows_per_batch=4)
    table = label_table(attenuation_coefficients("LiI-AN"))
    labels = np.full((6, 32, 32), 2, dtype=np.uint8)
    p.project_labels(labels, table)
    kept = {name: buf.__array_interface__["data"][0] for name, buf in p._buffers.items()}
    p.project_labels(labels, table)
    assert {n: b.__array_interface__["data"][0] for n, b in p._buffers.items()} == kept


def test_bad_labels_are_refused_before_anything_is_written() -> None:
    p = Projector((16, 16), np.linspace(0, np.pi, 6), voxel_size_m=VOXEL)
    table = label_table(attenuation_coefficients("A-LPS"))
    labels = np.full((3, 16, 16), 2, dtype=np.uint8)
    labels[2, 5, 5] = 99
    out = np.full((6, 3, 16), -1.0, dtype=np.float32)
    with pytest.raises(ValueError, match=r"labels \[99\] are not phases"):
        p.project_labels(labels, table, out=out)
    assert (out == -1.0).all()
    with pytest.raises(ValueError, match="expected slices of shape"):
        p.project_labels(labels[:, :8], table)


def test_measured_fft_plans_give_the_same_line_integrals() -> None:
    rng = np.random.default_rng(0)
    mu = rng.random((4, 64, 64)).astype(np.float32)
    angles = np.linspace(0, np.pi, 40, endpoint=False)
    estimate = Projector((64, 64), angles, voxel_size_m=VOXEL, rows_per_batch=4)
    measure = Projector((64, 64), angles, voxel_size_m=VOXEL, rows_per_batch=4, measure_fft=True)
    a, b = estimate.project(mu), measure.project(mu)
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-5 * np.abs(a).max())
