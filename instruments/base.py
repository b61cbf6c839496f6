"""The base of the drivers that exchange text lines with their instrument over VISA.

:class:`Instrument` is what the Keithley 2450 and the Lake Shore 336 drivers share, in the
manner of pymeasure's ``Instrument``: it opens a
:class:`~insitu.instruments.visa_session.VisaSession` (the connection: line I/O, one lock,
errors mapped) from a resource string and owns it, sends commands (:meth:`Instrument.write`)
and queries (:meth:`Instrument.query`), remembers the last command (named by every error),
parses numbers from replies (:meth:`Instrument.parse_number`, :meth:`Instrument.query_int`,
...), closes the connection, and works as a context manager. :meth:`Instrument.check_errors`
is the hook a driver overrides to read its instrument's error report (an SCPI error queue,
an event status register). A driver keeps only its instrument's commands.

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

from typing import Any, Self, TypeVar, cast

from .errors import InstrumentError, InstrumentProtocolError
from .visa_session import VisaSession

__all__ = ["Instrument"]

_Number = TypeVar("_Number", bool, int, float)
_Error = TypeVar("_Error", bound=InstrumentError)


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

    def query_float(self, command: str, what: str | None = None, *, retry: bool = False) -> float:
        """Send a query and parse its reply as a float (see :meth:`parse_number`).

        ``what`` defaults to the query's header (``"KRDG?"`` for ``"KRDG? A"``); ``retry``
        as in :meth:`query`.
        """
        reply = self.query(command, retry=retry)
        return self.parse_number(reply, float, what or _header(command))

    def query_int(self, command: str, what: str | None = None, *, retry: bool = False) -> int:
        """Send a query and parse its reply as an int (see :meth:`query_float`)."""
        return self.parse_number(self.query(command, retry=retry), int, what or _header(command))

    def query_bool(self, command: str, what: str | None = None, *, retry: bool = False) -> bool:
        """Send a query and parse its ``0``/``1`` reply as a bool (see :meth:`query_float`)."""
        return self.parse_number(self.query(command, retry=retry), bool, what or _header(command))

    def query_idn(self) -> tuple[str, str, str, str]:
        """Ask ``*IDN?`` (asked again after a timeout or a dropped link, see :meth:`query`).

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
        reply = self.query("*IDN?", retry=True)
        try:
            return self.parse_idn(reply)
        except InstrumentProtocolError as exc:
            # Whatever answers is not this instrument: closing need not talk to it again.
            self._session.failure = exc
            raise

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
