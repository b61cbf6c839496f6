"""Align the scans of one experiment: the translation of each volume against a reference.

Between the steps of an in-situ experiment the cell is cycled on the rotation stage and may
shift by a few voxels (stage repeatability, the cell settling under stack pressure). Step-to-step
comparisons (cracks that grow, the transparent volume, porosity-factor maps) need the volumes in
one frame. The shift is found by phase correlation (``skimage.registration``) on a binned copy
of a central slab — the pellet's pores make a rich, unique texture — then refined on the full
resolution slab, and applied when a volume is read (integer part by slicing, no resampling, so
grey values are untouched; the sub-voxel remainder is reported, not interpolated).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Shift", "align_to", "apply_shift"]


@dataclass(frozen=True)
class Shift:
    """Translation (voxels, z y x) that maps a moving volume onto the reference.

    ``reference[z, y, x] ≈ moving[z - dz, y - dy, x - dx]``.
    """

    dz: float
    dy: float
    dx: float
    error: float  # skimage's normalised RMS error of the correlation peak (0 = perfect)

    @property
    def integer(self) -> tuple[int, int, int]:
        """The shift rounded to whole voxels (what :func:`apply_shift` applies)."""
        return (round(self.dz), round(self.dy), round(self.dx))


def _slab(volume: np.ndarray, rows: tuple[int, int] | None) -> np.ndarray:
    nz = volume.shape[0]
    z0, z1 = rows if rows is not None else (nz // 4, nz - nz // 4)
    if not 0 <= z0 < z1 <= nz:
        raise ValueError(f"rows must lie within 0 … {nz}, got {rows}")
    return np.asarray(volume[z0:z1], dtype=np.float32)


def align_to(
    reference: np.ndarray,
    moving: np.ndarray,
    *,
    rows: tuple[int, int] | None = None,
    upsample: int = 10,
) -> Shift:
    """Translation of ``moving`` against ``reference`` (same shape), by phase correlation.

    Parameters
    ----------
    reference, moving : array-like, shape (nz, ny, nx)
        Reconstructed volumes (grey values) of the same cell at two steps; any sliceable
        array (a Zarr array is read only over ``rows``).
    rows : (int, int), optional
        Rows used for the correlation; default the central half. A slab thick enough to
        contain the largest expected shift is enough.
    upsample : int
        Sub-voxel precision 1/``upsample``.

    Returns
    -------
    Shift
    """
    if tuple(reference.shape) != tuple(moving.shape):
        raise ValueError(
            f"volumes must have the same shape to be aligned, got {reference.shape} and "
            f"{moving.shape}; crop them to a common field of view first"
        )
    ref = _slab(reference, rows)
    mov = _slab(moving, rows)
    # Imported here: skimage.registration costs 0.35 s, which every `insitu recon` paid
    # even with its centre given.
    from skimage.registration import phase_cross_correlation

    shift, error, _ = phase_cross_correlation(
        ref, mov, upsample_factor=max(1, int(upsample)), normalization=None
    )
    dz, dy, dx = (float(s) for s in shift)
    return Shift(dz, dy, dx, float(error))


def apply_shift(volume: np.ndarray, shift: Shift, *, fill: float = 0) -> np.ndarray:
    """``moving`` translated by the integer part of ``shift`` into the reference frame.

    Voxels that come from outside the moving volume are ``fill``. No interpolation: grey
    values, and thresholds applied to them, stay exactly as reconstructed.
    """
    vol = np.asarray(volume)
    out = np.full(vol.shape, fill, dtype=vol.dtype)
    src, dst = [], []
    for s, n in zip(shift.integer, vol.shape, strict=True):
        if abs(s) >= n:
            return out
        src.append(slice(max(0, -s), n - max(0, s)))
        dst.append(slice(max(0, s), n - max(0, -s)))
    out[tuple(dst)] = vol[tuple(src)]
    return out
