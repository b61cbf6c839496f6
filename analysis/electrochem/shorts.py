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

Data the analysis cannot trust is never turned silently into a different result
(:func:`ccd_from_trace`):

- a ``time_s`` or ``current_A`` that is NaN, not a number, infinite or beyond
  :data:`MAX_ABS_CURRENT_A`, or time that runs backwards, is refused
  (:class:`~insitu.analysis.errors.AnalysisInputError` naming the column and rows): the
  half-cycles and the charge are built from every point's time and current, and no point can
  be left out without changing them;
- a ``voltage_V`` that is NaN, not a number, infinite or beyond :data:`MAX_ABS_VOLTAGE_V`
  is dropped from the short detection only, if such points are few
  (:data:`MAX_DROPPED_FRACTION` of the trace, runs of at most :data:`MAX_DROPPED_RUN`
  consecutive points): the short is then found on the remaining points, which sample every
  half-cycle as before, and the charge still counts every point. The rows dropped are
  reported in :attr:`CCDAnalysis.dropped_rows` and an :class:`UnusableRowsWarning` names
  them. More, or longer gaps (a collapse could hide in one), are refused.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from ..errors import AnalysisInputError

__all__ = [
    "CHARGE_CONVENTIONS",
    "MAX_ABS_CURRENT_A",
    "MAX_ABS_VOLTAGE_V",
    "MAX_DROPPED_FRACTION",
    "MAX_DROPPED_RUN",
    "SHORT_KINDS",
    "CCDAnalysis",
    "ShortEvent",
    "UnusableRowsWarning",
    "ccd_from_trace",
    "charge_to_failure",
    "classify_short",
    "find_short",
    "half_cycle_index",
]

#: ``"hard"``: |voltage| collapsed toward zero; ``"soft"``: a partial, sustained collapse.
SHORT_KINDS = ("hard", "soft")

#: Named conventions for charge-to-failure (see REFERENCE.md):
#: ``per_electrode_plated``: charge plated on the more-plated electrode up to the short
#: (the convention under which three of the paper's four values agree to the digit);
#: ``total_abs``: ∫|I| dt over the whole test up to the short.
CHARGE_CONVENTIONS = ("per_electrode_plated", "total_abs")

#: |voltage| above this (V) is a corrupted value, not a measurement: cell potentiostats
#: measure ±10 V to ±200 V at most.
MAX_ABS_VOLTAGE_V = 1e3
#: |current| above this (A) is a corrupted value: cell potentiostats source a few A at most.
MAX_ABS_CURRENT_A = 1e3
#: Largest fraction of a trace's voltages that may be unusable and dropped.
MAX_DROPPED_FRACTION = 0.05
#: Longest run of consecutive unusable voltages that may be dropped: a short is confirmed
#: over 3 points by default, so a longer gap could hide its onset.
MAX_DROPPED_RUN = 3
# Rows an error message lists before "and N more".
_LISTED = 5


