"""The pellet source's shortcuts change nothing: frames made ahead, rows projected once."""

from __future__ import annotations

import numpy as np
import pytest

from insitu.simulators.imaging.frame_source import PelletFrameSource
from insitu.simulators.imaging.xray import Projector, attenuation_coefficients, label_table

N = 8


def _requests(source: PelletFrameSource) -> list[np.ndarray]:
    """A scan's requests: darks, flats, nominal projections, one off-nominal, flats again."""
    step = np.pi / N
    frames = [source(0.0, "dark") for _ in range(3)]
    frames += [source(0.0, "flat") for _ in range(3)]
    frames += [source(k * step, "projection") for k in range(5)]
    frames.append(source(6.3 * step, "projection"))  # a fly scan's angle: not guessed
    frames.append(source(7 * step, "projection"))
    frames += [source(0.0, "flat") for _ in range(2)]
    return frames


def test_frames_made_ahead_equal_frames_made_on_the_spot() -> None:
    ahead = PelletFrameSource("LiI-AN", 5.0, size="small", n_projections=N, frames_ahead=2)
    spot = PelletFrameSource("LiI-AN", 5.0, size="small", n_projections=N, frames_ahead=0)
    try:
        got, want = _requests(ahead), _requests(spot)
        assert ahead._ahead is not None and spot._ahead is None
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b)
        # A new scan of the same state repeats its noise, made ahead or not.
        ahead.restart_noise()
        spot.restart_noise()
        np.testing.assert_array_equal(ahead(0.0, "dark"), spot(0.0, "dark"))
    finally:
        ahead.close()
        spot.close()
    assert not ahead._pending


def test_repeated_rows_are_projected_once_and_equal_their_projection() -> None:
    source = PelletFrameSource("A-LPS", size="small", n_projections=N, frames_ahead=0)
    nz, ny, nx = source.geometry.shape
    # The Li and piston rows repeat: far fewer rows projected than the grid has.
    assert source.rows_projected < nz - 8
    table = label_table(attenuation_coefficients("A-LPS"))
    angles = np.append(source.angles_rad, np.pi)
    projector = Projector((ny, nx), angles, voxel_size_m=source.geometry.voxel_m)
    direct = projector.project_labels(source.labels(), table)
    # Equal within the projector's tolerance (1e-4): the transform pairs rows, so a row's
    # last digits depend on the row it was paired with.
    np.testing.assert_allclose(source._stores.mu, direct, rtol=0, atol=2e-5 * direct.max())
    source.close()


@pytest.mark.parametrize("frames_ahead", [0, 2])
def test_close_stops_the_workers(frames_ahead: int) -> None:
    source = PelletFrameSource("LiI-AN", size="small", n_projections=4, frames_ahead=frames_ahead)
    source(0.0, "projection")
    source.close()
    assert source._ahead is None and not source._pending


def test_store_on_disk_equals_the_store_in_memory(tmp_path) -> None:
    kwargs = {"size": "small", "n_projections": N, "frames_ahead": 0}
    disk = PelletFrameSource("A-LPS", 3.0, workdir=tmp_path, ram_limit_bytes=0, **kwargs)
    ram = PelletFrameSource("A-LPS", 3.0, **kwargs)
    assert isinstance(disk._stores.mu, np.memmap) and not isinstance(ram._stores.mu, np.memmap)
    np.testing.assert_array_equal(np.asarray(disk._stores.mu), ram._stores.mu)
    np.testing.assert_array_equal(disk(0.3, "projection"), ram(0.3, "projection"))
    disk.close()
    ram.close()
