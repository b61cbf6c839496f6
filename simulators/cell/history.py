"""Drive a virtual cell through the in-situ plating/stripping protocol to a chosen point.

The synchrotron experiment images the cell between plating and stripping steps; to simulate
a scan "after Q mC", the cell is first cycled with the in-situ protocol (REFERENCE.md:
0.04–1.2 mA/cm², 30 min per step, each current density as one plating then one stripping
half-cycle) until ``charge_C`` has passed (∫|I|dt), or the cell shorts.
:func:`insitu_charge_to_failure_C` runs the same protocol to the short: the in-situ
charge-to-failure of a material as ``insitu tomo-scan --sim MATERIAL --charge-mC Q`` sees it
(the scan's cell is shorted for Q above it, not below).

The protocol never reaches the paper's 10 V cut-off (the virtual in-situ cells polarise by
well under 1 V before they short), so each density runs its full 30 min half-cycles.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..materials import MaterialPreset, get_material
from .model import CellGeometry, VirtualCell
from .parameters import INSITU_DENSITIES_MA_CM2, INSITU_HALF_CYCLE_S

__all__ = [
    "INSITU_DENSITIES_MA_CM2",
    "HistoryPoint",
    "cycle_to_charge",
    "insitu_charge_to_failure_C",
]


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
    half_cycle_s: float = INSITU_HALF_CYCLE_S,
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


def insitu_charge_to_failure_C(material: str | MaterialPreset, seed: int = 0) -> float:
    """Charge passed (∫|I| dt) when the in-situ cell of ``material`` shorts.

    The cell of :meth:`CellGeometry.insitu` is cycled with :func:`cycle_to_charge`, as the
    tomography source does, until it shorts; the charge is taken at the moment of the short,
    not at the end of the half-cycle in which it happened.

    Parameters
    ----------
    material : str or MaterialPreset
        Preset name or preset.
    seed : int
        Seed of the cell (crack positions and noise; the short does not depend on it).

    Returns
    -------
    float
        Charge-to-failure in C (the paper quotes mC).

    Raises
    ------
    RuntimeError
        If the cell does not short within the protocol.
    """
    preset = get_material(material)
    cell = VirtualCell(preset, CellGeometry.insitu(), seed=seed)
    total_C = sum(
        2.0 * j * 10.0 * cell.geometry.area_m2 * INSITU_HALF_CYCLE_S
        for j in INSITU_DENSITIES_MA_CM2
    )
    cycle_to_charge(cell, total_C)
    short_C = cell.state.short_charge_C
    if short_C is None:
        raise RuntimeError(
            f"the in-situ cell of {preset.name} did not short within the protocol "
            f"({total_C * 1e3:.4g} mC)"
        )
    return short_C
