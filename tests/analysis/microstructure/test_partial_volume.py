"""The partial-volume porosity: linear mixing of solid and void, calibrated per study."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from insitu.analysis.errors import AnalysisInputError
from insitu.analysis.microstructure.partial_volume import (
    PhaseLevels,
    pv_porosity,
    solid_level_from_composition,
)
from insitu.analysis.microstructure.pores import porosity
from insitu.analysis.microstructure.segment import StudyThreshold, grey_histogram

SOLID, VOID = 200.0, 40.0


def _fine_pores(shape: tuple[int, int, int], fraction: float, seed: int = 0) -> np.ndarray:
    """Pores of 2×2×2 fine voxels at random places (no overlap), ``fraction`` of the volume."""
    rng = np.random.default_rng(seed)
    cells = rng.random(tuple(s // 2 for s in shape)) < fraction
    return np.kron(cells, np.ones((2, 2, 2), dtype=bool))


@pytest.fixture(scope="module")
def partial_volume_scan() -> tuple[np.ndarray, float]:
    """A two-phase volume downsampled 4×: every pore is sub-voxel, most voxels pure solid."""
    pores = _fine_pores((96, 192, 192), 0.06)
    fine = np.where(pores, VOID, SOLID)
    coarse = fine.reshape(24, 4, 48, 4, 48, 4).mean(axis=(1, 3, 5))
    return coarse.astype(np.float32), float(pores.mean())


def test_recovers_the_fraction_where_the_paper_method_does_not(partial_volume_scan) -> None:
    grey, truth = partial_volume_scan
    threshold = StudyThreshold.from_volumes([grey], grey_range=(0.0, 256.0))
    paper = porosity(grey, threshold)
    hist = grey_histogram(grey, grey_range=(0.0, 256.0))
    levels = PhaseLevels.from_histogram(hist, grey_range=(0.0, 256.0), void=VOID)
    assert levels.solid_source == "histogram peak"
    assert levels.solid == pytest.approx(SOLID, abs=1.0)  # within the 1-grey bin
    assert pv_porosity(grey, levels) == pytest.approx(truth, abs=0.004)
    assert abs(paper - truth) > 0.015  # all-or-nothing per voxel


def test_blur_keeps_the_mean(partial_volume_scan) -> None:
    """The reconstruction's blur moves grey between voxels: known levels stay exact."""
    grey, truth = partial_volume_scan
    blurred = ndimage.gaussian_filter(grey, 0.7, mode="wrap")
    threshold = StudyThreshold.from_volumes([blurred], grey_range=(0.0, 256.0))
    assert abs(porosity(blurred, threshold) - truth) > 0.1  # blurred pores: a wrong split
    assert pv_porosity(blurred, PhaseLevels(SOLID, VOID)) == pytest.approx(truth, abs=1e-4)


def test_noise_averages_out(partial_volume_scan) -> None:
    grey, truth = partial_volume_scan
    rng = np.random.default_rng(1)
    noisy = grey + rng.normal(0.0, 0.3 * (SOLID - VOID), grey.shape).astype(np.float32)
    # Per-voxel fractions go outside [0, 1] and are kept: their noise cancels in the mean.
    assert pv_porosity(noisy, PhaseLevels(SOLID, VOID)) == pytest.approx(truth, abs=0.003)


def test_void_level_from_a_pore_peak() -> None:
    rng = np.random.default_rng(2)
    pores = rng.random((20, 40, 40)) < 0.3
    grey = np.where(pores, VOID, SOLID) + rng.normal(0, 8.0, pores.shape)
    hist = grey_histogram(grey, grey_range=(0.0, 256.0))
    levels = PhaseLevels.from_histogram(hist, grey_range=(0.0, 256.0))
    assert levels.void_source == "histogram peak"
    assert levels.void == pytest.approx(VOID, abs=2.0)
    assert levels.solid == pytest.approx(SOLID, abs=2.0)
    assert pv_porosity(grey, levels) == pytest.approx(pores.mean(), abs=0.01)


