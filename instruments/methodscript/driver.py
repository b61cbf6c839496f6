"""Driver for PalmSens MethodSCRIPT instruments (EmStat4 HR/LR) over a serial link.

The driver writes one MethodSCRIPT per technique, sends it with ``e``, and parses the data
packages while the script runs, yielding DataFrame chunks. A current sequence reaches it one
step (one half-cycle) at a time (:meth:`~insitu.instruments.potentiostat.Potentiostat.stream`),
so a script never holds more than one step and ends with ``cell_off``. Limits are enforced
twice: the :class:`~insitu.instruments.potentiostat.Potentiostat` base class checks them
before anything is sent, and the voltage window of a galvanostatic technique is checked
*inside the script* (``if p > vmax`` / ``breakloop``), so the instrument stops on its own even
if the host hangs. Every script ends with ``on_finished: cell_off``.

A script streams each point once and cannot be asked for it again, so a data package that
comes damaged on the wire is skipped and counted in :attr:`~MethodScriptPotentiostat.
points_lost` (the run goes on; the other points keep their own times); damaged framing lines
(``e``, loop markers, ``Z``) are recognised by their layout and never stop a run. What ends a
technique early: the instrument's own ``!XXXX`` line
(:class:`~insitu.instruments.errors.InstrumentReportedError`) and, while a current is sourced,
a reading flagged overload inside the voltage window
(:class:`~insitu.instruments.errors.ComplianceError`); in both cases the cell is off and the
points before it are handed over first.

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
from dataclasses import dataclass

import numpy as np
import pandas as pd
import serial
from serial.urlhandler.protocol_socket import Serial as _SocketSerial

from ..errors import (
    ComplianceError,
    InstrumentConnectionError,
    InstrumentError,
    InstrumentProtocolError,
    InstrumentReportedError,
    InstrumentTimeoutError,
    reconnect_failed,
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
    STATUS_OVERLOAD,
    VAR_TYPES,
    ErrorReply,
    FirmwareInfo,
    PackageColumns,
    PackageError,
    classify_damaged,
    damaged_error,
    format_literal,
    is_damaged,
    is_damaged_form_of,
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

    def _readline_lenient(self, timeout_s: float | None = None) -> str:
        """The next line; bytes that are not ASCII become U+FFFD (a damaged line, see
        :func:`~.codec.is_damaged`) instead of an error: for the lines of a running script,
        which the driver reads on whatever the wire did to them."""
        self._wait_lines(timeout_s)
        raw = self._lines[self._pos]
        self._pos += 1
        return raw.decode("ascii", errors="replace")

    def _reported(
        self, line: str, script: list[str] | None = None, *, running: bool = False
    ) -> InstrumentReportedError:
        """The error an ``!XXXX`` line reports, with what it means and what to do (one line).

        ``running``: the line came while a script ran (a runtime error: the instrument stopped
        the script, whose ``on_finished:`` switched the cell off).
        """
        err = parse_error(line)
        assert err is not None
        return self._reported_error(err, script, running=running)

    def _reported_error(
        self,
        err: ErrorReply,
        script: list[str] | None,
        *,
        running: bool,
        damaged: str | None = None,
    ) -> InstrumentReportedError:
        """:meth:`_reported` for a parsed error (``damaged``: the line it was read from, when
        it came damaged on the wire); the script line it names is the last command."""
        where = ""
        last = self._last_command
        if err.line is not None:
            where = f" at script line {err.line}" + (
                f", column {err.column}" if err.column is not None else ""
            )
            if script and 1 <= err.line <= len(script):
                last = script[err.line - 1]
        note = f" (the line came damaged on the wire: {damaged!r})" if damaged else ""
        return InstrumentReportedError(
            f"instrument error 0x{err.code:04X}: {err.text}{where}{note}; "
            f"{_what_to_do(err.code, running)}",
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
                    raise reconnect_failed(
                        exc, reopen_error, instrument=self.name, what="opening the port again"
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
        """Send ``Z`` and read until the instrument is idle (script ended or none running).

        The script's output ends with an empty line (which damage on the wire never changes:
        it has no character to replace); ``Z!0006`` says no script ran any more. When the
        script ended on its own just before the ``Z`` arrived, that ``Z!0006`` comes after the
        empty line: it is not waited for here (its ``Z`` acknowledgement may have come
        damaged, so whether it comes is not known) but skipped by :meth:`cell_off`, the only
        caller, before the answer to its own script.
        """
        self._write("Z\n")
        while True:
            line = self._readline_lenient()
            if line == "Z!0006" or is_damaged_form_of(line, "Z!0006"):
                break  # nothing (or nothing any more) was running
            if line == "":  # the aborted script's output ended
                break
            # Anything else is the aborted script's last output, or the "Z" acknowledgement.
        self._running = False

    def cell_off(self) -> None:
        """Abort any running script, then run a script that only switches the cell off.

        If the link is lost, it is opened again and both are sent once more: ``Z`` and
        ``cell_off`` are safe to repeat, and a script left running must not be left on.
        """
        with self._lock:
            try:
                self._switch_off()
            except InstrumentConnectionError as exc:
                self._reconnect(exc)  # sends Z: whatever ran is aborted
                self._switch_off()

    def _switch_off(self) -> None:
        if self._running:
            self._abort_and_sync()
        self._discard_input()
        self._write("e\ncell_off\n\n", label="cell_off")
        self._read_script_accepted(
            "cell_off", stale=("Z", "Z!0006"), script=["cell_off"], running=False
        )
        while self._readline_lenient() != "":
            pass

    def _link_is_closed(self) -> bool:
        """Whether the other end has closed the link, seen without waiting (a socket or a
        pseudo-terminal that reads as closed). Output waiting is read and dropped: call it
        only where nothing waiting matters (before a script is sent)."""
        if self._fileno is None:
            return False
        try:
            ready, _, _ = select.select([self._fileno], [], [], 0)
            if ready:
                self._ser.read(65536)
        except (serial.SerialException, OSError, ValueError):
            return True
        return False

    def _reconnect(self, cause: InstrumentConnectionError) -> None:
        """Open the link again after ``cause`` and abort whatever might run (``Z``)."""
        log.info("%s: %s; opening the link again", self.name, cause)
        try:
            self._reopen()
            self._abort_and_sync()
        except InstrumentError as again:
            raise reconnect_failed(
                cause, again, instrument=self.name, what="opening the link again"
            ) from again
        self._discard_input()

    def _read_script_accepted(
        self,
        label: str,
        *,
        stale: tuple[str, ...] = (),
        script: list[str] | None = None,
        running: bool,
    ) -> None:
        """Read the instrument's answer to a script just sent: ``e``, or ``e!XXXX...``.

        A one-character answer is the ``e`` (damaged or not: a refusal is longer), so damage
        on the wire cannot make the driver take a running script for a refused one. Lines in
        ``stale`` (exact or damaged) are late replies to an earlier ``Z`` and are skipped.

        Raises
        ------
        InstrumentReportedError
            The instrument refused the script (``e!XXXX: Line L, Col C``).
        InstrumentProtocolError
            Anything else (what answers may not be a MethodSCRIPT instrument), or a refusal
            whose code came damaged.
        """
        while True:
            line = self._readline_lenient()
            # A damaged one-character line is taken for the "e", never for a stale "Z": a
            # wrong guess then costs nothing (the lines up to the script's empty line are
            # read next), while skipping a damaged "e" would wait for one that never comes.
            if line in stale or any(
                len(text) > 1 and is_damaged_form_of(line, text) for text in stale
            ):
                continue
            if len(line) == 1:
                return
            if parse_error(line):
                raise self._reported(line, script, running=running)
            what = "a damaged refusal" if is_damaged(line) else "an unexpected answer"
            raise InstrumentProtocolError(
                f"{what} {line!r} to the {label} script; if it repeats, check the cable and "
                "that a MethodSCRIPT instrument answers",
                instrument=self.name,
                last_command=label,
            )

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
        run = self._plan(technique)
        if isinstance(technique, Impedance):
            # Low frequencies take several periods per point.
            gap_s = 10.0 / min(technique.frequency_start_Hz, technique.frequency_stop_Hz)
        else:
            gap_s = technique.interval_s  # type: ignore[attr-defined]
        line_timeout = self.timeout_s + gap_s

        with self._lock:
            self._start_script(script)
            # `_running` stays set if we leave early (error, consumer stopped), so that
            # cell_off aborts the script before switching the cell off. Lines taken but not
            # handled yet are put back first, whatever ends this generator.
            batch: list[bytes] = []
            i = 0
            try:
                while True:
                    if i >= len(batch):
                        if run.rows.count:
                            # Hand over what arrived before waiting for more: at slow sampling
                            # (an OCV at 10 s a point) a full chunk would take tens of minutes,
                            # and the consumer can only stop the technique between chunks.
                            yield self._frame(run.rows.take(), run.is_eis)
                        batch, i = self._take_lines(line_timeout), 0
                    stop: InstrumentError | None = None
                    done = self._add_package_block(batch, i, run) if batch[i][:1] == b"P" else 0
                    if done:
                        i += done
                        stop = run.stop
                    else:
                        line = batch[i].decode("ascii", errors="replace")
                        i += 1
                        if line == "":
                            self._running = False
                            break
                        stop = self._script_line(line, run, script)
                        if line == "*" and run.rows.count:
                            yield self._frame(run.rows.take(), run.is_eis)
                    if stop is not None:
                        self._unread(batch[i:])
                        batch, i = [], 0
                        yield from self._stop_script(run, stop)
                    while run.rows.count >= self.chunk_size:
                        yield self._frame(run.rows.take(self.chunk_size), run.is_eis)
            finally:
                self._unread(batch[i:])
            self._script_ended(run)
            end = self._frame(run.rows.take(), run.is_eis)
            end.attrs["end_reason"] = (
                "voltage_limit" if (run.limit_hit and run.stop_on_limit) else "completed"
            )
            if run.interval_s is not None:
                # The time of the script's last point, lost or not (the script samples at
                # exact intervals): where a following step's time runs on from.
                end.attrs["end_time_s"] = run.last_time_s + run.trailing_lost * run.interval_s
            yield end

    def _plan(self, technique: Technique) -> _ScriptRun:
        """What the driver expects of the script of ``technique``, and its (empty) state."""
        is_eis = isinstance(technique, Impedance)
        run = _ScriptRun(
            is_eis=is_eis, rows=_Rows(len(EIS_COLUMNS if is_eis else TIME_SERIES_COLUMNS))
        )
        seq = as_sequence(technique) if isinstance(technique, GalvanostaticHold) else technique
        if isinstance(seq, CurrentSequence | OpenCircuit):
            run.interval_s = seq.interval_s
        if isinstance(seq, CurrentSequence):
            run.window = self._window(seq)
            run.stop_on_limit = seq.on_limit == "stop"
            run.current_controlled = True
            run.currents = tuple(step.current_A for step in seq.steps)
            if len(seq.steps) == 1:
                run.expected = math.floor(seq.steps[0].duration_s / seq.interval_s + 1e-9)
        elif isinstance(seq, Impedance) and seq.mode == "galvanostatic":
            run.current_controlled = True
            run.currents = (seq.dc_A,)
        return run

    def _start_script(self, script: list[str]) -> None:
        """Send ``script`` with ``e`` and read that the instrument accepted it.

        A link the other end has closed (a cable pulled between two techniques, or between
        two half-cycles of a sequence) is opened again first, seen without waiting; one that
        fails while the script is sent is opened again and the script sent once more (the
        write failed: the instrument did not get it whole). Each reconnection sends ``Z``
        first, which aborts anything that might run (its ``on_finished:`` switches the cell
        off). A link lost after the script went out is not retried: the script may run.
        """
        if self._link_is_closed():
            self._reconnect(
                InstrumentConnectionError(
                    "the link was found closed", instrument=self.name, last_command=script[0]
                )
            )
        self._discard_input()
        self._script_started = True
        payload = "e\n" + "\n".join(script) + "\n\n"
        try:
            self._write(payload, label=script[0])
        except InstrumentConnectionError as exc:
            self._reconnect(exc)
            self._write(payload, label=script[0])
        # From here the script may run even if its answer cannot be read: whatever fails
        # below, cell_off must abort it first.
        self._running = True
        try:
            self._read_script_accepted("e", script=script, running=False)
        except (InstrumentReportedError, InstrumentProtocolError):
            self._running = False  # refused, or not a MethodSCRIPT instrument: nothing runs
            raise

    def _script_line(self, line: str, run: _ScriptRun, script: list[str]) -> InstrumentError | None:
        """Handle one output line of the running script (not a package of the fast path).

        Returns the error that ends the technique (the instrument's ``!XXXX``, a reading in
        overload), or ``None``. How a line is told apart:

        * well-formed lines by their form: a package (``P...``), loop start (``M000A``) and
          end (``*``), ``T`` text, ``Z``, an error line (``!XXXX: Line L``);
        * a line that starts with ``P`` is a package (no other line does): if it does not
          parse, it came damaged on the wire and its point is lost;
        * any other line holding a character no output line holds (:func:`~.codec.is_damaged`)
          came damaged: it is attributed by its length and layout
          (:func:`~.codec.classify_damaged`), which damage does not change. Only one that can
          be nothing but a data package (at least 11 characters, not the layout of an error
          line) counts as a lost point; a damaged error line still ends the technique; a
          damaged loop marker is only logged;
        * a line of valid characters that is none of these is not MethodSCRIPT: a protocol
          error.
        """
        head = line[:1]
        if head == "P":
            return self._add_package_line(line, run)
        if is_loop_start(line):
            if head == "M":
                run.step += 1
            return None
        if is_loop_end(line):
            return None
        if head == "T" or line == "Z":
            log.info("%s: %s", self.name, line)
            return None
        if parse_error(line):
            return self._reported(line, script, running=True)
        if not is_damaged(line):
            raise InstrumentProtocolError(
                f"unexpected line {line!r} while the script runs",
                instrument=self.name,
                last_command=self._last_command,
            )
        return self._damaged_line(line, run, script)

    def _damaged_line(
        self, line: str, run: _ScriptRun, script: list[str]
    ) -> InstrumentError | None:
        """A line that came damaged on the wire, attributed by its layout."""
        kind = classify_damaged(line)
        if kind == "package":
            self._lost_point(line, run)
            return None
        if kind == "error":
            err = damaged_error(line)
            assert err is not None
            if err.code >= 0:
                return self._reported_error(err, script, running=True, damaged=line)
            return InstrumentProtocolError(
                f"the instrument reported an error while the script ran, but its code came "
                f"damaged on the wire ({line!r}); the script has ended (its on_finished "
                "switched the cell off): check the cable, then run the technique again",
                instrument=self.name,
                last_command=self._last_command,
            )
        if kind == "loop_start" and line[0] != "C":
            # The driver's scripts open measurement loops only (scans "C" come from
            # meas_loop_cv, which it never sends).
            run.step += 1
        level = logging.DEBUG if kind in ("marker", "loop_start") else logging.WARNING
        log.log(level, "%s: skipped a damaged %s line %r", self.name, kind, line)
        return None

    def _add_package_line(self, line: str, run: _ScriptRun) -> InstrumentError | None:
        """One package by the general parser; a damaged one is a lost point."""
        try:
            row, v, flagged = self._package_row(line, run.is_eis, max(run.step, 0))
        except PackageError:
            # No other line starts with "P": this is a data package the wire damaged.
            self._lost_point(line, run)
            return None
        run.packages += 1
        run.trailing_lost = 0
        if not run.is_eis:
            run.last_time_s = float(row[0])
        if flagged and run.current_controlled and run.in_window(v):
            return self._compliance(run, row, flagged)
        run.rows.add_row(row)
        if run.window and not run.window[0] <= v <= run.window[1]:
            run.limit_hit = True
        return None

    def _add_package_block(self, batch: list[bytes], i: int, run: _ScriptRun) -> int:
        """Fast path: consecutive readable packages of one width from ``batch[i]``, parsed
        at once. Returns how many lines it took (0: let the general path read ``batch[i]``);
        a reading flagged overload that ends the technique is left in ``run.stop``.
        """
        j, width = i + 1, len(batch[i])
        while j < len(batch) and len(batch[j]) == width and batch[j][:1] == b"P":
            j += 1
        # A damaged package has the width of the others: stop before the first one (its
        # bytes are ones no package holds), which the general path then counts as lost.
        j = i + _undamaged_run(batch[i:j])
        if j == i:
            return 0
        parsed = self._package_columns(batch[i:j], run.is_eis, max(run.step, 0))
        if parsed is None:
            return 0
        block, columns = parsed
        stop_at = None
        if run.current_controlled:
            flagged = _overloaded_rows(columns)
            if flagged is not None:
                if not run.is_eis:
                    # Beyond the window it is the voltage limit: the script stops there.
                    flagged &= run.in_window(block[:, 1])
                if flagged.any():
                    stop_at = int(flagged.argmax())
        keep = block if stop_at is None else block[:stop_at]
        if run.window and not run.limit_hit and len(keep):
            v = keep[:, 1]
            run.limit_hit = not bool(((v >= run.window[0]) & (v <= run.window[1])).all())
        run.rows.add_block(keep)
        run.packages += len(keep)
        if len(keep):
            run.trailing_lost = 0
            if not run.is_eis:
                run.last_time_s = float(keep[-1, 0])
        if stop_at is not None:
            run.packages += 1
            codes = [
                c.type
                for c in columns
                if c.status is not None and c.status[stop_at] & STATUS_OVERLOAD
            ]
            run.stop = self._compliance(run, tuple(block[stop_at]), codes)
            return stop_at + 1
        return j - i

    def _lost_point(self, line: str, run: _ScriptRun) -> None:
        """Count a data package that came damaged: its point is lost (it cannot be asked for
        again). The first of a technique is a warning, the others debug lines, and the
        technique's end gives the total: a noisy cable can damage thousands of packages, and
        a warning each would bury the log and slow the stream down."""
        self.points_lost += 1
        run.packages += 1
        run.lost += 1
        run.trailing_lost += 1
        if run.lost == 1:
            log.warning(
                "%s: a data package came damaged on the wire and was skipped (%r): its point "
                "is lost and leaves a gap in the data; MethodSCRIPT sends each point once",
                self.name,
                line[:80],
            )
        else:
            log.debug("%s: skipped damaged data package %r", self.name, line[:80])

    def _script_ended(self, run: _ScriptRun) -> None:
        """Book-keeping once the script's output has ended: the lost points' total, and a
        voltage limit whose point was lost."""
        if run.lost > 1:
            log.warning(
                "%s: %d of the technique's %d data packages came damaged on the wire and were "
                "skipped (%d points lost on this connection in all)",
                self.name,
                run.lost,
                run.packages,
                self.points_lost,
            )
        if (
            run.window
            and not run.limit_hit
            and run.trailing_lost
            and run.expected is not None
            and run.packages < run.expected
        ):
            # The script's loop ends early only at the voltage window (its breakloop), a
            # runtime error or an abort, and the last two say so in lines of their own. So a
            # script that ended early on a lost package ended at the window, on that point.
            run.limit_hit = True
            log.warning(
                "%s: the step ended after %d of %d points, its last package lost on the wire: "
                "taken as the voltage limit that stops the script",
                self.name,
                run.packages,
                run.expected,
            )

    def _stop_script(self, run: _ScriptRun, err: InstrumentError) -> Iterator[pd.DataFrame]:
        """End the technique on ``err``: the instrument idle and the cell off, then the points
        before it handed over, then ``err`` raised."""
        if isinstance(err, ComplianceError):
            # The script still runs: abort it and switch the cell off before anything else.
            try:
                self.cell_off()
            except InstrumentError as exc:
                log.warning("%s: could not switch the cell off: %s", self.name, exc)
        else:
            self._drain_to_end()  # the instrument ended the script itself (on_finished ran)
        while run.rows.count:
            yield self._frame(run.rows.take(self.chunk_size), run.is_eis)
        raise err

    def _compliance(self, run: _ScriptRun, row: tuple, codes: list[str]) -> ComplianceError:
        """The error for a package flagged overload while sourcing a current."""
        names = " and ".join(
            f"{VAR_TYPES[c].name if c in VAR_TYPES else 'variable'} ({c})" for c in codes
        )
        current = run.currents[min(max(run.step, 0), len(run.currents) - 1)]
        if run.is_eis:
            time_s = None
            where = f"at {row[0]:g} Hz"
        else:
            time_s = float(row[0])
            where = (
                f"at t = {time_s:g} s into the step (reading {row[1]:.6g} V, inside the "
                "voltage window)"
            )
        return ComplianceError(
            f"the instrument flagged its {names} reading as overloaded (status bit "
            f"0x{STATUS_OVERLOAD:X}) {where} while sourcing {current:g} A: it cannot hold "
            "that current through the cell. The technique was stopped and the cell switched "
            "off, the points before it kept; check the cell's contacts and leads, or lower "
            "the current",
            time_s=time_s,
            instrument=self.name,
            last_command=self._last_command,
        )

    def _package_row(self, line: str, is_eis: bool, step: int) -> tuple[tuple, float, list[str]]:
        """One table row from a package line (the general parser); also the potential and
        the variables flagged overload.

        Raises
        ------
        PackageError
            The line is not a well-formed package (damaged).
        InstrumentProtocolError
            A well-formed package without the variables the technique's script sends.
        """
        variables = parse_package(line)
        values = {v.type: v.value for v in variables}
        flagged = [v.type for v in variables if v.status and v.status & STATUS_OVERLOAD]
        try:
            if is_eis:
                return (values["dc"], values["cc"], values["cd"]), math.nan, flagged
            v = values["ab"]
            return (values["eb"], v, values.get("ba", 0.0), step), v, flagged
        except KeyError as exc:
            raise InstrumentProtocolError(
                f"data package {line!r} lacks variable {exc}",
                instrument=self.name,
                last_command=self._last_command,
            ) from None

    @staticmethod
    def _package_block(lines: list[bytes], is_eis: bool, step: int) -> np.ndarray | None:
        """Table rows of packages of one layout at once; ``None``: use the general parser."""
        parsed = MethodScriptPotentiostat._package_columns(lines, is_eis, step)
        return None if parsed is None else parsed[0]

    @staticmethod
    def _package_columns(
        lines: list[bytes], is_eis: bool, step: int
    ) -> tuple[np.ndarray, list[PackageColumns]] | None:
        """:meth:`_package_block`'s rows and the parsed columns (their status flags)."""
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
        return out, columns

    def _drain_to_end(self) -> None:
        # After a runtime error the instrument still ends the output with an empty line.
        try:
            while self._readline_lenient(self.timeout_s) != "":
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


