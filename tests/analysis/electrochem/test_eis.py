"""EIS analysis on spectra synthesised from the exact circuits with known parameters."""

import numpy as np
import pandas as pd
import pytest

from insitu.analysis.electrochem.eis import (
    EISFitError,
    electrolyte_resistance,
    fit_circuit,
    hf_intercept,
    spectrum_frame,
    spike_intercept,
)

F = np.logspace(6, -1, 71)  # 1 MHz – 0.1 Hz, 10 points per decade
W = 2 * np.pi * F


def cpe(q, n):
    return 1.0 / (q * (1j * W) ** n)


def parallel(a, b):
    return a * b / (a + b)


BLOCKING = dict(R_b_ohm=100.0, R_gb_ohm=50.0, Q_gb=1e-7, n_gb=0.9, Q_el=5e-6, n_el=0.9)
LI = dict(R_b_ohm=80.0, R_gb_ohm=40.0, Q_gb=5e-8, n_gb=0.92, R_int_ohm=300.0, Q_dl=2e-5, n_dl=0.85)


def blocking_z(p=BLOCKING):
    return (
        p["R_b_ohm"]
        + parallel(p["R_gb_ohm"], cpe(p["Q_gb"], p["n_gb"]))
        + cpe(p["Q_el"], p["n_el"])
    )


def li_z(p=LI):
    return (
        p["R_b_ohm"]
        + parallel(p["R_gb_ohm"], cpe(p["Q_gb"], p["n_gb"]))
        + parallel(p["R_int_ohm"], cpe(p["Q_dl"], p["n_dl"]))
    )


def noisy(z, relative=3e-3, seed=1):
    # The bench potentiostat's noise model: independent relative noise on Z' and Z''.
    eps = np.random.default_rng(seed).normal(0.0, relative, size=(2, z.size))
    return z.real * (1 + eps[0]) + 1j * z.imag * (1 + eps[1])


@pytest.mark.parametrize(
    ("cell", "z", "truth"),
    [("blocking", blocking_z(), BLOCKING), ("li", li_z(), LI)],
)
def test_noise_free_fit_recovers_every_parameter(cell, z, truth):
    fit = electrolyte_resistance(spectrum_frame(F, z), cell=cell)
    assert fit.method == "fit" and not fit.fell_back
    r_el = truth["R_b_ohm"] + truth["R_gb_ohm"]
    assert fit.electrolyte_resistance_ohm == pytest.approx(r_el, rel=0.01)
    for name, value in truth.items():
        assert fit.parameters[name] == pytest.approx(value, rel=0.01), name
    assert fit.relative_rms < 1e-6


@pytest.mark.parametrize(("cell", "z"), [("blocking", blocking_z()), ("li", li_z())])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fit_with_0p3_percent_noise_recovers_electrolyte_resistance(cell, z, seed):
    truth = BLOCKING if cell == "blocking" else LI
    r_el = truth["R_b_ohm"] + truth["R_gb_ohm"]
    fit = electrolyte_resistance(spectrum_frame(F, noisy(z, seed=seed)), cell=cell)
    assert fit.method == "fit"
    assert fit.electrolyte_resistance_ohm == pytest.approx(r_el, rel=0.03)
    # The residual is the noise: ~0.3 % of |Z| per component.
    assert 1e-3 < fit.relative_rms < 1e-2
    # The reported standard error is honest to within a factor of a few.
    assert abs(fit.electrolyte_resistance_ohm - r_el) < 5 * fit.electrolyte_resistance_stderr_ohm


def test_fitted_spectrum_is_what_impedance_py_predicts():
    fit = fit_circuit(spectrum_frame(F, noisy(li_z())), cell="li")
    assert fit.circuit == "R0-p(R1,CPE1)-p(R2,CPE2)"
    np.testing.assert_allclose(fit.model.predict(F), fit.z_fit_ohm, rtol=1e-10)
    assert set(fit.stderr) == set(fit.parameters)


def test_densely_sampled_decade_is_thinned_to_log_spacing():
    f = np.concatenate([np.linspace(1e6, 1e5, 400), np.logspace(5, -1, 61)[1:]])
    w = 2 * np.pi * f
    p = BLOCKING
    z = p["R_b_ohm"] + parallel(p["R_gb_ohm"], 1 / (p["Q_gb"] * (1j * w) ** p["n_gb"]))
    z = z + 1 / (p["Q_el"] * (1j * w) ** p["n_el"])
    fit = fit_circuit(spectrum_frame(f, z), cell="blocking", points_per_decade=10)
    assert fit.n_points <= 10 * 7 + 2
    assert fit.frequency_Hz.size == f.size
    assert fit.electrolyte_resistance_ohm == pytest.approx(150.0, rel=1e-3)


