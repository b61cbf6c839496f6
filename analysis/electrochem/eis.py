"""Electrolyte resistance from impedance spectra: equivalent-circuit fits and intercepts.

Works on any table with ``frequency_Hz``, ``z_real_ohm`` and ``z_imag_ohm`` columns (the
imaginary part negative for a capacitive response), from a catalog run or a measured file.

Three ways to the electrolyte resistance R_el = R_b + R_gb (bulk plus grain boundary), each a
named ``method``:

``"fit"``
    A complex non-linear least-squares fit of an equivalent circuit with impedance.py
    (:class:`impedance.models.circuits.CustomCircuit`), weighted by |Z| so that every decade
    counts alike. Circuits (:data:`CIRCUITS`): for a blocking cell (carbon-coated Al|SE|Al)
    ``R_b-p(R_gb,CPE_gb)-CPE_el``; for a Li|SE|Li cell ``R_b-p(R_gb,CPE_gb)-p(R_int,CPE_dl)``
    with the two electrodes' interfaces lumped into one arc; each with a simpler variant
    without the grain-boundary arc, for spectra whose electrolyte arc lies above the highest
    measured frequency.
``"spike_intercept"``
    The seed paper's method for blocking cells (Methods): fit a straight line to the
    low-frequency capacitive spike in the Nyquist plane and intersect it with Z'' = 0.
``"hf_intercept"``
    The high-frequency real-axis intercept: where −Z'' crosses zero or, without an inductive
    tail, the first minimum of −Z'' coming from high frequency (interpolated).

:func:`electrolyte_resistance` is the entry point; with ``method="fit"`` it falls back to an
intercept method when the fit fails or is poor, and records that in the result's ``method``
and ``note``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from ..errors import AnalysisInputError

__all__ = [
    "CIRCUITS",
    "EIS_COLUMNS",
    "METHODS",
    "MIN_POINTS",
    "CircuitSpec",
    "EISFit",
    "EISFitError",
    "electrolyte_resistance",
    "fit_circuit",
    "hf_intercept",
    "spectrum_frame",
    "spike_intercept",
    "split_spectra",
]

EIS_COLUMNS = ("frequency_Hz", "z_real_ohm", "z_imag_ohm")
#: Fewest points any method accepts (a circuit fit needs more than it has parameters).
MIN_POINTS = 5
METHODS = ("fit", "spike_intercept", "hf_intercept")

Cell = Literal["blocking", "li"]
Method = Literal["fit", "spike_intercept", "hf_intercept"]


class EISFitError(AnalysisInputError):
    """A spectrum that a method cannot analyse (too few points, no spike, a failed fit)."""


@dataclass(frozen=True)
class CircuitSpec:
    """An equivalent circuit in impedance.py notation with our names for its parameters.

    Attributes
    ----------
    circuit : str
        impedance.py circuit string (elements ``R``, ``CPE``; ``-`` series, ``p(,)`` parallel).
    names : tuple of str
        Our name of each parameter, in impedance.py's order. Resistances in ohm; CPE
        coefficients ``Q_*`` in F·s^(n−1) (Z = 1/(Q (jω)^n)); exponents ``n_*`` dimensionless.
    electrolyte : tuple of str
        The parameters whose sum is the electrolyte resistance.
    """

    circuit: str
    names: tuple[str, ...]
    electrolyte: tuple[str, ...]


#: The circuits tried by ``method="fit"``, by cell: the full circuit first, then the simpler
#: variant.
CIRCUITS: dict[str, tuple[CircuitSpec, ...]] = {
    "blocking": (
        CircuitSpec(
            "R0-p(R1,CPE1)-CPE2",
            ("R_b_ohm", "R_gb_ohm", "Q_gb", "n_gb", "Q_el", "n_el"),
            ("R_b_ohm", "R_gb_ohm"),
        ),
        CircuitSpec("R0-CPE1", ("R_el_ohm", "Q_el", "n_el"), ("R_el_ohm",)),
    ),
    "li": (
        CircuitSpec(
            "R0-p(R1,CPE1)-p(R2,CPE2)",
            ("R_b_ohm", "R_gb_ohm", "Q_gb", "n_gb", "R_int_ohm", "Q_dl", "n_dl"),
            ("R_b_ohm", "R_gb_ohm"),
        ),
        CircuitSpec("R0-p(R1,CPE1)", ("R_el_ohm", "R_int_ohm", "Q_dl", "n_dl"), ("R_el_ohm",)),
    ),
}

# CPE exponents outside [0.5, 1] are not a capacitive interface or grain boundary any more
# (0.5 is a Warburg-like diffusion response), so the fit may not wander there.
_N_BOUNDS = (0.5, 1.0)
# Relative RMS residual below which the other starting points are not tried: bench
# potentiostats measure |Z| to ~0.1–0.5 %.
_GOOD_ENOUGH_RMS = 0.01


@dataclass(frozen=True, eq=False)
class EISFit:
    """Electrolyte resistance from one spectrum, and how it was obtained.

    Attributes
    ----------
    electrolyte_resistance_ohm : float
        R_b + R_gb (fit) or the intercept, in ohm.
    electrolyte_resistance_stderr_ohm : float
        Its standard error (NaN where the method gives none).
    method : str
        The method that produced the value: ``"fit"``, ``"spike_intercept"`` or
        ``"hf_intercept"``.
    requested_method : str
        The method asked for; differs from ``method`` after a fallback.
    cell : str
        ``"blocking"`` or ``"li"``.
    circuit : str or None
        impedance.py circuit string of a fit; None for intercept methods.
    parameters : dict
        Named parameter values in SI (see :class:`CircuitSpec`); for the spike intercept
        ``intercept_ohm``, ``slope`` (dZ'/d(−Z'')) and ``angle_deg`` (of the spike from the
        real axis); for the high-frequency intercept ``intercept_ohm`` and ``frequency_Hz``.
    stderr : dict
        Standard errors of ``parameters`` where available.
    frequency_Hz : ndarray
        Frequencies of the input spectrum (descending).
    z_fit_ohm : ndarray of complex or None
        The fitted spectrum at ``frequency_Hz`` (fit), or the fitted spike line at the spike's
        frequencies (spike intercept, NaN elsewhere); None for the high-frequency intercept.
    relative_rms : float
        RMS of |Z − Z_fit| / |Z| over the points fitted; NaN where not applicable.
    n_points : int
        Number of points the method used.
    note : str
        Why a fallback happened, or what an intercept method assumed; empty otherwise.
    model : impedance.models.circuits.CustomCircuit or None
        The fitted circuit as an impedance.py object (``predict``, ``plot``); None for
        intercept methods.
    """

    electrolyte_resistance_ohm: float
    electrolyte_resistance_stderr_ohm: float
    method: str
    requested_method: str
    cell: str
    circuit: str | None
    parameters: dict[str, float]
    stderr: dict[str, float]
    frequency_Hz: np.ndarray = field(repr=False)
    z_fit_ohm: np.ndarray | None = field(repr=False)
    relative_rms: float
    n_points: int
    note: str = ""
    model: object | None = field(default=None, repr=False)

    @property
    def fell_back(self) -> bool:
        """Whether the value comes from a fallback rather than the method asked for."""
        return self.method != self.requested_method


# --- input -----------------------------------------------------------------------------------
def spectrum_frame(frequency_Hz: np.ndarray, z_ohm: np.ndarray) -> pd.DataFrame:
    """Put a complex spectrum into the standard EIS columns.

    Parameters
    ----------
    frequency_Hz : array
        Frequencies.
    z_ohm : array of complex
        Impedance, imaginary part negative for capacitive.

    Returns
    -------
    DataFrame
        Columns ``frequency_Hz``, ``z_real_ohm``, ``z_imag_ohm``.
    """
    z = np.asarray(z_ohm, dtype=complex)
    f = np.asarray(frequency_Hz, dtype=float)
    return pd.DataFrame({"frequency_Hz": f, "z_real_ohm": z.real, "z_imag_ohm": z.imag})


def _spectrum(data: pd.DataFrame, min_points: int = MIN_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Validated (frequency descending, complex Z) from a table."""
    if not isinstance(data, pd.DataFrame):
        raise TypeError(
            f"expected a DataFrame with columns {', '.join(EIS_COLUMNS)}, got "
            f"{type(data).__name__}; build one with spectrum_frame(frequency_Hz, z_ohm)"
        )
    missing = [c for c in EIS_COLUMNS if c not in data.columns]
    if missing:
        raise AnalysisInputError(
            f"impedance table lacks column(s) {', '.join(missing)}; it has "
            f"{', '.join(map(str, data.columns))}. Rename the columns to frequency_Hz, "
            "z_real_ohm, z_imag_ohm (z_imag_ohm negative for capacitive)"
        )
    _refuse_unusable(data)
    f = data["frequency_Hz"].to_numpy(float)
    z = data["z_real_ohm"].to_numpy(float) + 1j * data["z_imag_ohm"].to_numpy(float)
    if np.any(f <= 0):
        raise AnalysisInputError(
            f"frequencies must be positive; found {int(np.sum(f <= 0))} non-positive value(s)"
        )
    if f.size < min_points:
        raise EISFitError(f"need at least {min_points} impedance points, got {f.size}")
    order = np.argsort(-f, kind="stable")
    return f[order], z[order]


