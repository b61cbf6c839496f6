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

This module is the server; the instrument behind it is cut into modules with one job each:

* :mod:`~insitu.simulators.emulators.keithley2450.commands` and
  :mod:`~insitu.simulators.emulators.keithley2450.trigger_commands`: the emulated commands of the
  Reference Manual (2450-901-01), as a table of patterns and handlers;
* :mod:`~insitu.simulators.emulators.keithley2450.instrument`: the instrument model the handlers
  act on,
  kept in step with the clock;
* :mod:`~insitu.simulators.emulators.keithley2450.state`: settings, reading buffers, configuration
  lists;
* :mod:`~insitu.simulators.emulators.keithley2450.source`: the source physics on the cell
  (compliance);
* :mod:`~insitu.simulators.emulators.keithley2450.trigger`: trigger-model blocks and their
  execution in
  exact simulated time.

The model runs lazily: before each command the emulator executes everything due by
``clock.now()``, then brings the cell to ``clock.now()``.

Test hooks
----------
``commands`` (every line received, in order), ``responding`` (set False to make the
instrument swallow commands silently, as a hung instrument), :meth:`drop_clients` (close every
client connection, as a pulled cable), and read-only views of the state (``output_on``,
``source_current_A``, ``voltage_limit_V``, ``trigger_state``).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time

from ...cell.model import VirtualCell
from ...clock import SimClock
from ..scpi import SCPIError, parse_command, split_message
from .commands import build_command_set
from .instrument import Keithley2450Instrument

__all__ = ["Keithley2450Emulator"]

log = logging.getLogger(__name__)

_MAX_LINE = 1 << 20


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
    >>> from insitu.simulators.cell.model import VirtualCell
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
        self._instrument = Keithley2450Instrument(cell, clock, serial)
        self._commands = build_command_set(self._instrument)

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
                    self._push_error(-363)
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

    def _wait_for_trigger_model(self) -> None:
        # *WAI / *OPC? block until the running trigger model has finished. Sleep without the
        # lock so that other clients (and :ABOR on another socket) proceed.
        while not self._stop.is_set():
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
