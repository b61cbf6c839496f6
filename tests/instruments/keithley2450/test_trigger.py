"""The Keithley 2450 trigger-model program and its host-side step replay, without a wire."""

from __future__ import annotations

import numpy as np
import pytest

from insitu.instruments.keithley2450.trigger import (
    CONFIG_LIST,
    DEFAULT_BUFFER_POINTS,
    OCV_VOLTAGE_LIMIT_V,
    Step,
    StepReplay,
    TriggerPlan,
    load_commands,
    plan_technique,
    readings_in,
    trigger_model_commands,
)
from insitu.instruments.potentiostat import (
    CurrentSequence,
    CurrentStep,
    GalvanostaticHold,
    OpenCircuit,
)


def two_steps(on_limit: str) -> CurrentSequence:
    return CurrentSequence(
        steps=(CurrentStep(1e-4, 10.0), CurrentStep(-1e-4, 10.0)),
        interval_s=1.0,
        on_limit=on_limit,  # type: ignore[arg-type]
    )


def test_readings_in_counts_whole_intervals() -> None:
    assert readings_in(10.0, 1.0) == 10
    assert readings_in(0.3, 0.1) == 3  # decimal round-off does not lose a reading
    assert readings_in(0.5, 2.0) == 1  # a step shorter than the interval gets one reading


def test_plan_of_a_sequence() -> None:
    plan = plan_technique(two_steps("stop"), max_abs_voltage_V=210.0)
    assert plan.steps == (Step(1e-4, 10), Step(-1e-4, 10))
    assert plan.vlim == 10.0
    assert plan.window == (-9.99999, 9.99999)  # a hair inside VLIM: compliance ends a step
    assert plan.readings == 20
    assert plan.segments() == [(10, 2)]


def test_compliance_is_the_cut_off_only_where_the_window_asks_for_the_limit() -> None:
    plan = plan_technique(two_steps("stop"), max_abs_voltage_V=210.0)
    assert plan.requested == (-10.0, 10.0)
    assert plan.is_cutoff(10.0) and plan.is_cutoff(-10.0)  # VLIM is the window's bound
    wide = plan_technique(
        GalvanostaticHold(1e-4, 10.0, voltage_min_V=-300.0, voltage_max_V=5.0),
        max_abs_voltage_V=210.0,
    )
    assert wide.vlim == 210.0
    assert wide.is_cutoff(210.0)  # above the 5 V bound: the cell left the window
    assert not wide.is_cutoff(-210.0)  # the instrument's range, inside the -300 V bound
    ocv = plan_technique(OpenCircuit(duration_s=5.0, interval_s=1.0), max_abs_voltage_V=210.0)
    assert ocv.requested is None and not ocv.is_cutoff(OCV_VOLTAGE_LIMIT_V)


def test_plan_of_a_hold_and_of_open_circuit() -> None:
    hold = plan_technique(GalvanostaticHold(2e-4, 30.0, 3.0), max_abs_voltage_V=210.0)
    assert hold.steps == (Step(2e-4, 10),)
    ocv = plan_technique(OpenCircuit(duration_s=5.0, interval_s=1.0), max_abs_voltage_V=210.0)
    assert ocv.steps == (Step(0.0, 5),)
    assert ocv.window is None
    assert ocv.vlim == OCV_VOLTAGE_LIMIT_V


@pytest.mark.parametrize(("on_limit", "limit_target"), [("stop", 10), ("next_step", 9)])
def test_trigger_model_of_two_steps(on_limit: str, limit_target: int) -> None:
    plan = plan_technique(two_steps(on_limit), max_abs_voltage_V=210.0)
    assert trigger_model_commands(plan) == [
        ':TRIG:BLOC:BUFF:CLE 1, "defbuffer1"',
        f':TRIG:BLOC:CONF:NEXT 2, "{CONFIG_LIST}"',
        ":TRIG:BLOC:SOUR:STAT 3, ON",
        ":TRIG:BLOC:BRAN:COUN:RES 4, 8",
        ":TRIG:BLOC:DEL:CONS 5, 1",
        ':TRIG:BLOC:MEAS 6, "defbuffer1", 1',
        # "stop" leaves for the last block (output off), "next_step" for the step counter.
        f":TRIG:BLOC:BRAN:LIM:CONS 7, OUTS, -9.99999, 9.99999, {limit_target}, 6",
        ":TRIG:BLOC:BRAN:COUN 8, 10, 5",
        ":TRIG:BLOC:BRAN:COUN 9, 2, 2",
        ":TRIG:BLOC:SOUR:STAT 10, OFF",
    ]