def split_spectra(data: pd.DataFrame) -> list[pd.DataFrame]:
    """Split a table that may hold several spectra (one per temperature or loop) into each.

    A new spectrum starts where the ``cycle`` column (EC-Lab's "cycle number", one per EIS
    loop) changes, or where the frequency turns back against the sweep's direction (a
    conductivity run's export holds one high-to-low sweep per temperature, end to end).

    Parameters
    ----------
    data : DataFrame
        Columns ``frequency_Hz``, ``z_real_ohm``, ``z_imag_ohm``; optionally ``cycle`` and
        ``temperature_C``.

    Returns
    -------
    list of DataFrame
        The spectra in file order, each with a fresh index; one element for one spectrum.
        Each keeps ``attrs`` with ``first_row`` (0-based position of its first row in
        ``data``).

    Raises
    ------
    AnalysisInputError
        NaN, non-numeric or infinite impedance values (named by column and row).
    """
    _spectrum(data, min_points=0)
    f = data["frequency_Hz"].to_numpy(float)
    steps = np.sign(np.diff(f))
    moving = steps[steps != 0]
    starts = np.zeros(len(f), dtype=bool)
    if moving.size:
        # The sweep's direction is the first step's; a step against it starts a new sweep.
        starts[1:] |= steps == -moving[0]
    if "cycle" in data.columns:
        cycle = pd.to_numeric(data["cycle"], errors="coerce").to_numpy(float)
        starts[1:] |= np.diff(cycle) != 0
    first_rows = [0, *np.flatnonzero(starts).tolist(), len(f)]
    spectra = []
    for begin, end in itertools.pairwise(first_rows):
        part = data.iloc[begin:end].reset_index(drop=True)
        part.attrs = {**data.attrs, "first_row": int(begin)}
        spectra.append(part)
    return spectra


