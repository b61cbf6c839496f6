"""HTML reports of stored runs: pick the report that fits the run's plan and fill it.

The figures and page layout are pure analysis (:mod:`insitu.analysis.report.html`); this module
only reads a stored run and hands its streams and metadata over.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from insitu.analysis.electrochem.conductivity import activation_energies, conductivity_S_cm
from insitu.analysis.electrochem.eis import electrolyte_resistance, spectrum_frame
from insitu.analysis.electrochem.overpotential import overpotential_table
from insitu.analysis.electrochem.runs import spectra_by_temperature
from insitu.analysis.electrochem.shorts import CCDAnalysis, ccd_from_trace
from insitu.analysis.report.html import (
    ccd_report,
    conductivity_report,
    html_report,
    write_report,
)

from ..storage.catalog import StoredRun

__all__ = ["ccd_tables", "report_for_run"]

_METADATA_KEYS = (
    "uid",
    "plan_name",
    "sample",
    "material",
    "area_cm2",
    "thickness_cm",
    "temperature_C",
    "stack_pressure_MPa",
    "instrument",
    "instrument_serial",
    "software_version",
    "protocol_parameters",
    "notes",
)


def _metadata(run: StoredRun) -> dict[str, object]:
    start = run.start
    meta = {k: start[k] for k in _METADATA_KEYS if k in start}
    stop = run.stop or {}
    meta["exit_status"] = stop.get("exit_status", "unknown (no stop document)")
    if stop.get("reason"):
        meta["stopped_because"] = stop["reason"]
    return meta


def ccd_tables(data: pd.DataFrame, area_cm2: float) -> tuple[CCDAnalysis, pd.DataFrame]:
    """The CCD analysis of a cycling trace and its overpotential table up to the short.

    After a short the voltage measures the filament, not the cell's polarisation, so the
    overpotential table stops at the short's onset.
    """
    analysis = ccd_from_trace(data, area_cm2)
    if analysis.short is not None:
        data = data[data["time_s"] < analysis.short.time_s]
    return analysis, overpotential_table(data, area_cm2)


def report_for_run(run: StoredRun, path: str | Path) -> Path:
    """Write the HTML report of ``run`` to ``path`` and return the path.

    CCD and plating/stripping runs get the voltage-time figure (with the CCD marked),
    overpotentials and charge-to-failure; conductivity runs get Nyquist plots with fits,
    σ per temperature and the Arrhenius plots; anything else gets its streams as tables.
    """
    meta = _metadata(run)
    if "electrochem" in run.streams:
        data = run.stream("electrochem")
        area = float(run.start.get("area_cm2", 1.0))
        analysis, table = ccd_tables(data, area)
        stop = run.stop or {}
        result = {
            "ccd_mA_cm2": analysis.ccd_mA_cm2,
            "charge_to_failure_C_cm2": analysis.charge_to_failure_C_cm2,
            "short_time_s": None if analysis.short is None else analysis.short.time_s,
            "stopped_because": stop.get("reason") or stop.get("exit_status"),
        }
        html = ccd_report(
            data,
            metadata=meta,
            result=result,
            overpotential_table=table,
            area_cm2=area,
        )
    elif "eis" in run.streams and "temperature" in run.streams:
        spectra = spectra_by_temperature(run.stream("eis"), run.stream("temperature"))
        fits = {t: electrolyte_resistance(s, cell="blocking") for t, s in spectra.items()}
        thickness = run.start.get("thickness_cm")
        area = run.start.get("area_cm2")
        notes = []
        if thickness and area:
            sigma = {
                t: float(conductivity_S_cm(f.electrolyte_resistance_ohm, thickness, area))
                for t, f in fits.items()
            }
        else:
            sigma = {}
            notes.append("thickness or area not recorded: σ not computed")
        energies: dict[str, float] = {}
        prefactors: dict[str, float] = {}
        if len(sigma) >= 2:
            arrhenius = activation_energies(np.array(list(sigma)), np.array(list(sigma.values())))
            energies = {c: f.activation_energy_eV for c, f in arrhenius.items()}
            prefactors = {c: f.prefactor for c, f in arrhenius.items()}
        fitted = {
            t: spectrum_frame(f.frequency_Hz, f.z_fit_ohm)
            for t, f in fits.items()
            if f.z_fit_ohm is not None
        }
        html = conductivity_report(
            spectra,
            metadata=meta,
            sigma_S_cm=sigma,
            activation_energy_eV=energies,
            fits=fitted or None,
            arrhenius_prefactors=prefactors or None,
            notes=notes,
        )
    else:
        tables = {name: frame.head(1000) for name, frame in run.streams.items()}
        html = html_report(
            f"Run {run.uid[:8]}",
            metadata=meta,
            figures={},
            tables=tables,
            summary={"streams": ", ".join(run.streams) or "none"},
            notes=["no report template for this plan: its streams (first 1000 rows) follow"],
        )
    return write_report(path, html)
