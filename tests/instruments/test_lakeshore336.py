"""The Lake Shore 336 driver and the TemperatureController device against the emulator.

Driver and emulator meet only over TCP via pyvisa-py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import bluesky.plan_stubs as bps
import pytest
from bluesky import RunEngine

from insitu.instruments.devices.temperature import SettleTimeoutError, TemperatureController
from insitu.instruments.errors import (
    InstrumentConnectionError,
    InstrumentReportedError,
    InstrumentTimeoutError,
    LimitError,
)
from insitu.instruments.lakeshore336 import LakeShore336
from insitu.simulators.cell.model import VirtualCell
from insitu.simulators.clock import SimClock
from insitu.simulators.emulators.lakeshore336 import LakeShore336Emulator

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def clock() -> SimClock:
    return SimClock(speedup=1e3)


@pytest.fixture
def cell() -> VirtualCell:
    return VirtualCell("A-LPS")


@pytest.fixture
def emulator(clock: SimClock, cell: VirtualCell) -> Iterator[LakeShore336Emulator]:
    # A small oven: 30 s time constant, so settling takes a few hundred simulated seconds.
    with LakeShore336Emulator(clock, cells=(cell,), time_constant_s=30.0, noise_K=0.01) as emu:
        yield emu


@pytest.fixture
def ls336(emulator: LakeShore336Emulator) -> Iterator[LakeShore336]:
    driver = LakeShore336(emulator.resource, timeout_s=0.5)
    try:
        yield driver
    finally:
        driver.close()


def test_identify(ls336, emulator):
    ident = ls336.identify()
    assert (ident.manufacturer, ident.model, ident.serial) == ("LSCI", "MODEL336", emulator.serial)
    assert ident.resource == emulator.resource


def test_settings_round_trip(ls336):
    ls336.set_setpoint_K(1, 313.15)
    assert ls336.setpoint_K(1) == pytest.approx(313.15)
    ls336.set_heater_range(1, 2)
    assert ls336.heater_range(1) == 2
    ls336.set_ramp(1, True, 5.0)
    assert ls336.ramp(1) == (True, 5.0)
    ls336.set_output_mode(1, 1, "B")
    assert ls336.output_mode(1) == (1, 2, 0)
    ls336.heaters_off()
    assert ls336.heater_range(1) == 0
    # The oven warmed a little while the range was on.
    assert ls336.temperature_K("A") == pytest.approx(298.15, abs=3.0)
    assert ls336.temperature_C("B") == pytest.approx(ls336.temperature_K("B") - 273.15, abs=0.1)
    assert ls336.heater_output_percent(1) == 0.0


def test_limits_are_checked_before_sending(ls336, emulator):
    sent = len(emulator.commands)
    with pytest.raises(LimitError, match="safety maximum"):
        ls336.set_setpoint_K(1, 400.0)  # above 120 °C
    with pytest.raises(LimitError):
        ls336.set_setpoint_K(1, -1.0)
    with pytest.raises(LimitError):
        ls336.set_heater_range(3, 2)  # outputs 3 and 4 are off/on only
    with pytest.raises(LimitError):
        ls336.set_ramp(1, True, 500.0)
    with pytest.raises(LimitError):
        ls336.temperature_K("E")
    assert len(emulator.commands) == sent
    hot = LakeShore336(emulator.resource, timeout_s=0.5, max_setpoint_K=500.0)
    try:
        hot.set_setpoint_K(1, 450.0)
        assert hot.setpoint_K(1) == pytest.approx(450.0)
    finally:
        hot.close()


def test_refused_commands_and_unanswered_queries(ls336):
    with pytest.raises(InstrumentReportedError, match="command error") as info:
        ls336.command("SETPX 1,300")
    assert info.value.last_command == "SETPX 1,300" and "Lake Shore 336" in str(info.value)
    with pytest.raises(InstrumentReportedError, match="execution error"):
        ls336.command("RANGE 1,9")
    with pytest.raises(InstrumentTimeoutError, match="no answer") as info:
        ls336.query("KRDG? Z")
    assert info.value.last_command == "KRDG? Z"
    assert "does not answer queries it cannot parse" in str(info.value)
    # The driver recovers: the next exchange works.
    assert ls336.identify().model == "MODEL336"
    with pytest.raises(InstrumentReportedError, match="invalid reading"):
        ls336.temperature_K("C")  # no sensor on C


def test_connection_errors(emulator, ls336):
    ls336.identify()  # the server has accepted the connection
    emulator.drop_clients()
    time.sleep(0.05)
    # A setting is never sent again on its own: the dropped link is the error.
    with pytest.raises(InstrumentConnectionError) as info:
        ls336.reset()
    assert "Lake Shore 336" in str(info.value) and info.value.last_command == "*RST"
    # A read changes nothing: it is asked again on a fresh connection.
    assert ls336.identify().model == "MODEL336"
    emulator.drop_clients()
    time.sleep(0.05)
    assert ls336.setpoint_K(1) > 0
    emulator.stop()
    with pytest.raises(InstrumentConnectionError, match="connection refused"):
        LakeShore336(emulator.resource, timeout_s=0.5)


def test_hung_controller_times_out(emulator, ls336):
    emulator.responding = False
    with pytest.raises(InstrumentTimeoutError):
        ls336.temperature_K("A")


# --- the ophyd device -------------------------------------------------------------------------
@pytest.fixture
def oven(ls336: LakeShore336, clock: SimClock) -> Iterator[TemperatureController]:
    device = TemperatureController(
        ls336,
        name="oven",
        tolerance_K=0.5,
        settle_time_s=60.0,
        poll_s=0.002,
        time_source=clock.now,
    )
    try:
        yield device
    finally:
        device.stop()


def test_settles_in_simulated_seconds(oven, clock, cell, emulator):
    sigma_rt = cell.conductivity_S_m()
    t0_sim, t0_real = clock.now(), time.monotonic()
    status = oven.set(333.15)
    status.wait(10)
    sim_elapsed = clock.now() - t0_sim
    assert status.success and oven.settled.get()
    # 35 K to within 0.5 K takes tau*ln(70) ≈ 127 s of a 30 s lag, plus the 60 s settle.
    assert 180.0 <= sim_elapsed <= 260.0
    assert time.monotonic() - t0_real < 1.0
    reading = oven.read()
    assert reading["oven_readback"]["value"] == pytest.approx(333.15, abs=0.5)
    assert reading["oven_setpoint"]["value"] == 333.15
    assert oven.describe()["oven_readback"]["units"] == "K"
    config = oven.read_configuration()
    assert "MODEL336" in config["oven_identity"]["value"]
    # The cell in the oven warmed up with it: conductivity follows.
    assert cell.temperature_K == pytest.approx(333.15, abs=0.5)
    assert cell.conductivity_S_m() > 1.5 * sigma_rt


def test_timeout_fails_the_status(oven, ls336):
    ls336.set_heater_range(1, 1)
    oven.heater_range = 1  # low: 4 K of rise at most, 333 K is out of reach
    status = oven.set(333.15, timeout_s=600.0)
    with pytest.raises(SettleTimeoutError, match=r"did not settle at 333\.15 K"):
        status.wait(10)
    assert not oven.settled.get()


def test_stop_and_new_setpoint_end_the_wait(oven):
    first = oven.set(380.0)
    second = oven.set(300.0)
    with pytest.raises(RuntimeError, match="superseded"):
        first.wait(1)
    oven.stop()
    with pytest.raises(RuntimeError, match="stopped"):
        second.wait(1)


def test_limit_error_before_anything_is_sent(oven, emulator):
    sent = len(emulator.commands)
    with pytest.raises(LimitError):
        oven.set(500.0)
    assert len(emulator.commands) == sent


def test_in_a_run_engine(oven):
    docs: list[tuple[str, dict]] = []
    RE = RunEngine({})

    def plan():
        yield from bps.open_run()
        yield from bps.mv(oven, 318.15)
        yield from bps.trigger_and_read([oven])
        yield from bps.close_run()

    RE(plan(), lambda name, doc: docs.append((name, doc)))
    (event,) = [d for n, d in docs if n == "event"]
    assert event["data"]["oven_readback"] == pytest.approx(318.15, abs=0.5)