def _refuse_unusable(data: pd.DataFrame) -> None:
    """Refuse NaN, non-numeric or infinite impedance values, naming the column and rows.

    Refused rather than dropped: a spectrum has few points (tens), each fixing the shape of
    an arc, so leaving one out changes the fit; the user decides whether to delete the row.
    """
    garbled = data.attrs.get("non_numeric_rows", {})
    for column in EIS_COLUMNS:
        values = pd.to_numeric(data[column], errors="coerce").to_numpy(float)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            rows = ", ".join(str(int(k) + 1) for k in bad[:5])
            rows += f" and {bad.size - 5} more" if bad.size > 5 else ""
            text = len(garbled.get(column, []))
            kinds = "NaN or infinite" + (f" (text that is not a number in {text})" if text else "")
            raise AnalysisInputError(
                f"impedance table: {column} is {kinds} in {bad.size} of {len(values)} row(s): "
                f"data row(s) {rows} (1 = the first row below the header). Correct those "
                "values, or delete those rows to fit the spectrum without them"
            )


def _log_spaced(f: np.ndarray, per_decade: int) -> np.ndarray:
    """Indices of ``f`` (descending) keeping at most ``per_decade`` points per decade.

    A densely, linearly sampled spectrum would otherwise let its top decade outweigh all the
    others in the fit.
    """
    bins = np.floor(np.log10(f) * per_decade).astype(int)
    _, first = np.unique(bins, return_index=True)
    return np.sort(first)


# --- intercepts -------------------------------------------------------------------------------
def _valley_index(y: np.ndarray, half_window: int = 2) -> int | None:
    """First interior local minimum of −Z'' (descending frequency), robust to single points."""
    n = y.size
    for k in range(1, n - 1):
        lo, hi = max(0, k - half_window), min(n, k + half_window + 1)
        if y[k] <= y[lo:hi].min() and y[k] < y[k - 1]:
            return k
    return None


def _hf_intercept_value(f: np.ndarray, z: np.ndarray) -> tuple[float, float, str]:
    """(intercept, frequency, how) of the high-frequency real-axis intercept."""
    x, y = z.real, -z.imag
    if y[0] <= 0:
        # Inductive tail at high frequency: interpolate where −Z'' turns positive.
        k = int(np.argmax(y > 0))
        if y[k] <= 0:
            raise EISFitError("−Z'' never becomes positive: no capacitive response to intercept")
        w = -y[k - 1] / (y[k] - y[k - 1])
        fx = 10 ** (np.log10(f[k - 1]) + w * (np.log10(f[k]) - np.log10(f[k - 1])))
        return float(x[k - 1] + w * (x[k] - x[k - 1])), float(fx), "real-axis crossing"
    k = _valley_index(y)
    if k is None:
        # No valley: the electrolyte arc lies above the measured range, and the first point
        # is the closest to its intercept (an overestimate by the electrode response there).
        return float(x[0]), float(f[0]), "no minimum of −Z'': highest-frequency point"
    # Parabola through the minimum and its neighbours in (log f, −Z'') locates the valley
    # between points; Z' is interpolated there.
    lf = np.log10(f[k - 1 : k + 2])
    a, b, _ = np.polyfit(lf, y[k - 1 : k + 2], 2)
    lv = float(np.clip(-b / (2 * a), lf.min(), lf.max())) if a > 0 else float(lf[1])
    xv = float(np.interp(lv, lf[::-1], x[k - 1 : k + 2][::-1]))
    return xv, float(10**lv), "minimum of −Z''"


def hf_intercept(data: pd.DataFrame, *, cell: Cell = "blocking") -> EISFit:
    """Electrolyte resistance from the high-frequency real-axis intercept.

    Where −Z'' crosses zero at high frequency (an inductive tail), Z' interpolated at the
    crossing; otherwise Z' at the first minimum of −Z'' coming from high frequency, located
    between points by a parabola in log f. This is the valley between the electrolyte arc and
    the electrode response, so it overestimates R_b + R_gb by what the electrode response
    already adds there.

    Parameters
    ----------
    data : DataFrame
        Columns ``frequency_Hz``, ``z_real_ohm``, ``z_imag_ohm``.
    cell : {"blocking", "li"}
        Recorded in the result.

    Returns
    -------
    EISFit
        ``method="hf_intercept"``.
    """
    _check_cell(cell)
    f, z = _spectrum(data)
    value, fx, how = _hf_intercept_value(f, z)
    return EISFit(
        electrolyte_resistance_ohm=value,
        electrolyte_resistance_stderr_ohm=float("nan"),
        method="hf_intercept",
        requested_method="hf_intercept",
        cell=cell,
        circuit=None,
        parameters={"intercept_ohm": value, "frequency_Hz": fx},
        stderr={},
        frequency_Hz=f,
        z_fit_ohm=None,
        relative_rms=float("nan"),
        n_points=int(f.size),
        note=how,
    )


