"""The compiled pore labelling and truth counting equal the numpy expressions they replaced."""

from __future__ import annotations

import numpy as np
import pytest

from insitu.simulators.cell.model import CellGeometry, VirtualCell
from insitu.simulators.pellet import model
from insitu.simulators.pellet.fields import pore_field
from insitu.simulators.pellet.model import PelletGeometry, VirtualPellet
from insitu.simulators.pellet.phases import Phase


def _numpy_labels(pellet: VirtualPellet, z0: int, z1: int, state) -> np.ndarray:
    """Labels as numpy made them: threshold mix, mask, ``where``, outside (the definition)."""
    _, ny, nx = pellet.geometry.shape
    out = np.full((z1 - z0, ny, nx), Phase.OUTSIDE, dtype=np.uint8)
    zc = np.arange(z0, z1) + 0.5
    li, se, steel = pellet._row_layers(zc, state)
    out[li] = np.where(pellet.inside, Phase.LITHIUM, Phase.OUTSIDE)
    out[steel] = np.where(pellet.inside, Phase.COLLECTOR, Phase.OUTSIDE)
    if se.any():
        i = np.flatnonzero(se)
        a, b = z0 + int(i[0]), z0 + int(i[-1]) + 1
        field = pore_field(pellet._entropy, a, b, ny, nx, pellet._sigma_vox)
        pores = np.empty(field.shape, dtype=bool)
        for k, z in enumerate(range(a, b)):
            zm = pellet._z_m[z]
            j = int(np.clip(np.searchsorted(pellet._zn, zm) - 1, 0, pellet._zn.size - 2))
            w = np.float32((zm - pellet._zn[j]) / (pellet._zn[j + 1] - pellet._zn[j]))
            t = (1 - w) * pellet._threshold_plane(j) + w * pellet._threshold_plane(j + 1)
            pores[k] = field[k] < t
        block = np.where(pores, np.uint8(Phase.PORE), np.uint8(Phase.ELECTROLYTE))
        block[:, ~pellet.inside] = Phase.OUTSIDE
        out[i[0] : i[-1] + 1] = block
    if state is not None:
        pellet._render_cracks(out, zc, se, state)
    return out


def _cracked_state():
    """LiI-AN cycled past its critical current: cracks, some with Li."""
    geometry = CellGeometry.insitu()
    cell = VirtualCell("A-LPS", geometry, seed=0)
    current = 0.08 * 10.0 * geometry.area_m2
    t = 0.0
    for k in range(6):
        times = t + np.linspace(0.0, 600.0, 11)[1:]
        cell.hold((1 if k % 2 == 0 else -1) * current, times)
        t = float(times[-1])
    return cell.state


@pytest.mark.parametrize(
    ("material", "geometry", "rows"),
    [
        ("A-LPS", PelletGeometry.small(), (0, 64)),
        ("LiI-AN", PelletGeometry.medium(), (20, 60)),
        ("LPS:0.5LiI", PelletGeometry.region(), (400, 440)),
    ],
)
def test_compiled_labels_equal_the_numpy_labels(material, geometry, rows) -> None:
    pellet = VirtualPellet(material, geometry, seed=4)
    state = _cracked_state()
    assert state.cracks
    got = pellet.labels(*rows, state)
    want = _numpy_labels(pellet, *rows, state)
    np.testing.assert_array_equal(got, want)
    assert (got == Phase.PORE).any() and (got == Phase.ELECTROLYTE).any()


def test_label_counts_equal_bincount() -> None:
    rng = np.random.default_rng(0)
    lab = rng.integers(0, 256, size=(5, 17, 23), dtype=np.uint8)
    lab[2] = 7  # a row of one value
    counts = model._count_labels(lab)
    want = np.stack([np.bincount(row.ravel(), minlength=256) for row in lab])
    np.testing.assert_array_equal(counts, want)


def test_truth_counts_equal_a_bincount_of_the_whole_volume() -> None:
    pellet = VirtualPellet("A-LPS", seed=1)
    state = _cracked_state()
    truth = pellet.ground_truth(state, slab_rows=7)
    volume = pellet.labels(None, None, state)
    n = len(Phase)
    total = np.bincount(volume.ravel(), minlength=n)
    assert truth["voxel_counts"] == {p.name: int(total[p]) for p in Phase}
    top, bottom = pellet.geometry.interfaces_rows
    zc = np.arange(volume.shape[0]) + 0.5
    se = np.bincount(volume[(zc >= top) & (zc < bottom)].ravel(), minlength=n)
    assert truth["electrolyte_counts"] == {p.name: int(se[p]) for p in Phase}
