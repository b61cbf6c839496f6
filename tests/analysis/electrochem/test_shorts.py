"""Short detection and charge-to-failure on synthetic cycling data with known answers."""

import numpy as np
import pandas as pd
import pytest

from insitu.analysis.electrochem.shorts import charge_to_failure, find_short, half_cycle_index


def cycling(
    currents_A, half_cycle_s=3600.0, interval_s=10.0, r_ohm=50.0, short_at_s=None, tau_s=0.0
):
    """Ohmic cycling; after ``short_at_s`` the voltage falls to 1 % of its value.

    With ``tau_s`` the fall is exponential with that time constant (a filament whose
    resistance drops over a few sampling intervals), otherwise immediate.
    """
    t, i = [], []
    for k, current in enumerate(currents_A):
        ts = k * half_cycle_s + np.arange(0, half_cycle_s, interval_s)
        t.append(ts)
        i.append(np.full(ts.size, current))
    t, i = np.concatenate(t), np.concatenate(i)
    v = i * r_ohm * (1 + 0.2 * (t % half_cycle_s) / half_cycle_s)
    if short_at_s is not None:
        after = np.clip(t - short_at_s, 0, None)
        fall = np.exp(-after / tau_s) if tau_s > 0 else np.where(after > 0, 0.0, 1.0)
        v = v * (0.01 + 0.99 * np.where(t > short_at_s, fall, 1.0))
    return pd.DataFrame({"time_s": t, "voltage_V": v, "current_A": i})


def test_no_short_in_clean_cycling():
    data = cycling([1e-3, -1e-3, 1e-3, -1e-3])
    assert find_short(data) is None


def test_short_mid_half_cycle_is_found_at_its_time():
    data = cycling([1e-3, -1e-3, 2e-3, -2e-3], short_at_s=2 * 3600 + 970.0)
    event = find_short(data)
    assert event is not None
    assert event.time_s == pytest.approx(2 * 3600 + 970.0, abs=10.0)
    assert event.current_A == pytest.approx(2e-3)
    assert event.time_into_half_cycle_s == pytest.approx(970.0, abs=10.0)


def test_a_gradual_collapse_is_dated_at_its_onset():
    # The voltage takes ~10 sampling intervals to collapse; the short is where it began.
    data = cycling([1e-3, -1e-3, 2e-3], short_at_s=2 * 3600 + 1500.0, tau_s=30.0)
    event = find_short(data)
    assert event.time_s == pytest.approx(2 * 3600 + 1500.0, abs=10.0)
    assert event.collapse_time_s - event.time_s > 30.0


def test_a_single_noisy_point_is_not_a_short():
    data = cycling([1e-3, -1e-3])
    data.loc[100, "voltage_V"] = 0.0
    assert find_short(data) is None


def test_sign_change_of_the_voltage_is_not_a_short():
    # The voltage passes through zero when the current reverses: that is a new half-cycle.
    data = cycling([1e-3, -1e-3, 1e-3])
    assert (np.diff(half_cycle_index(data["current_A"].to_numpy())) > 0).sum() == 2
    assert find_short(data) is None


def test_charge_to_failure_conventions_on_known_protocol():
    # 0.1 mA for 2 cycles of 1 h half-cycles, then short 0.27 h into the first half-cycle at
    # 0.75 mA: per-electrode plated = 0.1 mA·2 h + 0.75 mA·0.27 h.
    currents = [1e-4, -1e-4, 1e-4, -1e-4, 7.5e-4]
    short_s = 4 * 3600 + 0.27 * 3600
    data = cycling(currents, interval_s=1.0)
    q = charge_to_failure(data, until_time_s=short_s)
    assert q["per_electrode_plated"] == pytest.approx(1e-4 * 7200 + 7.5e-4 * 972, rel=1e-3)
    assert q["total_abs"] == pytest.approx(1e-4 * 4 * 3600 + 7.5e-4 * 972, rel=1e-3)


def test_missing_columns_name_what_is_missing():
    with pytest.raises(ValueError, match="voltage_V"):
        find_short(pd.DataFrame({"time_s": [0.0], "current_A": [0.0]}))
