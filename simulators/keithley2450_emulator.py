"""Keithley 2450 SourceMeter emulator: the instrument end of a raw-socket SCPI connection.

The real 2450 listens on TCP port 5025 for raw SCPI: newline-terminated commands,
newline-terminated replies, nothing sent back for commands that are not queries. This
emulator serves the same on 127.0.0.1 and sources into a :class:`~insitu.simulators.cell.
VirtualCell` on a :class:`~insitu.simulators.clock.SimClock`. Any VISA client reaches it as
``TCPIP::127.0.0.1::<port>::SOCKET``::

    with Keithley2450Emulator(VirtualCell("A-LPS"), SimClock(speedup=1e4)) as emu:
        rm = pyvisa.ResourceManager("@py")
        k = rm.open_resource(emu.resource, read_termination="\\n", write_termination="\\n")
        k.query("*IDN?")

What is emulated (native "SCPI" command set of the Reference Manual, 2450-901-01):

* IEEE 488.2 common commands ``*IDN?``, ``*RST``, ``*CLS``, ``*OPC``, ``*OPC?``, ``*WAI``,
  ``*ESR?``, ``*STB?``, ``*TRG`` (ignored), ``*TST?``;
* ``:SYSTem:ERRor[:NEXT]?``, ``:SYSTem:ERRor:COUNt?``, ``:SYSTem:ERRor:CLEar`` (error queue
  with the standard SCPI codes and texts), ``:SYSTem:BEEP`` and similar harmless commands;
* ``:SOURce:FUNCtion CURRent|VOLTage``, ``:SOURce:CURRent[:LEVel]``, ``:SOURce:CURRent:RANGe``
  (``:AUTO``), ``:SOURce:CURRent:VLIMit`` (``:TRIPped?``), the voltage-source equivalents
  with ``ILIMit``;
* ``:SENSe:FUNCtion "VOLT"|"CURR"``, ``:SENSe:VOLTage|CURRent:RANGe`` (``:AUTO``), ``:NPLCycles``;
* ``:OUTPut[:STATe] ON|OFF|1|0``;
* ``:READ?`` and ``:MEASure:VOLTage|CURRent?`` (optionally with a buffer name and elements);
* reading buffers: ``:TRACe:MAKE``, ``:DELete``, ``:CLEar``, ``:POINts``, ``:ACTual?``,
  ``:ACTual:STARt?``, ``:ACTual:END?``, ``:DATA?`` with the elements ``READing``,
  ``RELative``, ``SOURce``, ``SEConds``, ``FRACtional``, ``TSTamp``, ``UNIT``, ``SOURUNIT``;
* source configuration lists: ``:SOURce:CONFiguration:LIST:CREate``, ``:STORe`` (the source
  function, levels, ranges, limits and the output state, as the manual lists them),
  ``:SIZE?``, ``:DELete``, ``:RECall``;
* the configurable trigger model: ``:TRIGger:BLOCk:BUFFer:CLEar``, ``:MEASure`` (with a count),
  ``:DELay:CONStant``, ``:SOURce:STATe``, ``:CONFig:RECall``, ``:CONFig:NEXT``,
  ``:BRANch:COUNter`` (and ``:COUNt?``), ``:BRANch:COUNter:RESet``, ``:BRANch:ALWays``,
  ``:BRANch:LIMit:CONStant`` (ABOVe, BELow, INside, OUTSide), ``:NOP``, ``:LIST?``; the
  templates ``:TRIGger:LOAD "SimpleLoop", <count>[, <delay>[, "<buffer>"]]`` (its four blocks:
  buffer clear, delay, measure, counter) and ``"Empty"``; ``:INITiate``, ``:ABORt``,
  ``:TRIGger:STATe?`` (``RUNNING;RUNNING;5``: state twice and the block last executed).

Trigger model semantics (Reference Manual 2450-901-01 and its 2461 sibling, section 6):
blocks are numbered 1 to 63 in sequence; every counter starts at 0 when the model starts, is
incremented when reached and branches while it is below its target; a counter that has run
out starts over the next time it is reached (the manual's nested-loop example, 5 readings ×
3 passes = 15, needs exactly that), and ``:BRANch:COUNter:RESet`` sets one to 0; a
configuration-next block recalls index 1 the first time unless a recall block recalled one
before, then the following index, wrapping after the last; a limit block tests the last
reading of its measure block (the previous measure block when 0), swapping A and B when
A > B. A model that cannot start (a branch to a missing block, a limit block without a
measure block before it) is refused by ``:INIT`` with -221; a configuration list or index
that does not exist is error 2790 (and FAILED state when the model reaches it).

Timing
------
Blocks take effect at the simulated time the model reaches them; delay blocks take their
time and nothing else does (measurement aperture takes no simulated time). The model runs
lazily: before each command the emulator executes everything due by ``clock.now()``. A loop
``DELAY, MEASURE[, LIMIT], COUNTER -> DELAY`` at one source setting is one vectorised batch
(one ``cell.hold()`` for all its due readings, at most 2000). With a limit branch in the loop
the batch is cut at the first reading that meets the limit: the cell is snapshotted (a deep
copy sharing the immutable material data, ~0.1 ms) before the hold and, on a cut, restored
and held again up to that reading, so it is never advanced past it at the old source
setting. Between readings, and when no model runs, the cell is advanced to the clock's
present time at the present operating point before each command is executed.

Source physics
--------------
With the output off the cell is at open circuit (0 A). With the output on in current-source
mode the set current flows unless the cell's voltage would exceed the voltage limit (VLIM):
then the instrument is in compliance, the voltage is clamped at the limit and the current
actually sourced is the one at which the cell's noise-free voltage equals the limit (found by
bisection). ``:SOUR:CURR:VLIM:TRIP?`` returns 1 while that is so; the buffer's ``SOURce``
element holds the measured (read-back) source current.

Test hooks
----------
``commands`` (every line received, in order), ``responding`` (set False to make the
instrument swallow commands silently, as a hung instrument), :meth:`drop_clients` (close every
client connection, as a pulled cable), and read-only views of the state (``output_on``,
``source_current_A``, ``voltage_limit_V``, ``trigger_state``).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .cell import VirtualCell
from .clock import SimClock
from .scpi import (
    CommandSet,
    ErrorQueue,
    SCPIError,
    parse_bool,
    parse_choice,
    parse_command,
    parse_int,
    parse_number,
    parse_string,
    split_message,
)

__all__ = ["Keithley2450Emulator"]

log = logging.getLogger(__name__)

FIRMWARE = "1.7.12b"
MANUFACTURER = "KEITHLEY INSTRUMENTS"
MODEL = "MODEL 2450"

MAX_CURRENT_A = 1.05
MAX_VOLTAGE_V = 210.0
DEFAULT_BUFFER_POINTS = 100_000
MAX_BUFFER_POINTS = 4_000_000  # all buffers together share this much memory on the 2450
MAX_TRIGGER_COUNT = 268_435_455
MAX_DELAY_S = 10_000.0
MAX_BLOCKS = 63  # trigger-model block numbers run from 1 to this
MAX_CONFIG_POINTS = 100_000  # indexes per configuration list (emulator bound)
# Keithley event code for a configuration list or index that does not exist.
CONFIG_LIST_MISSING = 2790
# Block executions per catch-up outside the vectorised loop (bounds a model that spins in
# zero simulated time, e.g. a branch-always loop without a delay).
_MAX_STEPS = 200_000
# Readings produced per cell.hold() call; bounds how late the emulator notices compliance.
_BATCH = 2000
_MAX_LINE = 1 << 20

_SOURCE_CURRENT_RANGES = (10e-9, 100e-9, 1e-6, 10e-6, 100e-6, 1e-3, 10e-3, 100e-3, 1.0)
_SOURCE_VOLTAGE_RANGES = (0.02, 0.2, 2.0, 20.0, 200.0)
_ELEMENTS = (
    "READing",
    "RELative",
    "SOURce",
    "SEConds",
    "FRACtional",
    "TSTamp",
    "UNIT",
    "SOURUNIT",
)


def _fmt(value: float) -> str:
    """Numbers in the instrument's ASCII format: ``8.592543E-03``."""
    return f"{value:.6E}"


