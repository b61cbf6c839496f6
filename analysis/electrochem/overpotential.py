"""Overpotential tables from galvanostatic plating/stripping data.

Works on any table with ``time_s``, ``voltage_V`` and ``current_A`` columns (and ``step`` when
the instrument numbers its current steps). In a Li|SE|Li symmetric cell the cell voltage *is*
the overpotential (ohmic drop through the electrolyte plus both interfaces), so the table
reports |V| statistics per half-cycle (one constant-current run, see
:func:`insitu.analysis.electrochem.shorts.half_cycle_index`) and their mean per current density.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .shorts import half_cycle_index

__all__ = ["overpotential_summary", "overpotential_table"]

_TABLE_COLUMNS = (
    "half_cycle",
    "step",
    "current_A",
    "current_density_mA_cm2",
    "start_time_s",
    "end_time_s",
    "duration_s",
    "n_points",
    "mean_abs_voltage_V",
    "median_abs_voltage_V",
    "max_abs_voltage_V",
    "end_voltage_V",
    "initial_jump_V",
    "plated_charge_C",
    "plated_charge_C_cm2",
)


def overpotential_table(
    data: pd.DataFrame,
    area_cm2: float,
    *,
    min_current_A: float = 0.0,
) -> pd.DataFrame:
    """One row per half-cycle: current, timing, |V| statistics and plated charge.

    Parameters
    ----------
    data : DataFrame
        Columns ``time_s``, ``voltage_V``, ``current_A`` and optionally ``step``, in time
        order.
    area_cm2 : float
        Electrode area, cm², for the current density and the charge per area.
    min_current_A : float
        Half-cycles whose median |current| is at or below this are rests and are left out.

    Returns
    -------
    DataFrame
        Columns:

        - ``half_cycle``: index from :func:`~insitu.analysis.electrochem.shorts.half_cycle_index`;
        - ``step``: the instrument's step number at the half-cycle's start (the half-cycle
          index when the table has no ``step``);
        - ``current_A``: median current, signed (positive plates the counter electrode);
        - ``current_density_mA_cm2``: |current| / area in mA/cm²;
        - ``start_time_s``, ``end_time_s``, ``duration_s``: the half-cycle runs from its first
          point until the next half-cycle's first point (the last point for the final one),
          as a galvanostat holds each current until it changes;
        - ``n_points``;
        - ``mean_abs_voltage_V``, ``median_abs_voltage_V``, ``max_abs_voltage_V``: of |V|;
        - ``end_voltage_V``: the (signed) voltage at the half-cycle's last point;
        - ``initial_jump_V``: |V| at its first point, the near-instant (mostly ohmic) jump
          when the current is switched on;
        - ``plated_charge_C``, ``plated_charge_C_cm2``: |∫I dt| over the half-cycle
          (sample-and-hold, as :func:`~insitu.analysis.electrochem.shorts.charge_to_failure` counts
          it).

    Raises
    ------
    ValueError
        Missing columns or a non-positive area.
    """
    missing = [c for c in ("time_s", "voltage_V", "current_A") if c not in data.columns]
    if missing:
        raise ValueError(
            f"table lacks column(s) {', '.join(missing)}; it has "
            f"{', '.join(map(str, data.columns))}. Rename the columns to time_s, voltage_V, "
            "current_A (SI units)"
        )
    if not area_cm2 > 0:
        raise ValueError(f"area_cm2 must be positive, got {area_cm2!r}")
    t = data["time_s"].to_numpy(float)
    v = data["voltage_V"].to_numpy(float)
    i = data["current_A"].to_numpy(float)
    step = data["step"].to_numpy() if "step" in data.columns else None
    if t.size == 0:
        return pd.DataFrame({c: [] for c in _TABLE_COLUMNS})
    segment = half_cycle_index(i, step)
    boundaries = np.flatnonzero(np.diff(segment)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [t.size]])
    # Each point's current flows until the next point; the last point holds for no time.
    dt = np.append(np.diff(t), 0.0)
    rows = []
    for start, end in zip(starts, ends, strict=True):
        seg_i = i[start:end]
        current = float(np.median(seg_i))
        if abs(current) <= min_current_A:
            continue
        seg_v = np.abs(v[start:end])
        end_time = float(t[end]) if end < t.size else float(t[end - 1])
        charge = abs(float(np.sum(seg_i * dt[start:end])))
        rows.append(
            {
                "half_cycle": int(segment[start]),
                "step": int(step[start]) if step is not None else int(segment[start]),
                "current_A": current,
                "current_density_mA_cm2": abs(current) * 1e3 / area_cm2,
                "start_time_s": float(t[start]),
                "end_time_s": end_time,
                "duration_s": end_time - float(t[start]),
                "n_points": int(end - start),
                "mean_abs_voltage_V": float(np.mean(seg_v)),
                "median_abs_voltage_V": float(np.median(seg_v)),
                "max_abs_voltage_V": float(np.max(seg_v)),
                "end_voltage_V": float(v[end - 1]),
                "initial_jump_V": float(seg_v[0]),
                "plated_charge_C": charge,
                "plated_charge_C_cm2": charge / area_cm2,
            }
        )
    return pd.DataFrame(rows, columns=list(_TABLE_COLUMNS))


def overpotential_summary(table: pd.DataFrame, *, decimals: int = 3) -> pd.DataFrame:
    """Mean over the half-cycles at each current density.

    Parameters
    ----------
    table : DataFrame
        From :func:`overpotential_table`.
    decimals : int
        Current densities are grouped after rounding to this many decimals (mA/cm²), so that
        measured currents with noise still fall into their programmed step.

    Returns
    -------
    DataFrame
        One row per current density (ascending), indexed by
        ``current_density_mA_cm2``, with ``n_half_cycles``, the means of
        ``mean_abs_voltage_V``, ``median_abs_voltage_V``, ``max_abs_voltage_V``,
        ``initial_jump_V`` and of |``end_voltage_V``| (as ``end_abs_voltage_V``), and the
        summed ``duration_s`` and ``plated_charge_C``.
    """
    if table.empty:
        return pd.DataFrame(
            columns=[
                "n_half_cycles",
                "mean_abs_voltage_V",
                "median_abs_voltage_V",
                "max_abs_voltage_V",
                "end_abs_voltage_V",
                "initial_jump_V",
                "duration_s",
                "plated_charge_C",
            ],
            index=pd.Index([], name="current_density_mA_cm2"),
        )
    work = table.assign(
        current_density_mA_cm2=table["current_density_mA_cm2"].round(decimals),
        end_abs_voltage_V=table["end_voltage_V"].abs(),
    )
    grouped = work.groupby("current_density_mA_cm2", sort=True)
    summary = grouped.agg(
        n_half_cycles=("half_cycle", "size"),
        mean_abs_voltage_V=("mean_abs_voltage_V", "mean"),
        median_abs_voltage_V=("median_abs_voltage_V", "mean"),
        max_abs_voltage_V=("max_abs_voltage_V", "mean"),
        end_abs_voltage_V=("end_abs_voltage_V", "mean"),
        initial_jump_V=("initial_jump_V", "mean"),
        duration_s=("duration_s", "sum"),
        plated_charge_C=("plated_charge_C", "sum"),
    )
    return summary
