"""The base of the drivers that exchange text lines with their instrument over VISA.

:class:`Instrument` is what the Keithley 2450 and the Lake Shore 336 drivers share, in the
manner of pymeasure's ``Instrument``: it opens a
:class:`~insitu.instruments.visa_session.VisaSession` (the connection: line I/O, one lock,
errors mapped) from a resource string and owns it, sends commands (:meth:`Instrument.write`)
and queries (:meth:`Instrument.query`), remembers the last command (named by every error),
parses numbers from replies (:meth:`Instrument.parse_number`, :meth:`Instrument.query_int`,
...), asks a query that changes nothing again when its reply does not parse
(:meth:`Instrument.query_parsed`), closes the connection, and works as a context manager.
:meth:`Instrument.check_errors` is the hook a driver overrides to read its instrument's error
report (an SCPI error queue, an event status register). A driver keeps only its instrument's
commands.

Example
-------
::

    class Multimeter(Instrument):
        def __init__(self, resource: str) -> None:
            super().__init__(resource, name=f"Multimeter ({resource})")

        def voltage_V(self) -> float:
            return self.query_float(":MEAS:VOLT?")

    with Multimeter("TCPIP::192.168.0.30::5025::SOCKET") as dmm:
        print(dmm.voltage_V())
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Self, TypeVar, cast

from .errors import InstrumentError, InstrumentProtocolError
from .visa_session import VisaSession

__all__ = ["Instrument"]

log = logging.getLogger(__name__)

_Number = TypeVar("_Number", bool, int, float)
_Error = TypeVar("_Error", bound=InstrumentError)
_Parsed = TypeVar("_Parsed")


class Instrument:
    """A message-based instrument on a VISA connection, opened when the driver is created.

    Parameters
    ----------
    resource : str
        VISA resource string, e.g. ``"TCPIP::192.168.0.12::5025::SOCKET"``.
    name : str
        The instrument as named in error messages: model and resource string.
    timeout_s : float
        How long to wait for each reply (and for the connection to open).
    **session_options
        The connection's settings, as :class:`~insitu.instruments.visa_session.VisaSession`
        takes them: ``visa_library`` (``"@py"``, pyvisa-py, by default),
        ``read_termination``/``write_termination`` (line terminators), and ``open_hint``,
        ``closed_message``, ``timeout_hint`` (what the connection errors tell the user to
        check).

    Raises
    ------
    InstrumentConnectionError
        If the resource cannot be opened, or the instrument refuses the connection.

    Notes
    -----
    Nothing is sent when the driver is created. Every exchange holds the session's lock; a
    driver holds it too (``self._io_lock``) around exchanges that belong together or that
    may come from several threads.
    """

    #: Extra tries, each on a fresh connection, of the queries that change nothing on the
    #: instrument (``*IDN?``, status reads) after a timeout or a dropped link.
    query_retries: int = 1
    #: How many times :meth:`query_parsed` asks a query that changes nothing before it gives
    #: up on replies that do not parse (garbled on the wire).
    parse_tries: int = 3

    def __init__(
        self,
        resource: str,
        *,
        name: str,
        timeout_s: float = 5.0,
        **session_options: Any,
    ) -> None:
        self.resource_name = resource
        self.name = name
        self.timeout_s = float(timeout_s)
        self._session = VisaSession(
            resource, name=name, timeout_s=self.timeout_s, **session_options
        )
        self._io_lock = self._session.lock

    # --- connection ----------------------------------------------------------------------
    @property
    def last_command(self) -> str | None:
        """The last command sent (named by every error).

        A driver may set it to name a command more precisely, e.g. the setting of a chained
        ``"<setting>;*ESR?"`` query.
        """
        return self._session.last_command

    @last_command.setter
    def last_command(self, command: str | None) -> None:
        self._session.last_command = command

    @property
    def is_open(self) -> bool:
        """Whether the connection is open (the instrument may still have gone away)."""
        return self._session.is_open

    @property
    def last_failure(self) -> InstrumentError | None:
        """The error of the last exchange (``None`` after one that worked).

        Also set when the peer answered ``*IDN?`` with something that is not an identity:
        a driver that closes need not talk to it any more.
        """
        return self._session.failure

    def reopen(self) -> None:
        """Close the connection and open it again (after the instrument dropped it).

        Raises
        ------
        InstrumentConnectionError
            If it cannot be opened again.
        """
        self._session.reopen()

    def reconnect(self, cause: InstrumentError, what: str = "connecting again") -> None:
        """Open the connection again after ``cause`` dropped it.

        Raises
        ------
        InstrumentConnectionError
            If it cannot be opened again; the message gives both reasons, ``cause`` first.
        """
        self._session.reconnect(cause, what)

    def close(self) -> None:
        """Release the connection (safe to repeat); later exchanges raise."""
        self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- exchanges -----------------------------------------------------------------------
    def write(self, command: str) -> None:
        """Send one command (no reply expected).

        Raises
        ------
        InstrumentConnectionError
            If the connection is closed or fails.
        """
        self._session.write(command)

    def query(self, command: str, *, retry: bool = False) -> str:
        """Send a query and return its reply line (stripped, without the terminator).

        Parameters
        ----------
        command : str
            The query.
        retry : bool
            Whether the query may be asked again (:attr:`query_retries` times, each on a
            fresh connection) after a timeout or a dropped link: only for queries that
            change nothing on the instrument, never while a technique runs.

        Raises
        ------
        InstrumentTimeoutError
            If no reply came within ``timeout_s`` (on the last try).
        InstrumentConnectionError
            If the connection is closed or fails.
        InstrumentProtocolError
            If the reply is not text.
        """
        return self._session.query(command, retries=self.query_retries if retry else 0)

    def query_parsed(
        self,
        command: str,
        parse: Callable[[str], _Parsed],
        *,
        tries: int | None = None,
        retry: bool = False,
    ) -> _Parsed:
        """Ask a query that changes nothing, again while its reply does not parse.

        A reply garbled on the wire still ends with its terminator, so the next line read is
        the answer to the next query: asking again on the same connection is safe, also while
        a technique runs. Only for queries whose answer does not change the instrument (a
        status poll, a buffer read by index range, ``:OUTP?``); never for one that empties
        a queue (``:SYST:ERR?``, ``*ESR?``) or makes a new reading (``:READ?``).

        Parameters
        ----------
        command : str
            The query.
        parse : callable
            Turns the reply into the value; raises
            :class:`~insitu.instruments.errors.InstrumentProtocolError` for a reply it cannot
            read (e.g. :meth:`parse_number`).
        tries : int, optional
            How many times to ask at most; :attr:`parse_tries` by default.
        retry : bool
            As in :meth:`query` (a timeout or a dropped link).

        Returns
        -------
        object
            What ``parse`` made of the first reply it could read.

        Raises
        ------
        InstrumentProtocolError
            The last reply did not parse either: ``parse``'s error, saying how many times the
            query was asked.
        InstrumentTimeoutError, InstrumentConnectionError
            As :meth:`query`.
        """
        tries = max(1, self.parse_tries if tries is None else int(tries))
        for attempt in range(1, tries + 1):
            reply = self.query(command, retry=retry)
            try:
                return parse(reply)
            except InstrumentProtocolError as exc:
                if attempt == tries:
                    if tries == 1:
                        raise
                    raise self._error(
                        InstrumentProtocolError,
                        f"{exc.message} (asked {tries} times)",
                        last_command=exc.last_command,
                    ) from exc
                # One line per garbled reply at INFO: on a noisy line there are many, and
                # each is recovered from.
                log.info("%s: %s; asking again", self.name, exc.message)
        raise AssertionError("unreachable")  # pragma: no cover

    def check_errors(self) -> None:
        """Raise if the instrument reports an error; the hook a driver overrides.

        A driver reads its instrument's error report here (SCPI ``:SYST:ERR?``, ``*ESR?``)
        and raises :class:`~insitu.instruments.errors.InstrumentReportedError`. The base
        knows no error report of its own, so it checks nothing.
        """

    # --- replies -------------------------------------------------------------------------
    def parse_number(self, reply: str, kind: type[_Number], what: str) -> _Number:
        """A number from (part of) a reply.

        Parameters
        ----------
        reply : str
            The text to parse, e.g. ``"+1.000E+00"`` or one field of a longer reply.
        kind : type
            ``float``, ``int`` or ``bool``; an ``int`` or ``bool`` may come written as a float
            (``"1.0E+00"``), as SCPI instruments answer.
        what : str
            The query that was answered, named by the error (e.g. ``"SETP?"``).

        Returns
        -------
        bool, int or float
            The number, of type ``kind``.

        Raises
        ------
        InstrumentProtocolError
            If ``reply`` is not such a number; names the reply, ``what`` and the last command.
        """
        if kind not in (bool, int, float):
            raise TypeError(f"kind must be bool, int or float, got {kind!r}")
        try:
            value: Any = float(reply) if kind is float else int(float(reply))
        except (TypeError, ValueError, OverflowError) as exc:  # overflow: "inf" as an int
            raise self._error(
                InstrumentProtocolError, f"unexpected reply {reply!r} to {what}"
            ) from exc
        return cast(_Number, bool(value) if kind is bool else value)

    def query_float(
        self, command: str, what: str | None = None, *, retry: bool = False, tries: int = 1
    ) -> float:
        """Send a query and parse its reply as a float (see :meth:`parse_number`).

        ``what`` defaults to the query's header (``"KRDG?"`` for ``"KRDG? A"``); ``retry``
        as in :meth:`query`; ``tries`` > 1 asks again while the reply does not parse (only
        for a query that changes nothing, see :meth:`query_parsed`).
        """
        return self._query_number(command, float, what, retry=retry, tries=tries)

    def query_int(
        self, command: str, what: str | None = None, *, retry: bool = False, tries: int = 1
    ) -> int:
        """Send a query and parse its reply as an int (see :meth:`query_float`)."""
        return self._query_number(command, int, what, retry=retry, tries=tries)

    def query_bool(
        self, command: str, what: str | None = None, *, retry: bool = False, tries: int = 1
    ) -> bool:
        """Send a query and parse its ``0``/``1`` reply as a bool (see :meth:`query_float`)."""
        return self._query_number(command, bool, what, retry=retry, tries=tries)

    def _query_number(
        self, command: str, kind: type[_Number], what: str | None, *, retry: bool, tries: int
    ) -> _Number:
        what = what or _header(command)
        return self.query_parsed(
            command, lambda reply: self.parse_number(reply, kind, what), tries=tries, retry=retry
        )

    def query_idn(self, *, tries: int = 1) -> tuple[str, str, str, str]:
        """Ask ``*IDN?`` (asked again after a timeout or a dropped link, see :meth:`query`).

        Parameters
        ----------
        tries : int
            How many times at most to ask while the reply is a damaged identity: printable,
            with 2 or 3 comma-separated fields (a separator garbled on the wire). A reply
            that is plainly something else (one field: a web page, an error message) is
            never asked again: the peer is not this instrument.

        Returns
        -------
        tuple of str
            (manufacturer, model, serial number, firmware), stripped.

        Raises
        ------
        InstrumentProtocolError
            If the reply is not an identity (see :meth:`parse_idn`).
        InstrumentTimeoutError, InstrumentConnectionError
            If no reply came (after the retries).
        """
        for attempt in range(1, max(1, tries) + 1):
            reply = self.query("*IDN?", retry=True)
            try:
                return self.parse_idn(reply)
            except InstrumentProtocolError as exc:
                damaged = reply.isprintable() and reply.count(",") in (1, 2)
                if damaged and attempt < tries:
                    log.info("%s: %s; asking again", self.name, exc.message)
                    continue
                # Whatever answers is not this instrument: closing need not talk to it again.
                self._session.failure = exc
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def parse_idn(self, reply: str) -> tuple[str, str, str, str]:
        """(manufacturer, model, serial number, firmware) from a ``*IDN?`` reply, stripped.

        Raises
        ------
        InstrumentProtocolError
            If the reply is not four comma-separated printable fields, the first not empty
            (e.g. a web server's ``<!DOCTYPE HTML>``): the message says so.
        """
        fields = [f.strip() for f in reply.split(",")]
        if len(fields) != 4 or not fields[0] or not reply.isprintable():
            raise self._error(
                InstrumentProtocolError,
                f"the reply {reply[:80]!r} to *IDN? is not an instrument identity (expected 4 "
                "comma-separated fields), so what answers is not this instrument; check that "
                "the resource is the instrument's address and port",
                last_command="*IDN?",
            )
        manufacturer, model, serial, firmware = fields
        return manufacturer, model, serial, firmware

    def _error(
        self,
        kind: type[_Error],
        message: str,
        *,
        last_command: str | None = None,
        **details: Any,
    ) -> _Error:
        """An exception of ``kind`` naming this instrument and the last command.

        ``last_command`` defaults to :attr:`last_command`; ``details`` are the exception's
        own keywords (``code`` of an ``InstrumentReportedError``). The caller raises it, so
        that ``raise ... from`` stays visible where the error happens.
        """
        return kind(
            message,
            instrument=self.name,
            last_command=last_command if last_command is not None else self.last_command,
            **details,
        )


def _header(command: str) -> str:
    """The header of a command, without its parameters: ``"SETP?"`` for ``"SETP? 1"``."""
    return command.split(maxsplit=1)[0] if command.strip() else command
