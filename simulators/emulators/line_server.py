"""One line server for every emulator: lines in, replies out, on 127.0.0.1 or a pseudo-terminal.

Every instrument emulated here speaks a line protocol: ASCII commands ending in a line feed
(a carriage return before it is dropped), replies ending in the instrument's terminator. The
:class:`LineServer` owns everything about the wire, once:

* TCP on 127.0.0.1 only (an emulator never listens on a network interface; any other host is
  refused with :class:`LineServerError`), port 0 picks a free port, an accept thread and one
  thread per client, or
* a pseudo-terminal (``transport="pty"``) whose slave path a serial client opens like a port;
* line framing with a maximum line length: a longer line is discarded whole and reported once
  through :meth:`LineServer.line_too_long`;
* :meth:`~LineServer.drop_clients` (a pulled cable), :meth:`~LineServer.stop` (closes
  everything), the context manager and the :attr:`~LineServer.resource` string.

A subclass keeps only what is its own, in one of two ways:

* request/reply instruments (SCPI, the Lake Shore) override :meth:`LineServer.handle_line`;
  its reply, if any, goes back followed by :attr:`LineServer.terminator`;
* instruments that talk on their own (a MethodSCRIPT script streams packages while it runs)
  override :meth:`LineServer.line_received` and write to the :class:`Connection` whenever
  they have something to say, from any thread.

Example
-------
>>> class Echo(LineServer):
...     name = "echo server"
...     def handle_line(self, line):
...         return line.upper()
>>> with Echo() as echo:
...     echo.resource.startswith("TCPIP::127.0.0.1::")
True
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import threading
from typing import ClassVar, Literal, Self

__all__ = [
    "LOOPBACK",
    "POLL_S",
    "CommandLog",
    "Connection",
    "LineServer",
    "LineServerError",
    "Transport",
]

log = logging.getLogger(__name__)

#: The only address an emulator listens on.
LOOPBACK = "127.0.0.1"
#: How long a blocked read or write waits before it looks at stop() and drop_clients() again.
POLL_S = 0.05
#: How long stop() waits for each client thread.
_JOIN_S = 5.0

Transport = Literal["tcp", "pty"]


class LineServerError(ValueError):
    """A line server cannot be set up as asked (a non-loopback host, an unknown transport, a
    port out of range); the message says what to pass instead."""


class CommandLog(list[str]):
    """The lines an emulator received, for tests: a list that keeps only the latest ones.

    A test hook must not be a way to fill the emulator's memory from the wire, so the log keeps
    the last ``max_lines`` lines, each cut to ``max_chars`` characters (a cut line ends in
    ``"..."``). It is a ``list``: tests compare it, count in it and slice it as before.

    Parameters
    ----------
    max_lines : int
        Lines kept; older ones are dropped first.
    max_chars : int
        Characters kept of each line.
    """

    def __init__(self, max_lines: int = 10_000, max_chars: int = 1_000) -> None:
        super().__init__()
        self.max_lines = max_lines
        self.max_chars = max_chars

    def append(self, line: str) -> None:
        """Log ``line`` (cut to :attr:`max_chars`), dropping the oldest beyond :attr:`max_lines`."""
        if len(line) > self.max_chars:
            line = line[: self.max_chars - 3] + "..."
        super().append(line)
        if len(self) > self.max_lines:
            del self[: len(self) - self.max_lines]


class Connection:
    """One client's byte pipe: a connected TCP socket or the master side of a pseudo-terminal.

    Reads and writes wait at most :data:`POLL_S` at a time, so that :meth:`LineServer.stop`
    and :meth:`hang_up` take effect promptly even while a client sends nothing or reads
    nothing. :meth:`send` may be called from any thread (writes are serialised); only the
    thread serving the connection closes its descriptor, so that no other thread can be left
    reading a descriptor number the system has already given to someone else.

    Parameters
    ----------
    pipe : socket.socket or int
        A connected socket, or the file descriptor of a pty master.
    stopping : threading.Event
        The server's stop flag: a write in progress gives up when it is set.
    """

    def __init__(self, pipe: socket.socket | int, stopping: threading.Event) -> None:
        self._sock: socket.socket | None
        if isinstance(pipe, socket.socket):
            self._sock, self._fd = pipe, pipe.fileno()
            # A timeout (not a non-blocking socket): CPython then waits with poll(), which,
            # unlike select(), has no limit on descriptor numbers.
            pipe.settimeout(POLL_S)
        else:
            self._sock, self._fd = None, pipe
            os.set_blocking(pipe, False)
        self._stopping = stopping
        self._write_lock = threading.Lock()
        self._closed = False

    @property
    def transport(self) -> Transport:
        """``"tcp"`` or ``"pty"``."""
        return "tcp" if self._sock is not None else "pty"

    @property
    def closed(self) -> bool:
        """Whether the connection was hung up, broke, or was closed."""
        return self._closed

    def receive(self) -> bytes | None:
        """Bytes the client sent, waiting at most :data:`POLL_S`.

        Returns
        -------
        bytes or None
            ``b""`` when nothing came in time, ``None`` when the other end has gone (or the
            connection was hung up).
        """
        try:
            if self._sock is not None:
                data = self._sock.recv(65536)
            else:
                ready, _, _ = select.select([self._fd], [], [], POLL_S)
                if not ready:
                    return b""
                data = os.read(self._fd, 65536)
        except (TimeoutError, BlockingIOError, InterruptedError):
            return b""
        except (OSError, ValueError):
            return None  # EIO on a pty nobody holds, ECONNRESET, or a descriptor gone
        return data if data else None

    def send(self, data: bytes) -> bool:
        """Write all of ``data``, waiting while the client does not read.

        Returns
        -------
        bool
            True when everything went out; False when the link broke (it is then marked
            closed), was hung up, or the server is stopping.
        """
        view = memoryview(data)
        with self._write_lock:
            while view and not self._closed and not self._stopping.is_set():
                try:
                    if self._sock is not None:
                        n = self._sock.send(view)
                    else:
                        n = os.write(self._fd, view)
                    view = view[n:]
                except (TimeoutError, InterruptedError):
                    continue
                except BlockingIOError:
                    with contextlib.suppress(OSError, ValueError):
                        select.select([], [self._fd], [], POLL_S)
                except OSError:
                    self._closed = True  # the client went away mid-reply
                    return False
        return not view

    def hang_up(self) -> None:
        """End the connection from any thread, as a pulled cable; the serving thread closes it.

        A socket is shut down at once (the client reads the end immediately); a pty master is
        closed by its thread within :data:`POLL_S`.
        """
        self._closed = True
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Release the descriptor (the serving thread calls this when it is done)."""
        self._closed = True
        with contextlib.suppress(OSError):
            if self._sock is not None:
                self._sock.close()
            else:
                os.close(self._fd)


