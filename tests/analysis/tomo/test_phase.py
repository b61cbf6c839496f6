"""Paganin retrieval on a known single-material object propagated with the Fresnel propagator."""

from __future__ import annotations

import math

import numpy as np
import pytest

from insitu.analysis.tomo.prep.flat_field import minus_log
from insitu.analysis.tomo.prep.phase import (
    alpha_from_delta_beta,
    paganin_filter,
    paganin_length,
    retrieve_phase,
)
from insitu.simulators.imaging.detector import fresnel_intensity, wavelength_m

ENERGY_KEV = 25.0
PIXEL_M = 0.7e-6
DISTANCE_M = 0.05
DELTA = 8e-7
DELTA_BETA = 500.0


@pytest.fixture(scope="module")
def sphere() -> tuple[np.ndarray, np.ndarray]:
    """Fresnel intensity of a sphere (radius 80 px) and its projected attenuation μT."""
    mu = 4 * math.pi * (DELTA / DELTA_BETA) / wavelength_m(ENERGY_KEV)
    yy, xx = np.indices((256, 256)) - 127.5
    thickness = 2 * np.sqrt(np.clip(80.0**2 - yy**2 - (xx - 10) ** 2, 0, None)) * PIXEL_M
    intensity = fresnel_intensity(
        np.exp(-mu * thickness), DELTA * thickness, DISTANCE_M, ENERGY_KEV, PIXEL_M
    )
    return intensity.astype(np.float32), mu * thickness


def _retrieve(intensity: np.ndarray, **kwargs) -> np.ndarray:
    kwargs.setdefault("delta_beta", DELTA_BETA)
    return retrieve_phase(intensity, PIXEL_M * 100, DISTANCE_M * 100, ENERGY_KEV, **kwargs)


def _rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)))


def test_paganin_recovers_projected_attenuation(sphere):
    intensity, truth = sphere
    retrieved = minus_log(_retrieve(intensity))
    assert retrieved.dtype == np.float32
    # Measured: RMS 0.6 % of the peak μT; the raw −log(I) is off by 2× the peak (fringes).
    assert _rms(retrieved, truth) < 0.015 * truth.max()
    assert _rms(minus_log(intensity), truth) > 0.5 * truth.max()
    assert retrieved.sum() == pytest.approx(truth.sum(), rel=0.01)


def test_wrong_delta_beta_is_worse(sphere):
    intensity, truth = sphere
    right = _rms(minus_log(_retrieve(intensity)), truth)
    for wrong in (DELTA_BETA / 2, DELTA_BETA * 2):
        assert _rms(minus_log(_retrieve(intensity, delta_beta=wrong)), truth) > 3 * right


def test_alpha_is_tomopys_regularisation(sphere):
    intensity, _ = sphere
    by_alpha = _retrieve(intensity, delta_beta=None, alpha=alpha_from_delta_beta(DELTA_BETA))
    np.testing.assert_allclose(by_alpha, _retrieve(intensity), atol=1e-6)


def test_stack_matches_single_frames_and_out(sphere):
    intensity, _ = sphere
    stack = np.stack([intensity, intensity[::-1]])
    out = np.empty_like(stack)
    assert _retrieve(stack, out=out) is out
    np.testing.assert_allclose(out[1], _retrieve(intensity[::-1]), atol=1e-6)


def test_filter_properties():
    kernel = paganin_filter((64, 64), 7e-5, 5.0, 25.0, alpha_from_delta_beta(DELTA_BETA))
    assert kernel.shape == (64, 33) and kernel.dtype == np.float32
    assert kernel[0, 0] == 1.0 and np.all(np.diff(kernel[0]) < 0)
    # L = √(λ d δ/β / 4π) in pixels.
    expected = math.sqrt(wavelength_m(25.0) * 0.05 * DELTA_BETA / (4 * math.pi)) / PIXEL_M
    assert paganin_length(7e-5, 5.0, 25.0, alpha_from_delta_beta(DELTA_BETA)) == pytest.approx(
        expected, rel=1e-6
    )


def test_open_beam_and_zero_distance_are_unchanged():
    flat = np.ones((40, 50), dtype=np.float32)
    np.testing.assert_allclose(retrieve_phase(flat, delta_beta=300.0), flat, atol=1e-6)
    frame = np.random.default_rng(0).uniform(0.5, 1.0, (40, 50)).astype(np.float32)
    np.testing.assert_array_equal(retrieve_phase(frame, dist=0.0), frame)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"pixel_size": 0.0}, "pixel_size"),
        ({"dist": -1.0}, "dist"),
        ({"energy": 0.0}, "energy"),
        ({"alpha": 0.0}, "alpha"),
        ({"delta_beta": -5.0}, "delta_beta"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        retrieve_phase(np.ones((8, 8), dtype=np.float32), **kwargs)
