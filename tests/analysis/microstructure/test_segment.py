"""ImageJ thresholds, the study threshold and the interfaces of the virtual pellet.

Thresholds are checked on histograms whose ImageJ level is computed by hand, and against
scikit-image where the definitions coincide (Otsu on an integer image, one value per bin).
The interfaces are checked on the simulator's label volume turned into noisy grey values
(the reconstructed scan is checked in ``test_pores.py``).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from skimage.filters import threshold_isodata, threshold_otsu

from insitu.analysis.microstructure.segment import (
    Interfaces,
    StudyThreshold,
    binarize,
    electrolyte_rows,
    estimate_pellet_radius,
    find_interfaces,
    grey_histogram,
    pellet_mask,
    row_profile,
    threshold_isodata_ij,
    threshold_otsu_ij,
)
from insitu.simulators.pellet.model import VirtualPellet
from insitu.simulators.pellet.phases import Phase

#: Grey values of the phases in the label-derived test volumes (Li and pores dark).
GREY = {Phase.OUTSIDE: 0, Phase.LITHIUM: 25, Phase.ELECTROLYTE: 180, Phase.PORE: 35}


def grey_from_labels(labels: np.ndarray, noise: float, seed: int = 0) -> np.ndarray:
    lut = np.zeros(256, dtype=np.float64)
    for phase, g in GREY.items():
        lut[phase] = g
    lut[Phase.CRACK] = GREY[Phase.PORE]
    lut[Phase.CRACK_LITHIUM] = GREY[Phase.LITHIUM]
    g = lut[labels] + np.random.default_rng(seed).normal(0.0, noise, labels.shape)
    return np.clip(np.rint(g), 0, 255).astype(np.uint8)


def hist(pairs: dict[int, int]) -> np.ndarray:
    h = np.zeros(256, dtype=np.int64)
    for k, v in pairs.items():
        h[k] = v
    return h


# --- thresholds on hand-computable histograms ------------------------------------------------
def test_default_isodata_two_spikes_is_their_midpoint() -> None:
    # Classes {50} and {200} for every level in between: result = 125 at each step, the
    # loop stops once movingIndex + 1 > 125.
    assert threshold_isodata_ij(hist({50: 10, 200: 10})) == 125
    # Unequal weights do not move the IsoData midpoint of two spikes.
    assert threshold_isodata_ij(hist({50: 1, 200: 100})) == 125
    # (10 + 20) / 2 = 15; 0.5 rounds up like Java's Math.round: (10 + 21) / 2 = 15.5 → 16.
    assert threshold_isodata_ij(hist({10: 3, 20: 1})) == 15
    assert threshold_isodata_ij(hist({10: 3, 21: 1})) == 16


def test_default_isodata_ignores_extreme_bins_like_imagej() -> None:
    h = hist({0: 1000, 100: 10, 255: 1000})
    # Bins 0 and 255 dropped: one occupied bin left → ImageJ's fallback, 256 // 2.
    assert threshold_isodata_ij(h) == 128
    # Kept, the two big spikes dominate: the level settles at ≈ (0 + 255) / 2.
    assert threshold_isodata_ij(h, ignore_extremes=False) == 128
    assert threshold_isodata_ij(hist({0: 5, 60: 5, 160: 5})) == 110


def test_otsu_hand_computed_and_first_maximum() -> None:
    # Two spikes: every level between them separates them equally; ImageJ keeps the first.
    assert threshold_otsu_ij(hist({50: 10, 200: 10})) == 50
    # Three spikes 0, 100, 200 with weights 1, 1, 2: splitting after 100 gives the larger
    # between-class variance (w0 w1 (μ1 - μ0)² = ½·½·(200 - 50)² vs ¼·¾·(166.7)²).
    assert threshold_otsu_ij(hist({0: 1, 100: 1, 200: 2})) == 100


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_thresholds_agree_with_skimage_on_uint8(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 20000
    img = np.concatenate(
        [rng.normal(60 + 10 * seed, 12, n), rng.normal(170, 20, int(n * (0.5 + 0.3 * seed)))]
    )
    img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    h = np.bincount(img, minlength=256)
    # Same definition (classes ≤ k and > k, first maximum): identical levels.
    assert threshold_otsu_ij(h) == threshold_otsu(img)
    # skimage's IsoData is the smallest fixed point t = (μ(≤t) + μ(>t))/2; ImageJ's Default
    # iterates up to the same fixed point and rounds: within one grey level.
    assert abs(threshold_isodata_ij(h) - threshold_isodata(img)) <= 1


def test_bad_histograms_are_refused() -> None:
    with pytest.raises(ValueError, match="histogram"):
        threshold_otsu_ij(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="non-negative"):
        threshold_isodata_ij([1, -1, 3])


# --- the study threshold ---------------------------------------------------------------------
def test_study_threshold_uint8_ge_convention_and_json() -> None:
    vol = np.array([[[10, 99, 100, 101, 200]]], dtype=np.uint8)
    h = hist({10: 5, 200: 5})
    st = StudyThreshold.from_histogram(h, grey_range=(0, 256), method="default")
    assert st.level == 105 and st.value == 106.0  # ImageJ: bins 0..105 dark, 106..255 bright
    assert binarize(np.array([105, 106], dtype=np.uint8), st).tolist() == [False, True]
    assert binarize(vol, 100.0).tolist() == [[[False, False, True, True, True]]]
    back = StudyThreshold.from_json(json.dumps(json.loads(st.to_json())))
    assert back == st
    assert st.value_to_level(st.value) == st.level + 1
    assert st.level_to_value(st.level + 1) == st.value


def test_study_threshold_pools_float_scans_over_a_fixed_range() -> None:
    rng = np.random.default_rng(3)
    scans = [
        np.where(rng.random((8, 16, 16)) < 0.4, 0.3, 1.0) + rng.normal(0, 0.05, (8, 16, 16))
        for _ in range(3)
    ]
    st = StudyThreshold.from_volumes(scans, method="otsu", grey_range=(0.0, 1.5))
    assert st.bin_width == pytest.approx(1.5 / 256)
    assert 0.45 < st.value < 0.85
    pooled = sum(grey_histogram(s, grey_range=(0.0, 1.5)) for s in scans)
    assert StudyThreshold.from_histogram(pooled, grey_range=(0.0, 1.5), method="otsu") == st
    # Applied identically to every scan: the same value, the same rule.
    for s in scans:
        assert np.array_equal(binarize(s, st), s >= st.value)
    auto = StudyThreshold.from_volumes(scans, method="default")  # range from the data
    assert auto.grey_range[0] == pytest.approx(min(float(s.min()) for s in scans))
    with pytest.raises(ValueError, match="method"):
        StudyThreshold.from_volumes(scans, method="triangle")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rows has 2 ranges"):
        StudyThreshold.from_volumes(scans, rows=[(0, 4), (0, 4)])


# --- pellet and interfaces on the virtual pellet ------------------------------------------------
@pytest.fixture(scope="module")
def pellet() -> tuple[VirtualPellet, np.ndarray, dict]:
    vp = VirtualPellet("A-LPS", seed=1)
    return vp, vp.labels(), vp.ground_truth()


def test_pellet_mask_matches_the_simulator(pellet) -> None:
    vp, labels, _ = pellet
    grey = grey_from_labels(labels, noise=8.0)
    r = estimate_pellet_radius(grey[20:40].mean(axis=0))
    true_r = vp.geometry.pellet_radius_m / vp.geometry.voxel_m
    assert r == pytest.approx(true_r, abs=1.0)
    exact = pellet_mask(labels.shape[1:], radius_px=true_r)
    assert np.mean(exact != vp.inside) < 0.002  # a few boundary pixels (< vs ≤)
    with pytest.raises(ValueError, match="radius_px"):
        pellet_mask((8, 8), radius_px=0)


def test_interfaces_within_a_voxel_of_the_truth(pellet) -> None:
    _vp, labels, truth = pellet
    grey = grey_from_labels(labels, noise=20.0)
    inside = pellet_mask(labels.shape[1:], radius_px=estimate_pellet_radius(grey.mean(0)))
    itf = find_interfaces(grey, mask=inside)
    iz = truth["interfaces_z_rows"]
    assert itf.top == pytest.approx(iz["working_electrolyte"], abs=0.25)
    assert itf.bottom == pytest.approx(iz["electrolyte_counter"], abs=0.25)
    assert electrolyte_rows(itf) == (12, 52)
    assert electrolyte_rows(itf, margin_rows=2) == (14, 50)
    assert itf.top_level < itf.electrolyte_level > itf.bottom_level
    assert json.loads(json.dumps(itf.to_dict()))["top"] == itf.top


def test_interfaces_are_sub_voxel_on_a_blurred_step() -> None:
    z = np.arange(40) + 0.5
    # Ideal edges at 10.3 and 29.6 blurred by a Gaussian (σ = 1.5 rows).
    from scipy.special import ndtr

    prof = 0.2 + 0.8 * (ndtr((z - 10.3) / 1.5) - ndtr((z - 29.6) / 1.5))
    itf = find_interfaces(None, profile=prof)
    assert itf.top == pytest.approx(10.3, abs=0.1)
    assert itf.bottom == pytest.approx(29.6, abs=0.1)
    assert isinstance(itf, Interfaces)


def test_interfaces_through_noisy_rows() -> None:
    """Single rows of noise (the beamline's 0.7 µm, few projections) neither split the
    electrolyte nor set the half-way level: the longest run was half the electrolyte
    (interfaces at 352 and 781 where the truth has 143 and 1000)."""
    from scipy.special import ndtr

    z = np.arange(1143) + 0.5
    prof = 0.02 + (ndtr((z - 143.0) / 1.5) - ndtr((z - 1000.0) / 1.5))
    prof[[300, 352, 781, 900]] = 0.3  # dark rows inside the electrolyte
    prof[273] = 1.6  # one row far brighter than the plateau
    itf = find_interfaces(None, profile=prof)
    assert itf.top == pytest.approx(143.0, abs=0.1)
    assert itf.bottom == pytest.approx(1000.0, abs=0.1)


def test_interfaces_behind_bright_current_collectors() -> None:
    # Steel pistons behind both Li electrodes, 20x brighter than the electrolyte: the
    # half-way level first finds only the steel; the electrolyte must still be found.
    z = np.arange(60) + 0.5
    from scipy.special import ndtr

    def step(at: float) -> np.ndarray:
        return ndtr((z - at) / 1.0)

    prof = 0.01 + 1.0 * (step(14.2) - step(45.7)) + 20.0 * (1 - step(5.0) + step(54.5))
    itf = find_interfaces(None, profile=prof)
    assert itf.top == pytest.approx(14.2, abs=0.15)
    assert itf.bottom == pytest.approx(45.7, abs=0.15)
    assert itf.electrolyte_level == pytest.approx(1.01, abs=0.01)
    # Steel on one side only, electrolyte cut by the other edge: still an error.
    with pytest.raises(ValueError, match="both Li electrodes"):
        find_interfaces(None, profile=0.01 + (1 - step(14.2)) + 20.0 * step(54.5))


def test_interface_errors_name_the_fix() -> None:
    with pytest.raises(ValueError, match="both Li electrodes"):
        find_interfaces(None, profile=np.r_[np.ones(5), np.zeros(5)])
    with pytest.raises(ValueError, match="margin_rows"):
        electrolyte_rows((10.0, 12.0), margin_rows=2)
    with pytest.raises(ValueError, match="mask"):
        grey_histogram(np.zeros((2, 3, 3)), grey_range=(0, 1), mask=np.ones((2, 2), bool))


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16])
@pytest.mark.parametrize("grey_range", [(0.0, 256.0), (10.5, 200.3), (-50.0, 60000.0)])
def test_integer_histogram_and_profile_equal_the_float_definition(dtype, grey_range) -> None:
    # Integer volumes take a per-value path; it must bin exactly as the float definition.
    rng = np.random.default_rng(3)
    info = np.iinfo(dtype)
    vol = rng.integers(info.min, info.max, (12, 40, 50), endpoint=True).astype(dtype)
    mask = rng.random((40, 50)) < 0.7
    lo, hi = grey_range
    g = vol[:, mask].astype(np.float64).ravel()
    bins = np.clip(np.floor((g - lo) * 256 / (hi - lo)), 0, 255).astype(int)
    expected = np.bincount(bins, minlength=256)
    got = grey_histogram(vol, grey_range=grey_range, mask=mask, slab_rows=5)
    np.testing.assert_array_equal(got, expected)
    profile = row_profile(vol, mask=mask, slab_rows=5)
    np.testing.assert_allclose(profile, vol[:, mask].astype(np.float64).mean(axis=1), rtol=1e-12)


def test_float_histogram_in_pieces_equals_the_definition(monkeypatch) -> None:
    import insitu.analysis.microstructure.segment as segment

    rng = np.random.default_rng(4)
    vol = rng.normal(0.5, 0.3, (6, 20, 30)).astype(np.float32)
    vol[0, 0, :3] = np.nan  # non-finite values are not counted
    expected = grey_histogram(vol, grey_range=(0.0, 1.0))
    monkeypatch.setattr(segment, "_HISTOGRAM_PIECE", 7)
    np.testing.assert_array_equal(grey_histogram(vol, grey_range=(0.0, 1.0)), expected)
    assert expected.sum() == vol.size - 3


def test_a_volume_without_an_electrode_in_view_is_named() -> None:
    # Cropped to the electrolyte: rows vary by a few per cent (porosity), no Li in view. Any
    # "interface" found in that noise would be wrong; the reason is named instead.
    from insitu.analysis.errors import AnalysisInputError

    rng = np.random.default_rng(0)
    profile = 1.0 + 0.03 * rng.standard_normal(40)
    with pytest.raises(AnalysisInputError, match="no Li electrode is in view"):
        find_interfaces(None, profile=profile)
    # With Li on both sides (a tenth of the electrolyte's grey) the interfaces are found.
    profile[:8] = profile[-8:] = 0.1
    found = find_interfaces(None, profile=profile)
    assert found.top == pytest.approx(8.0, abs=0.5) and found.bottom == pytest.approx(32.0, abs=0.5)
