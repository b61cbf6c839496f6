"""Volumes that are arrays already: ``.npy`` files (memory mapped) and Zarr stores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AnalysisInputError
from .hdf5 import _DatasetReader
from .opened import Opened
from .units import voxel_um_from_attributes

__all__ = ["is_zarr_store", "open_npy", "open_zarr"]


def open_npy(path: Path) -> Opened:
    """A ``.npy`` array, memory mapped (no voxel size: the format records none)."""
    try:
        data = np.load(path, mmap_mode="r", allow_pickle=False)
    except MemoryError:
        raise
    except Exception as exc:
        # ValueError and OSError for what numpy checks; for a damaged header also what parsing
        # it runs into (tokenize.TokenError, SyntaxError, OverflowError, EOFError ...).
        raise AnalysisInputError(
            f"{path} is not a readable .npy array ({type(exc).__name__}: {exc})"
        ) from None
    _check_3d(data.shape, data.dtype, str(path))
    return Opened(reader=_DatasetReader(data, str(path)), format="npy")


def is_zarr_store(path: Path) -> bool:
    """A Zarr v2 or v3 store (array or group) on disk."""
    return path.is_dir() and any(
        (path / name).exists() for name in ("zarr.json", ".zarray", ".zgroup")
    )


def _check_3d(shape: tuple[int, ...], dtype: Any, where: str) -> None:
    if len(shape) == 2:
        raise AnalysisInputError(
            f"{where} is one {shape[0]}×{shape[1]} image: one slice is not a volume"
        )
    if len(shape) != 3:
        raise AnalysisInputError(f"{where} has shape {shape}: a volume is 3-D (z, y, x)")
    if np.dtype(dtype).kind not in "uifb":
        raise AnalysisInputError(f"{where} holds {dtype}, not grey values")


def _zarr_array(node: Any, path: Path, dataset: str | None) -> Any:
    import zarr

    if isinstance(node, zarr.Array):
        return node
    if dataset is not None:
        try:
            found = node[dataset.strip("/")]
        except KeyError:
            found = None
        if not isinstance(found, zarr.Array):
            raise AnalysisInputError(f"{path} has no array {dataset}")
        return found
    arrays = [(name, a) for name, a in node.members(max_depth=None) if isinstance(a, zarr.Array)]
    volumes = [(name, a) for name, a in arrays if a.ndim == 3]
    if len(volumes) == 1:
        return volumes[0][1]
    if not volumes:
        raise AnalysisInputError(f"{path} is a Zarr group with no 3-D array")
    names = ", ".join(name for name, _ in volumes)
    raise AnalysisInputError(
        f"{path} holds several volumes ({names}): name one with dataset= (--dataset NAME)"
    )


def open_zarr(path: Path, dataset: str | None = None) -> Opened:
    """A Zarr array (as ``insitu recon`` writes), or the 3-D array of a Zarr group."""
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
        # A group's members and an array's attributes are read as they are asked for.
        data = _zarr_array(node, path, dataset)
        _check_3d(tuple(data.shape), data.dtype, str(path))
        attrs = dict(data.attrs)
    except (AnalysisInputError, MemoryError):
        raise
    except Exception as exc:  # zarr raises many types for metadata it cannot read
        raise AnalysisInputError(
            f"{path} is not a readable Zarr store ({type(exc).__name__}: {exc})"
        ) from None
    edge = voxel_um_from_attributes(attrs, where=str(path))
    return Opened(
        reader=_DatasetReader(data, str(path)),
        format="zarr",
        attrs=attrs,
        edges_um=None if edge is None else (edge, edge, edge),
        edges_from="Zarr attributes",
    )
