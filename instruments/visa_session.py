"""One line-based VISA connection to an instrument, with errors mapped to :mod:`.errors`.

:class:`~insitu.instruments.base.Instrument`, the base of the drivers that talk to their
instrument over pyvisa (the Keithley 2450, the Lake Shore 336), owns one. It opens the
resource (pyvisa-py by default), works around pyvisa-py's quirks with raw TCP sockets, sends
and reads lines under one lock, and turns every pyvisa or socket failure into
:class:`~insitu.instruments.errors.InstrumentTimeoutError` or
:class:`~insitu.instruments.errors.InstrumentConnectionError` naming the instrument and the
last command. After a query times out, the next exchange starts on a fresh connection, so
that a late reply is not read as the answer to the next query. A query that changes nothing
on the instrument may be asked again on a fresh connection (``retries``) after a timeout or a
dropped link; a failure to connect says why (refused, timed out).

Example
-------
::

    session = VisaSession("TCPIP::192.168.0.12::5025::SOCKET", name="Keithley 2450 (...)",
                          timeout_s=5.0)
    print(session.query("*IDN?"))
    session.close()
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import threading
from typing import Any

import pyvisa
import pyvisa.constants
import pyvisa.errors

from .errors import (
    InstrumentConnectionError,
    InstrumentError,
    InstrumentProtocolError,
    InstrumentTimeoutError,
    reconnect_failed,
)

__all__ = [
    "DEFAULT_CLOSED_MESSAGE",
    "DEFAULT_OPEN_HINT",
    "DEFAULT_TIMEOUT_HINT",
    "VisaSession",
]

#: What to check when the connection cannot be opened (ends that error's message).
DEFAULT_OPEN_HINT = (
    "check that the instrument is on, reachable and that the resource string is right"
)
#: The error message when the instrument closed the connection.
DEFAULT_CLOSED_MESSAGE = (
    "the instrument closed the connection; check the cable/network and that no other "
    "program took over the instrument, then reconnect"
)
#: What to check when no reply came in time.
DEFAULT_TIMEOUT_HINT = "check that the instrument is on and not busy, or raise timeout_s"

log = logging.getLogger(__name__)


class VisaSession:
    """A VISA message session: ``write``, ``query``, ``reopen``, ``close``.

    Parameters
    ----------
    resource : str
        VISA resource string, e.g. ``"TCPIP::192.168.0.12::5025::SOCKET"``.
    name : str
        The instrument as named in error messages, e.g. ``"Keithley 2450 (<resource>)"``.
    timeout_s : float
        How long to wait for each reply (and for the connection to open).
    visa_library : str
        pyvisa backend; ``"@py"`` (pyvisa-py) by default.
    read_termination, write_termination : str
        Line terminators of replies and of commands.
    open_hint : str
        What to check when the connection cannot be opened (ends that error's message).
    closed_message : str
        The error message when the instrument closed the connection (and what to check).
    timeout_hint : str
        What to check when no reply came in time.

    Raises
    ------
    InstrumentConnectionError
        If the resource cannot be opened, or the instrument refuses the connection.

    Attributes
    ----------
    lock : threading.RLock
        Held around every exchange; a driver holds it too around exchanges that belong
        together, or that may come from several threads.
    last_command : str or None
        The last command sent (named by every error); a driver may set it to name a
        command more precisely.
    failure : InstrumentError or None
        The error of the last exchange, ``None`` after one that worked: a driver that
        closes asks it whether the instrument is worth talking to any more.
    """

    def __init__(
        self,
        resource: str,
        *,
        name: str,
        timeout_s: float,
        visa_library: str = "@py",
        read_termination: str = "\n",
        write_termination: str = "\n",
        open_hint: str = DEFAULT_OPEN_HINT,
        closed_message: str = DEFAULT_CLOSED_MESSAGE,
        timeout_hint: str = DEFAULT_TIMEOUT_HINT,
    ) -> None:
        self.resource_name = resource
        self.name = name
        self.timeout_s = float(timeout_s)
        self.visa_library = visa_library
        self.read_termination = read_termination
        self.write_termination = write_termination
        self.open_hint = open_hint
        self.closed_message = closed_message
        self.timeout_hint = timeout_hint
        self.last_command: str | None = None
        #: The error of the last exchange; ``None`` after one that worked.
        self.failure: InstrumentError | None = None
        self.lock = threading.RLock()
        self._stale = False
        self._rm: pyvisa.ResourceManager | None = None
        self._res: Any = None
        self._open()

    @property
    def is_open(self) -> bool:
        """Whether a resource is open (the peer may still have gone away)."""
        return self._res is not None

    # --- connection ----------------------------------------------------------------------
    def _open(self) -> None:
        try:
            if self._rm is None:
                self._rm = pyvisa.ResourceManager(self.visa_library)
            self._res = self._rm.open_resource(
                self.resource_name,
                read_termination=self.read_termination,
                write_termination=self.write_termination,
                timeout=int(self.timeout_s * 1000),
                open_timeout=int(self.timeout_s * 1000),
            )
        except Exception as exc:  # pyvisa raises many kinds here (VisaIOError, OSError, ...)
            self._res = None
            raise InstrumentConnectionError(
                f"{_open_failure(exc, self.timeout_s)}; {self.open_hint}",
                instrument=self.name,
            ) from exc
        self._set_nodelay()
        # pyvisa-py "connects" a TCP socket without noticing a refusal; find out now.
        self._check_connected()
        self._check_alive()

    def _set_nodelay(self) -> None:
        # Without TCP_NODELAY, Nagle's algorithm holds back a short command until the
        # previous one is acknowledged, and the peer's delayed ACK makes that ~40 ms per
        # command pair. pyvisa-py 0.8 routes VI_ATTR_TCPIP_NODELAY to a setter that refuses
        # it, so fall back to the socket itself.
        try:
            self._res.set_visa_attribute(pyvisa.constants.ResourceAttribute.tcpip_nodelay, True)
            return
        except Exception:
            pass
        sock = self._socket()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _socket(self) -> socket.socket | None:
        """The pyvisa-py TCP socket under the resource, if there is one (for liveness)."""
        try:
            session = self._res.visalib.sessions[self._res.session]
            sock = getattr(session, "interface", None)
        except Exception:
            return None
        return sock if isinstance(sock, socket.socket) else None

    def _peer_closed(self) -> bool:
        """Peek (without consuming) whether the other end closed the TCP connection."""
        sock = self._socket()
        if sock is None:
            return False
        try:
            data = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True
        return data == b""

    def _check_connected(self) -> None:
        """Raise, naming the reason, if the TCP connect that pyvisa-py started failed."""
        sock = self._socket()
        if sock is None:
            return
        try:
            sock.getpeername()
            return
        except OSError:
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        self._close_resource()
        if code in (0, errno.ECONNREFUSED):
            # 0: the refusal came at once (loopback) and connect_ex already consumed it.
            reason = "connection refused: nothing accepts connections at that address and port"
        else:
            reason = f"could not connect: {os.strerror(code)}"
        raise InstrumentConnectionError(f"{reason}; {self.open_hint}", instrument=self.name)

    def _check_alive(self) -> None:
        if self._res is None:
            raise InstrumentConnectionError(
                "the connection is closed; create a new driver",
                instrument=self.name,
                last_command=self.last_command,
            )
        if self._peer_closed():
            raise InstrumentConnectionError(
                self.closed_message,
                instrument=self.name,
                last_command=self.last_command,
            )

    def _io_error(self, exc: BaseException, what: str) -> InstrumentError:
        """Map a pyvisa/socket exception to an insitu exception."""
        if isinstance(exc, UnicodeDecodeError):
            return InstrumentProtocolError(
                f"the reply is not text ({exc.object[:40]!r}), so not this instrument's "
                "protocol; check that the resource is the instrument's port",
                instrument=self.name,
                last_command=self.last_command,
            )
        if isinstance(exc, pyvisa.errors.VisaIOError):
            if exc.error_code == pyvisa.constants.StatusCode.error_timeout:
                if self._peer_closed():
                    return InstrumentConnectionError(
                        f"the instrument closed the connection while {what}",
                        instrument=self.name,
                        last_command=self.last_command,
                    )
                return InstrumentTimeoutError(
                    f"timed out: no answer within {self.timeout_s:g} s while {what}; "
                    f"{self.timeout_hint}",
                    instrument=self.name,
                    last_command=self.last_command,
                )
        if isinstance(exc, (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)):
            return InstrumentConnectionError(
                f"the instrument closed the connection while {what}",
                instrument=self.name,
                last_command=self.last_command,
            )
        return InstrumentConnectionError(
            f"connection failed while {what} ({exc})",
            instrument=self.name,
            last_command=self.last_command,
        )

    def reopen(self) -> None:
        """Close the resource (not the resource manager) and open it again.

        Raises
        ------
        InstrumentConnectionError
            If it cannot be opened again.
        """
        with self.lock:
            self._close_resource()
            self._open()

    def close(self) -> None:
        """Release the resource (safe to repeat).

        The resource manager is left open: pyvisa hands every session of a VISA library the
        same one, and closing it closes every resource opened through it. A bench that
        closed its oven first would otherwise have cut its potentiostat's link before that
        driver switched its cell off.
        """
        with self.lock:
            self._close_resource()
            self._rm = None

    def _close_resource(self) -> None:
        if self._res is not None:
            with contextlib.suppress(Exception):
                self._res.close()
            self._res = None

    # --- exchanges ------------------------------------------------------------------------
    def write(self, command: str) -> None:
        """Send one command (no reply expected)."""
        with self.lock:
            try:
                self._write(command)
            except InstrumentError as exc:
                self.failure = exc
                raise
            self.failure = None

    def _write(self, command: str) -> None:
        if self._stale:
            # A reply may still arrive for the query that timed out; a fresh connection
            # keeps it from being read as the answer to the next query.
            self._stale = False
            self.reopen()
        self.last_command = command
        self._check_alive()
        try:
            self._res.write(command)
        except Exception as exc:
            raise self._io_error(exc, "sending") from exc

    def query(self, command: str, *, retries: int = 0) -> str:
        """Send a query and return its reply line (stripped, without the terminator).

        Parameters
        ----------
        command : str
            The query.
        retries : int
            How many more times to ask, each on a fresh connection, after no answer came in
            time or the link dropped. Only for queries that change nothing on the
            instrument (``*IDN?``, a status read, a buffer read by index range), and while a
            technique runs only where it runs inside the instrument whatever happens to the
            connection (a Keithley trigger model).

        Raises
        ------
        InstrumentTimeoutError, InstrumentConnectionError
            If the last try failed (the message says how many were made).
        InstrumentProtocolError
            If the reply is not text.
        """
        with self.lock:
            tries = max(0, int(retries)) + 1
            for attempt in range(1, tries + 1):
                try:
                    reply = self._query_once(command)
                except (InstrumentTimeoutError, InstrumentConnectionError) as exc:
                    self.failure = exc
                    if attempt == tries or self._rm is None:  # _rm None: closed by close()
                        raise _after_tries(exc, attempt) from exc.__cause__
                    log.info("%s: %s; asking again on a fresh connection", self.name, exc)
                    self.reconnect(exc)
                except InstrumentError as exc:
                    self.failure = exc
                    raise
                else:
                    self.failure = None
                    return reply
            raise AssertionError("unreachable")  # pragma: no cover

    def reconnect(self, cause: InstrumentError, what: str = "connecting again") -> None:
        """A fresh connection after ``cause`` (a dropped link, a timeout).

        Raises
        ------
        InstrumentConnectionError
            If there is none: both reasons, ``cause`` first, and ``what`` was tried
            (:func:`~insitu.instruments.errors.reconnect_failed`).
        """
        with self.lock:
            self._stale = False  # a fresh connection holds no late reply
            try:
                self.reopen()
            except InstrumentConnectionError as failure:
                raise reconnect_failed(cause, failure, instrument=self.name, what=what) from failure

    def _query_once(self, command: str) -> str:
        self._write(command)
        try:
            reply = self._res.read()
        except Exception as exc:
            error = self._io_error(exc, "waiting for the reply")
            self._stale = isinstance(error, InstrumentTimeoutError)
            raise error from exc
        return reply.strip()


def _open_failure(exc: BaseException, timeout_s: float) -> str:
    """What went wrong when pyvisa could not open a resource, in words."""
    text = str(exc)
    timed_out = "error_timeout" in text or (
        isinstance(exc, pyvisa.errors.VisaIOError)
        and exc.error_code == pyvisa.constants.StatusCode.error_timeout
    )
    if timed_out:
        return f"could not connect: timed out after {timeout_s:g} s"
    if isinstance(exc, ConnectionRefusedError) or "Connection refused" in text:
        return "connection refused: nothing accepts connections at that address and port"
    return f"could not open the connection ({exc})"


def _after_tries(exc: InstrumentError, tries: int) -> InstrumentError:
    """``exc`` itself after one try; after several, the same error saying how many."""
    if tries == 1:
        return exc
    return type(exc)(
        f"{exc.message} (asked {tries} times, each on a fresh connection)",
        instrument=exc.instrument,
        last_command=exc.last_command,
    )
