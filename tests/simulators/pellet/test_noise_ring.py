"""The pore field's kept noise: each block drawn once, its memory reused, the field unchanged."""

from __future__ import annotations

import numpy as np
import pytest

import insitu.simulators.pellet.fields as fields

ENTROPY = (4, 1)


def test_slab_after_slab_draws_each_block_once_into_the_same_memory(monkeypatch) -> None:
    whole = fields.pore_field(ENTROPY, 0, 64, 20, 24, 2.0)
    drawn: list[int] = []
    real = fields._noise_block

    def counted(entropy, block, ny, nx, out=None):
        drawn.append(block)
        return real(entropy, block, ny, nx, out=out)

    monkeypatch.setattr(fields, "_noise_block", counted)
    cache: dict = {}
    out = np.empty((16, 20, 24), dtype=np.float32)
    memory = set()
    for z in range(0, 64, 16):
        got = fields.pore_field(ENTROPY, z, z + 16, 20, 24, 2.0, cache=cache, out=out)
        assert got is out
        np.testing.assert_array_equal(got, whole[z : z + 16])
        memory.add(cache["ring"].data.__array_interface__["data"][0])
    assert sorted(drawn) == sorted(set(drawn))  # no block drawn twice
    assert len(memory) == 1  # the blocks of every slab in one kept array


def test_a_larger_slab_grows_the_ring_and_keeps_its_blocks() -> None:
    whole = fields.pore_field(ENTROPY, -10, 90, 12, 10, 3.0)
    cache: dict = {}
    for z0, z1 in [(0, 8), (8, 60), (60, 61), (20, 90), (-10, 0)]:
        got = fields.pore_field(ENTROPY, z0, z1, 12, 10, 3.0, cache=cache)
        np.testing.assert_array_equal(got, whole[z0 + 10 : z1 + 10])


def test_out_of_the_wrong_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="out must be float32 of shape"):
        fields.pore_field(ENTROPY, 0, 8, 12, 10, 2.0, out=np.empty((8, 12, 10)))