def spike_intercept(
    data: pd.DataFrame,
    *,
    angle_tolerance_deg: float = 5.0,
    min_points: int = 3,
) -> EISFit:
    """Electrolyte resistance of a blocking cell from its low-frequency spike (the paper's way).

    The blocking electrodes make the low-frequency end a straight line in the Nyquist plane
    (a CPE: Z = R_el + 1/(Q (jω)^n), a line at angle nπ/2 from the real axis through R_el).
    The spike is the run of points, from the lowest frequency up, along which the direction
    from point to point stays within ``angle_tolerance_deg`` of the low-frequency direction;
    a line Z' = a + b·(−Z'') is fitted to it, weighted by 1/|Z| (the noise of a measured
    point scales with |Z|, so the points nearest the axis pin the intercept), and ``a`` is
    the electrolyte resistance.

    Parameters
    ----------
    data : DataFrame
        Columns ``frequency_Hz``, ``z_real_ohm``, ``z_imag_ohm``.
    angle_tolerance_deg : float
        How far a segment's direction may stray from the spike's and still belong to it.
    min_points : int
        Fewest points the spike must have.

    Returns
    -------
    EISFit
        ``method="spike_intercept"``; ``parameters`` hold ``intercept_ohm``, ``slope`` and
        ``angle_deg``, ``z_fit_ohm`` the fitted line at the spike's points.

    Raises
    ------
    EISFitError
        If the low-frequency end is not a capacitive spike (e.g. an arc closing on the axis,
        as for Li electrodes) or has fewer than ``min_points`` points.
    """
    f, z = _spectrum(data)
    x, y = z.real, -z.imag
    # Walk from the lowest frequency toward higher ones (arrays are descending).
    xs, ys = x[::-1], y[::-1]
    dx, dy = -np.diff(xs), -np.diff(ys)  # from each higher-frequency point to the lower one
    angle = np.degrees(np.arctan2(dy, dx))
    ref = float(np.median(angle[: min(3, angle.size)]))
    if not 30.0 <= ref <= 95.0:
        raise EISFitError(
            f"the low-frequency end runs at {ref:.0f}° from the real axis, not a capacitive "
            "spike (expected 45–90°): spike_intercept needs blocking electrodes; use "
            "method='hf_intercept' or 'fit' with cell='li'"
        )
    stray = np.abs(angle - ref) > angle_tolerance_deg
    n_seg = int(np.argmax(stray)) if stray.any() else angle.size
    # Do not let the spike run past the valley into the electrolyte arc.
    valley = _valley_index(y)
    if valley is not None:
        n_seg = min(n_seg, f.size - 1 - valley)
    n = n_seg + 1
    if n < min_points:
        raise EISFitError(
            f"the low-frequency spike has only {n} point(s) within {angle_tolerance_deg}° of "
            f"a straight line; need {min_points}. Measure to lower frequency or use "
            "method='hf_intercept'"
        )
    sx, sy = xs[:n], ys[:n]
    w = 1.0 / np.abs(z[::-1][:n])
    design = np.column_stack([np.ones(n), sy]) * w[:, None]
    coef, *_ = np.linalg.lstsq(design, sx * w, rcond=None)
    a, b = (float(c) for c in coef)
    resid = (sx - a - b * sy) * w
    dof = max(n - 2, 1)
    cov = np.linalg.pinv(design.T @ design) * float(resid @ resid) / dof
    se_a, se_b = (float(s) for s in np.sqrt(np.clip(np.diag(cov), 0, None)))
    z_line = np.full(f.size, np.nan + 1j * np.nan)
    z_line[f.size - n :] = ((a + b * sy) - 1j * sy)[::-1]
    rel = np.abs(sx - (a + b * sy)) / np.abs(z[::-1][:n])
    return EISFit(
        electrolyte_resistance_ohm=a,
        electrolyte_resistance_stderr_ohm=se_a,
        method="spike_intercept",
        requested_method="spike_intercept",
        cell="blocking",
        circuit=None,
        parameters={
            "intercept_ohm": a,
            "slope": b,
            "angle_deg": float(np.degrees(np.arctan2(1.0, b))),
        },
        stderr={"intercept_ohm": se_a, "slope": se_b},
        frequency_Hz=f,
        z_fit_ohm=z_line,
        relative_rms=float(np.sqrt(np.mean(rel**2))),
        n_points=n,
        note=f"spike of {n} points from {f[-n]:.3g} Hz down to {f[-1]:.3g} Hz",
    )


