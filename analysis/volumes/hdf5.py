"""HDF5 volumes as TomoPy, tomocupy and dxchange write them: the dataset named or found.

Found means: the only 3-D dataset of the file, else the one 3-D dataset at a conventional
path (:data:`CONVENTIONAL`). A raw Data Exchange scan (projections, flats, darks) is refused
with the command that reconstructs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AnalysisInputError
from .opened import Opened
from .units import _number, to_um, voxel_um_from_attributes

__all__ = ["CONVENTIONAL", "HDF5_SUFFIXES", "open_hdf5"]

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5", ".nxs")

#: Where reconstructions are written by convention (dxchange/tomocupy: /exchange/data).
CONVENTIONAL = (
    "/exchange/data",
    "/exchange/recon",
    "/exchange/volume",
    "/data",
    "/volume",
    "/recon",
    "/reconstruction",
    "/entry/data/data",
)

#: The effective pixel size of a Data Exchange file (the objective's, at the sample).
DX_RESOLUTION = "/measurement/instrument/detection_system/objective/resolution"


def _datasets_3d(f: Any) -> list[str]:
    import h5py

    found: list[str] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset) and obj.ndim == 3:
            found.append("/" + name)

    f.visititems(visit)
    return found


def _choose(f: Any, path: Path, dataset: str | None) -> Any:
    import h5py

    if dataset is not None:
        name = dataset if dataset.startswith("/") else "/" + dataset
        obj = f.get(name)
        if not isinstance(obj, h5py.Dataset):
            raise AnalysisInputError(
                f"{path} has no dataset {name}; its 3-D datasets: "
                f"{', '.join(_datasets_3d(f)) or 'none'}"
            )
        if obj.ndim != 3:
            what = "one slice is not a volume" if obj.ndim == 2 else "a volume is 3-D (z, y, x)"
            raise AnalysisInputError(f"{path}{name} has shape {obj.shape}: {what}")
        return obj
    if "/exchange/data_white" in f or "/exchange/theta" in f:
        raise AnalysisInputError(
            f"{path} is a tomography scan (projections, flats, darks), not a volume: "
            f"reconstruct it first (insitu recon {path.name} --out VOLUME.zarr)"
        )
    candidates = _datasets_3d(f)
    if len(candidates) == 1:
        return f[candidates[0]]
    conventional = [c for c in candidates if c in CONVENTIONAL]
    if len(conventional) == 1:
        return f[conventional[0]]
    if not candidates:
        raise AnalysisInputError(
            f"{path} holds no 3-D dataset (a volume is z, y, x; one slice is not a volume)"
        )
    listed = ", ".join(conventional or candidates)
    raise AnalysisInputError(
        f"{path} holds several volumes ({listed}): name one with dataset= (--dataset NAME)"
    )


def _edge_um(f: Any, data: Any, path: Path) -> tuple[float | None, str]:
    """The voxel edge (µm) from the dataset's, then the file's attributes, then Data Exchange."""
    import h5py

    for obj, where in ((data, f"{path}{data.name}"), (f, str(path))):
        value = voxel_um_from_attributes(dict(obj.attrs), where=where)
        if value is not None:
            return value, f"the attributes of {where}"
    node = f.get(DX_RESOLUTION)
    # Its first value, if a positive number (not text, not an empty array).
    number = _number(node[()]) if isinstance(node, h5py.Dataset) else None
    if number is not None:
        unit = node.attrs.get("units", node.attrs.get("unit", "um"))
        return to_um(number, unit, where=f"{path}{DX_RESOLUTION}"), DX_RESOLUTION
    return None, ""


def open_hdf5(path: Path, dataset: str | None = None) -> Opened:
    """An HDF5 volume: the dataset ``dataset``, or the one found (see the module)."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except Exception as exc:  # OSError, and RuntimeError for some damaged superblocks
        raise _damaged(path, exc) from None
    try:
        data = _choose(f, path, dataset)
        if np.dtype(data.dtype).kind not in "uif":
            raise AnalysisInputError(f"{path}{data.name} holds {data.dtype}, not grey values")
        edge, where = _edge_um(f, data, path)
        attrs = {
            k: (v.item() if isinstance(v, np.generic) else v)
            for k, v in data.attrs.items()
            if isinstance(v, (str, bytes, int, float, np.generic))
        }
        attrs["dataset"] = data.name
    except AnalysisInputError:
        f.close()
        raise
    except Exception as exc:
        # The file's structure is read as it is walked: damaged object headers, links or
        # attributes fail here (OSError, RuntimeError, KeyError, ...).
        f.close()
        raise _damaged(path, exc) from None
    except BaseException:
        f.close()
        raise
    return Opened(
        reader=_DatasetReader(data, f"{path}{data.name}"),
        format="hdf5",
        attrs=attrs,
        edges_um=None if edge is None else (edge, edge, edge),
        edges_from=where,
        closer=f.close,
    )


def _damaged(path: Path, exc: Exception) -> AnalysisInputError:
    """The error for an HDF5 file that h5py cannot open or walk."""
    return AnalysisInputError(
        f"{path} is not a readable HDF5 file ({type(exc).__name__}: {str(exc).strip()[:200]}):"
        " it is damaged or not HDF5; write it again"
    )


#: A read whose chunks decode to fewer bytes than this cannot run out of memory honestly: a
#: MemoryError there comes from a damaged chunk that claims more (a zstd frame header can
#: claim 10**19 bytes, and the codec allocates them before it decodes).
_SMALL_DECODE = 64 * 2**20


class _DatasetReader:
    """Rows of an h5py dataset (or any array sliced natively: Zarr, a memory map).

    ``where`` names the data in the error for rows that cannot be read (a damaged chunk).
    """

    def __init__(self, data: Any, where: str = "the volume") -> None:
        self._data = data
        self._where = where
        self.shape = tuple(data.shape)
        self.dtype = np.dtype(data.dtype)

    def read(self, z0: int, z1: int, yx: tuple[slice, slice]) -> np.ndarray:
        try:
            return np.asarray(self._data[z0:z1, yx[0], yx[1]])
        except MemoryError as exc:
            if self._decoded_bytes(z0, z1, yx) > _SMALL_DECODE:
                raise  # a real shortage of memory, not the file's fault
            raise self._unreadable(z0, z1, exc) from exc
        except Exception as exc:
            # A chunk that fails its checksum or does not decompress: h5py raises OSError,
            # Zarr's codecs RuntimeError, ValueError or TypeError.
            raise self._unreadable(z0, z1, exc) from exc

    def _decoded_bytes(self, z0: int, z1: int, yx: tuple[slice, slice]) -> int:
        """Bytes of the whole chunks that rows ``z0:z1`` (cropped to ``yx``) touch."""
        chunks = getattr(self._data, "chunks", None)
        if not (isinstance(chunks, tuple) and len(chunks) == 3):
            chunks = (1, 1, 1)  # not chunked: the read is the rows asked for
        spans = [(z0, z1), *(s.indices(n)[:2] for s, n in zip(yx, self.shape[1:], strict=True))]
        total = self.dtype.itemsize
        for (a, b), c in zip(spans, chunks, strict=True):
            c = max(int(c), 1)
            total *= max(-(-b // c) - a // c, 0) * c
        return total

    def _unreadable(self, z0: int, z1: int, exc: BaseException) -> AnalysisInputError:
        return AnalysisInputError(
            f"rows {z0}–{z1 - 1} of {self._where} cannot be read "
            f"({type(exc).__name__}: {str(exc).strip()[:200]}): the file is damaged; "
            "write it again"
        )
