"""The emulated 2450's configurable trigger model: its blocks and their execution in time.

Semantics (Reference Manual 2450-901-01 and its 2461 sibling, section 6): blocks are
numbered 1 to 63 in sequence; every counter starts at 0 when the model starts, is
incremented when reached and branches while it is below its target; a counter that has run
out starts over the next time it is reached (the manual's nested-loop example, 5 readings ×
3 passes = 15, needs exactly that), and ``:BRANch:COUNter:RESet`` sets one to 0; a
configuration-next block recalls index 1 the first time unless a recall block recalled one
before, then the following index, wrapping after the last; a limit block tests the last
reading of its measure block (the previous measure block when 0), swapping A and B when
A > B. A model that cannot start (a branch to a missing block, a limit block without a
measure block before it) is refused by ``:INIT`` with -221; a configuration list or index
that does not exist is error 2790 (and FAILED state when the model reaches it).

Timing
------
Blocks take effect at the simulated time the model reaches them; delay blocks take their
time and nothing else does (measurement aperture takes no simulated time). The model runs
lazily: before each command the emulator executes everything due by ``clock.now()``. A loop
``DELAY, MEASURE[, LIMIT], COUNTER -> DELAY`` at one source setting is one vectorised batch
(one ``cell.hold()`` for all its due readings, at most 2000). With a limit branch in the loop
the batch is cut at the first reading that meets the limit: the cell is snapshotted (a deep
copy sharing the immutable material data, ~0.1 ms) before the hold and, on a cut, restored
and held again up to that reading, so it is never advanced past it at the old source
setting. A batch also ends where one of the instrument's own faults starts (see
:meth:`~insitu.simulators.emulators.keithley2450.source.SourceMeasureUnit.readings_to_fault`);
when its error fires (the output is then off) the model stops in the FAILED state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..scpi import SCPIError
from .source import SourceMeasureUnit
from .state import (
    CONFIG_LIST_MISSING,
    CONFIG_LIST_MISSING_TEXT,
    InstrumentState,
    format_setting,
)

__all__ = ["LIMIT_TYPES", "MAX_BLOCKS", "Block", "TriggerModel", "limit_met"]

MAX_BLOCKS = 63  # trigger-model block numbers run from 1 to this
# Block executions per catch-up outside the vectorised loop (bounds a model that spins in
# zero simulated time, e.g. a branch-always loop without a delay).
_MAX_STEPS = 200_000
# Readings produced per cell.hold() call; bounds how late the emulator notices compliance.
_BATCH = 2000

#: Limit types of ``:TRIGger:BLOCk:BRANch:LIMit:CONStant`` (manual notation).
LIMIT_TYPES = ("ABOVe", "BELow", "INside", "OUTSide")
_LIMIT_NAMES = {"ABOV": "ABOVE", "BEL": "BELOW", "IN": "INSIDE", "OUTS": "OUTSIDE"}


@dataclass
class Block:
    """One trigger-model building block (``:TRIGger:BLOCk:...``)."""

    kind: str  # the name :TRIGger:BLOCk:LIST? shows, e.g. "MEASURE"
    buffer: str = ""  # BUFFER_CLEAR, MEASURE
    count: int = 1  # MEASURE: readings per visit; BRANCH_COUNTER: target count
    delay_s: float = 0.0  # DELAY_CONSTANT
    target: int = 0  # branch-to block (BRANCH_*), counter block (BRANCH_COUNTER_RESET)
    config: str = ""  # CONFIG_RECALL, CONFIG_NEXT: source configuration list
    index: int = 1  # CONFIG_RECALL
    state: bool = False  # SOURCE_OUTPUT
    limit_type: str = ""  # BRANCH_LIMIT_CONSTANT: ABOV, BEL, IN, OUTS
    limit_a: float = 0.0
    limit_b: float = 0.0
    measure_block: int = 0  # BRANCH_LIMIT_CONSTANT: 0 = the previous measure block

    def describe(self) -> str:
        """The block as ``:TRIGger:BLOCk:LIST?`` shows it."""
        kind = self.kind
        if kind == "BUFFER_CLEAR":
            return f"{kind} BUFFER: {self.buffer.lower()}"
        if kind == "MEASURE":
            return f"{kind} BUFFER: {self.buffer.lower()} COUNT: {self.count}"
        if kind == "DELAY_CONSTANT":
            return f"{kind} DELAY: {self.delay_s:.9f}"
        if kind == "BRANCH_COUNTER":
            return f"{kind} VALUE: {self.count} BRANCH_BLOCK: {self.target}"
        if kind == "BRANCH_COUNTER_RESET":
            return f"{kind} COUNTER: {self.target}"
        if kind == "BRANCH_ALWAYS":
            return f"{kind} BRANCH_BLOCK: {self.target}"
        if kind == "BRANCH_LIMIT_CONSTANT":
            return (
                f"{kind} LIMIT_TYPE: {_LIMIT_NAMES[self.limit_type]} "
                f"LIMIT_A: {format_setting(self.limit_a)} "
                f"LIMIT_B: {format_setting(self.limit_b)} BRANCH_BLOCK: {self.target} "
                f"MEASURE_BLOCK: {self.measure_block}"
            )
        if kind == "CONFIG_RECALL":
            return f"{kind} CONFIG_LIST: {self.config} INDEX: {self.index}"
        if kind == "CONFIG_NEXT":
            return f"{kind} CONFIG_LIST: {self.config}"
        if kind == "SOURCE_OUTPUT":
            return f"{kind} STATE: {'ON' if self.state else 'OFF'}"
        return kind


@dataclass
class _Run:
    """Execution state of a running trigger model."""

    pc: int  # the block to execute next
    t: float  # simulated time the model has reached
    counters: dict[int, int] = field(default_factory=dict)
    last_reading: dict[int, float] = field(default_factory=dict)  # per measure block
    delay_end: float | None = None  # set while the model waits in the delay block ``pc``
    config_index: dict[str, int] = field(default_factory=dict)  # trigger-model list positions


def limit_met(kind: str, low: float, high: float, values: np.ndarray) -> np.ndarray:
    """Whether each measurement meets a constant-limit branch's criterion.

    Parameters
    ----------
    kind : str
        Short form of the limit type: ``ABOV``, ``BEL``, ``IN`` or ``OUTS``.
    low, high : float
        The lower and upper limit.
    values : numpy.ndarray
        Readings.
    """
    if kind == "ABOV":
        return values > high
    if kind == "BEL":
        return values < low
    if kind == "IN":
        return (values >= low) & (values <= high)
    return (values < low) | (values > high)


class TriggerModel:
    """The blocks of the trigger model and, while it runs, its execution.

    Parameters
    ----------
    state : InstrumentState
        Buffers, configuration lists and the error queue the blocks act on.
    smu : SourceMeasureUnit
        The front end that advances and measures the cell.
    """

    def __init__(self, state: InstrumentState, smu: SourceMeasureUnit) -> None:
        self.state = state
        self.smu = smu
        self.blocks: dict[int, Block] = {}
        self._run: _Run | None = None
        self._last_counters: dict[int, int] = {}
        self.model_state = "EMPTY"
        self.last_block = 0

    # --- building ----------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """Whether the model is running (``:INIT`` until it ends or is aborted)."""
        return self._run is not None

    def refuse_if_running(self) -> None:
        """Raise -221: the model cannot be changed while it runs."""
        if self.running:
            raise SCPIError(-221, "Settings conflict; the trigger model is running")

    def set_block(self, number: int, block: Block) -> None:
        """Define block ``number`` (``:TRIGger:BLOCk:...``)."""
        self.refuse_if_running()
        # Blocks are numbered in sequence: each one replaces a block or follows the last.
        if number > len(self.blocks) + 1:
            raise SCPIError(
                -222, f"Parameter data out of range; block {len(self.blocks) + 1} is next"
            )
        self.blocks[number] = block
        self.model_state = "BUILDING"

    def load_empty(self) -> None:
        """The ``"Empty"`` template: no blocks (aborts a running model)."""
        self.abort()
        self.blocks = {}
        self.model_state = "EMPTY"
        self.last_block = 0

    def load_simple_loop(self, count: int, delay_s: float, buffer: str) -> None:
        """The ``"SimpleLoop"`` template."""
        self.refuse_if_running()
        # The SimpleLoop template's blocks: clear the buffer, then delay and measure
        # ``count`` times.
        self.blocks = {
            1: Block("BUFFER_CLEAR", buffer=buffer),
            2: Block("DELAY_CONSTANT", delay_s=delay_s),
            3: Block("MEASURE", buffer=buffer, count=1),
            4: Block("BRANCH_COUNTER", count=count, target=2),
        }
        self.model_state = "BUILDING"
        self.last_block = 0

    def uses(self, *, buffer: str = "", config: str = "") -> bool:
        """Whether the running model uses the buffer or configuration list (upper-case keys)."""
        if not self.running:
            return False
        return any(
            (buffer and b.buffer.upper() == buffer) or (config and b.config.upper() == config)
            for b in self.blocks.values()
        )

    def counter_value(self, number: int) -> int:
        """The count of counter block ``number`` (of the last run when none runs)."""
        block = self.blocks.get(number)
        if block is None or block.kind != "BRANCH_COUNTER":
            raise SCPIError(-224, f"Illegal parameter value; block {number} is not a counter")
        counters = self._run.counters if self._run is not None else self._last_counters
        return counters.get(number, 0)

    def list_reply(self) -> str:
        """The reply of ``:TRIGger:BLOCk:LIST?``."""
        return ";".join(f"{n}) {self.blocks[n].describe()}" for n in sorted(self.blocks))

    def state_reply(self) -> str:
        """The reply of ``:TRIGger:STATe?``: the state twice and the block last executed."""
        s = self.model_state
        return f"{s};{s};{self.last_block}"

    def _previous_measure(self, number: int) -> int:
        for k in range(number - 1, 0, -1):
            if self.blocks[k].kind == "MEASURE":
                return k
        return 0

    def _validate(self) -> None:
        """The checks the instrument makes when a trigger model is started."""
        blocks = self.blocks
        if not blocks:
            raise SCPIError(-221, "Settings conflict; the trigger model is empty")
        for number, block in blocks.items():
            if block.kind.startswith("BRANCH") and block.kind != "BRANCH_COUNTER_RESET":
                if block.target not in blocks:
                    raise SCPIError(
                        -221,
                        f"Settings conflict; block {number} branches to undefined block "
                        f"{block.target}",
                    )
            if block.kind == "BRANCH_COUNTER_RESET":
                target = blocks.get(block.target)
                if target is None or target.kind != "BRANCH_COUNTER":
                    raise SCPIError(
                        -221, f"Settings conflict; block {block.target} is not a counter block"
                    )
            if block.kind == "BRANCH_LIMIT_CONSTANT":
                source = block.measure_block or self._previous_measure(number)
                if source == 0 or source >= number or blocks[source].kind != "MEASURE":
                    raise SCPIError(
                        -221, f"Settings conflict; block {number} needs a preceding measure block"
                    )
            if block.buffer and block.buffer.upper() not in self.state.buffers:
                raise SCPIError(-224, "Illegal parameter value; buffer does not exist")
            if block.config and block.config.upper() not in self.state.config_lists:
                raise SCPIError(CONFIG_LIST_MISSING, CONFIG_LIST_MISSING_TEXT)

    # --- running -------------------------------------------------------------------------
    def start(self, t: float) -> None:
        """``:INITiate``: check the model and start it at simulated time ``t``."""
        if self.running:
            raise SCPIError(-213)
        self._validate()
        # Counters (and configuration-list positions) start from zero at every start.
        self._run = _Run(pc=1, t=t)
        self.model_state = "RUNNING"

    def abort(self) -> None:
        """``:ABORt``: stop a running model (nothing happens when none runs)."""
        if self.running:
            self._finish("ABORTED")

    def due(self) -> float | None:
        """Simulated time of the model's next step, or None when no model runs."""
        run = self._run
        if run is None:
            return None
        return run.delay_end if run.delay_end is not None else run.t

    def _finish(self, state: str) -> None:
        if self._run is not None:
            self._last_counters = dict(self._run.counters)
        self._run = None
        self.model_state = state

    def _fail(self, code: int, message: str) -> None:
        """Stop the model in the FAILED state with an error in the queue."""
        self.state.errors.push(code, message)
        self._finish("FAILED")

    def execute(self, now: float) -> None:
        """Execute the running trigger model (if any) up to simulated time ``now``.

        Every block takes effect at the simulated time the model reaches it; only delay
        blocks take time (measurements take none). A loop ``DELAY, MEASURE[, LIMIT], COUNTER``
        at one source setting runs vectorised: everything due by ``now`` in one batch.
        """
        run = self._run
        if run is None:
            return
        steps = 0
        while self._run is run:
            if run.pc > len(self.blocks) or run.pc < 1:
                self._finish("IDLE")
                return
            block = self.blocks[run.pc]
            if block.kind == "DELAY_CONSTANT":
                end = run.delay_end if run.delay_end is not None else run.t + block.delay_s
                if end > now:
                    run.delay_end = end  # waiting in this block
                    return
                if self._loop_batch(run, now):
                    continue
                run.t, run.delay_end = end, None
                self.last_block = run.pc
                run.pc += 1
                continue
            steps += 1
            if steps > _MAX_STEPS:
                return  # a zero-time loop: come back at the next command
            self._execute_block(run, block)

    def _execute_block(self, run: _Run, block: Block) -> None:
        """Execute one block at simulated time ``run.t`` (not a delay block)."""
        number = run.pc
        self.last_block = number
        run.pc = number + 1
        kind = block.kind
        if kind == "BUFFER_CLEAR":
            self.state.buffers[block.buffer].clear()
        elif kind == "MEASURE":
            self.smu.advance_to(run.t)
            readings, failed = self.smu.take_readings(np.full(block.count, run.t), block.buffer)
            run.last_reading[number] = float(readings[-1])
            if failed:
                self._finish("FAILED")  # "stopped because of an error" (:TRIGger:STATe?)
        elif kind == "BRANCH_LIMIT_CONSTANT":
            source = block.measure_block or self._previous_measure(number)
            value = run.last_reading.get(source)
            if value is None:
                self._fail(-200, f"Execution error; measure block {source} made no reading")
                return
            if limit_met(block.limit_type, block.limit_a, block.limit_b, np.array([value]))[0]:
                run.pc = block.target
        elif kind == "BRANCH_COUNTER":
            count = run.counters.get(number, 0)
            if count >= block.count:
                count = 0  # a finished loop starts over when it is reached again
            count += 1
            run.counters[number] = count
            if count < block.count:
                run.pc = block.target
        elif kind == "BRANCH_COUNTER_RESET":
            run.counters[block.target] = 0
        elif kind == "BRANCH_ALWAYS":
            run.pc = block.target
        elif kind in ("CONFIG_RECALL", "CONFIG_NEXT"):
            self._recall(run, block)
        elif kind == "SOURCE_OUTPUT":
            self.smu.advance_to(run.t)
            self.state.source.output = block.state
        # NOP: nothing

    def _recall(self, run: _Run, block: Block) -> None:
        """A configuration recall or next block: apply the point at simulated ``run.t``."""
        key = block.config.upper()
        config = self.state.config_lists.get(key)
        if config is None:
            self._fail(CONFIG_LIST_MISSING, CONFIG_LIST_MISSING_TEXT)
            return
        points = config.points
        if block.kind == "CONFIG_RECALL":
            index = block.index
        else:
            previous = run.config_index.get(key)
            index = 1 if previous is None or previous >= len(points) else previous + 1
        if not 1 <= index <= len(points):
            self._fail(CONFIG_LIST_MISSING, CONFIG_LIST_MISSING_TEXT)
            return
        run.config_index[key] = index
        self.smu.advance_to(run.t)
        self.state.recall(points[index - 1])

    def _loop_batch(self, run: _Run, now: float) -> bool:
        """Run the loop ``DELAY, MEASURE[, LIMIT], COUNTER -> DELAY`` at ``run.pc`` vectorised.

        Takes every reading due by ``now`` (at most :data:`_BATCH`) with one ``cell.hold``.
        With a limit branch the batch is cut at the first reading that meets the limit: the
        cell is restored from a snapshot taken before the hold and held again up to that
        reading only, so it is never advanced past it at the old source setting. Returns
        False when the blocks at ``run.pc`` are not such a loop (or nothing is due).
        """
        d = run.pc
        blocks = self.blocks
        delay = blocks[d]
        measure = blocks.get(d + 1)
        if measure is None or measure.kind != "MEASURE" or measure.count != 1:
            return False
        limit = blocks.get(d + 2)
        counter_at = d + 2
        if limit is not None and limit.kind == "BRANCH_LIMIT_CONSTANT":
            if limit.measure_block not in (0, d + 1):
                return False
            counter_at = d + 3
        else:
            limit = None
        counter = blocks.get(counter_at)
        if counter is None or counter.kind != "BRANCH_COUNTER" or counter.target != d:
            return False
        count = run.counters.get(counter_at, 0)
        if count >= counter.count:
            count = 0
        remaining = counter.count - count  # readings left in this pass, the last falls through
        first = run.delay_end if run.delay_end is not None else run.t + delay.delay_s
        if delay.delay_s > 0:
            due = math.floor((now - first) / delay.delay_s) + 1
        else:
            due = remaining
        smu = self.smu
        n = min(remaining, due, _BATCH, smu.readings_to_fault() or _BATCH)
        if n < 1:
            return False
        times = first + delay.delay_s * np.arange(n)
        smu.advance_to(float(times[0]))
        hit: int | None = None
        while True:
            snapshot = smu.snapshot() if limit is not None else None
            measured = smu.measure(times)
            readings = smu.sensed(measured)
            if limit is None:
                break
            met = limit_met(limit.limit_type, limit.limit_a, limit.limit_b, readings)
            if not met.any():
                break
            hit = int(np.argmax(met))
            if hit == len(times) - 1:
                break
            # Undo the hold past the reading that meets the limit and hold again up to it.
            assert snapshot is not None
            smu.restore(snapshot)
            times = times[: hit + 1]
            hit = None
        failed = smu.store(measured, times, measure.buffer)
        run.last_reading[d + 1] = float(readings[-1])
        run.t, run.delay_end = float(times[-1]), None
        if failed:
            # The instrument failed after this reading and switched its output off: the model
            # stops there, FAILED ("stopped because of an error", 2450-901-01 Rev. B p. 6-166).
            self.last_block = d + 1
            self._finish("FAILED")
            return True
        if hit is not None:
            assert limit is not None
            run.counters[counter_at] = count + hit
            self.last_block = d + 2
            run.pc = limit.target
            return True
        count += len(times)
        run.counters[counter_at] = count
        self.last_block = counter_at
        run.pc = counter_at + 1 if count >= counter.count else d
        return True
