"""Flat/dark normalisation, −log with a floor, and zinger removal against known answers."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi

from insitu.analysis.tomo.prep.flat_field import (
    attenuation,
    minus_log,
    normalize,
    remove_outlier,
    remove_zinger,
)


@pytest.fixture
def frames() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Projections of a known transmission through a known beam, with flats and darks."""
    rng = np.random.default_rng(0)
    rows, cols = 16, 24
    dark = 100.0 + rng.uniform(0, 5, (rows, cols))
    beam = 1000.0 * (1.0 + 0.2 * rng.uniform(size=(rows, cols)))
    transmission = rng.uniform(0.1, 1.0, (5, rows, cols))
    projections = (dark + beam * transmission).astype(np.uint16).astype(np.float64)
    exact = (projections - dark) / beam
    flats = np.repeat((dark + beam)[np.newaxis], 4, axis=0)
    darks = np.repeat(dark[np.newaxis], 3, axis=0)
    return projections, flats, darks, exact


def test_normalize_recovers_transmission(frames):
    projections, flats, darks, exact = frames
    result = normalize(projections, flats, darks)
    assert result.dtype == np.float32
    np.testing.assert_allclose(result, exact, rtol=1e-5)


def test_normalize_median_rejects_a_zinger_in_one_flat(frames):
    projections, flats, darks, exact = frames
    flats = flats.copy()
    flats[1, 3, 4] += 50000.0  # a zinger in one flat frame
    np.testing.assert_allclose(
        normalize(projections, flats, darks, averaging="median"), exact, rtol=1e-5
    )
    assert not np.allclose(normalize(projections, flats, darks)[:, 3, 4], exact[:, 3, 4])


def test_normalize_cutoff_single_frame_and_dead_pixel(frames):
    projections, flats, darks, _ = frames
    flats = flats.copy()
    flats[:, 0, 0] = darks[0, 0, 0]  # a dead pixel: flat == dark
    result = normalize(projections[0], flats, darks, cutoff=1.5)
    assert result.shape == projections.shape[1:]
    assert np.all(np.isfinite(result)) and result.max() <= 1.5


def test_normalize_in_place_out(frames):
    projections, flats, darks, exact = frames
    out = projections.astype(np.float32)
    assert normalize(out, flats, darks, out=out) is out
    np.testing.assert_allclose(out, exact, rtol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"averaging": "mode"}, "averaging"),
        ({"cutoff": 0.0}, "cutoff"),
    ],
)
def test_normalize_rejects_bad_arguments(frames, kwargs, match):
    projections, flats, darks, _ = frames
    with pytest.raises(ValueError, match=match):
        normalize(projections, flats, darks, **kwargs)


def test_normalize_rejects_mismatched_flats(frames):
    projections, flats, darks, _ = frames
    with pytest.raises(ValueError, match="flat"):
        normalize(projections, flats[:, :-1], darks)


@pytest.mark.parametrize("dtype", [np.uint16, np.float32, np.float64])
@pytest.mark.parametrize("averaging", ["mean", "median"])
def test_attenuation_is_normalize_then_minus_log_bit_for_bit(frames, dtype, averaging):
    """The one-pass correction the pipeline uses gives exactly the two calls' values, from
    the camera's uint16 frames or from float frames, with the exact attenuation; a dead
    pixel (flat = dark) and a zero frame stay finite through the floor."""
    projections, flats, darks, exact = frames
    raw = projections.astype(dtype)
    raw[2] = 0  # a dropped frame: below the dark, floored
    if raw.dtype.kind == "f":
        raw[1, 0, 0] = np.nan  # a float file's hole: floored as minus_log does
    flats = flats.copy()
    flats[:, 3, 4] = darks[0, 3, 4]  # a dead pixel
    two_calls = minus_log(normalize(raw, flats, darks, averaging=averaging), floor=1e-4)
    one_pass = attenuation(raw, flats, darks, averaging=averaging, floor=1e-4)
    assert one_pass.dtype == np.float32 and np.isfinite(one_pass).all()
    np.testing.assert_array_equal(one_pass, two_calls)
    keep = np.ones(len(raw), bool)
    keep[2] = False
    live = np.ones(exact.shape[1:], bool)
    live[3, 4] = live[0, 0] = False
    np.testing.assert_allclose(one_pass[keep][:, live], -np.log(exact[keep][:, live]), atol=2e-5)
    # One frame, and in place into float32 frames.
    single = attenuation(raw[0], flats, darks, averaging=averaging, floor=1e-4)
    np.testing.assert_array_equal(single, one_pass[0])
    inplace = raw.astype(np.float32)
    assert (
        attenuation(inplace, flats, darks, averaging=averaging, floor=1e-4, out=inplace) is inplace
    )
    np.testing.assert_array_equal(inplace, one_pass)


def test_attenuation_rejects_bad_arguments(frames):
    projections, flats, darks, _ = frames
    with pytest.raises(ValueError, match="floor"):
        attenuation(projections, flats, darks, floor=0.0)
    with pytest.raises(ValueError, match="out must be a float32"):
        attenuation(projections, flats, darks, out=np.empty(projections.shape))
    with pytest.raises(ValueError, match="frames must have"):
        attenuation(projections, flats[:, :-1], darks)


def test_minus_log_floor_keeps_values_finite():
    arr = np.array([1.0, np.exp(-2.0), 0.0, -0.3, np.nan], dtype=np.float32)
    result = minus_log(arr, floor=1e-3)
    assert result.dtype == np.float32
    np.testing.assert_allclose(
        result, [0.0, 2.0, -np.log(1e-3), -np.log(1e-3), -np.log(1e-3)], rtol=1e-6, atol=1e-7
    )
    with pytest.raises(ValueError, match="floor"):
        minus_log(arr, floor=0.0)


@pytest.mark.parametrize("size", [3, 5])
def test_remove_outlier_matches_the_median_rule(size):
    rng = np.random.default_rng(1)
    stack = (1000.0 + 10.0 * rng.standard_normal((3, 64, 80))).astype(np.float32)
    hits = rng.integers(0, 64, 40), rng.integers(0, 80, 40)
    stack[1][hits] += 800.0
    expected = stack.copy()
    for frame in expected:
        median = ndi.median_filter(frame, size=size)
        bad = frame - median > 60.0
        frame[bad] = median[bad]
    result = remove_zinger(stack, 60.0, size=size)
    np.testing.assert_array_equal(result, expected)
    assert result[1].max() < 1100.0  # every zinger gone
    np.testing.assert_array_equal(result[0], stack[0])  # clean frames untouched


def test_remove_outlier_other_axis_and_in_place():
    stack = np.full((4, 10, 12), 5.0, dtype=np.float32)
    stack[2, 5, 6] = 100.0
    assert remove_outlier(stack, 10.0, axis=1, out=stack) is stack
    assert stack.max() == 5.0


@pytest.mark.parametrize(("dif", "size", "match"), [(0.0, 3, "dif"), (1.0, 4, "size")])
def test_remove_outlier_rejects_bad_arguments(dif, size, match):
    with pytest.raises(ValueError, match=match):
        remove_outlier(np.zeros((4, 4)), dif, size=size)
