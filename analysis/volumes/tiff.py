"""TIFF volumes: one multi-page file (ImageJ hyperstack or plain), or a folder of slices.

A contiguous, uncompressed file (what ImageJ and ``tifffile`` write by default) is memory
mapped: a slab is a copy out of the map, 1.6x faster than decoding its pages and 4x faster
than reading them one ``TiffPage`` at a time (256 rows of 512², float32). Anything else
(compressed, scattered strips) is decoded page by page, only the pages of the slab asked for.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AnalysisInputError, MissingDependencyError
from .opened import Opened
from .units import to_um

__all__ = ["TIFF_SUFFIXES", "natural_key", "open_tiff_file", "open_tiff_folder"]

TIFF_SUFFIXES = (".tif", ".tiff")


def _tifffile() -> Any:
    try:
        import tifffile
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise MissingDependencyError(
            "reading TIFF volumes needs tifffile: pip install tifffile"
        ) from exc
    return tifffile


def natural_key(name: str) -> list[Any]:
    """Sort key putting ``slice_2`` before ``slice_10`` (numbers compared as numbers)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _damaged(
    path: Path, exc: Exception, what: str = "is not a readable TIFF file"
) -> AnalysisInputError:
    """The error for a TIFF that tifffile cannot make sense of."""
    return AnalysisInputError(
        f"{path} {what} ({type(exc).__name__}: {str(exc).strip()[:200]}): it is damaged or "
        "not a TIFF; write it again"
    )


@contextmanager
def _reading(path: Path, close: Any = None) -> Iterator[None]:
    """Calls ``close`` on any error, and raises tifffile's (a damaged file) as ours."""
    try:
        yield
    except (AnalysisInputError, MemoryError):
        if close is not None:
            close()
        raise
    except Exception as exc:
        if close is not None:
            close()
        raise _damaged(path, exc) from exc
    except BaseException:
        if close is not None:
            close()
        raise


def _check_page_chain(path: Path) -> None:
    """Refuse a TIFF whose chain of pages (IFDs) loops back on itself.

    tifffile follows the offsets from page to page and checks for a loop only once, at the
    100th page, and not at all when the pages are read one by one (as its series detection
    does): a file whose page points to itself is read for ever (found by
    ``benchmarks/bench_fuzz_readers.py``). Anything else odd is left to tifffile to report.
    """
    with path.open("rb") as fh:
        head = fh.read(16)
        order = {b"II": "<", b"MM": ">"}.get(head[:2])
        if order is None or len(head) < 8:
            return
        version = struct.unpack(order + "H", head[2:4])[0]
        if version == 42:  # classic TIFF: 2-byte entry counts, 12-byte entries, 4-byte offsets
            count, entry, pointer = "H", 12, "I"
            offset = struct.unpack(order + "I", head[4:8])[0]
        elif version == 43 and len(head) == 16:  # BigTIFF: 8, 20, 8
            count, entry, pointer = "Q", 20, "Q"
            offset = struct.unpack(order + "Q", head[8:16])[0]
        else:
            return
        seen: set[int] = set()
        while offset:
            if offset in seen:
                raise AnalysisInputError(
                    f"{path} is damaged: its page {len(seen)} points back to an earlier page "
                    "(a loop in the TIFF's chain of pages); write the file again"
                )
            seen.add(offset)
            fh.seek(offset)
            raw = fh.read(struct.calcsize(count))
            if len(raw) < struct.calcsize(count):
                return
            fh.seek(offset + len(raw) + struct.unpack(order + count, raw)[0] * entry)
            raw = fh.read(struct.calcsize(pointer))
            if len(raw) < struct.calcsize(pointer):
                return
            offset = struct.unpack(order + pointer, raw)[0]


def _open(path: Path) -> Any:
    tifffile = _tifffile()
    try:
        _check_page_chain(path)
        return tifffile.TiffFile(path)
    except (AnalysisInputError, MemoryError):
        raise
    except Exception as exc:
        # tifffile raises TiffFileError for what it checks, and for a damaged header whatever
        # its decoding runs into (ValueError, RuntimeError, TypeError, IndexError, KeyError,
        # ZeroDivisionError, struct.error ...; benchmarks/bench_fuzz_readers.py).
        raise _damaged(path, exc) from None


