"""Write a volume as an ImageJ hyperstack TIFF that Fiji opens with the right scale.

8-bit maps grey values onto the study threshold's 256 bins (:func:`grey_levels`): level ``i``
holds ``lo + i·w ≤ g < lo + (i+1)·w`` with ``w = (hi - lo) / 256``, exactly the bins of
:func:`insitu.analysis.microstructure.segment.grey_histogram`. So Fiji's histogram of the
8-bit file is the study's histogram, its Default/Otsu level is the study's level, and
thresholding the file at ImageJ level ``k`` (``grey > k``) selects the voxels the analysis
calls solid (``grey ≥ value``). 32-bit writes float32 values unchanged.

The file is written page by page from slabs of the volume: never the whole volume in memory.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AnalysisInputError, OutputExistsError
from .tiff import _tifffile

__all__ = ["grey_levels", "grey_range_of", "write_tiff"]

NBINS = 256

#: Bytes of the volume read at a time while writing.
_SLAB_BYTES = 256 * 2**20


def grey_levels(values: np.ndarray, grey_range: tuple[float, float]) -> np.ndarray:
    """Grey values as 8-bit levels: the index of their bin among 256 over ``grey_range``.

    Values below ``lo`` are 0, values ≥ ``hi`` are 255 (ImageJ clamps the same way); NaN is 0.

    Parameters
    ----------
    values : ndarray
    grey_range : (float, float)
        ``(lo, hi)``, the study's grey range (``StudyThreshold.grey_range``).

    Returns
    -------
    ndarray of uint8, the shape of ``values``
    """
    lo, hi = (float(v) for v in grey_range)
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise AnalysisInputError(
            f"grey_range must be finite (lo, hi) with hi > lo, got {grey_range}"
        )
    scaled = (np.asarray(values, dtype=np.float64) - lo) * (NBINS / (hi - lo))
    np.floor(scaled, out=scaled)
    np.nan_to_num(scaled, copy=False, nan=0.0)
    return np.clip(scaled, 0, NBINS - 1).astype(np.uint8)


def _rows_per_slab(volume: Any) -> int:
    row = int(np.prod(volume.shape[1:])) * 8  # the float64 temporaries of grey_levels
    return max(1, min(int(volume.shape[0]), _SLAB_BYTES // max(1, row)))


def grey_range_of(volume: Any) -> tuple[float, float]:
    """The finite minimum and maximum of a volume (read slab by slab), as a grey range.

    ``hi`` is nudged up so that the maximum falls inside the last bin, as the study
    threshold does with its pooled extremes.
    """
    lo, hi = math.inf, -math.inf
    step = _rows_per_slab(volume)
    for a in range(0, volume.shape[0], step):
        slab = np.asarray(volume[a : a + step])
        finite = slab[np.isfinite(slab)] if slab.dtype.kind == "f" else slab
        if finite.size:
            lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
    if not hi > lo:
        raise AnalysisInputError(
            "the volume is constant (or all NaN): no grey range to scale to 8 bits; write it "
            "as 32-bit, or give grey_range=(lo, hi) (--grey-range LO,HI)"
        )
    return lo, hi + (hi - lo) * 1e-9


def _pages(
    volume: Any,
    convert: Callable[[np.ndarray], np.ndarray],
    on_rows: Callable[[int], None] | None,
) -> Iterator[np.ndarray]:
    step = _rows_per_slab(volume)
    for a in range(0, volume.shape[0], step):
        slab = convert(np.asarray(volume[a : a + step]))
        yield from slab
        if on_rows is not None:
            on_rows(len(slab))


def write_tiff(
    volume: Any,
    path: str | Path,
    *,
    bits: int = 32,
    grey_range: tuple[float, float] | None = None,
    voxel_um: float | None = None,
    threshold_level: int | None = None,
    overwrite: bool = False,
    on_rows: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Write a 3-D volume as one ImageJ hyperstack TIFF, slab by slab.

    Parameters
    ----------
    volume : Volume or array_like, shape (nz, ny, nx)
        Anything sliceable along z (:func:`~.open_volume`'s volumes, numpy, Zarr, h5py).
    path : str or Path
        The ``.tif`` to write.
    bits : {8, 32}
        8: grey levels of the study's 256 bins over ``grey_range`` (:func:`grey_levels`);
        32: float32 grey values unchanged.
    grey_range : (float, float), optional
        8-bit only: the grey values of levels 0 and 256, the study threshold's
        ``grey_range`` so that a threshold in Fiji equals the analysis's. Default: the
        volume's finite minimum and maximum (:func:`grey_range_of`, one extra pass).
    voxel_um : float, optional
        Voxel edge (µm) written as ImageJ's calibration (resolution, ``spacing``, ``unit``
        micron). Default ``volume.voxel_um``; without any the file is uncalibrated.
    threshold_level : int, optional
        8-bit only: the study's ImageJ level, recorded in the file's Info.
    overwrite : bool
        Replace an existing ``path``.
    on_rows : callable, optional
        Called with the number of rows after each slab is written (a progress bar).

    Returns
    -------
    dict
        ``path``, ``shape``, ``bits``, ``voxel_um``, ``grey_range`` (None for 32-bit),
        ``bytes``.
    """
    path = Path(path)
    if bits not in (8, 32):
        raise AnalysisInputError(f"bits must be 8 or 32, got {bits}")
    shape = tuple(int(s) for s in volume.shape)
    if len(shape) != 3:
        raise AnalysisInputError(f"a volume is 3-D (z, y, x), got shape {shape}")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists: choose another --out or pass --overwrite")
    if voxel_um is None:
        voxel_um = getattr(volume, "voxel_um", None)
    info = [
        "insitu export-volume",
        f"source={getattr(volume, 'source', '')}",
        f"bits={bits}",
    ]
    metadata: dict[str, Any] = {"axes": "ZYX"}
    if bits == 8:
        if grey_range is None:
            grey_range = grey_range_of(volume)
        lo, hi = (float(v) for v in grey_range)
        grey_levels(np.zeros(1), (lo, hi))  # checks the range before anything is written
        info += [
            f"grey_min={lo!r}",
            f"grey_max={hi!r}",
            "level i holds grey_min + i*(grey_max-grey_min)/256 <= grey < the next level",
        ]
        if threshold_level is not None:
            info.append(f"study threshold level={int(threshold_level)} (pores: 0..level)")
        # Outside ImageJ's Info, as key=value lines of its description (ImageJ ignores them).
        metadata.update(grey_min=lo, grey_max=hi, min=0.0, max=255.0)
        dtype: Any = np.uint8

        def convert(slab: np.ndarray) -> np.ndarray:
            return grey_levels(slab, (lo, hi))
    else:
        dtype = np.float32
        grey_range = None

        def convert(slab: np.ndarray) -> np.ndarray:
            return slab.astype(np.float32, copy=False)

    # What the analysis reads from a volume's attributes travels with it: the scan it came
    # from (its energy, its material) and the units of the values (μ per voxel; 8-bit levels
    # read back as grey values within half a bin), so the TIFF analyses as the original does.
    attrs = dict(getattr(volume, "attrs", {}) or {})
    if attrs.get("source"):
        metadata["source"] = str(attrs["source"])
    if attrs.get("units"):
        # 8-bit too: its levels read back as grey values in these units (.levels).
        metadata["units"] = str(attrs["units"])
    kwargs: dict[str, Any] = {}
    if voxel_um is not None:
        if not voxel_um > 0:
            raise AnalysisInputError(f"voxel_um must be positive (µm), got {voxel_um}")
        kwargs["resolution"] = (1.0 / voxel_um, 1.0 / voxel_um)
        metadata.update(spacing=float(voxel_um), unit="micron")
        info.append(f"voxel_um={voxel_um!r}")
    metadata["Info"] = "\n".join(info)
    tifffile = _tifffile()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        tifffile.imwrite(
            partial,
            _pages(volume, convert, on_rows),
            shape=shape,
            dtype=dtype,
            imagej=True,
            metadata=metadata,
            **kwargs,
        )
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    # Only a complete file gets the name asked for.
    partial.replace(path)
    return {
        "path": str(path),
        "shape": list(shape),
        "bits": bits,
        "voxel_um": None if voxel_um is None else float(voxel_um),
        "grey_range": None if grey_range is None else [float(v) for v in grey_range],
        "bytes": path.stat().st_size,
    }