class LineServer:
    """A line-protocol server on 127.0.0.1 (TCP) or a pseudo-terminal; subclass it.

    Parameters
    ----------
    host : str
        Only ``"127.0.0.1"`` (or ``"localhost"``): an emulator never listens on a network
        interface.
    port : int
        TCP port; 0 picks a free one (see :attr:`port` after :meth:`start`). Ignored for a pty.
    transport : {"tcp", "pty"}
        ``"tcp"``: a server on 127.0.0.1 with one thread per client; ``"pty"``: one
        pseudo-terminal whose slave path is the :attr:`resource`.

    Raises
    ------
    LineServerError
        For any other host or transport, or a port out of range.

    Notes
    -----
    Class attributes say what is the instrument's own: :attr:`name`, :attr:`terminator`,
    :attr:`max_line`, :attr:`max_clients` and :attr:`tcp_resource`.
    """

    #: Who serves: for error messages, logs and thread names.
    name: ClassVar[str] = "line server"
    #: What follows each reply of :meth:`handle_line`.
    terminator: ClassVar[bytes] = b"\n"
    #: Longest line in bytes (without its line feed); a longer one is discarded whole.
    max_line: ClassVar[int] = 1 << 20
    #: Clients served at once (None: any number); others wait in the listen backlog.
    max_clients: ClassVar[int | None] = None
    #: The resource string of a TCP server, from ``host`` and ``port``.
    tcp_resource: ClassVar[str] = "TCPIP::{host}::{port}::SOCKET"

    def __init__(
        self, *, host: str = LOOPBACK, port: int = 0, transport: Transport = "tcp"
    ) -> None:
        if host not in (LOOPBACK, "localhost"):
            raise LineServerError(
                f"the {self.name} listens on {LOOPBACK} only, got host={host!r}; "
                "leave host at its default"
            )
        if transport not in ("tcp", "pty"):
            raise LineServerError(f"transport must be 'tcp' or 'pty', got {transport!r}")
        if not 0 <= int(port) <= 65535:
            raise LineServerError(f"port must be in 0..65535 (0 picks a free one), got {port!r}")
        self.transport: Transport = transport
        self._requested_port = int(port)
        #: The TCP port listened on, once started (0 before, and for a pty).
        self.port: int = 0
        self._pty_path: str | None = None
        self._pty_slave: int | None = None
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._clients: dict[Connection, threading.Thread] = {}
        # Guards _clients; notified when a client leaves, so that a server with max_clients
        # accepts the next one at once.
        self._clients_changed = threading.Condition()
        self._started = False
        #: Set by :meth:`stop`: subclasses' waits poll it so that stop() is never held up.
        self._stopping = threading.Event()

    # --- what a subclass provides -----------------------------------------------------------
    def handle_line(self, line: str) -> str | None:
        """Execute one line (without its terminator); return the reply or ``None``.

        Request/reply instruments override this; it runs in the client's thread (several
        clients' threads may run it at once).
        """
        raise NotImplementedError(f"{type(self).__name__} must override handle_line")

    def line_received(self, conn: Connection, line: str) -> None:
        """Act on one line from ``conn``; the default answers with :meth:`handle_line`.

        Override this instead of :meth:`handle_line` to talk back on your own (several
        replies, later replies, replies from another thread) with ``conn.send``.
        """
        reply = self.handle_line(line)
        if reply is not None:
            conn.send(reply.encode("ascii", errors="replace") + self.terminator)

    def line_too_long(self, conn: Connection) -> None:
        """A line longer than :attr:`max_line` came in and was discarded (override to report
        it as the instrument does, e.g. with an error in its queue)."""
        log.warning("%s: discarded a line longer than %d bytes", self.name, self.max_line)

    def client_closed(self, conn: Connection) -> None:
        """``conn`` has ended (client gone, dropped, or server stopping); called in its
        thread before the descriptor is closed. Override to abort what the client started."""

    # --- life cycle -------------------------------------------------------------------------
    @property
    def resource(self) -> str:
        """How a client reaches the server: a VISA/pyserial string for TCP, the pty's path.

        Raises
        ------
        RuntimeError
            Before the first :meth:`start`.
        """
        if self.transport == "pty":
            if self._pty_path is None:
                raise RuntimeError(f"the {self.name} is not running; call start() first")
            return self._pty_path
        if not self.port:
            raise RuntimeError(f"the {self.name} is not running; call start() first")
        return self.tcp_resource.format(host=LOOPBACK, port=self.port)

    @property
    def client_count(self) -> int:
        """How many clients are connected now (a pty counts as one while it is open)."""
        with self._clients_changed:
            return len(self._clients)

    def start(self) -> str:
        """Start serving (a no-op when serving); returns :attr:`resource`."""
        if self._started:
            return self.resource
        self._stopping.clear()
        if self.transport == "pty":
            self._open_pty()
        else:
            self._listen()
        self._started = True
        log.debug("%s serving on %s", self.name, self.resource)
        return self.resource

    def stop(self) -> None:
        """Stop serving and close every connection and the listener (idempotent).

        The instrument's state is kept: a later :meth:`start` serves it again.
        """
        self._stopping.set()
        if self._accept_thread is not None:
            self._accept_thread.join(timeout=_JOIN_S)
            self._accept_thread = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self.drop_clients()
        with self._clients_changed:
            threads = list(self._clients.values())
        for thread in threads:
            thread.join(timeout=_JOIN_S)
        self._started = False

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def drop_clients(self) -> None:
        """End every client connection now, as if the cable were pulled (test hook).

        A TCP server keeps listening: a client may reconnect. A pty is gone for good (its
        slave side is closed, so the client's reads fail) until the server is restarted.
        """
        with self._clients_changed:
            conns = list(self._clients)
        for conn in conns:
            conn.hang_up()
        if self._pty_slave is not None:
            with contextlib.suppress(OSError):
                os.close(self._pty_slave)
            self._pty_slave = None

    # --- transports -------------------------------------------------------------------------
    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((LOOPBACK, self._requested_port))
        except OSError as exc:
            listener.close()
            raise OSError(
                exc.errno,
                f"the {self.name} cannot listen on {LOOPBACK}:{self._requested_port} "
                f"({exc.strerror}); pick another port, or 0 for a free one",
            ) from exc
        listener.listen(4)
        listener.settimeout(POLL_S)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._accept_thread = threading.Thread(
            target=self._accept_loop,
            args=(listener,),
            name=f"{self.name} :{self.port}",
            daemon=True,
        )
        self._accept_thread.start()

    def _open_pty(self) -> None:
        import tty  # POSIX only: imported here so that TCP servers work everywhere

        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line editing: bytes pass through unchanged
        # Keeping a slave descriptor open keeps the pty alive while no client has it open
        # (otherwise reads on the master fail with EIO between two clients).
        self._pty_slave = slave
        self._pty_path = os.ttyname(slave)
        self._serve_in_thread(Connection(master, self._stopping))

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stopping.is_set():
            if self.max_clients is not None:
                with self._clients_changed:
                    # Leave further clients in the backlog while the instrument is taken.
                    if not self._clients_changed.wait_for(self._may_accept, timeout=POLL_S):
                        continue
                if self._stopping.is_set():
                    break
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._serve_in_thread(Connection(sock, self._stopping))

    def _may_accept(self) -> bool:
        # Called with _clients_changed held.
        limit = self.max_clients
        return limit is None or len(self._clients) < limit or self._stopping.is_set()

    def _serve_in_thread(self, conn: Connection) -> None:
        thread = threading.Thread(
            target=self._serve, args=(conn,), name=f"{self.name} client", daemon=True
        )
        with self._clients_changed:
            self._clients[conn] = thread
        thread.start()

    # --- framing ----------------------------------------------------------------------------
    def _serve(self, conn: Connection) -> None:
        pending = bytearray()
        skipping = False  # inside a line too long to keep: drop bytes up to its line feed
        try:
            while not self._stopping.is_set() and not conn.closed:
                data = conn.receive()
                if data is None:
                    if conn.transport == "pty" and not conn.closed:
                        # EIO: no slave side is open just now; a pty outlives its clients.
                        self._stopping.wait(POLL_S)
                        continue
                    break
                if not data:
                    continue
                pending += data
                start = 0
                while (end := pending.find(b"\n", start)) >= 0:
                    if skipping:
                        skipping = False
                    elif end - start > self.max_line:
                        self.line_too_long(conn)
                    else:
                        line = pending[start:end].decode("ascii", errors="replace")
                        self._dispatch(conn, line.rstrip("\r"))
                    start = end + 1
                del pending[:start]
                if len(pending) > self.max_line:
                    if not skipping:
                        self.line_too_long(conn)
                        skipping = True
                    pending.clear()
        finally:
            try:
                self.client_closed(conn)
            except Exception:  # the connection must be released whatever the hook does
                log.exception("%s: client_closed failed", self.name)
            conn.close()
            with self._clients_changed:
                self._clients.pop(conn, None)
                self._clients_changed.notify_all()

    def _dispatch(self, conn: Connection, line: str) -> None:
        try:
            self.line_received(conn, line)
        except Exception:  # never let an instrument bug kill the client's thread
            log.exception("%s failed on %r", self.name, line)