class UnusableRowsWarning(UserWarning):
    """Some rows of a trace could not be used and were left out; the result says which."""


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
    kind : str
        ``"hard"`` (collapse toward zero, what :func:`find_short` finds) or ``"soft"``
        (partial, sustained collapse, found by :func:`classify_short`).
    """

    time_s: float
    index: int
    collapse_time_s: float
    current_A: float
    voltage_before_V: float
    time_into_half_cycle_s: float
    kind: str = "hard"


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


def _first_soft_short(
    data: pd.DataFrame,
    *,
    soft_fraction: float,
    min_duration_s: float,
    confirm_points: int,
    min_current_A: float,
    onset_fraction: float,
    before_time_s: float | None,
) -> ShortEvent | None:
    """First sustained fall of |voltage| below ``soft_fraction`` of the half-cycle's maximum."""
    t = data["time_s"].to_numpy(float)
    v = np.abs(data["voltage_V"].to_numpy(float))
    i = data["current_A"].to_numpy(float)
    step = data["step"].to_numpy() if "step" in data else None
    segment = half_cycle_index(i, step)
    boundaries = np.flatnonzero(np.diff(segment)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(t)]])
    for start, end in zip(starts, ends, strict=True):
        if before_time_s is not None and t[start] >= before_time_s:
            break
        if abs(np.median(i[start:end])) <= min_current_A:
            continue
        seg_v = v[start:end]
        seg_t = t[start:end]
        running_max = np.maximum.accumulate(seg_v)
        low = seg_v < soft_fraction * running_max
        low[0] = False
        if not low.any():
            continue
        # Runs of consecutive low points: [first, last] positions in the half-cycle.
        edges = np.diff(np.concatenate([[0], low.astype(int), [0]]))
        run_starts = np.flatnonzero(edges == 1)
        run_ends = np.flatnonzero(edges == -1) - 1
        for first, last in zip(run_starts, run_ends, strict=True):
            lasting = seg_t[last] - seg_t[first] >= min_duration_s
            # A trace that ends while the voltage is still down (the test was stopped).
            at_end = end == len(t) and last == end - start - 1
            if not (lasting or (at_end and last - first + 1 >= confirm_points)):
                continue
            peak = running_max[first]
            onset = int(np.flatnonzero(seg_v[:first] >= onset_fraction * peak)[-1])
            if before_time_s is not None and seg_t[onset] >= before_time_s:
                return None
            return ShortEvent(
                time_s=float(seg_t[onset]),
                index=int(start + onset),
                collapse_time_s=float(seg_t[first]),
                current_A=float(np.median(i[start:end])),
                voltage_before_V=float(peak),
                time_into_half_cycle_s=float(seg_t[onset] - seg_t[0]),
                kind="soft",
            )
    return None


def classify_short(
    data: pd.DataFrame,
    *,
    drop_fraction: float = 0.2,
    soft_fraction: float = 0.6,
    soft_min_duration_s: float = 300.0,
    confirm_points: int = 3,
    min_current_A: float = 0.0,
    onset_fraction: float = 0.9,
) -> ShortEvent | None:
    """Find the first short of either kind, hard or soft.

    A *hard* short is what :func:`find_short` finds (|voltage| below ``drop_fraction`` of
    the half-cycle's largest |voltage|), returned with ``kind="hard"``. A *soft* short is a
    fall below ``soft_fraction`` of it (but not below ``drop_fraction``) that lasts at least
    ``soft_min_duration_s`` — or is still under way when the data end — in a half-cycle
    before the hard short; it may recover afterwards. It is returned with ``kind="soft"``,
    dated at its onset like a hard short. A half-cycle in which the voltage sinks gradually
    and then collapses below ``drop_fraction`` holds a hard short (dated at the onset of the
    whole fall).

    Parameters
    ----------
    data : DataFrame
        Columns ``time_s``, ``voltage_V``, ``current_A`` and optionally ``step``.
    drop_fraction, confirm_points, min_current_A, onset_fraction
        As for :func:`find_short`.
    soft_fraction : float
        A soft short takes |voltage| below this fraction of the half-cycle's maximum so far.
        0.6 leaves room for the normal relaxation of a nucleation or stripping peak.
    soft_min_duration_s : float
        ... and keeps it there at least this long (noise and spikes do not).

    Returns
    -------
    ShortEvent or None
        The earliest short; ``None`` if there is none of either kind.
    """
    if not 0 < drop_fraction < soft_fraction < onset_fraction <= 1:
        raise ValueError(
            "need 0 < drop_fraction < soft_fraction < onset_fraction <= 1, got "
            f"{drop_fraction}, {soft_fraction}, {onset_fraction}"
        )
    _require(data, ("time_s", "voltage_V", "current_A"))
    hard = find_short(
        data,
        drop_fraction=drop_fraction,
        confirm_points=confirm_points,
        min_current_A=min_current_A,
        onset_fraction=onset_fraction,
    )
    before = None
    if hard is not None:
        # A soft short only counts in a half-cycle before the hard short's.
        before = hard.time_s - hard.time_into_half_cycle_s
    soft = _first_soft_short(
        data,
        soft_fraction=soft_fraction,
        min_duration_s=soft_min_duration_s,
        confirm_points=confirm_points,
        min_current_A=min_current_A,
        onset_fraction=onset_fraction,
        before_time_s=before,
    )
    return soft if soft is not None else hard


