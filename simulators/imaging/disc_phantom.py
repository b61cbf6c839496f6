"""A small analytic frame source: an off-axis absorbing disc, for tests and demonstrations.

Cheap enough to run in an IOC at hundreds of frames per second, and importable by path
(``insitu.simulators.imaging.disc_phantom:disc_frame_source``) with JSON keyword arguments, which
is how
the EPICS flavour of the beamline (:mod:`insitu.simulators.beamline.ioc`) is told its source.
"""

from __future__ import annotations

import math

import numpy as np

from ..beamline.devices import FrameSource

__all__ = ["disc_frame_source"]


def disc_frame_source(
    rows: int = 32,
    cols: int = 48,
    *,
    radius_px: float = 8.0,
    offset_px: float = 6.0,
    mu_per_px: float = 0.05,
    flat_counts_s: float = 2e4,
    dark_counts: float = 100.0,
    noise_counts: float = 5.0,
) -> FrameSource:
    """Frame source of a disc of radius ``radius_px`` turning ``offset_px`` off the axis.

    Parameters
    ----------
    rows, cols : int
        Frame shape.
    radius_px : float
        Disc radius in pixels.
    offset_px : float
        Distance of the disc centre from the rotation axis, pixels.
    mu_per_px : float
        Linear attenuation coefficient per pixel of path.
    flat_counts_s : float
        Open-beam counts per second (the camera multiplies by the exposure).
    dark_counts : float
        Dark offset, counts per frame.
    noise_counts : float
        Standard deviation of Gaussian noise, seeded by the angle so that a frame is
        reproducible.

    Returns
    -------
    callable
        ``frame_source(angle_rad, kind) -> (rows, cols)`` array.
    """
    if rows <= 0 or cols <= 0:
        raise ValueError(f"frame shape must be positive, got rows={rows}, cols={cols}")
    x0 = np.arange(cols) - cols / 2

    def frame_source(angle_rad: float, kind: str) -> np.ndarray:
        rng = np.random.default_rng(int(angle_rad * 1e6) % 2**32)
        noise = rng.normal(0.0, noise_counts, (rows, cols))
        if kind == "dark":
            return dark_counts + noise
        flat = np.full((rows, cols), flat_counts_s) + noise
        if kind == "flat":
            return flat
        x = x0 - offset_px * math.cos(angle_rad)
        path = 2.0 * np.sqrt(np.clip(radius_px**2 - x**2, 0.0, None))
        return flat * np.exp(-mu_per_px * path)[None, :]

    return frame_source
