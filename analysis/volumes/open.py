"""Open any volume file: the format from the suffix (or the folder's contents), the voxel size
from the file's metadata or the caller, and a clear error for anything else."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from ..errors import AnalysisInputError, InputFileNotFoundError
from .arrays import is_zarr_store, open_npy, open_zarr
from .hdf5 import HDF5_SUFFIXES, open_hdf5
from .levels import decode_levels
from .opened import Opened
from .tiff import TIFF_SUFFIXES, open_tiff_file, open_tiff_folder
from .units import RTOL, check_isotropic
from .volume import Volume

__all__ = ["FORMATS", "VoxelSizeWarning", "open_volume"]

#: What :func:`open_volume` reads, for messages and help texts.
FORMATS = "TIFF stack (.tif/.tiff) or folder of TIFF slices, HDF5 (.h5/.hdf5/.hdf), .npy, Zarr"


class VoxelSizeWarning(UserWarning):
    """The voxel size given differs from the file's; the one given is used."""


def _open(path: Path, dataset: str | None) -> Opened:
    suffix = path.suffix.lower()
    hierarchical = suffix in HDF5_SUFFIXES or is_zarr_store(path)
    if dataset is not None and not hierarchical:
        raise AnalysisInputError(
            f"{path} holds one volume: dataset= (--dataset) applies to HDF5 and Zarr groups only"
        )
    if path.is_dir():
        if is_zarr_store(path):
            return open_zarr(path, dataset)
        if suffix == ".zarr":
            raise AnalysisInputError(f"{path} is not a Zarr store (no zarr.json or .zarray)")
        return open_tiff_folder(path)
    if suffix in TIFF_SUFFIXES:
        return open_tiff_file(path)
    if suffix in HDF5_SUFFIXES:
        return open_hdf5(path, dataset)
    if suffix == ".npy":
        return open_npy(path)
    raise AnalysisInputError(
        f"cannot read {path}: {suffix or 'no suffix'} is not a volume format; give a {FORMATS}"
    )


#: More voxels than numpy can index: a file that claims more is damaged (and Zarr would look
#: for the chunks of such rows for ever).
_MAX_VOXELS = int(np.iinfo(np.intp).max)


def _check_size(opened: Opened, path: Path) -> None:
    shape = tuple(int(n) for n in opened.reader.shape)
    if math.prod(shape) > _MAX_VOXELS:
        raise AnalysisInputError(
            f"{path} claims a volume of shape {shape}, more voxels than any array can hold: "
            "its metadata is damaged; write it again"
        )


def _voxel(opened: Opened, path: Path, voxel_um: float | None) -> tuple[float | None, str | None]:
    """The voxel edge to use and where it came from (the explicit one wins, with a warning)."""
    edges = opened.edges_um
    if voxel_um is not None:
        if not voxel_um > 0:
            raise AnalysisInputError(f"voxel_um must be positive (µm), got {voxel_um}")
        if edges is not None and any(abs(e - voxel_um) > RTOL * voxel_um for e in edges):
            shown = " × ".join(f"{e:g}" for e in edges)
            warnings.warn(
                f"{path}: the voxel size given ({voxel_um:g} µm) differs from the file's "
                f"({shown} µm, {opened.edges_from}); using {voxel_um:g} µm",
                VoxelSizeWarning,
                stacklevel=3,
            )
        return float(voxel_um), "explicit"
    if edges is None:
        return None, None
    return check_isotropic(edges, where=f"{path} ({opened.edges_from})"), "metadata"


def open_volume(
    path: str | Path, *, dataset: str | None = None, voxel_um: float | None = None
) -> Volume:
    """Open a 3-D volume ``(z, y, x)`` for reading, lazily, whatever its format.

    Parameters
    ----------
    path : str or Path
        A multi-page TIFF (ImageJ hyperstack or plain; 8-, 16-, 32-bit integer or float), a
        folder of numbered single-page TIFF slices, an HDF5 file (``.h5``, ``.hdf5``,
        ``.hdf``), a ``.npy`` array or a Zarr store (as ``insitu recon`` writes).
    dataset : str, optional
        HDF5 dataset (or Zarr group member) holding the volume. Default: the file's only 3-D
        dataset, else the one at a conventional path (``/exchange/data``, ``/data``,
        ``/volume``, ``/recon`` …).
    voxel_um : float, optional
        Voxel edge in µm. Default: from the file's metadata (ImageJ calibration, HDF5 or Zarr
        attributes, the Data Exchange objective resolution); given, it wins over the file's,
        with a :class:`VoxelSizeWarning` when they differ.

    Returns
    -------
    Volume
        Read-only; ``vol[z0:z1]`` reads only those rows. ``voxel_um`` is None when neither
        the file nor the caller gives it. An 8-bit file that records its grey range
        (``insitu export-volume --bits 8``) reads as grey values, float32 (:mod:`.levels`).
        Rows that cannot be read (a damaged chunk or page) raise AnalysisInputError when they
        are read.

    Raises
    ------
    InputFileNotFoundError
        No such file or folder.
    AnalysisInputError
        An unknown format, a 2-D image, several candidate datasets, slices that differ,
        anisotropic voxels in the metadata, a damaged file (one its library cannot parse, a
        shape beyond any array's); the message says the fix.
    """
    path = Path(path)
    if not path.exists():
        raise InputFileNotFoundError(f"no volume at {path}")
    opened = decode_levels(_open(path, dataset))
    try:
        _check_size(opened, path)
        voxel, voxel_from = _voxel(opened, path, voxel_um)
    except BaseException:
        if opened.closer is not None:
            opened.closer()
        raise
    return Volume(
        opened.reader,
        source=path,
        format=opened.format,
        attrs=opened.attrs,
        voxel_um=voxel,
        voxel_from=voxel_from,
        closer=opened.closer,
    )
