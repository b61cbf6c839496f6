"""Driver for PalmSens MethodSCRIPT instruments (EmStat4 HR/LR) over a serial link.

The driver writes one MethodSCRIPT per technique, sends it with ``e``, and parses the data
packages while the script runs, yielding DataFrame chunks. A current sequence reaches it one
step (one half-cycle) at a time (:meth:`~insitu.instruments.potentiostat.Potentiostat.stream`),
so a script never holds more than one step and ends with ``cell_off``. Limits are enforced
twice: the :class:`~insitu.instruments.potentiostat.Potentiostat` base class checks them
before anything is sent, and the voltage window of a galvanostatic technique is checked
*inside the script* (``if p > vmax`` / ``breakloop``), so the instrument stops on its own even
if the host hangs. Every script ends with ``on_finished: cell_off``.

Examples
--------
>>> with MethodScriptPotentiostat("/dev/ttyACM0") as pstat:  # doctest: +SKIP
...     print(pstat.identify())
...     data = pstat.run(GalvanostaticHold(1e-3, 600, voltage_min_V=-5, voltage_max_V=5))
"""

from __future__ import annotations

import contextlib
import logging
import math
import select
import socket
import threading
import time
from collections.abc import Iterator

import numpy as np
import pandas as pd
import serial
from serial.urlhandler.protocol_socket import Serial as _SocketSerial

from ..errors import (
    InstrumentConnectionError,
    InstrumentError,
    InstrumentProtocolError,
    InstrumentReportedError,
    InstrumentTimeoutError,
)
from ..potentiostat import (
    EIS_COLUMNS,
    TIME_SERIES_COLUMNS,
    CurrentSequence,
    GalvanostaticHold,
    Identity,
    Impedance,
    Limits,
    OpenCircuit,
    Potentiostat,
    Technique,
    as_sequence,
)
from .codec import (
    DEVICE_MODELS,
    FirmwareInfo,
    PackageError,
    format_literal,
    is_loop_end,
    is_loop_start,
    parse_error,
    parse_firmware,
    parse_package,
    parse_packages,
)

__all__ = ["MODEL_LIMITS", "MethodScriptPotentiostat"]

try:  # tcdrain on a pty whose far end has gone raises termios.error, not OSError
    import termios

    _WRITE_ERRORS: tuple[type[BaseException], ...] = (
        serial.SerialException,
        OSError,
        termios.error,
    )
except ImportError:  # pragma: no cover - not POSIX
    _WRITE_ERRORS = (serial.SerialException, OSError)

log = logging.getLogger(__name__)

#: Limits per ``t`` device code (EmStat4 HR: ±6 V, 100 mA top range, EIS 10 µHz–200 kHz).
MODEL_LIMITS: dict[str, Limits] = {
    "es4_hr": Limits(
        max_abs_current_A=0.1,
        max_abs_voltage_V=6.0,
        min_interval_s=1e-3,
        max_frequency_Hz=200e3,
        min_frequency_Hz=1e-5,
    ),
    "es4_lr": Limits(
        max_abs_current_A=0.01,
        max_abs_voltage_V=3.0,
        min_interval_s=1e-3,
        max_frequency_Hz=200e3,
        min_frequency_Hz=1e-5,
    ),
}
_CURRENT_RANGES_A = (100e-9, 1e-6, 10e-6, 100e-6, 1e-3, 10e-3, 100e-3)
_GALVANOSTAT_MODE = 6
_LOW_SPEED_MODE = 2
_HIGH_SPEED_MODE = 3


def _lit(value: float) -> str:
    return format_literal(value)


