"""Short-circuit detection and charge-to-failure for galvanostatic cycling data.

Works on any table with ``time_s``, ``voltage_V`` and ``current_A`` columns (and ``step`` when
the instrument numbers its current steps), from a catalog run or a measured file.

A *short* is what the CCD protocol looks for: in the middle of a constant-current half-cycle
the cell voltage collapses toward zero and stays there, because a Li filament now bridges
the electrolyte. :func:`find_short` confirms a collapse at the first point of a half-cycle
whose |voltage| falls below ``drop_fraction`` of the largest |voltage| reached earlier in the
same half-cycle and stays below it for ``confirm_points`` points. The short is dated at the
*onset* of that collapse — the last point before it still within ``onset_fraction`` of that
largest voltage — because the collapse itself takes a few sampling intervals while the
filament's resistance falls, and charge counted up to the end of the fall would overstate the
charge-to-failure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "CHARGE_CONVENTIONS",
    "ShortEvent",
    "charge_to_failure",
    "find_short",
    "half_cycle_index",
]

#: Named conventions for charge-to-failure (see REFERENCE.md):
#: ``per_electrode_plated``: charge plated on the more-plated electrode up to the short
#: (the convention under which three of the paper's four values agree to the digit);
#: ``total_abs``: ∫|I| dt over the whole test up to the short.
CHARGE_CONVENTIONS = ("per_electrode_plated", "total_abs")


@dataclass(frozen=True)
class ShortEvent:
    """Where a short happened.

    Attributes
    ----------
    time_s : float
        Onset of the collapse: the last point before it at which |voltage| was still within
        ``onset_fraction`` of the half-cycle's largest |voltage|.
    index : int
        Row position (0-based) of that point in the table.
    collapse_time_s : float
        First point at which |voltage| was below ``drop_fraction`` of that largest value.
    current_A : float
        Current of the half-cycle in which the cell shorted.
    voltage_before_V : float
        Largest |voltage| of that half-cycle before the collapse.
    time_into_half_cycle_s : float
        How far into its half-cycle the short happened.
    """

    time_s: float
    index: int
    collapse_time_s: float
    current_A: float
    voltage_before_V: float
    time_into_half_cycle_s: float


def half_cycle_index(current_A: np.ndarray, step: np.ndarray | None = None) -> np.ndarray:
    """Number consecutive runs of constant current (and constant ``step``) 0, 1, 2, ...

    Parameters
    ----------
    current_A : array
        Current of each point.
    step : array, optional
        The instrument's step number of each point; a change starts a new half-cycle even
        if the current is the same.
    """
    current = np.asarray(current_A, dtype=float)
    if current.size == 0:
        return np.zeros(0, dtype=int)
    scale = max(float(np.nanmax(np.abs(current))), 1e-15)
    # Currents measured (not only set) carry noise: a new half-cycle is a change larger than
    # 5 % of the largest current or a sign change.
    changed = (np.abs(np.diff(current)) > 0.05 * scale) | (
        np.sign(current[1:]) != np.sign(current[:-1])
    )
    if step is not None:
        changed |= np.diff(np.asarray(step)) != 0
    return np.concatenate([[0], np.cumsum(changed)]).astype(int)


def find_short(
    data: pd.DataFrame,
    *,
    drop_fraction: float = 0.2,
    confirm_points: int = 3,
    min_current_A: float = 0.0,
    onset_fraction: float = 0.9,
) -> ShortEvent | None:
    """Find the first short: a collapse of |voltage| in the middle of a half-cycle.

    Parameters
    ----------
    data : DataFrame
        Columns ``time_s``, ``voltage_V``, ``current_A`` and optionally ``step``.
    drop_fraction : float
        The voltage counts as collapsed below this fraction of the half-cycle's largest
        |voltage| so far.
    confirm_points : int
        The collapse must last this many consecutive points (rejects single noisy points).
    min_current_A : float
        Half-cycles with |current| at or below this are ignored (rest periods).
    onset_fraction : float
        The onset is the last point before the collapse with |voltage| at least this
        fraction of the half-cycle's largest |voltage| so far.

    Returns
    -------
    ShortEvent or None
        ``None`` if the data contain no short.
    """
    _require(data, ("time_s", "voltage_V", "current_A"))
    if not 0 < drop_fraction < onset_fraction <= 1:
        raise ValueError(
            "need 0 < drop_fraction < onset_fraction <= 1, got "
            f"drop_fraction={drop_fraction}, onset_fraction={onset_fraction}"
        )
    t = data["time_s"].to_numpy(float)
    v = np.abs(data["voltage_V"].to_numpy(float))
    i = data["current_A"].to_numpy(float)
    step = data["step"].to_numpy() if "step" in data else None
    segment = half_cycle_index(i, step)
    boundaries = np.flatnonzero(np.diff(segment)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(t)]])
    for start, end in zip(starts, ends, strict=True):
        if abs(np.median(i[start:end])) <= min_current_A:
            continue
        seg_v = v[start:end]
        running_max = np.maximum.accumulate(seg_v)
        low = seg_v < drop_fraction * running_max
        # The first point of a half-cycle has nothing before it to drop from.
        low[0] = False
        if not low.any():
            continue
        # Require ``confirm_points`` consecutive low points (or all remaining points).
        window = min(confirm_points, end - start)
        runs = np.convolve(low.astype(int), np.ones(window, dtype=int), mode="valid")
        hits = np.flatnonzero(runs == window)
        if hits.size == 0:
            tail = low[-window:]
            if not (tail.all() and end == len(t)):
                continue
            first = end - start - window
        else:
            first = int(hits[0])
        peak = running_max[first]
        # The running maximum is reached before ``first``, so this set is never empty.
        onset = int(np.flatnonzero(seg_v[:first] >= onset_fraction * peak)[-1])
        return ShortEvent(
            time_s=float(t[start + onset]),
            index=int(start + onset),
            collapse_time_s=float(t[start + first]),
            current_A=float(np.median(i[start:end])),
            voltage_before_V=float(peak),
            time_into_half_cycle_s=float(t[start + onset] - t[start]),
        )
    return None


def charge_to_failure(data: pd.DataFrame, until_time_s: float | None = None) -> dict[str, float]:
    """Charge passed up to ``until_time_s`` (the short), under each named convention, in C.

    Parameters
    ----------
    data : DataFrame
        Columns ``time_s`` and ``current_A``; positive current plates Li on the counter
        electrode, negative current on the working electrode.
    until_time_s : float, optional
        Count charge up to this time (defaults to the end of the data).

    Returns
    -------
    dict
        ``{"per_electrode_plated": C, "total_abs": C}``; see :data:`CHARGE_CONVENTIONS`.
        Divide by the electrode area for C/cm².
    """
    _require(data, ("time_s", "current_A"))
    t = data["time_s"].to_numpy(float)
    i = data["current_A"].to_numpy(float)
    if until_time_s is not None:
        keep = t <= until_time_s
        t, i = t[keep], i[keep]
    if t.size < 2:
        return dict.fromkeys(CHARGE_CONVENTIONS, 0.0)
    # Sample-and-hold integration: each point's current flows until the next point, which
    # is how a galvanostat applies it (trapezoids would smear every current step).
    dt = np.diff(t)
    i_held = i[:-1]
    plated_counter = float(np.sum(np.clip(i_held, 0, None) * dt))
    plated_working = float(np.sum(np.clip(-i_held, 0, None) * dt))
    return {
        "per_electrode_plated": max(plated_counter, plated_working),
        "total_abs": float(np.sum(np.abs(i_held) * dt)),
    }


def _require(data: pd.DataFrame, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in data.columns]
    if missing:
        raise ValueError(
            f"table lacks column(s) {', '.join(missing)}; it has "
            f"{', '.join(map(str, data.columns))}. Rename the columns to time_s, voltage_V, "
            "current_A (SI units)"
        )
