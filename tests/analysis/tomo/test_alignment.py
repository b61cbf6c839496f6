"""Scan alignment: known translations of a porous volume come back."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from insitu.analysis.tomo.prep.alignment import Shift, align_to, apply_shift


def porous_volume(shape=(48, 96, 96), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal(shape), 2.0)
    return np.where(field > 0.05, 200.0, 40.0).astype(np.float32)


@pytest.mark.parametrize("true_shift", [(0, 0, 0), (2, -3, 5), (-1, 4, -2)])
def test_integer_shifts_are_recovered_and_undone(true_shift) -> None:
    ref = porous_volume()
    moving = np.roll(ref, [-s for s in true_shift], axis=(0, 1, 2))
    shift = align_to(ref, moving)
    assert shift.integer == true_shift
    aligned = apply_shift(moving, shift)
    # Away from the wrapped borders the aligned volume is the reference, voxel for voxel.
    inner = (slice(6, -6), slice(8, -8), slice(8, -8))
    np.testing.assert_array_equal(aligned[inner], ref[inner])


def test_sub_voxel_shift() -> None:
    ref = ndimage.gaussian_filter(porous_volume(), 1.0)
    moving = ndimage.shift(ref, (0.0, -1.5, 2.3), order=3, mode="wrap")
    shift = align_to(ref, moving, upsample=10)
    # Reported to a fraction of a voxel (measured 1.6 and -2.5); only the integer part is
    # applied.
    assert shift.dy == pytest.approx(1.5, abs=0.3)
    assert shift.dx == pytest.approx(-2.3, abs=0.3)
    assert shift.integer[1:] in ((2, -2), (1, -2), (2, -3), (1, -3))


def test_apply_shift_fills_and_bad_input() -> None:
    vol = np.arange(27, dtype=np.uint8).reshape(3, 3, 3)
    out = apply_shift(vol, Shift(1, 0, 0, 0.0), fill=255)
    assert (out[0] == 255).all() and (out[1:] == vol[:2]).all()
    assert (apply_shift(vol, Shift(5, 0, 0, 0.0)) == 0).all()
    with pytest.raises(ValueError, match="same shape"):
        align_to(vol, vol[:2])