def _imagej_edges(tif: Any, page: Any, *, depth: bool, where: str) -> tuple[float, ...] | None:
    """``(z, y, x)`` voxel edges (µm) from ImageJ's description and resolution tags.

    ``depth=False`` (a single slice): z is None's stand-in, taken equal to x by the caller.
    """
    meta = tif.imagej_metadata or {}
    unit = meta.get("unit")
    tags = page.tags
    if unit is None or "XResolution" not in tags or "YResolution" not in tags:
        return None
    # A calibration that is not numbers (a resolution that is not a fraction, a spacing that
    # is text) is no calibration: the voxel size must then come from the caller.
    try:
        fractions = [tuple(tags[name].value) for name in ("YResolution", "XResolution")]
        spacing = float(meta.get("spacing", 1.0))
        per_pixel = [den / num for num, den in fractions if num and den]
    except (TypeError, ValueError):
        return None
    if len(per_pixel) != 2:
        return None
    edges = [to_um(e, unit, where=where) for e in per_pixel]  # pixels per unit → unit per pixel
    if edges[0] is None:
        return None
    # ImageJ writes "spacing" only when the voxel depth is not 1 (its default).
    z = to_um(spacing, unit, where=where) if depth else edges[1]
    return (z, edges[0], edges[1])  # type: ignore[return-value]


class _MemmapReader:
    def __init__(self, data: np.ndarray) -> None:
        self._data = data
        self.shape = data.shape
        self.dtype = data.dtype

    def read(self, z0: int, z1: int, yx: tuple[slice, slice]) -> np.ndarray:
        return np.array(self._data[z0:z1, yx[0], yx[1]])


class _PageReader:
    def __init__(self, tif: Any, shape: tuple[int, int, int], dtype: np.dtype) -> None:
        self._tif = tif
        self.shape = shape
        self.dtype = dtype

    def read(self, z0: int, z1: int, yx: tuple[slice, slice]) -> np.ndarray:
        try:
            pages = self._tif.asarray(key=range(z0, z1), series=0, maxworkers=1)
            return pages.reshape(z1 - z0, *self.shape[1:])[:, yx[0], yx[1]]
        except MemoryError:
            raise
        except Exception as exc:  # a page that does not decode (zlib.error, ValueError ...)
            what = f"has pages {z0}–{z1 - 1} that cannot be decoded"
            raise _damaged(Path(self._tif.filehandle.path), exc, what) from exc


def _volume_axes(series: Any, path: Path) -> tuple[int, int, int]:
    """The series' shape as ``(z, y, x)``: one axis besides Y and X, whatever ImageJ named it."""
    axes = [(a, n) for a, n in zip(series.axes, series.shape, strict=True) if n > 1]
    names = "".join(a for a, _ in axes)
    if "S" in names:
        raise AnalysisInputError(
            f"{path} is a colour or multi-channel image (axes {series.axes}, shape "
            f"{series.shape}); save one grey channel as a z-stack"
        )
    if len(axes) < 3:
        raise AnalysisInputError(
            f"{path} holds one {'×'.join(map(str, series.shape))} image: one slice is not a "
            "volume; give the multi-page stack, or the folder of all its slices"
        )
    if len(axes) > 3 or names[-2:] != "YX":
        raise AnalysisInputError(
            f"{path} has axes {series.axes} of shape {series.shape}: more than one of z, time "
            "and channel; save a single z-stack (one channel, one time point)"
        )
    return tuple(n for _, n in axes)  # type: ignore[return-value]


