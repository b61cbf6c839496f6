"""Drive a virtual cell through the in-situ plating/stripping protocol to a chosen point.

The synchrotron experiment images the cell between plating and stripping steps; to simulate
a scan "after Q mC", the cell is first cycled with the in-situ protocol (REFERENCE.md:
0.04–1.2 mA/cm², 30 min per step, each current density as one plating then one stripping
half-cycle) until ``charge_C`` has passed (∫|I|dt), or the cell shorts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .cell import VirtualCell

__all__ = ["INSITU_DENSITIES_MA_CM2", "HistoryPoint", "cycle_to_charge"]

#: Current densities of the in-situ protocol, mA/cm² (the paper gives the range 0.04–1.2;
#: the steps in between are ours).
INSITU_DENSITIES_MA_CM2 = (0.04, 0.08, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2)


@dataclass(frozen=True)
class HistoryPoint:
    """Where the cycling stopped."""

    charge_passed_C: float
    time_s: float
    current_density_mA_cm2: float
    half_cycle: str  # "plate" or "strip": the half-cycle during which it stopped (or after)
    shorted: bool


def cycle_to_charge(
    cell: VirtualCell,
    charge_C: float,
    *,
    densities_mA_cm2: Sequence[float] = INSITU_DENSITIES_MA_CM2,
    half_cycle_s: float = 1800.0,
    interval_s: float = 10.0,
) -> HistoryPoint:
    """Cycle ``cell`` until ``charge_C`` coulombs have passed (∫|I| dt) or it shorts.

    Parameters
    ----------
    cell : VirtualCell
        The cell, advanced in place from its present time.
    charge_C : float
        Total charge to pass, C (the in-situ paper figures quote mC).
    densities_mA_cm2, half_cycle_s, interval_s
        The protocol: each density as a plating then a stripping half-cycle.

    Returns
    -------
    HistoryPoint
        The charge actually passed and where in the protocol the cell stopped.
    """
    if charge_C < 0:
        raise ValueError(f"charge must not be negative, got {charge_C} C")
    area_m2 = cell.geometry.area_m2
    passed = 0.0
    last = HistoryPoint(0.0, cell.time_s, 0.0, "plate", cell.shorted)
    if charge_C == 0:
        return last
    for j in densities_mA_cm2:
        current_A = j * 10.0 * area_m2  # mA/cm² → A/m² is ×10
        for sign, label in ((1.0, "plate"), (-1.0, "strip")):
            remaining_s = (charge_C - passed) / current_A
            duration_s = min(half_cycle_s, remaining_s)
            n = max(int(np.ceil(duration_s / interval_s)), 1)
            times = cell.time_s + np.linspace(duration_s / n, duration_s, n)
            cell.hold(sign * current_A, times)
            passed += current_A * duration_s
            last = HistoryPoint(passed, cell.time_s, j, label, cell.shorted)
            if passed >= charge_C * (1 - 1e-9) or cell.shorted:
                return last
    return last
