"""Tests of the virtual pellet (labelled volume of the in-situ cell for tomography)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from insitu.simulators.cell import parameters as cp
from insitu.simulators.cell.model import CellGeometry, VirtualCell
from insitu.simulators.materials import MATERIALS, UnknownMaterialError
from insitu.simulators.pellet.model import PelletGeometry, VirtualPellet
from insitu.simulators.pellet.phases import Phase

PRESETS = list(MATERIALS)
CRACK_PHASES = (Phase.CRACK, Phase.CRACK_LITHIUM)


def _se_rows(pellet: VirtualPellet) -> slice:
    top, bot = pellet.geometry.interfaces_rows
    return slice(int(np.ceil(top - 0.5)), int(np.ceil(bot - 0.5)))


def _subvolume_cv(pellet: VirtualPellet, labels: np.ndarray, size_m: float = 30e-6) -> float:
    """Coefficient of variation of the porosity of cubes ``size_m`` wide inside the pellet."""
    n = round(size_m / pellet.geometry.voxel_m)
    se = labels[_se_rows(pellet)]
    values = []
    for a in range(0, se.shape[0] - n + 1, n):
        for b in range(0, se.shape[1] - n + 1, n):
            for c in range(0, se.shape[2] - n + 1, n):
                if pellet.inside[b : b + n, c : c + n].all():
                    values.append(np.mean(se[a : a + n, b : b + n, c : c + n] == Phase.PORE))
    v = np.asarray(values)
    assert v.size > 100
    return float(v.std() / v.mean())


def _mean_pore_chord_m(labels: np.ndarray, voxel_m: float) -> float:
    """Mean length of pore runs along x."""
    pore = labels == Phase.PORE
    starts = np.count_nonzero(np.diff(pore.astype(np.int8), axis=2) == 1)
    return float(pore.sum() / max(starts, 1) * voxel_m)


def _hold_series(material: str, current_density_mA_cm2: float, n_holds: int, hold_s: float):
    """Alternate ±I holds (the first one strips the working electrode); states after each."""
    geometry = CellGeometry.insitu()
    cell = VirtualCell(material, geometry, seed=0)
    current = current_density_mA_cm2 * 10.0 * geometry.area_m2
    states, signs, t = [cell.state], [], 0.0
    for k in range(n_holds):
        sign = 1 if k % 2 == 0 else -1
        times = t + np.linspace(0.0, hold_s, 11)[1:]
        cell.hold(sign * current, times)
        t = float(times[-1])
        states.append(cell.state)
        signs.append(sign)
    return states, signs


@pytest.fixture(scope="module")
def damage_history():
    """A-LPS in-situ cell above its critical current: 0.08 mA/cm², 10 min half-cycles."""
    states, signs = _hold_series("A-LPS", 0.08, 8, 600.0)
    pellet = VirtualPellet("A-LPS", seed=0)
    truths = [pellet.ground_truth(s) for s in states]
    return pellet, states, signs, truths


# --- microstructure --------------------------------------------------------------------
def test_same_seed_same_labels_and_slab_equals_rows(damage_history) -> None:
    _, states, _, _ = damage_history
    state = states[5]
    a = VirtualPellet("A-LPS", seed=3)
    b = VirtualPellet("A-LPS", seed=3)
    whole = a.labels(state=state)
    assert whole.dtype == np.uint8 and whole.shape == a.geometry.shape
    assert np.array_equal(whole, b.labels(state=state))
    assert not np.array_equal(whole, VirtualPellet("A-LPS", seed=4).labels(state=state))
    # Slabs that cut through the Li, the interfaces, the pores and the cracks.
    for z0, z1 in ((0, 7), (9, 25), (30, 31), (45, 64)):
        assert np.array_equal(b.labels(z0, z1, state), whole[z0:z1])


@pytest.mark.parametrize("material", PRESETS)
def test_porosity_matches_preset(material: str) -> None:
    pellet = VirtualPellet(material, seed=1)
    truth = pellet.ground_truth()
    assert truth["porosity"] == pytest.approx(MATERIALS[material].porosity, abs=0.01)


def test_porosity_order_and_heterogeneity() -> None:
    porosity, cv = {}, {}
    for material in PRESETS:
        pellet = VirtualPellet(material, seed=0)
        labels = pellet.labels()
        porosity[material] = pellet.ground_truth()["porosity"]
        cv[material] = _subvolume_cv(pellet, labels)
    assert porosity["A-LPS"] > porosity["LPS:0.5LiI"] > porosity["LiI-AT"] > porosity["LiI-AN"]
    # LiI-AN: the most heterogeneous relative to its mean (30 µm sub-volumes).
    assert cv["LiI-AN"] == max(cv.values())
    assert cv["LiI-AN"] > 1.5 * max(v for k, v in cv.items() if k != "LiI-AN")


def test_alps_pores_are_largest() -> None:
    fine = PelletGeometry(
        shape=(32, 64, 64),
        voxel_m=1e-6,
        pellet_radius_m=30e-6,
        electrolyte_thickness_m=24e-6,
        li_thickness_m=3e-6,
    )
    chord = {m: _mean_pore_chord_m(VirtualPellet(m, fine).labels(), 1e-6) for m in PRESETS}
    assert chord["A-LPS"] >= 3e-6
    assert chord["A-LPS"] == max(chord.values())
    assert chord["LiI-AN"] == min(chord.values())


def test_layers_of_the_pristine_pellet() -> None:
    pellet = VirtualPellet("LiI-AT")
    labels = pellet.labels()
    z = pellet.interfaces_z()
    centre = labels[:, 64, 64]
    # Steel pistons beyond each Li electrode: 4 rows each side at the small size.
    assert centre[0] == Phase.COLLECTOR and centre[-1] == Phase.COLLECTOR
    assert np.all(centre[: int(z["working_outer"])] == Phase.COLLECTOR)
    assert np.all(centre[int(z["counter_outer"]) :] == Phase.COLLECTOR)
    assert int(z["working_outer"]) == 4 and labels.shape[0] - int(z["counter_outer"]) == 4
    assert centre[int(z["working_outer"])] == Phase.LITHIUM
    assert centre[int(z["working_electrolyte"]) - 1] == Phase.LITHIUM
    assert centre[int(z["electrolyte_counter"])] == Phase.LITHIUM
    assert centre[int(z["counter_outer"]) - 1] == Phase.LITHIUM
    assert set(np.unique(labels[_se_rows(pellet)][:, pellet.inside])) == {
        Phase.ELECTROLYTE,
        Phase.PORE,
    }
    assert np.all(labels[:, ~pellet.inside] == Phase.OUTSIDE)
    truth = pellet.ground_truth()
    assert truth["crack_volume_m3"] == 0.0 and truth["crack_li_volume_m3"] == 0.0
    assert sum(truth["voxel_counts"].values()) == labels.size


def test_unknown_material_and_bad_rows() -> None:
    with pytest.raises(UnknownMaterialError):
        VirtualPellet("LGPS")
    with pytest.raises(ValueError, match="z0"):
        VirtualPellet("A-LPS").labels(10, 70)


# --- damage from the cell state ----------------------------------------------------------
def test_crack_volume_zero_then_growing(damage_history) -> None:
    _, states, _, truths = damage_history
    assert states[0].cracks == () and truths[0]["crack_volume_m3"] == 0.0
    volumes = [t["crack_volume_m3"] for t in truths]
    onset = next(i for i, s in enumerate(states) if s.cracks)
    assert volumes[onset] > 0.0
    assert np.all(np.diff(volumes[onset:]) > 0.0)
    # The transparent volume grows at crack onset (cracks open in dense electrolyte).
    assert truths[onset]["transparent_volume_m3"] > truths[0]["transparent_volume_m3"]
    assert truths[-1]["transparent_volume_m3"] > truths[onset]["transparent_volume_m3"]
    # Cracks are excluded from the porosity.
    assert truths[-1]["porosity"] == pytest.approx(truths[0]["porosity"], abs=0.01)


def test_li_in_cracks_follows_plating_and_stripping(damage_history) -> None:
    """Li enters a crack while its origin electrode plates and leaves while it strips."""
    _, states, signs, truths = damage_history
    checked = 0
    for origin, plates_sign in (("working", -1), ("counter", +1)):
        li = [t["crack_li_volume_by_origin_m3"][origin] for t in truths]
        state_li = [sum(c.li_volume_m3 for c in s.cracks if c.origin == origin) for s in states]
        for k, sign in enumerate(signs):
            before, after = li[k], li[k + 1]
            if (state_li[k] == 0.0 and state_li[k + 1] == 0.0) or states[k + 1].shorted:
                continue
            if sign == plates_sign:
                assert after > before, (origin, k)
            else:
                assert after < before, (origin, k)
            checked += 1
    assert checked >= 6


def test_cracks_start_at_the_stripping_electrode(damage_history) -> None:
    pellet, states, signs, _ = damage_history
    onset = next(i for i, s in enumerate(states) if s.cracks)
    state = states[onset]
    first = state.cracks[0]
    stripping = "working" if signs[onset - 1] > 0 else "counter"
    assert first.origin == stripping == "working"
    labels = pellet.labels(state=state)
    zc, yc, xc = np.nonzero(np.isin(labels, CRACK_PHASES))
    top, bot = pellet.geometry.interfaces_rows
    depth_rows = first.depth_fraction * (bot - top)
    # An edge chip hanging from the working interface, no deeper than the crack's depth.
    assert zc.min() == int(np.ceil(top - 0.5))
    assert zc.max() + 0.5 - top <= depth_rows + 1
    # It starts at the nucleus near the rim, at the crack's angle.
    g = pellet.geometry
    r = first.radius_fraction * g.pellet_radius_m / g.voxel_m
    ny, nx = g.shape[1:]
    y0, x0 = ny / 2 + r * np.sin(first.angle_rad), nx / 2 + r * np.cos(first.angle_rad)
    at_face = zc == zc.min()
    dist = np.hypot(yc[at_face] + 0.5 - y0, xc[at_face] + 0.5 - x0)
    assert dist.min() < 2.0
    assert first.radius_fraction > 0.8


def test_crack_path_prefers_higher_porosity() -> None:
    """Averaged over many cracks, the path runs through higher-than-average local porosity."""
    states, _ = _hold_series("A-LPS", 0.08, 7, 600.0)
    final = states[-1]
    gains = []
    for seed in range(6):
        pellet = VirtualPellet("LiI-AN", seed=seed)
        g = pellet.geometry
        z_mid = 0.5 * g.shape[0] * g.voxel_m
        rng = np.random.default_rng(seed)
        for path, _arc in pellet.crack_paths(final):
            along = pellet.local_porosity_field(z_mid, path[1:, 0], path[1:, 1]).mean()
            # Reference: straight paths of the same length from the same nucleus.
            ref_dirs = rng.uniform(0, 2 * np.pi, 64)
            length = np.hypot(*(path[-1] - path[0]))
            ys = path[0, 0] + np.outer(np.sin(ref_dirs), np.linspace(0, length, 8)[1:])
            xs = path[0, 1] + np.outer(np.cos(ref_dirs), np.linspace(0, length, 8)[1:])
            ref = pellet.local_porosity_field(z_mid, ys, xs).mean()
            gains.append(along - ref)
    assert np.mean(gains) > 0.0


def test_electrode_thicknesses_follow_charge() -> None:
    geometry = CellGeometry.insitu()
    cell = VirtualCell("LiI-AN", geometry, seed=0)
    pellet = VirtualPellet("LiI-AN")
    current = 0.04 * 10.0 * geometry.area_m2
    cell.hold(current, np.linspace(0.0, 3600.0, 5)[1:])
    state = cell.state
    assert not state.cracks
    dz = cp.LI_MOLAR_VOLUME_M3_MOL * current * 3600.0 / (cp.FARADAY_C_MOL * geometry.area_m2)
    t0 = pellet.ground_truth()["electrode_thickness_m"]
    t1 = pellet.ground_truth(state)["electrode_thickness_m"]
    assert t1[0] == pytest.approx(t0[0] - dz, rel=1e-6)  # working stripped
    assert t1[1] == pytest.approx(t0[1] + dz, rel=1e-6)  # counter plated
    # In voxels: +12 µm on the counter electrode (4 rows of 3 µm), -6 µm on the working one.
    thick = dataclasses.replace(
        state,
        working=dataclasses.replace(state.working, li_thickness_m=144e-6),
        counter=dataclasses.replace(state.counter, li_thickness_m=162e-6),
    )
    n0 = pellet.ground_truth()["voxel_counts"]["LITHIUM"]
    n1 = pellet.ground_truth(thick)["voxel_counts"]["LITHIUM"]
    assert n1 - n0 == 2 * int(pellet.inside.sum())
    z = pellet.interfaces_z(thick)
    assert z["counter_outer"] - z["electrolyte_counter"] == pytest.approx(12.0)
    assert z["working_electrolyte"] - z["working_outer"] == pytest.approx(6.0)


# --- what the projector needs beyond the grid ---------------------------------------------
def test_outside_grid_chord() -> None:
    small = VirtualPellet("A-LPS")
    assert np.all(small.outside_grid_chord_m(np.linspace(-2e-4, 2e-4, 9), 0.3) == 0.0)
    full = PelletGeometry.full()  # the geometry alone: no fields at full size
    # Through the axis: 3 mm of pellet, 1.4 mm (θ = 0) or the diagonal (θ = 45°) in the grid.
    assert full.outside_grid_chord_m(0.0, 0.0) == pytest.approx(3.0e-3 - 1.4e-3)
    assert full.outside_grid_chord_m(0.0, np.pi / 4) == pytest.approx(3.0e-3 - 1.4e-3 * 2**0.5)
    # Beyond the grid's reach, the whole chord; beyond the pellet, nothing.
    assert full.outside_grid_chord_m(1.2e-3, 0.0) == pytest.approx(
        2 * np.sqrt(1.5e-3**2 - 1.2e-3**2)
    )
    assert full.outside_grid_chord_m(1.6e-3, 0.0) == 0.0
    fractions = small.row_phase_fractions()
    assert fractions.shape == (64, len(Phase))
    assert np.allclose(fractions.sum(axis=1), 1.0)
    assert fractions[30, Phase.PORE] == pytest.approx(0.48)