def open_tiff_file(path: Path) -> Opened:
    """A multi-page TIFF (ImageJ hyperstack or plain) as a lazily read volume."""
    tifffile = _tifffile()
    tif = _open(path)
    # tifffile reads the pages' tags as they are asked for: a damaged one fails in here.
    with _reading(path, tif.close):
        if not tif.series:
            raise AnalysisInputError(f"{path} holds no image")
        series = tif.series[0]
        shape = _volume_axes(series, path)
        dtype = np.dtype(series.dtype)
        if dtype.kind not in "uif":
            raise AnalysisInputError(f"{path} has {dtype} pixels; give integer or float grey")
        if series.dataoffset is not None:
            data = tifffile.memmap(path, series=0, mode="r").reshape(shape)
            reader: Any = _MemmapReader(data)
        else:
            reader = _PageReader(tif, shape, dtype)
        attrs = {
            k: v
            for k, v in (tif.imagej_metadata or {}).items()
            if isinstance(v, (str, int, float, bool))
        }
        edges = _imagej_edges(tif, series.keyframe, depth=True, where=str(path))
    if isinstance(reader, _MemmapReader):
        tif.close()
        closer = None
    else:
        closer = tif.close
    return Opened(
        reader=reader,
        format="tiff",
        attrs=attrs,
        edges_um=edges,  # type: ignore[arg-type]
        edges_from="ImageJ metadata",
        closer=closer,
    )


class _SliceReader:
    def __init__(self, files: list[Path], shape: tuple[int, int, int], dtype: np.dtype) -> None:
        self.files = files
        self.shape = shape
        self.dtype = dtype

    def read(self, z0: int, z1: int, yx: tuple[slice, slice]) -> np.ndarray:
        tifffile = _tifffile()
        out = None
        for i, z in enumerate(range(z0, z1)):
            try:
                image = tifffile.imread(self.files[z], key=0, maxworkers=1)[yx[0], yx[1]]
            except MemoryError:
                raise
            except Exception as exc:  # a slice that does not decode (zlib.error, ValueError ...)
                raise _damaged(self.files[z], exc, "cannot be decoded") from exc
            if out is None:
                out = np.empty((z1 - z0, *image.shape), dtype=self.dtype)
            out[i] = image
        return out  # type: ignore[return-value]


def open_tiff_folder(path: Path) -> Opened:
    """A folder of numbered single-page TIFF slices (natural order of the numbers)."""
    files = sorted(
        (f for f in path.iterdir() if f.suffix.lower() in TIFF_SUFFIXES and f.name[0] != "."),
        key=lambda f: natural_key(f.name),
    )
    if not files:
        raise AnalysisInputError(
            f"{path} is a folder with no TIFF slices (*.tif) and no Zarr volume; give the "
            "folder of a volume's slices, a volume file, or a Zarr store"
        )
    if len(files) == 1:
        raise AnalysisInputError(
            f"{path} holds one TIFF slice ({files[0].name}): one slice is not a volume"
        )
    first: tuple[tuple[int, ...], np.dtype] | None = None
    edges = None
    for f in files:
        with _open(f) as tif, _reading(f):
            page = tif.pages[0]
            found = (tuple(page.shape), np.dtype(page.dtype))
            if first is None:
                first = found
                if len(page.shape) != 2 or len(tif.pages) > 1:
                    raise AnalysisInputError(
                        f"{f} is not a single grey slice (shape {page.shape}, {len(tif.pages)} "
                        "pages); a folder volume holds one 2-D image per file"
                    )
                edges = _imagej_edges(
                    tif, page, depth="spacing" in (tif.imagej_metadata or {}), where=str(f)
                )
            elif found != first:
                raise AnalysisInputError(
                    f"{f} is {found[0]} {found[1]} while the slices before it are {first[0]} "
                    f"{first[1]}: every slice of a volume must have one shape and type; remove "
                    "or fix that file"
                )
    assert first is not None
    shape = (len(files), *first[0])
    return Opened(
        reader=_SliceReader(files, shape, first[1]),  # type: ignore[arg-type]
        format="tiff-folder",
        attrs={"files": len(files), "first": files[0].name, "last": files[-1].name},
        edges_um=edges,  # type: ignore[arg-type]
        edges_from="ImageJ metadata of the first slice",
    )