def test_spike_intercept_is_exact_for_a_resistor_and_blocking_cpe():
    # Z = R + 1/(Q (jω)^n) is a straight line through (R, 0): the analytic answer is R.
    z = 123.4 + cpe(5e-6, 0.88)
    fit = spike_intercept(spectrum_frame(F, z))
    assert fit.method == "spike_intercept"
    assert fit.electrolyte_resistance_ohm == pytest.approx(123.4, rel=1e-9)
    assert fit.parameters["angle_deg"] == pytest.approx(0.88 * 90.0, abs=1e-6)
    assert fit.n_points == F.size  # the whole spectrum is the spike


def test_spike_intercept_stops_at_the_electrolyte_arc():
    fit = spike_intercept(spectrum_frame(F, noisy(blocking_z())))
    assert fit.electrolyte_resistance_ohm == pytest.approx(150.0, rel=0.01)
    assert fit.n_points < F.size
    on_line = ~np.isnan(fit.z_fit_ohm)
    assert on_line.sum() == fit.n_points and on_line[-1]


def test_spike_intercept_refuses_an_arc_that_closes_on_the_axis():
    with pytest.raises(EISFitError, match="blocking electrodes"):
        spike_intercept(spectrum_frame(F, li_z()))
    with pytest.raises(ValueError, match="blocking"):
        electrolyte_resistance(spectrum_frame(F, li_z()), cell="li", method="spike_intercept")


def test_hf_intercept_at_the_valley_between_arcs():
    fit = electrolyte_resistance(spectrum_frame(F, li_z()), cell="li", method="hf_intercept")
    assert fit.method == "hf_intercept"
    assert fit.note == "minimum of −Z''"
    assert fit.electrolyte_resistance_ohm == pytest.approx(120.0, rel=0.05)


def test_hf_intercept_at_an_inductive_crossing():
    # Lead inductance pushes −Z'' negative at the top: the crossing is the intercept.
    z = 50.0 + 1j * W * 2e-6 + parallel(200.0, cpe(1e-5, 0.9))
    fit = hf_intercept(spectrum_frame(F, z))
    assert fit.note == "real-axis crossing"
    assert fit.electrolyte_resistance_ohm == pytest.approx(50.0, rel=0.02)


@pytest.mark.parametrize(
    ("cell", "fallback"), [("blocking", "spike_intercept"), ("li", "hf_intercept")]
)
def test_a_rejected_fit_falls_back_and_says_so(cell, fallback):
    z = noisy(blocking_z() if cell == "blocking" else li_z())
    # An impossible residual limit rejects every fit.
    fit = electrolyte_resistance(spectrum_frame(F, z), cell=cell, max_relative_rms=1e-6)
    assert fit.method == fallback
    assert fit.requested_method == "fit" and fit.fell_back
    assert "fit rejected" in fit.note and f"used {fallback}" in fit.note
    assert fit.electrolyte_resistance_ohm == pytest.approx(
        150.0 if cell == "blocking" else 120.0, rel=0.05
    )


def test_the_simpler_circuit_is_used_when_the_arc_is_out_of_range():
    # Only the spike is measured (R + CPE): the full circuit's grain-boundary arc is
    # undetermined, the simpler circuit is not.
    z = noisy(60.0 + cpe(5e-6, 0.9))
    fit = electrolyte_resistance(spectrum_frame(F, z), cell="blocking")
    assert fit.method == "fit"
    assert fit.electrolyte_resistance_ohm == pytest.approx(60.0, rel=0.03)


def test_bad_input_gets_a_clear_error():
    good = spectrum_frame(F, blocking_z())
    with pytest.raises(ValueError, match="z_imag_ohm"):
        electrolyte_resistance(good.drop(columns="z_imag_ohm"))
    with pytest.raises(ValueError, match="at least 5"):
        electrolyte_resistance(good.iloc[:4])
    bad = good.copy()
    bad.loc[3, "frequency_Hz"] = 0.0
    with pytest.raises(ValueError, match="positive"):
        electrolyte_resistance(bad)
    bad = good.copy()
    bad.loc[3, "z_real_ohm"] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        electrolyte_resistance(bad)
    with pytest.raises(ValueError, match="unknown method"):
        electrolyte_resistance(good, method="guess")
    with pytest.raises(ValueError, match="unknown cell"):
        electrolyte_resistance(good, cell="sodium")
    with pytest.raises(TypeError, match="spectrum_frame"):
        electrolyte_resistance(blocking_z())
    with pytest.raises(ValueError, match="unknown parameter"):
        fit_circuit(good, initial_guess={"R_x": 1.0})


def test_order_of_points_does_not_matter():
    data = spectrum_frame(F, noisy(blocking_z()))
    a = electrolyte_resistance(data)
    b = electrolyte_resistance(data.iloc[::-1].reset_index(drop=True))
    assert a.electrolyte_resistance_ohm == pytest.approx(b.electrolyte_resistance_ohm, rel=1e-9)
    assert isinstance(a.parameters, dict) and isinstance(data, pd.DataFrame)
