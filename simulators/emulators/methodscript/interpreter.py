"""MethodSCRIPT parser and interpreter of the emulated EmStat4 HR.

:func:`parse_script` turns the lines sent after ``e`` into a tree of statements, rejecting
what the instrument rejects with the instrument's error codes (``!4001`` unknown command with
the line and column). :class:`ScriptRunner` executes that tree against a
:class:`~insitu.simulators.cell.model.VirtualCell` on a :class:`~insitu.simulators.clock.SimClock`:
measurement loops produce their samples at exact simulated times ``t_start + k·t_interval``,
taken from the cell in batches (every sample due by ``clock.now()`` in one ``cell.hold`` call),
and output lines go to an ``emit`` callback. The instrument's own faults
(:class:`~insitu.simulators.faults.InstrumentFaults`) are counted in those samples
(:class:`MeasuredPoints`): a runtime error :data:`FAULT_ERROR_CODE` after ``error_after`` of
them, the overload status bit on every one after ``overload_after``. It is the far end of the
wire only: nothing here imports a driver.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from insitu.instruments.methodscript.codec import (
    STATUS_OVERLOAD,
    TECHNIQUE_IDS,
    VAR_TYPES,
    Variable,
    format_package,
    format_packages,
    parse_literal,
    split_script_line,
)

from ...cell.model import VirtualCell
from ...clock import SimClock
from ...faults import InstrumentFaults

__all__ = [
    "EMSTAT4_HR",
    "FAULT_ERROR_CODE",
    "DeviceSpec",
    "MeasuredPoints",
    "ScriptError",
    "ScriptRunner",
    "Statement",
    "parse_script",
]


@dataclass(frozen=True)
class DeviceSpec:
    """Ranges of the emulated instrument.

    The defaults are the EmStat4 HR: potential range ±6 V, current ranges 100 nA … 100 mA
    (range codes 9 … 27 of the ``ba`` metadata, as listed in PalmSens' ``mscript.py``),
    EIS up to 200 kHz.
    """

    device_code: str = "es4_hr"
    model: str = "EmStat4 HR"
    max_abs_potential_V: float = 6.0
    max_abs_current_A: float = 0.1
    max_frequency_Hz: float = 200e3
    min_frequency_Hz: float = 1e-5
    #: current range code → full scale (A)
    current_ranges: tuple[tuple[int, float], ...] = (
        (9, 100e-9),
        (12, 1e-6),
        (15, 10e-6),
        (18, 100e-6),
        (21, 1e-3),
        (24, 10e-3),
        (27, 100e-3),
    )
    pgstat_modes: frozenset[int] = frozenset({0, 2, 3, 4, 6})
    galvanostat_mode: int = 6
    #: Shortest sample interval of ``meas_loop_cp``/``meas_loop_ocp`` (the EmStat4's 1 kHz
    #: acquisition; the driver's limit too): a shorter one is refused with ``!000D``.
    min_interval_s: float = 1e-3
    #: Script memory in bytes (an emulator bound, generous beside the drivers' scripts): a
    #: longer script is refused at load time with ``!4005``.
    max_script_bytes: int = 256 * 1024
    #: Most frequencies of one ``meas_loop_eis``/``meas_loop_geis`` (an emulator bound; the
    #: drivers ask for tens): more are refused with ``!0007``.
    max_eis_frequencies: int = 10_000
    #: Deepest nesting of blocks (loops, ifs, measurement loops); deeper is ``!4005`` too.
    max_nesting: int = 64

    def current_range_code(self, current_A: float) -> int:
        """Smallest current range that holds ``current_A`` (the top range if none does)."""
        for code, full_scale in self.current_ranges:
            if abs(current_A) <= full_scale:
                return code
        return self.current_ranges[-1][0]


EMSTAT4_HR = DeviceSpec()

#: The error the instrument reports for ``InstrumentFaults.error_after``: ``!000E`` "An
#: overflow has occurred while averaging a measured value", a failure while a measurement loop
#: takes its samples (a runtime error, so it comes as ``!000E: Line L`` with the loop's line,
#: the script is aborted and ``on_finished:`` switches the cell off). The code and its text
#: are the MethodSCRIPT manual's appendix A (error codes), as transcribed in PalmSens-based
#: clients: the C++ ``MeasurementError.cpp`` (``ERROR_STATUS_OVERFLOW`` = 0x000E) and a Python
#: driver citing "MethodSCRIPT manual v1.8, appendix A"
#: (https://www.palmsens.com/app/uploads/2025/10/MethodSCRIPT-v1_8.pdf), both found in the
#: public code index; the manual itself could not be opened from here.
FAULT_ERROR_CODE = 0x000E


@dataclass
class MeasuredPoints:
    """Points an emulated instrument measured since it started (what its faults count).

    Attributes
    ----------
    count : int
        Samples taken by measurement loops (one per ``meas_loop_cp``/``meas_loop_ocp`` sample,
        one per EIS frequency), over all scripts.
    error_reported : bool
        Whether the ``error_after`` fault has fired (it fires once).
    """

    count: int = 0
    error_reported: bool = False


class ScriptError(Exception):
    """A script the instrument rejects (load time) or that fails while running.

    Attributes
    ----------
    code : int
        MethodSCRIPT error code.
    line, column : int or None
        1-based position in the script.
    """

    def __init__(self, code: int, line: int | None = None, column: int | None = None) -> None:
        super().__init__(f"MethodSCRIPT error 0x{code:04X} at line {line}, column {column}")
        self.code = code
        self.line = line
        self.column = column


@dataclass
class Statement:
    """One parsed script command; block commands hold their body (and else branches)."""

    command: str
    args: list[str]
    line: int
    body: list[Statement] = field(default_factory=list)
    #: ``if`` chains: list of (condition args or None for ``else``, body)
    branches: list[tuple[list[str] | None, list[Statement]]] = field(default_factory=list)
    columns: list[int] = field(default_factory=list)


# command → (min args, max args); measurement loops and blocks are handled separately
_SIMPLE: dict[str, tuple[int, int]] = {
    "var": (1, 1),
    "store_var": (3, 3),
    "copy_var": (2, 2),
    "add_var": (2, 2),
    "sub_var": (2, 2),
    "mul_var": (2, 2),
    "div_var": (2, 2),
    "set_pgstat_chan": (1, 1),
    "set_pgstat_mode": (1, 1),
    "set_max_bandwidth": (1, 1),
    "set_range": (2, 2),
    "set_range_minmax": (3, 3),
    "set_autoranging": (3, 3),
    "set_cr": (1, 1),
    "set_e": (1, 1),
    "set_i": (1, 1),
    "cell_on": (0, 0),
    "cell_off": (0, 0),
    "wait": (1, 1),
    "timer_start": (0, 0),
    "timer_get": (1, 1),
    "pck_start": (0, 0),
    "pck_add": (1, 1),
    "pck_end": (0, 0),
    "breakloop": (0, 0),
    "abort": (0, 0),
    "send_string": (1, 1),
    "set_acquisition_frac_autoadjust": (1, 1),
}
# measurement loop → (number of output variables, number of value arguments)
_MEAS_LOOPS: dict[str, tuple[int, int]] = {
    "meas_loop_cp": (2, 3),  # E I   i_dc t_interval t_run
    "meas_loop_ocp": (1, 2),  # E     t_interval t_run
    "meas_loop_eis": (3, 5),  # f zr zi  amplitude f_start f_end n_freq e_dc
    "meas_loop_geis": (3, 5),  # f zr zi  amplitude f_start f_end n_freq i_dc
}
_COMPARISONS = ("<", "<=", ">", ">=", "==", "!=")
_COMPARE: dict[str, Callable[[object, object], object]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}
_HANDLER_NAMES: dict[str, str] = {}


@functools.lru_cache(maxsize=4096)
def _literal(token: str) -> tuple[float, bool]:
    """:func:`parse_literal`, cached: loop conditions compare with the same literals."""
    return parse_literal(token)


_VAR_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_")


def _columns(text: str) -> list[int]:
    """1-based column where each token of ``text`` starts (comments stripped the same way)."""
    cols, in_token, quoted = [], False, False
    for i, ch in enumerate(text, start=1):
        if ch == '"':
            quoted = not quoted
        if ch == "#" and not quoted:
            break
        space = ch in " \t\r\n" and not quoted
        if not space and not in_token:
            cols.append(i)
        in_token = not space
    return cols


def parse_script(
    lines: list[str], max_nesting: int = EMSTAT4_HR.max_nesting
) -> tuple[list[Statement], list[Statement]]:
    """Parse script lines into (main statements, ``on_finished:`` statements).

    Parameters
    ----------
    lines : list of str
        The script, one line each, without line feeds.
    max_nesting : int
        Deepest nesting of blocks accepted (the interpreter recurses once per level).

    Raises
    ------
    ScriptError
        With the instrument's code: ``0x4001`` unknown command (column just past the command
        word, as the instruments report it), ``0x4002`` wrong number of arguments, ``0x4004``
        malformed literal, ``0x4007`` undeclared variable, ``0x4026`` variable declared twice,
        ``0x400B`` nested measurement loop, ``0x4018`` block not closed, ``0x4000`` stray
        ``endloop``/``endif``, ``0x4003`` a literal too large for a float, ``0x4005`` blocks
        nested deeper than ``max_nesting``.
    """
    declared: set[str] = set()
    main: list[Statement] = []
    finished: list[Statement] = []
    # stack of (statement, list being filled, kind)
    stack: list[tuple[Statement | None, list[Statement], str]] = [(None, main, "top")]
    in_meas = 0
    seen_finished = False

    for number, raw in enumerate(lines, start=1):
        tokens = list(split_script_line(raw))
        if not tokens:
            continue
        cols = _columns(raw)
        cmd, args = tokens[0], tokens[1:]
        if cmd.endswith(":") or cmd == "on_finished":
            if cmd not in ("on_finished:", "on_finished") or len(stack) > 1 or seen_finished:
                raise ScriptError(0x4000, number, cols[0])
            seen_finished = True
            stack = [(None, finished, "top")]
            continue
        stmt = Statement(cmd, args, number, columns=cols)
        if cmd == "endloop":
            if stack[-1][2] not in ("loop", "meas"):
                raise ScriptError(0x4000, number, cols[0])
            if stack[-1][2] == "meas":
                in_meas -= 1
            stack.pop()
            continue
        if cmd in ("elseif", "else", "endif"):
            owner, _, kind = stack[-1]
            if kind != "if" or owner is None:
                raise ScriptError(0x4000, number, cols[0])
            if cmd == "endif":
                stack.pop()
                continue
            if cmd == "elseif":
                _check_condition(stmt, declared)
            body: list[Statement] = []
            owner.branches.append((args if cmd == "elseif" else None, body))
            stack[-1] = (owner, body, "if")
            continue

        target = stack[-1][1]
        if cmd in ("loop", "if", *_MEAS_LOOPS) and len(stack) > max_nesting:
            # Refused here rather than failing with a RecursionError while running.
            raise ScriptError(0x4005, number, cols[0])
        if cmd in _MEAS_LOOPS:
            if in_meas:
                raise ScriptError(0x400B, number, cols[0])
            n_out, n_val = _MEAS_LOOPS[cmd]
            _check_count(stmt, n_out + n_val, n_out + n_val)
            for i, name in enumerate(args[:n_out]):
                _check_var(stmt, i, name, declared)
            for i in range(n_out, n_out + n_val):
                _check_value(stmt, i, declared)
            target.append(stmt)
            stack.append((stmt, stmt.body, "meas"))
            in_meas += 1
        elif cmd == "loop":
            _check_condition(stmt, declared)
            target.append(stmt)
            stack.append((stmt, stmt.body, "loop"))
        elif cmd == "if":
            _check_condition(stmt, declared)
            body = []
            stmt.branches.append((args, body))
            target.append(stmt)
            stack.append((stmt, body, "if"))
        elif cmd in _SIMPLE:
            lo, hi = _SIMPLE[cmd]
            _check_count(stmt, lo, hi)
            _check_simple(stmt, declared)
            target.append(stmt)
        else:
            # The instrument reports the column just past the unknown command word.
            raise ScriptError(0x4001, number, cols[0] + len(cmd))
    if len(stack) > 1:
        raise ScriptError(0x4018, len(lines) or 1, None)
    return main, finished


def _check_count(stmt: Statement, lo: int, hi: int) -> None:
    n = len(stmt.args)
    if not lo <= n <= hi:
        col = stmt.columns[min(n, hi) + 1] if n > hi else stmt.columns[-1]
        raise ScriptError(0x4002, stmt.line, col)


def _col(stmt: Statement, arg_index: int) -> int:
    return stmt.columns[arg_index + 1]


def _check_var(stmt: Statement, i: int, name: str, declared: set[str]) -> None:
    base = name.split("[", 1)[0]
    if base not in declared:
        raise ScriptError(0x4007, stmt.line, _col(stmt, i))


def _check_value(stmt: Statement, i: int, declared: set[str]) -> None:
    token = stmt.args[i]
    if token[:1].isalpha() and token[:1].islower() and set(token) <= _VAR_NAME_CHARS:
        _check_var(stmt, i, token, declared)
        return
    try:
        value, _ = parse_literal(token)
    except ValueError:
        raise ScriptError(0x4004, stmt.line, _col(stmt, i)) from None
    except OverflowError:
        value = math.inf
    if not math.isfinite(value):
        # A well-formed literal beyond a float (``set_i 999…9``, 400 digits): out of range.
        raise ScriptError(0x4003, stmt.line, _col(stmt, i))


def _check_condition(stmt: Statement, declared: set[str]) -> None:
    if len(stmt.args) != 3 or stmt.args[1] not in _COMPARISONS:
        raise ScriptError(0x4002, stmt.line, stmt.columns[-1])
    _check_value(stmt, 0, declared)
    _check_value(stmt, 2, declared)


def _check_simple(stmt: Statement, declared: set[str]) -> None:
    cmd, args = stmt.command, stmt.args
    if cmd == "var":
        name = args[0]
        if not (name[:1].isalpha() and name[:1].islower() and set(name) <= _VAR_NAME_CHARS):
            raise ScriptError(0x4004, stmt.line, _col(stmt, 0))
        if name in declared:
            raise ScriptError(0x4026, stmt.line, _col(stmt, 0))
        declared.add(name)
    elif cmd == "store_var":
        _check_var(stmt, 0, args[0], declared)
        _check_value(stmt, 1, declared)
        if args[2] not in VAR_TYPES and not (len(args[2]) == 2 and args[2].isalpha()):
            raise ScriptError(0x4006, stmt.line, _col(stmt, 2))
    elif cmd in ("copy_var",):
        _check_value(stmt, 0, declared)
        _check_var(stmt, 1, args[1], declared)
    elif cmd in ("add_var", "sub_var", "mul_var", "div_var"):
        _check_var(stmt, 0, args[0], declared)
        _check_value(stmt, 1, declared)
    elif cmd in ("pck_add", "timer_get"):
        _check_var(stmt, 0, args[0], declared)
    elif cmd in ("set_range", "set_autoranging", "set_range_minmax"):
        if len(args[0]) != 2 or not args[0].isalpha():
            raise ScriptError(0x4006, stmt.line, _col(stmt, 0))
        for i in range(1, len(args)):
            _check_value(stmt, i, declared)
    elif cmd == "send_string":
        if not (args[0].startswith('"') and args[0].endswith('"') and len(args[0]) >= 2):
            raise ScriptError(0x4004, stmt.line, _col(stmt, 0))
    else:
        for i in range(len(args)):
            _check_value(stmt, i, declared)


# --- execution -----------------------------------------------------------------------------
def _samples_due(t0: float, interval: float, now: float) -> int:
    """How many samples ``t0 + interval·i`` (i = 1, 2, …) are at or before ``now``.

    The same count as a search in the array of all sample times, without that array.
    """
    if now < t0 + interval:
        return 0
    count = math.floor((now - t0) / interval)
    # The division may round either way; settle it on the exact sample times.
    while t0 + interval * (count + 1) <= now:
        count += 1
    while count > 0 and t0 + interval * count > now:
        count -= 1
    return count


class _Break(Exception):
    pass


class _Abort(Exception):
    pass


@dataclass
class _Var:
    value: float
    type: str = "aa"
    integer: bool = False
    status: int | None = None
    range: int | None = None


class ScriptRunner:
    """Execute a parsed script on the virtual cell, emitting output lines.

    Parameters
    ----------
    cell : VirtualCell
        The cell under test; all access goes through ``cell_lock``.
    clock : SimClock
        Simulation clock; the runner sleeps on it between batches of samples.
    emit : callable
        Called with each output line (no ``\\n``); ``flush`` is called after each batch.
    cell_lock : threading.Lock
        Guards the cell (the emulator also reads it from other threads).
    spec : DeviceSpec
        Ranges of the emulated instrument.
    abort_event : threading.Event
        Set by the ``Z`` command; checked between samples and while sleeping.
    state : dict
        Instrument state kept between scripts (``cell_on``, ``mode``, ``e``, ``i``);
        updated in place.
    garble : callable, optional
        Applied to each package line before it is emitted (a test hook of the emulator).
    emit_block : callable, optional
        Called as ``emit_block(text, n)`` with ``n`` package lines (each ending in ``\\n``)
        that a measurement loop produced in one go; ``garble`` is then the callee's job.
        Without it those lines go through ``garble`` and ``emit`` one by one.
    faults : InstrumentFaults, optional
        The instrument's own faults: ``error_after`` (after that many points the next sample
        fails with :data:`FAULT_ERROR_CODE`), ``overload_after`` (samples after that many
        points carry the overload bit, ``STATUS_OVERLOAD``, in the status of their measured
        values).
    points : MeasuredPoints, optional
        The count of points the faults are counted in; the emulator passes one for its life.

    Notes
    -----
    Measurement loops whose body only reads the timer, builds packages and tests
    conditions take a fast path: the samples of a batch up to the first one for which an
    ``if`` condition holds are formatted at once (:func:`format_packages`, identical text to
    running the body sample by sample); that sample and the rest run statement by statement.
    """

    #: real seconds the runner sleeps at most before checking for an abort
    POLL_REAL_S = 0.01
    #: most samples taken from the cell (and formatted) in one batch: memory per batch is
    #: bounded whatever the interval, the run time and the clock's speed-up
    MAX_BATCH = 10_000
    #: output lines queued before they are flushed to the client even without a wait or a
    #: measurement (``loop`` + ``send_string`` forever must not pile up in memory)
    MAX_PENDING_LINES = 1_000

    def __init__(
        self,
        cell: VirtualCell,
        clock: SimClock,
        emit: Callable[[str], None],
        flush: Callable[[], None],
        cell_lock: threading.Lock,
        spec: DeviceSpec,
        abort_event: threading.Event,
        state: dict,
        garble: Callable[[str], str] | None = None,
        emit_block: Callable[[str, int], None] | None = None,
        faults: InstrumentFaults | None = None,
        points: MeasuredPoints | None = None,
    ) -> None:
        self.cell = cell
        self.clock = clock
        self._emit_line = emit
        self._flush_out = flush
        #: output lines queued since the last flush
        self.pending_lines = 0
        self.lock = cell_lock
        self.spec = spec
        self.abort_event = abort_event
        self.state = state
        self.garble = garble or (lambda line: line)
        self._emit_block = emit_block
        self.faults = faults or InstrumentFaults()
        #: shared with the emulator, so faults count points over all scripts
        self.points = points if points is not None else MeasuredPoints()
        self._plans: dict[int, list[tuple] | None] = {}
        self.vars: dict[str, _Var] = {}
        self.packet: list[Variable] | None = None
        with self.lock:
            self.t = max(self.clock.now(), self.cell.time_s)
        self.timer_start = self.t

    # --- output ----------------------------------------------------------------------------
    def emit(self, line: str) -> None:
        """Queue one output line; flush once :attr:`MAX_PENDING_LINES` are queued."""
        self._emit_line(line)
        self._count_pending(1)

    @property
    def emit_block(self) -> Callable[[str, int], None] | None:
        """The ``emit_block`` callback, counted like :meth:`emit` (None when not given)."""
        if self._emit_block is None:
            return None
        return self._emit_block_counted

    def _emit_block_counted(self, text: str, count: int) -> None:
        assert self._emit_block is not None
        self._emit_block(text, count)
        self._count_pending(count)

    def _count_pending(self, count: int) -> None:
        self.pending_lines += count
        if self.pending_lines >= self.MAX_PENDING_LINES:
            self.flush()

    def flush(self) -> None:
        """Send the queued output (it waits while the client does not read)."""
        self.pending_lines = 0
        self._flush_out()

    # --- the instrument's own faults ----------------------------------------------------
    def _samples_before_error(self, wanted: int) -> int:
        """How many of the next ``wanted`` samples may be taken before the ``error_after``
        fault fails one; raises that failure when the next sample is the one.

        Raises
        ------
        ScriptError
            :data:`FAULT_ERROR_CODE`, once ``error_after`` points were measured (once per
            emulator: the fault fires a single time).
        """
        after = self.faults.error_after
        if after is None or self.points.error_reported:
            return wanted
        left = after - self.points.count
        if left <= 0:
            self.points.error_reported = True
            raise ScriptError(FAULT_ERROR_CODE)
        return min(wanted, left)

    def _overloaded(self, n: int) -> np.ndarray:
        """Which of the next ``n`` samples the ``overload_after`` fault flags (the samples
        after the first ``overload_after`` points)."""
        after = self.faults.overload_after
        if after is None:
            return np.zeros(n, dtype=bool)
        return self.points.count + np.arange(n) >= after

    # --- helpers -------------------------------------------------------------------------
    def _applied_current(self) -> float:
        if not self.state["cell_on"]:
            return 0.0
        if self.state["mode"] == self.spec.galvanostat_mode:
            return self.state["i"]
        # Potentiostatic: the current that makes the cell sit at the set potential.
        return self._current_for_voltage(self.state["e"])

    def _current_for_voltage(self, voltage: float) -> float:
        if voltage == 0.0:
            return 0.0
        with self.lock:
            # Secant on the noise-free V(I); the cell may be non-linear.
            i0, i1 = 0.0, 1e-6
            v0, v1 = self.cell.voltage(i0), self.cell.voltage(i1)
            for _ in range(30):
                if v1 == v0:
                    break
                i0, i1 = i1, i1 + (voltage - v1) * (i1 - i0) / (v1 - v0)
                v0, v1 = v1, self.cell.voltage(i1)
                if abs(v1 - voltage) < 1e-9:
                    break
        return float(np.clip(i1, -self.spec.max_abs_current_A, self.spec.max_abs_current_A))

    def _advance(self, time_s: float) -> None:
        """Bring the cell to ``time_s`` under the present conditions."""
        current = self._applied_current()
        with self.lock:
            if time_s > self.cell.time_s:
                self.cell.advance_to(time_s, current)
        self.t = max(self.t, time_s)

    def _sleep_until(self, sim_time: float) -> None:
        # Sleep on the clock in short real-time slices so ``Z`` aborts within ~10 ms.
        step = self.POLL_REAL_S * self.clock.speedup
        while True:
            if self.abort_event.is_set():
                raise _Abort
            now = self.clock.now()
            if now >= sim_time:
                return
            self.clock.sleep_until(min(sim_time, now + step))

    def _value(self, token: str) -> float:
        var = self.vars.get(token.split("[", 1)[0])
        if var is not None:
            return var.value
        return _literal(token)[0]

    def _set(self, name: str, value: float, vtype: str, **meta) -> None:
        var = self.vars.setdefault(name, _Var(0.0))
        var.value, var.type = value, vtype
        var.integer = False
        var.status = meta.get("status")
        var.range = meta.get("range")

    def _condition(self, args: list[str]) -> bool:
        a, op, b = self._value(args[0]), args[1], self._value(args[2])
        return {
            "<": a < b,
            "<=": a <= b,
            ">": a > b,
            ">=": a >= b,
            "==": a == b,
            "!=": a != b,
        }[op]

    # --- running -------------------------------------------------------------------------
    def run(self, main: list[Statement], finished: list[Statement]) -> None:
        """Run ``main`` then ``finished``; raises :class:`ScriptError` on runtime errors.

        ``on_finished:`` runs after an abort (``Z`` or ``abort``) and after a runtime error too.
        """
        error: ScriptError | None = None
        try:
            self._block(main)
        except (_Abort, _Break):
            pass
        except ScriptError as exc:
            error = exc
        finally:
            self.flush()
        try:
            self.abort_event.clear()
            self._block(finished)
        except (_Abort, _Break, ScriptError):
            pass
        with self.lock:
            now = max(self.clock.now(), self.cell.time_s)
        self._advance(now)
        self.flush()
        if error is not None:
            raise error

    def _block(self, statements: list[Statement]) -> None:
        for stmt in statements:
            if self.abort_event.is_set():
                raise _Abort
            self._exec(stmt)

    def _exec(self, stmt: Statement) -> None:
        cmd = stmt.command
        try:
            name = _HANDLER_NAMES.get(cmd)
            if name is None:
                name = _HANDLER_NAMES[cmd] = f"_do_{cmd}"
            handler = getattr(self, name, None)
            if handler is not None:
                handler(stmt)
            elif cmd in _MEAS_LOOPS:
                self._meas_loop(stmt)
            # the remaining commands only configure ranges/bandwidth: accepted, no effect
        except ScriptError as exc:
            if exc.line is None:
                exc.line = stmt.line
            raise

    # simple commands
    def _do_var(self, s: Statement) -> None:
        self.vars[s.args[0]] = _Var(0.0)

    def _do_store_var(self, s: Statement) -> None:
        value, integer = (
            _literal(s.args[1]) if s.args[1] not in self.vars else (self._value(s.args[1]), False)
        )
        self._set(s.args[0], value, s.args[2])
        self.vars[s.args[0]].integer = integer

    def _do_copy_var(self, s: Statement) -> None:
        src = self.vars.get(s.args[0])
        if src is None:
            self._set(s.args[1], self._value(s.args[0]), "aa")
        else:
            self.vars[s.args[1]] = _Var(src.value, src.type, src.integer, src.status, src.range)

    def _arith(self, s: Statement, fn: Callable[[float, float], float]) -> None:
        var = self.vars[s.args[0]]
        var.value = fn(var.value, self._value(s.args[1]))
        if not math.isfinite(var.value):
            raise ScriptError(0x0010)

    def _do_add_var(self, s: Statement) -> None:
        self._arith(s, lambda x, y: x + y)

    def _do_sub_var(self, s: Statement) -> None:
        self._arith(s, lambda x, y: x - y)

    def _do_mul_var(self, s: Statement) -> None:
        self._arith(s, lambda x, y: x * y)

    def _do_div_var(self, s: Statement) -> None:
        if self._value(s.args[1]) == 0:
            raise ScriptError(0x0028)
        self._arith(s, lambda x, y: x / y)

    def _do_set_pgstat_mode(self, s: Statement) -> None:
        mode = int(self._value(s.args[0]))
        if mode not in self.spec.pgstat_modes:
            raise ScriptError(0x0021)
        if self.state.get("chan", 0) == 0:
            self._advance(self.t)
            self.state["mode"] = mode

    def _do_set_pgstat_chan(self, s: Statement) -> None:
        chan = int(self._value(s.args[0]))
        if chan not in (0, 1):
            raise ScriptError(0x001B)
        self.state["chan"] = chan

    def _do_set_e(self, s: Statement) -> None:
        e = self._value(s.args[0])
        if abs(e) > self.spec.max_abs_potential_V:
            raise ScriptError(0x000F)
        self._advance(self.t)
        self.state["e"] = e

    def _do_set_i(self, s: Statement) -> None:
        i = self._value(s.args[0])
        if abs(i) > self.spec.max_abs_current_A:
            raise ScriptError(0x0007)
        self._advance(self.t)
        self.state["i"] = i

    def _do_cell_on(self, s: Statement) -> None:
        self._advance(self.t)
        self.state["cell_on"] = True

    def _do_cell_off(self, s: Statement) -> None:
        self._advance(self.t)
        self.state["cell_on"] = False

    def _do_wait(self, s: Statement) -> None:
        duration = self._value(s.args[0])
        if duration < 0:
            raise ScriptError(0x000D)
        target = self.t + duration
        self.flush()
        self._sleep_until(target)
        self._advance(target)

    def _do_timer_start(self, s: Statement) -> None:
        self.timer_start = self.t

    def _do_timer_get(self, s: Statement) -> None:
        self._set(s.args[0], self.t - self.timer_start, "eb")

    def _do_pck_start(self, s: Statement) -> None:
        self.packet = []

    def _do_pck_add(self, s: Statement) -> None:
        if self.packet is None:
            raise ScriptError(0x0001)
        var = self.vars[s.args[0]]
        value: float = int(var.value) if var.integer else var.value
        self.packet.append(Variable(var.type, value, var.status, var.range))

    def _do_pck_end(self, s: Statement) -> None:
        if not self.packet:
            raise ScriptError(0x0001)
        self.emit(self.garble(format_package(self.packet)))
        self.packet = None

    def _do_send_string(self, s: Statement) -> None:
        self.emit("T" + s.args[0][1:-1])

    def _do_breakloop(self, s: Statement) -> None:
        raise _Break

    def _do_abort(self, s: Statement) -> None:
        raise _Abort

    def _do_if(self, s: Statement) -> None:
        for condition, body in s.branches:
            if condition is None or self._condition(condition):
                self._block(body)
                return

    def _do_loop(self, s: Statement) -> None:
        self.emit("L")
        try:
            while self._condition(s.args):
                # Checked here too: an empty body (``loop a == a``/``endloop``) never reaches
                # the check in _block, and Z must end it.
                if self.abort_event.is_set():
                    raise _Abort
                try:
                    self._block(s.body)
                except _Break:
                    break
        finally:
            self.emit("+")

    # measurement loops
    def _meas_loop(self, s: Statement) -> None:
        cmd = s.command
        n_out, _ = _MEAS_LOOPS[cmd]
        outs, vals = s.args[:n_out], [self._value(x) for x in s.args[n_out:]]
        galvanostatic = cmd in ("meas_loop_cp", "meas_loop_geis")
        if galvanostatic and self.state["mode"] != self.spec.galvanostat_mode:
            raise ScriptError(0x0023)
        if cmd == "meas_loop_ocp" and self.state["cell_on"]:
            raise ScriptError(0x0014)
        if cmd != "meas_loop_ocp" and not self.state["cell_on"]:
            raise ScriptError(0x4027)
        self.emit(f"M{TECHNIQUE_IDS[cmd]:04X}")
        try:
            if cmd in ("meas_loop_cp", "meas_loop_ocp"):
                self._time_loop(s, outs, vals)
            else:
                self._eis_loop(s, outs, vals)
        except _Break:
            pass
        finally:
            self.emit("*")
            self.flush()

    def _time_loop(self, s: Statement, outs: list[str], vals: list[float]) -> None:
        if s.command == "meas_loop_cp":
            current, interval, run = vals
            if abs(current) > self.spec.max_abs_current_A:
                raise ScriptError(0x0007)
        else:
            current, (interval, run) = 0.0, vals
        if not (interval >= self.spec.min_interval_s and run >= 0):
            raise ScriptError(0x000D)
        if not math.isfinite(run / interval):
            raise ScriptError(0x000D)
        if s.command == "meas_loop_cp":
            self._advance(self.t)
            self.state["i"] = current
        t0 = self.t
        n = math.floor(run / interval + 1e-9)
        range_code = self.spec.current_range_code(current)
        plan = self._quiet_plan(s, outs)
        k = 0
        while k < n:
            # Sample i (0-based) is due at t0 + interval·(i + 1); the times of a batch are made
            # per batch, never for the whole run (which may be any number of samples).
            self._sleep_until(t0 + interval * (k + 1))
            # Every sample already due is taken in one hold call (at most MAX_BATCH); none
            # that is not yet due, and none past the one the error_after fault fails.
            j = min(n, k + self.MAX_BATCH, max(k + 1, _samples_due(t0, interval, self.clock.now())))
            j = k + self._samples_before_error(j - k)
            times = t0 + interval * np.arange(k + 1, j + 1)
            with self.lock:
                volts = self.cell.hold(current, times)
            self.t = float(times[-1])
            idx = 0
            while idx < j - k:
                if plan is not None and self.packet is None:
                    if self.abort_event.is_set():
                        raise _Abort
                    done = self._quiet_samples(
                        plan, outs, current, range_code, times[idx:], volts[idx:]
                    )
                    if done:
                        self.points.count += done
                        idx += done
                        continue
                v = float(volts[idx])
                overload = abs(v) > self.spec.max_abs_potential_V or self._overloaded(1)[0]
                status = STATUS_OVERLOAD if overload else 0
                # Counted before the body runs: the sample is measured whatever the body does.
                self.points.count += 1
                # Measured values are reported at the sample's own time, for timer_get.
                self.t = float(times[idx])
                self._set(outs[0], v, "ab", status=status)
                if len(outs) > 1:
                    self._set(outs[1], current, "ba", status=0, range=range_code)
                try:
                    self._block(s.body)
                except _Break:
                    self.t = float(times[-1])
                    raise
                idx += 1
            self.t = float(times[-1])
            self.flush()
            k = j

    # fast path of time loops
    def _quiet_plan(self, s: Statement, outs: list[str]) -> list[tuple] | None:
        """The loop body as simple steps, or ``None`` when it needs the interpreter.

        Allowed: ``timer_get``, ``pck_start``/``pck_add``/``pck_end`` (one package per
        sample) and ``if``/``elseif`` chains without ``else`` (their bodies run on the
        interpreter, for the sample whose condition holds).
        """
        key = id(s)
        if key in self._plans:
            return self._plans[key]
        plan: list[tuple] | None = []
        timers = {st.args[0] for st in s.body if st.command == "timer_get"}
        if len(set(outs)) != len(outs) or any("[" in name for name in outs):
            plan = None
        written: set[str] = set(outs)
        in_packet, packages = False, 0

        def readable(token: str) -> bool:
            if "[" in token:
                return False
            if token in self.vars:
                return token not in timers or token in written
            try:
                _literal(token)
            except ValueError:
                return False
            return token not in timers

        for st in s.body:
            if plan is None:
                break
            cmd, args = st.command, st.args
            if cmd == "timer_get" and "[" not in args[0] and args[0] in self.vars:
                written.add(args[0])
                plan.append(("timer", args[0]))
            elif cmd == "pck_start":
                in_packet = True
                plan.append(("start",))
            elif cmd == "pck_add" and in_packet and readable(args[0]) and args[0] in self.vars:
                plan.append(("add", args[0]))
            elif cmd == "pck_end" and in_packet and plan[-1][0] == "add":
                in_packet = False
                packages += 1
                plan.append(("end",))
            elif (
                cmd == "if"
                and all(cond is not None for cond, _ in st.branches)
                and all(readable(c[0]) and readable(c[2]) for c, _ in st.branches)  # type: ignore[index]
            ):
                plan.append(("if", [cond for cond, _ in st.branches]))
            else:
                plan = None
        if plan is not None and (in_packet or packages > 1):
            plan = None
        self._plans[key] = plan
        return plan

    def _quiet_samples(
        self,
        plan: list[tuple],
        outs: list[str],
        current: float,
        range_code: int,
        times: np.ndarray,
        volts: np.ndarray,
    ) -> int:
        """Run the body for the leading samples where no ``if`` branch is taken.

        Returns how many samples were handled (0: the first one needs the interpreter).
        """
        n = len(times)
        volts = np.asarray(volts[:n], dtype=float)
        overload = (np.abs(volts) > self.spec.max_abs_potential_V) | self._overloaded(n)
        status = np.where(overload, STATUS_OVERLOAD, 0)
        timer = times - self.timer_start
        # name -> (type, value(s), status, range)
        env: dict[str, tuple] = {}

        def get(name: str) -> tuple:
            if name in env:
                return env[name]
            var = self.vars[name]
            value = int(var.value) if var.integer else var.value
            return (var.type, value, var.status, var.range)

        env[outs[0]] = ("ab", volts, status, None)
        if len(outs) > 1:
            env[outs[1]] = ("ba", current, 0, range_code)
        quiet = np.ones(n, dtype=bool)
        packet: list[tuple] = []
        columns: list[tuple] = []
        for step in plan:
            op = step[0]
            if op == "timer":
                env[step[1]] = ("eb", timer, None, None)
            elif op == "start":
                packet = []
            elif op == "add":
                packet.append(get(step[1]))
            elif op == "end":
                columns = packet
            else:
                for a, cmp, b in step[1]:
                    lhs = get(a)[1] if a in env or a in self.vars else _literal(a)[0]
                    rhs = get(b)[1] if b in env or b in self.vars else _literal(b)[0]
                    quiet &= ~np.asarray(_COMPARE[cmp](lhs, rhs), dtype=bool)
        m = n if quiet.all() else int(quiet.argmin())
        if m == 0:
            return 0
        if columns:
            try:
                text = format_packages(columns, m)
            except ValueError:
                return 0  # let the interpreter raise it, sample by sample
            if self.emit_block is not None:
                self.emit_block(text, m)
            else:
                for line in text.splitlines():
                    self.emit(self.garble(line))
        # Leave the variables as the interpreter would after the last of these samples.
        last = m - 1
        self.t = float(times[last])
        self._set(outs[0], float(volts[last]), "ab", status=int(status[last]))
        if len(outs) > 1:
            self._set(outs[1], current, "ba", status=0, range=range_code)
        for step in plan:
            if step[0] == "timer":
                self._set(step[1], float(timer[last]), "eb")
        return m

    def _eis_loop(self, s: Statement, outs: list[str], vals: list[float]) -> None:
        amplitude, f_start, f_end, n_freq, dc = vals
        # The frequencies are one array: their number is bounded like the instrument's.
        if not 1 <= n_freq <= self.spec.max_eis_frequencies:
            raise ScriptError(0x0007)
        n = int(n_freq)
        if not (
            0 < f_start <= self.spec.max_frequency_Hz and 0 < f_end <= self.spec.max_frequency_Hz
        ):
            raise ScriptError(0x0011)
        if f_start < self.spec.min_frequency_Hz or f_end < self.spec.min_frequency_Hz:
            raise ScriptError(0x0011)
        if not amplitude > 0:
            raise ScriptError(0x0012)
        if s.command == "meas_loop_geis":
            self._advance(self.t)
            self.state["i"] = dc
            dc_current = dc
        else:
            self._advance(self.t)
            self.state["e"] = dc
            dc_current = self._current_for_voltage(dc) if self.state["cell_on"] else 0.0
        freqs = np.geomspace(f_start, f_end, n) if n > 1 else np.array([f_start])
        for f in freqs:
            # A point takes a few periods plus settling; the cell passes the DC current meanwhile.
            t_point = self.t + max(3.0 / f, 0.02)
            self.flush()
            self._sleep_until(t_point)
            self._samples_before_error(1)
            status = STATUS_OVERLOAD if self._overloaded(1)[0] else 0
            self.points.count += 1
            with self.lock:
                if t_point > self.cell.time_s:
                    self.cell.advance_to(t_point, dc_current)
                z = complex(self.cell.impedance(np.array([f]))[0])
            self.t = t_point
            self._set(outs[0], float(f), "dc")
            self._set(
                outs[1],
                z.real,
                "cc",
                status=status,
                range=self.spec.current_range_code(amplitude / max(abs(z), 1e-12)),
            )
            self._set(outs[2], z.imag, "cd", status=status)
            self._block(s.body)
