"""The emulated 2450's source-measure front end: its settings applied to the cell.

With the output off the cell is at open circuit (0 A). With the output on in current-source
mode the set current flows unless the cell's voltage would exceed the voltage limit (VLIM):
then the instrument is in compliance, the voltage is clamped at the limit and the current
actually sourced is the one at which the cell's noise-free voltage equals the limit (found by
bisection). ``:SOUR:CURR:VLIM:TRIP?`` returns 1 while that is so; the buffer's ``SOURce``
element holds the measured (read-back) source current. A voltage source is the mirror image
with the current limit (ILIM).

Measurement aperture takes no simulated time: readings are taken at given simulated times,
holding the present operating point over them with one ``cell.hold()``. Each stored reading
carries its source status (the buffer element ``SOURSTATus``): :data:`STAT_OUTPUT` while the
output is on, :data:`STAT_LIMIT` when the source was in its limit.

The instrument's own faults (:class:`~insitu.simulators.faults.InstrumentFaults`) happen here,
counted in readings since the instrument was switched on (:class:`MeasuredPoints`):
``overload_after`` puts the current source in compliance from the reading after that many on
(the terminals at the voltage limit, no current through the cell: a source that cannot drive
its load, flagged as any compliance is); ``error_after`` reports :data:`FAULT_EVENT` after
that many readings and switches the output off (a running trigger model then stops, FAILED).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np

from ...cell.model import VirtualCell
from ...faults import InstrumentFaults
from .state import InstrumentState

__all__ = [
    "FAULT_EVENT",
    "STAT_LIMIT",
    "STAT_OUTPUT",
    "MeasuredPoints",
    "Measurement",
    "SourceMeasureUnit",
]

# Source status bits of a reading, the buffer element SOURSTATus (Reference Manual 2450-901-01
# Rev. B: :TRACe:DATA? p. 6-109; bufferVar.sourcestatuses p. 8-29, "Buffer status bits for
# source function": bit 5, value 32, "Source function was limited because the complementary
# function would be over the source limit", then remote sense and the output state; their bit
# numbers, 6 and 7 (value 128 for the output), as the 2470's same table, 2470-901-01 p. 14-32).
#: The source was limited: in compliance (a current source at its voltage limit).
STAT_LIMIT = 32
#: The output was on when the reading was made.
STAT_OUTPUT = 128

#: The event the instrument reports for ``InstrumentFaults.error_after``: event 2774, "The
#: instrument is experiencing an internal temperature malfunction since it is unable to supply
#: readings and requires immediate service" -- a failure while sourcing after which the
#: instrument makes no more readings. Its number and meaning are from the event-number table of
#: the 2450's sibling, the 2461 Reference Manual (2461-901-01 A, Appendix C "Status model",
#: "Event numbers", p. C-10), found with the search tool; the 2450 manual's own table was not
#: in the searchable copies. The message is shortened as an error-queue entry is.
FAULT_EVENT = (2774, "Internal temperature malfunction; unable to supply readings, service needed")


@dataclass
class MeasuredPoints:
    """Readings the instrument made since it was switched on (what its faults count).

    Kept by the instrument across ``*RST``, which makes a new front end.

    Attributes
    ----------
    count : int
        Readings stored in any buffer (trigger-model measure blocks, ``:READ?``, ``:MEAS?``).
    error_reported : bool
        Whether the ``error_after`` fault has fired (it fires once).
    """

    count: int = 0
    error_reported: bool = False


@dataclass
class Measurement:
    """Readings taken at some times: terminal voltages, currents, and which were limited."""

    voltages: np.ndarray
    currents: np.ndarray
    limited: np.ndarray  # bool: the source was in its limit (compliance)


class SourceMeasureUnit:
    """Sources into and measures ``cell`` as the settings in ``state`` say.

    Parameters
    ----------
    cell : VirtualCell
        The cell on the terminals; advanced in place.
    state : InstrumentState
        The instrument's settings and buffers (read on every call, so changes apply at once).
    faults : InstrumentFaults, optional
        The instrument's own faults (none by default).
    points : MeasuredPoints, optional
        The count of readings the faults are counted in (the instrument keeps one for its life).
    """

    def __init__(
        self,
        cell: VirtualCell,
        state: InstrumentState,
        faults: InstrumentFaults | None = None,
        points: MeasuredPoints | None = None,
    ) -> None:
        self.cell = cell
        self.state = state
        self.faults = faults or InstrumentFaults()
        self.points = points if points is not None else MeasuredPoints()

    # --- the instrument's own faults -------------------------------------------------------
    def _overload(self) -> bool:
        """Whether the ``overload_after`` fault holds the current source in compliance now."""
        after = self.faults.overload_after
        source = self.state.source
        return (
            after is not None
            and self.points.count >= after
            and source.output
            and source.function == "CURR"
        )

    def readings_to_fault(self) -> int | None:
        """Readings that may be made before a fault starts (None: no fault ahead).

        A batch of readings is cut there, so that the cell is held at one operating point
        over each batch and the error comes right after its reading.
        """
        ahead = []
        if self.faults.error_after is not None and not self.points.error_reported:
            ahead.append(self.faults.error_after - self.points.count)
        if self.faults.overload_after is not None:
            ahead.append(self.faults.overload_after - self.points.count)
        ahead = [n for n in ahead if n > 0]
        return min(ahead) if ahead else None

    def _count(self, n: int) -> bool:
        """Count ``n`` stored readings; True when the ``error_after`` fault fires now.

        The instrument then reports :data:`FAULT_EVENT` and switches its output off; the
        caller stops a running trigger model.
        """
        self.points.count += n
        after = self.faults.error_after
        if after is None or self.points.error_reported or self.points.count < after:
            return False
        self.points.error_reported = True
        self.state.errors.push(*FAULT_EVENT)
        self.state.source.output = False
        return True

    # --- source and measure ----------------------------------------------------------------
    def operating_point(self) -> tuple[float, float, bool]:
        """(current through the cell, noise-free voltage, whether the source is in its limit)."""
        cell = self.cell
        source = self.state.source
        if not source.output:
            return 0.0, cell.voltage(0.0), False
        if self._overload():
            # The source cannot drive its load: its terminals go to the limit and no current
            # flows, as into an open circuit.
            return 0.0, math.copysign(source.vlim_V, source.current_A), True
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

    def measure(self, times: np.ndarray) -> Measurement:
        """Hold the present operating point over ``times``; the readings there.

        Nothing is stored or counted (see :meth:`store`): a trigger model may undo the hold
        and measure fewer.
        """
        times = np.maximum(times, self.cell.time_s)
        current, v_limit, limited = self.operating_point()
        source = self.state.source
        if self._overload():
            self.cell.advance_to(float(times[-1]), 0.0)
            full = np.full(times.shape, v_limit)
            return Measurement(full, np.zeros(times.shape), np.ones(times.shape, dtype=bool))
        voltages = self.cell.hold(current, times)
        currents = np.full(times.shape, current)
        flags = np.full(times.shape, limited)
        if source.output and source.function == "CURR":
            # The source regulates: the terminal voltage never exceeds the limit.
            over = np.abs(voltages) > source.vlim_V
            if over.any():
                voltages = np.clip(voltages, -source.vlim_V, source.vlim_V)
                current_end, _, _ = self.operating_point()
                currents[over] = current_end
                flags |= over
        return Measurement(voltages, currents, flags)

    def sensed(self, measured: Measurement) -> np.ndarray:
        """The readings of the sense function among measured voltages and currents."""
        return measured.voltages if self.state.sense.function == "VOLT" else measured.currents

    def store(self, measured: Measurement, times: np.ndarray, buffer_name: str) -> bool:
        """Put measured values into ``buffer_name`` as readings and count them.

        Returns
        -------
        bool
            Whether the ``error_after`` fault fired with these readings (the output is then
            off; a running trigger model must stop).
        """
        source = self.state.source
        readings = self.sensed(measured)
        sources = measured.currents if source.function == "CURR" else measured.voltages
        statuses = np.where(measured.limited, STAT_LIMIT, 0)
        if source.output:
            statuses = statuses | STAT_OUTPUT
        else:
            sources = np.zeros_like(sources)
            statuses = np.zeros_like(statuses)
        unit = "Volt DC" if self.state.sense.function == "VOLT" else "Amp DC"
        sunit = "Amp DC" if source.function == "CURR" else "Volt DC"
        self.state.buffers[buffer_name].add(
            readings.tolist(), sources.tolist(), times.tolist(), unit, sunit, statuses.tolist()
        )
        return self._count(len(readings))

    def take_readings(self, times: np.ndarray, buffer_name: str) -> tuple[np.ndarray, bool]:
        """Measure at ``times`` and store in ``buffer_name``, up to a fault.

        Returns
        -------
        readings : numpy.ndarray
            The readings stored (fewer than ``times`` when the ``error_after`` fault fired:
            the instrument makes none after it).
        failed : bool
            Whether the ``error_after`` fault fired.
        """
        times = np.maximum(times, self.cell.time_s)
        taken: list[np.ndarray] = []
        failed = False
        while times.size and not failed:
            n = min(times.size, self.readings_to_fault() or times.size)
            measured = self.measure(times[:n])
            failed = self.store(measured, times[:n], buffer_name)
            taken.append(self.sensed(measured))
            times = times[n:]
        return (np.concatenate(taken) if taken else np.empty(0)), failed

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