class MethodScriptPotentiostat(Potentiostat):
    """A PalmSens EmStat4 (MethodSCRIPT) on a serial port or pyserial URL.

    Parameters
    ----------
    port : str
        Device path (``/dev/ttyACM0``, ``/dev/pts/3``, ``COM3``) or a pyserial URL
        (``socket://127.0.0.1:5025``).
    baudrate : int
        Serial speed; ignored by USB CDC and socket links.
    timeout_s : float
        How long to wait for an answer beyond the expected gap between data packages.
    chunk_size : int
        Data packages per streamed DataFrame chunk (a chunk also ends at every loop end).

    Notes
    -----
    Capabilities: :class:`OpenCircuit` (``meas_loop_ocp``), :class:`GalvanostaticHold` and
    :class:`CurrentSequence` (consecutive ``meas_loop_cp`` without ``cell_off`` between
    steps), :class:`Impedance` (``meas_loop_eis`` / ``meas_loop_geis``).
    """

    capabilities = frozenset({OpenCircuit, GalvanostaticHold, CurrentSequence, Impedance})
    limits = MODEL_LIMITS["es4_hr"]

    def __init__(
        self,
        port: str,
        *,
        baudrate: int = 230400,
        timeout_s: float = 5.0,
        chunk_size: int = 256,
    ) -> None:
        self.port = port
        self.timeout_s = float(timeout_s)
        self.chunk_size = int(chunk_size)
        self.name = f"PalmSens MethodSCRIPT instrument at {port}"
        self._lock = threading.RLock()
        self._buffer = b""  # received bytes after the last complete line
        self._lines: list[bytes] = []  # complete lines received, without "\n"
        self._pos = 0  # next unread entry of _lines
        self._last_command: str | None = None
        self._running = False
        self.baudrate = int(baudrate)
        # The error of the last exchange (None after a line came): close() does not talk to
        # a port that timed out, dropped or answered something that is not MethodSCRIPT.
        self._link_failure: InstrumentError | None = None
        # Set once a script was sent: from then on close() must try to switch the cell off.
        self._script_started = False
        self._open_port()

    def _open_port(self) -> None:
        """Open :attr:`port`; raise :class:`InstrumentConnectionError` saying why not."""
        try:
            # serial_for_url opens plain device paths too; a short read timeout lets the
            # driver enforce its own deadlines.
            self._ser = serial.serial_for_url(self.port, baudrate=self.baudrate, timeout=0.05)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise InstrumentConnectionError(
                _open_failure(self.port, exc), instrument=self.name
            ) from exc
        # Where the port has a file descriptor (POSIX ports, socket:// URLs), read
        # non-blocking and wait with select: pyserial's socket backend reports at most one
        # waiting byte, which would otherwise make every read a one-byte read.
        self._fileno: int | None
        try:
            self._fileno = self._ser.fileno()
            self._ser.timeout = 0
        except (AttributeError, NotImplementedError, OSError, serial.SerialException):
            self._fileno = None

    def _reopen(self) -> None:
        """Close the port and open it again, with nothing waiting to be read."""
        with contextlib.suppress(Exception):
            self._close_port()
        self._discard_input()
        self._open_port()

    # --- low level -----------------------------------------------------------------------
    def _write(self, text: str, label: str | None = None) -> None:
        self._last_command = label if label is not None else text.strip()
        try:
            self._ser.write(text.encode("ascii"))
            self._ser.flush()
        except _WRITE_ERRORS as exc:
            self._link_failure = InstrumentConnectionError(
                f"the link was closed while writing ({exc})",
                instrument=self.name,
                last_command=self._last_command,
            )
            raise self._link_failure from exc

    def _discard_input(self) -> None:
        self._buffer = b""
        self._lines = []
        self._pos = 0

    def _wait_lines(self, timeout_s: float | None = None) -> None:
        """Read until at least one complete line is waiting (large reads, split at once)."""
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        while self._pos >= len(self._lines):
            if time.monotonic() > deadline:
                self._link_failure = InstrumentTimeoutError(
                    f"timed out: no answer within {timeout_s or self.timeout_s:g} s; is the "
                    "instrument "
                    "switched on and the right port selected?",
                    instrument=self.name,
                    last_command=self._last_command,
                )
                raise self._link_failure
            try:
                if self._fileno is not None:
                    wait = max(0.0, min(0.05, deadline - time.monotonic()))
                    select.select([self._fileno], [], [], wait)
                    data = self._ser.read(65536)
                else:
                    data = self._ser.read(max(1, self._ser.in_waiting))
            except (serial.SerialException, OSError) as exc:
                self._link_failure = InstrumentConnectionError(
                    f"the link was closed ({exc}); reconnect the instrument",
                    instrument=self.name,
                    last_command=self._last_command,
                )
                raise self._link_failure from exc
            if b"\n" not in data:
                self._buffer += data
                continue
            joined = self._buffer + data
            *lines, self._buffer = joined.split(b"\n")
            if b"\r" in joined:
                lines = [line.rstrip(b"\r") for line in lines]
            self._lines = self._lines[self._pos :] + lines
            self._pos = 0
        self._link_failure = None

    def _take_lines(self, timeout_s: float | None = None) -> list[bytes]:
        """All complete lines waiting (at least one), as raw bytes; they count as read."""
        self._wait_lines(timeout_s)
        lines = self._lines[self._pos :] if self._pos else self._lines
        self._lines, self._pos = [], 0
        return lines

    def _unread(self, lines: list[bytes]) -> None:
        """Put lines taken with :meth:`_take_lines` back, in front of the waiting ones."""
        if lines:
            self._lines = lines + self._lines[self._pos :]
            self._pos = 0

    def _decode(self, raw: bytes) -> str:
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise InstrumentProtocolError(
                f"garbled line {raw!r} (not ASCII)",
                instrument=self.name,
                last_command=self._last_command,
            ) from None

    def _readline(self, timeout_s: float | None = None) -> str:
        self._wait_lines(timeout_s)
        raw = self._lines[self._pos]
        self._pos += 1
        return self._decode(raw)

    def _reported(self, line: str, script: list[str] | None = None) -> InstrumentReportedError:
        err = parse_error(line)
        assert err is not None
        where = ""
        last = self._last_command
        if err.line is not None:
            where = f" at script line {err.line}" + (
                f", column {err.column}" if err.column is not None else ""
            )
            if script and 1 <= err.line <= len(script):
                last = script[err.line - 1]
        return InstrumentReportedError(
            f"instrument error 0x{err.code:04X}: {err.text}{where}",
            code=err.code,
            instrument=self.name,
            last_command=last,
        )

    # --- identity ------------------------------------------------------------------------
    def identify(self) -> Identity:
        """Ask ``t`` (firmware) and ``i`` (serial number); sets :attr:`limits` per model.

        Both change nothing on the instrument, so after a timeout or a dropped link they are
        asked once more on a freshly opened port (never while a script runs).

        Raises
        ------
        InstrumentProtocolError
            If the answers are not MethodSCRIPT (e.g. a web server's page).
        InstrumentTimeoutError, InstrumentConnectionError
            If no answer came on the second try either, or the port cannot be opened again.
        """
        with self._lock:
            try:
                info, line = self._ask_identity()
            except (InstrumentTimeoutError, InstrumentConnectionError) as exc:
                if self._running:
                    raise
                log.info("%s: %s; asking again on a freshly opened port", self.name, exc)
                try:
                    self._reopen()
                except InstrumentConnectionError as reopen_error:
                    raise InstrumentConnectionError(
                        f"{exc.message}; opening the port again failed: {reopen_error.message}",
                        instrument=self.name,
                        last_command=exc.last_command,
                    ) from reopen_error
                try:
                    info, line = self._ask_identity()
                except (InstrumentTimeoutError, InstrumentConnectionError) as again:
                    raise type(again)(
                        f"{again.message} (asked twice, the second time on a freshly opened port)",
                        instrument=again.instrument,
                        last_command=again.last_command,
                    ) from again
        return self._identity(info, line)

    def _ask_identity(self) -> tuple[FirmwareInfo, str]:
        """``t`` and ``i``: the firmware information and the ``i`` reply line."""
        self._write("t\n")
        first = self._readline()
        if parse_error(first):
            raise self._reported(first)
        second = self._readline()
        try:
            info = parse_firmware(first, second)
        except PackageError:
            self._link_failure = self._not_methodscript("t", f"{first!r} / {second!r}")
            raise self._link_failure from None
        self._write("i\n")
        line = self._readline()
        if not line.startswith("i") or parse_error(line):
            self._link_failure = self._not_methodscript("i", repr(line))
            raise self._link_failure
        return info, line

    def _not_methodscript(self, command: str, answer: str) -> InstrumentProtocolError:
        return InstrumentProtocolError(
            f"the answer {answer[:120]} to {command!r} is not MethodSCRIPT, so what answers is "
            "not a MethodSCRIPT instrument; check the port or address",
            instrument=self.name,
            last_command=command,
        )

    def _identity(self, info: FirmwareInfo, line: str) -> Identity:
        """The identity from the ``t`` information and the ``i`` line; sets the limits."""
        model = DEVICE_MODELS.get(info.device_code, info.device_code)
        if info.device_code in MODEL_LIMITS:
            self.limits = MODEL_LIMITS[info.device_code]
        self.name = f"PalmSens {model} at {self.port}"
        return Identity(
            manufacturer="PalmSens",
            model=model,
            serial=line[1:],
            firmware=f"{info.version} ({info.build})",
            resource=self.port,
        )

    # --- safety --------------------------------------------------------------------------
    def _abort_and_sync(self) -> None:
        """Send ``Z`` and read until the instrument is idle (script ended or none running)."""
        self._write("Z\n")
        acknowledged = False
        while True:
            line = self._readline()
            if line == "Z!0006":  # nothing (or nothing any more) was running
                break
            if line == "Z":
                acknowledged = True
            elif line == "":  # the aborted script's output ended
                if not acknowledged:
                    # The script ended on its own before the Z arrived: its reply follows.
                    self._readline()
                break
        self._running = False

    def cell_off(self) -> None:
        """Abort any running script, then run a script that only switches the cell off."""
        with self._lock:
            if self._running:
                self._abort_and_sync()
            self._discard_input()
            self._write("e\ncell_off\n\n", label="cell_off")
            line = self._readline()
            if line != "e":
                if parse_error(line):
                    raise self._reported(line)
                raise InstrumentProtocolError(
                    f"unexpected answer {line!r} to the cell_off script",
                    instrument=self.name,
                    last_command="cell_off",
                )
            while self._readline() != "":
                pass

    def close(self) -> None:
        """Switch the cell off and release the port.

        The cell is switched off if this driver sent a script, or if the link works. A port
        that timed out, dropped or answered something that is not MethodSCRIPT, and that was
        never sent a script, is only closed: talking to it again would cost another timeout
        and say nothing new. A failure to switch off is logged as one warning line (the
        traceback at DEBUG level).
        """
        try:
            if self._ser.is_open and (self._script_started or self._link_failure is None):
                self.cell_off()
        except InstrumentError as exc:
            log.warning("%s: could not switch the cell off while closing: %s", self.name, exc)
            log.debug("%s: switching off while closing failed", self.name, exc_info=True)
        except Exception:
            log.exception("%s: could not switch the cell off while closing", self.name)
        finally:
            self._close_port()

    def _close_port(self) -> None:
        # pyserial's socket:// backend sleeps 0.3 s after closing "in case of quick
        # reconnects"; nothing here reconnects to the same port, so close the socket directly.
        sock = getattr(self._ser, "_socket", None)
        if isinstance(sock, socket.socket) and isinstance(self._ser, _SocketSerial):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
            self._ser._socket = None
            self._ser.is_open = False
        else:
            self._ser.close()

    # --- scripts -------------------------------------------------------------------------
    @staticmethod
    def _current_range(current_A: float) -> float:
        for full_scale in _CURRENT_RANGES_A:
            if abs(current_A) <= full_scale:
                return full_scale
        return _CURRENT_RANGES_A[-1]

    def _script_sequence(self, seq: CurrentSequence) -> list[str]:
        vmax = self.limits.max_abs_voltage_V
        i_max = max(abs(s.current_A) for s in seq.steps)
        rng = self._current_range(i_max)
        lines = [
            "var p",
            "var c",
            "var t",
            "var s",
            "store_var s 0i ja",
            "set_pgstat_chan 0",
            f"set_pgstat_mode {_GALVANOSTAT_MODE}",
            f"set_max_bandwidth {_lit(min(max(10.0 / seq.interval_s, 1.0), 200e3))}",
            f"set_range ab {_lit(vmax)}",
            f"set_autoranging ab 100m {_lit(vmax)}",
            f"set_range db {_lit(rng)}",
            f"set_autoranging db {_lit(rng)} {_lit(rng)}",
            "set_i 0",
            "cell_on",
            "timer_start",
        ]
        lo, hi = (_lit(v) for v in self._window(seq))
        for k, step in enumerate(seq.steps):
            guard = k > 0 and seq.on_limit == "stop"
            ind = "  " if guard else ""
            if guard:
                # A limit in an earlier step sets s=1: later steps are skipped.
                lines.append("if s == 0i")
            lines += [
                f"{ind}meas_loop_cp p c {_lit(step.current_A)} {_lit(seq.interval_s)} "
                f"{_lit(step.duration_s)}",
                f"{ind}  timer_get t",
                f"{ind}  pck_start",
                f"{ind}    pck_add t",
                f"{ind}    pck_add p",
                f"{ind}    pck_add c",
                f"{ind}  pck_end",
                # The voltage window is enforced by the instrument itself.
                f"{ind}  if p > {hi}",
                f"{ind}    store_var s 1i ja",
                f"{ind}    breakloop",
                f"{ind}  endif",
                f"{ind}  if p < {lo}",
                f"{ind}    store_var s 1i ja",
                f"{ind}    breakloop",
                f"{ind}  endif",
                f"{ind}endloop",
            ]
            if guard:
                lines.append("endif")
        lines += ["on_finished:", "  cell_off"]
        return lines

    def _window(self, seq: CurrentSequence) -> tuple[float, float]:
        """The voltage window clamped to the instrument's potential range.

        A wider window is allowed by the interface; the instrument's own range then stops the
        technique first (its potential overloads beyond it).
        """
        vmax = self.limits.max_abs_voltage_V
        return max(seq.voltage_min_V, -vmax), min(seq.voltage_max_V, vmax)

    def _script_ocp(self, ocp: OpenCircuit) -> list[str]:
        vmax = self.limits.max_abs_voltage_V
        return [
            "var p",
            "var t",
            "set_pgstat_chan 0",
            f"set_pgstat_mode {_LOW_SPEED_MODE}",
            f"set_max_bandwidth {_lit(min(max(10.0 / ocp.interval_s, 1.0), 200e3))}",
            f"set_range ab {_lit(vmax)}",
            f"set_autoranging ab 100m {_lit(vmax)}",
            "cell_off",  # OCP needs the cell off (error 0x0014 otherwise)
            "timer_start",
            f"meas_loop_ocp p {_lit(ocp.interval_s)} {_lit(ocp.duration_s)}",
            "  timer_get t",
            "  pck_start",
            "    pck_add t",
            "    pck_add p",
            "  pck_end",
            "endloop",
            "on_finished:",
            "  cell_off",
        ]

    @staticmethod
    def eis_points(eis: Impedance) -> int:
        """Number of log-spaced frequencies of ``eis`` (both ends included)."""
        decades = abs(math.log10(eis.frequency_start_Hz / eis.frequency_stop_Hz))
        return max(1, round(decades * eis.points_per_decade) + 1)

    def _script_eis(self, eis: Impedance) -> list[str]:
        n = self.eis_points(eis)
        galvanostatic = eis.mode == "galvanostatic"
        lines = ["var f", "var r", "var j", "set_pgstat_chan 0"]
        if galvanostatic:
            rng = self._current_range(abs(eis.dc_A) + eis.amplitude * 2**0.5)
            lines += [
                f"set_pgstat_mode {_GALVANOSTAT_MODE}",
                "set_max_bandwidth 1M",
                f"set_range ab {_lit(self.limits.max_abs_voltage_V)}",
                f"set_range db {_lit(rng)}",
                f"set_autoranging db {_lit(rng)} {_lit(rng)}",
                f"set_i {_lit(eis.dc_A)}",
                "cell_on",
                f"meas_loop_geis f r j {_lit(eis.amplitude)} {_lit(eis.frequency_start_Hz)} "
                f"{_lit(eis.frequency_stop_Hz)} {n}i {_lit(eis.dc_A)}",
            ]
        else:
            lines += [
                f"set_pgstat_mode {_HIGH_SPEED_MODE}",
                "set_max_bandwidth 1M",
                f"set_range_minmax da {_lit(eis.dc_V)} {_lit(eis.dc_V)}",
                "set_range ba 10m",
                "set_autoranging ba 100n 100m",
                f"set_e {_lit(eis.dc_V)}",
                "cell_on",
                f"meas_loop_eis f r j {_lit(eis.amplitude)} {_lit(eis.frequency_start_Hz)} "
                f"{_lit(eis.frequency_stop_Hz)} {n}i {_lit(eis.dc_V)}",
            ]
        lines += [
            "  pck_start",
            "    pck_add f",
            "    pck_add r",
            "    pck_add j",
            "  pck_end",
            "endloop",
            "on_finished:",
            "  cell_off",
        ]
        return lines

    def script_for(self, technique: Technique) -> list[str]:
        """The MethodSCRIPT lines (without ``e`` and the closing empty line) for ``technique``."""
        if isinstance(technique, GalvanostaticHold):
            return self._script_sequence(as_sequence(technique))
        if isinstance(technique, CurrentSequence):
            return self._script_sequence(technique)
        if isinstance(technique, OpenCircuit):
            return self._script_ocp(technique)
        if isinstance(technique, Impedance):
            return self._script_eis(technique)
        raise TypeError(f"no MethodSCRIPT for {type(technique).__name__}")

    # --- streaming -----------------------------------------------------------------------
    def _stream(self, technique: Technique) -> Iterator[pd.DataFrame]:
        script = self.script_for(technique)
        is_eis = isinstance(technique, Impedance)
        if is_eis:
            # Low frequencies take several periods per point.
            gap_s = 10.0 / min(technique.frequency_start_Hz, technique.frequency_stop_Hz)
        else:
            gap_s = technique.interval_s  # type: ignore[attr-defined]
        line_timeout = self.timeout_s + gap_s
        seq = as_sequence(technique) if isinstance(technique, GalvanostaticHold) else technique
        window = self._window(seq) if isinstance(seq, CurrentSequence) else None
        stop_on_limit = isinstance(seq, CurrentSequence) and seq.on_limit == "stop"

        with self._lock:
            self._discard_input()
            self._script_started = True
            self._write("e\n" + "\n".join(script) + "\n\n", label=script[0])
            first = self._readline()
            if first != "e":
                if parse_error(first):
                    raise self._reported(first, script)
                raise InstrumentProtocolError(
                    f"unexpected answer {first!r} to the script",
                    instrument=self.name,
                    last_command="e",
                )
            self._running = True
            rows = _Rows(len(EIS_COLUMNS if is_eis else TIME_SERIES_COLUMNS))
            step = -1
            limit_hit = False
            # `_running` stays set if we leave early (error, consumer stopped), so that
            # cell_off aborts the script before switching the cell off. Lines taken but not
            # handled yet are put back first, whatever ends this generator.
            batch: list[bytes] = []
            i = 0
            try:
                while True:
                    if i >= len(batch):
                        if rows.count:
                            # Hand over what arrived before waiting for more: at slow sampling
                            # (an OCV at 10 s a point) a full chunk would take tens of minutes,
                            # and the consumer can only stop the technique between chunks.
                            yield self._frame(rows.take(), is_eis)
                        batch, i = self._take_lines(line_timeout), 0
                    raw = batch[i]
                    if raw[:1] == b"P":
                        # Fast path: consecutive packages of one width parsed at once.
                        j, width = i + 1, len(raw)
                        while j < len(batch) and len(batch[j]) == width and batch[j][:1] == b"P":
                            j += 1
                        block = self._package_block(batch[i:j], is_eis, max(step, 0))
                        if block is not None:
                            i = j
                            if window and not limit_hit:
                                v = block[:, 1]
                                limit_hit = not bool(((v >= window[0]) & (v <= window[1])).all())
                            rows.add_block(block)
                            while rows.count >= self.chunk_size:
                                yield self._frame(rows.take(self.chunk_size), is_eis)
                            continue
                    i += 1
                    line = self._decode(raw)
                    if line == "":
                        self._running = False
                        break
                    head = line[:1]
                    if head == "P":
                        row, v = self._package_row(line, is_eis, max(step, 0))
                        rows.add_row(row)
                        if window and not window[0] <= v <= window[1]:
                            limit_hit = True
                        if rows.count >= self.chunk_size:
                            yield self._frame(rows.take(self.chunk_size), is_eis)
                    elif is_loop_start(line):
                        if head == "M":
                            step += 1
                    elif is_loop_end(line):
                        if head == "*" and rows.count:
                            yield self._frame(rows.take(), is_eis)
                    elif head == "T" or line == "Z":
                        log.info("%s: %s", self.name, line)
                    elif parse_error(line):
                        err = self._reported(line, script)
                        self._unread(batch[i:])
                        batch, i = [], 0
                        self._drain_to_end()
                        raise err
                    else:
                        raise InstrumentProtocolError(
                            f"unexpected line {line!r} while the script runs",
                            instrument=self.name,
                            last_command=self._last_command,
                        )
            finally:
                self._unread(batch[i:])
            end = self._frame(rows.take(), is_eis)
            end.attrs["end_reason"] = (
                "voltage_limit" if (limit_hit and stop_on_limit) else "completed"
            )
            yield end

    def _package_row(self, line: str, is_eis: bool, step: int) -> tuple[tuple, float]:
        """One table row from a package line (the general parser); also the potential."""
        try:
            variables = parse_package(line)
        except PackageError as exc:
            raise InstrumentProtocolError(
                f"garbled data package: {exc}",
                instrument=self.name,
                last_command=self._last_command,
            ) from None
        values = {v.type: v.value for v in variables}
        try:
            if is_eis:
                return (values["dc"], values["cc"], values["cd"]), math.nan
            v = values["ab"]
            return (values["eb"], v, values.get("ba", 0.0), step), v
        except KeyError as exc:
            raise InstrumentProtocolError(
                f"data package {line!r} lacks variable {exc}",
                instrument=self.name,
                last_command=self._last_command,
            ) from None

    @staticmethod
    def _package_block(lines: list[bytes], is_eis: bool, step: int) -> np.ndarray | None:
        """Table rows of packages of one layout at once; ``None``: use the general parser."""
        columns = parse_packages(lines)
        if columns is None:
            return None
        values = {c.type: c.values for c in columns}
        names = ("dc", "cc", "cd") if is_eis else ("eb", "ab")
        if any(name not in values for name in names):
            return None  # the general parser reports the missing variable
        out = np.empty((len(lines), 3 if is_eis else 4))
        if is_eis:
            out[:, 0], out[:, 1], out[:, 2] = values["dc"], values["cc"], values["cd"]
        else:
            out[:, 0], out[:, 1] = values["eb"], values["ab"]
            out[:, 2] = values["ba"] if "ba" in values else 0.0
            out[:, 3] = step
        return out

    def _drain_to_end(self) -> None:
        # After a runtime error the instrument still ends the output with an empty line.
        try:
            while self._readline(self.timeout_s) != "":
                pass
        except InstrumentTimeoutError:
            pass
        self._running = False

    @staticmethod
    def _frame(data: np.ndarray | None, is_eis: bool) -> pd.DataFrame:
        cols = EIS_COLUMNS if is_eis else TIME_SERIES_COLUMNS
        if data is None or not len(data):
            return pd.DataFrame({c: pd.Series(dtype=float) for c in cols})
        frame = pd.DataFrame(data, columns=list(cols))
        if not is_eis:
            frame["step"] = frame["step"].astype(int)
        return frame


