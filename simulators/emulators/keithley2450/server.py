"""Keithley 2450 SourceMeter emulator: the instrument end of a raw-socket SCPI connection.

The real 2450 listens on TCP port 5025 for raw SCPI: newline-terminated commands,
newline-terminated replies, nothing sent back for commands that are not queries. This
emulator serves the same on 127.0.0.1 and sources into a :class:`~insitu.simulators.cell.model.
VirtualCell` on a :class:`~insitu.simulators.clock.SimClock`. Any VISA client reaches it as
``TCPIP::127.0.0.1::<port>::SOCKET``::

    with Keithley2450Emulator(VirtualCell("A-LPS"), SimClock(speedup=1e4)) as emu:
        rm = pyvisa.ResourceManager("@py")
        k = rm.open_resource(emu.resource, read_termination="\\n", write_termination="\\n")
        k.query("*IDN?")

This module is the instrument's end of the line (the wire itself is the shared line server,
:mod:`~insitu.simulators.emulators.line_server`); the instrument behind it is cut into modules
with one job each:

* :mod:`~insitu.simulators.emulators.keithley2450.commands` and
  :mod:`~insitu.simulators.emulators.keithley2450.trigger_commands`: the emulated commands of
  the Reference Manual (2450-901-01), as a table of patterns and handlers;
* :mod:`~insitu.simulators.emulators.keithley2450.instrument`: the instrument model the
  handlers act on, kept in step with the clock;
* :mod:`~insitu.simulators.emulators.keithley2450.state`: settings, reading buffers,
  configuration lists;
* :mod:`~insitu.simulators.emulators.keithley2450.source`: the source physics on the cell
  (compliance);
* :mod:`~insitu.simulators.emulators.keithley2450.trigger`: trigger-model blocks and their
  execution in exact simulated time.

The model runs lazily: before each command the emulator executes everything due by
``clock.now()``, then brings the cell to ``clock.now()``.

Test hooks
----------
``commands`` (the latest 10 000 lines received, in order, each cut to 1000 characters, so
that a client cannot fill the emulator's memory through it), ``responding`` (set False to make the
instrument swallow commands silently, as a hung instrument), :meth:`drop_clients` (close every
client connection, as a pulled cable), and read-only views of the state (``output_on``,
``source_current_A``, ``voltage_limit_V``, ``trigger_state``). A message longer than 1 MiB
overflows the input buffer: it is discarded and error -363 is queued.
"""

from __future__ import annotations

import logging
import threading
import time

from ...cell.model import VirtualCell
from ...clock import SimClock
from ...faults import InstrumentFaults
from ..line_server import CommandLog, Connection, LineServer
from ..scpi import SCPIError, parse_command, split_message
from .commands import build_command_set
from .instrument import Keithley2450Instrument

__all__ = ["Keithley2450Emulator"]

log = logging.getLogger(__name__)


