"""Electrochemistry of a measured file or a stored run: what ``insitu analyze eis|ccd`` run.

A source is a file (``.mpt``, ``.mpr``, ``.csv``, ``.txt``, or any existing path) read by
:func:`insitu.analysis.electrochem.readers.read_measurement`, or else a stored run (uid, uid
prefix or index) whose stream is read from the catalog; a run's start document supplies the
geometry the user did not give.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from insitu.analysis.electrochem.conductivity import conductivity_S_cm
from insitu.analysis.electrochem.eis import Cell, EISFit, Method, electrolyte_resistance
from insitu.analysis.electrochem.readers import read_measurement
from insitu.analysis.electrochem.shorts import ccd_from_trace

from ..errors import InputNotFoundError, InvalidInputError
from .runs import stream_of

if TYPE_CHECKING:
    from ..storage.catalog import RunStore

__all__ = ["SpectrumAnalysis", "analyze_spectrum", "analyze_trace", "load_measurement"]

#: Opens the run store when a source turns out to be a stored run (files need none).
StoreOpener = Callable[[], AbstractContextManager["RunStore"]]

_FILE_SUFFIXES = (".mpt", ".mpr", ".csv", ".txt")


def load_measurement(
    source: str, stream: str, open_store: StoreOpener
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A measured file, or a stored run's ``stream``, and the run's start document.

    Returns
    -------
    data : DataFrame
        In the standard columns.
    metadata : dict
        The run's start document (empty for a file).
    """
    path = Path(source)
    if path.suffix.lower() in _FILE_SUFFIXES or path.exists():
        if not path.exists():
            raise InputNotFoundError(f"no such file: {source}")
        return read_measurement(path), {}
    with open_store() as store:
        run = store.load(source)
        return stream_of(run, stream), dict(run.start)


@dataclass(frozen=True)
class SpectrumAnalysis:
    """The electrolyte resistance of one spectrum, and σ where the geometry is known."""

    source: str
    fit: EISFit
    points: int
    thickness_cm: float | None
    area_cm2: float | None
    sigma_S_cm: float | None

    def to_dict(self) -> dict[str, Any]:
        """``source``, ``electrolyte_resistance_ohm``, ``method``, ``note``, ``points`` and,
        where known, ``sigma_S_cm``."""
        result: dict[str, Any] = {
            "source": self.source,
            "electrolyte_resistance_ohm": self.fit.electrolyte_resistance_ohm,
            "method": self.fit.method,
            "note": getattr(self.fit, "note", ""),
            "points": self.points,
        }
        if self.sigma_S_cm is not None:
            result["sigma_S_cm"] = self.sigma_S_cm
        return result


def analyze_spectrum(
    source: str,
    *,
    open_store: StoreOpener,
    cell: Cell = "blocking",
    method: Method = "fit",
    thickness_cm: float | None = None,
    area_cm2: float | None = None,
) -> SpectrumAnalysis:
    """Electrolyte resistance (and σ = L/(R·A) when the geometry is known) of one spectrum.

    Parameters
    ----------
    source : str
        A file, or a stored run (its ``eis`` stream).
    open_store : callable
        Opens the run store, for a stored run.
    cell, method
        As :func:`insitu.analysis.electrochem.eis.electrolyte_resistance`.
    thickness_cm, area_cm2 : float, optional
        The pellet's geometry (default: what the run records).
    """
    data, meta = load_measurement(source, "eis", open_store)
    fit = electrolyte_resistance(data, cell=cell, method=method)
    thickness = thickness_cm or meta.get("thickness_cm")
    area = area_cm2 or meta.get("area_cm2")
    sigma = None
    if thickness and area:
        sigma = float(conductivity_S_cm(fit.electrolyte_resistance_ohm, thickness, area))
    return SpectrumAnalysis(source, fit, len(data), thickness, area, sigma)


def analyze_trace(
    source: str, *, open_store: StoreOpener, area_cm2: float | None = None
) -> dict[str, Any]:
    """CCD and charge-to-failure of a cycling trace (a file, or a run's ``electrochem``).

    Returns
    -------
    dict
        ``source``, ``ccd_mA_cm2`` (None without a short), ``charge_to_failure_C_cm2`` (by
        convention), ``short_time_s`` and ``area_cm2``.
    """
    data, meta = load_measurement(source, "electrochem", open_store)
    area = area_cm2 or meta.get("area_cm2")
    if not area:
        raise InvalidInputError("give the electrode area with --area-cm2")
    analysis = ccd_from_trace(data, float(area))
    return {
        "source": source,
        "ccd_mA_cm2": analysis.ccd_mA_cm2,
        "charge_to_failure_C_cm2": analysis.charge_to_failure_C_cm2,
        "short_time_s": None if analysis.short is None else analysis.short.time_s,
        "area_cm2": float(area),
    }
