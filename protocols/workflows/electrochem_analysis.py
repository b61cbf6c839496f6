"""Electrochemistry of a measured file or a stored run: what ``insitu analyze eis|ccd`` run.

A source is a file (``.mpt``, ``.mpr``, ``.csv``, ``.txt``, or any existing path) read by
:func:`insitu.analysis.electrochem.readers.read_measurement`, or else a stored run (uid, uid
prefix or index) whose stream is read from the catalog; a run's start document supplies the
geometry the user did not give.

A source may hold several spectra (a conductivity run, or its export: one spectrum per
temperature): :func:`analyze_spectra` analyses each (a stored run's spectra are grouped by its
``temperature`` stream, a file's by :func:`~insitu.analysis.electrochem.eis.split_spectra`),
and :func:`analyze_spectrum` refuses such a source unless told which spectrum to use, rather
than fit the first or all of them as one.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from insitu.analysis.electrochem.conductivity import conductivity_S_cm
from insitu.analysis.electrochem.eis import (
    Cell,
    EISFit,
    Method,
    electrolyte_resistance,
    split_spectra,
)
from insitu.analysis.electrochem.readers import read_measurement
from insitu.analysis.electrochem.runs import spectra_by_temperature
from insitu.analysis.electrochem.shorts import UnusableRowsWarning, ccd_from_trace

from ..errors import InputNotFoundError, InvalidInputError
from .runs import stream_of

if TYPE_CHECKING:
    from ..storage.catalog import RunStore

__all__ = [
    "SpectrumAnalysis",
    "analyze_spectra",
    "analyze_spectrum",
    "analyze_trace",
    "load_measurement",
    "load_spectra",
]

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
    """The electrolyte resistance of one spectrum, and σ where the geometry is known.

    ``index`` and ``count`` place the spectrum among the source's (0 of 1 for a source with
    one); ``temperature_C`` is the spectrum's temperature where the source records it.
    """

    source: str
    fit: EISFit
    points: int
    thickness_cm: float | None
    area_cm2: float | None
    sigma_S_cm: float | None
    index: int = 0
    count: int = 1
    temperature_C: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """``source``, ``electrolyte_resistance_ohm``, ``method``, ``note``, ``points`` and,
        where known, ``sigma_S_cm``; for a source with several spectra also ``spectrum``
        (the index) and ``temperature_C`` where known."""
        result: dict[str, Any] = {
            "source": self.source,
            "electrolyte_resistance_ohm": self.fit.electrolyte_resistance_ohm,
            "method": self.fit.method,
            "note": getattr(self.fit, "note", ""),
            "points": self.points,
        }
        if self.sigma_S_cm is not None:
            result["sigma_S_cm"] = self.sigma_S_cm
        if self.count > 1:
            result["spectrum"] = self.index
        if self.temperature_C is not None:
            result["temperature_C"] = self.temperature_C
        return result


def _temperature_C(spectrum: pd.DataFrame) -> float | None:
    """The spectrum's median ``temperature_C``, if it has one."""
    if "temperature_C" not in spectrum.columns:
        return None
    value = pd.to_numeric(spectrum["temperature_C"], errors="coerce").median()
    return None if pd.isna(value) else round(float(value), 3)


def load_spectra(
    source: str, open_store: StoreOpener
) -> tuple[list[tuple[pd.DataFrame, float | None]], dict[str, Any]]:
    """Every spectrum of a file or stored run, each with its temperature (°C) where known.

    A stored run with a ``temperature`` stream (a conductivity run) is split by it, so each
    spectrum carries the oven's settled temperature; anything else by
    :func:`~insitu.analysis.electrochem.eis.split_spectra`.

    Returns
    -------
    spectra : list of (DataFrame, float or None)
        In the order measured.
    metadata : dict
        The run's start document (empty for a file).
    """
    path = Path(source)
    if path.suffix.lower() in _FILE_SUFFIXES or path.exists():
        data, meta = load_measurement(source, "eis", open_store)
        return [(s, _temperature_C(s)) for s in split_spectra(data)], meta
    with open_store() as store:
        run = store.load(source)
        eis = stream_of(run, "eis")
        meta = dict(run.start)
        if "temperature" in run.streams and "time" in eis.columns:
            by_temperature = spectra_by_temperature(eis, run.stream("temperature"))
            return [(s, round(k - 273.15, 3)) for k, s in by_temperature.items()], meta
    return [(s, _temperature_C(s)) for s in split_spectra(eis)], meta


