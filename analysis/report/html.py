"""Self-contained HTML reports for the CCD and conductivity workflows.

One HTML file carries everything: inline CSS, figures as base64 PNG ``<img>`` elements, tables
rendered by :meth:`pandas.DataFrame.to_html`, a summary of the key numbers and the run's
metadata. It can be mailed, attached to an electronic lab notebook or opened years later
without the data or this package.

Every piece of text that reaches the page (title, metadata keys and values, summary, notes,
table cells and headers, figure captions) is HTML-escaped: sample names and notes are typed
by users and must never be able to inject markup or script.
"""

from __future__ import annotations

import html
import math
import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .electrochem_figures import (
    ARRHENIUS_CONVENTIONS,
    figure_to_data_uri,
    plot_arrhenius,
    plot_nyquist,
    plot_overpotentials,
    plot_voltage_time,
    sequential_colors,
)

__all__ = [
    "ccd_report",
    "conductivity_report",
    "format_value",
    "html_report",
    "write_report",
]

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       margin: 2rem auto; max-width: 1100px; padding: 0 1rem; color: #222; line-height: 1.4; }
h1 { font-size: 1.6rem; border-bottom: 2px solid #3b6ea5; padding-bottom: .3rem; }
h2 { font-size: 1.2rem; margin-top: 2rem; color: #3b6ea5; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .9rem; }
th, td { border: 1px solid #ccc; padding: .25rem .6rem; text-align: right; }
th { background: #eef2f7; }
table.meta th, table.summary th { text-align: left; }
table.meta td, table.summary td { text-align: left; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-size: .9rem; color: #555; }
ul.notes li { margin: .2rem 0; }
.missing { color: #999; }
""".strip()

#: Shown for missing values (None, NaN) in the summary and metadata.
_MISSING = "—"


def format_value(value: object) -> str:
    """Format a number or other value as plain (unescaped) text for the report.

    Floats get five significant digits (``0.75``, ``6.849``, ``135.72``, ``0.000426``),
    ``None`` and NaN an em dash, everything else ``str``.

    Parameters
    ----------
    value : object

    Returns
    -------
    str
    """
    if value is None:
        return _MISSING
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        v = float(value)
        return _MISSING if math.isnan(v) else f"{v:.5g}"
    return str(value)


def _esc(value: object) -> str:
    return html.escape(format_value(value), quote=True)


def _key_value_table(items: Mapping[str, object], css_class: str) -> str:
    """Two-column table; a nested mapping becomes a nested list of its entries."""
    rows = []
    for key, value in items.items():
        if isinstance(value, Mapping):
            inner = (
                "".join(f"<li>{_esc(k)}: {_esc(v)}</li>" for k, v in value.items())
                or f'<li class="missing">{_MISSING}</li>'
            )
            cell = f"<ul>{inner}</ul>"
        else:
            cell = _esc(value)
        rows.append(f"<tr><th>{_esc(key)}</th><td>{cell}</td></tr>")
    return f'<table class="{css_class}"><tbody>{"".join(rows)}</tbody></table>'


def _table_html(table: pd.DataFrame) -> str:
    # escape=True covers cells, index and headers; float_format gives the same five
    # significant digits as the summary instead of pandas' fixed six decimals.
    return table.to_html(
        float_format=lambda v: f"{v:.5g}",
        na_rep=_MISSING,
        border=0,
        classes="data",
        escape=True,
        index=not isinstance(table.index, pd.RangeIndex),
    )


def html_page_start(title: str, extra_css: str = "") -> list[str]:
    """The opening of a self-contained report page: head, styles, ``<main>`` and the title.

    Parameters
    ----------
    title : str
        Page title and first heading (escaped here).
    extra_css : str
        Styles added after the common ones.

    Returns
    -------
    list of str
        HTML lines; the page is closed by ``"</main>", "</body>", "</html>"``.
    """
    return [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>",
        f"<style>\n{_CSS}\n{extra_css}\n</style>",
        "</head>",
        "<body>",
        "<main>",
        f"<h1>{html.escape(title)}</h1>",
    ]


def html_report(
    title: str,
    *,
    metadata: Mapping[str, object],
    figures: Mapping[str, Figure],
    tables: Mapping[str, pd.DataFrame],
    summary: Mapping[str, object],
    notes: Sequence[str] = (),
    dpi: float = 110,
) -> str:
    """Assemble a self-contained HTML report.

    Parameters
    ----------
    title : str
        Page title and heading.
    metadata : Mapping[str, object]
        Run metadata (sample, material, area, thickness, temperature, stack pressure,
        protocol parameters, instrument, software version, run uid, ...), shown as a table.
        Nested mappings are listed inside their cell.
    figures : Mapping[str, Figure]
        Caption → Figure; each is embedded as a base64 PNG.
    tables : Mapping[str, DataFrame]
        Heading → table.
    summary : Mapping[str, object]
        Label → key number (or a mapping of numbers, e.g. charge-to-failure by convention).
    notes : sequence of str, optional
        Free-text remarks, listed at the end.
    dpi : float, default 110
        Resolution of the embedded figures.

    Returns
    -------
    str
        The complete HTML document.
    """
    parts = [
        *html_page_start(title),
        '<section id="summary">',
        "<h2>Summary</h2>",
        _key_value_table(summary, "summary"),
        "</section>",
    ]
    if figures:
        parts += ['<section id="figures">', "<h2>Figures</h2>"]
        for caption, fig in figures.items():
            cap = html.escape(caption, quote=True)
            parts.append(
                f'<figure><img src="{figure_to_data_uri(fig, dpi=dpi)}" alt="{cap}">'
                f"<figcaption>{cap}</figcaption></figure>"
            )
        parts.append("</section>")
    if tables:
        parts += ['<section id="tables">', "<h2>Tables</h2>"]
        for heading, table in tables.items():
            parts += [f"<h3>{html.escape(heading)}</h3>", _table_html(table)]
        parts.append("</section>")
    parts += [
        '<section id="metadata">',
        "<h2>Metadata</h2>",
        _key_value_table(metadata, "meta"),
        "</section>",
    ]
    if notes:
        items = "".join(f"<li>{html.escape(str(n))}</li>" for n in notes)
        parts += ['<section id="notes">', "<h2>Notes</h2>", f'<ul class="notes">{items}</ul>']
        parts.append("</section>")
    parts += ["</main>", "</body>", "</html>", ""]
    return "\n".join(parts)


def write_report(path: str | Path, html_text: str) -> Path:
    """Write a report to ``path`` as UTF-8, creating missing parent folders.

    Parameters
    ----------
    path : str or Path
    html_text : str
        The document from :func:`html_report` or a builder.

    Returns
    -------
    Path
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html_text, encoding="utf-8")
    return path


def _with_default(metadata: Mapping[str, object], **defaults: object) -> dict[str, object]:
    """Metadata with defaults appended for keys the caller did not give."""
    out = dict(metadata)
    for key, value in defaults.items():
        out.setdefault(key, value)
    return out


def _sample_name(metadata: Mapping[str, object]) -> str:
    for key in ("sample", "sample_name", "material"):
        if metadata.get(key) not in (None, ""):
            return str(metadata[key])
    return "cell"


def ccd_report(
    data: pd.DataFrame,
    *,
    metadata: Mapping[str, object],
    result: Mapping[str, object],
    overpotential_table: pd.DataFrame | None = None,
    area_cm2: float,
    title: str | None = None,
    notes: Sequence[str] = (),
) -> str:
    """HTML report of a critical-current-density test.

    Parameters
    ----------
    data : DataFrame
        Cycling record: ``time_s``, ``voltage_V``, ``current_A`` (optional ``step``).
    metadata : Mapping[str, object]
        Run metadata; ``area_cm2`` is added when absent.
    result : Mapping[str, object]
        ``ccd_mA_cm2`` (None when no short), ``charge_to_failure_C_cm2`` (mapping convention →
        C/cm²), ``short_time_s`` (None when no short), ``stopped_because`` (text). Missing
        keys show as "—".
    overpotential_table : DataFrame, optional
        Per-step table for :func:`~insitu.analysis.report.electrochem_figures.plot_overpotentials`;
        plotted and
        listed when given.
    area_cm2 : float
        Electrode area, for current density.
    title : str, optional
        Default: ``"Critical current density — <sample>"``.
    notes : sequence of str, optional

    Returns
    -------
    str
        The HTML document.
    """
    ccd = result.get("ccd_mA_cm2")
    short_time_s = result.get("short_time_s")
    charge = result.get("charge_to_failure_C_cm2") or {}
    if not isinstance(charge, Mapping):
        raise TypeError(
            "result['charge_to_failure_C_cm2'] must be a mapping convention → C/cm², "
            f"got {type(charge).__name__}."
        )

    ax_v, _ = plot_voltage_time(
        data,
        short_time_s=None if short_time_s is None else float(short_time_s),
        ccd_mA_cm2=None if ccd is None else float(ccd),
        area_cm2=area_cm2,
    )
    figures: dict[str, Figure] = {"Voltage and current density against time": ax_v.figure}
    tables: dict[str, pd.DataFrame] = {}
    if charge:
        tables["Charge-to-failure by convention"] = pd.DataFrame(
            {
                "convention": list(charge),
                "charge_to_failure_C_cm2": [float(v) for v in charge.values()],
                "charge_to_failure_mAh_cm2": [float(v) / 3.6 for v in charge.values()],
            }
        )
    if overpotential_table is not None:
        figures["Overpotential against current density"] = plot_overpotentials(
            overpotential_table
        ).figure
        tables["Overpotential per step"] = overpotential_table

    summary: dict[str, object] = {
        "CCD (mA/cm²)": ccd,
        "Charge-to-failure (C/cm²)": dict(charge),
        "Short at (h)": None if short_time_s is None else float(short_time_s) / 3600.0,
        "Short at (s)": short_time_s,
        "Stopped because": result.get("stopped_because"),
        "Duration (h)": float(data["time_s"].iloc[-1] - data["time_s"].iloc[0]) / 3600.0
        if len(data)
        else None,
    }
    meta = _with_default(metadata, area_cm2=area_cm2)
    return html_report(
        title or f"Critical current density — {_sample_name(metadata)}",
        metadata=meta,
        figures=figures,
        tables=tables,
        summary=summary,
        notes=notes,
    )


def conductivity_report(
    spectra: Mapping[float, pd.DataFrame],
    *,
    metadata: Mapping[str, object],
    sigma_S_cm: Mapping[float, float],
    activation_energy_eV: Mapping[str, float],
    fits: Mapping[float, pd.DataFrame] | None = None,
    arrhenius_prefactors: Mapping[str, float] | None = None,
    title: str | None = None,
    notes: Sequence[str] = (),
) -> str:
    """HTML report of an ionic-conductivity measurement over temperature.

    Parameters
    ----------
    spectra : Mapping[float, DataFrame]
        Temperature (K) → impedance spectrum (``frequency_Hz``, ``z_real_ohm``,
        ``z_imag_ohm``).
    metadata : Mapping[str, object]
        Run metadata (sample, thickness, area, pressure, ...).
    sigma_S_cm : Mapping[float, float]
        Temperature (K) → ionic conductivity (S/cm).
    activation_energy_eV : Mapping[str, float]
        Arrhenius convention (``"sigma"`` or ``"sigma_T"``) → Eₐ (eV). Each known convention
        gets its own Arrhenius figure; others are listed in the summary only.
    fits : Mapping[float, DataFrame], optional
        Temperature (K) → fitted spectrum, overlaid on the Nyquist plot.
    arrhenius_prefactors : Mapping[str, float], optional
        Convention → prefactor A (linear). Without it the fit line uses the least-squares
        intercept at the given Eₐ.
    title : str, optional
        Default: ``"Ionic conductivity — <sample>"``.
    notes : sequence of str, optional

    Returns
    -------
    str
        The HTML document.
    """
    fits = fits or {}
    prefactors = arrhenius_prefactors or {}
    notes = list(notes)

    figures: dict[str, Figure] = {}
    if spectra:
        temps = sorted(spectra)
        colors = sequential_colors(temps)
        ax = None
        for temp, color in zip(temps, colors, strict=True):
            ax = plot_nyquist(
                spectra[temp],
                fit=fits.get(temp),
                ax=ax,
                label=f"{temp:.1f} K ({temp - 273.15:.1f} °C)",
                color=color,
            )
        figures["Nyquist plots (−Z'' against Z') by temperature"] = ax.figure

    t_sorted = sorted(sigma_S_cm)
    t_arr = np.array(t_sorted, dtype=float)
    s_arr = np.array([sigma_S_cm[t] for t in t_sorted], dtype=float)
    if t_sorted:
        known = [c for c in activation_energy_eV if c in ARRHENIUS_CONVENTIONS]
        unknown = [c for c in activation_energy_eV if c not in ARRHENIUS_CONVENTIONS]
        if unknown:
            notes.append(
                f"No Arrhenius plot for convention(s) {unknown}: plots exist for "
                f"{list(ARRHENIUS_CONVENTIONS)}."
            )
        for convention in known or ["sigma_T"]:
            ax = plot_arrhenius(
                t_arr,
                s_arr,
                fit_activation_energy_eV=activation_energy_eV.get(convention),
                fit_prefactor=prefactors.get(convention),
                convention=convention,
            )
            name = "σT" if convention == "sigma_T" else "σ"
            figures[f"Arrhenius plot, log₁₀({name}) against 1000/T"] = ax.figure

    tables: dict[str, pd.DataFrame] = {}
    if t_sorted:
        tables["Ionic conductivity per temperature"] = pd.DataFrame(
            {
                "temperature_K": t_arr,
                "temperature_C": t_arr - 273.15,
                "inverse_T_1000_per_K": 1000.0 / t_arr,
                "sigma_S_cm": s_arr,
                "sigma_T_S_K_cm": s_arr * t_arr,
            }
        )
    summary: dict[str, object] = {
        "σ (S/cm) by temperature": {
            f"{t:.2f} K ({t - 273.15:.1f} °C)": sigma_S_cm[t] for t in t_sorted
        },
        "Eₐ (eV) by convention": dict(activation_energy_eV),
    }
    if prefactors:
        summary["Arrhenius prefactor A by convention"] = dict(prefactors)
    return html_report(
        title or f"Ionic conductivity — {_sample_name(metadata)}",
        metadata=metadata,
        figures=figures,
        tables=tables,
        summary=summary,
        notes=notes,
    )
