"""Unit tests of the virtual Li|SE|Li cell (fast)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from insitu.simulators.cell import parameters as cp
from insitu.simulators.cell.model import CellGeometry, VirtualCell
from insitu.simulators.materials import MATERIALS

K_B = 8.617333262e-5  # eV/K
F = 96485.33212
R_GAS = 8.314462618
PRESETS = list(MATERIALS)


def _sigma_expected(name: str, temperature_K: float) -> float:
    """σ(T) in S/m from the preset, σT = A exp(-Ea/kT) through σ(25 °C) = σ_RT."""
    m = MATERIALS[name]
    t_rt = 298.15
    a = m.sigma_rt_S_cm * 100.0 * t_rt * np.exp(m.activation_energy_eV / (K_B * t_rt))
    return a / temperature_K * np.exp(-m.activation_energy_eV / (K_B * temperature_K))


def _mA_cm2(cell: VirtualCell, j_mA_cm2: float) -> float:
    return j_mA_cm2 * 10.0 * cell.geometry.area_m2


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("temperature_K", [333.15, 313.15])
def test_low_current_voltage_is_ohmic_plus_interfaces(name: str, temperature_K: float) -> None:
    cell = VirtualCell(name, seed=0)
    cell.temperature_K = temperature_K
    p = cp.PARAMETERS[name]
    g = cell.geometry
    current = 1e-6  # 0.01 mA/cm², far below j0: Butler–Volmer is linear
    arr = lambda ea: np.exp(-ea / K_B * (1 / temperature_K - 1 / 333.15))  # noqa: E731
    r_bulk = g.thickness_m / (_sigma_expected(name, temperature_K) * g.area_m2)
    j0 = p.exchange_current_A_m2 * arr(p.exchange_activation_eV)
    r_ct = R_GAS * temperature_K / (F * j0)  # Ω m², linearised BV with α = 0.5
    sigma_sei = p.interphase_conductivity_S_m * arr(p.interphase_conductivity_activation_eV)
    r_sei = p.interphase_initial_m / sigma_sei
    expected = current * (r_bulk + 2 * (r_ct + r_sei) / g.area_m2)
    assert cell.voltage(current) == pytest.approx(expected, rel=1e-4)
    assert cell.voltage(-current) == pytest.approx(-expected, rel=1e-4)
    assert cell.bulk_resistance_ohm() == pytest.approx(r_bulk, rel=1e-9)


@pytest.mark.parametrize("name", PRESETS)
def test_conductivity_follows_preset_arrhenius(name: str) -> None:
    cell = VirtualCell(name)
    temps = np.array([253.15, 273.15, 298.15, 313.15, 333.15, 353.15, 373.15])
    sigma = np.array([cell.conductivity_S_m(t) for t in temps])
    slope, intercept = np.polyfit(1.0 / temps, np.log(sigma * temps), 1)
    m = MATERIALS[name]
    assert -slope * K_B == pytest.approx(m.activation_energy_eV, rel=1e-6)
    sigma_rt = np.exp(intercept + slope / 298.15) / 298.15
    assert sigma_rt / 100.0 == pytest.approx(m.sigma_rt_S_cm, rel=1e-6)


def test_same_seed_same_data_and_different_seed_differs() -> None:
    def run(seed: int) -> tuple[np.ndarray, np.ndarray]:
        cell = VirtualCell("LiI-AT", seed=seed)
        v = cell.hold(_mA_cm2(cell, 0.5), np.arange(10.0, 3601.0, 10.0))
        z = cell.impedance(np.logspace(6, -1, 30))
        return v, z

    v1, z1 = run(1)
    v2, z2 = run(1)
    v3, z3 = run(2)
    np.testing.assert_array_equal(v1, v2)
    np.testing.assert_array_equal(z1, z2)
    assert not np.allclose(v1, v3, rtol=0, atol=1e-7)
    assert not np.allclose(z1, z3, rtol=1e-6)


def test_noise_has_requested_size() -> None:
    cell = VirtualCell("LiI-AN", noise_V=1e-3)
    v = cell.hold(0.0, np.arange(1.0, 2001.0))
    assert np.std(v) == pytest.approx(1e-3, rel=0.1)
    quiet = VirtualCell("LiI-AN", noise_V=0.0)
    np.testing.assert_array_equal(quiet.hold(0.0, [1.0, 2.0]), [0.0, 0.0])


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("temperature_K", [273.15, 298.15, 353.15])
def test_blocking_eis_low_frequency_spike_recovers_sigma(name: str, temperature_K: float) -> None:
    geometry = CellGeometry.conductivity(temperature_K)
    cell = VirtualCell(name, geometry, seed=3)
    f = np.logspace(6, -1, 71)
    z = cell.impedance(f)
    # The paper's method: extrapolate the low-frequency linear section to the real axis.
    sel = f <= 1e3
    x, y = -z.imag[sel], z.real[sel]
    _, intercept = np.polyfit(x, y, 1, w=1.0 / np.abs(z[sel]))
    sigma = geometry.thickness_m / (intercept * geometry.area_m2)
    assert sigma == pytest.approx(_sigma_expected(name, temperature_K), rel=0.02)


@pytest.mark.parametrize("name", PRESETS)
def test_li_cell_eis_electrolyte_intercept_and_arcs(name: str) -> None:
    cell = VirtualCell(name, seed=5)
    f = np.logspace(6, -1, 71)
    z = cell.impedance(f)
    hf = f > 1e3
    # Between the (MHz) electrolyte response and the (kHz) interface arcs -Im has a minimum
    # whose real part is R_b + R_gb = L/(σA).
    i = np.argmin(-z.imag[hf])
    sigma = cell.geometry.thickness_m / (z.real[hf][i] * cell.geometry.area_m2)
    assert sigma == pytest.approx(_sigma_expected(name, 333.15), rel=0.02)
    # The interface arcs sit in the measured window and close on the real axis at 0.1 Hz.
    peak = f[np.argmax(-z.imag)]
    assert 1.0 < peak < 1e5
    circuit = cell.equivalent_circuit()
    assert circuit.electrolyte_ohm == pytest.approx(cell.bulk_resistance_ohm())
    total = circuit.electrolyte_ohm + cell.interface_resistance_ohm().sum()
    assert z.real[-1] == pytest.approx(total, rel=0.02)


def test_counter_li_grows_by_faraday_amount() -> None:
    cell = VirtualCell("LPS:0.5LiI")
    current = _mA_cm2(cell, 1.0)
    before = cell.state
    cell.advance_to(3600.0, current)
    after = cell.state
    q = current * 3600.0
    dx = q * 13.0e-6 / (F * cell.geometry.area_m2)  # Ω Q / (F A), ≈ 4.85 µm
    assert after.counter.li_thickness_m - before.counter.li_thickness_m == pytest.approx(dx)
    assert before.working.li_thickness_m - after.working.li_thickness_m == pytest.approx(dx)
    assert after.counter.plated_charge_C == pytest.approx(q)
    assert after.working.stripped_charge_C == pytest.approx(q)
    assert after.working.plated_charge_C == 0.0
    assert after.charge_passed_C == pytest.approx(q)


def test_unstable_interphase_grows_much_more_than_metastable() -> None:
    growth = {}
    for name in ("A-LPS", "LiI-AN"):
        cell = VirtualCell(name)
        r0 = cell.state.working.interphase_resistance_ohm_m2
        cell.advance_to(24 * 3600.0, 0.0)
        growth[name] = cell.state.working.interphase_resistance_ohm_m2 - r0
    assert growth["A-LPS"] > 20 * growth["LiI-AN"]
    assert growth["A-LPS"] * 1e4 > 50.0  # > 50 Ω·cm² in a day at 60 °C
    # Parabolic: δ² - δ0² ∝ t.
    cell = VirtualCell("A-LPS")
    d0 = cell.state.working.interphase_thickness_m
    cell.advance_to(6 * 3600.0, 0.0)
    d6 = cell.state.working.interphase_thickness_m
    cell.advance_to(24 * 3600.0, 0.0)
    d24 = cell.state.working.interphase_thickness_m
    assert (d24**2 - d0**2) == pytest.approx(4 * (d6**2 - d0**2), rel=1e-9)


def test_voids_raise_voltage_within_stripping_half_cycle_and_recover() -> None:
    cell = VirtualCell("LiI-AN", noise_V=0.0)  # void-free up to 3.0 mA/cm² at 29 MPa
    current = _mA_cm2(cell, 3.5)
    v = cell.hold(current, np.arange(10.0, 3601.0, 10.0))
    assert v[-1] > 1.05 * v[0]
    assert np.all(np.diff(v) > 0)
    s = cell.state
    assert s.working.void_fraction > 0.2  # the stripping electrode
    assert s.counter.void_fraction == 0.0
    cell.hold(-current, np.arange(3610.0, 7201.0, 10.0))  # plating refills the voids
    assert cell.state.working.void_fraction == 0.0
    # Below the void-free current no voids form at all.
    calm = VirtualCell("LiI-AN")
    calm.advance_to(3600.0, _mA_cm2(calm, 2.0))
    assert calm.state.working.void_fraction == 0.0


def test_low_stack_pressure_and_room_temperature_raise_overpotential() -> None:
    lab = VirtualCell("A-LPS")
    insitu = VirtualCell("A-LPS", CellGeometry.insitu())
    v_lab = lab.voltage(_mA_cm2(lab, 1.0))
    v_insitu = insitu.voltage(_mA_cm2(insitu, 1.0))
    assert 0.05 < v_lab < 0.5
    assert v_insitu > 1.0  # volts at 1 mA/cm²
    # Voids grow fast at 0.5 MPa even at low current density.
    v = insitu.hold(_mA_cm2(insitu, 0.04), np.arange(10.0, 1801.0, 10.0))
    assert v[-1] > 1.2 * v[0]


def test_no_short_below_critical_current() -> None:
    cell = VirtualCell("LPS:0.5LiI")
    current = _mA_cm2(cell, 1.0)
    t = 0.0
    for _ in range(100):  # 200 h of 1 h half-cycles at 1.0 mA/cm²
        for sign in (1, -1):
            times = t + np.arange(60.0, 3601.0, 60.0)
            cell.hold(sign * current, times)
            t = times[-1]
    s = cell.state
    assert not s.shorted
    assert s.damage == 0.0
    assert s.cracks == ()
    # Symmetric cycling returns the foils to their starting thickness.
    assert s.working.li_thickness_m == pytest.approx(150e-6)


def _damaged_a_lps(seed: int = 0) -> VirtualCell:
    """A-LPS through the 0.1–0.5 steps, then 0.15 h at 0.75 mA/cm² (damage ≈ 0.55)."""
    cell = VirtualCell("A-LPS", seed=seed)
    t = 0.0
    for j in (0.1, 0.25, 0.5):
        for sign in (1, -1, 1, -1):
            t += 3600.0
            cell.advance_to(t, sign * _mA_cm2(cell, j))
    assert cell.state.damage == 0.0 and cell.state.cracks == ()
    cell.advance_to(t + 0.15 * 3600.0, _mA_cm2(cell, 0.75))
    return cell


def test_cracks_appear_after_damage_starts_and_state_is_reproducible() -> None:
    cell = _damaged_a_lps()
    s = cell.state
    assert 0.2 < s.damage < 1.0 and not s.shorted
    assert len(s.cracks) >= 1
    first = s.cracks[0]
    assert first.origin == "working"  # the stripping electrode at nucleation
    assert first.nucleation_time_s >= 6 * 2 * 3600.0  # not before the 0.75 step
    assert first.depth_fraction == pytest.approx(s.damage)
    assert 0.8 <= first.radius_fraction <= 1.0  # edge chipping
    assert s == _damaged_a_lps().state
    other = _damaged_a_lps(seed=1).state
    assert other.damage == s.damage
    assert other.cracks[0].angle_rad != first.angle_rad
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.damage = 0.0  # type: ignore[misc]


def test_li_in_cracks_grows_on_plating_and_partly_returns_on_stripping() -> None:
    cell = _damaged_a_lps()
    low = _mA_cm2(cell, 0.25)  # below j_c: cracks cycle Li but do not grow
    t = cell.time_s
    s0 = cell.state
    v0 = s0.crack_transparent_volume_m3
    cell.advance_to(t + 3600.0, -low)  # the working (origin) electrode plates
    v1 = cell.state.crack_transparent_volume_m3
    cell.advance_to(t + 7200.0, low)  # and strips
    s2 = cell.state
    v2 = s2.crack_transparent_volume_m3
    assert v1 > v0 and v0 < v2 < v1  # the transparent volume oscillates and ratchets up
    # Net zero Faradaic charge, but the Li left in cracks came out of the working foil.
    held = s2.crack_li_volume_m3 - s0.crack_li_volume_m3
    assert held > 0.0
    thinning = s0.working.li_thickness_m - s2.working.li_thickness_m
    assert thinning == pytest.approx(held / cell.geometry.area_m2, rel=1e-9)
    assert s2.counter.li_thickness_m == pytest.approx(s0.counter.li_thickness_m, rel=1e-12)


def test_short_collapses_voltage_and_stays() -> None:
    cell = _damaged_a_lps()
    current = _mA_cm2(cell, 0.75)
    t0 = cell.time_s
    v = cell.hold(current, t0 + np.arange(10.0, 3601.0 - 0.15 * 3600.0, 10.0))
    s = cell.state
    assert s.shorted and s.damage == 1.0
    i = np.searchsorted(t0 + np.arange(10.0, 3601.0, 10.0), s.short_time_s)
    assert abs(v[i + 30]) < 0.03 * abs(v[i - 1])  # 5 min later: a few % at most
    later = cell.hold(-current, cell.time_s + np.arange(10.0, 601.0, 10.0))
    assert np.all(np.abs(later) < 2e-3)
    assert cell.shorted
    z = cell.impedance([1e5, 1.0, 0.1], noise=False)
    assert np.all(np.abs(z) < 1.0)  # the short dominates
    # No Li is transferred through a short.
    q = cell.state.counter.plated_charge_C
    cell.advance_to(cell.time_s + 3600.0, current)
    assert cell.state.counter.plated_charge_C == q


def test_blocking_cell_charges_double_layer_and_stays_finite() -> None:
    cell = VirtualCell("A-LPS", CellGeometry.conductivity(), noise_V=0.0)
    current = 1e-6
    v = cell.hold(current, [1e-6, 10.0, 100.0, 1e4])
    r = cell.bulk_resistance_ohm()
    assert v[0] == pytest.approx(current * r, rel=0.01)
    assert np.all(np.diff(v) > 0)
    assert np.isfinite(v).all() and v[-1] < 100.0
    s = cell.state
    assert s.counter.plated_charge_C == 0.0 and s.working.li_thickness_m == 0.0
    assert not s.shorted and s.damage == 0.0


def test_hold_rejects_times_in_the_past() -> None:
    cell = VirtualCell("A-LPS", start_time_s=100.0)
    with pytest.raises(ValueError, match="non-decreasing"):
        cell.hold(0.0, [50.0])
    with pytest.raises(ValueError, match="non-decreasing"):
        cell.hold(0.0, [200.0, 150.0])
    assert cell.hold(0.0, []).shape == (0,)
    cell.hold(1e-4, [100.0, 100.0, 200.0])
    assert cell.time_s == 200.0
