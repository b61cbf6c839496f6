"""Figures for cycling, overpotential, impedance and Arrhenius data.

Every function draws on a matplotlib :class:`~matplotlib.axes.Axes` passed as ``ax`` or, when
``ax`` is ``None``, on a new :class:`matplotlib.figure.Figure` created directly (never through
``pyplot``). Nothing here touches pyplot's global figure registry or the interactive backend,
so figures can be built from several threads at once, on a machine without a display, and are
garbage-collected like any other object when the caller drops them.

Inputs are plain tables with the project's column names:

- cycling: ``time_s``, ``voltage_V``, ``current_A`` (optional ``step``);
- impedance: ``frequency_Hz``, ``z_real_ohm``, ``z_imag_ohm`` (imaginary part negative for a
  capacitive response; Nyquist plots show −Z'' upward).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

__all__ = [
    "ARRHENIUS_CONVENTIONS",
    "BOLTZMANN_EV_K",
    "envelope_decimate",
    "figure_to_data_uri",
    "figure_to_png_bytes",
    "plot_arrhenius",
    "plot_nyquist",
    "plot_overpotentials",
    "plot_voltage_time",
    "sequential_colors",
]

#: Boltzmann constant in eV/K (CODATA 2018, exact in the SI).
BOLTZMANN_EV_K = 8.617333262e-5

#: Arrhenius conventions: ``"sigma"`` plots log10(σ) for σ = A·exp(−Eₐ/k_BT);
#: ``"sigma_T"`` plots log10(σT) for σT = A·exp(−Eₐ/k_BT). The two give slightly different
#: Eₐ from the same data, so the axis label always names the one used.
ARRHENIUS_CONVENTIONS = ("sigma", "sigma_T")

_ARRHENIUS_YLABEL = {
    "sigma": "log₁₀(σ / S cm⁻¹)",
    "sigma_T": "log₁₀(σT / S cm⁻¹ K)",
}


# A translucent white box keeps annotations legible where they cross the trace.
_LABEL_BOX = {"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8}


def _new_axes(ax: Axes | None, figsize: tuple[float, float]) -> Axes:
    """Return ``ax``, or the single Axes of a new pyplot-free Figure."""
    if ax is not None:
        return ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig.add_subplot()


def _require(data: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in data.columns]
    if missing:
        raise ValueError(
            f"{what} needs columns {list(columns)}; missing {missing}. "
            f"Rename the columns of the table (it has {list(data.columns)})."
        )


def envelope_decimate(
    x: np.ndarray | Sequence[float], y: np.ndarray | Sequence[float], n_bins: int
) -> tuple[np.ndarray, np.ndarray]:
    """Reduce a long trace to its min/max envelope in ``n_bins`` equal-width bins of ``x``.

    A plain stride (every k-th point) would drop the one-sample voltage spike or collapse
    that is often the whole point of a cycling plot; keeping each bin's minimum and maximum
    draws the same picture as the full trace when a bin is about one display pixel wide.

    Parameters
    ----------
    x : array_like, shape (n,)
        Abscissa, e.g. time. Bins are equal-width between ``min(x)`` and ``max(x)``.
    y : array_like, shape (n,)
        Ordinate.
    n_bins : int
        Number of bins (≥ 1); roughly the number of horizontal pixels of the plot.

    Returns
    -------
    x_out, y_out : ndarray
        At most ``2 * n_bins`` points: for each non-empty bin, the point of smallest and the
        point of largest ``y`` (one point if they coincide), in their original order. Inputs
        of at most ``2 * n_bins`` points are returned unchanged (as copies). In the decimated
        case, points where ``x`` or ``y`` is not finite are dropped first.

    Raises
    ------
    ValueError
        If ``n_bins < 1`` or ``x`` and ``y`` differ in length.

    Examples
    --------
    >>> x = np.arange(10.0)
    >>> y = np.array([0, 0, 0, 9, 0, 0, 0, 0, -5, 0.0])
    >>> envelope_decimate(x, y, 2)[1]
    array([ 0.,  9., -5.,  0.])
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}.")
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(
            f"x and y must be 1-D arrays of equal length, got shapes {x.shape} and {y.shape}."
        )
    if x.size <= 2 * n_bins:
        return x.copy(), y.copy()

    finite = np.isfinite(x) & np.isfinite(y)
    index = np.flatnonzero(finite)
    if index.size == 0:
        return x[:0].copy(), y[:0].copy()
    xf = x[index].astype(float)
    yf = y[index]
    lo, hi = xf.min(), xf.max()
    span = hi - lo
    if span > 0:
        bins = np.floor((xf - lo) / span * n_bins).astype(np.int64)
        np.clip(bins, 0, n_bins - 1, out=bins)  # x == max lands in the last bin
    else:
        bins = np.zeros(xf.size, dtype=np.int64)

    # Sort by (bin, y): the first entry of each bin's run is its minimum, the last its maximum.
    order = np.lexsort((yf, bins))
    sorted_bins = bins[order]
    starts = np.flatnonzero(np.r_[True, sorted_bins[1:] != sorted_bins[:-1]])
    ends = np.r_[starts[1:], sorted_bins.size] - 1
    keep = np.unique(np.concatenate([order[starts], order[ends]]))  # sorted → original order
    kept = index[keep]
    return x[kept], y[kept]