def _what_to_do(code: int, running: bool) -> str:
    """What to do about MethodSCRIPT error ``code`` (``running``: it came while a script ran)."""
    if code == 0x7FFF:
        return "the instrument must be reset: switch it off and on again, then reconnect"
    if code >= 0x4000:
        return (
            "the instrument refused the script and nothing ran; the driver's script does not "
            "suit this firmware: report it with the firmware version ('t')"
        )
    if running:
        return (
            "the instrument stopped the script and its on_finished switched the cell off; "
            "check the cell, its leads and the technique's settings, then run it again"
        )
    return "the instrument refused the command; check its state and ranges, then try again"


# Bytes a well-formed data package can hold: "P", type letters, hex digits, SI prefixes
# (letters and the space), ";" and ",". Anything else (noise, a "*", a byte that is not
# ASCII) is damage.
_PACKAGE_CHARS = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ;,"
_PACKAGE_BYTE = np.zeros(256, dtype=bool)
_PACKAGE_BYTE[np.frombuffer(_PACKAGE_CHARS, dtype=np.uint8)] = True


def _undamaged_run(lines: list[bytes]) -> int:
    """How many of ``lines`` (all of one width) lead without a byte no package holds."""
    if not lines:
        return 0
    mat = np.frombuffer(b"".join(lines), dtype=np.uint8).reshape(len(lines), -1)
    damaged = ~_PACKAGE_BYTE[mat].all(axis=1)
    return int(damaged.argmax()) if damaged.any() else len(lines)