def _open_failure(port: str, exc: BaseException) -> str:
    """Why ``port`` could not be opened, in words, and what to check."""
    cause = exc.__context__ or exc.__cause__
    if isinstance(exc, ConnectionRefusedError) or isinstance(cause, ConnectionRefusedError):
        return (
            f"cannot open {port!r}: connection refused, nothing accepts connections at that "
            "address and port; check that the instrument (or its emulator) is running"
        )
    if isinstance(exc, TimeoutError) or isinstance(cause, TimeoutError):
        return (
            f"cannot open {port!r}: timed out while connecting; check that the instrument is "
            "on and reachable"
        )
    return (
        f"cannot open {port!r} ({exc}); check the cable, the port name and that no other "
        "program holds the port"
    )


class _Rows:
    """Table rows collected while a script runs: single rows and parsed blocks, in order."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.blocks: list[np.ndarray] = []
        self.rows: list[tuple] = []
        self.count = 0

    def add_row(self, row: tuple) -> None:
        self.rows.append(row)
        self.count += 1

    def add_block(self, block: np.ndarray) -> None:
        self._seal()
        self.blocks.append(block)
        self.count += len(block)

    def _seal(self) -> None:
        if self.rows:
            self.blocks.append(np.asarray(self.rows, dtype=float).reshape(-1, self.width))
            self.rows = []

    def take(self, n: int | None = None) -> np.ndarray | None:
        """Remove and return the first ``n`` rows (all when ``None``) as a float array."""
        self._seal()
        if not self.blocks:
            return None
        data = self.blocks[0] if len(self.blocks) == 1 else np.concatenate(self.blocks)
        if n is None or n >= len(data):
            self.blocks, self.count = [], 0
            return data
        self.blocks, self.count = [data[n:]], len(data) - n
        return data[:n]