def _change_points(values: np.ndarray) -> np.ndarray:
    """Indices where a piecewise-constant signal changes value, plus the first and last."""
    if values.size == 0:
        return np.zeros(0, dtype=int)
    changed = np.flatnonzero(values[1:] != values[:-1]) + 1
    return np.unique(np.r_[0, changed, values.size - 1])


def plot_voltage_time(
    data: pd.DataFrame,
    *,
    short_time_s: float | None = None,
    ccd_mA_cm2: float | None = None,
    area_cm2: float | None = None,
    n_bins: int | None = None,
    ax: Axes | None = None,
) -> tuple[Axes, Axes]:
    """Cell voltage and current density against time, with the short marked.

    Parameters
    ----------
    data : DataFrame
        Columns ``time_s``, ``voltage_V``, ``current_A``.
    short_time_s : float, optional
        Time of the short; drawn as a vertical line.
    ccd_mA_cm2 : float, optional
        Critical current density; annotated (on the current Axes, which is drawn on top) as
        ``"CCD = x mA/cm²"`` at the short, or in the corner when no short time is given.
    area_cm2 : float, optional
        Electrode area. With it the twin axis shows current density (mA/cm²), without it the
        current (mA).
    n_bins : int, optional
        Bins for the min/max envelope of the voltage trace (see :func:`envelope_decimate`).
        Default: twice the width of the Axes in pixels, so the drawn line is indistinguishable
        from the full trace while a 25 000-point or longer record draws in milliseconds.
    ax : Axes, optional
        Axes for the voltage; a new Figure is made when omitted.

    Returns
    -------
    ax_voltage, ax_current : Axes
        The voltage Axes and its twin (right-hand) Axes for the current.
    """
    _require(data, ("time_s", "voltage_V", "current_A"), "plot_voltage_time")
    if area_cm2 is not None and not area_cm2 > 0:
        raise ValueError(f"area_cm2 must be positive, got {area_cm2}.")
    ax = _new_axes(ax, (8.0, 4.0))
    t_h = data["time_s"].to_numpy(dtype=float) / 3600.0
    voltage = data["voltage_V"].to_numpy(dtype=float)
    current_mA = data["current_A"].to_numpy(dtype=float) * 1e3

    if n_bins is None:
        width_px = ax.get_window_extent().width
        n_bins = max(200, int(2 * width_px))
    tv, vv = envelope_decimate(t_h, voltage, n_bins)
    ax.plot(tv, vv, color="C0", lw=0.8, label="voltage")
    ax.set_xlabel("Time (h)")
    ax.set_ylabel("Voltage (V)", color="C0")
    ax.tick_params(axis="y", colors="C0")

    ax_i = ax.twinx()
    if area_cm2 is not None:
        current = current_mA / area_cm2
        ax_i.set_ylabel("Current density (mA/cm²)", color="C1")
    else:
        current = current_mA
        ax_i.set_ylabel("Current (mA)", color="C1")
    # A galvanostatic record is piecewise constant: its change points draw it exactly as a
    # step line. A noisy measured current falls back to the envelope.
    idx = _change_points(current)
    ti, ci = t_h[idx], current[idx]
    if ti.size > 2 * n_bins:
        ti, ci = envelope_decimate(t_h, current, n_bins)
    ax_i.plot(ti, ci, color="C1", lw=0.8, drawstyle="steps-post", label="current")
    ax_i.tick_params(axis="y", colors="C1")

    # Labels go on the twin: it is drawn above the voltage Axes, so text there stays on top
    # of both traces. It shares x with the voltage Axes, so data x is the same.
    if short_time_s is not None:
        t_short_h = short_time_s / 3600.0
        ax.axvline(t_short_h, color="C3", ls="--", lw=1.0, label="short")
        text = "short" if ccd_mA_cm2 is None else f"CCD = {ccd_mA_cm2:.3g} mA/cm²"
        # x in data units, y in axes fraction, so the label stays inside whatever the
        # voltage range is.
        ax_i.annotate(
            text,
            xy=(t_short_h, 0.95),
            xycoords=("data", "axes fraction"),
            xytext=(-4, 0),
            textcoords="offset points",
            ha="right",
            va="top",
            color="C3",
            bbox=_LABEL_BOX,
        )
    elif ccd_mA_cm2 is not None:
        ax_i.annotate(
            f"CCD = {ccd_mA_cm2:.3g} mA/cm²",
            xy=(0.02, 0.95),
            xycoords="axes fraction",
            ha="left",
            va="top",
            color="C3",
            bbox=_LABEL_BOX,
        )
    return ax, ax_i