def _overloaded_rows(columns: list[PackageColumns]) -> np.ndarray | None:
    """Rows where any variable's status has the overload bit; ``None`` when no status."""
    flags = [(c.status & STATUS_OVERLOAD) != 0 for c in columns if c.status is not None]
    if not flags:
        return None
    return np.logical_or.reduce(flags)


@dataclass
class _ScriptRun:
    """One running script: what the driver expects of it, and what it delivered so far."""

    is_eis: bool
    rows: _Rows
    #: the voltage window the script enforces (current-controlled time series)
    window: tuple[float, float] | None = None
    stop_on_limit: bool = False
    #: a current is sourced: a reading flagged overload ends the technique
    current_controlled: bool = False
    currents: tuple[float, ...] = (0.0,)
    #: points a one-step time series gives when it runs to its end
    expected: int | None = None
    step: int = -1
    limit_hit: bool = False
    #: data packages seen (readable or not), and of them lost on the wire
    packages: int = 0
    lost: int = 0
    #: data packages lost since the last readable one
    trailing_lost: int = 0
    #: sampling interval of a time series, and the time of its last readable point
    interval_s: float | None = None
    last_time_s: float = 0.0
    #: the error that ends the technique, found by the fast path
    stop: InstrumentError | None = None

    def in_window(self, v: float | np.ndarray) -> bool | np.ndarray:
        """Whether potential(s) ``v`` lie inside the window (always, without one)."""
        if self.window is None:
            return True if np.ndim(v) == 0 else np.ones(np.shape(v), dtype=bool)
        return (v >= self.window[0]) & (v <= self.window[1])


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
