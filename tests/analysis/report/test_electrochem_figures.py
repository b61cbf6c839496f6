"""Plots draw headless on synthetic data with the expected artists; the decimation is exact
where it must be and keeps spikes."""

import base64
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from matplotlib.text import Annotation

from insitu.analysis.report.electrochem_figures import (
    BOLTZMANN_EV_K,
    envelope_decimate,
    figure_to_data_uri,
    figure_to_png_bytes,
    plot_arrhenius,
    plot_nyquist,
    plot_overpotentials,
    plot_voltage_time,
    sequential_colors,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def cycling(n=30_000, area_cm2=1.0, short_at_s=50_000.0, seed=0):
    """Stepped square-wave cycling, 1 s sampling, a short at ``short_at_s``."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=float)
    step = (t // 7200).astype(int)
    j_mA_cm2 = 0.1 + 0.25 * step
    sign = np.where((t // 3600) % 2 == 0, 1.0, -1.0)
    current = sign * j_mA_cm2 * area_cm2 * 1e-3
    v = current * 20.0 + rng.normal(0, 1e-4, n)
    v[t >= short_at_s] *= 0.01
    return pd.DataFrame({"time_s": t, "voltage_V": v, "current_A": current, "step": step})


def spectrum(r_bulk=100.0, r_gb=50.0, c=1e-9, n=40):
    f = np.logspace(6, -1, n)
    w = 2 * np.pi * f
    z = r_bulk + r_gb / (1 + 1j * w * r_gb * c) + 1 / (1j * w * 1e-6)
    return pd.DataFrame({"frequency_Hz": f, "z_real_ohm": z.real, "z_imag_ohm": z.imag})


# --- envelope_decimate ------------------------------------------------------------------


def test_envelope_exact_for_short_inputs():
    x = np.linspace(0, 1, 20)
    y = np.sin(x)
    xo, yo = envelope_decimate(x, y, 10)
    np.testing.assert_array_equal(xo, x)
    np.testing.assert_array_equal(yo, y)
    assert xo is not x  # a copy, so the caller's data are never aliased


def test_envelope_keeps_extremes_and_spikes_within_budget():
    rng = np.random.default_rng(1)
    n, n_bins = 100_000, 500
    x = np.arange(n, dtype=float)
    y = rng.normal(0, 1, n)
    spikes = [123, 54_321, 99_998]
    y[spikes[0]] = 50.0
    y[spikes[1]] = -60.0
    y[spikes[2]] = 40.0
    xo, yo = envelope_decimate(x, y, n_bins)
    assert xo.size <= 2 * n_bins
    assert yo.max() == y.max() and yo.min() == y.min()
    for k in spikes:
        assert x[k] in xo and y[k] in yo
    assert np.all(np.diff(xo) > 0)  # original order kept
    # Every output point is an input point (no interpolation).
    np.testing.assert_array_equal(yo, y[xo.astype(int)])


def test_envelope_each_bin_min_max():
    x = np.arange(10.0)
    y = np.array([0, 0, 0, 9, 0, 0, 0, 0, -5, 0.0])
    xo, yo = envelope_decimate(x, y, 2)
    np.testing.assert_array_equal(yo, [0, 9, -5, 0])
    np.testing.assert_array_equal(xo, [0, 3, 8, 9])


def test_envelope_drops_nan_and_handles_constant_x():
    x = np.zeros(50)
    y = np.arange(50.0)
    y[10] = np.nan
    xo, yo = envelope_decimate(x, y, 3)
    assert set(xo) == {0.0}
    assert set(yo) == {0.0, 49.0}
    with pytest.raises(ValueError, match="n_bins"):
        envelope_decimate(x, y, 0)
    with pytest.raises(ValueError, match="equal length"):
        envelope_decimate(x, y[:-1], 3)


# --- plot_voltage_time ------------------------------------------------------------------


def test_voltage_time_short_line_annotation_and_axes():
    data = cycling(area_cm2=2.0)
    t0 = time.perf_counter()
    ax_v, ax_i = plot_voltage_time(data, short_time_s=50_000.0, ccd_mA_cm2=1.75, area_cm2=2.0)
    elapsed = time.perf_counter() - t0
    assert isinstance(ax_v.figure, Figure)
    assert ax_i.figure is ax_v.figure
    assert "mA/cm²" in ax_i.get_ylabel()
    assert "(h)" in ax_v.get_xlabel() and "(V)" in ax_v.get_ylabel()

    # The short: a vertical line at 50 000 s in hours.
    (short,) = [ln for ln in ax_v.get_lines() if ln.get_label() == "short"]
    np.testing.assert_allclose(short.get_xdata(), [50_000 / 3600] * 2)
    notes = [c for c in ax_i.get_children() if isinstance(c, Annotation)]
    (note,) = [a for a in notes if "CCD = 1.75 mA/cm²" in a.get_text()]
    assert note.xy[0] == pytest.approx(50_000 / 3600)

    # Voltage is decimated but keeps its range; time axis in hours.
    (volt,) = [ln for ln in ax_v.get_lines() if ln.get_label() == "voltage"]
    vx, vy = volt.get_xdata(), volt.get_ydata()
    assert vx.size < len(data) / 3
    assert vy.max() == data["voltage_V"].max() and vy.min() == data["voltage_V"].min()
    # Time in hours, spanning the record to within a bin (well under a pixel).
    assert vx[-1] == pytest.approx(data["time_s"].iloc[-1] / 3600, rel=0.01)

    # Current density: a step line through the exact change points, in mA/cm² (area 2 cm²).
    (cur,) = ax_i.get_lines()
    assert cur.get_drawstyle() == "steps-post"
    j = data["current_A"].to_numpy() * 1e3 / 2.0
    assert set(np.round(cur.get_ydata(), 9)) == set(np.round(j, 9))
    # The figure renders without a display and quickly; generous bound, not a benchmark.
    assert figure_to_png_bytes(ax_v.figure).startswith(PNG_SIGNATURE)
    assert elapsed < 2.0


def test_voltage_time_without_area_or_short():
    data = cycling(n=500)
    ax_v, ax_i = plot_voltage_time(data, ccd_mA_cm2=0.75)
    assert "Current (mA)" in ax_i.get_ylabel()
    assert not any(ln.get_label() == "short" for ln in ax_v.get_lines())
    notes = [c for c in ax_i.get_children() if isinstance(c, Annotation)]
    assert [a.get_text() for a in notes] == ["CCD = 0.75 mA/cm²"]
    # Short inputs are drawn exactly.
    (volt,) = [ln for ln in ax_v.get_lines() if ln.get_label() == "voltage"]
    np.testing.assert_array_equal(volt.get_ydata(), data["voltage_V"])


def test_voltage_time_draws_on_given_axes_and_checks_columns():
    fig = Figure()
    ax = fig.add_subplot()
    ax_v, _ = plot_voltage_time(cycling(n=100), ax=ax)
    assert ax_v is ax
    with pytest.raises(ValueError, match="current_A"):
        plot_voltage_time(pd.DataFrame({"time_s": [0.0], "voltage_V": [0.0]}))


# --- plot_overpotentials ----------------------------------------------------------------


def test_overpotentials_by_direction():
    j = [0.1, 0.25, 0.5]
    table = pd.DataFrame(
        {
            "current_density_mA_cm2": j + j,
            "median_abs_voltage_V": [0.01, 0.02, 0.04, 0.012, 0.025, 0.05],
            "max_abs_voltage_V": [0.02, 0.03, 0.06, 0.022, 0.035, 0.07],
            "direction": ["plate"] * 3 + ["strip"] * 3,
        }
    )
    ax = plot_overpotentials(table)
    labels = [ln.get_label() for ln in ax.get_lines()]
    assert labels == ["plate, median |V|", "plate, max |V|", "strip, median |V|", "strip, max |V|"]
    plate, _, strip, _ = ax.get_lines()
    assert plate.get_marker() != strip.get_marker()
    assert plate.get_color() != strip.get_color()
    np.testing.assert_allclose(strip.get_ydata(), [0.012, 0.025, 0.05])
    assert "mA/cm²" in ax.get_xlabel()


def test_overpotentials_without_direction_sorted_by_current():
    table = pd.DataFrame(
        {"current_density_mA_cm2": [0.5, 0.1], "median_abs_voltage_V": [0.04, 0.01]}
    )
    ax = plot_overpotentials(table)
    (line,) = ax.get_lines()
    np.testing.assert_allclose(line.get_xdata(), [0.1, 0.5])
    np.testing.assert_allclose(line.get_ydata(), [0.01, 0.04])


# --- plot_nyquist -----------------------------------------------------------------------


def test_nyquist_minus_imag_equal_aspect_and_fit():
    data, fit = spectrum(), spectrum(n=200)
    ax = plot_nyquist(data, fit=fit, label="298 K")
    points, line = ax.get_lines()
    np.testing.assert_array_equal(points.get_xdata(), data["z_real_ohm"])
    np.testing.assert_array_equal(points.get_ydata(), -data["z_imag_ohm"])
    assert points.get_linestyle() == "None" and points.get_marker() == "o"
    np.testing.assert_array_equal(line.get_ydata(), -fit["z_imag_ohm"])
    assert line.get_color() == points.get_color()
    assert ax.get_aspect() == 1.0
    assert "−Z''" in ax.get_ylabel() and "Z'" in ax.get_xlabel()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["298 K", "298 K fit"]


def test_nyquist_several_spectra_on_one_axes():
    temps = [273.15, 298.15, 333.15]
    colors = sequential_colors(temps)
    assert len(colors) == 3 and len(set(colors)) == 3
    ax = None
    for temp, color in zip(temps, colors, strict=True):
        ax = plot_nyquist(spectrum(r_bulk=temp), ax=ax, label=f"{temp} K", color=color)
    assert len(ax.get_lines()) == 3
    assert tuple(ax.get_lines()[0].get_color()) == colors[0]
    assert sequential_colors([300.0]) and sequential_colors([]) == []


# --- plot_arrhenius ---------------------------------------------------------------------


@pytest.mark.parametrize("convention", ["sigma_T", "sigma"])
def test_arrhenius_axes_and_fit(convention):
    ea, a = 0.148, 1e3
    t = np.array([298.15, 313.15, 333.15, 353.15])
    y_lin = a * np.exp(-ea / (BOLTZMANN_EV_K * t))
    sigma = y_lin / t if convention == "sigma_T" else y_lin
    ax = plot_arrhenius(
        t, sigma, fit_activation_energy_eV=ea, fit_prefactor=a, convention=convention
    )
    points, fit = ax.get_lines()
    np.testing.assert_allclose(points.get_xdata(), 1000 / t)
    np.testing.assert_allclose(points.get_ydata(), np.log10(y_lin))
    # The fit line passes through exact data.
    np.testing.assert_allclose(
        np.interp(1000 / t[::-1], fit.get_xdata(), fit.get_ydata()),
        np.log10(y_lin[::-1]),
        atol=1e-4,
    )
    assert "0.148 eV" in fit.get_label()
    assert "1000/T" in ax.get_xlabel()
    expected = "log₁₀(σT" if convention == "sigma_T" else "log₁₀(σ /"
    assert expected in ax.get_ylabel()


def test_arrhenius_intercept_from_data_and_errors():
    t = np.array([300.0, 330.0, 360.0])
    sigma = 5.0 * np.exp(-0.11 / (BOLTZMANN_EV_K * t))
    ax = plot_arrhenius(t, sigma, fit_activation_energy_eV=0.11, convention="sigma")
    _, fit = ax.get_lines()
    np.testing.assert_allclose(
        np.interp(1000 / t[::-1], fit.get_xdata(), fit.get_ydata()),
        np.log10(sigma[::-1]),
        atol=1e-4,
    )
    ax = plot_arrhenius(t, sigma)  # no fit: data only
    assert len(ax.get_lines()) == 1 and "σT" in ax.get_ylabel()
    with pytest.raises(ValueError, match="convention"):
        plot_arrhenius(t, sigma, convention="log")
    with pytest.raises(ValueError, match="positive"):
        plot_arrhenius(t, -sigma)


def test_no_pyplot_needed():
    """Building and rendering a figure never imports pyplot (no global state, no GUI)."""
    code = (
        "import sys; import numpy as np, pandas as pd\n"
        "from insitu.analysis.report import electrochem_figures as plots\n"
        "df = pd.DataFrame({'z_real_ohm': [1.0, 2.0], 'z_imag_ohm': [-1.0, 0.0]})\n"
        "ax = plots.plot_nyquist(df)\n"
        "plots.figure_to_png_bytes(ax.figure, dpi=30)\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --- export -----------------------------------------------------------------------------


def test_png_and_data_uri():
    ax = plot_nyquist(spectrum())
    png = figure_to_png_bytes(ax.figure, dpi=50)
    assert png.startswith(PNG_SIGNATURE)
    uri = figure_to_data_uri(ax.figure, dpi=50)
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix)
    assert base64.b64decode(uri[len(prefix) :]).startswith(PNG_SIGNATURE)
