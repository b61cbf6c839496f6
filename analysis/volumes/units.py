"""Voxel sizes from files' metadata: length units to µm, and the attribute names people use."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import AnalysisInputError

__all__ = ["UM_PER_UNIT", "check_isotropic", "to_um", "voxel_um_from_attributes"]

#: Micrometres per length unit, by the names files use (lower case; ImageJ writes "micron",
#: sometimes "\\u00B5m" escaped).
UM_PER_UNIT: dict[str, float] = {
    "um": 1.0,
    "µm": 1.0,
    "μm": 1.0,
    "\\u00b5m": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "micrometre": 1.0,
    "nm": 1e-3,
    "nanometer": 1e-3,
    "mm": 1e3,
    "millimeter": 1e3,
    "cm": 1e4,
    "m": 1e6,
    "meter": 1e6,
}

#: Attributes holding the voxel edge in µm (``voxel_size_um``: volumes written before the
#: rename to ``voxel_um``).
_UM_KEYS = ("voxel_um", "voxel_size_um")
#: Attributes holding the voxel edge in the unit of their ``units`` (or ``unit``) attribute.
_UNIT_KEYS = ("voxel_size", "pixel_size", "resolution")

#: Relative difference below which two voxel edges are the same (rational TIFF resolutions
#: round 1/x to a fraction).
RTOL = 1e-4


def _text(value: Any) -> str:
    if isinstance(value, np.ndarray):
        value = value.ravel()[0] if value.size else ""
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    return str(value).strip().lower()


def to_um(value: float, unit: Any, *, where: str) -> float | None:
    """``value`` in ``unit`` as µm; None for a unit that is no length (``pixel``, empty).

    Raises
    ------
    AnalysisInputError
        For a unit that looks like a length but is unknown.
    """
    name = _text(unit)
    if name in ("", "pixel", "pixels", "px", "none"):
        return None
    if name not in UM_PER_UNIT:
        raise AnalysisInputError(
            f"{where}: unknown length unit {name!r} (known: micron, um, nm, mm, cm, m); "
            "pass the voxel size with --voxel-um (µm)"
        )
    return float(value) * UM_PER_UNIT[name]


def _number(value: Any) -> float | None:
    try:
        number = float(np.ravel(np.asarray(value, dtype=np.float64))[0])
    except (TypeError, ValueError, IndexError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def voxel_um_from_attributes(attrs: Mapping[str, Any], *, where: str) -> float | None:
    """The voxel edge (µm) in a set of attributes, or None.

    ``voxel_um`` and ``voxel_size_um`` are µm; ``voxel_size``, ``pixel_size`` and
    ``resolution`` are in the unit of a ``units`` (or ``unit``) attribute beside them, µm
    when there is none.
    """
    for key in _UM_KEYS:
        if key in attrs and (value := _number(attrs[key])) is not None:
            return value
    for key in _UNIT_KEYS:
        if key in attrs and (value := _number(attrs[key])) is not None:
            own = attrs.get(f"{key}_units", attrs.get(f"{key}_unit"))
            if own is not None:
                return to_um(value, own, where=f"{where} attribute {key!r}_units")
            # A shared "units" may describe the grey values instead: used only if a length.
            unit = _text(attrs.get("units", attrs.get("unit", "um")))
            return value * UM_PER_UNIT[unit] if unit in UM_PER_UNIT else None
    return None


def check_isotropic(edges_um: tuple[float, float, float], *, where: str) -> float:
    """The voxel edge of ``(z, y, x)`` edges that agree; an error naming them otherwise."""
    z, y, x = edges_um
    if max(edges_um) - min(edges_um) > RTOL * max(edges_um):
        raise AnalysisInputError(
            f"{where} has anisotropic voxels (z {z:g} × y {y:g} × x {x:g} µm); the analysis "
            "needs cubic voxels: resample the volume, or if its metadata is wrong pass the "
            "voxel size with --voxel-um (µm)"
        )
    return x