def plot_overpotentials(table: pd.DataFrame, *, ax: Axes | None = None) -> Axes:
    """Overpotential of each current step against its current density.

    Parameters
    ----------
    table : DataFrame
        Columns ``current_density_mA_cm2`` and ``median_abs_voltage_V``; optional
        ``max_abs_voltage_V`` (drawn dashed with open markers) and ``direction`` (``"plate"``
        or ``"strip"``; each direction gets its own colour and marker).
    ax : Axes, optional
        Axes to draw on; a new Figure is made when omitted.

    Returns
    -------
    Axes
    """
    _require(table, ("current_density_mA_cm2", "median_abs_voltage_V"), "plot_overpotentials")
    ax = _new_axes(ax, (5.5, 4.0))
    if "direction" in table.columns:
        groups = [(str(d), g) for d, g in table.groupby("direction", sort=True)]
    else:
        groups = [("", table)]
    markers = {"plate": "o", "strip": "s"}
    has_max = "max_abs_voltage_V" in table.columns
    for k, (direction, group) in enumerate(groups):
        group = group.sort_values("current_density_mA_cm2")
        j = group["current_density_mA_cm2"].to_numpy(dtype=float)
        color = f"C{k}"
        marker = markers.get(direction, "o^vD"[k % 4])
        name = f"{direction}, " if direction else ""
        ax.plot(
            j,
            group["median_abs_voltage_V"].to_numpy(dtype=float),
            marker=marker,
            color=color,
            label=f"{name}median |V|",
        )
        if has_max:
            ax.plot(
                j,
                group["max_abs_voltage_V"].to_numpy(dtype=float),
                marker=marker,
                mfc="none",
                ls="--",
                color=color,
                label=f"{name}max |V|",
            )
    ax.set_xlabel("Current density (mA/cm²)")
    ax.set_ylabel("Overpotential |V| (V)")
    ax.legend(frameon=False)
    return ax


