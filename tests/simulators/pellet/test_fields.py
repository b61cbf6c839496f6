"""The pore field: a slab equals the rows of the whole, whatever the threads."""

from __future__ import annotations

import numpy as np
import pytest

import insitu.simulators.pellet.fields as fields


@pytest.mark.parametrize("workers", [1, 3])
def test_pore_field_is_bit_identical_across_slabs_and_threads(monkeypatch, workers: int) -> None:
    whole = fields.pore_field((7, 1), -5, 40, 33, 29, 1.7)
    monkeypatch.setattr(fields, "_workers", lambda: workers)
    for z0, z1 in [(-5, 40), (0, 9), (13, 14), (21, 40)]:
        part = fields.pore_field((7, 1), z0, z1, 33, 29, 1.7)
        np.testing.assert_array_equal(part, whole[z0 + 5 : z1 + 5])


def test_pore_field_is_standard_normal() -> None:
    g = fields.pore_field((3, 0), 0, 64, 96, 96, 1.0)
    assert g.dtype == np.float32 and g.shape == (64, 96, 96)
    assert abs(float(g.mean())) < 0.05 and float(g.std()) == pytest.approx(1.0, abs=0.05)
