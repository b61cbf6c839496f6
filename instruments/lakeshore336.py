"""Lake Shore Model 336 temperature controller driver (pyvisa).

The 336 speaks Lake Shore's ASCII command set (chapter 6 of its user's manual), not SCPI:
``SETP 1,333.15``, ``KRDG? A``, ``RANGE 1,3``, ``RAMP 1,1,2.0`` and so on, chained with ``;``.
Its Ethernet interface listens on TCP port 7777 (``TCPIP::<host>::7777::SOCKET``); commands
end with a line feed, replies with carriage return + line feed.

The instrument has no error queue: a command it cannot parse or execute is silently ignored
and only sets a bit of the Standard Event Status Register (CME, 32: command error; EXE, 16:
execution error), and a bad query is not answered at all. So every setting is sent chained
with ``*ESR?`` (``SETP 1,333.150;*ESR?``): one round trip, and a non-zero error bit raises
:class:`~insitu.instruments.errors.InstrumentReportedError` naming the command. Timeouts,
lost connections and garbled replies raise the other exceptions of
:mod:`insitu.instruments.errors`, naming the instrument and the last command. Reads
(``KRDG?``, ``SETP?``, ``RANGE?`` ...) change nothing, so after a timeout or a dropped link
they are asked once more on a fresh connection; settings are never sent twice on their own.

Limits are checked before anything is sent: setpoints between 0 K and ``max_setpoint_K``
(393.15 K = 120 °C by default, a safe maximum for a battery oven; at most the instrument's
1500 K), heater ranges 0–3 (outputs 1 and 2) or 0–1 (outputs 3 and 4), ramp rates 0.1–100
K/min (0 = no limit).

Example
-------
::

    with LakeShore336("TCPIP::192.168.0.20::7777::SOCKET") as tc:
        tc.set_setpoint_K(1, 333.15)
        tc.set_heater_range(1, 3)
        print(tc.temperature_K("A"))
"""

from __future__ import annotations

import logging

from .base import Instrument
from .errors import (
    InstrumentProtocolError,
    InstrumentReportedError,
    LimitError,
)
from .potentiostat import Identity

__all__ = ["HEATER_RANGES", "INPUTS", "LakeShore336"]

log = logging.getLogger(__name__)

#: Sensor inputs of a 336 without the 3062 option.
INPUTS = ("A", "B", "C", "D")
#: Heater range names of outputs 1 and 2 (outputs 3 and 4: 0 off, 1 on).
HEATER_RANGES = {0: "off", 1: "low", 2: "medium", 3: "high"}
#: Hardest limit of a setpoint, whatever the sensor.
INSTRUMENT_MAX_SETPOINT_K = 1500.0
#: Default safety maximum: 120 °C, what a battery oven and its cells may see.
DEFAULT_MAX_SETPOINT_K = 393.15

_ESR_ERRORS = {32: "command error (not understood)", 16: "execution error (value refused)"}
_ESR_QUERY_ERROR = 4
# RDGST? bits
_READING_STATUS = {
    1: "invalid reading",
    16: "temperature under range",
    32: "temperature over range",
    64: "sensor units zero",
    128: "sensor units over range",
}


