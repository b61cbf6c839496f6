"""The emulated 2450 behind the wire: its state, front end and trigger model on one clock.

The SCPI command handlers act on a :class:`Keithley2450Instrument`; the server keeps it in
step with the simulation clock by calling :meth:`~Keithley2450Instrument.catch_up` before
every command. No locking here: the server serialises access.
"""

from __future__ import annotations

import numpy as np

from ...cell.model import VirtualCell
from ...clock import SimClock
from ...faults import InstrumentFaults
from ..scpi import SCPIError
from .source import MeasuredPoints, SourceMeasureUnit
from .state import InstrumentState
from .trigger import TriggerModel

__all__ = ["Keithley2450Instrument"]


class Keithley2450Instrument:
    """A Keithley 2450 sourcing into ``cell`` in the simulated time of ``clock``.

    Parameters
    ----------
    cell : VirtualCell
        The cell on the terminals (working electrode on FORCE HI).
    clock : SimClock
        The simulation clock; ``cell.time_s`` must not be after ``clock.now()``.
    serial : str
        Serial number reported by ``*IDN?``.
    faults : InstrumentFaults, optional
        The instrument's own faults, counted in readings since it was switched on (see
        :mod:`~insitu.simulators.emulators.keithley2450.source`).
    """

    def __init__(
        self,
        cell: VirtualCell,
        clock: SimClock,
        serial: str,
        faults: InstrumentFaults | None = None,
    ) -> None:
        self.cell = cell
        self.clock = clock
        self.serial = serial
        self.faults = faults or InstrumentFaults()
        #: Readings made since the instrument was switched on (``*RST`` keeps the count).
        self.points = MeasuredPoints()
        self._power_on(InstrumentState())

    def _power_on(self, state: InstrumentState) -> None:
        self.state = state
        self.smu = SourceMeasureUnit(self.cell, state, self.faults, self.points)
        self.trigger = TriggerModel(state, self.smu)

    def reset(self) -> None:
        """``*RST``: the power-on state, but the error queue is kept (``*CLS`` clears it)."""
        self._power_on(InstrumentState(errors=self.state.errors))

    def catch_up(self) -> None:
        """Run the trigger model up to clock.now(), then bring the cell to clock.now().

        Between readings, and when no model runs, the cell is advanced to the clock's
        present time at the present operating point before each command is executed.
        """
        now = self.clock.now()
        self.trigger.execute(now)
        self.smu.advance_to(now)

    def initiate(self) -> None:
        """``:INITiate``: start the trigger model now and run what is already due."""
        self.trigger.start(max(self.clock.now(), self.cell.time_s))
        self.catch_up()

    def single_reading(self, buffer_name: str) -> None:
        """A reading now (``:READ?``, ``:MEAS?``), stored in ``buffer_name``."""
        if self.trigger.running:
            raise SCPIError(-213)
        # catch_up() has just brought the cell to the command's time: measure there, so that
        # the operating point solved for that state is the one measured.
        self.smu.take_readings(np.array([self.cell.time_s]), buffer_name)
        # A fault that fires here has switched the output off; no trigger model runs.
