"""Overpotential tables on a synthetic plating/stripping trace with known answers."""

import numpy as np
import pandas as pd
import pytest

from insitu.analysis.electrochem.overpotential import overpotential_summary, overpotential_table

AREA_CM2 = 2.0
R_OHM = 100.0
HALF_S = 3600.0
DT_S = 10.0


def trace(densities_mA_cm2=(0.1, 0.25), cycles=2, rest_s=0.0, with_step=True):
    """Each density: ``cycles`` × (plate, strip) of 1 h; |V| = |I|·R·(1 + 0.2·t/half)."""
    t, i, v, step = [], [], [], []
    now, k = 0.0, 0
    for j in densities_mA_cm2:
        current = j * 1e-3 * AREA_CM2
        for _ in range(cycles):
            for sign in (1, -1):
                ts = np.arange(0.0, HALF_S, DT_S)
                t.append(now + ts)
                i.append(np.full(ts.size, sign * current))
                v.append(sign * current * R_OHM * (1 + 0.2 * ts / HALF_S))
                step.append(np.full(ts.size, k))
                now += HALF_S
                k += 1
        if rest_s:
            ts = np.arange(0.0, rest_s, DT_S)
            t.append(now + ts)
            i.append(np.zeros(ts.size))
            v.append(np.full(ts.size, 1e-4))
            step.append(np.full(ts.size, k))
            now += rest_s
            k += 1
    data = pd.DataFrame(
        {
            "time_s": np.concatenate(t),
            "voltage_V": np.concatenate(v),
            "current_A": np.concatenate(i),
        }
    )
    if with_step:
        data["step"] = np.concatenate(step)
    return data


def test_one_row_per_half_cycle_with_known_values():
    table = overpotential_table(trace(), AREA_CM2)
    assert len(table) == 8
    first = table.iloc[0]
    current = 0.1e-3 * AREA_CM2
    assert first["current_A"] == pytest.approx(current)
    assert first["current_density_mA_cm2"] == pytest.approx(0.1)
    assert first["start_time_s"] == 0.0
    assert first["end_time_s"] == HALF_S  # held until the next half-cycle starts
    assert first["duration_s"] == HALF_S
    assert first["n_points"] == HALF_S / DT_S
    frac = np.arange(0.0, HALF_S, DT_S) / HALF_S
    expected = current * R_OHM * (1 + 0.2 * frac)
    assert first["mean_abs_voltage_V"] == pytest.approx(expected.mean())
    assert first["median_abs_voltage_V"] == pytest.approx(np.median(expected))
    assert first["max_abs_voltage_V"] == pytest.approx(expected.max())
    assert first["end_voltage_V"] == pytest.approx(expected[-1])
    assert first["initial_jump_V"] == pytest.approx(current * R_OHM)
    assert first["plated_charge_C"] == pytest.approx(current * HALF_S)
    assert first["plated_charge_C_cm2"] == pytest.approx(current * HALF_S / AREA_CM2)
    # Stripping half-cycles: negative current and voltage, same magnitudes.
    second = table.iloc[1]
    assert second["current_A"] == pytest.approx(-current)
    assert second["end_voltage_V"] == pytest.approx(-expected[-1])
    assert second["mean_abs_voltage_V"] == pytest.approx(expected.mean())
    assert list(table["step"]) == list(range(8))


def test_the_last_half_cycle_ends_at_its_last_point():
    table = overpotential_table(trace(), AREA_CM2)
    last = table.iloc[-1]
    assert last["end_time_s"] == pytest.approx(8 * HALF_S - DT_S)
    current = 0.25e-3 * AREA_CM2
    assert last["plated_charge_C"] == pytest.approx(current * (HALF_S - DT_S))


def test_rests_are_left_out_and_steps_numbered_from_the_data():
    table = overpotential_table(trace(rest_s=600.0), AREA_CM2, min_current_A=1e-9)
    assert len(table) == 8
    assert table["current_density_mA_cm2"].min() == pytest.approx(0.1)
    assert 4 not in set(table["step"])  # the rest after the first density


def test_without_a_step_column_half_cycles_are_numbered():
    table = overpotential_table(trace(with_step=False), AREA_CM2)
    assert list(table["step"]) == list(range(8))


def test_summary_is_the_mean_per_current_density():
    data = trace()
    # Measured currents carry noise; they must still group by their programmed density.
    data["current_A"] *= 1 + np.random.default_rng(0).normal(0, 1e-4, len(data))
    table = overpotential_table(data, AREA_CM2)
    summary = overpotential_summary(table)
    assert list(summary.index) == [0.1, 0.25]
    assert list(summary["n_half_cycles"]) == [4, 4]
    for j in (0.1, 0.25):
        current = j * 1e-3 * AREA_CM2
        assert summary.loc[j, "initial_jump_V"] == pytest.approx(current * R_OHM, rel=1e-3)
        assert summary.loc[j, "end_abs_voltage_V"] == pytest.approx(
            current * R_OHM * (1 + 0.2 * (HALF_S - DT_S) / HALF_S), rel=1e-3
        )
    # Mean overpotential scales with current: ohmic cell.
    ratio = summary.loc[0.25, "mean_abs_voltage_V"] / summary.loc[0.1, "mean_abs_voltage_V"]
    assert ratio == pytest.approx(2.5, rel=1e-3)


def test_empty_and_bad_input():
    empty = overpotential_table(trace().iloc[:0], AREA_CM2)
    assert empty.empty and "mean_abs_voltage_V" in empty.columns
    assert overpotential_summary(empty).empty
    with pytest.raises(ValueError, match="voltage_V"):
        overpotential_table(trace().drop(columns="voltage_V"), AREA_CM2)
    with pytest.raises(ValueError, match="area"):
        overpotential_table(trace(), 0.0)
