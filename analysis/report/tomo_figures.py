"""The paper's figure types for a tomography experiment (matplotlib, no display needed).

- :func:`plot_volumes_vs_step`: crack volume (under each crack convention, labelled) and
  X-ray-transparent volume per step;
- :func:`plot_thickness_change`: each electrode's thickness change against the first scan;
- :func:`plot_porosity_vs_failure`: porosity against charge-to-failure across materials;
- :func:`render_cracks`: the cracks of one step seen along the three axes (maximum projections
  coloured by crack), a light-weight rendering that needs no 3-D toolkit.

Figures are created directly (never through pyplot), so no display or backend is involved.
Porosity-factor and interfacial-intensity maps are drawn by
:func:`insitu.analysis.microstructure.maps.plot_porosity_factor_maps` and
:func:`insitu.analysis.microstructure.interface.plot_interfacial_intensity_maps`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

__all__ = [
    "plot_porosity_vs_failure",
    "plot_thickness_change",
    "plot_volumes_vs_step",
    "render_cracks",
]


def _step_axis(ax, table: pd.DataFrame) -> np.ndarray:
    x = np.arange(len(table))
    ax.set_xticks(x)
    ax.set_xticklabels(table["step"].astype(str), rotation=45, ha="right")
    ax.set_xlabel("step")
    return x


def _threshold_text(convention: Mapping[str, Any] | None) -> str:
    """`` ≥ V µm³`` (and the planarity floor) of a crack convention, when known."""
    if not convention:
        return ""
    text = f" ≥ {convention['min_volume_um3']:g} µm³"
    if convention.get("planarity_min"):
        text += f", planarity ≥ {convention['planarity_min']:g}"
    return text


def plot_volumes_vs_step(
    table: pd.DataFrame, conventions: Mapping[str, Mapping[str, Any]] | None = None
) -> Figure:
    """Crack volume and transparent volume (10³ µm³) per step of an experiment table.

    Parameters
    ----------
    table : DataFrame
        The step table of :func:`~insitu.analysis.microstructure.experiment.analyze_experiment`.
        With its ``cracks_per_scan_*`` columns, a second panel shows the cracks under the
        paper's per-scan convention (its volume is often orders of magnitude larger: where the
        pores percolate, their network counts as a crack).
    conventions : mapping, optional
        ``result.to_dict()["conventions"]``: their thresholds go into the labels.
    """
    conventions = conventions or {}
    per_scan = "cracks_per_scan_volume_um3" in table
    fig = Figure(figsize=(6.4, 6.6 if per_scan else 4.0), layout="constrained")
    axes = fig.subplots(2 if per_scan else 1, 1, sharex=True, squeeze=False)[:, 0]
    ax = axes[0]
    x = _step_axis(ax, table)
    grown = "cracks grown since the first scan" + _threshold_text(
        conventions.get("grown_since_first_scan")
    )
    lines = ax.plot(x, table["crack_volume_um3"] / 1e3, "o-", color="tab:red", label=grown)
    ax.set_ylabel("crack volume (10³ µm³)", color="tab:red")
    twin = ax.twinx()
    lines += twin.plot(
        x,
        table["transparent_volume_um3"] / 1e3,
        "s--",
        color="tab:blue",
        label="X-ray-transparent volume",
    )
    twin.set_ylabel("X-ray-transparent volume (10³ µm³)", color="tab:blue")
    ax.legend(lines, [line.get_label() for line in lines], loc="upper left", fontsize="small")
    ax.set_title("Cracks grown since the first scan, and transparent volume")
    if per_scan:
        below = axes[1]
        _step_axis(below, table)
        ax.set_xlabel("")
        paper = "cracks per scan (the paper's)" + _threshold_text(conventions.get("per_scan"))
        lines = below.plot(
            x, table["cracks_per_scan_volume_um3"] / 1e3, "o-", color="tab:purple", label=paper
        )
        below.set_ylabel("crack volume (10³ µm³)", color="tab:purple")
        count = below.twinx()
        lines += count.plot(
            x, table["cracks_per_scan_count"], "d:", color="0.3", label="count, per scan"
        )
        count.set_ylabel("cracks per scan (count)")
        below.legend(
            lines, [line.get_label() for line in lines], loc="upper left", fontsize="small"
        )
        below.set_title("Cracks per scan: pore components above a volume (the paper's)")
    return fig


def plot_thickness_change(table: pd.DataFrame) -> Figure:
    """Each electrode's mean thickness change (µm) against the first scan, per step."""
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.subplots()
    x = _step_axis(ax, table)
    for column, label in (
        ("top_thickness_um", "top (working)"),
        ("bottom_thickness_um", "bottom (counter)"),
    ):
        ax.plot(x, table[column] - table[column].iloc[0], "o-", label=label)
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_ylabel("thickness change (µm)")
    ax.legend()
    ax.set_title("Electrode thickness change (15-location average)")
    return fig


