"""The lazily read, read-only 3-D volume every reader returns: numpy slicing, slab by slab.

A :class:`Volume` wraps a *reader*: an object with ``shape``, ``dtype`` and
``read(z0, z1, yx)``, which returns rows ``z0:z1`` (cropped to ``yx`` where the format can
read a part of a row cheaply). Slicing ``vol[z0:z1]``, ``vol[z]`` or
``vol[z0:z1, y0:y1, x0:x1]`` reads only those rows from disk, so the analysis, which reads a
volume in z-slabs, never holds more of it than one slab.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

__all__ = ["Volume"]


class Reader(Protocol):
    """What a format's reader gives :class:`Volume`."""

    shape: tuple[int, int, int]
    dtype: np.dtype

    def read(self, z0: int, z1: int, yx: tuple[slice, slice]) -> np.ndarray:
        """Rows ``z0:z1`` (``z0 < z1``), cropped to ``yx`` or whole; shape ``(z1 - z0, …)``."""
        ...


_ALL = (slice(None), slice(None))


def _basic_yx(rest: tuple[Any, ...], shape_yx: tuple[int, ...]) -> tuple[slice, slice] | None:
    """The y, x part of an index as absolute step-1 slices (read natively by every format),
    or None when it is anything else (then applied in memory to whole rows)."""
    if len(rest) > 2 or not all(isinstance(r, slice) and r.step in (None, 1) for r in rest):
        return None
    full = (*rest, *_ALL[len(rest) :])
    out = []
    for s, n in zip(full, shape_yx, strict=True):
        a, b, _ = s.indices(n)
        out.append(slice(a, max(a, b)))
    return (out[0], out[1])


class Volume:
    """A read-only 3-D volume ``(z, y, x)`` on disk, read lazily slab by slab.

    Attributes
    ----------
    shape : (int, int, int)
    dtype : numpy.dtype
        Native byte order.
    ndim : int
        Always 3.
    attrs : dict
        The file's own metadata (Zarr or HDF5 attributes, ImageJ's description, …).
    voxel_um : float or None
        Voxel edge in µm: the file's or the one given to :func:`~.open_volume`.
    voxel_from : {"metadata", "explicit"} or None
        Where ``voxel_um`` came from.
    source : pathlib.Path
        The path opened.
    format : str
        ``"tiff"``, ``"tiff-folder"``, ``"hdf5"``, ``"npy"`` or ``"zarr"``.
    """

    ndim = 3

    def __init__(
        self,
        reader: Reader,
        *,
        source: Path,
        format: str,
        attrs: dict[str, Any] | None = None,
        voxel_um: float | None = None,
        voxel_from: str | None = None,
        closer: Any = None,
    ) -> None:
        self._reader = reader
        self.shape: tuple[int, int, int] = tuple(int(s) for s in reader.shape)  # type: ignore[assignment]
        self.dtype = np.dtype(reader.dtype).newbyteorder("=")
        self.attrs: dict[str, Any] = dict(attrs or {})
        self.voxel_um = voxel_um
        self.voxel_from = voxel_from
        self.source = Path(source)
        self.format = format
        self._closer = closer

    # --- numpy-like ---------------------------------------------------------------------------
    @property
    def size(self) -> int:
        """Number of voxels."""
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        """Bytes of the whole volume in memory."""
        return self.size * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def _rows(self, z0: int, z1: int, yx: tuple[slice, slice]) -> np.ndarray:
        if z1 <= z0:
            ny, nx = (len(range(*s.indices(n))) for s, n in zip(yx, self.shape[1:], strict=True))
            return np.empty((0, ny, nx), dtype=self.dtype)
        out = np.asarray(self._reader.read(z0, z1, yx))
        # Big-endian files (and memory maps) come back as native, writable arrays.
        return out.astype(self.dtype, copy=not out.flags.writeable or out.dtype != self.dtype)

    def __getitem__(self, index: Any) -> np.ndarray:
        key = index if isinstance(index, tuple) else (index,)
        if any(k is Ellipsis for k in key):
            i = next(i for i, k in enumerate(key) if k is Ellipsis)
            fill = (slice(None),) * (self.ndim - (len(key) - 1))
            key = key[:i] + fill + key[i + 1 :]
        if len(key) > self.ndim:
            raise IndexError(f"too many indices for a 3-D volume: {index!r}")
        zkey, rest = (key[0] if key else slice(None)), key[1:]
        nz = self.shape[0]
        yx = _basic_yx(rest, self.shape[1:])
        if isinstance(zkey, slice) and zkey.step in (None, 1):
            z0, z1, _ = zkey.indices(nz)
            if yx is not None:
                return self._rows(z0, z1, yx)
            return self._rows(z0, z1, _ALL)[(slice(None), *rest)]
        if isinstance(zkey, (int, np.integer)):
            z = int(zkey) + nz if zkey < 0 else int(zkey)
            if not 0 <= z < nz:
                raise IndexError(f"row {int(zkey)} is outside the volume's {nz} rows")
            if yx is not None:
                return self._rows(z, z + 1, yx)[0]
            return self._rows(z, z + 1, _ALL)[(0, *rest)]
        # Strided slices and index arrays: each row needed is read once, in order.
        wanted = np.arange(nz)[zkey]
        rows, inverse = np.unique(wanted, return_inverse=True)
        data = (
            np.stack([self._rows(int(z), int(z) + 1, _ALL)[0] for z in rows])
            if rows.size
            else self._rows(0, 0, _ALL)
        )
        return data[(inverse.reshape(wanted.shape), *rest)]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype, copy=False)

    # --- lifetime ------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the file behind the volume (HDF5, TIFF); reading afterwards fails."""
        if self._closer is not None:
            self._closer()
            self._closer = None

    def __enter__(self) -> Volume:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        voxel = "voxel unknown" if self.voxel_um is None else f"voxel {self.voxel_um:g} µm"
        return (
            f"Volume({self.format} {self.source}, shape={self.shape}, dtype={self.dtype}, {voxel})"
        )