# --- circuit fit -------------------------------------------------------------------------------
def _initial_guess(spec: CircuitSpec, f: np.ndarray, z: np.ndarray) -> dict[str, float]:
    """Starting values from the spectrum's shape (intercepts, arc widths, −Z'' peaks)."""
    x, y = z.real, -z.imag
    w = 2 * np.pi * f
    r_hf = max(float(x[0]), 1e-6 * float(np.max(np.abs(z))))
    k_valley = _valley_index(y)
    if k_valley is None and y[0] > 0:
        # No valley: the electrolyte arc lies above the measured range; its intercept is
        # near the first point, split 80/20 so that both resistances start positive, and
        # its apex above the highest frequency.
        r_valley = r_hf
        r_b, r_gb = 0.8 * r_hf, 0.2 * r_hf
        f_gb = 3.0 * f[0]
    else:
        try:
            r_valley, _, _ = _hf_intercept_value(f, z)
        except EISFitError:
            r_valley = r_hf
        r_valley = max(r_valley, r_hf)
        # R_b at the high-frequency end, R_gb the rest of the arc up to the valley.
        r_b = r_hf if r_valley > 1.05 * r_hf else 0.8 * r_valley
        r_gb = max(r_valley - r_b, 0.2 * r_valley)
        k_peak = int(np.argmax(y[: max(k_valley or 0, 1)]))
        # Peak at the top end: the arc's apex lies above the measured range.
        f_gb = f[k_peak] if k_peak > 0 else 3.0 * f[0]
    n_gb = 0.9
    guess: dict[str, float] = dict(
        R_b_ohm=r_b,
        R_gb_ohm=r_gb,
        Q_gb=1.0 / (r_gb * (2 * np.pi * f_gb) ** n_gb),
        n_gb=n_gb,
        R_el_ohm=r_valley,
    )
    # Electrode response, from the low-frequency side of the valley.
    lf = slice(k_valley if k_valley is not None else 0, None)
    zl = z[lf] - r_valley
    # Blocking: the lowest-frequency point on the spike gives n from its phase and Q from |Z|.
    tail = zl[-1]
    n_el = float(np.clip(-np.angle(tail) / (np.pi / 2), *_N_BOUNDS))
    guess.update(n_el=n_el, Q_el=1.0 / (abs(tail) * w[-1] ** n_el))
    # Li: the interface arc's width and the frequency of its −Z'' peak.
    r_int = max(float(x[-1]) - r_valley, 0.05 * r_valley)
    k_int = int(np.argmax(y[lf]))
    f_int = f[lf][k_int]
    n_dl = 0.9
    guess.update(R_int_ohm=r_int, Q_dl=1.0 / (r_int * (2 * np.pi * f_int) ** n_dl), n_dl=n_dl)
    return {name: float(guess[name]) for name in spec.names}


def _compile(circuit: str) -> tuple[Callable[[np.ndarray, np.ndarray], np.ndarray], int]:
    """Compile an impedance.py circuit string into a vectorised ``Z(parameters, ω)``.

    impedance.py rebuilds and ``eval``-s the circuit string on every call (~1.5 ms), which
    made one fit take seconds; this evaluates the same circuit, with the same parameter
    order (order of appearance) and the same element definitions, in microseconds. Elements
    ``R`` (R), ``C`` (C), ``L`` (L), ``CPE`` (Q, n: Z = 1/(Q (jω)^n)); ``-`` in series,
    ``p(a,b,...)`` in parallel.
    """
    text = circuit.replace(" ", "")
    pos = 0
    count = 0

    def element() -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        nonlocal pos, count
        match = re.match(r"(CPE|R|C|L)\d+", text[pos:])
        if match is None:
            raise ValueError(f"cannot parse circuit {circuit!r} at {text[pos:]!r}")
        pos += match.end()
        k = count
        kind = match.group(1)
        count += 2 if kind == "CPE" else 1
        if kind == "R":
            return lambda p, w: np.full(w.shape, p[k], dtype=complex)
        if kind == "C":
            return lambda p, w: 1.0 / (1j * w * p[k])
        if kind == "L":
            return lambda p, w: 1j * w * p[k]
        return lambda p, w: 1.0 / (p[k] * (1j * w) ** p[k + 1])

    def term() -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        nonlocal pos
        if text.startswith("p(", pos):
            pos += 2
            branches = [series()]
            while text.startswith(",", pos):
                pos += 1
                branches.append(series())
            if not text.startswith(")", pos):
                raise ValueError(f"unbalanced parenthesis in circuit {circuit!r}")
            pos += 1
            return lambda p, w: 1.0 / sum(1.0 / b(p, w) for b in branches)
        return element()

    def series() -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        nonlocal pos
        parts = [term()]
        while text.startswith("-", pos):
            pos += 1
            parts.append(term())
        return lambda p, w: sum(part(p, w) for part in parts)

    function = series()
    if pos != len(text):
        raise ValueError(f"cannot parse circuit {circuit!r} at {text[pos:]!r}")
    return function, count


