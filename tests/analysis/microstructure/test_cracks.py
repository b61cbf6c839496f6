"""Cracks in binarised volumes: components, shape, origin, growth, slab-wise labelling.

Ground truth comes from synthetic shapes of known volume and from the virtual pellet's label
volumes (pore phase = PORE | CRACK | CRACK_LITHIUM inside the electrolyte rows and the pellet
disc), whose ``ground_truth`` gives the crack volume and its origin.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from insitu.analysis.microstructure.cracks import (
    crack_summary,
    find_cracks,
    label_pores,
    match_cracks,
    pore_component_table,
)
from insitu.simulators.cell.history import cycle_to_charge
from insitu.simulators.cell.model import CellGeometry, VirtualCell
from insitu.simulators.pellet.model import VirtualPellet
from insitu.simulators.pellet.phases import Phase

PORE_PHASE = [Phase.PORE, Phase.CRACK, Phase.CRACK_LITHIUM]


def _ball(vol: np.ndarray, c: tuple[float, float, float], r: float) -> None:
    z, y, x = np.ogrid[: vol.shape[0], : vol.shape[1], : vol.shape[2]]
    vol[(z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 <= r * r] = True


def _disc(vol: np.ndarray, c: tuple[float, float, float], r: float, normal: int, t: int) -> None:
    """A flat disc of radius r and thickness t voxels, normal along axis ``normal``."""
    z, y, x = np.ogrid[: vol.shape[0], : vol.shape[1], : vol.shape[2]]
    coords = [z - c[0], y - c[1], x - c[2]]
    n = coords.pop(normal)
    vol[(coords[0] ** 2 + coords[1] ** 2 <= r * r) & (np.abs(n) < t / 2)] = True


@pytest.fixture(scope="module")
def shapes() -> tuple[np.ndarray, np.ndarray]:
    """Random balls (pores, kind 1) and planar discs (cracks, kind 2) that do not touch."""
    rng = np.random.default_rng(1)
    vol = np.zeros((60, 96, 96), dtype=bool)
    kind = np.zeros(vol.shape, dtype=np.uint8)
    taken = np.zeros_like(vol)
    for k in range(40):
        trial = np.zeros_like(vol)
        if k % 4 == 0:
            c = tuple(rng.uniform(12, s - 12) for s in vol.shape)
            _disc(trial, c, rng.uniform(7, 10), int(rng.integers(3)), int(rng.integers(1, 3)))
        else:
            c = tuple(rng.uniform(5, s - 5) for s in vol.shape)
            _ball(trial, c, rng.uniform(1.5, 4.0))
        if (ndimage.binary_dilation(trial, iterations=2) & taken).any():
            continue
        taken |= trial
        kind[trial] = 2 if k % 4 == 0 else 1
    return taken, kind


def test_planarity_separates_sheets_from_round_pores(shapes) -> None:
    vol, kind = shapes
    labels, table = label_pores(vol, voxel_um=0.7)
    assert labels.dtype == np.uint8 and table["voxels"].sum() == vol.sum()
    kinds = ndimage.maximum(kind, labels, table["label"])
    sheets = np.asarray(kinds) == 2
    n_discs = int(sheets.sum())
    assert n_discs >= 4 and (~sheets).sum() >= 10
    # Every disc is more planar than every ball, with a wide gap at the default 0.6.
    assert table.loc[sheets, "planarity"].min() > 0.85
    assert table.loc[~sheets, "planarity"].max() < 0.35
    cracks, ctab = find_cracks(
        vol, voxel_um=0.7, min_volume_um3=0.0, planarity_min=0.6, slab_rows=None
    )
    assert len(ctab) == n_discs
    assert ctab["volume_um3"].sum() == pytest.approx(table.loc[sheets, "volume_um3"].sum())
    assert np.array_equal(cracks > 0, np.isin(labels, table.loc[sheets, "label"]))
    # The table of an existing label volume agrees.
    again = pore_component_table(labels, voxel_um=0.7)
    assert np.allclose(again["planarity"], table["planarity"])


def test_min_volume_removes_small_pores(shapes) -> None:
    vol, _ = shapes
    _, table = label_pores(vol, voxel_um=1.0)
    cut = float(np.median(table["volume_um3"]))
    _, big = find_cracks(vol, voxel_um=1.0, min_volume_um3=cut)
    assert len(big) == int((table["volume_um3"] >= cut).sum())
    assert big["volume_um3"].min() >= cut


def test_min_volume_keeps_a_component_of_exactly_that_volume() -> None:
    # The filter removes components *smaller than* min_volume_um3: one of exactly that
    # volume is a crack, one voxel less is a pore.
    vol = np.zeros((10, 20, 20), dtype=bool)
    vol[2, 2, 2:10] = True  # 8 voxels
    vol[6, 10, 2:9] = True  # 7 voxels
    _, table = find_cracks(vol, voxel_um=2.0, min_volume_um3=8 * 8.0)
    assert table["voxels"].tolist() == [8]
    _, table = find_cracks(vol, voxel_um=2.0, min_volume_um3=8 * 8.0 + 1e-9)
    assert table.empty


def test_slabwise_equals_whole_volume(shapes) -> None:
    rng = np.random.default_rng(5)
    noise = rng.random((23, 40, 41)) < 0.3  # near percolation: components cross many slabs
    for vol, ifs in ((noise, (2.4, 20.6)), (shapes[0], None)):
        whole, t_whole = label_pores(vol, voxel_um=1.0, interfaces=ifs, slab_rows=None)
        for slab in (1, 3, 7):
            part, t_part = label_pores(vol, voxel_um=1.0, interfaces=ifs, slab_rows=slab)
            assert np.array_equal(part, whole)
            assert t_part.equals(t_whole)
    # Connectivity is honoured across slab boundaries: a diagonal chain is one component at
    # 26-connectivity, separate voxels at 6.
    chain = np.zeros((6, 6, 6), dtype=bool)
    chain[np.arange(6), np.arange(6), np.arange(6)] = True
    for conn, n in ((26, 1), (18, 6), (6, 6)):
        _, t = label_pores(chain, conn, slab_rows=1)
        assert len(t) == n


def test_errors_name_the_argument() -> None:
    vol = np.zeros((4, 5, 5), dtype=bool)
    with pytest.raises(ValueError, match="connectivity"):
        label_pores(vol, 8)
    with pytest.raises(ValueError, match="voxel_um"):
        find_cracks(vol, voxel_um=0.0, min_volume_um3=1.0)
    with pytest.raises(ValueError, match="interfaces"):
        find_cracks(vol, voxel_um=1.0, min_volume_um3=1.0, interfaces=(3.0, 1.0))
    with pytest.raises(ValueError, match="mask"):
        label_pores(vol, mask=np.ones((4, 4), dtype=bool))
    with pytest.raises(ValueError, match="reference"):
        find_cracks(vol, voxel_um=1.0, min_volume_um3=1.0, reference=vol[:3])
    with pytest.raises(ValueError, match="3-D"):
        label_pores(vol[0])


# --- the virtual pellet ------------------------------------------------------------------
def _damaged(material: str, charge_mC: float):
    cell = VirtualCell(material, CellGeometry.insitu(), seed=0)
    cycle_to_charge(cell, charge_mC * 1e-3)
    pellet = VirtualPellet(material, seed=0)
    return pellet, cell.state


def _interfaces(pellet: VirtualPellet) -> tuple[float, float]:
    return pellet.geometry.interfaces_rows


@pytest.mark.parametrize(
    ("material", "charge_mC"), [("A-LPS", 20.0), ("LiI-AT", 37.5), ("LiI-AN", 200.0)]
)
def test_crack_volume_within_15_percent_of_truth(material: str, charge_mC: float) -> None:
    """With the pristine scan as reference, every preset; the pores percolate in A-LPS."""
    pellet, state = _damaged(material, charge_mC)
    truth = pellet.ground_truth(state)
    now = np.isin(pellet.labels(state=state), PORE_PHASE)
    pristine = np.isin(pellet.labels(), PORE_PHASE)
    labels, table = find_cracks(
        now,
        voxel_um=3.0,
        min_volume_um3=300.0,
        interfaces=_interfaces(pellet),
        mask=pellet.inside,
        reference=pristine,
    )
    true_um3 = truth["crack_volume_m3"] * 1e18
    assert true_um3 > 5000.0
    assert table["volume_corrected_um3"].sum() == pytest.approx(true_um3, rel=0.15)
    # The cracks are where the simulator put them.
    crack = np.isin(pellet.labels(state=state), [Phase.CRACK, Phase.CRACK_LITHIUM])
    assert (labels > 0)[~crack].sum() == 0
    # All of them hang from the working (top) interface, the stripping one, as in the truth.
    by_origin = crack_summary(table)
    assert truth["crack_volume_by_origin_m3"]["working"] > 0.7 * truth["crack_volume_m3"]
    assert by_origin["volume_um3_top"] > 0.7 * by_origin["volume_um3"]


def test_reference_free_definition_over_estimates_consistently() -> None:
    """The paper's definition (large components), where the pores do not percolate."""
    pellet, state = _damaged("LiI-AN", 200.0)
    mask, ifs = pellet.inside, _interfaces(pellet)
    _, pores = label_pores(np.isin(pellet.labels(), PORE_PHASE), mask=mask, interfaces=ifs)
    largest = pores["voxels"].max() * 27.0  # µm³: the pristine's largest pore
    _, table = find_cracks(
        np.isin(pellet.labels(state=state), PORE_PHASE),
        voxel_um=3.0,
        min_volume_um3=1.1 * largest,
        interfaces=ifs,
        mask=mask,
    )
    ratio = table["volume_um3"].sum() / (pellet.ground_truth(state)["crack_volume_m3"] * 1e18)
    assert 1.0 < ratio < 1.6  # pores connected to the cracks are counted in


