"""Transparent volume in the electrolyte, Li electrode thickness, and charge per electrode."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from insitu.analysis.microstructure.electrodes import (
    charge_balance,
    electrode_thickness,
    thickness_locations,
    thickness_to_charge_mC,
    transparent_volume,
)
from insitu.simulators.cell import parameters as cp
from insitu.simulators.cell.model import CellGeometry, VirtualCell
from insitu.simulators.imaging.xray import attenuation_coefficients, label_table
from insitu.simulators.pellet.model import VirtualPellet
from insitu.simulators.pellet.phases import Phase

TRANSPARENT = [Phase.PORE, Phase.CRACK, Phase.CRACK_LITHIUM, Phase.LITHIUM]


@pytest.fixture(scope="module")
def history():
    """A-LPS above its critical current: 10 min half-cycles (strip the working one first)."""
    geometry = CellGeometry.insitu()
    cell = VirtualCell("A-LPS", geometry, seed=0)
    current = 0.08 * 10.0 * geometry.area_m2
    states, t = [cell.state], 0.0
    for k in range(8):
        times = t + np.linspace(0.0, 600.0, 11)[1:]
        cell.hold((1 if k % 2 == 0 else -1) * current, times)
        t = float(times[-1])
        states.append(cell.state)
    return VirtualPellet("A-LPS", seed=0), states


def test_transparent_volume_changes_with_the_right_sign(history) -> None:
    pellet, states = history
    measured, truth = [], []
    for s in states:
        binary = np.isin(pellet.labels(state=s), TRANSPARENT)
        measured.append(
            transparent_volume(
                binary,
                voxel_um=3.0,
                interfaces=pellet.geometry.interfaces_rows,
                mask=pellet.inside,
                slab_rows=7,
            )
        )
        truth.append(pellet.ground_truth(s)["transparent_volume_m3"] * 1e18)
    d_meas, d_true = np.diff(measured), np.diff(truth)
    assert np.all(d_true != 0)
    assert np.array_equal(np.sign(d_meas), np.sign(d_true))  # every step
    assert measured == pytest.approx(truth, rel=1e-9)
    # The Li electrodes and the air around the pellet are transparent too: both excluded.
    with pytest.raises(ValueError, match="interfaces"):
        transparent_volume(binary, voxel_um=3.0, interfaces=(40.0, 10.0))


def _with_li(state, working_m: float, counter_m: float):
    return dataclasses.replace(
        state,
        working=dataclasses.replace(state.working, li_thickness_m=working_m),
        counter=dataclasses.replace(state.counter, li_thickness_m=counter_m),
    )


@pytest.mark.parametrize("method", ["collector", "threshold"])
@pytest.mark.parametrize(
    ("working_um", "counter_um"), [(150.0, 150.0), (144.0, 159.0), (139.5, 158.1), (131.0, 157.0)]
)
def test_thickness_within_a_voxel(working_um: float, counter_um: float, method: str) -> None:
    pellet = VirtualPellet("LiI-AN", seed=0)
    state = _with_li(VirtualCell("LiI-AN", seed=0).state, working_um * 1e-6, counter_um * 1e-6)
    # The grid holds 12 rows (36 µm) below the counter interface: thinner Li fits in view,
    # and the steel piston fills the rows beyond it.
    labels = pellet.labels(state=state)
    if method == "collector":
        # Attenuation per phase (what a reconstruction shows): Li ≈ argon, steel brightest.
        mu = attenuation_coefficients("LiI-AN")
        volume = label_table(mu)[labels]
        threshold = None
    else:
        volume = np.isin(labels, [Phase.LITHIUM]).astype(np.float32)  # a Li indicator
        threshold = 0.5
    table = electrode_thickness(
        volume,
        voxel_um=3.0,
        interfaces=pellet.geometry.interfaces_rows,
        threshold=threshold,
        mask=pellet.inside,
    )
    assert len(table) == 15 and not table[["top_cut", "bottom_cut"]].any().any()
    assert (table[["top_status", "bottom_status"]] == "ok").all().all()
    true_um = np.array(pellet.electrode_thicknesses_m(state)) * 1e6
    mean = table[["top_um", "bottom_um"]].mean().to_numpy()
    assert np.all(np.abs(mean - true_um) <= 3.0)


def test_thickness_is_sub_voxel_on_grey_profiles_and_flags_cut_electrodes() -> None:
    z = np.arange(40) + 0.5
    top_outer, bottom_outer = 6.3, 33.8  # Li between these surfaces and the interfaces
    # Partial-volume profile: each row holds the fraction of its height that is Li (level 1)
    # against argon (level 0); the electrolyte (level 3) between rows 15 and 25. Linear
    # interpolation at the half level is within 0.15 voxel of a sharp edge (exact for a
    # symmetric blur).
    li = np.clip(z + 0.5 - top_outer, 0, 1) * np.clip(bottom_outer - (z - 0.5), 0, 1)
    profile = np.where((z > 15) & (z < 25), 3.0, li)
    vol = np.broadcast_to(profile[:, None, None], (40, 20, 20))
    t = electrode_thickness(
        vol, voxel_um=1.0, interfaces=(15.0, 25.0), threshold=0.5, window_um=8.0
    )
    assert t["top_um"].to_numpy() == pytest.approx(15.0 - top_outer, abs=0.15)
    assert t["bottom_um"].to_numpy() == pytest.approx(bottom_outer - 25.0, abs=0.15)
    # The counter Li runs out of a field of view that ends at row 30: visible part, flagged.
    cut = electrode_thickness(
        vol[:30], voxel_um=1.0, interfaces=(15.0, 25.0), threshold=0.5, window_um=8.0
    )
    assert cut["bottom_cut"].all() and cut["bottom_um"].to_numpy() == pytest.approx(5.0)
    assert not cut["top_cut"].any()


def test_locations_are_a_3x5_grid_inside_the_pellet() -> None:
    pellet = VirtualPellet("LiI-AN", seed=0)
    centres = thickness_locations((128, 128), window_px=10, mask=pellet.inside)
    assert centres.shape == (15, 2)
    assert len(np.unique(centres[:, 0])) == 3 and len(np.unique(centres[:, 1])) == 5
    for y, x in centres:
        assert pellet.inside[y - 5 : y + 5, x - 5 : x + 5].all()
    # Spread over the pellet, not bunched at the centre.
    assert np.ptp(centres[:, 1]) > 60
    with pytest.raises(ValueError, match="window"):
        thickness_locations((128, 128), window_px=200, mask=pellet.inside)


def test_charge_conversion_is_analytic() -> None:
    # 1 µm of Li over 1 cm²: 1e-4 cm³ · 0.534 g/cm³ / 6.94 g/mol · 96485 C/mol.
    assert thickness_to_charge_mC(1.0) == pytest.approx(1e-4 * 0.534 / 6.94 * 96485 * 1e3)
    assert thickness_to_charge_mC(1.0) == pytest.approx(742.4, abs=0.1)
    assert thickness_to_charge_mC(np.array([2.0, -1.0]), area_cm2=0.5) == pytest.approx(
        [742.41, -371.20], abs=0.02
    )
    with pytest.raises(ValueError, match="area_cm2"):
        thickness_to_charge_mC(1.0, area_cm2=0.0)


def test_charge_from_the_cells_thickness_change() -> None:
    """The virtual cell's Li thickness change converts back to the charge it passed."""
    geometry = CellGeometry.insitu()
    cell = VirtualCell("LiI-AN", geometry, seed=0)
    pellet = VirtualPellet("LiI-AN", seed=0)
    current = 0.04 * 10.0 * geometry.area_m2  # below the CCD: no cracks, no Li held
    thick = [pellet.electrode_thicknesses_m()]
    cell.hold(current, np.linspace(0.0, 1800.0, 7)[1:])
    thick.append(pellet.electrode_thicknesses_m(cell.state))
    cell.hold(-current, 1800.0 + np.linspace(0.0, 1800.0, 7)[1:])
    thick.append(pellet.electrode_thicknesses_m(cell.state))
    assert not cell.state.cracks
    um = np.array(thick) * 1e6
    area_cm2 = geometry.area_m2 * 1e4
    table = charge_balance(
        um[:, 0], um[:, 1], area_cm2=area_cm2, charge_passed_mC=[current * 1.8e6] * 2
    )
    # ρ/M of the analysis and the simulator's molar volume (13.0 cm³/mol) agree to 0.05 %.
    assert table["plated_mC"].to_numpy() == pytest.approx(table["charge_passed_mC"], rel=5e-4)
    assert table["stripped_mC"].to_numpy() == pytest.approx(table["charge_passed_mC"], rel=5e-4)
    assert np.abs(table["imbalance_mC"]).max() < 1e-3 * table["plated_mC"].max()
    # Working stripped first, then plated.
    assert table["q_top_mC"].iloc[0] < 0 < table["q_top_mC"].iloc[1]
    assert cp.LI_MOLAR_VOLUME_M3_MOL == pytest.approx(6.94 / 0.534 * 1e-6, rel=5e-4)


def test_imbalance_shows_li_held_in_cracks() -> None:
    # 1 µm stripped from the top, only 0.8 µm plated on the bottom: 20 % stays in cracks.
    t = charge_balance([20.0, 19.0], [20.0, 20.8], area_cm2=1.0)
    assert t["stripped_mC"].iloc[0] == pytest.approx(742.4, abs=0.1)
    assert t["imbalance_mC"].iloc[0] == pytest.approx(0.2 * 742.4, abs=0.05)
    with pytest.raises(ValueError, match="top_um"):
        charge_balance([1.0], [1.0], area_cm2=1.0)