@dataclass(frozen=True)
class CCDAnalysis:
    """Critical current density and charge-to-failure read from a cycling trace.

    Attributes
    ----------
    ccd_mA_cm2 : float or None
        |current| / area at the short that counts, mA/cm²; None if the cell did not short.
    short : ShortEvent or None
        The short that sets the CCD (hard, or soft with ``count_soft``).
    soft_short : ShortEvent or None
        The first soft short, if one came before ``short`` (or anywhere, without a short).
    charge_to_failure_C_cm2 : dict
        Charge per area up to ``short`` (to the end of the data without one), under each
        convention of :data:`CHARGE_CONVENTIONS`.
    area_cm2 : float
        The electrode area used.
    """

    ccd_mA_cm2: float | None
    short: ShortEvent | None
    soft_short: ShortEvent | None
    charge_to_failure_C_cm2: dict[str, float]
    area_cm2: float
    #: Row positions (0-based) whose voltage was unusable and left out of the short
    #: detection (the charge counts them); empty for a clean trace.
    dropped_rows: tuple[int, ...] = field(default=())

    @property
    def shorted(self) -> bool:
        """Whether a short that counts was found."""
        return self.short is not None


def ccd_from_trace(
    data: pd.DataFrame,
    area_cm2: float,
    *,
    count_soft: bool = False,
    min_current_A: float = 0.0,
    drop_fraction: float = 0.2,
    soft_fraction: float = 0.6,
    soft_min_duration_s: float = 300.0,
    confirm_points: int = 3,
    onset_fraction: float = 0.9,
) -> CCDAnalysis:
    """The CCD and charge-to-failure of a galvanostatic cycling trace.

    The CCD is the current density of the half-cycle in which the cell shorted (the paper's
    "sharp drop in potential mid-half-cycle": a hard short, :func:`find_short`); the
    charge-to-failure counts up to the short's onset under each named convention
    (:func:`charge_to_failure`), per cm².

    Parameters
    ----------
    data : DataFrame
        Columns ``time_s``, ``voltage_V``, ``current_A`` and optionally ``step``.
    area_cm2 : float
        Electrode area, cm².
    count_soft : bool
        Let a soft short (:func:`classify_short`) set the CCD. Off by default: a gradual,
        partial collapse is not the paper's sharp drop, and is reported in ``soft_short``.
    min_current_A, drop_fraction, soft_fraction, soft_min_duration_s, confirm_points, onset_fraction
        As for :func:`classify_short`.

    Returns
    -------
    CCDAnalysis
    """
    if not area_cm2 > 0:
        raise AnalysisInputError(f"electrode area must be positive, got {area_cm2!r} cm²")
    _require(data, ("time_s", "voltage_V", "current_A"))
    dropped = _check_trace(data)
    # Short detection on the usable voltages; positions map back to the whole table.
    kept = np.setdiff1d(np.arange(len(data)), dropped)
    usable = data.iloc[kept] if dropped.size else data
    options = dict(
        drop_fraction=drop_fraction,
        confirm_points=confirm_points,
        min_current_A=min_current_A,
        onset_fraction=onset_fraction,
    )
    hard = _in_table(find_short(usable, **options), kept)
    first = _in_table(
        classify_short(
            usable, soft_fraction=soft_fraction, soft_min_duration_s=soft_min_duration_s, **options
        ),
        kept,
    )
    soft = first if first is not None and first.kind == "soft" else None
    short = first if count_soft else hard
    charge = charge_to_failure(data, None if short is None else short.time_s)
    return CCDAnalysis(
        ccd_mA_cm2=None if short is None else round(abs(short.current_A) / area_cm2 * 1e3, 6),
        short=short,
        soft_short=soft,
        charge_to_failure_C_cm2={k: v / area_cm2 for k, v in charge.items()},
        area_cm2=float(area_cm2),
        dropped_rows=tuple(int(k) for k in dropped),
    )


def _in_table(event: ShortEvent | None, kept: np.ndarray) -> ShortEvent | None:
    """``event`` with its row position in the whole table rather than in the kept rows."""
    if event is None:
        return event
    return replace(event, index=int(kept[event.index]))


