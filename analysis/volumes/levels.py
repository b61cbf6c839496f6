"""8-bit volumes written by ``insitu export-volume``: their levels read back as grey values.

The 8-bit export maps grey values onto the study's 256 bins over ``(grey_min, grey_max)``
and records the range (:mod:`.write`). Read back as levels 0–255, the volume loses the grey
scale the analysis relies on: the pellet's outside is no longer near 0 (the disc estimate
fails) and a solid level in μ per voxel no longer applies. So a file that records its range
is read as the centres of its bins, ``grey_min + (level + ½)·(grey_max − grey_min)/256``:
the original volume to within half a bin.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .opened import Opened

__all__ = ["decode_levels"]

_NBINS = 256


class _LevelsReader:
    """Reads 8-bit levels and returns the grey values at their bins' centres (float32)."""

    dtype = np.dtype(np.float32)

    def __init__(self, reader: Any, lo: float, hi: float) -> None:
        self._reader = reader
        self.shape = reader.shape
        self._lut = (lo + (np.arange(_NBINS) + 0.5) * ((hi - lo) / _NBINS)).astype(np.float32)

    def read(self, z0: int, z1: int, yx: tuple[slice, slice]) -> np.ndarray:
        return self._lut[np.asarray(self._reader.read(z0, z1, yx))]


def _recorded_range(attrs: dict[str, Any]) -> tuple[float, float] | None:
    try:
        lo, hi = float(attrs["grey_min"]), float(attrs["grey_max"])
    except (KeyError, TypeError, ValueError):
        return None
    return (lo, hi) if math.isfinite(lo) and math.isfinite(hi) and hi > lo else None


def decode_levels(opened: Opened) -> Opened:
    """The opened file, its 8-bit levels read as grey values where it records their range.

    Parameters
    ----------
    opened : Opened
        A file as its format's opener returned it.

    Returns
    -------
    Opened
        Unchanged unless the pixels are 8-bit and the metadata hold a finite ``grey_min``
        below ``grey_max`` (what ``insitu export-volume --bits 8`` writes); then its reader
        returns float32 grey values and ``attrs["grey_levels"]`` says how they were made.
    """
    grey_range = _recorded_range(opened.attrs)
    if grey_range is None or np.dtype(opened.reader.dtype) != np.uint8:
        return opened
    lo, hi = grey_range
    opened.reader = _LevelsReader(opened.reader, lo, hi)
    opened.attrs = {
        **opened.attrs,
        "grey_levels": f"8-bit levels read as grey_min + (level + 0.5)·(grey_max − grey_min)/"
        f"{_NBINS}, grey_min={lo!r}, grey_max={hi!r}",
    }
    return opened
