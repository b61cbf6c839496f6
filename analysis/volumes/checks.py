"""Checks on a volume's values, read slab by slab: NaN from failed reconstructions."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import AnalysisInputError

__all__ = ["check_finite", "nan_rows"]


def nan_rows(volume: Any, *, slab_rows: int = 64) -> dict[int, int]:
    """How many non-finite voxels (NaN, ±inf) each row holds, for the rows that hold any.

    Parameters
    ----------
    volume : array_like, shape (nz, ny, nx)
        Sliceable along z; integer volumes hold none and are not read.
    slab_rows : int
        Rows read at a time.

    Returns
    -------
    dict
        Row index → count of non-finite voxels; empty when every voxel is finite.
    """
    if np.dtype(volume.dtype).kind != "f":
        return {}
    found: dict[int, int] = {}
    for a in range(0, volume.shape[0], max(1, slab_rows)):
        slab = np.asarray(volume[a : a + slab_rows])
        counts = (~np.isfinite(slab)).reshape(len(slab), -1).sum(axis=1)
        found.update({a + int(i): int(counts[i]) for i in np.flatnonzero(counts)})
    return found


def _ranges(rows: list[int]) -> str:
    parts, start = [], rows[0]
    for prev, row in zip(rows, [*rows[1:], None], strict=True):
        if row != prev + 1:
            parts.append(f"{start}" if start == prev else f"{start}–{prev}")
            start = row
    return ", ".join(parts[:5]) + (" …" if len(parts) > 5 else "")


def check_finite(volume: Any, *, name: str, slab_rows: int = 64) -> None:
    """Refuse a volume holding NaN or infinite grey values, naming its rows.

    A failed reconstruction leaves NaN rows; a threshold, a row profile or an alignment of
    them has no meaning, so the analysis refuses them up front rather than measure around
    them.

    Raises
    ------
    AnalysisInputError
        Naming the volume, the rows and the number of voxels.
    """
    bad = nan_rows(volume, slab_rows=slab_rows)
    if bad:
        rows = sorted(bad)
        raise AnalysisInputError(
            f"{name}: rows {_ranges(rows)} (of {volume.shape[0]}) hold "
            f"{sum(bad.values())} NaN or infinite voxels, as a failed reconstruction leaves: "
            "reconstruct those rows again, or crop the volume to its finite rows"
        )
