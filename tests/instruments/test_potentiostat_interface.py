"""The Potentiostat base class: capability and limit checks, switching off on early exit.

A minimal in-memory driver stands in for an instrument here; it exercises only the logic
that every real driver inherits (real drivers meet their emulators over real transports in
their own tests).
"""

from collections.abc import Iterator

import pandas as pd
import pytest

from insitu.instruments.errors import LimitError, UnsupportedTechniqueError
from insitu.instruments.potentiostat import (
    CurrentSequence,
    CurrentStep,
    GalvanostaticHold,
    Identity,
    Impedance,
    Limits,
    OpenCircuit,
    Potentiostat,
    as_sequence,
)


class RecordingDriver(Potentiostat):
    capabilities = frozenset({GalvanostaticHold, OpenCircuit})
    limits = Limits(max_abs_current_A=0.01, max_abs_voltage_V=5.0, min_interval_s=0.1)
    name = "recording driver"

    def __init__(self, fail_after_chunks: int | None = None) -> None:
        self.sent: list[str] = []
        self.fail_after_chunks = fail_after_chunks

    def identify(self) -> Identity:
        return Identity("Acme", "P1", "1", "1.0")

    def cell_off(self) -> None:
        self.sent.append("off")

    def close(self) -> None:
        self.cell_off()

    def _stream(self, technique) -> Iterator[pd.DataFrame]:
        self.sent.append(type(technique).__name__)
        for k in range(3):
            if self.fail_after_chunks is not None and k == self.fail_after_chunks:
                raise ConnectionError("link lost")
            yield pd.DataFrame(
                {"time_s": [float(k)], "voltage_V": [0.1], "current_A": [1e-3], "step": [0]}
            )
        self.sent.append("done")


def test_unsupported_technique_is_refused_before_anything_is_sent():
    driver = RecordingDriver()
    with pytest.raises(UnsupportedTechniqueError, match="Impedance is not possible"):
        driver.run(Impedance())
    assert driver.sent == []


@pytest.mark.parametrize(
    "technique, message",
    [
        (GalvanostaticHold(current_A=0.02, duration_s=10), "exceeds the instrument limit"),
        (GalvanostaticHold(current_A=1e-3, duration_s=10, interval_s=0.01), "below the"),
        (GalvanostaticHold(current_A=1e-3, duration_s=0), "duration must be positive"),
        (
            GalvanostaticHold(current_A=1e-3, duration_s=10, voltage_min_V=2, voltage_max_V=1),
            "must be below",
        ),
    ],
)
def test_limits_are_checked_before_anything_is_sent(technique, message):
    driver = RecordingDriver()
    with pytest.raises(LimitError, match=message):
        driver.run(technique)
    assert driver.sent == []


def test_voltage_window_wider_than_the_instrument_is_accepted():
    # The window is a stop criterion; the instrument's own range stops first.
    driver = RecordingDriver()
    driver.run(GalvanostaticHold(current_A=1e-3, duration_s=10, voltage_max_V=50))
    assert driver.sent[0] == "GalvanostaticHold"


def test_completed_technique_collects_all_chunks():
    driver = RecordingDriver()
    data = driver.run(GalvanostaticHold(current_A=1e-3, duration_s=10))
    assert list(data["time_s"]) == [0.0, 1.0, 2.0]
    assert data.attrs["end_reason"] == "completed"
    assert driver.sent == ["GalvanostaticHold", "done"]


def test_error_inside_technique_switches_cell_off_and_propagates():
    driver = RecordingDriver(fail_after_chunks=1)
    with pytest.raises(ConnectionError):
        driver.run(GalvanostaticHold(current_A=1e-3, duration_s=10))
    assert driver.sent[-1] == "off"


def test_consumer_stopping_early_switches_cell_off():
    driver = RecordingDriver()
    stream = driver.stream(GalvanostaticHold(current_A=1e-3, duration_s=10))
    next(stream)
    stream.close()
    assert driver.sent == ["GalvanostaticHold", "off"]


def test_a_hold_is_a_one_step_sequence():
    hold = GalvanostaticHold(current_A=2e-3, duration_s=60, interval_s=2, voltage_max_V=3)
    seq = as_sequence(hold)
    assert seq.steps == (CurrentStep(2e-3, 60),)
    assert (seq.interval_s, seq.voltage_max_V, seq.on_limit) == (2, 3, "stop")
    assert isinstance(CurrentSequence(steps=[CurrentStep(1, 1)]).steps, tuple)
