"""Lake Shore Model 336 temperature controller emulator: an oven on a TCP socket.

The real 336 serves its command set (chapter 6 of its user's manual) on TCP port 7777 of its
Ethernet interface: ASCII commands ending in a line feed (an optional carriage return before
it is accepted), replies ending in carriage return + line feed, several commands chained with
``;`` in one message, a space between a command and its parameters. This emulator serves the
same on 127.0.0.1 (port 0 picks a free one) and heats an oven holding
:class:`~insitu.simulators.cell.model.VirtualCell` objects::

    with LakeShore336Emulator(clock, cells=(cell,)) as ls:
        rm = pyvisa.ResourceManager("@py")
        tc = rm.open_resource(ls.resource, read_termination="\\r\\n", write_termination="\\n")
        tc.write("SETP 1,333.15")
        tc.write("RANGE 1,3")
        tc.query("KRDG? A")

Commands
--------
``*IDN?``, ``*RST``, ``*CLS``, ``*ESR?``, ``*ESE``/``*ESE?``, ``*STB?``, ``*OPC``/``*OPC?``,
``SETP``/``SETP?``, ``KRDG?``, ``CRDG?`` (input ``A``–``D``, or ``0`` for all four),
``RDGST?``, ``RANGE``/``RANGE?``, ``RAMP``/``RAMP?``, ``RAMPST?``, ``OUTMODE``/``OUTMODE?``,
``HTR?``.

Errors
------
The 336 has no SCPI error queue. A command it does not understand, or with parameters it
cannot parse, is ignored and sets the Command Error bit (CME, 32) of the Standard Event Status
Register; a well-formed command with a value outside its range is ignored and sets the
Execution Error bit (EXE, 16). A bad *query* is not answered at all, so a client sees a
timeout; ``*ESR?`` (which clears the register) says why. Other parts of a chained message are
still executed.

Physics
-------
Output 1 heats the oven; inputs A and B are sensors in it, C and D have none (their reading is
0 and ``RDGST?`` reports an invalid reading). The oven temperature follows a first-order lag
of time constant ``time_constant_s`` towards a drive temperature: the setpoint of loop 1 (when
output 1 is in closed-loop mode, controlled by input A or B, and its heater range is not off),
ambient otherwise. The heater range limits the drive to ``ambient + rise``, with the rise at
full power ``max_rise_K`` on High and a tenth and a hundredth of it on Medium and Low (the
336's ranges are decades of power). With setpoint ramping on, the loop's setpoint moves
towards the target at the ramp rate and ``SETP?`` reports the ramping value; ``RAMPST?`` says
whether it still moves. The state is advanced in closed form, exactly, to ``clock.now()``
before each command, and every advance sets ``temperature_K`` of the cells in the oven, so
their conductivity follows the oven. Readings carry Gaussian noise ``noise_K`` (seeded); the
cells get the noiseless temperature.

Emulator choices where the manual leaves freedom: ``*RST`` switches the heaters off and the
ramps off and sets the setpoints to the present oven temperature; outputs 2–4 are accepted but
heat nothing; open-loop and other output modes drive nothing (``MOUT`` is not emulated).

Test hooks: ``commands`` (the latest lines received, bounded: a
:class:`~insitu.simulators.emulators.line_server.CommandLog`), ``responding`` (False: swallow
everything, as a hung instrument), :meth:`drop_clients`, :attr:`temperature_K` (the noiseless oven
temperature now) and :meth:`advance` (bring the oven and its cells to ``clock.now()``).

The wire is the shared line server (:mod:`~insitu.simulators.emulators.line_server`); a
message over 1024 characters is discarded whole and sets CME.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from ..cell.model import VirtualCell
from ..clock import SimClock
from .line_server import CommandLog, Connection, LineServer

__all__ = ["LakeShore336Emulator", "first_order_response"]

log = logging.getLogger(__name__)

_INPUTS = ("A", "B", "C", "D")
_OVEN_INPUTS = ("A", "B")
_CELSIUS_OFFSET = 273.15

# Standard Event Status Register bits (IEEE 488.2, as the 336 uses them).
ESR_OPC = 1
ESR_QYE = 4
ESR_EXE = 16
ESR_CME = 32
ESR_PON = 128

# RDGST? bits
RDG_INVALID = 1


class _CommandError(Exception):
    """Unparseable: ignored, sets CME."""


class _ExecutionError(Exception):
    """Out of range: ignored, sets EXE."""


def first_order_response(
    t_s: float, initial_K: float, drive_K: float, time_constant_s: float, slope_K_s: float = 0.0
) -> float:
    """Temperature after ``t_s`` of a first-order lag towards a (linearly moving) drive.

    Solves ``dT/dt = (D(t) - T) / tau`` with ``D(t) = drive_K + slope_K_s * t`` exactly:
    ``T(t) = D(t) - slope*tau + (T0 - drive + slope*tau) * exp(-t/tau)``.

    Parameters
    ----------
    t_s : float
        Elapsed time.
    initial_K : float
        Temperature at ``t = 0``.
    drive_K : float
        Drive temperature at ``t = 0``.
    time_constant_s : float
        The lag's time constant ``tau``.
    slope_K_s : float
        Rate of change of the drive (0 for a step).
    """
    lag = slope_K_s * time_constant_s
    decay = math.exp(-t_s / time_constant_s)
    return drive_K + slope_K_s * t_s - lag + (initial_K - drive_K + lag) * decay


@dataclass
class _Output:
    range: int = 0
    mode: int = 1  # 0 off, 1 closed-loop PID, 2 zone, 3 open loop, 4 monitor out, 5 warm-up
    input: int = 1  # 0 none, 1..4 = A..D
    powerup: int = 0
    target_K: float = 0.0  # the setpoint asked for (SETP)
    setpoint_K: float = 0.0  # the control setpoint now (moves towards target when ramping)
    ramp_on: bool = False
    ramp_K_min: float = 0.0


@dataclass
class _State:
    temperature_K: float
    time_s: float
    outputs: dict[int, _Output] = field(default_factory=dict)
    esr: int = ESR_PON
    ese: int = 0


class LakeShore336Emulator(LineServer):
    """A Lake Shore Model 336 controlling an oven, serving its command set on 127.0.0.1.

    The wire (listening, clients, framing, :meth:`start`, :meth:`stop`, :meth:`drop_clients`,
    :attr:`resource`) is the :class:`~insitu.simulators.emulators.line_server.LineServer`'s;
    this class is the controller and its oven.

    Parameters
    ----------
    clock : SimClock
        The simulation clock shared with the other simulated devices.
    cells : iterable of VirtualCell
        Cells in the oven; their ``temperature_K`` follows the oven.
    host : str
        Only ``"127.0.0.1"``/``"localhost"``: an emulator never listens on a network.
    port : int
        TCP port (the real 336 uses 7777); 0 picks a free one.
    initial_K : float
        Oven (and ambient) temperature at the start.
    time_constant_s : float
        Time constant of the oven's first-order lag, in simulated seconds.
    noise_K : float
        Standard deviation of the reading noise.
    seed : int
        Seed of the reading noise.
    max_rise_K : float
        Temperature rise above ambient the heater reaches at full power on range High.
    serial : str
        Serial number reported by ``*IDN?``.
    """

    name = "Lake Shore 336 emulator"
    terminator = b"\r\n"
    max_line = 1024  # the 336 limits a message to 1024 characters

    def __init__(
        self,
        clock: SimClock,
        *,
        cells: Iterable[VirtualCell] = (),
        host: str = "127.0.0.1",
        port: int = 0,
        initial_K: float = 298.15,
        time_constant_s: float = 300.0,
        noise_K: float = 0.01,
        seed: int = 0,
        max_rise_K: float = 400.0,
        serial: str = "LSA1A2B",
    ) -> None:
        super().__init__(host=host, port=port)
        if not time_constant_s > 0:
            raise ValueError(f"time_constant_s must be positive, got {time_constant_s!r}")
        self.clock = clock
        self.cells = list(cells)
        self.ambient_K = float(initial_K)
        self.time_constant_s = float(time_constant_s)
        self.noise_K = float(noise_K)
        self.max_rise_K = float(max_rise_K)
        self.serial = serial
        self._rng = np.random.default_rng(seed)
        self._lock = threading.RLock()
        #: The latest lines received, in order (test hook; bounded, see CommandLog).
        self.commands: CommandLog = CommandLog()
        #: Set False to make the instrument swallow commands without answering (test hook).
        self.responding = True
        self._state = _State(temperature_K=self.ambient_K, time_s=clock.now())
        self._reset_outputs()
        self._set_cells()
        self._handlers: dict[str, Callable[[list[str]], str | None]] = {
            "*IDN?": self._idn,
            "*RST": self._rst,
            "*CLS": self._cls,
            "*ESR?": self._esr_q,
            "*ESE": self._ese,
            "*ESE?": lambda p: self._noparams(p) or str(self._state.ese),
            "*STB?": self._stb_q,
            "*OPC": lambda p: self._noparams(p) or self._set_esr(ESR_OPC),
            "*OPC?": lambda p: self._noparams(p) or "1",
            "SETP": self._setp,
            "SETP?": self._setp_q,
            "KRDG?": lambda p: self._rdg_q(p, 0.0),
            "CRDG?": lambda p: self._rdg_q(p, _CELSIUS_OFFSET),
            "RDGST?": self._rdgst_q,
            "RANGE": self._range,
            "RANGE?": self._range_q,
            "RAMP": self._ramp,
            "RAMP?": self._ramp_q,
            "RAMPST?": self._rampst_q,
            "OUTMODE": self._outmode,
            "OUTMODE?": self._outmode_q,
            "HTR?": self._htr_q,
        }

    # --- the oven ---------------------------------------------------------------------------
    @property
    def temperature_K(self) -> float:
        """The noiseless oven temperature now (advances the oven)."""
        with self._lock:
            self.advance()
            return self._state.temperature_K

    def advance(self) -> None:
        """Bring the oven, its ramps and its cells to ``clock.now()`` (exact, closed form)."""
        with self._lock:
            now = self.clock.now()
            t0 = self._state.time_s
            if now > t0:
                self._advance_oven(t0, now)
                for out in self._state.outputs.values():
                    out.setpoint_K = _setpoint_at(out, now - t0)
                self._state.time_s = now
            self._set_cells()

    def _advance_oven(self, t0: float, t1: float) -> None:
        # The loop setpoint S(t) is piecewise linear (ramping, then at its target) and the
        # drive is S clamped to what the heater range can reach, so the drive is piecewise
        # linear too, with corners where the ramp ends or S crosses a limit. Each linear
        # piece is solved exactly by first_order_response.
        out = self._state.outputs[1]
        limits = self._limits(out)
        rate = _ramp_rate_K_s(out)
        corners = {t0, t1}
        gap = out.target_K - out.setpoint_K
        if gap and math.isfinite(rate):
            slope = math.copysign(rate, gap)
            corners.add(t0 + abs(gap) / rate)
            if limits is not None:
                for bound in limits:
                    corners.add(t0 + (bound - out.setpoint_K) / slope)

        def drive(t: float) -> float:
            if limits is None:
                return self.ambient_K
            return min(max(_setpoint_at(out, t - t0), limits[0]), limits[1])

        points = sorted(c for c in corners if t0 <= c <= t1)
        temperature = self._state.temperature_K
        for a, b in itertools.pairwise(points):
            if b <= a:
                continue
            d_a, d_b = drive(a), drive(b)
            temperature = first_order_response(
                b - a, temperature, d_a, self.time_constant_s, (d_b - d_a) / (b - a)
            )
        self._state.temperature_K = temperature

    def _limits(self, out: _Output) -> tuple[float, float] | None:
        """(lowest, highest) drive temperature, or None when the heater is off."""
        source = _INPUTS[out.input - 1] if 1 <= out.input <= 4 else None
        if not (out.mode == 1 and out.range > 0 and source in _OVEN_INPUTS):
            return None
        # No cooling: the drive never goes below ambient. The ranges are decades of power.
        rise = self.max_rise_K * 10.0 ** (out.range - 3)
        return self.ambient_K, self.ambient_K + rise

    def _set_cells(self) -> None:
        for cell in self.cells:
            cell.temperature_K = self._state.temperature_K

    def _reading_K(self, name: str) -> float:
        if name not in _OVEN_INPUTS:
            return 0.0
        noise = self._rng.normal(0.0, self.noise_K) if self.noise_K > 0 else 0.0
        return self._state.temperature_K + noise

    def _heater_percent(self, output: int) -> float:
        out = self._state.outputs[output]
        limits = self._limits(out) if output == 1 else None
        if limits is None:
            return 0.0
        lo, hi = limits
        drive = min(max(out.setpoint_K, lo), hi)
        # Steady-state power balance of the lag: the heater supplies the drive's rise.
        return 100.0 * (drive - lo) / (hi - lo)

    def _reset_outputs(self) -> None:
        t = self._state.temperature_K
        self._state.outputs = {
            n: _Output(
                mode=1 if n <= 2 else 0,
                input=n if n <= 2 else 0,
                target_K=t,
                setpoint_K=t,
            )
            for n in (1, 2, 3, 4)
        }

    # --- message processing -------------------------------------------------------------------
    def handle_line(self, line: str) -> str | None:
        """Execute one message (commands chained with ``;``); returns the reply or ``None``.

        Public so that unit tests of the command set can bypass the socket; drivers always
        come in over TCP.
        """
        line = line.rstrip("\r")
        self.commands.append(line)
        if not self.responding or not line.strip():
            return None
        replies: list[str] = []
        with self._lock:
            self.advance()
            for part in line.split(";"):
                part = part.strip()
                if not part:
                    continue
                try:
                    reply = self._execute(part)
                except _CommandError:
                    self._set_esr(ESR_CME)
                    continue
                except _ExecutionError:
                    self._set_esr(ESR_EXE)
                    continue
                except Exception:  # never let a handler bug kill the server thread
                    log.exception("Lake Shore 336 emulator failed on %r", part)
                    self._set_esr(ESR_EXE)
                    continue
                if reply is not None:
                    replies.append(reply)
        return ";".join(replies) if replies else None

    def line_too_long(self, conn: Connection) -> None:
        """A message over 1024 characters overflows the 336's buffer: discarded, CME set."""
        with self._lock:
            self._set_esr(ESR_CME)

    def _execute(self, text: str) -> str | None:
        header, _, rest = text.partition(" ")
        handler = self._handlers.get(header.upper())
        if handler is None:
            raise _CommandError(header)
        params = [p.strip() for p in rest.split(",")] if rest.strip() else []
        return handler(params)

    def _set_esr(self, bits: int) -> None:
        self._state.esr |= bits

    # --- parameter parsing ----------------------------------------------------------------------
    @staticmethod
    def _noparams(params: list[str]) -> None:
        if params:
            raise _CommandError("no parameters expected")

    @staticmethod
    def _count(params: list[str], n: int) -> None:
        if len(params) != n:
            raise _CommandError(f"{n} parameters expected")

    @staticmethod
    def _number(text: str) -> float:
        if not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", text):
            raise _CommandError(text)
        return float(text)

    def _integer(self, text: str, lo: int, hi: int) -> int:
        value = self._number(text)
        if value != int(value):
            raise _CommandError(text)
        if not lo <= value <= hi:
            raise _ExecutionError(text)
        return int(value)

    def _output(self, text: str, outputs: tuple[int, ...] = (1, 2, 3, 4)) -> _Output:
        return self._state.outputs[self._integer(text, min(outputs), max(outputs))]

    @staticmethod
    def _input(text: str, allow_all: bool = False) -> str:
        name = text.strip().upper()
        if name in _INPUTS or (allow_all and name == "0"):
            return name
        raise _CommandError(text)

    # --- handlers ------------------------------------------------------------------------------
    def _idn(self, params: list[str]) -> str:
        self._noparams(params)
        return f"LSCI,MODEL336,{self.serial}/#######,2.9"

    def _rst(self, params: list[str]) -> None:
        self._noparams(params)
        self._reset_outputs()

    def _cls(self, params: list[str]) -> None:
        self._noparams(params)
        self._state.esr = 0

    def _esr_q(self, params: list[str]) -> str:
        self._noparams(params)
        value, self._state.esr = self._state.esr, 0
        return str(value)

    def _ese(self, params: list[str]) -> None:
        self._count(params, 1)
        self._state.ese = self._integer(params[0], 0, 255)

    def _stb_q(self, params: list[str]) -> str:
        self._noparams(params)
        # Bit 5 (ESB, 32): an enabled standard event is set.
        return str(32 if self._state.esr & self._state.ese else 0)

    def _setp(self, params: list[str]) -> None:
        self._count(params, 2)
        out = self._output(params[0])
        value = self._number(params[1])
        if not 0.0 <= value <= 1500.0:
            raise _ExecutionError(params[1])
        out.target_K = value
        if not (out.ramp_on and out.ramp_K_min > 0):
            out.setpoint_K = value

    def _setp_q(self, params: list[str]) -> str:
        self._count(params, 1)
        return f"{self._output(params[0]).setpoint_K:+.3f}"

    def _rdg_q(self, params: list[str], offset: float) -> str:
        self._count(params, 1)
        name = self._input(params[0], allow_all=True)
        names = _INPUTS if name == "0" else (name,)
        values = []
        for n in names:
            kelvin = self._reading_K(n)
            # A missing sensor reads 0 in any unit.
            values.append(0.0 if n not in _OVEN_INPUTS else kelvin - offset)
        return ",".join(f"{v:+.3f}" for v in values)

    def _rdgst_q(self, params: list[str]) -> str:
        self._count(params, 1)
        name = self._input(params[0])
        return f"{0 if name in _OVEN_INPUTS else RDG_INVALID:03d}"

    def _range(self, params: list[str]) -> None:
        self._count(params, 2)
        output = self._integer(params[0], 1, 4)
        top = 3 if output <= 2 else 1  # outputs 3 and 4 are only off/on
        self._state.outputs[output].range = self._integer(params[1], 0, top)

    def _range_q(self, params: list[str]) -> str:
        self._count(params, 1)
        return str(self._output(params[0]).range)

    def _ramp(self, params: list[str]) -> None:
        self._count(params, 3)
        out = self._output(params[0], (1, 2))
        on = self._integer(params[1], 0, 1)
        rate = self._number(params[2])
        if not (rate == 0 or 0.1 <= rate <= 100.0):
            raise _ExecutionError(params[2])
        # handle_line advanced the oven first, so a new ramp starts from today's setpoint.
        out.ramp_on, out.ramp_K_min = bool(on), rate
        if not (out.ramp_on and rate > 0):
            out.setpoint_K = out.target_K  # rate 0 is infinite: a step

    def _ramp_q(self, params: list[str]) -> str:
        self._count(params, 1)
        out = self._output(params[0], (1, 2))
        return f"{int(out.ramp_on)},{out.ramp_K_min:.1f}"

    def _rampst_q(self, params: list[str]) -> str:
        self._count(params, 1)
        out = self._output(params[0], (1, 2))
        return "1" if out.setpoint_K != out.target_K else "0"

    def _outmode(self, params: list[str]) -> None:
        self._count(params, 4)
        out = self._output(params[0])
        mode = self._integer(params[1], 0, 5)
        source = self._integer(params[2], 0, 4)
        powerup = self._integer(params[3], 0, 1)
        out.mode, out.input, out.powerup = mode, source, powerup

    def _outmode_q(self, params: list[str]) -> str:
        self._count(params, 1)
        out = self._output(params[0])
        return f"{out.mode},{out.input},{out.powerup}"

    def _htr_q(self, params: list[str]) -> str:
        self._count(params, 1)
        output = self._integer(params[0], 1, 2)
        return f"{self._heater_percent(output):+06.1f}"


def _ramp_rate_K_s(out: _Output) -> float:
    """Setpoint ramp rate in K/s; infinite when ramping is off or the rate is 0."""
    return out.ramp_K_min / 60.0 if (out.ramp_on and out.ramp_K_min > 0) else math.inf


def _setpoint_at(out: _Output, dt: float) -> float:
    """The loop setpoint ``dt`` seconds after now: it ramps towards the target, then stays."""
    rate = _ramp_rate_K_s(out)
    gap = out.target_K - out.setpoint_K
    if not math.isfinite(rate) or abs(gap) <= rate * max(dt, 0.0):
        return out.target_K
    return out.setpoint_K + math.copysign(rate * dt, gap)
