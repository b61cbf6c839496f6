"""A PalmSens EmStat4 HR that speaks MethodSCRIPT on a serial link, backed by a virtual cell.

The emulator is the far end of the wire. It serves one client at a time over either

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
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import threading
import tty
from typing import Literal

from insitu.instruments.methodscript.codec import (
    FirmwareInfo,
    format_error,
    format_firmware,
)

from ...cell.model import VirtualCell
from ...clock import SimClock
from .interpreter import (
    EMSTAT4_HR,
    DeviceSpec,
    ScriptError,
    ScriptRunner,
    parse_script,
)

__all__ = ["MethodScriptEmulator"]

log = logging.getLogger(__name__)

_POLL_S = 0.05


class _Link:
    """One byte pipe to the client: a pty master or a connected socket."""

    def __init__(self, fd_or_sock: int | socket.socket) -> None:
        self._sock = fd_or_sock if isinstance(fd_or_sock, socket.socket) else None
        self._fd = fd_or_sock.fileno() if self._sock else int(fd_or_sock)  # type: ignore[union-attr]
        os.set_blocking(self._fd, False)
        self.closed = False

    def fileno(self) -> int:
        return self._fd

    def read(self) -> bytes | None:
        """Bytes available now; ``b""`` if none, ``None`` when the other end has gone."""
        try:
            data = self._sock.recv(65536) if self._sock else os.read(self._fd, 65536)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError:
            return None  # EIO on a pty whose client closed, ECONNRESET on a socket
        return data if data else None

    def write(self, data: bytes, stop: threading.Event) -> bool:
        """Write all of ``data``; gives up (``False``) if the link breaks or ``stop`` is set."""
        view = memoryview(data)
        while view and not stop.is_set() and not self.closed:
            try:
                n = self._sock.send(view) if self._sock else os.write(self._fd, view)
                view = view[n:]
            except (BlockingIOError, InterruptedError):
                # The client is not reading; wait for room without blocking stop().
                with contextlib.suppress(OSError, ValueError):
                    select.select([], [self._fd], [], _POLL_S)
            except OSError:
                return False
        return not view

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            if self._sock:
                self._sock.close()
            else:
                os.close(self._fd)


class MethodScriptEmulator:
    """Emulated EmStat4 HR serving MethodSCRIPT over a pty or TCP.

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

    Examples
    --------
    >>> with MethodScriptEmulator(VirtualCell("A-LPS"), SimClock(1e4)) as emu:  # doctest: +SKIP
    ...     ser = serial.serial_for_url(emu.resource, timeout=1)
    """

    def __init__(
        self,
        cell: VirtualCell,
        clock: SimClock,
        *,
        transport: Literal["tcp", "pty"] = "tcp",
        port: int = 0,
        serial: str = "ES4HR24A0042",
        firmware: FirmwareInfo | None = None,
        spec: DeviceSpec = EMSTAT4_HR,
    ) -> None:
        if transport not in ("tcp", "pty"):
            raise ValueError(f"transport must be 'tcp' or 'pty', got {transport!r}")
        self.cell = cell
        self.clock = clock
        self.transport = transport
        self.port = port
        self.serial = serial
        self.spec = spec
        self.firmware = firmware or FirmwareInfo(spec.device_code, "1.4.00", "Jan 15 2025 10:00:00")
        self.mscript_version = "01.08.00"
        self.resource = ""
        #: guards the cell: the script thread and tests read it concurrently
        self.cell_lock = threading.Lock()
        self._state = {"cell_on": False, "mode": 2, "e": 0.0, "i": 0.0, "chan": 0}
        self._stop = threading.Event()
        self._abort = threading.Event()
        # Cleared just before the final empty line goes out, so a client that sends its next
        # command as soon as it reads that line is never told a script is still running.
        self._busy = threading.Event()
        self._write_lock = threading.Lock()
        self._link: _Link | None = None
        self._server: socket.socket | None = None
        self._pty_slave: int | None = None
        self._thread: threading.Thread | None = None
        self._script_thread: threading.Thread | None = None
        self._loaded: tuple[list, list] | None = None
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

    def garble_next_package(self, count: int = 1) -> None:
        """Test hook: corrupt the next ``count`` data packages on the wire."""
        self._garble += count

    def disconnect(self) -> None:
        """Test hook: drop the link to the client, as if the cable were pulled."""
        self._abort.set()
        link = self._link
        if link is not None:
            link.close()
        if self.transport == "pty" and self._pty_slave is not None:
            # Closing our slave copy too makes the client's reads fail (EIO), like unplugging.
            with contextlib.suppress(OSError):
                os.close(self._pty_slave)
            self._pty_slave = None

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> str:
        """Start serving; returns the resource (pty path or ``socket://`` URL)."""
        if self._thread is not None:
            return self.resource
        self._stop.clear()
        if self.transport == "pty":
            master, slave = os.openpty()
            tty.setraw(slave)  # no echo, no line editing: bytes pass through unchanged
            self._pty_slave = slave
            self._link = _Link(master)
            self.resource = os.ttyname(slave)
            target = self._serve_pty
        else:
            server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind(("127.0.0.1", self.port))  # never on an external interface
            server.listen(1)
            server.settimeout(_POLL_S)
            self._server = server
            self.port = server.getsockname()[1]
            self.resource = f"socket://127.0.0.1:{self.port}"
            target = self._serve_tcp
        self._thread = threading.Thread(target=target, name="methodscript-emulator", daemon=True)
        self._thread.start()
        log.info("MethodSCRIPT emulator (%s) serving on %s", self.spec.model, self.resource)
        return self.resource

    def stop(self) -> None:
        """Stop serving, abort any script and release the transport."""
        self._stop.set()
        self._abort.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._script_thread is not None:
            self._script_thread.join(timeout=5)
            self._script_thread = None
        if self._link is not None:
            self._link.close()
            self._link = None
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._pty_slave is not None:
            with contextlib.suppress(OSError):
                os.close(self._pty_slave)
            self._pty_slave = None

    def __enter__(self) -> MethodScriptEmulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- serving -------------------------------------------------------------------------
    def _serve_pty(self) -> None:
        link = self._link
        assert link is not None
        self._serve(link)

    def _serve_tcp(self) -> None:
        assert self._server is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._link = _Link(conn)
            self._serve(self._link)
            # The client went away: abort what it started, like a real instrument losing USB.
            self._abort.set()
            if self._script_thread is not None:
                self._script_thread.join(timeout=5)
            self._link.close()
            self._link = None

    def _serve(self, link: _Link) -> None:
        buffer = b""
        script: list[str] | None = None
        script_cmd = ""
        while not self._stop.is_set() and not link.closed:
            try:
                ready, _, _ = select.select([link], [], [], _POLL_S)
            except (OSError, ValueError):
                return
            if not ready:
                continue
            data = link.read()
            if data is None:
                if self.transport == "pty":
                    continue  # no client has the slave open right now; keep listening
                return
            buffer += data
            while b"\n" in buffer:
                raw, buffer = buffer.split(b"\n", 1)
                line = raw.decode("ascii", errors="replace").rstrip("\r")
                if script is not None:
                    if line == "":
                        self._script_received(script_cmd, script)
                        script = None
                    else:
                        script.append(line)
                    continue
                if self.running:
                    self._command_while_running(line)
                    continue
                if line in ("e", "l"):
                    script, script_cmd = [], line
                else:
                    self._command(line)

    def _send(self, *lines: str) -> None:
        self._send_text("".join(line + "\n" for line in lines))

    def _send_text(self, text: str) -> None:
        """Write ``text`` (whole lines) to the client in one write."""
        link = self._link
        if link is None or link.closed:
            return
        data = text.encode("ascii", errors="replace")
        with self._write_lock:
            if not link.write(data, self._stop):
                link.closed = True

    def _command(self, line: str) -> None:
        if line == "":
            return  # an empty line is how clients flush a half-sent command
        if line == "t":
            self._send(*format_firmware(self.firmware))
        elif line == "i":
            self._send("i" + self.serial)
        elif line == "v":
            self._send("v" + self.mscript_version)
        elif line == "r":
            if self._loaded is None:
                self._send(format_error(0x000C, prefix="r"))
            else:
                self._send("r")
                self._start_script(*self._loaded)
        elif line == "Z":
            self._send(format_error(0x0006, prefix="Z"))
        else:
            self._send(format_error(0x0003, prefix=line[0]))

    def _command_while_running(self, line: str) -> None:
        if line == "Z":
            self._send("Z")
            self._abort.set()
        elif line:
            # Only abort is accepted while a script runs.
            self._send(format_error(0x0006, prefix=line[0]))

    def _script_received(self, cmd: str, lines: list[str]) -> None:
        try:
            program = parse_script(lines)
        except ScriptError as exc:
            self._send(format_error(exc.code, line=exc.line, column=exc.column, prefix=cmd))
            return
        self._send(cmd)
        if cmd == "l":
            self._loaded = program
        else:
            self._start_script(*program)

    def _start_script(self, main: list, finished: list) -> None:
        self._abort.clear()
        self._busy.set()
        self._script_thread = threading.Thread(
            target=self._run_script, args=(main, finished), name="methodscript-script", daemon=True
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

    def _flush(self) -> None:
        with self._out_lock:
            pieces, self._out = self._out, []
        if pieces:
            self._send_text("".join(pieces))

    def _maybe_garble(self, line: str) -> str:
        if self._garble > 0:
            self._garble -= 1
            return "P" + line[1:4] + "\x7f#?garbled"
        return line

    def _run_script(self, main: list, finished: list) -> None:
        runner = ScriptRunner(
            self.cell,
            self.clock,
            self._emit,
            self._flush,
            self.cell_lock,
            self.spec,
            self._abort,
            self._state,
            garble=self._maybe_garble,
            emit_block=self._emit_block,
        )
        try:
            runner.run(main, finished)
        except ScriptError as exc:
            self._flush()
            self._send(format_error(exc.code, line=exc.line))
        except Exception:  # keep serving whatever happens inside a script
            log.exception("MethodSCRIPT emulator: script crashed")
            self._flush()
            self._send(format_error(0x0001))
        self._flush()
        self._busy.clear()
        self._send("")  # the empty line that ends every script's output
