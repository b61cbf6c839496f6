"""The steel current collectors (pistons) of the virtual pellet, and the Li thickness they reveal.

At 25 keV Li attenuates almost like argon, so a Li surface facing gas is invisible in a
reconstruction; the stainless-steel pistons pressed against the Li make its outer surface a
strong edge. These tests check the labels, what the projector sees through the steel, and
that a reconstructed scan gives back the truth's Li thickness.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from insitu.analysis.microstructure.electrodes import electrode_thickness
from insitu.analysis.tomo.prep.flat_field import minus_log, normalize
from insitu.analysis.tomo.recon.algorithm import GridrecPlan
from insitu.simulators.cell import parameters as cp
from insitu.simulators.cell.model import CellGeometry, VirtualCell
from insitu.simulators.imaging.frame_source import pellet_frame_source
from insitu.simulators.imaging.xray import Detector, attenuation_coefficients, scan_frames
from insitu.simulators.materials import MATERIALS
from insitu.simulators.pellet.model import PelletGeometry, VirtualPellet
from insitu.simulators.pellet.phases import PHASE_MATERIALS, Phase

VOXEL_UM = 3.0


def _with_li(state, working_m: float, counter_m: float):
    return dataclasses.replace(
        state,
        working=dataclasses.replace(state.working, li_thickness_m=working_m),
        counter=dataclasses.replace(state.counter, li_thickness_m=counter_m),
    )


# --- labels ------------------------------------------------------------------------------
def test_collector_is_a_new_label_and_stainless_steel() -> None:
    # Existing labels keep their values (they are stored with every scan's ground truth).
    assert [int(p) for p in Phase][:6] == [0, 1, 2, 3, 4, 5]
    assert Phase.COLLECTOR == max(Phase)
    steel = PHASE_MATERIALS[Phase.COLLECTOR]
    assert steel.density_g_cm3 == pytest.approx(8.0)
    assert all(el in steel.formula for el in ("Fe", "Cr", "Ni", "Mo"))


def test_collector_follows_the_li_surfaces() -> None:
    pellet = VirtualPellet("A-LPS", seed=0)
    nz = pellet.geometry.shape[0]
    pristine = VirtualCell("A-LPS", seed=0).state
    # Working electrode stripped by 4.5 µm (1.5 rows), counter plated by 6 µm (2 rows).
    cell_li = pellet.geometry.cell_li_thickness_m
    state = _with_li(pristine, cell_li - 4.5e-6, cell_li + 6e-6)
    counts = []
    for s in (None, state):
        labels = pellet.labels(state=s)
        z = pellet.interfaces_z(s)
        column = labels[:, 64, 64]
        rows = np.arange(nz) + 0.5
        beyond = (rows < z["working_outer"]) | (rows >= z["counter_outer"])
        assert np.all(column[beyond] == Phase.COLLECTOR)
        assert not np.any(column[~beyond] == Phase.COLLECTOR)
        # The pistons have the pellet's radius: gas around them.
        assert np.all(labels[:, ~pellet.inside] == Phase.OUTSIDE)
        counts.append(pellet.ground_truth(s)["voxel_counts"])
    n_disc = int(pellet.inside.sum())
    # 1.5 rows stripped: the outer surface at 5.5 (row 4 steel, row 5 Li); 2 rows plated:
    # two rows of steel become Li. One row of the disc changes hands overall.
    assert counts[1]["COLLECTOR"] - counts[0]["COLLECTOR"] == -n_disc
    assert counts[1]["LITHIUM"] - counts[0]["LITHIUM"] == n_disc
    # Beyond the pellet's rows the homogeneous material is steel.
    fractions = pellet.row_phase_fractions(state=state)
    assert np.all(fractions[:5, Phase.COLLECTOR] == 1.0) and fractions[5, Phase.LITHIUM] == 1.0
    assert np.all(fractions[-2:, Phase.COLLECTOR] == 1.0)
    assert np.allclose(fractions.sum(axis=1), 1.0)
    # All Li stripped: the piston touches the electrolyte.
    bare = pellet.labels(state=_with_li(pristine, cell_li - 30e-6, cell_li))
    top = int(pellet.geometry.interfaces_rows[0])
    assert bare[top - 1, 64, 64] == Phase.COLLECTOR and bare[top, 64, 64] != Phase.COLLECTOR


def test_no_collector_in_view_at_full_size() -> None:
    """The 150 µm foils reach beyond the beamline grid, however far the cell is cycled."""
    pellet = VirtualPellet("A-LPS", PelletGeometry.full(), seed=0)
    g = pellet.geometry
    z = pellet.interfaces_z()
    margin_m = min(-z["working_outer"], z["counter_outer"] - g.shape[0]) * g.voxel_m
    # The most Li any preset moves before the in-situ cell fails (all of it on one side).
    area = CellGeometry.insitu().area_m2
    q_max = max(m.insitu_charge_to_failure_mC for m in MATERIALS.values()) * 1e-3
    dh_max = cp.LI_MOLAR_VOLUME_M3_MOL * q_max / (cp.FARADAY_C_MOL * area)
    assert margin_m > 10 * dh_max  # ≈ 50 µm of Li beyond the grid vs ≈ 1.7 µm moved
    assert not pellet.row_phase_fractions()[:, Phase.COLLECTOR].any()
    for z0 in (0, g.shape[0] - 1):
        assert not np.any(pellet.labels(z0, z0 + 1) == Phase.COLLECTOR)


# --- what the projector sees -------------------------------------------------------------
def test_steel_transmits_a_few_percent_and_survives_normalisation() -> None:
    pellet_radius_m = PelletGeometry.small().pellet_radius_m
    for material in MATERIALS:
        mu = attenuation_coefficients(material, 25.0)
        # Brighter than any electrolyte, and Li is next to nothing beside it.
        assert mu[Phase.COLLECTOR] > 4 * mu[Phase.ELECTROLYTE]
        assert mu[Phase.COLLECTOR] > 1000 * mu[Phase.LITHIUM]
    mu = attenuation_coefficients("A-LPS", 25.0)
    transmission = np.exp(-mu[Phase.COLLECTOR] * 2 * pellet_radius_m)
    assert 0.01 < transmission < 0.05  # measured 1.57 % through 360 µm

    source = pellet_frame_source("A-LPS", 0.0, "small", 4, 0)
    darks = np.stack([source(0.0, "dark") for _ in range(4)])
    flats = np.stack([source(0.0, "flat") for _ in range(4)]) * source.exposure_s
    proj = np.stack([source(a, "projection") for a in source.angles_rad]) * source.exposure_s
    norm = normalize(proj, flats, darks)
    steel_rows = list(range(4))  # beyond the pristine working Li
    centre = round(source.rotation_axis_column)
    measured = norm[:, steel_rows, centre - 1 : centre + 2].mean()
    assert measured == pytest.approx(transmission, rel=0.05)
    # Far above the −log floor (1e-6) and the dark level: the line integral is recovered.
    assert norm[:, steel_rows].min() > 0.005
    assert minus_log(norm)[:, steel_rows, centre].mean() == pytest.approx(
        mu[Phase.COLLECTOR] * 2 * pellet_radius_m, rel=0.02
    )
    assert (proj[:, steel_rows] - darks.mean(0)[steel_rows]).min() > 100  # ADU above dark


# --- reconstruction → thickness ----------------------------------------------------------
def _reconstruct(pellet: VirtualPellet, state, n_angles: int = 180) -> np.ndarray:
    """Scan (the simulator's projector and camera) and reconstruct (FBP) a pellet state."""
    g = pellet.geometry
    nz, _, nx = g.shape
    angles = np.arange(n_angles) * np.pi / n_angles
    # The small-size photon count of the frame source: 1e4 per 0.7 µm pixel, per area.
    photons = 1e4 * (g.voxel_m / 0.7e-6) ** 2
    detector = Detector((nz, nx), flat_photons=photons, gain=40000 / photons, seed=0)
    chunks = list(
        scan_frames(
            lambda z0, z1: pellet.labels(z0, z1, state),
            angles,
            voxel_size_m=g.voxel_m,
            material=pellet.material.name,
            n_rows=nz,
            detector=detector,
            n_darks=4,
            n_flats=8,
            angles_per_chunk=n_angles,
        )
    )
    dark, flat, proj = (c.frames for c in chunks)
    sino = minus_log(normalize(proj, flat, dark))
    return GridrecPlan(angles, nx, center=(nx - 1) / 2.0).reconstruct(sino)


def _thickness_um(volume: np.ndarray, pellet: VirtualPellet) -> np.ndarray:
    table = electrode_thickness(
        volume,
        voxel_um=VOXEL_UM,
        interfaces=pellet.geometry.interfaces_rows,
        mask=pellet.inside,
    )
    assert (table[["top_status", "bottom_status"]] == "ok").all().all()
    return table[["top_um", "bottom_um"]].mean().to_numpy()


def test_plating_and_stripping_show_in_the_reconstructed_thickness() -> None:
    """A step that strips 5 µm from the working Li and plates it on the counter Li.

    (The in-situ protocol moves at most ≈ 0.5 µm of Li before an A-LPS cell fails, which
    never moves a surface across a row centre of the 3 µm labels; hence a larger step.)
    """
    pellet = VirtualPellet("A-LPS", seed=0)
    pristine = VirtualCell("A-LPS", seed=0).state
    cell_li = pellet.geometry.cell_li_thickness_m
    states = [pristine, _with_li(pristine, cell_li - 5e-6, cell_li + 5e-6)]
    measured = np.array([_thickness_um(_reconstruct(pellet, s), pellet) for s in states])
    truth = np.array([pellet.electrode_thicknesses_m(s) for s in states]) * 1e6
    assert np.abs(measured - truth).max() <= VOXEL_UM
    change = np.diff(measured, axis=0)[0]
    assert change[0] < 0 < change[1]  # working stripped, counter plated
    # The labels put each surface at a whole row (5 µm → 2 rows): within a row of the truth.
    assert change == pytest.approx(np.diff(truth, axis=0)[0], abs=VOXEL_UM)


@pytest.mark.slow
def test_tomo_scan_and_recon_give_the_truth_thickness(tmp_path) -> None:
    """``insitu tomo-scan --sim A-LPS`` then ``insitu recon``: the truth's Li within a voxel."""
    import zarr

    from insitu.protocols.cli import main

    for charge in (0.0, 20.0):
        scan, out = tmp_path / f"s{charge:g}.h5", tmp_path / f"v{charge:g}.zarr"
        argv = ["tomo-scan", "--sim", "A-LPS", "--charge-mC", str(charge), "--out", str(scan)]
        assert main([*argv, "--quiet"]) == 0
        assert main(["recon", str(scan), "--out", str(out), "--quiet"]) == 0
        truth = json.loads(scan.with_suffix(".truth.json").read_text())
        volume = zarr.open_array(str(out), mode="r")
        iz = truth["interfaces_z_rows"]
        radius = truth["pellet_radius_px"]
        ny, nx = volume.shape[1:]
        yy, xx = np.mgrid[:ny, :nx] + 0.5
        disc = np.hypot(yy - ny / 2, xx - nx / 2) <= radius - 2
        table = electrode_thickness(
            volume,
            voxel_um=truth["voxel_m"] * 1e6,
            interfaces=(iz["working_electrolyte"], iz["electrolyte_counter"]),
            mask=disc,
        )
        assert (table[["top_status", "bottom_status"]] == "ok").all().all()
        true_um = truth["electrode_thickness_m"]
        mean = table[["top_um", "bottom_um"]].mean()
        assert mean["top_um"] == pytest.approx(true_um["working"] * 1e6, abs=VOXEL_UM)
        assert mean["bottom_um"] == pytest.approx(true_um["counter"] * 1e6, abs=VOXEL_UM)
        # The steel rows reconstruct to the steel's μ (per voxel) within a few %.
        mu = attenuation_coefficients("A-LPS")[Phase.COLLECTOR] * truth["voxel_m"]
        steel = np.asarray(volume[1:3])[:, disc].mean()
        assert steel == pytest.approx(mu, rel=0.03)
