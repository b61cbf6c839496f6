"""Exceptions raised by instrument drivers.

Every error names the instrument and the last command sent, so a log line is enough to know
what the driver was doing when it failed.
"""

from __future__ import annotations

__all__ = [
    "ComplianceError",
    "InstrumentConnectionError",
    "InstrumentError",
    "InstrumentProtocolError",
    "InstrumentReportedError",
    "InstrumentTimeoutError",
    "LimitError",
    "UnsupportedTechniqueError",
    "reconnect_failed",
]


class InstrumentError(RuntimeError):
    """Base class of all instrument errors.

    Parameters
    ----------
    message : str
        What went wrong and, where possible, how to fix it.
    instrument : str, optional
        Which instrument (model and resource string).
    last_command : str, optional
        The last command sent before the failure.
    """

    def __init__(
        self, message: str, *, instrument: str | None = None, last_command: str | None = None
    ) -> None:
        self.instrument = instrument
        self.last_command = last_command
        parts = [message]
        if instrument:
            parts.append(f"instrument: {instrument}")
        if last_command is not None:
            parts.append(f"last command: {last_command!r}")
        super().__init__("; ".join(parts))
        self.message = message


class InstrumentTimeoutError(InstrumentError):
    """The instrument did not answer in time."""


class InstrumentProtocolError(InstrumentError):
    """The instrument's answer could not be parsed (garbled or unexpected line)."""


class InstrumentConnectionError(InstrumentError):
    """The connection could not be opened or was closed by the other end."""


class InstrumentReportedError(InstrumentError):
    """The instrument itself reported an error (SCPI error queue, MethodSCRIPT ``!XXXX``).

    Attributes
    ----------
    code : int
        The instrument's error code.
    """

    def __init__(self, message: str, *, code: int, **kwargs: str | None) -> None:
        self.code = code
        super().__init__(message, **kwargs)


class UnsupportedTechniqueError(InstrumentError):
    """The instrument cannot run the requested technique (e.g. EIS on a Keithley 2450)."""


class LimitError(InstrumentError, ValueError):
    """A requested current or voltage is outside the limits; nothing was sent."""


class ComplianceError(InstrumentError):
    """The instrument reached a limit while sourcing: a Keithley in compliance (its voltage
    limit tripped), a MethodSCRIPT reading flagged overload. The technique was ended and the
    cell switched off; the points up to the flagged one were kept.

    Attributes
    ----------
    time_s : float or None
        The technique's time of the first flagged reading, when known.
    """

    def __init__(self, message: str, *, time_s: float | None = None, **kwargs: str | None) -> None:
        self.time_s = time_s
        super().__init__(message, **kwargs)


def reconnect_failed(
    cause: InstrumentError, failure: InstrumentError, *, instrument: str, what: str
) -> InstrumentConnectionError:
    """The error when reconnecting after ``cause`` failed too: both reasons, in order.

    Parameters
    ----------
    cause : InstrumentError
        What made the driver reconnect (a timeout, a dropped link).
    failure : InstrumentError
        Why reconnecting failed.
    instrument : str
        Which instrument.
    what : str
        What was tried, e.g. ``"connecting again"``.
    """
    return InstrumentConnectionError(
        f"{cause.message}; {what} failed: {failure.message}",
        instrument=instrument,
        last_command=cause.last_command,
    )
