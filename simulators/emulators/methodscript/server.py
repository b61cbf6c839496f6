"""A PalmSens EmStat4 HR that speaks MethodSCRIPT on a serial link, backed by a virtual cell.

The emulator is the far end of the wire (the wire itself is the shared line server,
:mod:`~insitu.simulators.emulators.line_server`). It serves one client at a time over either

* a pseudo-terminal (``transport="pty"``): :meth:`MethodScriptEmulator.start` returns the slave
  path (``/dev/pts/N``) that pyserial opens like any serial port, or
* a TCP server on 127.0.0.1 (``transport="tcp"``): it returns a ``socket://127.0.0.1:PORT``
  URL for pyserial's ``serial_for_url``.

Why the EmStat4 HR: it is the MethodSCRIPT instrument with a galvanostat (``meas_loop_cp``,
``meas_loop_geis``) and the widest window of the EmStat family (±6 V, current ranges
100 nA … 100 mA, EIS to 200 kHz), which covers the lab CCD cell (≤ 4 mA). The EmStat Pico has
no galvanostat.

Device commands (EmStat4 communication protocol): ``t`` firmware version (two lines,
``tes4_hr1400#<build date>`` and ``R*``), ``i`` serial number, ``v`` MethodSCRIPT version,
``e`` + script lines + an empty line (load and execute; reply ``e``, the script output, then an
empty line; a script the parser rejects gets ``e!XXXX: Line L, Col C``), ``l`` + script + empty
line (load only), ``r`` (run the loaded script), ``Z`` (abort: ``Z`` in the output, open loops
are closed, ``on_finished:`` runs; ``Z!0006`` when no script runs). Any other command gets
``<first char>!0003`` ("the command was not recognized") and the emulator keeps serving.

Nothing a client sends can exhaust the emulator: a line longer than :attr:`~MethodScriptEmulator.
max_line` is discarded and answered ``!0008`` (command exceeds maximum length), a script larger
than the script memory (:attr:`DeviceSpec.max_script_bytes`) is refused at its end with
``e!4005: Line L`` (its lines are not kept), literals beyond a float are ``!4003``, measurement
loops take their samples in bounded batches and refuse intervals under the instrument's
minimum (``!000D``), script output is flushed every few hundred lines, and every loop, empty
ones included, ends on ``Z``. A command that fails inside the emulator is answered ``!0001``.
"""

from __future__ import annotations

import logging
import threading

from insitu.instruments.methodscript.codec import (
    FirmwareInfo,
    format_error,
    format_firmware,
)

from ...cell.model import VirtualCell
from ...clock import SimClock
from ...faults import InstrumentFaults
from ..line_server import Connection, LineServer, Transport
from .interpreter import (
    EMSTAT4_HR,
    DeviceSpec,
    MeasuredPoints,
    ScriptError,
    ScriptRunner,
    parse_script,
)

__all__ = ["MethodScriptEmulator"]

log = logging.getLogger(__name__)

_JOIN_S = 5.0


