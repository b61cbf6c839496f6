"""The emulated 2450's source-measure front end: its settings applied to the cell.

With the output off the cell is at open circuit (0 A). With the output on in current-source
mode the set current flows unless the cell's voltage would exceed the voltage limit (VLIM):
then the instrument is in compliance, the voltage is clamped at the limit and the current
actually sourced is the one at which the cell's noise-free voltage equals the limit (found by
bisection). ``:SOUR:CURR:VLIM:TRIP?`` returns 1 while that is so; the buffer's ``SOURce``
element holds the measured (read-back) source current. A voltage source is the mirror image
with the current limit (ILIM).

Measurement aperture takes no simulated time: readings are taken at given simulated times,
holding the present operating point over them with one ``cell.hold()``.
"""

from __future__ import annotations

import copy
import math

import numpy as np

from ...cell.model import VirtualCell
from .state import InstrumentState

__all__ = ["SourceMeasureUnit"]


class SourceMeasureUnit:
    """Sources into and measures ``cell`` as the settings in ``state`` say.

    Parameters
    ----------
    cell : VirtualCell
        The cell on the terminals; advanced in place.
    state : InstrumentState
        The instrument's settings and buffers (read on every call, so changes apply at once).
    """

    def __init__(self, cell: VirtualCell, state: InstrumentState) -> None:
        self.cell = cell
        self.state = state

    def operating_point(self) -> tuple[float, float, bool]:
        """(current through the cell, noise-free voltage, whether the source is in its limit)."""
        cell = self.cell
        source = self.state.source
        if not source.output:
            return 0.0, cell.voltage(0.0), False
        if source.function == "CURR":
            i_set = source.current_A
            v = cell.voltage(i_set)
            if abs(v) <= source.vlim_V:
                return i_set, v, False
            target = math.copysign(source.vlim_V, v)
            i = self._solve_current(target, 0.0, i_set)
            return i, target, True
        # Voltage source: find the current at which the cell sits at the set voltage.
        v_set = source.voltage_V
        lo, hi = -source.ilim_A, source.ilim_A
        if cell.voltage(hi) < v_set:
            return hi, cell.voltage(hi), True
        if cell.voltage(lo) > v_set:
            return lo, cell.voltage(lo), True
        i = self._solve_current(v_set, lo, hi)
        return i, v_set, False

    def _solve_current(self, v_target: float, a: float, b: float) -> float:
        """Bisection for cell.voltage(i) == v_target with i between a and b."""
        fa = self.cell.voltage(a) - v_target
        for _ in range(60):
            m = 0.5 * (a + b)
            fm = self.cell.voltage(m) - v_target
            if (fm > 0) == (fa > 0):
                a, fa = m, fm
            else:
                b = m
            if abs(b - a) <= 1e-15 + 1e-12 * abs(m):
                break
        return 0.5 * (a + b)

    def tripped(self, function: str) -> bool:
        """Whether the source of ``function`` ("CURR" or "VOLT") is in its limit now."""
        return self.state.source.function == function and self.operating_point()[2]

    def advance_to(self, t: float) -> None:
        """Bring the cell to simulated time ``t`` at the present operating point."""
        if t > self.cell.time_s:
            current, _, _ = self.operating_point()
            self.cell.advance_to(t, current)

    def measure(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Hold the present operating point over ``times``; (voltages, currents) measured."""
        times = np.maximum(times, self.cell.time_s)
        current, _, _ = self.operating_point()
        voltages = self.cell.hold(current, times)
        currents = np.full(times.shape, current)
        source = self.state.source
        if source.output and source.function == "CURR":
            # The source regulates: the terminal voltage never exceeds the limit.
            over = np.abs(voltages) > source.vlim_V
            if over.any():
                voltages = np.clip(voltages, -source.vlim_V, source.vlim_V)
                current_end, _, _ = self.operating_point()
                currents[over] = current_end
        return voltages, currents

    def sensed(self, voltages: np.ndarray, currents: np.ndarray) -> np.ndarray:
        """The readings of the sense function among measured voltages and currents."""
        return voltages if self.state.sense.function == "VOLT" else currents

    def store(
        self, voltages: np.ndarray, currents: np.ndarray, times: np.ndarray, buffer_name: str
    ) -> np.ndarray:
        """Put measured values into ``buffer_name`` as readings; returns the readings."""
        source = self.state.source
        readings = self.sensed(voltages, currents)
        sources = currents if source.function == "CURR" else voltages
        if not source.output:
            sources = np.zeros_like(sources)
        unit = "Volt DC" if self.state.sense.function == "VOLT" else "Amp DC"
        sunit = "Amp DC" if source.function == "CURR" else "Volt DC"
        self.state.buffers[buffer_name].add(
            readings.tolist(), sources.tolist(), times.tolist(), unit, sunit
        )
        return readings

    def take_readings(self, times: np.ndarray, buffer_name: str) -> np.ndarray:
        """Measure at ``times``, store in ``buffer_name``; returns the readings."""
        times = np.maximum(times, self.cell.time_s)
        voltages, currents = self.measure(times)
        return self.store(voltages, currents, times, buffer_name)

    def snapshot(self) -> VirtualCell:
        """A copy of the cell to :meth:`restore` (a hold can then be undone)."""
        cell = self.cell
        # The material, parameters and geometry are immutable: share them.
        memo = {id(cell.material): cell.material, id(cell.parameters): cell.parameters}
        memo[id(cell.geometry)] = cell.geometry
        return copy.deepcopy(cell, memo)

    def restore(self, snapshot: VirtualCell) -> None:
        """Put the cell back to ``snapshot``."""
        # Restore in place: the bench and the tests hold references to this cell object.
        self.cell.__dict__.clear()
        self.cell.__dict__.update(snapshot.__dict__)