class Keithley2450Emulator(LineServer):
    """A Keithley 2450 SourceMeter serving raw SCPI on a TCP port of 127.0.0.1.

    The wire (listening, clients, framing, :meth:`start`, :meth:`stop`, :meth:`drop_clients`,
    :attr:`resource`) is the :class:`~insitu.simulators.emulators.line_server.LineServer`'s;
    this class is the instrument behind it.

    Parameters
    ----------
    cell : VirtualCell
        The cell on the instrument's terminals (working electrode on FORCE HI).
    clock : SimClock
        The simulation clock; ``cell.time_s`` must not be after ``clock.now()``.
    host : str
        Only ``"127.0.0.1"`` (or ``"localhost"``) is allowed: an emulator never listens on a
        network interface.
    port : int
        TCP port; 0 picks a free one (see :attr:`port` after :meth:`start`).
    serial : str
        Serial number reported by ``*IDN?``.
    faults : InstrumentFaults, optional
        The instrument's own faults, counted in readings since the emulator started:
        ``error_after=N`` reports event 2774 after N readings, switches the output off and
        stops the trigger model (state FAILED); ``overload_after=N`` puts the current source
        in compliance from reading N+1 on (the terminals at the voltage limit, no current into
        the cell, ``:SOUR:CURR:VLIM:TRIP?`` 1, the readings' ``SOURSTATus`` with the
        source-limit bit).
        See :mod:`~insitu.simulators.emulators.keithley2450.source`.

    Examples
    --------
    >>> from insitu.simulators.cell.model import VirtualCell
    >>> from insitu.simulators.clock import SimClock
    >>> with Keithley2450Emulator(VirtualCell("A-LPS"), SimClock(speedup=1e4)) as emu:
    ...     emu.resource.startswith("TCPIP::127.0.0.1::")
    True
    """

    name = "Keithley 2450 emulator"
    terminator = b"\n"
    max_line = 1 << 20

    def __init__(
        self,
        cell: VirtualCell,
        clock: SimClock,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        serial: str = "04512345",
        faults: InstrumentFaults | None = None,
    ) -> None:
        super().__init__(host=host, port=port)
        self.cell = cell
        self.clock = clock
        self.serial = serial
        #: Faults inside the instrument (its own error, readings in compliance/overload).
        self.faults = faults or InstrumentFaults()
        self._lock = threading.RLock()
        #: The latest command lines received, in order (test hook; bounded, see CommandLog).
        self.commands: CommandLog = CommandLog()
        #: Set False to make the instrument swallow commands without answering (test hook).
        self.responding: bool = True
        self._instrument = Keithley2450Instrument(cell, clock, serial, self.faults)
        self._commands = build_command_set(self._instrument)

    # --- read-only views (test hooks) ------------------------------------------------------
    @property
    def output_on(self) -> bool:
        """Whether the output is on."""
        with self._lock:
            return self._instrument.state.source.output

    @property
    def source_current_A(self) -> float:
        """The programmed source current."""
        with self._lock:
            return self._instrument.state.source.current_A

    @property
    def voltage_limit_V(self) -> float:
        """The programmed voltage limit (VLIM)."""
        with self._lock:
            return self._instrument.state.source.vlim_V

    @property
    def trigger_state(self) -> str:
        """The reply ``:TRIG:STAT?`` would give now."""
        with self._lock:
            self._instrument.catch_up()
            return self._instrument.trigger.state_reply()

    # --- message processing ----------------------------------------------------------------
    def handle_line(self, line: str) -> str | None:
        """Execute one program message; returns the response message or ``None``.

        Public so that unit tests of the command set can bypass the socket; drivers always
        come in over TCP.
        """
        self.commands.append(line)
        if not self.responding:
            return None
        if not line.strip():
            return None
        replies: list[str] = []
        path: list[str] = []
        try:
            parts = split_message(line)
        except SCPIError as err:
            self._push_error(err.code, err.text)
            return None
        for part in parts:
            if not part:
                continue
            try:
                command, path = parse_command(part, path)
                handler = self._commands.find(command)
                if command.common and command.nodes[0] in ("*WAI", "*OPC"):
                    self._wait_for_trigger_model()
                with self._lock:
                    self._instrument.catch_up()
                    reply = handler(command.params)
            except SCPIError as err:
                self._push_error(err.code, err.text)
                # SCPI: an error in a message discards the rest of it.
                break
            except Exception as exc:  # never let a handler bug kill the server thread
                log.exception("emulator failed on %r", part)
                self._push_error(-200, f"Execution error: {exc}")
                break
            if command.query and reply is not None:
                replies.append(reply)
        return ";".join(replies) if replies else None

    def line_too_long(self, conn: Connection) -> None:
        """An over-long message overflows the input buffer: error -363 in the queue."""
        self._push_error(-363)

    def _wait_for_trigger_model(self) -> None:
        # *WAI / *OPC? block until the running trigger model has finished. Sleep without the
        # lock so that other clients (and :ABOR on another socket) proceed.
        while not self._stopping.is_set():
            with self._lock:
                self._instrument.catch_up()
                due = self._instrument.trigger.due()
                if due is None:
                    return
            remaining = due - self.clock.now()
            time.sleep(min(max(self.clock.real_seconds(remaining), 1e-4), 0.05))

    def _push_error(self, code: int, message: str | None = None) -> None:
        with self._lock:
            self._instrument.state.errors.push(code, message)
