"""8- and 16-bit volumes that record their grey range: levels written, grey values read back.

``insitu export-volume --bits 8`` maps grey values onto the study's 256 bins over
``(grey_min, grey_max)`` and records the range (:mod:`.write`); ``insitu recon --dtype
uint8|uint16`` does the same with 2⁸ or 2¹⁶ bins (:func:`encode_levels`). Read back as
levels, the volume loses the grey scale the analysis relies on: the pellet's outside is no
longer near 0 (the disc estimate fails) and a solid level in μ per voxel no longer applies.
So a file that records its range is read as the centres of its bins,
``grey_min + (level + ½)·(grey_max − grey_min)/2^bits``: the original volume to within half
a bin.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .opened import Opened

__all__ = ["decode_levels", "encode_levels"]

#: Bins of the level types that can record a grey range.
_NBINS = {np.dtype(np.uint8): 2**8, np.dtype(np.uint16): 2**16}


class _LevelsReader:
    """Reads 8-bit levels and returns the grey values at their bins' centres (float32)."""

    dtype = np.dtype(np.float32)

    def __init__(self, reader: Any, lo: float, hi: float, nbins: int) -> None:
        self._reader = reader
        self.shape = reader.shape
        self._lut = (lo + (np.arange(nbins) + 0.5) * ((hi - lo) / nbins)).astype(np.float32)

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
    nbins = _NBINS.get(np.dtype(opened.reader.dtype))
    if grey_range is None or nbins is None:
        return opened
    lo, hi = grey_range
    opened.reader = _LevelsReader(opened.reader, lo, hi, nbins)
    bits = nbins.bit_length() - 1
    opened.attrs = {
        **opened.attrs,
        "grey_levels": f"{bits}-bit levels read as grey_min + (level + 0.5)·(grey_max − "
        f"grey_min)/{nbins}, grey_min={lo!r}, grey_max={hi!r}",
    }
    return opened


def encode_levels(
    values: np.ndarray, grey_range: tuple[float, float], dtype: Any
) -> tuple[np.ndarray, int]:
    """Grey values as levels: the index of their bin among 2⁸ or 2¹⁶ over ``grey_range``.

    Level ``i`` holds ``lo + i·w ≤ g < lo + (i+1)·w`` with ``w = (hi − lo) / 2^bits`` (the
    bins of the 8-bit export); values below ``lo`` (and NaN) are level 0, values ≥ ``hi``
    the last level. :func:`decode_levels` reads them back within half a bin.

    Parameters
    ----------
    values : ndarray
        Grey values (computed in float32, one slice at a time: no float64 copy of a slab).
    grey_range : (float, float)
        ``(lo, hi)``, finite, ``hi > lo``.
    dtype : numpy dtype
        ``uint8`` or ``uint16``.

    Returns
    -------
    levels : ndarray of ``dtype``, the shape of ``values``
    clipped : int
        How many values fell outside ``[lo, hi)`` (or were NaN) and were set to the end
        levels.
    """
    nbins = _NBINS.get(np.dtype(dtype))
    if nbins is None:
        raise ValueError(f"levels are uint8 or uint16, got {np.dtype(dtype)}")
    lo, hi = (float(v) for v in grey_range)
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise ValueError(f"grey_range must be finite (lo, hi) with hi > lo, got {grey_range}")
    values = np.asarray(values)
    levels = np.empty(values.shape, dtype=dtype)
    scale = np.float32(nbins / (hi - lo))
    clipped = 0
    for index in np.ndindex(values.shape[:1] if values.ndim > 2 else ()):
        scaled = (values[index].astype(np.float32) - np.float32(lo)) * scale
        np.floor(scaled, out=scaled)
        outside = ~((scaled >= 0) & (scaled < nbins))  # NaN is outside too
        clipped += int(np.count_nonzero(outside))
        np.nan_to_num(scaled, copy=False, nan=0.0)
        np.clip(scaled, 0, nbins - 1, out=scaled)
        levels[index] = scaled
    return levels, clipped
