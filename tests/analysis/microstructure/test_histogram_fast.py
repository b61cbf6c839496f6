"""The uint8 fast path of the grey histogram and of the partial-volume porosity.

Both count each grey value once in a parallel pass; they must give exactly what the general
(integer bincount and float) paths give.
"""

from __future__ import annotations

import numpy as np
import pytest

from insitu.analysis.microstructure.partial_volume import PhaseLevels, pv_porosity
from insitu.analysis.microstructure.segment import (
    grey_histogram,
    pellet_mask,
    uint8_value_counts,
)


@pytest.fixture
def grey() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(37, 29, 31), dtype=np.uint8)


def test_value_counts_equal_bincount(grey: np.ndarray) -> None:
    mask = pellet_mask(grey.shape[1:], radius_px=12)
    expected = np.bincount(grey[:, mask].ravel(), minlength=256)
    np.testing.assert_array_equal(uint8_value_counts(grey, mask), expected)
    np.testing.assert_array_equal(
        uint8_value_counts(grey, None), np.bincount(grey.ravel(), minlength=256)
    )


@pytest.mark.parametrize("grey_range", [(0.0, 256.0), (20.0, 200.0), (-10.5, 300.0)])
def test_uint8_histogram_equals_the_general_path(grey: np.ndarray, grey_range) -> None:
    mask = pellet_mask(grey.shape[1:], radius_px=12)
    kw = {"grey_range": grey_range, "mask": mask, "rows": (3, 34), "slab_rows": 8}
    fast = grey_histogram(grey, **kw)
    np.testing.assert_array_equal(fast, grey_histogram(grey.astype(np.uint16), **kw))
    np.testing.assert_array_equal(fast, grey_histogram(grey.astype(np.float32), **kw))


def test_uint8_pv_porosity_equals_the_float_path(grey: np.ndarray) -> None:
    mask = pellet_mask(grey.shape[1:], radius_px=12)
    levels = PhaseLevels(solid=180.0, void=20.0)
    fast = pv_porosity(grey, levels, mask=mask, rows=(2, 30), slab_rows=7)
    assert fast == pv_porosity(grey.astype(np.float32), levels, mask=mask, rows=(2, 30))