def _rows(positions: np.ndarray) -> str:
    """Data rows, 1-based as a user counts them below the header: ``3, 17 and 4 more``."""
    shown = ", ".join(str(int(k) + 1) for k in positions[:_LISTED])
    more = positions.size - _LISTED
    return shown if more <= 0 else f"{shown} and {more} more"


def _unusable(data: pd.DataFrame, column: str, limit: float) -> np.ndarray:
    """Positions of ``column`` that are NaN, non-numeric, infinite or beyond ``limit``."""
    values = pd.to_numeric(data[column], errors="coerce").to_numpy(float)
    with np.errstate(invalid="ignore"):
        # inf <= inf is True: an infinite limit still needs the explicit finiteness test.
        return np.flatnonzero(~(np.isfinite(values) & (np.abs(values) <= limit)))


def _what(data: pd.DataFrame, column: str, limit: float, unit: str) -> str:
    """What the unusable values of ``column`` are, for a message."""
    garbled = len(data.attrs.get("non_numeric_rows", {}).get(column, []))
    what = "NaN, not a number, infinite or beyond ±{limit:g} {unit}"
    what = what.format(limit=limit, unit=unit) if np.isfinite(limit) else "NaN or infinite"
    return what + (f" (text that is not a number in {garbled})" if garbled else "")


def _check_trace(data: pd.DataFrame) -> np.ndarray:
    """Refuse a trace the CCD cannot be trusted from; the voltage rows that may be dropped.

    Returns
    -------
    array of int
        Row positions whose voltage is unusable but few enough to leave out (warned).
    """
    if len(data) == 0:
        raise AnalysisInputError(
            "the trace has no data rows; give a file or run that recorded the cycling"
        )
    for column, limit, unit in (("time_s", np.inf, "s"), ("current_A", MAX_ABS_CURRENT_A, "A")):
        bad = _unusable(data, column, limit)
        if bad.size:
            raise AnalysisInputError(
                f"{column} is {_what(data, column, limit, unit)} in {bad.size} row(s): data "
                f"row(s) {_rows(bad)} (1 = the first row below the header). The half-cycles "
                "and the charge need every point's time and current: correct those values "
                "or delete those rows"
            )
    t = data["time_s"].to_numpy(float)
    back = np.flatnonzero(np.diff(t) < 0)
    if back.size:
        k = int(back[0]) + 1
        raise AnalysisInputError(
            f"time_s runs backwards at {back.size} place(s), first at data row {k + 1} "
            f"({t[k - 1]:g} s, then {t[k]:g} s): sort the table by time, or analyse each "
            "run of a file that joins several separately"
        )
    bad = _unusable(data, "voltage_V", MAX_ABS_VOLTAGE_V)
    if bad.size == 0:
        return bad
    what = _what(data, "voltage_V", MAX_ABS_VOLTAGE_V, "V")
    longest = _longest_run(bad)
    if bad.size > MAX_DROPPED_FRACTION * len(data) or longest > MAX_DROPPED_RUN:
        raise AnalysisInputError(
            f"voltage_V is {what} in {bad.size} of {len(data)} rows (data rows {_rows(bad)}, "
            f"up to {longest} in a row): too many to leave out (at most "
            f"{MAX_DROPPED_FRACTION:.0%} of the rows, {MAX_DROPPED_RUN} in a row) without "
            "risking a missed or misdated short. Correct those values, or delete those rows "
            "if you accept the gaps"
        )
    warnings.warn(
        f"voltage_V is {what} in {bad.size} of {len(data)} rows (data rows {_rows(bad)}); "
        "they are left out of the short detection (the charge counts them)",
        UnusableRowsWarning,
        stacklevel=3,
    )
    return bad


def _longest_run(positions: np.ndarray) -> int:
    """Length of the longest run of consecutive integers in sorted ``positions``."""
    if positions.size == 0:
        return 0
    breaks = np.flatnonzero(np.diff(positions) != 1)
    edges = np.concatenate([[-1], breaks, [positions.size - 1]])
    return int(np.max(np.diff(edges)))


def _require(data: pd.DataFrame, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in data.columns]
    if missing:
        raise AnalysisInputError(
            f"table lacks column(s) {', '.join(missing)}; it has "
            f"{', '.join(map(str, data.columns))}. Rename the columns to time_s, voltage_V, "
            "current_A (SI units)"
        )
