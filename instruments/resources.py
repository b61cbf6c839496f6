"""Open the right driver for a resource string.

* ``TCPIP::HOST::PORT::SOCKET``, ``TCPIP::HOST::INSTR``, ``USB0::0x05E6::0x2450::…::INSTR``,
  ``GPIB0::N::INSTR``: a Keithley 2450 (:class:`~.keithley2450.Keithley2450`, pyvisa).
* ``/dev/ttyACM0``, ``/dev/pts/N``, ``COM3``, ``socket://HOST:PORT``,
  ``ASRL/dev/ttyACM0::INSTR``: a MethodSCRIPT potentiostat
  (:class:`~.methodscript.MethodScriptPotentiostat`, pyserial).

``sim:MATERIAL`` (a simulated bench) is resolved by :mod:`insitu.protocols`, not here:
drivers never start simulators.
"""

from __future__ import annotations

import re

from .errors import InstrumentError
from .potentiostat import Potentiostat

__all__ = ["UnknownResourceError", "driver_kind", "open_potentiostat"]

_VISA = re.compile(r"^(TCPIP\d*|USB\d*|GPIB\d*)::", re.IGNORECASE)
_ASRL = re.compile(r"^ASRL(?P<port>.+?)(::INSTR)?$", re.IGNORECASE)
_SERIAL = re.compile(r"^(/dev/|COM\d+$|socket://|rfc2217://|loop://)", re.IGNORECASE)


class UnknownResourceError(InstrumentError, ValueError):
    """A resource string that no driver understands."""


def driver_kind(resource: str) -> str:
    """Which driver family serves ``resource``: ``"keithley2450"`` or ``"methodscript"``.

    Raises
    ------
    UnknownResourceError
        If the string is not a VISA resource, serial device or pyserial URL.
    """
    resource = resource.strip()
    if _VISA.match(resource):
        return "keithley2450"
    if _ASRL.match(resource) or _SERIAL.match(resource):
        return "methodscript"
    raise UnknownResourceError(
        f"cannot tell which instrument {resource!r} is; give a VISA resource for a Keithley "
        "2450 (e.g. TCPIP::192.168.0.10::5025::SOCKET), a serial device or URL for a "
        "MethodSCRIPT potentiostat (e.g. /dev/ttyACM0, COM3, socket://127.0.0.1:5555), or "
        "sim:MATERIAL for the simulated bench"
    )


def open_potentiostat(resource: str, *, timeout_s: float = 5.0) -> Potentiostat:
    """Connect to the potentiostat behind ``resource`` and return its driver.

    Parameters
    ----------
    resource : str
        VISA resource string, serial device path or pyserial URL (see the module docstring).
    timeout_s : float
        Seconds to wait for any answer before raising
        :class:`~insitu.instruments.errors.InstrumentTimeoutError`.
    """
    kind = driver_kind(resource)
    if kind == "keithley2450":
        from .keithley2450.driver import Keithley2450

        return Keithley2450(resource.strip(), timeout_s=timeout_s)
    from .methodscript.driver import MethodScriptPotentiostat

    port = resource.strip()
    match = _ASRL.match(port)
    if match:
        port = match.group("port")
    return MethodScriptPotentiostat(port, timeout_s=timeout_s)
