"""A MethodSCRIPT link dropped between techniques is opened again; switching off always is.

Between two techniques (two half-cycles of a sequence, sent one at a time) nothing runs on the
instrument, so a pulled cable there costs nothing: the driver sees the link closed before it
sends the next script, opens it again, and the sequence goes on. A cable pulled while a
script runs ends the technique (its points cannot be read any more), but the switch-off that
follows reconnects rather than failing on the dead link.
"""

from __future__ import annotations

import logging
import time

import pytest

from insitu.instruments.errors import InstrumentConnectionError
from insitu.instruments.potentiostat import CurrentSequence, CurrentStep, GalvanostaticHold
from insitu.instruments.resources import open_potentiostat
from insitu.protocols.bench.emulated import start_emulator

pytestmark = pytest.mark.timeout(60)

HOLD = GalvanostaticHold(1e-4, duration_s=100.0, interval_s=10.0)


@pytest.fixture
def bench():
    with start_emulator("A-LPS", emulator="methodscript", speedup=1e5) as sim:
        driver = open_potentiostat(sim.resource, timeout_s=2.0)
        try:
            yield sim, driver
        finally:
            driver.close()


def test_a_link_dropped_between_techniques_is_opened_again(bench):
    sim, driver = bench
    first = driver.run(HOLD)
    sim.emulator.drop_clients()
    time.sleep(0.2)  # the close has reached the driver's end
    second = driver.run(HOLD)
    assert len(first) == len(second) == 10
    assert not sim.emulator.cell_is_on


def test_a_link_dropped_between_half_cycles_does_not_end_the_sequence(bench):
    sim, driver = bench
    seq = CurrentSequence([CurrentStep(1e-4, 100.0), CurrentStep(-1e-4, 100.0)], interval_s=10.0)
    chunks = []
    for chunk in driver.stream(seq):
        chunks.append(chunk)
        if chunk.attrs.get("step_end") == 0:
            sim.emulator.drop_clients()  # the cable pulled while the cell rests
            time.sleep(0.2)
    points = sum(len(c) for c in chunks)
    assert points == 20
    assert not sim.emulator.cell_is_on


def test_after_a_drop_mid_technique_the_switch_off_reconnects(bench, caplog):
    sim, driver = bench
    long = GalvanostaticHold(1e-4, duration_s=1e7, interval_s=10.0)
    with caplog.at_level(logging.WARNING), pytest.raises(InstrumentConnectionError):
        for n, _ in enumerate(driver.stream(long)):
            if n == 2:
                sim.emulator.drop_clients()
    assert "could not switch the cell off" not in caplog.text
    assert not sim.emulator.cell_is_on
    assert len(driver.run(HOLD)) == 10  # and the driver is usable again