@pytest.fixture(scope="module")
def history():
    """A-LPS above its critical current, 10 min half-cycles starting with a strip (working)."""
    geometry = CellGeometry.insitu()
    cell = VirtualCell("A-LPS", geometry, seed=0)
    current = 0.08 * 10.0 * geometry.area_m2
    states, t = [cell.state], 0.0
    for k in range(6):
        times = t + np.linspace(0.0, 600.0, 11)[1:]
        cell.hold((1 if k % 2 == 0 else -1) * current, times)
        t = float(times[-1])
        states.append(cell.state)
    pellet = VirtualPellet("A-LPS", seed=0)
    pristine = np.isin(pellet.labels(), PORE_PHASE)
    found = []
    for s in states:
        lab, tab = find_cracks(
            np.isin(pellet.labels(state=s), PORE_PHASE),
            voxel_um=3.0,
            min_volume_um3=100.0,  # the first crack is a 16-voxel chip
            interfaces=_interfaces(pellet),
            mask=pellet.inside,
            reference=pristine,
        )
        found.append((lab, tab))
    return pellet, states, found


def test_cracks_start_at_the_stripping_electrode(history) -> None:
    _, states, found = history
    onset = next(i for i, s in enumerate(states) if s.cracks)
    assert states[onset].cracks[0].origin == "working"  # the truth: stripping first
    assert all(len(t) == 0 for _, t in found[:onset])
    table = found[onset][1]
    assert len(table) >= 1
    first = table.loc[table["volume_um3"].idxmax()]
    assert first["origin"] == "top" and first["touches_top"]