def _start_points(
    spec: CircuitSpec, p0: dict[str, float], f: np.ndarray, z: np.ndarray
) -> list[dict[str, float]]:
    """Starts around the data-derived guess, tried in turn until one fits to noise level.

    The grain-boundary arc is the least determined: its split from R_b when it lies near
    the top of the range, and its position when it overlaps the electrode response without
    a valley between them (then the guess has put it above the range). The extra starts
    vary the split, then place the arc one to three decades below the highest frequency.
    """
    starts = [p0]
    if "Q_gb" not in p0:
        return starts
    total = p0["R_b_ohm"] + p0["R_gb_ohm"]
    for frac, q_scale in ((0.5, 0.1), (0.9, 10.0)):
        p = dict(p0)
        p["R_b_ohm"], p["R_gb_ohm"] = frac * total, (1 - frac) * total
        p["Q_gb"] = p0["Q_gb"] * q_scale * p0["R_gb_ohm"] / p["R_gb_ohm"]
        starts.append(p)
    x0, span = float(z.real[0]), float(np.ptp(z.real))
    for decades in (1, 2, 3):
        f_gb = f[0] / 10.0**decades
        p = dict(p0)
        p["R_b_ohm"] = 0.9 * x0
        # Li: the arcs share the real-axis span; blocking: the arc sits on top of R_b.
        p["R_gb_ohm"] = 0.3 * span if "R_int_ohm" in p0 else 0.5 * x0
        if "R_int_ohm" in p0:
            p["R_int_ohm"] = 0.7 * span
            p["Q_dl"] = 1.0 / (p["R_int_ohm"] * (2 * np.pi * f_gb / 100.0) ** p["n_dl"])
        p["Q_gb"] = 1.0 / (p["R_gb_ohm"] * (2 * np.pi * f_gb) ** p["n_gb"])
        starts.append(p)
    return starts


def _fit_once(
    spec: CircuitSpec, f: np.ndarray, z: np.ndarray, p0: dict[str, float]
) -> tuple[np.ndarray, float, np.ndarray]:
    """One least-squares fit from ``p0``: (parameters, relative RMS, covariance of φ).

    The fit runs in φ = (ln R, ln Q, n): resistances and CPE coefficients stay positive and
    span ~15 decades without scaling trouble; exponents stay within [0.5, 1].
    """
    model, n_params = _compile(spec.circuit)
    if n_params != len(spec.names):
        raise ValueError(f"{spec.circuit} has {n_params} parameters, names give {len(spec.names)}")
    w = 2 * np.pi * f
    is_n = np.array([name.startswith("n_") for name in spec.names])
    guess = np.array([p0[name] for name in spec.names], dtype=float)
    lo, hi = _N_BOUNDS
    modulus = np.abs(z)

    def params(phi: np.ndarray) -> np.ndarray:
        # φ = (ln R, ln Q, n) → p
        return np.where(is_n, phi, np.exp(np.where(is_n, 0.0, phi)))

    def residuals_phi(phi: np.ndarray) -> np.ndarray:
        # Weighted by |Z| (relative residuals): the standard weighting when the
        # instrument's error is proportional to |Z|, and every decade counts alike.
        d = (model(params(phi), w) - z) / modulus
        return np.concatenate([d.real, d.imag])

    # The optimiser works in θ, with each exponent mapped onto (0.5, 1) by a logistic
    # function: unconstrained, so Levenberg–Marquardt applies, which crosses the long flat
    # valleys of a barely resolved arc in tens of iterations where a bounded
    # trust-region method needs thousands.
    def phi_of(theta: np.ndarray) -> np.ndarray:
        return np.where(is_n, lo + (hi - lo) / (1.0 + np.exp(-theta)), theta)

    n0 = np.clip(guess, lo + 1e-3, hi - 1e-3)
    theta0 = np.where(
        is_n,
        np.log((n0 - lo) / (hi - n0)),
        np.log(np.clip(guess, 1e-300, None)),
    )
    with np.errstate(all="ignore"):
        result = least_squares(
            lambda theta: residuals_phi(phi_of(theta)),
            theta0,
            method="lm",
            xtol=1e-10,
            ftol=1e-10,
            max_nfev=4000,
        )
    phi = phi_of(result.x)
    r = residuals_phi(phi)
    # Covariance in φ (ln R, ln Q, n) from a central-difference Jacobian at the optimum.
    jac = np.empty((r.size, phi.size))
    for j in range(phi.size):
        h = 1e-6 * max(1.0, abs(phi[j]))
        step = np.zeros_like(phi)
        step[j] = h
        jac[:, j] = (residuals_phi(phi + step) - residuals_phi(phi - step)) / (2 * h)
    dof = max(r.size - phi.size, 1)
    cov = np.linalg.pinv(jac.T @ jac) * float(r @ r) / dof
    rel = np.abs(model(params(phi), w) - z) / modulus
    return params(phi), float(np.sqrt(np.mean(rel**2))), cov


