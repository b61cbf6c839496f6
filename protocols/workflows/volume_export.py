"""Write a volume, in any format :func:`~insitu.analysis.volumes.open_volume` reads, as a TIFF
that Fiji opens directly: what ``insitu export-volume`` runs.

8-bit files are scaled on the study's grey range (from ``--grey-range``, from the
``result.json`` of an ``insitu analyze tomo`` run, or the volume's own extremes), so a
threshold set in Fiji on them selects what the analysis selects; 32-bit files keep the grey
values as they are.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from insitu.analysis.volumes import open_volume, write_tiff

from ..errors import InputNotFoundError, InvalidInputError

__all__ = ["FORMATS", "export_volume", "study_scaling"]

#: What ``--format`` accepts.
FORMATS = ("tiff",)


def study_scaling(path: str | Path) -> tuple[tuple[float, float], int]:
    """The grey range and ImageJ level of the study threshold an analysis stored.

    Parameters
    ----------
    path : str or Path
        An ``insitu analyze tomo`` results folder, or its ``result.json``.

    Returns
    -------
    grey_range : (float, float)
    level : int
    """
    path = Path(path)
    result = path / "result.json" if path.is_dir() else path
    if not result.is_file():
        raise InputNotFoundError(
            f"no analysis result at {result}: give an `insitu analyze tomo` results folder or "
            "its result.json"
        )
    try:
        threshold = json.loads(result.read_text())["threshold"]
        lo, hi = (float(v) for v in threshold["grey_range"])
        level = int(threshold["level"])
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInputError(
            f"{result} holds no study threshold ({exc}); give the result.json that "
            "`insitu analyze tomo` wrote"
        ) from None
    return (lo, hi), level


def export_volume(
    path: str | Path,
    out: str | Path,
    *,
    format: str = "tiff",
    bits: int = 32,
    dataset: str | None = None,
    voxel_um: float | None = None,
    grey_range: tuple[float, float] | None = None,
    study: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Write one volume as an ImageJ hyperstack TIFF with its voxel size.

    Parameters
    ----------
    path : str or Path
        The volume (Zarr, TIFF stack or folder of slices, HDF5, ``.npy``).
    out : str or Path
        The ``.tif`` to write.
    format : {"tiff"}
        The output format.
    bits : {8, 32}
        8-bit on the study's grey scale, or float32 grey values unchanged.
    dataset, voxel_um
        As :func:`~insitu.analysis.volumes.open_volume`; the voxel size must be known.
    grey_range : (float, float), optional
        8-bit: grey values of levels 0 and 256. Default: the study's (``study``), else the
        volume's finite extremes.
    study : str or Path, optional
        An ``insitu analyze tomo`` results folder (or its ``result.json``): its threshold's
        grey range scales the 8-bit file and its level is recorded in it.
    overwrite : bool
        Replace an existing ``out``.
    progress : bool
        A progress bar on stderr (only when stderr is a terminal).

    Returns
    -------
    dict
        :func:`~insitu.analysis.volumes.write_tiff`'s summary plus ``source``,
        ``format``, ``threshold_level`` and ``wall_s``.
    """
    if format not in FORMATS:
        raise InvalidInputError(f"--format must be one of {', '.join(FORMATS)}, got {format!r}")
    if bits not in (8, 32):
        raise InvalidInputError(f"--bits must be 8 or 32, got {bits}")
    if bits == 32 and (grey_range is not None or study is not None):
        raise InvalidInputError(
            "--grey-range and --study scale 8-bit files; 32-bit keeps the grey values"
        )
    if grey_range is not None and study is not None:
        raise InvalidInputError("give --grey-range or --study, not both")
    level = None
    if study is not None:
        grey_range, level = study_scaling(study)
    t0 = time.perf_counter()
    with open_volume(path, dataset=dataset, voxel_um=voxel_um) as volume:
        if volume.voxel_um is None:
            raise InvalidInputError(
                f"the voxel size of {path} is unknown: pass --voxel-um (µm), so that Fiji "
                "shows the volume in µm"
            )
        bar = _bar(volume.shape[0], progress)
        try:
            summary = write_tiff(
                volume,
                out,
                bits=bits,
                grey_range=grey_range,
                threshold_level=level,
                overwrite=overwrite,
                on_rows=None if bar is None else bar.update,
            )
        finally:
            if bar is not None:
                bar.close()
    return {
        "source": str(Path(path).resolve()),
        "format": format,
        **summary,
        "threshold_level": level,
        "wall_s": time.perf_counter() - t0,
    }


def _bar(rows: int, progress: bool) -> Any:
    """A tqdm bar over the rows written, on stderr when it is a terminal (else None)."""
    if not (progress and sys.stderr.isatty()):
        return None
    from tqdm import tqdm

    return tqdm(total=rows, desc="export", unit="row", file=sys.stderr, leave=False)