def test_void_is_physical_without_a_pore_peak(partial_volume_scan) -> None:
    grey, _ = partial_volume_scan
    hist = grey_histogram(grey, grey_range=(0.0, 256.0))
    levels = PhaseLevels.from_histogram(hist, grey_range=(0.0, 256.0))
    assert (levels.void, levels.void_source) == (0.0, "physical (μ ≈ 0)")


@pytest.mark.parametrize(
    "histogram",
    [np.zeros(256), np.linspace(1000, 0, 256), np.r_[np.full(128, 50.0), np.zeros(128)]],
    ids=["empty", "falling", "dark only"],
)
def test_calibration_refuses_a_histogram_without_a_solid_peak(histogram) -> None:
    with pytest.raises(AnalysisInputError, match=r"no electrolyte \(solid\) peak.*solid_level"):
        PhaseLevels.from_histogram(histogram, grey_range=(0.0, 256.0))


def test_levels_must_be_ordered() -> None:
    with pytest.raises(AnalysisInputError, match="above the void level"):
        PhaseLevels(10.0, 20.0)


def test_slab_by_slab_equals_whole_volume(partial_volume_scan) -> None:
    grey, _ = partial_volume_scan
    levels = PhaseLevels(SOLID, VOID)
    mask = np.zeros(grey.shape[1:], dtype=bool)
    mask[5:40, 3:45] = True
    whole = float(np.mean(levels.void_fraction(grey[2:21][:, mask])))
    for slab_rows in (1, 5, 64):
        got = pv_porosity(grey, levels, mask=mask, rows=(2, 21), slab_rows=slab_rows)
        assert got == pytest.approx(whole, rel=1e-9)


def test_non_finite_voxels_are_left_out() -> None:
    grey = np.full((4, 8, 8), SOLID, dtype=np.float32)
    grey[:, :, :2] = VOID
    grey[0] = np.nan
    assert pv_porosity(grey, PhaseLevels(SOLID, VOID)) == pytest.approx(0.25)


def test_solid_level_from_composition() -> None:
    # Li3PS4 at 1.87 g/cm³, 25 keV: μ ≈ 564 1/m, so ≈ 1.69e-3 per 3 µm voxel.
    level = solid_level_from_composition("Li3PS4", 1.87, energy_keV=25.0, voxel_um=3.0)
    assert level == pytest.approx(1.69e-3, rel=0.02)
    with pytest.raises(AnalysisInputError, match="positive"):
        solid_level_from_composition("Li3PS4", 0.0, energy_keV=25.0, voxel_um=3.0)


@pytest.mark.slow
def test_simulated_scan_against_the_truth(tmp_path) -> None:
    """LiI-AN at 3 µm voxels: the paper's method reads ~2× the truth, the estimator ±0.01."""
    import zarr

    from insitu.analysis.microstructure.experiment import Step, TomoSettings, analyze_experiment
    from insitu.protocols.cli import main

    scan, volume = tmp_path / "scan.h5", tmp_path / "volume.zarr"
    assert main(["tomo-scan", "--sim", "LiI-AN", "--out", str(scan), "--quiet"]) == 0
    assert main(["recon", str(scan), "--out", str(volume), "--quiet"]) == 0
    truth = json.loads(scan.with_suffix(".truth.json").read_text())
    solid = solid_level_from_composition("Li3.5PS4I0.5", 2.2, energy_keV=25.0, voxel_um=3.0)
    settings = TomoSettings(voxel_um=3.0, psd=False, solid_level=solid, void_level=0.0)
    result = analyze_experiment([Step("pristine", zarr.open_array(str(volume)))], settings)
    row = result.table.iloc[0]
    assert row["porosity_pv"] == pytest.approx(truth["porosity"], abs=0.01)
    assert abs(row["porosity"] - truth["porosity"]) > 0.03
    assert result.to_dict()["pv_levels"]["solid"] == pytest.approx(solid)