def fit_circuit(
    data: pd.DataFrame,
    cell: Cell = "blocking",
    *,
    variant: Literal["full", "simple"] = "full",
    initial_guess: dict[str, float] | None = None,
    points_per_decade: int = 20,
) -> EISFit:
    """Fit the cell's equivalent circuit (impedance.py notation) to a spectrum.

    Complex non-linear least squares on relative (|Z|-weighted) residuals, in the parameters
    (ln R, ln Q, n) so that resistances and CPE coefficients stay positive and CPE exponents
    lie in [0.5, 1]; a few starting points, the best kept. The circuit is evaluated with the
    element definitions of impedance.py, and the result carries a fitted
    :class:`impedance.models.circuits.CustomCircuit` in ``model`` (for ``predict`` and
    impedance.py's plots).

    Parameters
    ----------
    data : DataFrame
        Columns ``frequency_Hz``, ``z_real_ohm``, ``z_imag_ohm``.
    cell : {"blocking", "li"}
        Which circuit family (:data:`CIRCUITS`).
    variant : {"full", "simple"}
        The full circuit (with the grain-boundary arc) or the simpler one without it.
    initial_guess : dict, optional
        Starting values by parameter name (the others derived from the data); by default all
        are derived from the data (high-frequency intercept for R_b, arc widths for R_gb and
        R_int, characteristic frequencies from the −Z'' peaks for the CPE coefficients, the
        low-frequency phase for the spike's exponent) and tried together with a few variations
        of the grain-boundary arc.
    points_per_decade : int
        The fit uses at most this many points per decade (log-spaced), so that a densely
        sampled decade does not outweigh the others.

    Returns
    -------
    EISFit
        ``method="fit"``, with parameters, standard errors (from the covariance of the
        weighted residuals), the fitted spectrum and the relative RMS residual.

    Raises
    ------
    EISFitError
        If every start fails numerically, or there are too few points.
    """
    _check_cell(cell)
    spec = CIRCUITS[cell][0 if variant == "full" else 1]
    f_all, z_all = _spectrum(data, min_points=max(MIN_POINTS, len(spec.names) + 2))
    keep = _log_spaced(f_all, points_per_decade)
    f, z = f_all[keep], z_all[keep]
    if f.size < len(spec.names) + 2:
        raise EISFitError(
            f"{f.size} log-spaced points are too few to fit {len(spec.names)} parameters"
        )
    p_data = _initial_guess(spec, f, z)
    if initial_guess is not None:
        unknown = set(initial_guess) - set(spec.names)
        if unknown:
            raise ValueError(
                f"unknown parameter(s) {', '.join(sorted(unknown))} for {spec.circuit}; "
                f"its parameters are {', '.join(spec.names)}"
            )
        starts = [p_data | {k: float(v) for k, v in initial_guess.items()}]
    else:
        starts = _start_points(spec, p_data, f, z)
    best: tuple[np.ndarray, float, np.ndarray] | None = None
    errors: list[str] = []
    for p0 in starts:
        try:
            p, rms, cov = _fit_once(spec, f, z, p0)
        except (RuntimeError, ValueError, np.linalg.LinAlgError) as exc:
            errors.append(str(exc))
            continue
        if np.all(np.isfinite(p)) and np.isfinite(rms) and (best is None or rms < best[1]):
            best = (p, rms, cov)
        if best is not None and best[1] < _GOOD_ENOUGH_RMS:
            # A fit at the level of instrument noise needs no second opinion.
            break
    if best is None:
        raise EISFitError(f"circuit fit {spec.circuit} failed: {'; '.join(errors)}")
    p, rms, cov = _order_arcs(spec, *best)
    is_n = np.array([name.startswith("n_") for name in spec.names])
    # d p / d θ: p for the log parameters, 1 for the exponents.
    grad = np.where(is_n, 1.0, p)
    se = np.sqrt(np.clip(np.diag(cov), 0, None)) * grad
    sel = np.array([name in spec.electrolyte for name in spec.names], dtype=float) * grad
    r_el = float(sum(p[k] for k, name in enumerate(spec.names) if name in spec.electrolyte))
    se_el = float(np.sqrt(max(float(sel @ cov @ sel), 0.0)))
    model, _ = _compile(spec.circuit)
    return EISFit(
        electrolyte_resistance_ohm=r_el,
        electrolyte_resistance_stderr_ohm=se_el,
        method="fit",
        requested_method="fit",
        cell=cell,
        circuit=spec.circuit,
        parameters=dict(zip(spec.names, (float(v) for v in p), strict=True)),
        stderr=dict(zip(spec.names, (float(v) for v in se), strict=True)),
        frequency_Hz=f_all,
        z_fit_ohm=model(p, 2 * np.pi * f_all),
        relative_rms=rms,
        n_points=int(f.size),
        model=_custom_circuit(spec.circuit, p, se),
    )


def _arc_frequency_Hz(r: float, q: float, n: float) -> float:
    """Apex frequency 1/(2π (RQ)^(1/n)) of an R‖CPE arc (0 or inf for a degenerate arc)."""
    with np.errstate(over="ignore", divide="ignore"):
        return float(1.0 / (2 * np.pi * (r * q) ** (1.0 / n)))


def _order_arcs(
    spec: CircuitSpec, p: np.ndarray, rms: float, cov: np.ndarray
) -> tuple[np.ndarray, float, np.ndarray]:
    """Put the higher-frequency arc in the grain-boundary slot.

    R0-p(R1,CPE1)-p(R2,CPE2) is symmetric in its two arcs, so a fit may converge with the
    interface arc in the grain-boundary slot; the electrolyte's arc is the faster one.
    """
    gb = [spec.names.index(n) for n in ("R_gb_ohm", "Q_gb", "n_gb") if n in spec.names]
    it = [spec.names.index(n) for n in ("R_int_ohm", "Q_dl", "n_dl") if n in spec.names]
    if len(gb) != 3 or len(it) != 3:
        return p, rms, cov
    if _arc_frequency_Hz(*p[gb]) >= _arc_frequency_Hz(*p[it]):
        return p, rms, cov
    order = np.arange(p.size)
    order[gb], order[it] = it, gb
    return p[order], rms, cov[np.ix_(order, order)]