def sequential_colors(
    values: Sequence[float], cmap: str = "plasma", span: tuple[float, float] = (0.0, 0.85)
) -> list[tuple]:
    """One colour per value from a colormap, scaled between the smallest and largest value.

    Use it to colour several spectra on one Nyquist plot by temperature.

    Parameters
    ----------
    values : sequence of float
        E.g. temperatures in K.
    cmap : str, default "plasma"
        Name of a registered matplotlib colormap.
    span : (float, float), default (0.0, 0.85)
        Part of the colormap used, as fractions; the default leaves out plasma's pale yellow
        end, which is hard to see on white.

    Returns
    -------
    list of tuple
        RGBA colours, in the order of ``values``.
    """
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return []
    lo, hi = float(v.min()), float(v.max())
    # A single value (or all equal) would divide by zero: put it mid-map.
    norm = Normalize(lo, hi) if hi > lo else Normalize(lo - 1.0, lo + 1.0)
    cm = colormaps[cmap]
    a, b = span
    return [tuple(cm(a + (b - a) * float(norm(x)))) for x in v]


def plot_nyquist(
    data: pd.DataFrame,
    *,
    fit: pd.DataFrame | None = None,
    ax: Axes | None = None,
    label: str | None = None,
    color: object | None = None,
) -> Axes:
    """Nyquist plot, −Z'' against Z', on equal axes.

    Call it repeatedly on one Axes to overlay spectra (one per temperature, say), with
    colours from :func:`sequential_colors`.

    Parameters
    ----------
    data : DataFrame
        Measured spectrum: ``frequency_Hz``, ``z_real_ohm``, ``z_imag_ohm``.
    fit : DataFrame, optional
        Fitted or model spectrum with the same columns, drawn as a line.
    ax : Axes, optional
        Axes to draw on; a new Figure is made when omitted.
    label : str, optional
        Legend entry for the measured points (the fit gets ``"<label> fit"``).
    color : matplotlib colour, optional
        Colour of this spectrum and its fit; the next colour of the cycle when omitted.

    Returns
    -------
    Axes
    """
    _require(data, ("z_real_ohm", "z_imag_ohm"), "plot_nyquist")
    ax = _new_axes(ax, (5.0, 5.0))
    (points,) = ax.plot(
        data["z_real_ohm"].to_numpy(dtype=float),
        -data["z_imag_ohm"].to_numpy(dtype=float),
        ls="none",
        marker="o",
        ms=4,
        mfc="none",
        color=color,
        label=label if label is not None else "_measured",
    )
    if fit is not None:
        _require(fit, ("z_real_ohm", "z_imag_ohm"), "plot_nyquist (fit)")
        ax.plot(
            fit["z_real_ohm"].to_numpy(dtype=float),
            -fit["z_imag_ohm"].to_numpy(dtype=float),
            color=points.get_color(),
            lw=1.2,
            label=f"{label} fit" if label is not None else "fit",
        )
    # "datalim" keeps the Axes box fixed and widens a limit instead, so overlaid spectra of
    # very different size stay readable and a shared layout does not jump around.
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("Z' (Ω)")
    ax.set_ylabel("−Z'' (Ω)")
    # Impedances span kΩ to MΩ: scientific notation keeps long tick labels from colliding.
    ax.ticklabel_format(style="sci", scilimits=(-3, 4), useMathText=True)
    if label is not None or fit is not None:
        ax.legend(frameon=False, fontsize="small")
    return ax