class LakeShore336(Instrument):
    """A Lake Shore Model 336 temperature controller over VISA.

    Parameters
    ----------
    resource : str
        VISA resource, e.g. ``"TCPIP::192.168.0.20::7777::SOCKET"`` or what an emulator's
        ``start()`` returns.
    timeout_s : float
        Real seconds to wait for each reply.
    visa_library : str
        pyvisa backend; ``"@py"`` (pyvisa-py) by default.
    max_setpoint_K : float
        Safety maximum of setpoints (default 393.15 K = 120 °C); higher ones raise
        :class:`~insitu.instruments.errors.LimitError` and nothing is sent.

    Raises
    ------
    InstrumentConnectionError
        If the resource cannot be opened.

    Notes
    -----
    :meth:`close` releases the connection only: the heaters keep their settings (see
    :meth:`heaters_off`).
    """

    def __init__(
        self,
        resource: str,
        *,
        timeout_s: float = 5.0,
        visa_library: str = "@py",
        max_setpoint_K: float = DEFAULT_MAX_SETPOINT_K,
    ) -> None:
        if not 0 < max_setpoint_K <= INSTRUMENT_MAX_SETPOINT_K:
            raise ValueError(
                f"max_setpoint_K must be in (0, {INSTRUMENT_MAX_SETPOINT_K:g}] K, "
                f"got {max_setpoint_K!r}"
            )
        self.max_setpoint_K = float(max_setpoint_K)
        # The base's lock (self._io_lock) is around every exchange: a settle thread polls
        # while a plan reads.
        super().__init__(
            resource,
            name=f"Lake Shore 336 ({resource})",
            timeout_s=timeout_s,
            visa_library=visa_library,
            read_termination="\r\n",
            write_termination="\n",
            open_hint="check that the controller is on, reachable, its Ethernet interface "
            "enabled and the resource string right",
            closed_message="the controller closed the connection; check the network and that "
            "no other program took over the controller, then reconnect",
            timeout_hint="the 336 does not answer queries it cannot parse, so check the "
            "command, then that the controller is on",
        )

    # --- settings and errors --------------------------------------------------------------
    def command(self, command: str) -> None:
        """Send a setting and check that the controller accepted it (``;*ESR?``).

        Raises
        ------
        InstrumentReportedError
            If the command error or execution error bit was set (the command was ignored).
        """
        with self._io_lock:
            reply = self.query(f"{command};*ESR?")
            esr = self.parse_number(reply, int, "*ESR?")
            self.last_command = command
            self._raise_for_esr(esr, command)

    def check_errors(self) -> None:
        """Read and clear the event status register; raise if a command was refused."""
        esr = self.query_int("*ESR?")
        self._raise_for_esr(esr, self.last_command)

    def _raise_for_esr(self, esr: int, command: str | None) -> None:
        problems = [text for bit, text in _ESR_ERRORS.items() if esr & bit]
        if esr & _ESR_QUERY_ERROR:
            problems.append("query error")
        if problems:
            raise self._error(
                InstrumentReportedError,
                f"the controller ignored the command: {', '.join(problems)} (*ESR? = {esr}); "
                "check the command and its values against the manual",
                code=esr,
                last_command=command,
            )

    # --- checks ---------------------------------------------------------------------------
    def _check_loop(self, loop: int) -> int:
        if loop not in (1, 2, 3, 4):
            raise LimitError(f"loop/output must be 1–4, got {loop!r}", instrument=self.name)
        return int(loop)

    def _check_input(self, name: str) -> str:
        upper = str(name).strip().upper()
        if upper not in INPUTS:
            raise LimitError(
                f"input must be one of {', '.join(INPUTS)}, got {name!r}", instrument=self.name
            )
        return upper

    # --- identity ---------------------------------------------------------------------------
    def identify(self) -> Identity:
        """Ask ``*IDN?``: ``LSCI,MODEL336,<serial>/<option serial>,<firmware>``."""
        manufacturer, model, serial, firmware = self.query_idn()
        if "336" not in model:
            log.warning("%s: *IDN? says %r, not a Model 336", self.name, model)
        return Identity(manufacturer, model, serial.split("/")[0], firmware, self.resource_name)

    def reset(self) -> None:
        """``*RST``: heaters off, ramps off; then clear the status (``*CLS``)."""
        self.write("*RST")
        self.write("*CLS")

    # --- setpoints and readings ---------------------------------------------------------------
    def setpoint_K(self, loop: int = 1) -> float:
        """The loop's present setpoint (the ramping value while a ramp runs)."""
        loop = self._check_loop(loop)
        return self.query_float(f"SETP? {loop}", retry=True)

    def set_setpoint_K(self, loop: int, value: float) -> None:
        """Set the loop's setpoint in kelvin (the control input must read in kelvin).

        Raises
        ------
        LimitError
            Outside 0 K – :attr:`max_setpoint_K`; nothing is sent.
        """
        loop = self._check_loop(loop)
        value = float(value)
        if not 0.0 <= value <= self.max_setpoint_K:
            raise LimitError(
                f"setpoint {value:g} K is outside 0–{self.max_setpoint_K:g} K "
                f"({self.max_setpoint_K - 273.15:g} °C, the safety maximum); lower it, or "
                "raise max_setpoint_K if the oven and the cell allow",
                instrument=self.name,
            )
        self.command(f"SETP {loop},{value:.3f}")

    def temperature_K(self, input: str = "A") -> float:
        """Kelvin reading of a sensor input (``KRDG?``), checked with ``RDGST?``.

        Raises
        ------
        InstrumentReportedError
            If the input reports an invalid, under- or over-range reading.
        """
        name = self._check_input(input)
        reply = self.query(f"KRDG? {name};RDGST? {name}", retry=True)
        parts = reply.split(";")
        if len(parts) != 2:
            raise self._error(
                InstrumentProtocolError, f"unexpected reply {reply!r} to the reading query"
            )
        value = self.parse_number(parts[0], float, "KRDG?")
        status = self.parse_number(parts[1], int, "RDGST?")
        if status:
            what = ", ".join(t for bit, t in _READING_STATUS.items() if status & bit)
            raise self._error(
                InstrumentReportedError,
                f"input {name} has no valid reading ({what or status}); check the sensor "
                "and its input setup",
                code=status,
            )
        return value

    def temperature_C(self, input: str = "A") -> float:
        """Celsius reading of a sensor input (``CRDG?``)."""
        name = self._check_input(input)
        return self.query_float(f"CRDG? {name}", retry=True)

    def reading_status(self, input: str = "A") -> int:
        """``RDGST?`` bits of an input (0: valid reading)."""
        name = self._check_input(input)
        return self.query_int(f"RDGST? {name}", retry=True)

    # --- heater ----------------------------------------------------------------------------
    def heater_range(self, output: int = 1) -> int:
        """Heater range: 0 off, 1 low, 2 medium, 3 high (outputs 3 and 4: 0 off, 1 on)."""
        output = self._check_loop(output)
        return self.query_int(f"RANGE? {output}", retry=True)

    def set_heater_range(self, output: int, range: int) -> None:
        """Set the heater range (see :meth:`heater_range`)."""
        output = self._check_loop(output)
        top = 3 if output <= 2 else 1
        if range not in range_values(top):
            raise LimitError(
                f"heater range of output {output} must be 0–{top}, got {range!r}",
                instrument=self.name,
            )
        self.command(f"RANGE {output},{int(range)}")

    def heaters_off(self) -> None:
        """Switch every heater output off (``RANGE n,0``)."""
        for output in (1, 2, 3, 4):
            self.command(f"RANGE {output},0")

    def heater_output_percent(self, output: int = 1) -> float:
        """Heater output in percent of the range (``HTR?``, outputs 1 and 2)."""
        if output not in (1, 2):
            raise LimitError(f"HTR? exists for outputs 1 and 2, got {output!r}")
        return self.query_float(f"HTR? {output}", retry=True)

    def output_mode(self, output: int = 1) -> tuple[int, int, int]:
        """``OUTMODE?``: (mode, control input 0–4 with 1 = A, power-up enable)."""
        output = self._check_loop(output)
        reply = self.query(f"OUTMODE? {output}", retry=True)
        parts = reply.split(",")
        if len(parts) != 3:
            raise self._error(InstrumentProtocolError, f"unexpected reply {reply!r} to OUTMODE?")
        mode, source, powerup = (self.parse_number(p, int, "OUTMODE?") for p in parts)
        return mode, source, powerup

    def set_output_mode(
        self, output: int, mode: int, input: str | int = "A", powerup_enable: bool = False
    ) -> None:
        """``OUTMODE``: mode 0 off, 1 closed loop PID, 2 zone, 3 open loop, 4 monitor out,
        5 warm-up supply; the control input by name (``"A"``) or number (1 = A, 0 = none)."""
        output = self._check_loop(output)
        if mode not in range_values(5):
            raise LimitError(f"output mode must be 0–5, got {mode!r}", instrument=self.name)
        source = input if isinstance(input, int) else INPUTS.index(self._check_input(input)) + 1
        if source not in range_values(4):
            raise LimitError(f"control input must be 0–4, got {input!r}", instrument=self.name)
        self.command(f"OUTMODE {output},{mode},{source},{int(bool(powerup_enable))}")

    # --- ramp --------------------------------------------------------------------------------
    def ramp(self, loop: int = 1) -> tuple[bool, float]:
        """``RAMP?``: (ramping enabled, rate in K/min; 0 means unlimited)."""
        loop = self._check_ramp_loop(loop)
        reply = self.query(f"RAMP? {loop}", retry=True)
        parts = reply.split(",")
        if len(parts) != 2:
            raise self._error(InstrumentProtocolError, f"unexpected reply {reply!r} to RAMP?")
        enabled = self.parse_number(parts[0], bool, "RAMP?")
        return enabled, self.parse_number(parts[1], float, "RAMP?")

    def set_ramp(self, loop: int, enabled: bool, rate_K_per_min: float = 0.0) -> None:
        """``RAMP``: ramp the setpoint at ``rate_K_per_min`` (0.1–100; 0 = unlimited)."""
        loop = self._check_ramp_loop(loop)
        rate = float(rate_K_per_min)
        if not (rate == 0.0 or 0.1 <= rate <= 100.0):
            raise LimitError(
                f"ramp rate must be 0 (unlimited) or 0.1–100 K/min, got {rate:g}",
                instrument=self.name,
            )
        self.command(f"RAMP {loop},{int(bool(enabled))},{rate:.1f}")

    def ramping(self, loop: int = 1) -> bool:
        """``RAMPST?``: whether the setpoint is still ramping."""
        loop = self._check_ramp_loop(loop)
        return self.query_bool(f"RAMPST? {loop}", retry=True)

    def _check_ramp_loop(self, loop: int) -> int:
        if loop not in (1, 2):
            raise LimitError(
                f"ramping exists for loops 1 and 2, got {loop!r}", instrument=self.name
            )
        return int(loop)


def range_values(top: int) -> range:
    """``range(0, top + 1)``: the valid integer settings 0..top."""
    return range(0, top + 1)
