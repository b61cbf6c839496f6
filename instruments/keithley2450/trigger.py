"""The instrument-side program of a Keithley 2450 technique, and its replay on the host.

A galvanostatic technique runs as ONE trigger model on the instrument, so that it steps
through the currents by itself and no step change waits for the host: a source
configuration list holds one point per step current; per run of equal-length steps a loop of
(delay ``interval``, measure one reading, limit branch, reading counter) sits inside a step
counter with a configuration-next block (see :func:`trigger_model_commands`). Each step makes
``floor(duration/interval)`` readings, the first one interval after the step starts, so the
first reading of step k+1 comes one interval after the last of step k. The voltage window is
the limit block's (``OUTSide``): ``on_limit="stop"`` jumps to the last block (output off),
``"next_step"`` to the step counter. The voltage limit (``:SOUR:CURR:VLIM``) is
``max(|voltage_min_V|, |voltage_max_V|)``; a reading at it (compliance) also ends the step
(the window sits a hair inside VLIM).

The host numbers the steps by following the model through the readings
(:class:`StepReplay`: count per step, and the window test on each reading), which is right
also for equal consecutive currents.

Everything here is pure: techniques in, SCPI command lists and step numbers out; the driver
(:mod:`insitu.instruments.keithley2450.driver`) sends them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..potentiostat import CurrentSequence, GalvanostaticHold, OpenCircuit, Technique, as_sequence

__all__ = [
    "CONFIG_LIST",
    "DEFAULT_BUFFER_POINTS",
    "MAX_TRIGGER_BLOCKS",
    "OCV_VOLTAGE_LIMIT_V",
    "Step",
    "StepReplay",
    "TriggerPlan",
    "load_commands",
    "plan_technique",
    "readings_in",
    "trigger_model_commands",
]

#: Readings the default buffer holds after ``*RST``; longer techniques enlarge it first.
DEFAULT_BUFFER_POINTS = 100_000
#: Voltage limit used for open-circuit measurements (no current flows at 0 A anyway).
OCV_VOLTAGE_LIMIT_V = 21.0
#: Largest block number of a 2450 trigger model.
MAX_TRIGGER_BLOCKS = 63
#: Name of the source configuration list that holds the step currents.
CONFIG_LIST = "insitu_steps"


@dataclass(frozen=True)
class Step:
    """One step of a trigger-model run: its current and how many readings it makes."""

    current_A: float
    count: int


@dataclass(frozen=True)
class TriggerPlan:
    """What one trigger-model run does: steps, sampling, voltage limit and window.

    ``requested`` is the voltage window the technique asked for (None for open circuit);
    ``window`` is the limit block's, the requested one clipped a hair inside ``vlim``.
    """

    steps: tuple[Step, ...]
    interval_s: float
    vlim: float
    window: tuple[float, float] | None  # limits of the limit block (None: no window)
    on_limit: str
    requested: tuple[float, float] | None = None

    def is_cutoff(self, voltage_V: float) -> bool:
        """Whether a reading in compliance at ``voltage_V`` is the cut-off the window asks for.

        The source limits the voltage at ``±vlim``; on a side where the requested window's
        bound is within ``vlim`` the limit *is* the cut-off (the cell wanted more than the
        window allows). Elsewhere -- no window, or a bound beyond the instrument's range --
        a limited reading means the instrument could not source what was asked.
        """
        if self.requested is None:
            return False
        low, high = self.requested
        if voltage_V >= 0:
            return high <= self.vlim
        return low >= -self.vlim

    @property
    def readings(self) -> int:
        """Readings the run makes when no step ends early."""
        return sum(step.count for step in self.steps)

    def segments(self) -> list[tuple[int, int]]:
        """Runs of consecutive steps with equal reading counts: (count, steps)."""
        runs: list[tuple[int, int]] = []
        for step in self.steps:
            if runs and runs[-1][0] == step.count:
                runs[-1] = (step.count, runs[-1][1] + 1)
            else:
                runs.append((step.count, 1))
        return runs


def readings_in(duration_s: float, interval_s: float) -> int:
    """Readings of a step: at interval, 2·interval, ..., duration.

    A hair of slack absorbs decimal round-off; a step shorter than the interval still gets
    its one reading.
    """
    return max(1, math.floor(duration_s / interval_s + 1e-9))


def plan_technique(technique: Technique, max_abs_voltage_V: float) -> TriggerPlan:
    """The trigger-model run of an open-circuit, galvanostatic-hold or sequence technique.

    Parameters
    ----------
    technique : OpenCircuit, GalvanostaticHold or CurrentSequence
        What to run.
    max_abs_voltage_V : float
        The instrument's largest voltage limit.

    Notes
    -----
    Open circuit is output on, sourcing 0 A, measuring voltage: a one-step run without the
    window (a current source at 0 A draws no current, so it is a true open-circuit
    measurement).
    """
    if isinstance(technique, OpenCircuit):
        count = readings_in(technique.duration_s, technique.interval_s)
        return TriggerPlan(
            steps=(Step(0.0, count),),
            interval_s=technique.interval_s,
            vlim=OCV_VOLTAGE_LIMIT_V,
            window=None,
            on_limit="stop",
        )
    seq = as_sequence(technique) if isinstance(technique, GalvanostaticHold) else technique
    assert isinstance(seq, CurrentSequence)
    v_min, v_max = seq.voltage_min_V, seq.voltage_max_V
    # The instrument's own range stops a wider window; 20 mV is the smallest VLIM.
    vlim = min(max(abs(v_min), abs(v_max), 0.02), max_abs_voltage_V)
    # A reading at the voltage limit (compliance) ends the step too: the limit block's
    # window sits a hair inside VLIM on a side that reaches it.
    inner = vlim * (1.0 - 1e-6)
    lo = float(f"{max(v_min, -inner):.9g}")
    hi = float(f"{min(v_max, inner):.9g}")
    steps = tuple(Step(s.current_A, readings_in(s.duration_s, seq.interval_s)) for s in seq.steps)
    return TriggerPlan(steps, seq.interval_s, vlim, (lo, hi), seq.on_limit, (v_min, v_max))


def trigger_model_commands(plan: TriggerPlan) -> list[str]:
    """The trigger model that runs every step on the instrument, one command per block.

    ``1`` clears the buffer; then, per run of equal-length steps (a segment), at block a::

        a    CONFig:NEXT      recall the next step's source point (current, output off)
        a+1  SOURce:STATe ON
        a+2  COUNter:RESet    restart the reading counter (also after a limit jump)
        a+3  DELay interval
        a+4  MEASure 1 reading
        a+5  LIMit OUTSide    the voltage window: to END ("stop") or to a+7 ("next_step")
        a+6  COUNter count -> a+3     readings of one step
        a+7  COUNter steps -> a       steps of the segment

    and the last block switches the output off. Without a window there is no limit block.
    """
    commands = [':TRIG:BLOC:BUFF:CLE 1, "defbuffer1"']
    size = 8 if plan.window is not None else 7
    end = 2 + size * len(plan.segments())
    a = 2
    for count, steps in plan.segments():
        readings_counter = a + size - 2
        steps_counter = a + size - 1
        commands += [
            f':TRIG:BLOC:CONF:NEXT {a}, "{CONFIG_LIST}"',
            f":TRIG:BLOC:SOUR:STAT {a + 1}, ON",
            f":TRIG:BLOC:BRAN:COUN:RES {a + 2}, {readings_counter}",
            f":TRIG:BLOC:DEL:CONS {a + 3}, {plan.interval_s:.9g}",
            f':TRIG:BLOC:MEAS {a + 4}, "defbuffer1", 1',
        ]
        if plan.window is not None:
            lo, hi = plan.window
            target = end if plan.on_limit == "stop" else steps_counter
            commands.append(
                f":TRIG:BLOC:BRAN:LIM:CONS {a + 5}, OUTS, {lo:.9g}, {hi:.9g}, {target}, {a + 4}"
            )
        commands += [
            f":TRIG:BLOC:BRAN:COUN {readings_counter}, {count}, {a + 3}",
            f":TRIG:BLOC:BRAN:COUN {steps_counter}, {steps}, {a}",
        ]
        a += size
    commands.append(f":TRIG:BLOC:SOUR:STAT {end}, OFF")
    return commands


def load_commands(plan: TriggerPlan) -> list[str]:
    """Source and sense settings, the configuration list of step currents, the trigger model.

    Sent after ``:ABOR``, ``*CLS``, ``:TRIG:LOAD "Empty"`` and the deletion of any previous
    :data:`CONFIG_LIST`; the model is ready for ``:INIT``.
    """
    nplc = min(1.0, max(0.01, 0.5 * plan.interval_s * 50.0))  # integrate ≤ half the interval
    commands = [
        # Points are stored with the output off (a source configuration list holds the
        # output state); the model's source-output blocks switch it on. On a real 2450 the
        # output may so blink off for a block's execution time at each step change.
        ":OUTP OFF",
        ":SOUR:FUNC CURR",
        ":SOUR:CURR:RANG:AUTO ON",
        ":SOUR:CURR 0",
        f":SOUR:CURR:VLIM {plan.vlim:.6g}",
        ':SENS:FUNC "VOLT"',
        ":SENS:VOLT:RANG:AUTO ON",
        f":SENS:VOLT:NPLC {nplc:.3g}",
    ]
    if plan.readings > DEFAULT_BUFFER_POINTS:
        commands.append(f':TRAC:POIN {plan.readings}, "defbuffer1"')
    commands.append(f':SOUR:CONF:LIST:CRE "{CONFIG_LIST}"')
    for step in plan.steps:
        commands += [f":SOUR:CURR {step.current_A:.9g}", f':SOUR:CONF:LIST:STOR "{CONFIG_LIST}"']
    commands.append(":SOUR:CURR 0")
    return commands + trigger_model_commands(plan)


class StepReplay:
    """Follows the trigger model through the readings to number the steps.

    A step ends after its count of readings, or at a reading outside the window (the limit
    block compares that same reading), so the step of every reading follows from the
    readings alone, also when consecutive steps have equal currents. Feed the readings in
    order, in chunks of any size, to :meth:`assign`.

    Parameters
    ----------
    plan : TriggerPlan
        The run the instrument executes.
    """

    def __init__(self, plan: TriggerPlan) -> None:
        self.plan = plan
        self.step = 0
        self.in_step = 0
        self.hit_stop = False

    @property
    def done(self) -> bool:
        """Whether every step has made all its readings (or ended at the window)."""
        return self.step >= len(self.plan.steps)

    def assign(self, voltages: np.ndarray) -> np.ndarray:
        """The step number (0-based) of each of the next readings.

        Parameters
        ----------
        voltages : numpy.ndarray
            The next readings' voltages, in the order the instrument made them.
        """
        steps = np.zeros(voltages.size, dtype=int)
        window = self.plan.window
        if window is not None:
            outside = (voltages < window[0]) | (voltages > window[1])
        else:
            outside = np.zeros(voltages.size, dtype=bool)
        pos = 0
        while pos < voltages.size:
            if self.done or self.hit_stop:
                steps[pos:] = min(self.step, len(self.plan.steps) - 1)
                break
            left = self.plan.steps[self.step].count - self.in_step
            part = outside[pos : pos + left]
            n = int(np.argmax(part)) + 1 if part.any() else part.size
            steps[pos : pos + n] = self.step
            pos += n
            self.in_step += n
            if part.any():
                if self.plan.on_limit == "stop":
                    self.hit_stop = True
                    continue
                self.in_step = self.plan.steps[self.step].count
            if self.in_step >= self.plan.steps[self.step].count:
                self.step += 1
                self.in_step = 0
        return steps