def _fmt_reading(value: float) -> str:
    # Readings carry more digits than settings (a 6½-digit instrument, plus noise headroom).
    return f"{value:.9E}"


def _fit_range(value: float, ranges: tuple[float, ...]) -> float:
    for r in ranges:
        if abs(value) <= r * 1.05:
            return r
    return ranges[-1]


@dataclass
class _Buffer:
    """One reading buffer (``defbuffer1``, ``defbuffer2`` or user-made)."""

    capacity: int
    readings: list[float] = field(default_factory=list)
    sources: list[float] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    units: list[str] = field(default_factory=list)
    source_units: list[str] = field(default_factory=list)
    first_time: float | None = None

    def clear(self) -> None:
        for column in (self.readings, self.sources, self.times, self.units, self.source_units):
            column.clear()
        self.first_time = None

    def add(
        self, readings: list[float], sources: list[float], times: list[float], unit: str, sunit: str
    ) -> None:
        if self.first_time is None and times:
            self.first_time = times[0]
        self.readings.extend(readings)
        self.sources.extend(sources)
        self.times.extend(times)
        self.units.extend([unit] * len(readings))
        self.source_units.extend([sunit] * len(readings))
        excess = len(self.readings) - self.capacity
        if excess > 0:
            # Fill mode CONTinuous (the default buffers' default): the oldest readings go.
            for column in (self.readings, self.sources, self.times, self.units, self.source_units):
                del column[:excess]

    def __len__(self) -> int:
        return len(self.readings)


@dataclass
class _Block:
    """One trigger-model building block (``:TRIGger:BLOCk:...``)."""

    kind: str  # the name :TRIGger:BLOCk:LIST? shows, e.g. "MEASURE"
    buffer: str = ""  # BUFFER_CLEAR, MEASURE
    count: int = 1  # MEASURE: readings per visit; BRANCH_COUNTER: target count
    delay_s: float = 0.0  # DELAY_CONSTANT
    target: int = 0  # branch-to block (BRANCH_*), counter block (BRANCH_COUNTER_RESET)
    config: str = ""  # CONFIG_RECALL, CONFIG_NEXT: source configuration list
    index: int = 1  # CONFIG_RECALL
    state: bool = False  # SOURCE_OUTPUT
    limit_type: str = ""  # BRANCH_LIMIT_CONSTANT: ABOV, BEL, IN, OUTS
    limit_a: float = 0.0
    limit_b: float = 0.0
    measure_block: int = 0  # BRANCH_LIMIT_CONSTANT: 0 = the previous measure block


@dataclass
class _Run:
    """Execution state of a running trigger model."""

    pc: int  # the block to execute next
    t: float  # simulated time the model has reached
    counters: dict[int, int] = field(default_factory=dict)
    last_reading: dict[int, float] = field(default_factory=dict)  # per measure block
    delay_end: float | None = None  # set while the model waits in the delay block ``pc``
    config_index: dict[str, int] = field(default_factory=dict)  # trigger-model list positions


_LIMIT_TYPES = ("ABOVe", "BELow", "INside", "OUTSide")
_LIMIT_NAMES = {"ABOV": "ABOVE", "BEL": "BELOW", "IN": "INSIDE", "OUTS": "OUTSIDE"}


def _limit_met(kind: str, low: float, high: float, values: np.ndarray) -> np.ndarray:
    """Whether each measurement meets a constant-limit branch's criterion."""
    if kind == "ABOV":
        return values > high
    if kind == "BEL":
        return values < low
    if kind == "IN":
        return (values >= low) & (values <= high)
    return (values < low) | (values > high)


