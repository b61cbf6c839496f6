"""One self-contained HTML report per in-situ experiment (cycling with a tomogram per step).

An in-situ experiment (after Dixit, Singh et al.) plates and strips Li through a Li|SE|Li
cell at rising current density, takes a tomogram after the steps, and measures impedance
before, at the short and after. :class:`ExperimentData` gathers what was recorded and
measured; this module turns it into

- :func:`experiment_figures`: PNG figures (voltage profile with the current-density steps,
  cut-offs, short and tomograms; Nyquist before/after; pristine and failed slices; crack and
  transparent volume per step; electrode thickness change against charge with Faraday's law;
  porosity-factor maps and their spread);
- :func:`experiment_summary_table`: one row per tomogram, joining the protocol (charge,
  current density, half-cycle) with the microstructure measured on that scan;
- :func:`write_experiment_report`: one HTML file with everything embedded (the figures also
  written as PNGs next to it, refreshed on every call, so an operator can watch a run);
- :func:`experiment_report_json`: the same numbers as plain JSON-friendly Python.

Every figure is optional: a missing input (``None``, an empty table, a single tomogram where
two are needed) leaves that figure out with the reason listed in the report's notes. The
page's text is HTML-escaped, as in :mod:`insitu.analysis.report.html`, whose page style and table
helpers are reused.

Conventions
-----------
* Times are seconds since the experiment's start (``time_s``, ``start_s``, ``end_s``); the
  figures show hours.
* ``charge_mC`` is the cumulative ∫|I|dt since the start, at the end of a segment.
* Electrodes: *top* = working, *bottom* = counter. A ``"plate"`` half-cycle is positive
  current, which plates Li on the counter electrode and strips it from the working electrode
  (:mod:`insitu.protocols.plans.electrochem`, :mod:`insitu.simulators.cell.model`). Faraday's law
  gives the
  thickness of Li moved by a charge Q through an area A: Δh = Ω·Q/(F·A), Ω = 13.0 cm³/mol.
"""

from __future__ import annotations

import base64
import html
import math
import numbers
import os
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

from ..microstructure.electrodes import FARADAY_C_MOL
from ..microstructure.maps import PorosityFactor
from ..provenance import software_version
from .electrochem_figures import figure_to_png_bytes, plot_nyquist, plot_voltage_time
from .html import _key_value_table, _table_html, format_value, html_page_start
from .tomo_figures import plot_volumes_vs_step

__all__ = [
    "FIGURE_CAPTIONS",
    "LI_MOLAR_VOLUME_CM3_MOL",
    "ExperimentData",
    "build_experiment_figures",
    "experiment_figures",
    "experiment_report_json",
    "experiment_summary_table",
    "faraday_thickness_um",
    "porosity_factor_spread",
    "write_experiment_report",
]

#: Molar volume of Li metal (cm³/mol): M/ρ = 6.94 g/mol / 0.534 g/cm³.
LI_MOLAR_VOLUME_CM3_MOL = 13.0

#: Figure name → caption, in the order the report shows them. The PNG of figure ``name`` is
#: ``<experiment id>_<name>.png``.
FIGURE_CAPTIONS: dict[str, str] = {
    "voltage": (
        "Cell voltage and current density against time: tomograms shaded, voltage cut-offs "
        "and the short marked"
    ),
    "eis": "Impedance before and after cycling (Nyquist, −Z'' against Z', equal axes)",
    "slices": "Reconstructed slices on one grey scale",
    "volumes": "Crack volume and X-ray-transparent volume per tomogram (charge passed below)",
    "thickness": (
        "Electrode thickness change against charge passed, with Faraday's law Δh = Ω·Q/(F·A)"
    ),
    "porosity_maps": "Porosity-factor maps of the smallest cube size, one panel per tomogram",
    "porosity_stats": "Spread (standard deviation) of the porosity factor per tomogram",
}

_ELECTROCHEM_KINDS = ("plate", "strip")

#: Columns of the tomography table that locate the measurement rather than describe the
#: microstructure; left out of the summary table.
_BOOKKEEPING = {
    "segment_index",
    "error",
    "center",
    "voxel_um",
    "recon_s",
    "measure_s",
    "interface_top_row",
    "interface_bottom_row",
    "electrolyte_z0",
    "electrolyte_z1",
    "shift_z",
    "shift_y",
    "shift_x",
}
#: Columns the summary table takes from the protocol (the segments), not from the tomography.
_PROTOCOL_COLUMNS = {"step", "segment", "charge_mC", "current_density_mA_cm2", "half_cycle"}

_SEGMENT_NUMERIC = ("index", "step", "cycle", "current_density_mA_cm2", "start_s", "end_s")

_EXTRA_CSS = """
div.scroll { overflow-x: auto; }
section.header table.meta { margin-top: 0; }
""".strip()

#: Summary keys read as the experiment's start and end (dates, ISO text or Unix times).
_STARTED_KEYS = ("started", "start_time", "started_at", "start", "date")
_FINISHED_KEYS = ("finished", "end_time", "finished_at", "end")

_D_STD = re.compile(r"^d_std_(?P<size>[0-9.eE+-]+)um$")