def test_growth_between_steps(history) -> None:
    _, states, found = history
    onset = next(i for i, s in enumerate(states) if s.cracks)
    growth = match_cracks(found[onset - 1][0], found[onset][0], voxel_um=3.0)
    assert set(growth["status"]) == {"new"}
    # After onset the main crack persists and the total crack volume grows step by step.
    volumes = [t["volume_corrected_um3"].sum() for _, t in found[onset:]]
    assert np.all(np.diff(volumes) > 0)
    for k in range(onset, len(found) - 1):
        g = match_cracks(found[k][0], found[k + 1][0], voxel_um=3.0)
        big = g.loc[g["volume_after_um3"].idxmax()]
        assert big["status"] != "new" and big["overlap_um3"] > 0  # the main crack persists
        assert g["growth_um3"].sum() > 0


def test_match_cracks_statuses() -> None:
    a = np.zeros((4, 10, 30), dtype=np.uint8)
    b = np.zeros_like(a)
    a[1, 1:3, 1:4] = 1  # grows
    b[1, 1:3, 1:6] = 1
    a[1, 5:7, 1:4] = 2  # two that merge
    a[1, 5:7, 6:9] = 3
    b[1, 5:7, 1:9] = 2
    a[2, 1:3, 20:22] = 4  # closes
    b[2, 6:8, 20:22] = 3  # new
    g = match_cracks(a, b, voxel_um=2.0, slab_rows=1)
    status = dict(zip(g["label_after"], g["status"], strict=True))
    assert status == {1: "grown", 2: "merged", 3: "new", 0: "closed"}
    row = g.set_index("label_after").loc[1]
    assert row["growth_um3"] == pytest.approx(4 * 8.0)
    assert g.set_index("label_after").loc[2, "labels_before"] == (2, 3)
    with pytest.raises(ValueError, match="same shape"):
        match_cracks(a, b[:3], voxel_um=1.0)


