"""Conductivity and Arrhenius fits: arithmetic, synthetic σ(T), and the virtual cell end to end."""

import numpy as np
import pytest

from insitu.analysis.electrochem.conductivity import (
    BOLTZMANN_EV_K,
    ROOM_TEMPERATURE_K,
    activation_energies,
    arrhenius_fit,
    conductivity_S_cm,
    sigma_at,
)
from insitu.analysis.electrochem.eis import electrolyte_resistance, spectrum_frame
from insitu.simulators.cell.model import CellGeometry, VirtualCell
from insitu.simulators.materials import MATERIALS

TEMPERATURES_K = np.array([298.15, 313.15, 333.15, 353.15, 373.15])


def test_sigma_is_thickness_over_resistance_times_area():
    assert conductivity_S_cm(100.0, 0.06, 1.0) == pytest.approx(6e-4)
    # 3 mm pellet, 0.6 mm thick, 250 Ω: L/(RA) by hand.
    area = np.pi * 0.15**2
    assert conductivity_S_cm(250.0, 0.06, area) == pytest.approx(0.06 / (250.0 * area))


def test_sigma_is_vectorised():
    r = np.array([10.0, 20.0, 40.0])
    sigma = conductivity_S_cm(r, 0.1, 2.0)
    assert isinstance(sigma, np.ndarray)
    np.testing.assert_allclose(sigma, 0.1 / (r * 2.0))
    assert isinstance(conductivity_S_cm(10.0, 0.1, 2.0), float)


@pytest.mark.parametrize("bad", [0.0, -1.0, np.nan])
def test_sigma_rejects_non_positive_inputs(bad):
    with pytest.raises(ValueError, match="resistance_ohm"):
        conductivity_S_cm(bad, 0.1, 1.0)
    with pytest.raises(ValueError, match="area_cm2"):
        conductivity_S_cm(10.0, 0.1, np.array([1.0, bad]))


def synthetic(convention, ea, a, t=TEMPERATURES_K):
    y = a * np.exp(-ea / (BOLTZMANN_EV_K * t))
    return y / t if convention == "sigma_T" else y


@pytest.mark.parametrize("convention", ["sigma_T", "sigma"])
def test_arrhenius_recovers_ea_exactly_in_its_own_convention(convention):
    sigma = synthetic(convention, 0.144, 30.0)
    fit = arrhenius_fit(TEMPERATURES_K, sigma, convention=convention)
    assert fit.convention == convention
    assert fit.activation_energy_eV == pytest.approx(0.144, rel=1e-10)
    assert fit.prefactor == pytest.approx(30.0, rel=1e-9)
    assert fit.prefactor_unit == ("S K/cm" if convention == "sigma_T" else "S/cm")
    assert fit.r_squared == pytest.approx(1.0)
    assert fit.activation_energy_stderr_eV < 1e-10
    np.testing.assert_allclose(fit.predict(TEMPERATURES_K), sigma, rtol=1e-10)
    assert sigma_at(fit, 320.0) == pytest.approx(synthetic(convention, 0.144, 30.0, 320.0))


def test_the_two_conventions_differ_by_about_kt():
    sigma = synthetic("sigma_T", 0.144, 30.0)
    fits = activation_energies(TEMPERATURES_K, sigma)
    assert set(fits) == {"sigma_T", "sigma"}
    assert fits["sigma_T"].activation_energy_eV == pytest.approx(0.144)
    # ln(σT) = ln σ + ln T, and ln T changes with 1/T at the rate -T: the σT convention's
    # Eₐ is larger by k·T̄ (T̄ between the harmonic and arithmetic mean of the range).
    difference = fits["sigma_T"].activation_energy_eV - fits["sigma"].activation_energy_eV
    assert difference == pytest.approx(BOLTZMANN_EV_K * TEMPERATURES_K.mean(), rel=0.01)
    # Both lines describe the data almost equally well over a narrow range.
    assert fits["sigma"].r_squared > 0.999
    assert sigma_at(fits["sigma"]) == pytest.approx(sigma[0], rel=0.01)


def test_arrhenius_stderr_reflects_scatter():
    rng = np.random.default_rng(0)
    sigma = synthetic("sigma_T", 0.12, 10.0) * np.exp(rng.normal(0, 0.01, TEMPERATURES_K.size))
    fit = arrhenius_fit(TEMPERATURES_K, sigma)
    assert 0 < fit.activation_energy_stderr_eV < 0.01
    assert abs(fit.activation_energy_eV - 0.12) < 4 * fit.activation_energy_stderr_eV


def test_arrhenius_rejects_bad_input():
    with pytest.raises(ValueError, match="convention"):
        arrhenius_fit(TEMPERATURES_K, synthetic("sigma", 0.1, 1.0), convention="ln")
    with pytest.raises(ValueError, match="two distinct"):
        arrhenius_fit([300.0, 300.0], [1e-3, 1e-3])
    with pytest.raises(ValueError, match="kelvin"):
        arrhenius_fit([25.0, -10.0], [1e-3, 1e-4])
    with pytest.raises(ValueError, match="length"):
        arrhenius_fit([300.0, 310.0], [1e-3])
    with pytest.raises(ValueError, match="positive"):
        arrhenius_fit([300.0, 310.0], [1e-3, 0.0])


# --- the virtual cell, end to end ---------------------------------------------------------
F = np.logspace(6, -1, 71)  # 1 MHz – 0.1 Hz, 10 points per decade


def measured_sigma_S_cm(cell: VirtualCell) -> float:
    g = cell.geometry
    fit = electrolyte_resistance(spectrum_frame(F, cell.impedance(F)), cell="blocking")
    assert fit.method == "fit", fit.note
    return conductivity_S_cm(fit.electrolyte_resistance_ohm, g.thickness_m * 100, g.area_m2 * 1e4)


@pytest.mark.parametrize("material", list(MATERIALS))
def test_virtual_cell_conductivity_and_activation_energy(material):
    preset = MATERIALS[material]
    cell = VirtualCell(material, CellGeometry.conductivity(temperature_K=ROOM_TEMPERATURE_K))
    assert measured_sigma_S_cm(cell) == pytest.approx(preset.sigma_rt_S_cm, rel=0.03)
    # An oven series: the cell's law is σT = A·exp(-Eₐ/kT).
    sigmas = []
    for t in TEMPERATURES_K:
        cell.temperature_K = float(t)
        sigmas.append(measured_sigma_S_cm(cell))
    fits = activation_energies(TEMPERATURES_K, np.array(sigmas))
    assert fits["sigma_T"].activation_energy_eV == pytest.approx(
        preset.activation_energy_eV, abs=0.005
    )
    k_t = BOLTZMANN_EV_K * TEMPERATURES_K.mean()
    assert fits["sigma"].activation_energy_eV == pytest.approx(
        preset.activation_energy_eV - k_t, abs=0.005
    )
    assert sigma_at(fits["sigma_T"]) == pytest.approx(preset.sigma_rt_S_cm, rel=0.03)