def test_steps_of_unequal_length_get_a_loop_each() -> None:
    seq = CurrentSequence(steps=(CurrentStep(1e-4, 10.0), CurrentStep(-1e-4, 5.0)))
    commands = trigger_model_commands(plan_technique(seq, max_abs_voltage_V=210.0))
    assert len(commands) == 1 + 2 * 8 + 1
    assert ":TRIG:BLOC:BRAN:COUN 16, 5, 13" in commands
    assert commands[-1] == ":TRIG:BLOC:SOUR:STAT 18, OFF"
    assert ":TRIG:BLOC:BRAN:LIM:CONS 15, OUTS, -9.99999, 9.99999, 18, 14" in commands


def test_open_circuit_model_has_no_limit_block() -> None:
    plan = plan_technique(OpenCircuit(duration_s=5.0, interval_s=1.0), max_abs_voltage_V=210.0)
    commands = trigger_model_commands(plan)
    assert not any(":LIM:" in c for c in commands)
    assert commands[-1] == ":TRIG:BLOC:SOUR:STAT 9, OFF"


def test_load_commands_store_one_point_per_step_with_the_output_off() -> None:
    plan = plan_technique(two_steps("stop"), max_abs_voltage_V=210.0)
    commands = load_commands(plan)
    assert commands[0] == ":OUTP OFF"
    assert ":SOUR:CURR:VLIM 10" in commands
    assert ':SENS:FUNC "VOLT"' in commands
    create = commands.index(f':SOUR:CONF:LIST:CRE "{CONFIG_LIST}"')
    assert commands[create + 1 : create + 6] == [
        ":SOUR:CURR 0.0001",
        f':SOUR:CONF:LIST:STOR "{CONFIG_LIST}"',
        ":SOUR:CURR -0.0001",
        f':SOUR:CONF:LIST:STOR "{CONFIG_LIST}"',
        ":SOUR:CURR 0",
    ]
    assert commands[create + 6 :] == trigger_model_commands(plan)
    assert not any(c.startswith(":TRAC:POIN") for c in commands)  # the default buffer holds it


def test_load_commands_enlarge_the_buffer_for_long_techniques() -> None:
    n = DEFAULT_BUFFER_POINTS + 1
    plan = TriggerPlan((Step(1e-4, n),), 1.0, 10.0, (-9.0, 9.0), "stop")
    assert f':TRAC:POIN {n}, "defbuffer1"' in load_commands(plan)


def replay_plan(on_limit: str) -> TriggerPlan:
    return TriggerPlan((Step(1e-4, 3), Step(-1e-4, 3)), 1.0, 2.0, (-1.0, 1.0), on_limit)


def test_replay_numbers_steps_by_count_also_for_equal_currents() -> None:
    plan = TriggerPlan((Step(1e-4, 3), Step(1e-4, 3)), 1.0, 2.0, (-1.0, 1.0), "stop")
    replay = StepReplay(plan)
    assert replay.assign(np.full(6, 0.5)).tolist() == [0, 0, 0, 1, 1, 1]
    assert replay.done
    assert not replay.hit_stop


def test_replay_next_step_ends_a_step_at_the_window() -> None:
    replay = StepReplay(replay_plan("next_step"))
    voltages = np.array([0.5, 1.5, -0.5, -0.5, -0.5])
    assert replay.assign(voltages).tolist() == [0, 0, 1, 1, 1]
    assert replay.done
    assert not replay.hit_stop


def test_replay_stop_ends_the_run_at_the_window() -> None:
    replay = StepReplay(replay_plan("stop"))
    assert replay.assign(np.array([0.5, 1.5])).tolist() == [0, 0]
    assert replay.hit_stop
    assert not replay.done


def test_replay_is_the_same_in_chunks() -> None:
    voltages = np.array([0.5, 0.5, 0.5, -0.5, -1.5, 0.0])
    whole = StepReplay(replay_plan("next_step")).assign(voltages).tolist()
    replay = StepReplay(replay_plan("next_step"))
    chunked = np.concatenate([replay.assign(voltages[i : i + 2]) for i in range(0, 6, 2)])
    assert chunked.tolist() == whole == [0, 0, 0, 1, 1, 1]