def _holed_sheets(seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Old pores (porosity 0.45, a few voxels wide) and, after, two planar cracks through them.

    Each crack is a 1-voxel sheet from the top face down; about half of it was pore already,
    so its new voxels fall apart into pieces. The sheets are 14 voxels apart.
    """
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal((40, 48, 48)), 1.0)
    old = field < np.quantile(field, 0.45)
    after = old.copy()
    after[0:30, 10, 4:44] = True  # sheet 1, normal along y
    after[0:30, 24, 4:44] = True  # sheet 2
    return old, after


def test_pieces_of_one_crack_are_joined_through_the_old_pores() -> None:
    # The new voxels of each holed sheet fall apart into pieces; joined through the old
    # pores next to them, each sheet is one crack again, and the two sheets stay two.
    old, after = _holed_sheets()
    kwargs = dict(voxel_um=1.0, min_volume_um3=30.0, interfaces=(0.0, 40.0), reference=old)
    _, apart = find_cracks(after, min_fragment_voxels=0, **kwargs)
    labels, joined = find_cracks(after, **kwargs)
    assert len(apart) > 2
    assert len(joined) == 2
    new = after & ~old
    sheet1, sheet2 = np.zeros_like(new), np.zeros_like(new)
    sheet1[0:30, 10, 4:44] = True
    sheet2[0:30, 24, 4:44] = True
    # Each crack is new voxels of one sheet only, and nearly all of them (pieces under the
    # fragment floor that touch no other piece are left out).
    for sheet in (sheet1, sheet2):
        ids = np.unique(labels[sheet & new])
        ids = ids[ids > 0]
        assert ids.size == 1
        crack = labels == ids[0]
        assert not (crack & ~(sheet & new)).any()
        assert crack.sum() >= 0.9 * (sheet & new).sum()
    assert set(joined["origin"]) == {"top"}


def test_joining_does_not_depend_on_the_slab_size() -> None:
    old, after = _holed_sheets(seed=5)
    kwargs = dict(voxel_um=1.0, min_volume_um3=30.0, interfaces=(0.0, 40.0), reference=old)
    whole_labels, whole = find_cracks(after, slab_rows=None, **kwargs)
    for rows in (1, 4, 7):
        labels, table = find_cracks(after, slab_rows=rows, **kwargs)
        np.testing.assert_array_equal(labels, whole_labels)
        pd.testing.assert_frame_equal(table, whole)


def test_noise_between_scans_is_not_joined_into_a_crack() -> None:
    # Single new voxels scattered through a percolating pore network (grey-level noise
    # between two scans): below the fragment floor they join nothing, so no crack appears,
    # where joining every piece would make one crack of all of them.
    rng = np.random.default_rng(1)
    old = rng.random((30, 40, 40)) < 0.5
    after = old | (rng.random(old.shape) < 0.02)
    kwargs = dict(voxel_um=1.0, min_volume_um3=30.0, interfaces=(0.0, 30.0), reference=old)
    assert len(find_cracks(after, **kwargs)[1]) == 0
    assert len(find_cracks(after, min_fragment_voxels=1, **kwargs)[1]) >= 1
