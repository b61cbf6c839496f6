"""Calibration of the virtual cell against the paper's lab CCD test (Fig. 1e).

The protocol is run as a plain loop over ``VirtualCell.hold`` (no emulator): 60 °C, current
densities 0.1, 0.25, 0.50, … 4.0 mA/cm², each as 2 cycles of a 1 h +j half-cycle (plate on
the counter electrode) and a 1 h −j half-cycle, sampled every 10 s. Each run takes a few
milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from insitu.simulators.cell.model import VirtualCell
from insitu.simulators.materials import MATERIALS

STEPS_MA_CM2 = [0.1, *np.round(np.arange(0.25, 4.0 + 1e-9, 0.25), 2)]
HALF_CYCLE_S = 3600.0
SAMPLE_S = 10.0


@dataclass
class CcdResult:
    step_mA_cm2: float | None
    cycle: int
    half_cycle: int
    short_after_s: float
    charge_to_failure_C_cm2: float  # per electrode: charge plated on one electrode
    times_s: np.ndarray
    voltages_V: np.ndarray


def run_ccd(name: str, seed: int = 0) -> CcdResult:
    """Run the lab CCD protocol until the cell shorts (or the protocol ends)."""
    cell = VirtualCell(name, seed=seed)
    area_cm2 = cell.geometry.area_m2 * 1e4
    t = 0.0
    plated_C_cm2 = 0.0  # completed steps, per electrode: j · 2 h
    for step in STEPS_MA_CM2:
        current = step * 1e-3 * area_cm2
        for cycle in range(2):
            for half, sign in enumerate((1, -1)):
                times = t + np.arange(SAMPLE_S, HALF_CYCLE_S + SAMPLE_S / 2, SAMPLE_S)
                v = cell.hold(sign * current, times)
                if cell.shorted:
                    into = cell.state.short_time_s - t
                    # Plated charge in the failing step: earlier plating half-cycles of this
                    # step on the counter electrode (1 h each) plus the part up to the short.
                    q = plated_C_cm2 + step * 1e-3 * (cycle * HALF_CYCLE_S + into)
                    return CcdResult(float(step), cycle, half, into, q, times, v)
                t = times[-1]
        plated_C_cm2 += step * 1e-3 * 2 * HALF_CYCLE_S
    return CcdResult(None, -1, -1, np.nan, plated_C_cm2, np.empty(0), np.empty(0))


@pytest.mark.parametrize("name", list(MATERIALS))
def test_each_preset_shorts_mid_half_cycle_in_its_ccd_step(name: str) -> None:
    r = run_ccd(name)
    assert r.step_mA_cm2 == pytest.approx(MATERIALS[name].ccd_mA_cm2)
    assert (r.cycle, r.half_cycle) == (0, 0)  # first half-cycle of the CCD step
    assert 300.0 < r.short_after_s < HALF_CYCLE_S - 300.0  # mid-half-cycle
    # Detectable: a sharp drop to a few % within 5 min, and near zero from then on.
    i = int(np.searchsorted(r.times_s, r.short_after_s + r.times_s[0] - SAMPLE_S))
    before = np.abs(r.voltages_V[i - 1])
    assert 0.05 < before < 1.0  # plausible polarisation just before the short
    assert np.all(np.abs(r.voltages_V[i + 30 :]) < 0.03 * before)
    assert np.all(np.abs(r.voltages_V[: i - 1]) > 0.5 * before)


@pytest.mark.parametrize(
    "name", [n for n, m in MATERIALS.items() if m.charge_to_failure_consistent]
)
def test_charge_to_failure_matches_paper(name: str) -> None:
    r = run_ccd(name)
    assert r.charge_to_failure_C_cm2 == pytest.approx(
        MATERIALS[name].charge_to_failure_C_cm2, rel=0.10
    )


def test_ccd_is_independent_of_noise_seed() -> None:
    a, b = run_ccd("LiI-AT", seed=1), run_ccd("LiI-AT", seed=2)
    assert a.short_after_s == b.short_after_s
    assert not np.array_equal(a.voltages_V, b.voltages_V)