class MethodScriptEmulator(LineServer):
    """Emulated EmStat4 HR serving MethodSCRIPT over a pty or TCP.

    The wire (transport, framing, :meth:`start`, :meth:`stop`, :attr:`resource`) is the
    :class:`~insitu.simulators.emulators.line_server.LineServer`'s; this class is the
    instrument: device commands, script loading, and the script thread that streams output.

    Parameters
    ----------
    cell : VirtualCell
        The cell connected to the instrument.
    clock : SimClock
        Shared simulation clock (the cell's time is the clock's time).
    transport : {"tcp", "pty"}
        ``"tcp"`` serves on 127.0.0.1 (``socket://`` URL); ``"pty"`` opens a pseudo-terminal.
    port : int
        TCP port (0 picks a free one); ignored for ``"pty"``.
    serial : str
        Serial number reported by ``i``.
    firmware : FirmwareInfo, optional
        What ``t`` reports; defaults to an EmStat4 HR, firmware 1.4.00.
    spec : DeviceSpec
        Ranges of the emulated instrument.
    faults : InstrumentFaults, optional
        The instrument's own faults, counted in points measured since the emulator was made:
        ``error_after=N`` -- the sample after the N-th fails with ``!000E: Line L``
        (:data:`~.interpreter.FAULT_ERROR_CODE`), the script is aborted and its
        ``on_finished:`` switches the cell off (once); ``overload_after=N`` -- every sample
        after the N-th carries the overload bit (status ``0x2``) in its measured values.

    Examples
    --------
    >>> with MethodScriptEmulator(VirtualCell("A-LPS"), SimClock(1e4)) as emu:  # doctest: +SKIP
    ...     ser = serial.serial_for_url(emu.resource, timeout=1)
    """

    name = "MethodSCRIPT emulator"
    terminator = b"\n"
    # A serial link has one client; a second TCP client waits until the first has gone.
    max_clients = 1
    tcp_resource = "socket://{host}:{port}"
    #: Longest line kept (an emulator bound: script lines are a few tens of characters).
    max_line = 4096

    def __init__(
        self,
        cell: VirtualCell,
        clock: SimClock,
        *,
        transport: Transport = "tcp",
        port: int = 0,
        serial: str = "ES4HR24A0042",
        firmware: FirmwareInfo | None = None,
        spec: DeviceSpec = EMSTAT4_HR,
        faults: InstrumentFaults | None = None,
    ) -> None:
        super().__init__(port=port, transport=transport)
        self.cell = cell
        self.clock = clock
        self.serial = serial
        #: Faults inside the instrument (its own error, readings in compliance/overload).
        self.faults = faults or InstrumentFaults()
        # The points the faults count, over every script since the emulator was made.
        self._points = MeasuredPoints()
        self.spec = spec
        self.firmware = firmware or FirmwareInfo(spec.device_code, "1.4.00", "Jan 15 2025 10:00:00")
        self.mscript_version = "01.08.00"
        #: guards the cell: the script thread and tests read it concurrently
        self.cell_lock = threading.Lock()
        self._state = {"cell_on": False, "mode": 2, "e": 0.0, "i": 0.0, "chan": 0}
        self._abort = threading.Event()
        # Cleared just before the final empty line goes out, so a client that sends its next
        # command as soon as it reads that line is never told a script is still running.
        self._busy = threading.Event()
        self._script_thread: threading.Thread | None = None
        self._loaded: tuple[list, list] | None = None
        # The script being received after "e" or "l" (None when not receiving), and which.
        self._receiving: list[str] | None = None
        self._receiving_cmd = ""
        # Its size so far, how many lines, and the line where it overflowed the script memory.
        self._receiving_bytes = 0
        self._receiving_lines = 0
        self._receiving_overflow: int | None = None
        #: pending script output, each piece one or more lines ending in "\n"
        self._out: list[str] = []
        self._out_lock = threading.Lock()
        self._garble = 0
        #: number of packages sent, for throughput measurements
        self.packages_sent = 0

    # --- public state --------------------------------------------------------------------
    @property
    def cell_is_on(self) -> bool:
        """Whether the instrument's cell switch is on."""
        return bool(self._state["cell_on"])

    @property
    def running(self) -> bool:
        """Whether a script is running."""
        return self._busy.is_set()

    @property
    def points_measured(self) -> int:
        """Samples the measurement loops took since the emulator was made (what
        :attr:`faults` count)."""
        return self._points.count

    def garble_next_package(self, count: int = 1) -> None:
        """Test hook: corrupt the next ``count`` data packages on the wire."""
        self._garble += count

    def disconnect(self) -> None:
        """Test hook: drop the link to the client, as if the cable were pulled."""
        self._abort.set()
        self.drop_clients()

    # --- lifecycle -----------------------------------------------------------------------
    def stop(self) -> None:
        """Stop serving, abort any script and release the transport."""
        self._abort.set()
        super().stop()
        if self._script_thread is not None:
            self._script_thread.join(timeout=_JOIN_S)
            self._script_thread = None

    def client_closed(self, conn: Connection) -> None:
        """The client went away: abort what it started, like a real instrument losing USB."""
        self._abort.set()
        if self._script_thread is not None:
            self._script_thread.join(timeout=_JOIN_S)
        self._receiving = None

    # --- device commands -----------------------------------------------------------------
    def line_received(self, conn: Connection, line: str) -> None:
        """Collect script lines after ``e``/``l``, else run a device command.

        A failure inside the emulator is answered ``!0001`` (unspecified error), so that the
        client is never left waiting for a reply.
        """
        try:
            self._line_received(conn, line)
        except Exception:
            log.exception("%s failed on %r", self.name, line[:80])
            self._receiving = None
            self._send(conn, format_error(0x0001))

    def line_too_long(self, conn: Connection) -> None:
        """A line over :attr:`max_line`: part of a script overflows the script memory, a
        command is answered ``!0008`` (command exceeds maximum length)."""
        if self._receiving is not None:
            self._receiving_lines += 1
            self._script_overflowed()
        else:
            self._send(conn, format_error(0x0008))

    def _line_received(self, conn: Connection, line: str) -> None:
        if self._receiving is not None:
            if line == "":
                self._end_of_script(conn)
            else:
                self._script_line(line)
            return
        if self.running:
            self._command_while_running(conn, line)
        elif line in ("e", "l"):
            self._receiving, self._receiving_cmd = [], line
            self._receiving_bytes = self._receiving_lines = 0
            self._receiving_overflow = None
        else:
            self._command(conn, line)

    def _script_line(self, line: str) -> None:
        assert self._receiving is not None
        self._receiving_lines += 1
        self._receiving_bytes += len(line) + 1
        if self._receiving_overflow is not None:
            return  # the script is refused already: its lines are counted, not kept
        if self._receiving_bytes > self.spec.max_script_bytes:
            self._script_overflowed()
        else:
            self._receiving.append(line)

    def _script_overflowed(self) -> None:
        """The script being received no longer fits the script memory: drop what was kept."""
        if self._receiving_overflow is None:
            self._receiving_overflow = self._receiving_lines
            self._receiving = []

    def _end_of_script(self, conn: Connection) -> None:
        lines, self._receiving = self._receiving or [], None
        if self._receiving_overflow is not None:
            error = format_error(0x4005, line=self._receiving_overflow, prefix=self._receiving_cmd)
            self._send(conn, error)
            return
        self._script_received(conn, self._receiving_cmd, lines)

    def _send(self, conn: Connection, *lines: str) -> None:
        self._send_text(conn, "".join(line + "\n" for line in lines))

    @staticmethod
    def _send_text(conn: Connection, text: str) -> None:
        """Write ``text`` (whole lines) to the client in one write."""
        if not conn.closed:
            conn.send(text.encode("ascii", errors="replace"))

    def _command(self, conn: Connection, line: str) -> None:
        if line == "":
            return  # an empty line is how clients flush a half-sent command
        if line == "t":
            self._send(conn, *format_firmware(self.firmware))
        elif line == "i":
            self._send(conn, "i" + self.serial)
        elif line == "v":
            self._send(conn, "v" + self.mscript_version)
        elif line == "r":
            if self._loaded is None:
                self._send(conn, format_error(0x000C, prefix="r"))
            else:
                self._send(conn, "r")
                self._start_script(conn, *self._loaded)
        elif line == "Z":
            self._send(conn, format_error(0x0006, prefix="Z"))
        else:
            self._send(conn, format_error(0x0003, prefix=line[0]))

    def _command_while_running(self, conn: Connection, line: str) -> None:
        if line == "Z":
            self._send(conn, "Z")
            self._abort.set()
        elif line:
            # Only abort is accepted while a script runs.
            self._send(conn, format_error(0x0006, prefix=line[0]))

    def _script_received(self, conn: Connection, cmd: str, lines: list[str]) -> None:
        try:
            program = parse_script(lines, self.spec.max_nesting)
        except ScriptError as exc:
            self._send(conn, format_error(exc.code, line=exc.line, column=exc.column, prefix=cmd))
            return
        self._send(conn, cmd)
        if cmd == "l":
            self._loaded = program
        else:
            self._start_script(conn, *program)

    def _start_script(self, conn: Connection, main: list, finished: list) -> None:
        self._abort.clear()
        self._busy.set()
        self._script_thread = threading.Thread(
            target=self._run_script,
            args=(conn, main, finished),
            name="methodscript-script",
            daemon=True,
        )
        self._script_thread.start()

    # --- script output -------------------------------------------------------------------
    def _emit(self, line: str) -> None:
        if line.startswith("P"):
            self.packages_sent += 1
        with self._out_lock:
            self._out.append(line + "\n")

    def _emit_block(self, text: str, count: int) -> None:
        """Queue ``count`` package lines (``text``, each line ending in ``\\n``) at once."""
        if self._garble > 0:
            text = "".join(self._maybe_garble(line) + "\n" for line in text.splitlines())
        self.packages_sent += count
        with self._out_lock:
            self._out.append(text)

    def _flush(self, conn: Connection) -> None:
        with self._out_lock:
            pieces, self._out = self._out, []
        if pieces:
            self._send_text(conn, "".join(pieces))

    def _maybe_garble(self, line: str) -> str:
        if self._garble > 0:
            self._garble -= 1
            return "P" + line[1:4] + "\x7f#?garbled"
        return line

    def _run_script(self, conn: Connection, main: list, finished: list) -> None:
        def flush() -> None:
            self._flush(conn)

        runner = ScriptRunner(
            self.cell,
            self.clock,
            self._emit,
            flush,
            self.cell_lock,
            self.spec,
            self._abort,
            self._state,
            garble=self._maybe_garble,
            emit_block=self._emit_block,
            faults=self.faults,
            points=self._points,
        )
        try:
            runner.run(main, finished)
        except ScriptError as exc:
            flush()
            self._send(conn, format_error(exc.code, line=exc.line))
        except Exception:  # keep serving whatever happens inside a script
            log.exception("MethodSCRIPT emulator: script crashed")
            flush()
            self._send(conn, format_error(0x0001))
        flush()
        self._busy.clear()
        self._send(conn, "")  # the empty line that ends every script's output