def plot_arrhenius(
    temperature_K: Sequence[float] | np.ndarray,
    sigma_S_cm: Sequence[float] | np.ndarray,
    *,
    fit_activation_energy_eV: float | None = None,
    fit_prefactor: float | None = None,
    convention: str = "sigma_T",
    ax: Axes | None = None,
) -> Axes:
    """Arrhenius plot: log10(σ) or log10(σT) against 1000/T, with the fit line.

    Parameters
    ----------
    temperature_K : array_like
        Temperatures in K.
    sigma_S_cm : array_like
        Ionic conductivities in S/cm at those temperatures.
    fit_activation_energy_eV : float, optional
        Fitted activation energy; draws the fit line and puts Eₐ in the legend.
    fit_prefactor : float, optional
        Fitted prefactor A (linear, not log): S/cm for ``"sigma"``, S·K/cm for ``"sigma_T"``.
        When only Eₐ is given, A is the least-squares intercept at that fixed slope, so the
        line still shows how well the given Eₐ describes the points.
    convention : {"sigma_T", "sigma"}
        ``"sigma_T"``: σT = A·exp(−Eₐ/k_BT); ``"sigma"``: σ = A·exp(−Eₐ/k_BT). The y-axis
        label names the convention.
    ax : Axes, optional
        Axes to draw on; a new Figure is made when omitted.

    Returns
    -------
    Axes

    Raises
    ------
    ValueError
        For an unknown convention, mismatched inputs, or non-positive T or σ.
    """
    if convention not in ARRHENIUS_CONVENTIONS:
        raise ValueError(
            f"Unknown Arrhenius convention {convention!r}; use one of {ARRHENIUS_CONVENTIONS}."
        )
    t = np.asarray(temperature_K, dtype=float).ravel()
    s = np.asarray(sigma_S_cm, dtype=float).ravel()
    if t.shape != s.shape:
        raise ValueError(
            f"temperature_K and sigma_S_cm must have equal length, got {t.size} and {s.size}."
        )
    if np.any(t <= 0) or np.any(s <= 0):
        raise ValueError("Temperatures (K) and conductivities (S/cm) must be positive.")
    ax = _new_axes(ax, (5.5, 4.0))
    y_lin = s * t if convention == "sigma_T" else s
    x = 1000.0 / t
    ax.plot(x, np.log10(y_lin), ls="none", marker="o", color="C0", label="measured")

    if fit_activation_energy_eV is not None and t.size > 0:
        ea = float(fit_activation_energy_eV)
        if fit_prefactor is None:
            ln_a = float(np.mean(np.log(y_lin) + ea / (BOLTZMANN_EV_K * t)))
        else:
            if not fit_prefactor > 0:
                raise ValueError(f"fit_prefactor must be positive, got {fit_prefactor}.")
            ln_a = float(np.log(fit_prefactor))
        # Extend a little past the data so the line is visible at the end points.
        pad = 0.03 * max(float(np.ptp(x)), 0.1)
        xl = np.linspace(x.min() - pad, x.max() + pad, 50)
        tl = 1000.0 / xl
        yl = (ln_a - ea / (BOLTZMANN_EV_K * tl)) / np.log(10.0)
        ax.plot(xl, yl, color="C1", lw=1.2, label=f"fit, Eₐ = {ea:.3f} eV")

    ax.set_xlabel("1000/T (K⁻¹)")
    ax.set_ylabel(_ARRHENIUS_YLABEL[convention])
    ax.set_title(f"Arrhenius ({'σT' if convention == 'sigma_T' else 'σ'} convention)")
    ax.legend(frameon=False)
    return ax


def figure_to_png_bytes(fig: Figure, dpi: float = 110) -> bytes:
    """Render a Figure to PNG bytes with the Agg renderer (no display needed).

    Parameters
    ----------
    fig : Figure
    dpi : float, default 110
        Resolution; 110 keeps an 8 × 4 inch figure near 100 kB while staying sharp on screen.

    Returns
    -------
    bytes
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def figure_to_data_uri(fig: Figure, dpi: float = 110) -> str:
    """Render a Figure to a ``data:image/png;base64,...`` URI for embedding in HTML.

    Parameters
    ----------
    fig : Figure
    dpi : float, default 110

    Returns
    -------
    str
    """
    encoded = base64.b64encode(figure_to_png_bytes(fig, dpi=dpi)).decode("ascii")
    return f"data:image/png;base64,{encoded}"