def _custom_circuit(circuit: str, p: np.ndarray, se: np.ndarray) -> object:
    """A fitted impedance.py CustomCircuit carrying our parameters (for predict and plots)."""
    from impedance.models.circuits import CustomCircuit

    model = CustomCircuit(circuit, initial_guess=[float(v) for v in p])
    model.parameters_ = np.asarray(p, dtype=float)
    model.conf_ = np.asarray(se, dtype=float)
    return model


def _fit_problem(fit: EISFit, max_relative_rms: float, max_relative_stderr: float) -> str | None:
    """Why a fit is not good enough to report, or None."""
    r = fit.electrolyte_resistance_ohm
    if not np.isfinite(r) or r <= 0:
        return f"non-positive electrolyte resistance {r:g} ohm"
    if fit.relative_rms > max_relative_rms:
        return f"residual {100 * fit.relative_rms:.2g} % of |Z| > {100 * max_relative_rms:.2g} %"
    rel_se = fit.electrolyte_resistance_stderr_ohm / r
    if not np.isfinite(rel_se) or rel_se > max_relative_stderr:
        return (
            f"electrolyte resistance ill-determined (standard error {100 * rel_se:.2g} % > "
            f"{100 * max_relative_stderr:.2g} %)"
        )
    return None


def electrolyte_resistance(
    data: pd.DataFrame,
    cell: Cell = "blocking",
    method: Method = "fit",
    *,
    max_relative_rms: float = 0.02,
    max_relative_stderr: float = 0.05,
) -> EISFit:
    """Electrolyte resistance R_b + R_gb of a cell from its impedance spectrum.

    Parameters
    ----------
    data : DataFrame
        Columns ``frequency_Hz``, ``z_real_ohm``, ``z_imag_ohm`` (imaginary part negative for
        capacitive), e.g. from a potentiostat, :func:`spectrum_frame` or a reader.
    cell : {"blocking", "li"}
        Carbon-coated Al|SE|Al (conductivity cell) or Li|SE|Li.
    method : {"fit", "spike_intercept", "hf_intercept"}
        ``"fit"``: equivalent-circuit fit (:func:`fit_circuit`), full circuit then the simpler
        variant; if neither fit is good (fails, relative RMS residual above
        ``max_relative_rms``, or the resistance's standard error above
        ``max_relative_stderr`` of it), falls back to ``"spike_intercept"`` (blocking; then
        ``"hf_intercept"`` if there is no spike) or ``"hf_intercept"`` (Li), and says why in
        ``note``. ``"spike_intercept"``: the seed paper's low-frequency spike extrapolation
        (:func:`spike_intercept`; blocking cells only). ``"hf_intercept"``:
        :func:`hf_intercept`.
    max_relative_rms, max_relative_stderr : float
        Quality limits of an acceptable fit.

    Returns
    -------
    EISFit
        ``method`` is the method that produced the value, ``requested_method`` the one asked
        for.

    Raises
    ------
    ValueError
        Missing columns, non-positive frequencies, too few points, an unknown cell or method,
        or ``spike_intercept`` on a spectrum without a spike (:class:`EISFitError`).
    """
    _check_cell(cell)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    _spectrum(data)  # validate once, with a clear message, before any method runs
    if method == "hf_intercept":
        return hf_intercept(data, cell=cell)
    if method == "spike_intercept":
        if cell != "blocking":
            raise ValueError(
                "spike_intercept needs blocking electrodes (a low-frequency capacitive spike); "
                "for cell='li' use method='fit' or 'hf_intercept'"
            )
        return spike_intercept(data)
    problems: list[str] = []
    for variant in ("full", "simple"):
        try:
            fit = fit_circuit(data, cell, variant=variant)
        except EISFitError as exc:
            problems.append(f"{variant} circuit: {exc}")
            continue
        problem = _fit_problem(fit, max_relative_rms, max_relative_stderr)
        if problem is None:
            if problems:
                return _relabel(fit, "fit", note="; ".join(problems))
            return fit
        problems.append(f"{variant} circuit {fit.circuit}: {problem}")
    reason = "fit rejected (" + "; ".join(problems) + ")"
    if cell == "blocking":
        try:
            return _relabel(spike_intercept(data), "fit", note=f"{reason}; used spike_intercept")
        except EISFitError as exc:
            reason += f"; spike_intercept failed ({exc})"
    hf = hf_intercept(data, cell=cell)
    return _relabel(hf, "fit", note=f"{reason}; used hf_intercept ({hf.note})")


def _relabel(fit: EISFit, requested: str, note: str) -> EISFit:
    return replace(fit, requested_method=requested, note=note)


def _check_cell(cell: str) -> None:
    if cell not in CIRCUITS:
        raise ValueError(f"unknown cell {cell!r}; choose 'blocking' or 'li'")