@dataclass
class ExperimentData:
    """Everything recorded and measured on one in-situ experiment.

    Parameters
    ----------
    experiment_id : str
    material : str or None
    area_cm2 : float
        Electrode area (cm²): current density and Faraday's law.
    electrochem : DataFrame
        ``time_s`` (since the experiment start), ``voltage_V``, ``current_A``, ``segment``,
        ``kind`` (``"plate"``, ``"strip"``, ``"ocv"``), ``current_density_mA_cm2``.
    segments : DataFrame
        One row per protocol segment, in order: ``index``, ``kind`` (``"eis_before"``,
        ``"tomogram"``, ``"plate"``, ``"strip"``, ``"eis_confirm"``, ``"eis_after"``),
        ``label``, ``step``, ``cycle``, ``current_density_mA_cm2``, ``start_s``, ``end_s``,
        ``end_reason`` (``"completed"``, ``"voltage_limit"``, ``"short"``, ``"stopped"``,
        ``"interrupted"``, ...), ``charge_mC`` (cumulative ∫|I|dt at the segment's end),
        ``run_uid``.
    eis_before, eis_after : DataFrame or None
        ``frequency_Hz``, ``z_real_ohm``, ``z_imag_ohm``.
    steps : DataFrame or None
        Microstructure per tomogram: the ``table`` of
        :func:`insitu.analysis.microstructure.experiment.analyze_experiment` (``step``,
        ``charge_mC``,
        ``porosity``, ``crack_volume_um3``, ``transparent_volume_um3``, ``top_thickness_um``,
        ``bottom_thickness_um``, ``d_std_<size>um``, ...). Rows are matched to the tomogram
        segments in order, or by a ``segment`` (or ``segment_index``) column holding the
        segment's ``index``.
    porosity_factors : dict or None
        Step name → cube size (µm) → :class:`~insitu.analysis.microstructure.maps.PorosityFactor`
        (as
        in :attr:`ExperimentResult.porosity_factors
        <insitu.analysis.microstructure.experiment.ExperimentResult>`) or a 2-D/3-D array of cube
        porosities Φ (then d = Φ/Φ₀ − 1 with Φ₀ the mean of the finite cubes).
    slices : dict
        Name → 2-D slice of the reconstructed volume (e.g. ``"pristine"``, ``"failed"``).
    voxel_um : float or None
        Voxel edge (µm) of the slices; without it the slices have no scale bar.
    summary : dict
        Key numbers (``material``, ``charge_to_failure_mC``, ``short_time_s``,
        ``ccd_mA_cm2``, ``stopped_because``, ``n_segments``, ``wall_s``, ...). Optional keys
        read by the report: ``started``/``finished`` (dates), ``voltage_limit_V``.
    """

    experiment_id: str
    material: str | None
    area_cm2: float
    electrochem: pd.DataFrame
    segments: pd.DataFrame
    eis_before: pd.DataFrame | None = None
    eis_after: pd.DataFrame | None = None
    steps: pd.DataFrame | None = None
    porosity_factors: Mapping[str, Mapping[float, PorosityFactor | np.ndarray]] | None = None
    slices: Mapping[str, np.ndarray] = field(default_factory=dict)
    voxel_um: float | None = None
    summary: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


class _Skip(Exception):
    """A figure's input is missing; the message is the reason shown in the report."""


def _num(value: object) -> float | None:
    """A finite float, or None (None, NaN, text, pd.NA)."""
    if value is None or value is pd.NA or isinstance(value, bool | np.bool_):
        return None
    if isinstance(value, numbers.Real):
        v = float(value)
        return v if math.isfinite(v) else None
    return None


def _has_rows(table: pd.DataFrame | None) -> bool:
    return table is not None and len(table) > 0


def _summary(data: ExperimentData) -> dict[str, Any]:
    return dict(data.summary or {})


def _area(data: ExperimentData) -> float | None:
    area = _num(data.area_cm2)
    return area if area is not None and area > 0 else None


def _mpl_text(text: object) -> str:
    """User text for matplotlib: a lone ``$`` must not start mathtext."""
    return str(text).replace("$", r"\$")