def plot_porosity_vs_failure(materials: pd.DataFrame, *, column: str | None = None) -> Figure:
    """Porosity against charge-to-failure, one point per material.

    Parameters
    ----------
    materials : DataFrame
        Columns ``material``, ``porosity`` and ``charge_to_failure_mC`` (or
        ``charge_to_failure_C_cm2``), e.g. from
        :func:`insitu.analysis.materials_compare.materials_table`. Materials missing either
        number are left out of the plot.
    column : str, optional
        The charge-to-failure column to plot. By default ``charge_to_failure_mC`` (the
        in-situ cell, as in the paper's Fig. 3b) when it holds any number, else
        ``charge_to_failure_C_cm2`` (the lab cell).
    """
    if column is None:
        # A table may carry both columns with one of them empty (no in-situ failure known).
        insitu = materials.get("charge_to_failure_mC")
        column = (
            "charge_to_failure_mC"
            if insitu is not None and insitu.notna().any()
            else "charge_to_failure_C_cm2"
        )
    if column not in materials or "porosity" not in materials:
        raise ValueError(
            "materials needs columns 'material', 'porosity' and 'charge_to_failure_mC' "
            f"(or 'charge_to_failure_C_cm2'); missing {column!r} or 'porosity'"
        )
    shown = materials.dropna(subset=["porosity", column])
    fig = Figure(figsize=(5.2, 4.0), layout="constrained")
    ax = fig.subplots()
    ax.scatter(shown["porosity"], shown[column], s=40)
    for _, row in shown.iterrows():
        ax.annotate(
            str(row["material"]),
            (row["porosity"], row[column]),
            xytext=(4, 4),
            textcoords="offset points",
        )
    ax.set_xlabel("porosity")
    ax.set_ylabel(
        "charge to failure (mC)" if column.endswith("mC") else "charge to failure (C/cm²)"
    )
    ax.set_title("Porosity vs charge-to-failure")
    return fig


def render_cracks(labels: np.ndarray, *, voxel_um: float, title: str | None = None) -> Figure:
    """Maximum projections of a crack label volume along z, y and x, coloured by crack.

    Parameters
    ----------
    labels : ndarray of int, shape (nz, ny, nx)
        Crack labels (0 = no crack), e.g. from
        :func:`insitu.analysis.microstructure.cracks.find_cracks`.
    voxel_um : float
        Voxel edge in µm (axis scales).
    title : str, optional
        The figure's title (name the crack convention of ``labels`` here).

    Without any crack, the panels are blank and say "no cracks".
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"labels must be a 3-D volume, got shape {labels.shape}")
    nz, ny, nx = labels.shape
    fig = Figure(figsize=(11, 3.6), layout="constrained")
    axes = fig.subplots(1, 3)
    views: Sequence[tuple[int, str, tuple[float, float, float, float], str, str]] = (
        (0, "top view (y–x)", (0, nx * voxel_um, ny * voxel_um, 0), "x (µm)", "y (µm)"),
        (1, "side view (z–x)", (0, nx * voxel_um, nz * voxel_um, 0), "x (µm)", "z (µm)"),
        (2, "side view (z–y)", (0, ny * voxel_um, nz * voxel_um, 0), "y (µm)", "z (µm)"),
    )
    cmap = colormaps["tab20"].with_extremes(under="white")
    # An explicit top: without cracks every pixel is below vmin, and an automatic vmax would
    # fall under vmin (matplotlib refuses to draw that).
    top = max(float(labels.max()), 1.0)
    for ax, (axis, name, extent, xlabel, ylabel) in zip(axes, views, strict=True):
        projection = labels.max(axis=axis).astype(float)
        projection[projection == 0] = -1
        ax.imshow(
            projection,
            cmap=cmap,
            vmin=0.5,
            vmax=top,
            extent=extent,
            interpolation="nearest",
            aspect="auto",
        )
        if not labels.any():
            ax.text(0.5, 0.5, "no cracks", transform=ax.transAxes, ha="center", va="center")
        ax.set_title(name)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    fig.suptitle(title or f"{int(labels.max())} crack label(s)")
    return fig
