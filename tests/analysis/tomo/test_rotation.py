"""Rotation centre from analytic sinograms of a porous pellet with a known axis position."""

from __future__ import annotations

import numpy as np
import pytest

from insitu.analysis.errors import AnalysisInputError
from insitu.analysis.tomo.recon.rotation import find_center_pc, find_center_vo


def _pellet(radius: float, offset: tuple[float, float], seed: int) -> list[tuple[float, ...]]:
    """(x0, y0, r, density) discs: a pellet with pores, in pixels from the rotation axis."""
    rng = np.random.default_rng(seed)
    discs = [(offset[0], offset[1], radius, 0.01)]
    for _ in range(60):
        angle, r = rng.uniform(0, 2 * np.pi), radius * np.sqrt(rng.uniform(0, 0.9))
        discs.append(
            (offset[0] + r * np.cos(angle), offset[1] + r * np.sin(angle), rng.uniform(1, 8), -0.01)
        )
    return discs


def _sinogram(cols: int, center: float, discs, theta: np.ndarray, oversample: int = 4):
    """Exact disc projections, averaged over each pixel; the axis at column ``center``."""
    u = (np.arange(cols * oversample) + 0.5) / oversample - 0.5 - center
    sino = np.zeros((theta.size, u.size))
    for x0, y0, r, density in discs:
        p = x0 * np.cos(theta) + y0 * np.sin(theta)
        sino += 2 * density * np.sqrt(np.clip(r**2 - (u[None, :] - p[:, None]) ** 2, 0, None))
    return sino.reshape(theta.size, cols, oversample).mean(axis=2)


THETA = np.linspace(0, np.pi, 360, endpoint=False)


@pytest.mark.parametrize(
    ("shift", "radius", "offset"),
    [
        (37.5, 200.0, (20.0, -10.0)),  # pellet nearly filling the field
        (-120.0, 150.0, (30.0, 15.0)),  # axis far off, pellet truncated at one edge
        (180.25, 60.0, (0.0, 0.0)),  # small sample near the detector's edge
    ],
)
def test_vo_finds_off_centre_axes(shift, radius, offset):
    cols = 512
    center = (cols - 1) / 2 + shift
    sino = _sinogram(cols, center, _pellet(radius, offset, seed=3), THETA)
    sino += np.random.default_rng(0).normal(0, 0.01 * sino.max(), sino.shape)  # 1 % noise
    assert find_center_vo(sino) == pytest.approx(center, abs=0.5)


def test_vo_reads_a_row_of_a_projection_stack():
    cols, center = 256, 127.5 - 40.25
    sino = _sinogram(cols, center, _pellet(90.0, (10.0, 5.0), seed=4), THETA)
    stack = np.stack([np.zeros_like(sino), sino, np.zeros_like(sino)], axis=1)
    assert find_center_vo(stack, ind=1) == pytest.approx(center, abs=0.5)
    # A narrow explicit range (TomoPy's meaning: shifts from the middle) still works.
    assert find_center_vo(sino, smin=-50, smax=-30) == pytest.approx(center, abs=0.5)


def test_phase_correlation_check():
    cols, center = 512, 255.5 - 37.5
    ends = np.array([0.0, np.pi])
    sino = _sinogram(cols, center, _pellet(150.0, (20.0, 5.0), seed=5), ends)
    assert find_center_pc(sino[0], sino[1], tol=0.1) == pytest.approx(center, abs=0.25)
    assert find_center_pc(sino[0], sino[1], tol=0.1, rotc_guess=center + 3) == pytest.approx(
        center, abs=0.25
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"smin": 10, "smax": -10}, "smin"),
        ({"smin": -300, "smax": 0}, "edge"),
        ({"ratio": 0}, "ratio"),
        ({"ind": 5}, "ind"),
    ],
)
def test_vo_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        find_center_vo(np.ones((64, 2, 256)), **kwargs)


def test_vo_search_range_is_the_users_error():
    """A range given as columns (not offsets from the centre) is named as the user's error,
    with the range that would be valid (it was a bare ValueError: exit 1, 'internal error')."""
    with pytest.raises(AnalysisInputError, match=r"column 127\.5 of 256.*-123\.5,123\.5"):
        find_center_vo(np.ones((64, 2, 256)), smin=100, smax=140)