def _slug(text: str) -> str:
    """A file-name-safe version of an experiment id."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._") or "experiment"


def faraday_thickness_um(charge_mC: float | np.ndarray, area_cm2: float) -> float | np.ndarray:
    """Thickness of Li moved by a charge: Δh = Ω·Q/(F·A), Ω = 13.0 cm³/mol.

    Parameters
    ----------
    charge_mC : float or ndarray
        Charge in mC.
    area_cm2 : float
        Electrode area in cm².

    Returns
    -------
    float or ndarray
        Thickness in µm (≈ 1.35 nm per mC/cm²; 0.1906 µm for 10 mC through 0.0707 cm²).

    Examples
    --------
    >>> round(faraday_thickness_um(10.0, 0.0707), 4)
    0.1906
    """
    if not (math.isfinite(area_cm2) and area_cm2 > 0):
        raise ValueError(f"area_cm2 must be a positive number (cm²), got {area_cm2!r}")
    um = (
        np.asarray(charge_mC, dtype=float)
        * 1e-3  # mC → C
        * LI_MOLAR_VOLUME_CM3_MOL
        / (FARADAY_C_MOL * area_cm2)
        * 1e4  # cm → µm
    )
    return float(um) if um.ndim == 0 else um


def _segments(data: ExperimentData) -> pd.DataFrame:
    """The segments table with every expected column, numbers as floats, in protocol order."""
    seg = data.segments
    seg = pd.DataFrame() if seg is None else seg.copy()
    for column in (*_SEGMENT_NUMERIC, "charge_mC"):
        if column not in seg:
            seg[column] = np.nan
        seg[column] = pd.to_numeric(seg[column], errors="coerce")
    for column in ("kind", "label", "end_reason", "run_uid"):
        if column not in seg:
            seg[column] = None
    if seg["index"].notna().all() and len(seg):
        seg = seg.sort_values("index", kind="stable")
    return seg.reset_index(drop=True)


def _steps(data: ExperimentData) -> pd.DataFrame | None:
    """The tomography table with numeric columns coerced (None → NaN), or None."""
    if not _has_rows(data.steps):
        return None
    table = data.steps.reset_index(drop=True).copy()
    for column in table.columns:
        if column in ("step", "half_cycle"):
            continue
        converted = pd.to_numeric(table[column], errors="coerce")
        # Keep text columns (e.g. a status) as they are.
        if converted.notna().sum() >= table[column].notna().sum():
            table[column] = converted.astype(float)
    return table


def _short(data: ExperimentData, seg: pd.DataFrame) -> tuple[float | None, float | None]:
    """(time of the short in s, current density at it) from the summary or the segments."""
    shorts = seg[seg["end_reason"] == "short"]
    row = shorts.iloc[0] if len(shorts) else None
    t = _num(_summary(data).get("short_time_s"))
    if t is None and row is not None:
        t = _num(row["end_s"])
    ccd = _num(_summary(data).get("ccd_mA_cm2"))
    if ccd is None and row is not None:
        ccd = _num(row["current_density_mA_cm2"])
    return t, ccd


# --------------------------------------------------------------------------------------------
# The summary table
# --------------------------------------------------------------------------------------------


def _tomogram_rows(seg: pd.DataFrame) -> list[dict[str, Any]]:
    """One record per tomogram segment with the half-cycle before it and the net charge.

    ``net_to_bottom_mC`` is the charge moved to the bottom (counter) electrode since the
    previous tomogram: plating half-cycles count positive, stripping ones negative, each with
    its own increment of the cumulative ∫|I|dt (NaN when an increment is unknown).
    """
    rows: list[dict[str, Any]] = []
    last_ec: pd.Series | None = None
    previous_charge = 0.0
    net, net_known = 0.0, True
    for _, r in seg.iterrows():
        q = _num(r["charge_mC"])
        increment = None if q is None else q - previous_charge
        if q is not None:
            previous_charge = q
        kind = r["kind"]
        if kind in _ELECTROCHEM_KINDS:
            last_ec = r
            if increment is None:
                net_known = False
            else:
                net += increment if kind == "plate" else -increment
        elif kind == "tomogram":
            start = _num(r["start_s"])
            rows.append(
                {
                    "segment": _num(r["index"]),
                    "label": r["label"],
                    "start_h": None if start is None else start / 3600.0,
                    "half_cycle": None if last_ec is None else last_ec["kind"],
                    "cycle": None if last_ec is None else _num(last_ec["cycle"]),
                    "current_density_mA_cm2": None
                    if last_ec is None
                    else _num(last_ec["current_density_mA_cm2"]),
                    "charge_mC": q,
                    "net_to_bottom_mC": net if net_known else None,
                }
            )
            net, net_known = 0.0, True
    return rows


def experiment_summary_table(data: ExperimentData) -> pd.DataFrame:
    """One row per tomogram: where it sits in the protocol and what it measured.

    Parameters
    ----------
    data : ExperimentData

    Returns
    -------
    DataFrame
        ``scan`` (0, 1, ...), ``step`` (the tomography table's step name, else the segment's
        label), ``segment`` (the tomogram segment's index), ``label``, ``start_h``,
        ``half_cycle`` / ``cycle`` / ``current_density_mA_cm2`` of the plating or stripping
        segment before the scan (none before the first), ``charge_mC`` (cumulative ∫|I|dt at
        the scan), ``interval_charge_mC`` (since the previous scan), the microstructure
        columns of ``data.steps`` (``porosity``, ``crack_volume_um3``,
        ``transparent_volume_um3``, ``top_thickness_um``, ``bottom_thickness_um``,
        ``d_std_<size>um``, ...), ``dh_top_um`` / ``dh_bottom_um`` (thickness change
        relative to the first scan) and ``faraday_dh_top_um`` / ``faraday_dh_bottom_um``
        (the change Faraday's law expects from the net charge plated on each electrode since
        the first scan; a plating half-cycle moves Li from top to bottom).

        Tomography rows are matched to tomogram segments by a ``segment`` (or
        ``segment_index``) column of ``data.steps`` when it has one, else in order; only its
        numeric columns are kept, less bookkeeping (interface rows, shifts, timings). A
        tomogram not analysed yet (a report during a run) has empty microstructure columns,
        a tomography row without a segment empty protocol columns.
    """
    seg = _segments(data)
    tomo = pd.DataFrame(
        _tomogram_rows(seg),
        columns=[
            "segment",
            "label",
            "start_h",
            "half_cycle",
            "cycle",
            "current_density_mA_cm2",
            "charge_mC",
            "net_to_bottom_mC",
        ],
    )
    steps = _steps(data)
    if steps is None:
        steps = pd.DataFrame(index=range(0))
    if "segment" not in steps.columns and "segment_index" in steps.columns:
        steps = steps.rename(columns={"segment_index": "segment"})
    # Protocol columns of the tomography table (and any name the segments use) get a suffix:
    # they are fallbacks for the segments' values, not microstructure.
    clash = (_PROTOCOL_COLUMNS | set(tomo.columns)) - {"segment"}
    steps = steps.rename(columns={c: f"{c}_tomo" for c in steps.columns if c in clash})
    # Microstructure: the numbers of the tomography table (not paths, errors or timings).
    micro = [
        c
        for c in steps.columns
        if c not in _BOOKKEEPING
        and c != "segment"
        and not str(c).endswith("_tomo")
        and pd.api.types.is_numeric_dtype(steps[c])
    ]

    if "segment" in steps.columns and len(tomo):
        joined = tomo.assign(segment=tomo["segment"].astype(float)).merge(
            steps.assign(segment=pd.to_numeric(steps["segment"], errors="coerce").astype(float)),
            on="segment",
            how="outer",
        )
    else:
        n = max(len(tomo), len(steps))
        right = steps.drop(columns=["segment"], errors="ignore").reindex(range(n))
        joined = pd.concat([tomo.reindex(range(n)), right], axis=1)

    def column(name: str) -> pd.Series:
        if name in joined:
            return joined[name]
        return pd.Series([None] * len(joined), index=joined.index, dtype=object)

    def first_of(primary: str, fallback: str) -> pd.Series:
        a, b = column(primary), column(fallback)
        return a.where(a.notna(), b)

    out = pd.DataFrame(index=joined.index)
    out["scan"] = np.arange(len(joined))
    names = first_of("step_tomo", "label")
    out["step"] = [f"scan {k}" if pd.isna(v) else str(v) for k, v in enumerate(names)]
    out["segment"] = pd.array(column("segment"), dtype="Int64")
    out["label"] = column("label").astype(object)
    out["start_h"] = pd.to_numeric(column("start_h"), errors="coerce")
    out["half_cycle"] = first_of("half_cycle", "half_cycle_tomo").astype(object)
    out["cycle"] = pd.array(pd.to_numeric(column("cycle"), errors="coerce"), dtype="Int64")
    out["current_density_mA_cm2"] = pd.to_numeric(
        first_of("current_density_mA_cm2", "current_density_mA_cm2_tomo"), errors="coerce"
    )
    charge = pd.to_numeric(first_of("charge_mC", "charge_mC_tomo"), errors="coerce")
    out["charge_mC"] = charge
    out["interval_charge_mC"] = charge.diff()
    for name in micro:
        out[name] = joined[name]
    for side in ("top", "bottom"):
        name = f"{side}_thickness_um"
        if name in out and len(out):
            values = pd.to_numeric(out[name], errors="coerce")
            out[f"dh_{side}_um"] = values - values.iloc[0]
    area = _area(data)
    net = pd.to_numeric(column("net_to_bottom_mC"), errors="coerce").to_numpy(dtype=float)
    if area is not None and len(out):
        net = net.copy()
        net[0] = 0.0  # the reference scan
        expected = faraday_thickness_um(np.cumsum(net), area)
        out["faraday_dh_top_um"] = 0.0 - expected  # no "-0" in the table
        out["faraday_dh_bottom_um"] = expected
    return out.reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Porosity factors
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Grid:
    """Porosity factors of one step and cube size, with cube edges in µm per axis."""

    d: np.ndarray
    edges_um: tuple[np.ndarray, ...]


def _grid(item: PorosityFactor | np.ndarray, size_um: float) -> _Grid | None:
    if isinstance(item, PorosityFactor):
        return _Grid(
            np.asarray(item.d, dtype=float), tuple(item.edges_um(a) for a in ("z", "y", "x"))
        )
    if item is None:
        return None
    phi = np.asarray(item, dtype=float)
    if phi.ndim not in (2, 3) or phi.size == 0:
        return None
    finite = phi[np.isfinite(phi)]
    phi0 = float(finite.mean()) if finite.size else math.nan
    d = phi / phi0 - 1.0 if phi0 > 0 else np.full(phi.shape, np.nan)
    return _Grid(d, tuple(np.arange(n + 1) * float(size_um) for n in phi.shape))


def _grids(data: ExperimentData) -> dict[str, dict[float, _Grid]]:
    """Step → cube size → grid, for the steps and sizes that hold a usable grid."""
    out: dict[str, dict[float, _Grid]] = {}
    for step, sizes in (data.porosity_factors or {}).items():
        per_step: dict[float, _Grid] = {}
        for size, item in (sizes or {}).items():
            size_um = _num(size)
            if size_um is None:
                continue
            grid = _grid(item, size_um)
            if grid is not None:
                per_step[size_um] = grid
        if per_step:
            out[str(step)] = per_step
    return out


def porosity_factor_spread(data: ExperimentData) -> pd.DataFrame:
    """Statistics of the porosity factor d per step and cube size.

    From ``data.porosity_factors`` (all counted cubes of the grid), else from the
    ``d_std_<size>um`` columns of ``data.steps`` (standard deviation only).

    Returns
    -------
    DataFrame
        ``step``, ``block_um``, ``n_cubes``, ``mean``, ``std`` (ddof = 0), ``min``, ``max``;
        empty when neither source is given.
    """
    columns = ["step", "block_um", "n_cubes", "mean", "std", "min", "max"]
    rows: list[dict[str, Any]] = []
    grids = _grids(data)
    if grids:
        for step, sizes in grids.items():
            for size, grid in sorted(sizes.items()):
                d = grid.d[np.isfinite(grid.d)]
                has = d.size > 0
                rows.append(
                    {
                        "step": step,
                        "block_um": size,
                        "n_cubes": int(d.size),
                        "mean": float(d.mean()) if has else np.nan,
                        "std": float(d.std()) if has else np.nan,
                        "min": float(d.min()) if has else np.nan,
                        "max": float(d.max()) if has else np.nan,
                    }
                )
        return pd.DataFrame(rows, columns=columns)
    steps = _steps(data)
    if steps is not None:
        names = steps["step"] if "step" in steps else pd.Series(range(len(steps)))
        for column in steps.columns:
            match = _D_STD.match(str(column))
            if match is None:
                continue
            size = float(match["size"])
            for name, value in zip(names, steps[column], strict=True):
                rows.append(
                    {
                        "step": str(name),
                        "block_um": size,
                        "n_cubes": None,
                        "mean": np.nan,
                        "std": value,
                        "min": np.nan,
                        "max": np.nan,
                    }
                )
    return pd.DataFrame(rows, columns=columns)


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def _figure_voltage(data: ExperimentData) -> Figure:
    ec = data.electrochem
    if not _has_rows(ec):
        raise _Skip("no electrochemistry recorded")
    missing = [c for c in ("time_s", "voltage_V", "current_A") if c not in ec]
    if missing:
        raise _Skip(f"the electrochemistry lacks the columns {missing}")
    seg = _segments(data)
    short_s, ccd = _short(data, seg)
    fig = Figure(figsize=(10.0, 4.8), layout="constrained")
    ax, ax_i = plot_voltage_time(
        _with_breaks(ec),
        short_time_s=short_s,
        ccd_mA_cm2=ccd if short_s is not None else None,
        area_cm2=_area(data),
        ax=fig.add_subplot(),
    )
    t = ec["time_s"].to_numpy(dtype=float)
    v = ec["voltage_V"].to_numpy(dtype=float)
    t_end = float(np.nanmax(t)) if t.size else 0.0

    first = True
    for _, r in seg[seg["kind"] == "tomogram"].iterrows():
        start, end = _num(r["start_s"]), _num(r["end_s"])
        if start is None:
            continue
        end = max(start, t_end) if end is None else end  # a scan still running
        ax.axvspan(
            start / 3600.0,
            end / 3600.0,
            color="0.8",
            alpha=0.6,
            lw=0,
            zorder=0,
            label="tomogram" if first else "_tomogram",
        )
        first = False

    limit = _num(_summary(data).get("voltage_limit_V"))
    if limit is not None:
        for sign in (1.0, -1.0):
            ax.axhline(
                sign * limit,
                color="0.45",
                ls=":",
                lw=0.8,
                zorder=1,
                label=f"cut-off ±{limit:g} V" if sign > 0 else "_cut-off",
            )

    first = True
    segment_of = (
        pd.to_numeric(ec["segment"], errors="coerce").to_numpy()
        if "segment" in ec
        else np.full(t.shape, np.nan)
    )
    for _, r in seg[seg["end_reason"] == "voltage_limit"].iterrows():
        end = _num(r["end_s"])
        if end is None:
            continue
        # The segment's last sample (its own rows when the record names them; else the last
        # one up to its end: the next segment may start at the very same time).
        own = segment_of == r["index"]
        if not own.any():
            start = _num(r["start_s"])
            own = (t <= end) & (t >= (-np.inf if start is None else start))
        if not own.any():
            continue
        k = int(np.flatnonzero(own)[np.argmax(t[own])])
        x, y = end / 3600.0, float(v[k])
        ax.plot(
            x,
            y,
            marker="v",
            ms=8,
            color="tab:purple",
            ls="none",
            zorder=5,
            label="voltage cut-off" if first else "_cut-off",
        )
        j = _num(r["current_density_mA_cm2"])
        ax_i.annotate(
            "cut-off" if j is None else f"cut-off at\n{j:g} mA/cm²",
            xy=(x, y),
            xycoords=ax.transData,
            xytext=(-7, 0),
            textcoords="offset points",
            ha="right",
            va="top" if y >= 0 else "bottom",
            fontsize="x-small",
            color="tab:purple",
        )
        first = False

    title = _mpl_text(data.experiment_id)
    if data.material:
        title += f" — {_mpl_text(data.material)}"
    ax.set_title(title)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax_i.get_legend_handles_labels()
    fig.legend(
        h1 + h2, l1 + l2, loc="outside lower center", ncols=6, frameon=False, fontsize="small"
    )
    return fig


def _figure_eis(data: ExperimentData) -> Figure:
    spectra = [
        (label, table, color)
        for label, table, color in (
            ("before", data.eis_before, "C0"),
            ("after", data.eis_after, "C3"),
        )
        if _has_rows(table) and {"z_real_ohm", "z_imag_ohm"} <= set(table.columns)
    ]
    if not spectra:
        raise _Skip("no impedance spectrum before or after")
    fig = Figure(figsize=(5.6, 5.0), layout="constrained")
    ax = fig.add_subplot()
    for label, table, color in spectra:
        plot_nyquist(table, ax=ax, label=label, color=color)
    ax.set_title("Impedance before and after")
    return fig


def _with_breaks(ec: pd.DataFrame) -> pd.DataFrame:
    """The record with a break after each pause (a tomogram, an EIS): no voltage, no current.

    Without it the voltage line and the current steps would run straight across the hours of
    a scan, when no current flowed. A pause is a gap longer than 3 sampling intervals
    (median); the break row sits one interval after the last sample before it.
    """
    ec = ec.sort_values("time_s", kind="stable")
    t = ec["time_s"].to_numpy(dtype=float)
    dt = np.diff(t)
    if dt.size == 0:
        return ec
    step = float(np.median(dt))
    gaps = np.flatnonzero(dt > 3.0 * step) if step > 0 else np.zeros(0, dtype=int)
    if gaps.size == 0:
        return ec
    breaks = pd.DataFrame(
        {"time_s": t[gaps] + step, "voltage_V": np.nan, "current_A": 0.0}, index=gaps + 0.5
    )
    table = ec[["time_s", "voltage_V", "current_A"]].set_axis(np.arange(len(ec)), axis=0)
    return pd.concat([table, breaks]).sort_index(kind="stable").reset_index(drop=True)


def _nice_length(span: float) -> float:
    """The largest 1, 2 or 5 × 10ⁿ not above ``span``."""
    if not span > 0:
        return 1.0
    exponent = math.floor(math.log10(span))
    for mantissa in (5.0, 2.0, 1.0):
        if mantissa * 10.0**exponent <= span:
            return mantissa * 10.0**exponent
    return 10.0**exponent


def _figure_slices(data: ExperimentData) -> Figure:
    images = []
    for name, image in (data.slices or {}).items():
        if image is None:
            continue
        a = np.squeeze(np.asarray(image, dtype=float))
        if a.ndim == 2 and a.size:
            images.append((str(name), a))
    if not images:
        raise _Skip("no 2-D slice given")
    pooled = np.concatenate([a[np.isfinite(a)] for _, a in images])
    if pooled.size == 0:
        raise _Skip("the slices hold no finite grey value")
    # One grey scale for all slices. The steel pistons behind the Li are far brighter than the
    # electrolyte and fill up to an eighth of the rows: scaling to the 80th percentile keeps the
    # pores and cracks of the electrolyte visible (the steel saturates), robust to hot pixels.
    vmin, vmax = (float(v) for v in np.percentile(pooled, [0.5, 80.0]))
    if not vmax > vmin:
        vmax = vmin + 1.0
    voxel = _num(data.voxel_um)
    voxel = voxel if voxel is not None and voxel > 0 else None
    n = len(images)
    height = max(a.shape[0] / a.shape[1] for _, a in images)
    fig = Figure(figsize=(3.8 * n + 1.2, min(3.8 * height, 7.0) + 0.9), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    image_artist = None
    for ax, (name, a) in zip(axes, images, strict=True):
        ny, nx = a.shape
        scale = voxel or 1.0
        image_artist = ax.imshow(
            a, cmap="gray", vmin=vmin, vmax=vmax, extent=(0, nx * scale, ny * scale, 0)
        )
        ax.set_title(_mpl_text(name))
        if voxel is not None:
            length = _nice_length(0.25 * nx * voxel)
            ax.add_artist(
                AnchoredSizeBar(
                    ax.transData,
                    length,
                    f"{length:g} µm",
                    "lower right",
                    pad=0.4,
                    color="white",
                    frameon=False,
                    size_vertical=max(0.012 * ny * voxel, voxel),
                )
            )
            ax.set_axis_off()
        else:
            ax.set_xlabel("x (px)")
            ax.set_ylabel("row (px)")
    fig.colorbar(image_artist, ax=list(axes), label="grey value", shrink=0.85)
    if voxel is None:
        fig.suptitle("voxel size unknown: axes in pixels", fontsize="small")
    return fig


def _step_labels(table: pd.DataFrame) -> list[str]:
    labels = []
    for name, q in zip(table["step"], table["charge_mC"], strict=True):
        text = _mpl_text(name)
        labels.append(text if _num(q) is None else f"{text}\n{q:.3g} mC")
    return labels


def _figure_volumes(data: ExperimentData) -> Figure:
    table = experiment_summary_table(data)
    columns = ("crack_volume_um3", "transparent_volume_um3")
    present = [
        c for c in columns if c in table and pd.to_numeric(table[c], errors="coerce").notna().any()
    ]
    if not present:
        raise _Skip("no crack or transparent volume measured (no tomography table)")
    shown = table.copy()
    for column in columns:
        shown[column] = pd.to_numeric(shown[column], errors="coerce") if column in shown else np.nan
    fig = plot_volumes_vs_step(shown)
    ax = fig.axes[0]
    ax.set_xticks(
        np.arange(len(shown)), _step_labels(shown), rotation=45, ha="right", fontsize="small"
    )
    ax.set_xlabel("tomogram (charge passed since the start)")
    return fig


def _figure_thickness(data: ExperimentData) -> Figure:
    area = _area(data)
    if area is None:
        raise _Skip("electrode area unknown")
    table = experiment_summary_table(data)
    needed = ("dh_top_um", "dh_bottom_um")
    if any(c not in table for c in needed):
        raise _Skip("no electrode thickness measured (no tomography table)")
    q = table["charge_mC"].to_numpy(dtype=float)
    top = table["dh_top_um"].to_numpy(dtype=float)
    bottom = table["dh_bottom_um"].to_numpy(dtype=float)
    usable = np.isfinite(q) & (np.isfinite(top) | np.isfinite(bottom))
    if usable.sum() < 2 or not np.isfinite(q[0]):
        raise _Skip("thickness changes need at least two scans with their charge")
    x = q - q[0]
    slope = faraday_thickness_um(1.0, area)  # µm per mC

    fig = Figure(figsize=(11.0, 4.4), layout="constrained")
    ax, ax_step = fig.subplots(1, 2)
    colors = {"top": "C0", "bottom": "C1"}
    names = {"top": "top (working)", "bottom": "bottom (counter)"}
    for side, values, marker in (("top", top, "o"), ("bottom", bottom, "s")):
        ok = np.isfinite(x) & np.isfinite(values)
        ax.plot(x[ok], values[ok], marker=marker, color=colors[side], label=names[side])
        expected_column = f"faraday_dh_{side}_um"
        if expected_column in table:
            expected = table[expected_column].to_numpy(dtype=float)
            ok = np.isfinite(x) & np.isfinite(expected)
            if ok.any():
                ax.plot(
                    x[ok],
                    expected[ok],
                    ls="--",
                    color=colors[side],
                    lw=1.0,
                    label=f"Faraday, {side}",
                )
    q_max = float(np.nanmax(x)) if np.isfinite(x).any() else 0.0
    span = np.array([0.0, max(q_max, 1e-12)])
    ax.plot(
        span,
        slope * span,
        color="0.5",
        lw=0.8,
        ls=":",
        label=f"±Ω·Q/(F·A) = ±{slope * 1e3:.3g} nm/mC · Q",
    )
    ax.plot(span, -slope * span, color="0.5", lw=0.8, ls=":", label="_faraday")
    ax.axhline(0.0, color="0.7", lw=0.6)
    ax.set_xlabel("charge passed since the first scan, ∫|I|dt (mC)")
    ax.set_ylabel("thickness change since the first scan (µm)")
    ax.set_title("Relative to the first scan", fontsize="medium")
    ax.legend(frameon=False, fontsize="small")

    # Per interval between successive scans: the plated electrode should sit on +ΩQ/(FA),
    # the stripped one on −ΩQ/(FA).
    dq = np.diff(q)
    d_top, d_bottom = np.diff(top), np.diff(bottom)
    for side, values, marker in (("top", d_top, "o"), ("bottom", d_bottom, "s")):
        ok = np.isfinite(dq) & np.isfinite(values)
        ax_step.plot(
            dq[ok], values[ok], ls="none", marker=marker, color=colors[side], label=names[side]
        )
    dq_max = float(np.nanmax(dq)) if np.isfinite(dq).any() else 0.0
    span = np.array([0.0, max(dq_max, 1e-12) * 1.05])
    ax_step.plot(span, slope * span, color="k", lw=1.0, label="plated: +Ω·Q/(F·A)")
    ax_step.plot(span, -slope * span, color="k", lw=1.0, ls="--", label="stripped: −Ω·Q/(F·A)")
    ax_step.axhline(0.0, color="0.7", lw=0.6)
    ax_step.set_xlabel("charge passed between successive scans (mC)")
    ax_step.set_ylabel("thickness change between successive scans (µm)")
    ax_step.set_title(
        f"Per interval (A = {area:.4g} cm², Ω = {LI_MOLAR_VOLUME_CM3_MOL:g} cm³/mol)",
        fontsize="medium",
    )
    ax_step.legend(frameon=False, fontsize="small")
    return fig


def _figure_porosity_maps(data: ExperimentData) -> Figure:
    grids = _grids(data)
    if not grids:
        raise _Skip("no porosity factors")
    smallest = min(size for sizes in grids.values() for size in sizes)
    panels = []
    for step, sizes in grids.items():
        grid = sizes.get(smallest)
        if grid is None:
            continue
        if grid.d.ndim == 3:
            # Through-plane (z, x): parallel to the field, the middle cube layer along y.
            middle = grid.d.shape[1] // 2
            panels.append((step, grid.d[:, middle, :], grid.edges_um[0], grid.edges_um[2]))
        else:
            panels.append((step, grid.d, grid.edges_um[0], grid.edges_um[1]))
    three_d = any(grid.d.ndim == 3 for sizes in grids.values() for grid in sizes.values())
    finite = np.concatenate([m[np.isfinite(m)] for _, m, _, _ in panels])
    vlim = float(np.max(np.abs(finite))) if finite.size else 1.0
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-max(vlim, 1e-12), vmax=max(vlim, 1e-12))
    n = len(panels)
    ncols = min(n, 4)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(3.3 * ncols + 1.2, 3.0 * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    mesh = None
    for ax, (step, m, row_edges, col_edges) in zip(axes.ravel(), panels, strict=False):
        mesh = ax.pcolormesh(
            col_edges, row_edges, np.ma.masked_invalid(m), cmap="RdBu_r", norm=norm
        )
        ax.set_aspect("equal")
        ax.invert_yaxis()
        ax.set_title(_mpl_text(step), fontsize="medium")
        ax.set_xlabel("x (µm)" if three_d else "µm")
        ax.set_ylabel("z (µm)" if three_d else "µm")
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    fig.colorbar(mesh, ax=axes.ravel().tolist(), label="porosity factor d = Φ/Φ₀ − 1", shrink=0.9)
    where = "through-plane section, middle layer along y" if three_d else "section"
    fig.suptitle(f"{smallest:g} µm cubes, {where}", fontsize="medium")
    return fig


def _figure_porosity_stats(data: ExperimentData) -> Figure:
    spread = porosity_factor_spread(data)
    spread = spread[pd.to_numeric(spread["std"], errors="coerce").notna()]
    if spread.empty:
        raise _Skip("no porosity-factor statistics")
    steps = list(dict.fromkeys(spread["step"]))
    position = {s: k for k, s in enumerate(steps)}
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.add_subplot()
    for k, (size, group) in enumerate(spread.groupby("block_um", sort=True)):
        ax.plot(
            [position[s] for s in group["step"]],
            group["std"].astype(float),
            marker="os^D"[k % 4],
            label=f"{size:g} µm cubes",
        )
    ax.set_xticks(range(len(steps)), [_mpl_text(s) for s in steps], rotation=45, ha="right")
    ax.set_xlabel("step")
    ax.set_ylabel("std of the porosity factor d")
    ax.set_title("Porosity-factor spread per step")
    ax.legend(frameon=False, fontsize="small")
    return fig


_BUILDERS: dict[str, Callable[[ExperimentData], Figure]] = {
    "voltage": _figure_voltage,
    "eis": _figure_eis,
    "slices": _figure_slices,
    "volumes": _figure_volumes,
    "thickness": _figure_thickness,
    "porosity_maps": _figure_porosity_maps,
    "porosity_stats": _figure_porosity_stats,
}


def build_experiment_figures(data: ExperimentData) -> tuple[dict[str, Figure], dict[str, str]]:
    """The report's figures as matplotlib Figures (pyplot-free), without writing anything.

    Parameters
    ----------
    data : ExperimentData

    Returns
    -------
    figures : dict of str to Figure
        Name (a key of :data:`FIGURE_CAPTIONS`) → Figure, in the report's order.
    skipped : dict of str to str
        Name → why the figure was left out: its input is missing, or drawing it failed (a
        :class:`RuntimeWarning` is issued then, so a live report never stops a run).
    """
    figures: dict[str, Figure] = {}
    skipped: dict[str, str] = {}
    for name, builder in _BUILDERS.items():
        try:
            figures[name] = builder(data)
        except _Skip as reason:
            skipped[name] = str(reason)
        except Exception as error:
            message = f"{type(error).__name__}: {error}"
            warnings.warn(f"figure {name!r} not drawn: {message}", RuntimeWarning, stacklevel=2)
            skipped[name] = f"drawing failed ({message})"
    return figures, skipped


def _write_atomic(path: Path, payload: bytes) -> None:
    """Write via a temporary file and a rename, so a watcher never sees a half-written file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(payload)
    os.replace(tmp, path)


def _render(
    data: ExperimentData, out_dir: Path, dpi: float
) -> tuple[dict[str, tuple[Path, bytes]], dict[str, str]]:
    """Render every figure once to PNG, write it to ``out_dir`` and drop stale ones."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures, skipped = build_experiment_figures(data)
    prefix = _slug(data.experiment_id)
    rendered: dict[str, tuple[Path, bytes]] = {}
    for name in FIGURE_CAPTIONS:
        path = out_dir / f"{prefix}_{name}.png"
        if name in figures:
            png = figure_to_png_bytes(figures[name], dpi=dpi)
            _write_atomic(path, png)
            rendered[name] = (path, png)
        else:
            # A figure that can no longer be drawn must not linger from an earlier call.
            path.unlink(missing_ok=True)
    return rendered, skipped


def experiment_figures(
    data: ExperimentData, out_dir: str | Path, *, dpi: float = 110
) -> dict[str, Path]:
    """Draw the experiment's figures and write them as PNG files.

    Parameters
    ----------
    data : ExperimentData
    out_dir : str or Path
        Folder for the PNGs (created if missing). Each is ``<experiment id>_<name>.png``,
        replaced atomically; a figure that cannot be drawn now is removed from the folder.
    dpi : float, default 110

    Returns
    -------
    dict of str to Path
        Figure name (see :data:`FIGURE_CAPTIONS`) → PNG written, for the figures whose input
        is present: ``voltage`` (voltage and current density against time), ``eis``
        (Nyquist before/after), ``slices`` (pristine/failed on one grey scale with a µm
        scale bar), ``volumes`` (crack and transparent volume per step), ``thickness``
        (electrode thickness change against charge with Faraday's law), ``porosity_maps``
        and ``porosity_stats``.
    """
    rendered, _ = _render(data, Path(out_dir), dpi)
    return {name: path for name, (path, _) in rendered.items()}


# --------------------------------------------------------------------------------------------
# HTML and JSON
# --------------------------------------------------------------------------------------------


def _date_text(value: object) -> object:
    if isinstance(value, datetime | date | pd.Timestamp):
        return value.isoformat()
    seconds = _num(value)
    if seconds is not None and seconds > 1e8:  # a Unix time stamp
        return datetime.fromtimestamp(seconds, tz=UTC).isoformat(timespec="seconds")
    return value


def _first(summary: Mapping[str, Any], keys: Sequence[str]) -> object:
    for key in keys:
        if summary.get(key) not in (None, ""):
            return summary[key]
    return None


def _run_uids(seg: pd.DataFrame) -> str | None:
    uids = [str(u) for u in dict.fromkeys(seg["run_uid"].dropna())]
    return ", ".join(uids) if uids else None


def _segments_display(seg: pd.DataFrame) -> pd.DataFrame:
    shown = seg.copy()
    for column in ("index", "step", "cycle"):
        values = shown[column]
        if values.notna().all() and (values == values.round()).all():
            shown[column] = values.astype("int64")
    shown.insert(shown.columns.get_loc("start_s"), "start_h", shown["start_s"] / 3600.0)
    shown.insert(shown.columns.get_loc("start_s"), "end_h", shown["end_s"] / 3600.0)
    shown.insert(
        shown.columns.get_loc("start_s"),
        "duration_min",
        (shown["end_s"] - shown["start_s"]) / 60.0,
    )
    shown = shown.drop(columns=["start_s", "end_s"])
    return shown.dropna(axis=1, how="all")


def _scroll_table(table: pd.DataFrame) -> str:
    """A wide table in a horizontally scrolling box; missing text and integers as "—"."""
    shown = table.copy()
    for column in shown.columns:
        values = shown[column]
        if values.dtype == object or isinstance(values.dtype, pd.api.extensions.ExtensionDtype):
            shown[column] = [
                format_value(None) if v is None or v is pd.NA or v != v else v for v in values
            ]
    return f'<div class="scroll">{_table_html(shown)}</div>'


def write_experiment_report(
    data: ExperimentData,
    out: str | Path,
    *,
    dpi: float = 110,
    notes: Sequence[str] = (),
) -> Path:
    """Write the experiment's self-contained HTML report (and its figures as PNGs).

    Parameters
    ----------
    data : ExperimentData
    out : str or Path
        The HTML file. The figures are also written to ``out.parent / "figures"`` (see
        :func:`experiment_figures`), refreshed on every call.
    dpi : float, default 110
    notes : sequence of str, optional
        Free-text remarks, listed after the figures' notes.

    Returns
    -------
    Path
        ``out``.

    Notes
    -----
    Sections: the header (experiment, material, dates, software version, run uids), Summary
    (``data.summary``), Tomograms (:func:`experiment_summary_table`), Segments, Figures and,
    when something is left out or noted, Notes. Every string from the data is HTML-escaped.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rendered, skipped = _render(data, out.parent / "figures", dpi)
    seg = _segments(data)
    summary_table = experiment_summary_table(data)

    title = f"In-situ experiment {data.experiment_id}"
    if data.material:
        title += f" — {data.material}"
    summary = _summary(data)
    started = _first(summary, _STARTED_KEYS)
    finished = _first(summary, _FINISHED_KEYS)
    header = {
        "Experiment": data.experiment_id,
        "Material": data.material,
        "Electrode area (cm²)": data.area_cm2,
        "Voxel (µm)": data.voxel_um,
        "Started": _date_text(started),
        "Finished": _date_text(finished),
        "Report written": datetime.now(tz=UTC).isoformat(timespec="seconds"),
        "Software": f"insitu {software_version()}",
        "Run uid(s)": _run_uids(seg),
    }
    key_numbers: dict[str, object] = {
        "Tomograms": int((seg["kind"] == "tomogram").sum()),
        "Segments": len(seg),
    }
    if seg["charge_mC"].notna().any():
        key_numbers["Charge passed, ∫|I|dt (mC)"] = float(seg["charge_mC"].dropna().iloc[-1])
    key_numbers.update(
        {
            str(k): _date_text(v) if k in _STARTED_KEYS + _FINISHED_KEYS else v
            for k, v in summary.items()
        }
    )

    parts = [
        *html_page_start(title, _EXTRA_CSS),
        '<section class="header" id="experiment">',
        _key_value_table(header, "meta"),
        "</section>",
        '<section id="summary">',
        "<h2>Summary</h2>",
        _key_value_table(key_numbers, "summary"),
        "</section>",
        '<section id="tomograms">',
        "<h2>Tomograms</h2>",
        _scroll_table(summary_table)
        if len(summary_table)
        else '<p class="missing">No tomogram recorded.</p>',
        "</section>",
        '<section id="segments">',
        "<h2>Segments</h2>",
        _scroll_table(_segments_display(seg))
        if len(seg)
        else '<p class="missing">No segment recorded.</p>',
        "</section>",
        '<section id="figures">',
        "<h2>Figures</h2>",
    ]
    for name, (path, png) in rendered.items():
        caption = html.escape(FIGURE_CAPTIONS[name], quote=True)
        src = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        parts.append(
            f'<figure id="figure-{name}"><img src="{src}" alt="{caption}">'
            f"<figcaption>{caption} ({html.escape(path.name)})</figcaption></figure>"
        )
    if not rendered:
        parts.append('<p class="missing">No figure could be drawn yet.</p>')
    parts.append("</section>")
    all_notes = [f"{FIGURE_CAPTIONS[n]}: not drawn, {reason}." for n, reason in skipped.items()]
    all_notes += [str(n) for n in notes]
    if all_notes:
        items = "".join(f"<li>{html.escape(n)}</li>" for n in all_notes)
        parts += ['<section id="notes">', "<h2>Notes</h2>", f'<ul class="notes">{items}</ul>']
        parts.append("</section>")
    parts += ["</main>", "</body>", "</html>", ""]
    _write_atomic(out, "\n".join(parts).encode("utf-8"))
    return out


def _jsonable(value: Any) -> Any:
    """Plain Python for JSON: NaN/NA → None, numpy → Python, dates → ISO text."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, str):
        return value
    if isinstance(value, datetime | date | pd.Timestamp):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, pd.DataFrame):
        return [_jsonable(r) for r in value.to_dict(orient="records")]
    if isinstance(value, pd.Series):
        return _jsonable(value.to_list())
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray | list | tuple | set):
        return [_jsonable(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    return str(value)


def experiment_report_json(data: ExperimentData) -> dict[str, Any]:
    """The report's numbers as JSON-friendly plain Python (no NaN: None).

    Parameters
    ----------
    data : ExperimentData

    Returns
    -------
    dict
        ``experiment_id``, ``material``, ``area_cm2``, ``voxel_um``, ``software_version``,
        ``summary`` (``data.summary``), ``tomograms`` (records of
        :func:`experiment_summary_table`), ``segments`` (records of ``data.segments``),
        ``porosity_factor_spread`` (records of :func:`porosity_factor_spread`),
        ``eis_before`` / ``eis_after`` (records or None) and ``faraday``
        (``li_molar_volume_cm3_mol``, ``faraday_C_mol``, ``thickness_um_per_mC`` for the
        electrode area). Serialisable with ``json.dumps(..., allow_nan=False)``.
    """
    area = _area(data)

    def spectrum(table: pd.DataFrame | None) -> list[dict[str, Any]] | None:
        return _jsonable(table) if _has_rows(table) else None

    return {
        "experiment_id": _jsonable(data.experiment_id),
        "material": _jsonable(data.material),
        "area_cm2": _jsonable(data.area_cm2),
        "voxel_um": _jsonable(data.voxel_um),
        "software_version": software_version(),
        "summary": _jsonable(_summary(data)),
        "tomograms": _jsonable(experiment_summary_table(data)),
        "segments": _jsonable(data.segments) if _has_rows(data.segments) else [],
        "porosity_factor_spread": _jsonable(porosity_factor_spread(data)),
        "eis_before": spectrum(data.eis_before),
        "eis_after": spectrum(data.eis_after),
        "faraday": {
            "li_molar_volume_cm3_mol": LI_MOLAR_VOLUME_CM3_MOL,
            "faraday_C_mol": FARADAY_C_MOL,
            "thickness_um_per_mC": None if area is None else faraday_thickness_um(1.0, area),
        },
    }
