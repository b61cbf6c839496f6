"""A current sequence reaches the instrument one step (one half-cycle) at a time.

:meth:`Potentiostat.stream` hands a driver's ``_stream`` one-step sequences only, the next
one after the previous has ended and its points were read, and stitches the points into
one technique: continuous ``time_s``, ``step`` numbered over the whole sequence, the voltage
window acting as ``on_limit`` says.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from insitu.instruments.errors import ComplianceError, LimitError
from insitu.instruments.keithley2450.driver import Keithley2450
from insitu.instruments.potentiostat import (
    STEP_END,
    CurrentSequence,
    CurrentStep,
    GalvanostaticHold,
    Identity,
    OpenCircuit,
    Potentiostat,
    Technique,
    split_steps,
)


class FakeDriver(Potentiostat):
    """Runs each step as the instruments do: one reading per interval, the window checked.

    ``voltages`` gives the voltage of each step's readings (a constant per step unless a
    list of per-reading values is given).
    """

    capabilities = frozenset({OpenCircuit, GalvanostaticHold, CurrentSequence})

    def __init__(self, voltages: dict[int, list[float]] | None = None) -> None:
        self.loaded: list[Technique] = []
        self.offs = 0
        self.voltages = voltages or {}

    def identify(self) -> Identity:
        return Identity("Fake", "F1", "0", "1")

    def cell_off(self) -> None:
        self.offs += 1

    def close(self) -> None:
        self.cell_off()

    def _stream(self, technique: Technique) -> Iterator[pd.DataFrame]:
        assert isinstance(technique, CurrentSequence)
        self.loaded.append(technique)
        (step,) = technique.steps
        n = round(step.duration_s / technique.interval_s)
        k = len(self.loaded) - 1
        volts = np.asarray(self.voltages.get(k, [0.1] * n), dtype=float)[:n]
        outside = (volts < technique.voltage_min_V) | (volts > technique.voltage_max_V)
        hit = bool(outside.any())
        if hit:
            volts = volts[: int(np.argmax(outside)) + 1]
        times = technique.interval_s * np.arange(1, len(volts) + 1)
        frame = pd.DataFrame(
            {
                "time_s": times,
                "voltage_V": volts,
                "current_A": step.current_A,
                "step": 0,
            }
        )
        # Two chunks per step, the last one carrying the end reason, as the drivers do.
        half = len(frame) // 2
        yield frame.iloc[:half].reset_index(drop=True)
        end = frame.iloc[half:].reset_index(drop=True)
        end.attrs["end_reason"] = "voltage_limit" if hit else "completed"
        yield end


def cycling(n_steps: int = 4, on_limit: str = "stop") -> CurrentSequence:
    steps = [CurrentStep((-1) ** k * 1e-4, 60.0) for k in range(n_steps)]
    return CurrentSequence(
        steps, interval_s=10.0, voltage_min_V=-5, voltage_max_V=5, on_limit=on_limit
    )


def test_split_steps_gives_one_step_each_with_the_window():
    seq = cycling(3, on_limit="next_step")
    parts = split_steps(seq)
    assert [p.steps for p in parts] == [(s,) for s in seq.steps]
    assert all(p.on_limit == "stop" and p.interval_s == 10.0 for p in parts)
    assert all((p.voltage_min_V, p.voltage_max_V) == (-5, 5) for p in parts)


def test_the_driver_gets_one_step_at_a_time_and_the_points_read_as_one_technique():
    driver = FakeDriver()
    data = driver.run(cycling(4))
    assert [len(t.steps) for t in driver.loaded] == [1, 1, 1, 1]
    # What one trigger model or script made before: a reading every interval, throughout.
    np.testing.assert_allclose(data["time_s"], 10.0 * np.arange(1, 25))
    assert data["step"].tolist() == [k for k in range(4) for _ in range(6)]
    assert data["step"].dtype.kind == "i"
    assert data.attrs["end_reason"] == "completed"
    assert driver.offs == 0  # each step ends with the cell off by itself; no error path


def test_the_next_step_is_loaded_only_after_the_previous_points_were_read():
    driver = FakeDriver()
    stream = driver.stream(cycling(4))
    seen = []
    for chunk in stream:
        seen.append((len(driver.loaded), len(chunk)))
        if len(driver.loaded) == 2:
            break
    stream.close()
    # The consumer stopped in the second step: the third was never sent, the cell is off.
    assert len(driver.loaded) == 2
    assert driver.offs == 1
    # Every step's last chunk reached the consumer before the next step was loaded, and then
    # an empty marker saying the step ended (where a consumer looks for a short).
    assert seen[:4] == [(1, 3), (1, 3), (1, 0), (2, 3)]


def test_each_step_ends_with_a_marker_before_the_next_is_sent():
    driver = FakeDriver()
    markers = []
    for chunk in driver.stream(cycling(3)):
        if STEP_END in chunk.attrs:
            assert len(chunk) == 0
            markers.append((chunk.attrs[STEP_END], len(driver.loaded)))
    # The marker of step k comes while the instrument holds step k only.
    assert markers == [(0, 1), (1, 2), (2, 3)]


def test_on_limit_stop_ends_the_sequence_at_the_window():
    driver = FakeDriver({1: [0.1, 0.2, 6.0, 0.1, 0.1, 0.1]})
    data = driver.run(cycling(4, on_limit="stop"))
    assert len(driver.loaded) == 2
    assert data.attrs["end_reason"] == "voltage_limit"
    np.testing.assert_allclose(data["time_s"], 10.0 * np.arange(1, 10))
    assert data["step"].tolist() == [0] * 6 + [1] * 3


def test_on_limit_next_step_moves_on_after_the_reading_outside():
    driver = FakeDriver({1: [0.1, 6.0, 0.1, 0.1, 0.1, 0.1]})
    data = driver.run(cycling(3, on_limit="next_step"))
    assert len(driver.loaded) == 3
    assert data.attrs["end_reason"] == "completed"
    # The next step's first reading comes one interval after the reading outside.
    np.testing.assert_allclose(data["time_s"], 10.0 * np.arange(1, 15))
    assert data["step"].tolist() == [0] * 6 + [1] * 2 + [2] * 6


def test_a_single_hold_is_passed_through_unchanged():
    driver = FakeDriver()
    seq = CurrentSequence((CurrentStep(1e-4, 60.0),), interval_s=10.0)
    data = driver.run(seq)
    assert driver.loaded == [seq]
    assert len(data) == 6


def test_keithley_checks_each_step_not_the_whole_sequence():
    k = Keithley2450.__new__(Keithley2450)  # check() sends nothing: no connection needed
    k.name = "Keithley 2450 (test)"
    # 68 one-hour steps at 1 ms: 245 M readings in all, 3.6 M per step: it fits step by step.
    long = CurrentSequence([CurrentStep(1e-3, 3600.0)] * 68, interval_s=1e-3)
    k.check(long)
    # One step beyond the buffer is still refused before anything is sent.
    with pytest.raises(LimitError, match="a step needs 5000000 readings"):
        k.check(CurrentSequence([CurrentStep(1e-3, 5000.0)] * 2, interval_s=1e-3))


class LossyDriver(FakeDriver):
    """Loses the last point of step 0 on the way (a garbled data package), as the
    MethodSCRIPT driver reports it: ``end_time_s``, the time of the step's last point."""

    def _stream(self, technique: Technique) -> Iterator[pd.DataFrame]:
        chunks = list(super()._stream(technique))
        if len(self.loaded) == 1:
            last = chunks[-1]
            end_time = float(last["time_s"].iloc[-1])
            chunks[-1] = last.iloc[:-1].reset_index(drop=True)
            chunks[-1].attrs = {**last.attrs, "end_time_s": end_time}
        yield from chunks


def test_a_lost_last_point_does_not_shift_the_later_steps():
    data = LossyDriver().run(cycling(2))
    # Step 0 lost its reading at 60 s; step 1's readings still come at 70 … 120 s.
    assert data["time_s"].tolist() == [10, 20, 30, 40, 50, 70, 80, 90, 100, 110, 120]
    assert "end_time_s" not in data.attrs


class OverloadingDriver(FakeDriver):
    """Step 1 is flagged in compliance 30 s into the step (after three points)."""

    def _stream(self, technique: Technique) -> Iterator[pd.DataFrame]:
        chunks = super()._stream(technique)
        yield next(chunks)  # the first half of the step's points (loads the step)
        if len(self.loaded) == 2:
            raise ComplianceError("flagged", time_s=40.0)
        yield from chunks


def test_a_compliance_error_carries_the_sequence_time():
    driver = OverloadingDriver()
    with pytest.raises(ComplianceError) as caught:
        driver.run(cycling(3))
    assert caught.value.time_s == pytest.approx(60.0 + 40.0)  # step 1 starts after 60 s
    assert len(driver.loaded) == 2 and driver.offs == 1  # the cell was switched off