def analyze_spectra(
    source: str,
    *,
    open_store: StoreOpener,
    cell: Cell = "blocking",
    method: Method = "fit",
    thickness_cm: float | None = None,
    area_cm2: float | None = None,
    spectrum: int | None = None,
) -> list[SpectrumAnalysis]:
    """Electrolyte resistance (and σ) of each spectrum of a source, or of the one chosen.

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
    spectrum : int, optional
        Analyse only this spectrum (0-based, in the order measured).

    Returns
    -------
    list of SpectrumAnalysis
        One per spectrum analysed, in the order measured.
    """
    spectra, meta = load_spectra(source, open_store)
    chosen = range(len(spectra))
    if spectrum is not None:
        if not 0 <= spectrum < len(spectra):
            raise InvalidInputError(
                f"{source} holds {len(spectra)} spectrum(s), numbered 0 to {len(spectra) - 1}; "
                f"there is no spectrum {spectrum}"
            )
        chosen = [spectrum]
    thickness = thickness_cm or meta.get("thickness_cm")
    area = area_cm2 or meta.get("area_cm2")
    results = []
    for k in chosen:
        data, temperature_C = spectra[k]
        fit = electrolyte_resistance(data, cell=cell, method=method)
        sigma = None
        if thickness and area:
            sigma = float(conductivity_S_cm(fit.electrolyte_resistance_ohm, thickness, area))
        results.append(
            SpectrumAnalysis(
                source, fit, len(data), thickness, area, sigma, k, len(spectra), temperature_C
            )
        )
    return results


def analyze_spectrum(
    source: str,
    *,
    open_store: StoreOpener,
    cell: Cell = "blocking",
    method: Method = "fit",
    thickness_cm: float | None = None,
    area_cm2: float | None = None,
    spectrum: int | None = None,
) -> SpectrumAnalysis:
    """Electrolyte resistance (and σ = L/(R·A) when the geometry is known) of one spectrum.

    Parameters
    ----------
    source, open_store, cell, method, thickness_cm, area_cm2
        As :func:`analyze_spectra`.
    spectrum : int, optional
        Which spectrum (0-based) of a source that holds several; required for such a source.

    Raises
    ------
    InvalidInputError
        A source with several spectra and no ``spectrum``: analysing the first (or all of
        them as one) would be a silent choice.
    """
    if spectrum is None:
        spectra, _ = load_spectra(source, open_store)
        if len(spectra) > 1:
            temperatures = [t for _, t in spectra if t is not None]
            at = f" (at {', '.join(f'{t:g}' for t in temperatures)} °C)" if temperatures else ""
            raise InvalidInputError(
                f"{source} holds {len(spectra)} spectra{at}; choose one with spectrum= "
                f"(0 to {len(spectra) - 1}), or analyse each with analyze_spectra"
            )
    options = dict(cell=cell, method=method, thickness_cm=thickness_cm, area_cm2=area_cm2)
    return analyze_spectra(source, open_store=open_store, spectrum=spectrum, **options)[0]


def analyze_trace(
    source: str, *, open_store: StoreOpener, area_cm2: float | None = None
) -> dict[str, Any]:
    """CCD and charge-to-failure of a cycling trace (a file, or a run's ``electrochem``).

    Returns
    -------
    dict
        ``source``, ``ccd_mA_cm2`` (None without a short), ``charge_to_failure_C_cm2`` (by
        convention), ``short_time_s`` and ``area_cm2``; where some voltages could not be used
        (NaN, not numbers, infinite) and were left out of the short detection, also
        ``dropped_rows`` (how many) and ``warnings`` (what was left out, by data row).
    """
    data, meta = load_measurement(source, "electrochem", open_store)
    area = area_cm2 or meta.get("area_cm2")
    if not area:
        raise InvalidInputError("give the electrode area with --area-cm2")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnusableRowsWarning)
        analysis = ccd_from_trace(data, float(area))
    notes = [str(w.message) for w in caught if issubclass(w.category, UnusableRowsWarning)]
    for w in caught:
        if not issubclass(w.category, UnusableRowsWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    result: dict[str, Any] = {
        "source": source,
        "ccd_mA_cm2": analysis.ccd_mA_cm2,
        "charge_to_failure_C_cm2": analysis.charge_to_failure_C_cm2,
        "short_time_s": None if analysis.short is None else analysis.short.time_s,
        "area_cm2": float(area),
    }
    if analysis.dropped_rows:
        result["dropped_rows"] = len(analysis.dropped_rows)
        result["warnings"] = notes
    return result