class Keithley2450Emulator:
    """A Keithley 2450 SourceMeter serving raw SCPI on a TCP port of 127.0.0.1.

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

    Examples
    --------
    >>> from insitu.simulators.cell import VirtualCell
    >>> from insitu.simulators.clock import SimClock
    >>> with Keithley2450Emulator(VirtualCell("A-LPS"), SimClock(speedup=1e4)) as emu:
    ...     emu.resource.startswith("TCPIP::127.0.0.1::")
    True
    """

    def __init__(
        self,
        cell: VirtualCell,
        clock: SimClock,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        serial: str = "04512345",
    ) -> None:
        if host not in ("127.0.0.1", "localhost"):
            raise ValueError(
                f"the Keithley 2450 emulator listens on 127.0.0.1 only, got host={host!r}; "
                "leave host at its default"
            )
        self.cell = cell
        self.clock = clock
        self.serial = serial
        self._host = "127.0.0.1"
        self._requested_port = int(port)
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._clients: dict[socket.socket, threading.Thread] = {}
        self._clients_lock = threading.Lock()
        self.port: int = 0
        #: Every command line received, in order (test hook).
        self.commands: list[str] = []
        #: Set False to make the instrument swallow commands without answering (test hook).
        self.responding: bool = True
        self._commands = self._build_command_set()
        self._reset()

    # --- life cycle ------------------------------------------------------------------------
    @property
    def resource(self) -> str:
        """VISA resource string of the running server."""
        if not self.port:
            raise RuntimeError("the emulator is not running; call start() first")
        return f"TCPIP::{self._host}::{self.port}::SOCKET"

    def start(self) -> str:
        """Start listening; returns the VISA resource string."""
        if self._listener is not None:
            return self.resource
        self._stop.clear()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self._host, self._requested_port))
        listener.listen(4)
        listener.settimeout(0.05)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"k2450-emu-{self.port}", daemon=True
        )
        self._accept_thread.start()
        log.debug("Keithley 2450 emulator listening on %s", self.resource)
        return self.resource

    def stop(self) -> None:
        """Stop the server and close every connection (the instrument state is kept)."""
        self._stop.set()
        if self._accept_thread is not None:
            self._accept_thread.join(timeout=2.0)
            self._accept_thread = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self.drop_clients()
        with self._clients_lock:
            threads = list(self._clients.values())
        for t in threads:
            t.join(timeout=2.0)

    def __enter__(self) -> Keithley2450Emulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def drop_clients(self) -> None:
        """Close every client connection now, as if the cable were pulled (test hook)."""
        with self._clients_lock:
            socks = list(self._clients)
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()

    # --- read-only views (test hooks) ------------------------------------------------------
    @property
    def output_on(self) -> bool:
        """Whether the output is on."""
        with self._lock:
            return self._output

    @property
    def source_current_A(self) -> float:
        """The programmed source current."""
        with self._lock:
            return self._source_current

    @property
    def voltage_limit_V(self) -> float:
        """The programmed voltage limit (VLIM)."""
        with self._lock:
            return self._vlim

    @property
    def trigger_state(self) -> str:
        """The reply ``:TRIG:STAT?`` would give now."""
        with self._lock:
            self._catch_up()
            return self._trigger_state_reply()

    # --- network ---------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            conn.settimeout(0.05)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            with self._clients_lock:
                self._clients[conn] = t
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        pending = bytearray()
        try:
            while not self._stop.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if not data:
                    break
                pending.extend(data)
                while b"\n" in pending:
                    line, _, rest = pending.partition(b"\n")
                    pending = bytearray(rest)
                    reply = self.handle_line(line.decode("ascii", "replace").rstrip("\r"))
                    if reply is not None:
                        conn.sendall(reply.encode("ascii") + b"\n")
                if len(pending) > _MAX_LINE:
                    pending.clear()
                    with self._lock:
                        self._errors.push(-363)
        except OSError:
            pass  # the client went away mid-reply
        finally:
            with self._clients_lock:
                self._clients.pop(conn, None)
            with contextlib.suppress(OSError):
                conn.close()

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
            with self._lock:
                self._errors.push(err.code, err.text)
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
                    self._catch_up()
                    reply = handler(command.params)
            except SCPIError as err:
                with self._lock:
                    self._errors.push(err.code, err.text)
                # SCPI: an error in a message discards the rest of it.
                break
            except Exception as exc:  # never let a handler bug kill the server thread
                log.exception("emulator failed on %r", part)
                with self._lock:
                    self._errors.push(-200, f"Execution error: {exc}")
                break
            if command.query and reply is not None:
                replies.append(reply)
        return ";".join(replies) if replies else None

    def _wait_for_trigger_model(self) -> None:
        # *WAI / *OPC? block until the running trigger model has finished. Sleep without the
        # lock so that other clients (and :ABOR on another socket) proceed.
        while not self._stop.is_set():
            with self._lock:
                self._catch_up()
                run = self._run
                if run is None:
                    return
                due = run.delay_end if run.delay_end is not None else run.t
            remaining = due - self.clock.now()
            time.sleep(min(max(self.clock.real_seconds(remaining), 1e-4), 0.05))

    # --- instrument state ------------------------------------------------------------------
    def _reset(self) -> None:
        with self._lock:
            self._errors = ErrorQueue()
            self._source_function = "VOLT"
            self._source_current = 0.0
            self._source_voltage = 0.0
            self._current_range = 1e-6
            self._current_range_auto = True
            self._voltage_range = 0.02
            self._voltage_range_auto = True
            self._vlim = 21.0
            self._ilim = 105e-6
            self._sense_function = "CURR"
            self._sense_range = {"VOLT": 0.02, "CURR": 1e-6}
            self._sense_auto = {"VOLT": True, "CURR": True}
            self._nplc = {"VOLT": 1.0, "CURR": 1.0}
            self._output = False
            self._buffers: dict[str, _Buffer] = {
                "DEFBUFFER1": _Buffer(DEFAULT_BUFFER_POINTS),
                "DEFBUFFER2": _Buffer(DEFAULT_BUFFER_POINTS),
            }
            self._blocks: dict[int, _Block] = {}
            self._run: _Run | None = None
            self._last_counters: dict[int, int] = {}
            self._model_state = "EMPTY"
            self._last_block = 0
            # Source configuration lists: upper-case name -> (name, points).
            self._config_lists: dict[str, tuple[str, list[dict[str, object]]]] = {}
            self._opc = False

    @property
    def _running(self) -> bool:
        return self._run is not None

    def _catch_up(self) -> None:
        """Run the trigger model up to clock.now(), then bring the cell to clock.now()."""
        now = self.clock.now()
        if self._run is not None:
            self._execute(now)
        if now > self.cell.time_s:
            current, _, _ = self._operating_point()
            self.cell.advance_to(now, current)

    def _measure(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Hold the present operating point over ``times``; (voltages, currents) measured."""
        times = np.maximum(times, self.cell.time_s)
        current, _, _ = self._operating_point()
        voltages = self.cell.hold(current, times)
        currents = np.full(times.shape, current)
        if self._output and self._source_function == "CURR":
            # The source regulates: the terminal voltage never exceeds the limit.
            over = np.abs(voltages) > self._vlim
            if over.any():
                voltages = np.clip(voltages, -self._vlim, self._vlim)
                current_end, _, _ = self._operating_point()
                currents[over] = current_end
        return voltages, currents

    def _take_readings(self, times: np.ndarray, buffer_name: str) -> np.ndarray:
        """Measure at ``times``, store in ``buffer_name``; returns the readings."""
        times = np.maximum(times, self.cell.time_s)
        voltages, currents = self._measure(times)
        return self._store(voltages, currents, times, buffer_name)

    # --- trigger model execution -----------------------------------------------------------
    def _execute(self, now: float) -> None:
        """Execute the running trigger model up to simulated time ``now``.

        Every block takes effect at the simulated time the model reaches it; only delay
        blocks take time (measurements take none). A loop ``DELAY, MEASURE[, LIMIT], COUNTER``
        at one source setting runs vectorised: everything due by ``now`` in one batch.
        """
        run = self._run
        assert run is not None
        steps = 0
        while self._run is run:
            if run.pc > len(self._blocks) or run.pc < 1:
                self._finish("IDLE")
                return
            block = self._blocks[run.pc]
            if block.kind == "DELAY_CONSTANT":
                end = run.delay_end if run.delay_end is not None else run.t + block.delay_s
                if end > now:
                    run.delay_end = end  # waiting in this block
                    return
                if self._loop_batch(run, now):
                    continue
                run.t, run.delay_end = end, None
                self._last_block = run.pc
                run.pc += 1
                continue
            steps += 1
            if steps > _MAX_STEPS:
                return  # a zero-time loop: come back at the next command
            self._execute_block(run, block)

    def _execute_block(self, run: _Run, block: _Block) -> None:
        """Execute one block at simulated time ``run.t`` (not a delay block)."""
        number = run.pc
        self._last_block = number
        run.pc = number + 1
        kind = block.kind
        if kind == "BUFFER_CLEAR":
            self._buffers[block.buffer].clear()
        elif kind == "MEASURE":
            self._advance_cell(run.t)
            readings = self._take_readings(np.full(block.count, run.t), block.buffer)
            run.last_reading[number] = float(readings[-1])
        elif kind == "BRANCH_LIMIT_CONSTANT":
            source = block.measure_block or self._previous_measure(number)
            value = run.last_reading.get(source)
            if value is None:
                self._fail(-200, f"Execution error; measure block {source} made no reading")
                return
            if _limit_met(block.limit_type, block.limit_a, block.limit_b, np.array([value]))[0]:
                run.pc = block.target
        elif kind == "BRANCH_COUNTER":
            count = run.counters.get(number, 0)
            if count >= block.count:
                count = 0  # a finished loop starts over when it is reached again
            count += 1
            run.counters[number] = count
            if count < block.count:
                run.pc = block.target
        elif kind == "BRANCH_COUNTER_RESET":
            run.counters[block.target] = 0
        elif kind == "BRANCH_ALWAYS":
            run.pc = block.target
        elif kind in ("CONFIG_RECALL", "CONFIG_NEXT"):
            key = block.config.upper()
            if key not in self._config_lists:
                self._fail(CONFIG_LIST_MISSING, "Configuration list, error, does not exist")
                return
            points = self._config_lists[key][1]
            if kind == "CONFIG_RECALL":
                index = block.index
            else:
                previous = run.config_index.get(key)
                index = 1 if previous is None or previous >= len(points) else previous + 1
            if not 1 <= index <= len(points):
                self._fail(CONFIG_LIST_MISSING, "Configuration list, error, does not exist")
                return
            run.config_index[key] = index
            self._advance_cell(run.t)
            self._apply_config(points[index - 1])
        elif kind == "SOURCE_OUTPUT":
            self._advance_cell(run.t)
            self._output = block.state
        # NOP: nothing

    def _loop_batch(self, run: _Run, now: float) -> bool:
        """Run the loop ``DELAY, MEASURE[, LIMIT], COUNTER -> DELAY`` at ``run.pc`` vectorised.

        Takes every reading due by ``now`` (at most :data:`_BATCH`) with one ``cell.hold``.
        With a limit branch the batch is cut at the first reading that meets the limit: the
        cell is restored from a snapshot taken before the hold and held again up to that
        reading only, so it is never advanced past it at the old source setting. Returns
        False when the blocks at ``run.pc`` are not such a loop (or nothing is due).
        """
        d = run.pc
        blocks = self._blocks
        delay = blocks[d]
        measure = blocks.get(d + 1)
        if measure is None or measure.kind != "MEASURE" or measure.count != 1:
            return False
        limit = blocks.get(d + 2)
        counter_at = d + 2
        if limit is not None and limit.kind == "BRANCH_LIMIT_CONSTANT":
            if limit.measure_block not in (0, d + 1):
                return False
            counter_at = d + 3
        else:
            limit = None
        counter = blocks.get(counter_at)
        if counter is None or counter.kind != "BRANCH_COUNTER" or counter.target != d:
            return False
        count = run.counters.get(counter_at, 0)
        if count >= counter.count:
            count = 0
        remaining = counter.count - count  # readings left in this pass, the last falls through
        first = run.delay_end if run.delay_end is not None else run.t + delay.delay_s
        if delay.delay_s > 0:
            due = math.floor((now - first) / delay.delay_s) + 1
        else:
            due = remaining
        n = min(remaining, due, _BATCH)
        if n < 1:
            return False
        times = first + delay.delay_s * np.arange(n)
        self._advance_cell(float(times[0]))
        hit: int | None = None
        while True:
            snapshot = self._snapshot_cell() if limit is not None else None
            voltages, currents = self._measure(times)
            readings = voltages if self._sense_function == "VOLT" else currents
            if limit is None:
                break
            met = _limit_met(limit.limit_type, limit.limit_a, limit.limit_b, readings)
            if not met.any():
                break
            hit = int(np.argmax(met))
            if hit == len(times) - 1:
                break
            # Undo the hold past the reading that meets the limit and hold again up to it.
            self._restore_cell(snapshot)
            times = times[: hit + 1]
            hit = None
        self._store(voltages, currents, times, measure.buffer)
        run.last_reading[d + 1] = float(readings[-1])
        run.t, run.delay_end = float(times[-1]), None
        if hit is not None:
            run.counters[counter_at] = count + hit
            self._last_block = d + 2
            run.pc = limit.target
            return True
        count += len(times)
        run.counters[counter_at] = count
        self._last_block = counter_at
        run.pc = counter_at + 1 if count >= counter.count else d
        return True

    def _snapshot_cell(self) -> VirtualCell:
        cell = self.cell
        # The material, parameters and geometry are immutable: share them.
        memo = {id(cell.material): cell.material, id(cell.parameters): cell.parameters}
        memo[id(cell.geometry)] = cell.geometry
        return copy.deepcopy(cell, memo)

    def _restore_cell(self, snapshot: VirtualCell | None) -> None:
        assert snapshot is not None
        # Restore in place: the bench and the tests hold references to this cell object.
        self.cell.__dict__.clear()
        self.cell.__dict__.update(snapshot.__dict__)

    def _advance_cell(self, t: float) -> None:
        """Bring the cell to model time ``t`` at the present operating point."""
        if t > self.cell.time_s:
            current, _, _ = self._operating_point()
            self.cell.advance_to(t, current)

    def _previous_measure(self, number: int) -> int:
        for k in range(number - 1, 0, -1):
            if self._blocks[k].kind == "MEASURE":
                return k
        return 0

    def _apply_config(self, point: dict[str, object]) -> None:
        for name, value in point.items():
            setattr(self, name, value)

    def _finish(self, state: str) -> None:
        if self._run is not None:
            self._last_counters = dict(self._run.counters)
        self._run = None
        self._model_state = state

    def _fail(self, code: int, message: str) -> None:
        """Stop the model in the FAILED state with an error in the queue."""
        self._errors.push(code, message)
        self._finish("FAILED")

    def _store(
        self, voltages: np.ndarray, currents: np.ndarray, times: np.ndarray, buffer_name: str
    ) -> np.ndarray:
        buf = self._buffers[buffer_name]
        sense = self._sense_function
        readings = voltages if sense == "VOLT" else currents
        sources = currents if self._source_function == "CURR" else voltages
        if not self._output:
            sources = np.zeros_like(sources)
        unit = "Volt DC" if sense == "VOLT" else "Amp DC"
        sunit = "Amp DC" if self._source_function == "CURR" else "Volt DC"
        buf.add(readings.tolist(), sources.tolist(), times.tolist(), unit, sunit)
        return readings

    def _operating_point(self) -> tuple[float, float, bool]:
        """(current through the cell, noise-free voltage, whether the source is in its limit)."""
        cell = self.cell
        if not self._output:
            return 0.0, cell.voltage(0.0), False
        if self._source_function == "CURR":
            i_set = self._source_current
            v = cell.voltage(i_set)
            if abs(v) <= self._vlim:
                return i_set, v, False
            target = math.copysign(self._vlim, v)
            i = self._solve_current(target, 0.0, i_set)
            return i, target, True
        # Voltage source: find the current at which the cell sits at the set voltage.
        v_set = self._source_voltage
        lo, hi = -self._ilim, self._ilim
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

    def _single_reading(self, buffer_name: str) -> None:
        """A reading now (``:READ?``, ``:MEAS?``), stored in ``buffer_name``."""
        if self._running:
            raise SCPIError(-213)
        # _catch_up() has just brought the cell to the command's time: measure there, so that
        # the operating point solved for that state is the one measured.
        self._take_readings(np.array([self.cell.time_s]), buffer_name)

    def _buffer_name(self, params: list[str], index: int) -> str:
        if len(params) <= index:
            return "DEFBUFFER1"
        name = parse_string(params[index], required_quotes=True).upper()
        if name not in self._buffers:
            raise SCPIError(-224, "Illegal parameter value; buffer does not exist")
        return name

    def _trigger_state_reply(self) -> str:
        s = self._model_state
        return f"{s};{s};{self._last_block}"

    # --- the command set -------------------------------------------------------------------
    def _build_command_set(self) -> CommandSet:
        cs = CommandSet()
        add = cs.add

        def const(reply: str) -> Callable[[list[str]], str]:
            def get(params: list[str]) -> str:
                self._no_params(params)
                return reply

            return get

        def ignore(params: list[str]) -> None:
            return None

        # IEEE 488.2 common commands.
        add("*IDN", getter=const(f"{MANUFACTURER},{MODEL},{self.serial},{FIRMWARE}"))
        add("*RST", setter=self._cmd_rst)
        add("*CLS", setter=self._cmd_cls)
        add("*OPC", setter=self._cmd_opc, getter=const("1"))
        add("*WAI", setter=lambda p: self._no_params(p))
        add("*ESR", getter=self._cmd_esr)
        # Status byte: bit 2 (value 4) is "error available" on the 2450.
        add("*STB", getter=lambda p: "4" if len(self._errors) else "0")
        add("*TRG", setter=ignore)
        add("*TST", getter=const("0"))

        # System.
        add(":SYSTem:ERRor[:NEXT]", getter=self._cmd_err_next)
        add(":SYSTem:ERRor:COUNt", getter=lambda p: str(len(self._errors)))
        add(":SYSTem:ERRor:CLEar", setter=lambda p: self._errors.clear())
        add(":SYSTem:CLEar", setter=lambda p: self._errors.clear())
        add(":SYSTem:BEEPer[:IMMediate]", setter=ignore)
        add(":SYSTem:LFRequency", getter=const("60"))
        add(":SYSTem:VERSion", getter=const("1999.0"))
        add(":DISPlay:LIGHt:STATe", setter=ignore, getter=const("ON50"))
        add(":DISPlay:SCReen", setter=ignore)
        add(":ROUTe:TERMinals", setter=ignore, getter=const("FRON"))
        add(":FORMat[:DATA]", setter=self._cmd_format, getter=const("ASC"))
        add(":STATus:PRESet", setter=ignore)

        # Source.
        add(
            "[:SOURce]:FUNCtion[:MODE]",
            setter=self._set_source_function,
            getter=self._get_source_function,
        )
        add(
            "[:SOURce]:CURRent[:LEVel][:IMMediate][:AMPLitude]",
            setter=self._set_current,
            getter=lambda p: _fmt(self._source_current),
        )
        add(
            "[:SOURce]:CURRent:RANGe",
            setter=self._set_current_range,
            getter=lambda p: _fmt(self._current_range),
        )
        add(
            "[:SOURce]:CURRent:RANGe:AUTO",
            setter=self._set_current_range_auto,
            getter=lambda p: str(int(self._current_range_auto)),
        )
        add(
            "[:SOURce]:CURRent:VLIMit[:LEVel]",
            setter=self._set_vlim,
            getter=lambda p: _fmt(self._vlim),
        )
        add("[:SOURce]:CURRent:VLIMit[:LEVel]:TRIPped", getter=self._get_vlim_trip)
        add("[:SOURce]:CURRent:READ:BACK", setter=ignore, getter=const("1"))
        add("[:SOURce]:CURRent:DELay", setter=ignore, getter=const(_fmt(0.0)))
        add("[:SOURce]:CURRent:DELay:AUTO", setter=ignore, getter=const("1"))
        add(
            "[:SOURce]:VOLTage[:LEVel][:IMMediate][:AMPLitude]",
            setter=self._set_voltage,
            getter=lambda p: _fmt(self._source_voltage),
        )
        add(
            "[:SOURce]:VOLTage:RANGe",
            setter=self._set_voltage_range,
            getter=lambda p: _fmt(self._voltage_range),
        )
        add(
            "[:SOURce]:VOLTage:RANGe:AUTO",
            setter=self._set_voltage_range_auto,
            getter=lambda p: str(int(self._voltage_range_auto)),
        )
        add(
            "[:SOURce]:VOLTage:ILIMit[:LEVel]",
            setter=self._set_ilim,
            getter=lambda p: _fmt(self._ilim),
        )
        add("[:SOURce]:VOLTage:ILIMit[:LEVel]:TRIPped", getter=self._get_ilim_trip)
        add("[:SOURce]:VOLTage:READ:BACK", setter=ignore, getter=const("1"))

        # Sense.
        add(
            "[:SENSe]:FUNCtion[:ON]",
            setter=self._set_sense_function,
            getter=lambda p: f'"{self._sense_function}:DC"',
        )
        for func in ("VOLT", "CURR"):
            node = "VOLTage" if func == "VOLT" else "CURRent"
            add(
                f"[:SENSe]:{node}[:DC]:RANGe[:UPPer]",
                setter=self._make_set_sense_range(func),
                getter=self._make_get(lambda f=func: _fmt(self._sense_range[f])),
            )
            add(
                f"[:SENSe]:{node}[:DC]:RANGe:AUTO",
                setter=self._make_set_sense_auto(func),
                getter=self._make_get(lambda f=func: str(int(self._sense_auto[f]))),
            )
            add(
                f"[:SENSe]:{node}[:DC]:NPLCycles",
                setter=self._make_set_nplc(func),
                getter=self._make_get(lambda f=func: _fmt(self._nplc[f])),
            )
            add(f"[:SENSe]:{node}[:DC]:RSENse", setter=ignore, getter=const("0"))
            add(f"[:SENSe]:{node}[:DC]:AZERo[:STATe]", setter=ignore, getter=const("1"))
        add("[:SENSe]:COUNt", setter=ignore, getter=const("1"))

        # Output.
        add(":OUTPut[:STATe]", setter=self._set_output, getter=lambda p: str(int(self._output)))

        # Measurements.
        add(":READ", getter=self._cmd_read)
        add(":MEASure", getter=self._make_measure(None))
        add(":MEASure:VOLTage[:DC]", getter=self._make_measure("VOLT"))
        add(":MEASure:CURRent[:DC]", getter=self._make_measure("CURR"))

        # Reading buffers.
        add(":TRACe:MAKE", setter=self._cmd_trace_make)
        add(":TRACe:DELete", setter=self._cmd_trace_delete)
        add(":TRACe:CLEar", setter=self._cmd_trace_clear)
        add(":TRACe:POINts", setter=self._set_trace_points, getter=self._get_trace_points)
        add(":TRACe:ACTual", getter=self._get_trace_actual)
        add(":TRACe:ACTual:STARt", getter=self._get_trace_start)
        add(":TRACe:ACTual:END", getter=self._get_trace_actual)
        add(":TRACe:DATA", getter=self._get_trace_data)

        # Source configuration lists.
        add("[:SOURce]:CONFiguration:LIST:CREate", setter=self._cmd_conf_create)
        add("[:SOURce]:CONFiguration:LIST:STORe", setter=self._cmd_conf_store)
        add("[:SOURce]:CONFiguration:LIST:SIZE", getter=self._cmd_conf_size)
        add("[:SOURce]:CONFiguration:LIST:DELete", setter=self._cmd_conf_delete)
        add("[:SOURce]:CONFiguration:LIST:RECall", setter=self._cmd_conf_recall)

        # Trigger model.
        add(":TRIGger:BLOCk:BUFFer:CLEar", setter=self._blk_buffer_clear)
        add(":TRIGger:BLOCk:MEASure", setter=self._blk_measure)
        add(":TRIGger:BLOCk:DELay:CONStant", setter=self._blk_delay)
        add(":TRIGger:BLOCk:SOURce:STATe", setter=self._blk_source_state)
        add(":TRIGger:BLOCk:CONFig:RECall", setter=self._blk_config_recall)
        add(":TRIGger:BLOCk:CONFig:NEXT", setter=self._blk_config_next)
        add(":TRIGger:BLOCk:BRANch:COUNter", setter=self._blk_counter)
        add(":TRIGger:BLOCk:BRANch:COUNter:COUNt", getter=self._get_counter_count)
        add(":TRIGger:BLOCk:BRANch:COUNter:RESet", setter=self._blk_counter_reset)
        add(":TRIGger:BLOCk:BRANch:ALWays", setter=self._blk_always)
        add(":TRIGger:BLOCk:BRANch:LIMit:CONStant", setter=self._blk_limit)
        add(":TRIGger:BLOCk:NOP", setter=self._blk_nop)
        add(":TRIGger:BLOCk:LIST", getter=self._get_block_list)
        add(":TRIGger:LOAD", setter=self._cmd_trigger_load)
        add(":TRIGger:LOAD:LOOP:SIMPle", setter=self._cmd_trigger_load_simple)
        add(":TRIGger:STATe", getter=lambda p: self._trigger_state_reply())
        add(":INITiate[:IMMediate]", setter=self._cmd_init)
        add(":ABORt", setter=self._cmd_abort)
        return cs

    def _make_get(self, fn: Callable[[], str]) -> Callable[[list[str]], str]:
        def get(params: list[str]) -> str:
            self._no_params(params)
            return fn()

        return get

    @staticmethod
    def _no_params(params: list[str]) -> None:
        if params:
            raise SCPIError(-108)

    @staticmethod
    def _one_param(params: list[str]) -> str:
        if not params:
            raise SCPIError(-109)
        if len(params) > 1:
            raise SCPIError(-108)
        return params[0]

    # common
    def _cmd_rst(self, params: list[str]) -> None:
        self._no_params(params)
        errors = self._errors
        self._reset()
        self._errors = errors  # *RST does not clear the error queue; *CLS does

    def _cmd_cls(self, params: list[str]) -> None:
        self._no_params(params)
        self._errors.clear()
        self._opc = False

    def _cmd_opc(self, params: list[str]) -> None:
        self._no_params(params)
        self._opc = True

    def _cmd_esr(self, params: list[str]) -> str:
        self._no_params(params)
        value = 1 if self._opc else 0
        self._opc = False
        return str(value)

    def _cmd_err_next(self, params: list[str]) -> str:
        self._no_params(params)
        return ErrorQueue.format(self._errors.pop())

    def _cmd_format(self, params: list[str]) -> None:
        if parse_choice(self._one_param(params), ("ASCii", "REAL", "SREal")) != "ASC":
            raise SCPIError(-221, "Settings conflict; only ASCII data are emulated")

    # source
    def _set_source_function(self, params: list[str]) -> None:
        func = parse_choice(self._one_param(params), ("CURRent", "VOLTage"))
        if func != self._source_function and self._output:
            # Changing the source function switches the output off on the real instrument.
            self._output = False
        self._source_function = func

    def _get_source_function(self, params: list[str]) -> str:
        self._no_params(params)
        return self._source_function

    def _set_current(self, params: list[str]) -> None:
        value = parse_number(
            self._one_param(params), minimum=-MAX_CURRENT_A, maximum=MAX_CURRENT_A, default=0.0
        )
        if not self._current_range_auto and abs(value) > self._current_range * 1.05:
            raise SCPIError(-222)
        self._source_current = value
        if self._current_range_auto:
            self._current_range = _fit_range(value, _SOURCE_CURRENT_RANGES)

    def _set_current_range(self, params: list[str]) -> None:
        value = parse_number(
            self._one_param(params), minimum=-MAX_CURRENT_A, maximum=MAX_CURRENT_A, default=1e-6
        )
        self._current_range = _fit_range(value, _SOURCE_CURRENT_RANGES)
        self._current_range_auto = False

    def _set_current_range_auto(self, params: list[str]) -> None:
        self._current_range_auto = parse_bool(self._one_param(params))

    def _set_vlim(self, params: list[str]) -> None:
        self._vlim = parse_number(
            self._one_param(params), minimum=0.02, maximum=MAX_VOLTAGE_V, default=21.0
        )

    def _get_vlim_trip(self, params: list[str]) -> str:
        self._no_params(params)
        tripped = self._source_function == "CURR" and self._operating_point()[2]
        return "1" if tripped else "0"

    def _set_voltage(self, params: list[str]) -> None:
        value = parse_number(
            self._one_param(params), minimum=-MAX_VOLTAGE_V, maximum=MAX_VOLTAGE_V, default=0.0
        )
        self._source_voltage = value
        if self._voltage_range_auto:
            self._voltage_range = _fit_range(value, _SOURCE_VOLTAGE_RANGES)

    def _set_voltage_range(self, params: list[str]) -> None:
        value = parse_number(
            self._one_param(params), minimum=-MAX_VOLTAGE_V, maximum=MAX_VOLTAGE_V, default=0.02
        )
        self._voltage_range = _fit_range(value, _SOURCE_VOLTAGE_RANGES)
        self._voltage_range_auto = False

    def _set_voltage_range_auto(self, params: list[str]) -> None:
        self._voltage_range_auto = parse_bool(self._one_param(params))

    def _set_ilim(self, params: list[str]) -> None:
        self._ilim = parse_number(
            self._one_param(params), minimum=1e-9, maximum=MAX_CURRENT_A, default=105e-6
        )

    def _get_ilim_trip(self, params: list[str]) -> str:
        self._no_params(params)
        tripped = self._source_function == "VOLT" and self._operating_point()[2]
        return "1" if tripped else "0"

    # sense
    def _set_sense_function(self, params: list[str]) -> None:
        text = parse_string(self._one_param(params))
        func = parse_choice(text.split(":")[0], ("VOLTage", "CURRent", "RESistance"))
        if func == "RES":
            raise SCPIError(-221, "Settings conflict; resistance is not emulated")
        self._sense_function = func

    def _make_set_sense_range(self, func: str) -> Callable[[list[str]], None]:
        limit = MAX_VOLTAGE_V if func == "VOLT" else MAX_CURRENT_A

        def setter(params: list[str]) -> None:
            self._sense_range[func] = abs(
                parse_number(self._one_param(params), minimum=-limit, maximum=limit, default=limit)
            )
            self._sense_auto[func] = False

        return setter

    def _make_set_sense_auto(self, func: str) -> Callable[[list[str]], None]:
        def setter(params: list[str]) -> None:
            self._sense_auto[func] = parse_bool(self._one_param(params))

        return setter

    def _make_set_nplc(self, func: str) -> Callable[[list[str]], None]:
        def setter(params: list[str]) -> None:
            self._nplc[func] = parse_number(
                self._one_param(params), minimum=0.01, maximum=10.0, default=1.0
            )

        return setter

    # output
    def _set_output(self, params: list[str]) -> None:
        self._output = parse_bool(self._one_param(params))

    # measurements
    def _reading_reply(self, buffer_name: str, elements: list[str]) -> str:
        buf = self._buffers[buffer_name]
        n = len(buf)
        return self._format_rows(buf, n - 1, n - 1, elements)

    def _cmd_read(self, params: list[str]) -> str:
        buffer_name = self._buffer_name(params, 0)
        elements = self._elements(params[1:]) if len(params) > 1 else ["READ"]
        self._single_reading(buffer_name)
        return self._reading_reply(buffer_name, elements)

    def _make_measure(self, func: str | None) -> Callable[[list[str]], str]:
        def getter(params: list[str]) -> str:
            buffer_name = self._buffer_name(params, 0)
            elements = self._elements(params[1:]) if len(params) > 1 else ["READ"]
            if func is not None:  # :MEAS? alone measures the active function
                self._sense_function = func
            self._single_reading(buffer_name)
            return self._reading_reply(buffer_name, elements)

        return getter

    # buffers
    @staticmethod
    def _elements(params: list[str]) -> list[str]:
        if len(params) > 14:
            raise SCPIError(-108)
        return [parse_choice(p, _ELEMENTS) for p in params]

    def _format_rows(self, buf: _Buffer, first: int, last: int, elements: list[str]) -> str:
        origin = buf.first_time if buf.first_time is not None else 0.0
        out: list[str] = []
        for i in range(first, last + 1):
            t = buf.times[i]
            for e in elements:
                if e == "READ":
                    out.append(_fmt_reading(buf.readings[i]))
                elif e == "REL":
                    out.append(f"{t - origin:.9f}")
                elif e == "SOUR":
                    out.append(_fmt_reading(buf.sources[i]))
                elif e == "SEC":
                    out.append(str(_split_seconds(t)[0]))
                elif e == "FRAC":
                    out.append(f"{_split_seconds(t)[1] * 1e-9:.9f}")
                elif e == "TST":
                    out.append(_timestamp(t))
                elif e == "UNIT":
                    out.append(buf.units[i])
                elif e == "SOURUNIT":
                    out.append(buf.source_units[i])
        return ",".join(out)

    def _cmd_trace_make(self, params: list[str]) -> None:
        if len(params) < 2:
            raise SCPIError(-109)
        if len(params) > 3:
            raise SCPIError(-108)
        name = parse_string(params[0], required_quotes=True)
        key = name.upper()
        if key in self._buffers or not name or len(name) > 31:
            raise SCPIError(-224, "Illegal parameter value; buffer name exists or is invalid")
        size = parse_int(params[1], minimum=10, maximum=MAX_BUFFER_POINTS)
        self._buffers[key] = _Buffer(size)

    def _cmd_trace_delete(self, params: list[str]) -> None:
        name = self._buffer_name([self._one_param(params)], 0)
        if name in ("DEFBUFFER1", "DEFBUFFER2"):
            raise SCPIError(-224, "Illegal parameter value; default buffers cannot be deleted")
        if self._running and any(b.buffer.upper() == name for b in self._blocks.values()):
            raise SCPIError(-221, "Settings conflict; buffer in use by the trigger model")
        del self._buffers[name]

    def _cmd_trace_clear(self, params: list[str]) -> None:
        if len(params) > 1:
            raise SCPIError(-108)
        self._buffers[self._buffer_name(params, 0)].clear()

    def _set_trace_points(self, params: list[str]) -> None:
        if not params:
            raise SCPIError(-109)
        if len(params) > 2:
            raise SCPIError(-108)
        size = parse_int(params[0], minimum=10, maximum=MAX_BUFFER_POINTS)
        name = self._buffer_name(params, 1)
        buf = self._buffers[name]
        buf.capacity = size
        buf.clear()  # resizing a buffer clears it on the real instrument

    def _get_trace_points(self, params: list[str]) -> str:
        if len(params) > 1:
            raise SCPIError(-108)
        return str(self._buffers[self._buffer_name(params, 0)].capacity)

    def _get_trace_actual(self, params: list[str]) -> str:
        if len(params) > 1:
            raise SCPIError(-108)
        return str(len(self._buffers[self._buffer_name(params, 0)]))

    def _get_trace_start(self, params: list[str]) -> str:
        if len(params) > 1:
            raise SCPIError(-108)
        return "1" if len(self._buffers[self._buffer_name(params, 0)]) else "0"

    def _get_trace_data(self, params: list[str]) -> str:
        if len(params) < 2:
            raise SCPIError(-109)
        name = self._buffer_name(params, 2)
        buf = self._buffers[name]
        n = len(buf)
        if n == 0:
            raise SCPIError(-230, "Data corrupt or stale; the buffer is empty")
        start = parse_int(params[0], minimum=1, maximum=n)
        end = parse_int(params[1], minimum=1, maximum=n)
        if end < start:
            raise SCPIError(-222)
        elements = self._elements(params[3:]) if len(params) > 3 else ["READ"]
        return self._format_rows(buf, start - 1, end - 1, elements)

    # source configuration lists
    def _config_name(self, text: str, *, exists: bool = True) -> str:
        name = parse_string(text, required_quotes=True)
        if not name or len(name) > 31:
            raise SCPIError(-224, "Illegal parameter value; invalid configuration list name")
        if exists and name.upper() not in self._config_lists:
            raise SCPIError(CONFIG_LIST_MISSING, "Configuration list, error, does not exist")
        return name

    def _cmd_conf_create(self, params: list[str]) -> None:
        name = self._config_name(self._one_param(params), exists=False)
        if name.upper() in self._config_lists:
            raise SCPIError(-224, "Illegal parameter value; configuration list already exists")
        self._config_lists[name.upper()] = (name, [])

    def _cmd_conf_store(self, params: list[str]) -> None:
        if not params:
            raise SCPIError(-109)
        if len(params) > 2:
            raise SCPIError(-108)
        points = self._config_lists[self._config_name(params[0]).upper()][1]
        index = len(points) + 1
        if len(params) > 1:
            index = parse_int(params[1], minimum=1, maximum=len(points) + 1)
        if index > MAX_CONFIG_POINTS:
            raise SCPIError(-222, "Parameter data out of range; configuration list is full")
        # The source settings a 2450 source configuration list holds (output state included:
        # :OUTPut:STATe is saved in and affected by source configuration lists).
        point: dict[str, object] = {
            "_source_function": self._source_function,
            "_source_current": self._source_current,
            "_source_voltage": self._source_voltage,
            "_current_range": self._current_range,
            "_current_range_auto": self._current_range_auto,
            "_voltage_range": self._voltage_range,
            "_voltage_range_auto": self._voltage_range_auto,
            "_vlim": self._vlim,
            "_ilim": self._ilim,
            "_output": self._output,
        }
        if index > len(points):
            points.append(point)
        else:
            points[index - 1] = point

    def _cmd_conf_size(self, params: list[str]) -> str:
        return str(len(self._config_lists[self._config_name(self._one_param(params)).upper()][1]))

    def _cmd_conf_delete(self, params: list[str]) -> None:
        if not params:
            raise SCPIError(-109)
        if len(params) > 2:
            raise SCPIError(-108)
        key = self._config_name(params[0]).upper()
        if self._running and any(b.config.upper() == key for b in self._blocks.values()):
            raise SCPIError(
                -221, "Settings conflict; configuration list in use by the trigger model"
            )
        points = self._config_lists[key][1]
        if len(params) == 1:
            del self._config_lists[key]
            return
        index = parse_int(params[1], minimum=1, maximum=MAX_CONFIG_POINTS)
        if index > len(points):
            raise SCPIError(CONFIG_LIST_MISSING, "Configuration list, error, does not exist")
        del points[index - 1]

    def _cmd_conf_recall(self, params: list[str]) -> None:
        if not params:
            raise SCPIError(-109)
        if len(params) > 2:
            raise SCPIError(-108)
        points = self._config_lists[self._config_name(params[0]).upper()][1]
        index = parse_int(params[1], minimum=1, maximum=MAX_CONFIG_POINTS) if len(params) > 1 else 1
        if index > len(points):
            raise SCPIError(CONFIG_LIST_MISSING, "Configuration list, error, does not exist")
        self._apply_config(points[index - 1])

    # trigger model
    def _cmd_trigger_load(self, params: list[str]) -> None:
        if not params:
            raise SCPIError(-109)
        template = parse_string(params[0]).upper()
        if template == "EMPTY":
            if len(params) > 1:
                raise SCPIError(-108)
            self._abort_if_running()
            self._blocks = {}
            self._model_state = "EMPTY"
            self._last_block = 0
            return
        if template != "SIMPLELOOP":
            raise SCPIError(-224, "Illegal parameter value; only SimpleLoop and Empty emulated")
        self._load_simple(params[1:])

    def _cmd_trigger_load_simple(self, params: list[str]) -> None:
        self._load_simple(params)

    def _load_simple(self, params: list[str]) -> None:
        if not params:
            raise SCPIError(-109)
        if len(params) > 3:
            raise SCPIError(-108)
        count = parse_int(params[0], minimum=1, maximum=MAX_TRIGGER_COUNT)
        delay = (
            parse_number(params[1], minimum=0.0, maximum=MAX_DELAY_S) if len(params) > 1 else 0.0
        )
        name = self._buffer_name(params, 2)
        if self._running:
            raise SCPIError(-221, "Settings conflict; the trigger model is running")
        # The SimpleLoop template's blocks: clear the buffer, then delay and measure
        # ``count`` times.
        self._blocks = {
            1: _Block("BUFFER_CLEAR", buffer=name),
            2: _Block("DELAY_CONSTANT", delay_s=delay),
            3: _Block("MEASURE", buffer=name, count=1),
            4: _Block("BRANCH_COUNTER", count=count, target=2),
        }
        self._model_state = "BUILDING"
        self._last_block = 0

    def _define(self, params: list[str], minimum: int, maximum: int) -> int:
        """Check the parameter count of a block command; returns its block number."""
        if len(params) < minimum:
            raise SCPIError(-109)
        if len(params) > maximum:
            raise SCPIError(-108)
        if self._running:
            raise SCPIError(-221, "Settings conflict; the trigger model is running")
        return parse_int(params[0], minimum=1, maximum=MAX_BLOCKS)

    def _set_block(self, number: int, block: _Block) -> None:
        # Blocks are numbered in sequence: each one replaces a block or follows the last.
        if number > len(self._blocks) + 1:
            raise SCPIError(
                -222, f"Parameter data out of range; block {len(self._blocks) + 1} is next"
            )
        self._blocks[number] = block
        self._model_state = "BUILDING"

    @staticmethod
    def _block_number(text: str) -> int:
        return parse_int(text, minimum=1, maximum=MAX_BLOCKS)

    def _blk_buffer_clear(self, params: list[str]) -> None:
        number = self._define(params, 1, 2)
        self._set_block(number, _Block("BUFFER_CLEAR", buffer=self._buffer_name(params, 1)))

    def _blk_measure(self, params: list[str]) -> None:
        number = self._define(params, 1, 3)
        name = self._buffer_name(params, 1)
        count = parse_int(params[2], minimum=1, maximum=MAX_TRIGGER_COUNT) if len(params) > 2 else 1
        self._set_block(number, _Block("MEASURE", buffer=name, count=count))

    def _blk_delay(self, params: list[str]) -> None:
        number = self._define(params, 2, 2)
        delay = parse_number(params[1], minimum=0.0, maximum=MAX_DELAY_S)
        self._set_block(number, _Block("DELAY_CONSTANT", delay_s=delay))

    def _blk_source_state(self, params: list[str]) -> None:
        number = self._define(params, 2, 2)
        self._set_block(number, _Block("SOURCE_OUTPUT", state=parse_bool(params[1])))

    def _blk_config_recall(self, params: list[str]) -> None:
        number = self._define(params, 2, 3)
        name = self._config_name(params[1])
        index = parse_int(params[2], minimum=1, maximum=MAX_CONFIG_POINTS) if len(params) > 2 else 1
        self._set_block(number, _Block("CONFIG_RECALL", config=name, index=index))

    def _blk_config_next(self, params: list[str]) -> None:
        number = self._define(params, 2, 2)
        self._set_block(number, _Block("CONFIG_NEXT", config=self._config_name(params[1])))

    def _blk_counter(self, params: list[str]) -> None:
        number = self._define(params, 3, 3)
        target = parse_int(params[1], minimum=1, maximum=MAX_TRIGGER_COUNT)
        branch = self._block_number(params[2])
        self._set_block(number, _Block("BRANCH_COUNTER", count=target, target=branch))

    def _blk_counter_reset(self, params: list[str]) -> None:
        number = self._define(params, 2, 2)
        self._set_block(
            number, _Block("BRANCH_COUNTER_RESET", target=self._block_number(params[1]))
        )

    def _blk_always(self, params: list[str]) -> None:
        number = self._define(params, 2, 2)
        self._set_block(number, _Block("BRANCH_ALWAYS", target=self._block_number(params[1])))

    def _blk_limit(self, params: list[str]) -> None:
        number = self._define(params, 5, 6)
        kind = parse_choice(params[1], _LIMIT_TYPES)
        a = parse_number(params[2])
        b = parse_number(params[3])
        if a > b:
            a, b = b, a  # the lesser value is the lower limit
        branch = self._block_number(params[4])
        measure = parse_int(params[5], minimum=0, maximum=MAX_BLOCKS) if len(params) > 5 else 0
        block = _Block(
            "BRANCH_LIMIT_CONSTANT",
            limit_type=kind,
            limit_a=a,
            limit_b=b,
            target=branch,
            measure_block=measure,
        )
        self._set_block(number, block)

    def _blk_nop(self, params: list[str]) -> None:
        number = self._define(params, 1, 1)
        self._set_block(number, _Block("NOP"))

    def _get_counter_count(self, params: list[str]) -> str:
        number = self._block_number(self._one_param(params))
        block = self._blocks.get(number)
        if block is None or block.kind != "BRANCH_COUNTER":
            raise SCPIError(-224, f"Illegal parameter value; block {number} is not a counter")
        return str(self._counter_values.get(number, 0))

    @property
    def _counter_values(self) -> dict[int, int]:
        return self._run.counters if self._run is not None else self._last_counters

    def _get_block_list(self, params: list[str]) -> str:
        self._no_params(params)
        return ";".join(f"{n}) {_describe(self._blocks[n])}" for n in sorted(self._blocks))

    def _validate_model(self) -> None:
        """The checks the instrument makes when a trigger model is started."""
        blocks = self._blocks
        if not blocks:
            raise SCPIError(-221, "Settings conflict; the trigger model is empty")
        for number, block in blocks.items():
            if block.kind.startswith("BRANCH") and block.kind != "BRANCH_COUNTER_RESET":
                if block.target not in blocks:
                    raise SCPIError(
                        -221,
                        f"Settings conflict; block {number} branches to undefined block "
                        f"{block.target}",
                    )
            if block.kind == "BRANCH_COUNTER_RESET":
                target = blocks.get(block.target)
                if target is None or target.kind != "BRANCH_COUNTER":
                    raise SCPIError(
                        -221, f"Settings conflict; block {block.target} is not a counter block"
                    )
            if block.kind == "BRANCH_LIMIT_CONSTANT":
                source = block.measure_block or self._previous_measure(number)
                if source == 0 or source >= number or blocks[source].kind != "MEASURE":
                    raise SCPIError(
                        -221, f"Settings conflict; block {number} needs a preceding measure block"
                    )
            if block.buffer and block.buffer.upper() not in self._buffers:
                raise SCPIError(-224, "Illegal parameter value; buffer does not exist")
            if block.config and block.config.upper() not in self._config_lists:
                raise SCPIError(CONFIG_LIST_MISSING, "Configuration list, error, does not exist")

    def _abort_if_running(self) -> None:
        if self._running:
            self._last_counters = dict(self._counter_values)
            self._finish("ABORTED")

    def _cmd_init(self, params: list[str]) -> None:
        self._no_params(params)
        if self._running:
            raise SCPIError(-213)
        self._validate_model()
        # Counters (and configuration-list positions) start from zero at every start.
        self._run = _Run(pc=1, t=max(self.clock.now(), self.cell.time_s))
        self._model_state = "RUNNING"
        self._catch_up()

    def _cmd_abort(self, params: list[str]) -> None:
        self._no_params(params)
        self._abort_if_running()


def _describe(block: _Block) -> str:
    """One block as :TRIGger:BLOCk:LIST? shows it."""
    kind = block.kind
    if kind == "BUFFER_CLEAR":
        return f"{kind} BUFFER: {block.buffer.lower()}"
    if kind == "MEASURE":
        return f"{kind} BUFFER: {block.buffer.lower()} COUNT: {block.count}"
    if kind == "DELAY_CONSTANT":
        return f"{kind} DELAY: {block.delay_s:.9f}"
    if kind == "BRANCH_COUNTER":
        return f"{kind} VALUE: {block.count} BRANCH_BLOCK: {block.target}"
    if kind == "BRANCH_COUNTER_RESET":
        return f"{kind} COUNTER: {block.target}"
    if kind == "BRANCH_ALWAYS":
        return f"{kind} BRANCH_BLOCK: {block.target}"
    if kind == "BRANCH_LIMIT_CONSTANT":
        return (
            f"{kind} LIMIT_TYPE: {_LIMIT_NAMES[block.limit_type]} LIMIT_A: {_fmt(block.limit_a)} "
            f"LIMIT_B: {_fmt(block.limit_b)} BRANCH_BLOCK: {block.target} "
            f"MEASURE_BLOCK: {block.measure_block}"
        )
    if kind == "CONFIG_RECALL":
        return f"{kind} CONFIG_LIST: {block.config} INDEX: {block.index}"
    if kind == "CONFIG_NEXT":
        return f"{kind} CONFIG_LIST: {block.config}"
    if kind == "SOURCE_OUTPUT":
        return f"{kind} STATE: {'ON' if block.state else 'OFF'}"
    return kind


def _split_seconds(t: float) -> tuple[int, int]:
    """Whole seconds and nanoseconds of ``t`` (so that FRAC never prints as 1.000000000)."""
    seconds = math.floor(t)
    nanoseconds = round((t - seconds) * 1e9)
    if nanoseconds >= 1_000_000_000:
        seconds, nanoseconds = seconds + 1, nanoseconds - 1_000_000_000
    return seconds, nanoseconds


def _timestamp(t: float) -> str:
    """``TSTamp`` element: ``MM/DD/YYYY HH:MM:SS.fffffffff`` with simulated time as UTC."""
    seconds, nanoseconds = _split_seconds(t)
    return time.strftime("%m/%d/%Y %H:%M:%S", time.gmtime(seconds)) + f".{nanoseconds:09d}"
