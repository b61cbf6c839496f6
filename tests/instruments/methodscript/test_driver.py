"""The MethodSCRIPT driver against the emulator, over a real pty and a socket:// URL."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pandas as pd
import pytest

from insitu.instruments.errors import (
    InstrumentConnectionError,
    InstrumentReportedError,
    InstrumentTimeoutError,
    LimitError,
)
from insitu.instruments.methodscript.driver import MethodScriptPotentiostat
from insitu.instruments.potentiostat import (
    CurrentSequence,
    CurrentStep,
    GalvanostaticHold,
    Impedance,
    Limits,
    OpenCircuit,
)
from insitu.simulators.cell.model import VirtualCell
from insitu.simulators.clock import SimClock
from insitu.simulators.emulators.methodscript.server import MethodScriptEmulator


@pytest.fixture(params=["pty", "tcp"])
def bench(request):
    cell = VirtualCell("A-LPS")
    clock = SimClock(speedup=1e5)
    emu = MethodScriptEmulator(cell, clock, transport=request.param)
    emu.start()
    pstat = None
    try:
        pstat = MethodScriptPotentiostat(emu.resource, timeout_s=2.0)
        yield pstat, emu, cell
    finally:
        if pstat is not None:
            pstat.close()
        emu.stop()


def test_identify(bench):
    pstat, emu, _ = bench
    ident = pstat.identify()
    assert (ident.manufacturer, ident.model, ident.serial) == ("PalmSens", "EmStat4 HR", emu.serial)
    assert ident.firmware.startswith("1.4.00") and ident.resource == emu.resource
    assert pstat.limits.max_abs_voltage_V == 6.0 and "EmStat4 HR" in pstat.name


def test_cp_low_current_follows_the_cell(bench):
    pstat, emu, cell = bench
    current = 50e-6
    emu.clock.speedup = 1e4  # less idle simulated time around the hold
    before = cell.voltage(current)
    data = pstat.run(
        GalvanostaticHold(current, 20.0, interval_s=0.5, voltage_min_V=-5, voltage_max_V=5)
    )
    after = cell.voltage(current)
    assert data.attrs["end_reason"] == "completed"
    assert list(data.columns) == ["time_s", "voltage_V", "current_A", "step"]
    assert len(data) == 40
    np.testing.assert_allclose(data["time_s"], 0.5 * np.arange(1, 41), atol=1e-6)
    np.testing.assert_allclose(np.diff(data["time_s"]), 0.5, atol=1e-6)
    np.testing.assert_allclose(data["current_A"], current, rtol=1e-6)
    # The cell evolves (interphase growth) while time passes: the measured voltage lies
    # between the model's values before and after the hold, within the noise.
    lo, hi = sorted((before, after))
    noise = 5 * cell.noise_V
    assert data["voltage_V"].between(lo * 0.99 - noise, hi * 1.01 + noise).all()
    assert not emu.cell_is_on


def test_open_circuit_of_a_pristine_symmetric_cell(bench):
    pstat, _, _ = bench
    data = pstat.run(OpenCircuit(duration_s=10, interval_s=1))
    assert len(data) == 10 and (data["current_A"] == 0).all()
    assert data["voltage_V"].abs().max() < 1e-3


def test_eis_high_frequency_real_part_is_the_bulk_resistance(bench):
    pstat, _, cell = bench
    eis = Impedance(frequency_start_Hz=200e3, frequency_stop_Hz=1.0, points_per_decade=5)
    data = pstat.run(eis)
    assert list(data.columns) == ["frequency_Hz", "z_real_ohm", "z_imag_ohm"]
    assert len(data) == pstat.eis_points(eis) == 28
    assert data["frequency_Hz"].iloc[0] == pytest.approx(200e3, rel=1e-6)
    assert data["frequency_Hz"].iloc[-1] == pytest.approx(1.0, rel=1e-6)
    model = cell.impedance(np.array([200e3]), noise=False)[0]
    assert data["z_real_ohm"].iloc[0] == pytest.approx(model.real, rel=0.01)
    assert data["z_real_ohm"].iloc[0] == pytest.approx(cell.bulk_resistance_ohm(), rel=0.1)
    assert (data["z_imag_ohm"] < 0).all()  # capacitive


def test_galvanostatic_eis(bench):
    pstat, emu, _ = bench
    data = pstat.run(
        Impedance(
            frequency_start_Hz=100e3,
            frequency_stop_Hz=10,
            mode="galvanostatic",
            amplitude=10e-6,
            points_per_decade=2,
        )
    )
    assert len(data) == 9 and not emu.cell_is_on


def test_sequence_with_sign_change(bench):
    pstat, emu, _ = bench
    seq = CurrentSequence(
        steps=(CurrentStep(1e-3, 5.0), CurrentStep(-1e-3, 5.0)),
        interval_s=0.5,
        voltage_min_V=-5,
        voltage_max_V=5,
    )
    chunks = list(pstat.stream(seq))
    assert len(chunks) >= 2  # one per loop at least
    data = pd.concat(chunks, ignore_index=True)
    assert data.groupby("step").size().to_dict() == {0: 10, 1: 10}
    np.testing.assert_allclose(data["time_s"], 0.5 * np.arange(1, 21), atol=1e-6)
    first, second = data[data.step == 0], data[data.step == 1]
    assert (first["voltage_V"] > 0).all() and (second["voltage_V"] < 0).all()
    np.testing.assert_allclose(second["current_A"], -1e-3, rtol=1e-6)
    assert not emu.cell_is_on


def test_voltage_limit_stops_and_switches_off(bench):
    pstat, emu, cell = bench
    seq = CurrentSequence(
        steps=(CurrentStep(1e-3, 5.0), CurrentStep(50e-3, 100.0), CurrentStep(1e-3, 5.0)),
        interval_s=1.0,
        voltage_min_V=-2.0,
        voltage_max_V=2.0,
    )
    assert abs(cell.voltage(50e-3)) > 2.0  # the second step must cross the limit
    data = pstat.run(seq)
    assert data.attrs["end_reason"] == "voltage_limit"
    assert set(data["step"]) == {0, 1}  # the third step never ran
    assert data["voltage_V"].iloc[-1] > 2.0 and len(data[data.step == 1]) == 1
    assert not emu.cell_is_on


def test_next_step_on_limit(bench):
    pstat, _, _ = bench
    seq = CurrentSequence(
        steps=(CurrentStep(50e-3, 10.0), CurrentStep(1e-3, 3.0)),
        interval_s=1.0,
        voltage_min_V=-2.0,
        voltage_max_V=2.0,
        on_limit="next_step",
    )
    data = pstat.run(seq)
    assert data.attrs["end_reason"] == "completed"
    assert data.groupby("step").size().to_dict() == {0: 1, 1: 3}


def test_limits_are_checked_before_sending(bench):
    pstat, emu, _ = bench
    with pytest.raises(LimitError):
        pstat.run(GalvanostaticHold(0.2, 10, voltage_min_V=-5, voltage_max_V=5))
    with pytest.raises(LimitError):
        pstat.run(Impedance(frequency_start_Hz=1e6))  # the EmStat4 stops at 200 kHz
    assert emu.packages_sent == 0


def test_default_window_stops_at_the_instrument_range(bench):
    pstat, emu, cell = bench
    current = 90e-3
    assert cell.voltage(current) > 6.0  # beyond the EmStat4 HR's ±6 V
    data = pstat.run(GalvanostaticHold(current, 60, interval_s=1))  # default ±10 V window
    assert data.attrs["end_reason"] == "voltage_limit"
    assert len(data) == 1 and data["voltage_V"].iloc[0] > 6.0
    assert not emu.cell_is_on


def test_instrument_reported_error(bench):
    pstat, emu, _ = bench
    # Lift the driver's limit so the instrument itself refuses 0.5 A (its top range is 0.1 A).
    pstat.limits = Limits(max_abs_current_A=1.0, max_abs_voltage_V=6.0)
    with pytest.raises(InstrumentReportedError) as caught:
        pstat.run(GalvanostaticHold(0.5, 10, voltage_min_V=-5, voltage_max_V=5))
    assert caught.value.code == 0x0007
    assert caught.value.last_command.strip().startswith("meas_loop_cp")
    assert pstat.identify().model == "EmStat4 HR"  # link still in sync
    assert not emu.cell_is_on


def test_a_damaged_package_is_a_lost_point_and_the_run_goes_on(bench):
    """MethodSCRIPT streams each point once: a package that cannot be read is skipped and
    counted, the others keep their own times (a gap where the lost one was)."""
    pstat, emu, _ = bench
    emu.garble_next_package()
    data = pstat.run(GalvanostaticHold(1e-3, 1000, interval_s=1, voltage_min_V=-5, voltage_max_V=5))
    assert data.attrs["end_reason"] == "completed" and pstat.points_lost == 1
    np.testing.assert_allclose(data["time_s"], np.arange(2, 1001), atol=1e-6)  # the 1st lost
    assert not emu.cell_is_on and not emu.running
    assert pstat.identify().serial == emu.serial


def test_early_closed_stream_switches_off(bench):
    pstat, emu, _ = bench
    emu.clock.speedup = 1e3  # slow enough that the script is still running when we stop
    stream = pstat.stream(
        GalvanostaticHold(1e-3, 3600, interval_s=1, voltage_min_V=-5, voltage_max_V=5)
    )
    first = next(stream)
    assert len(first) > 0 and emu.cell_is_on
    stream.close()
    assert not emu.cell_is_on and not emu.running
    assert pstat.identify().model == "EmStat4 HR"


def test_closed_connection(bench, request):
    pstat, emu, _ = bench
    pstat.identify()
    emu.disconnect()
    if request.node.callspec.params["bench"] == "tcp":
        # The emulator still listens: identify() changes nothing, so it reconnects.
        assert pstat.identify().model == "EmStat4 HR"
        return
    # A pty is gone for good: the error says so, and that opening it again failed too.
    with pytest.raises(InstrumentConnectionError) as caught:
        pstat.identify()
    assert caught.value.last_command == "t"
    assert "opening the port again failed" in str(caught.value)


def test_timeout_names_the_command():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    silent: list[socket.socket] = []
    accepter = threading.Thread(target=lambda: silent.append(server.accept()[0]), daemon=True)
    accepter.start()
    pstat = MethodScriptPotentiostat(f"socket://127.0.0.1:{server.getsockname()[1]}", timeout_s=0.2)
    try:
        with pytest.raises(InstrumentTimeoutError) as caught:
            pstat.identify()
        assert caught.value.last_command == "t" and "0.2" in str(caught.value)
    finally:
        pstat._ser.close()
        for s in silent:
            s.close()
        server.close()


def test_cannot_open_port():
    with pytest.raises(InstrumentConnectionError):
        MethodScriptPotentiostat("/dev/does-not-exist-42")


def test_throughput_at_high_speedup(bench):
    pstat, emu, _ = bench
    emu.clock.speedup = 1e6
    start = time.perf_counter()
    data = pstat.run(
        GalvanostaticHold(1e-3, 2000, interval_s=0.1, voltage_min_V=-5, voltage_max_V=5)
    )
    wall = time.perf_counter() - start
    assert len(data) == 20000
    print(f"\n{emu.transport}: {len(data) / wall:.0f} packages per wall second")


def test_block_parser_gives_the_rows_of_the_general_parser():
    from types import SimpleNamespace

    from insitu.instruments.methodscript import codec as ms

    rng = np.random.default_rng(11)
    n = 500
    volts = rng.normal(0, 2, n) * 10.0 ** rng.integers(-9, 1, n)
    volts[[3, 7]] = [0.0, np.nan]
    times = np.cumsum(rng.uniform(0, 20, n))
    status = np.where(np.abs(np.nan_to_num(volts)) > 1, ms.STATUS_OVERLOAD, 0)
    text = ms.format_packages(
        [("eb", times, None, None), ("ab", volts, status, None), ("ba", -3e-3, 0, 24)], n
    )
    lines = text.splitlines()
    stub = SimpleNamespace(name="stub", _last_command=None)
    rows = [MethodScriptPotentiostat._package_row(stub, x, False, 2)[0] for x in lines]
    block = MethodScriptPotentiostat._package_block([x.encode() for x in lines], False, 2)
    assert np.array_equal(block, np.asarray(rows, dtype=float), equal_nan=True)
    # without "ba" the current is 0, as in the general path; without "ab" it declines
    no_ba = [x.split(";ba")[0].encode() for x in lines]
    assert (MethodScriptPotentiostat._package_block(no_ba, False, 0)[:, 2] == 0).all()
    no_ab = [x.split(";")[0].encode() for x in lines]
    assert MethodScriptPotentiostat._package_block(no_ab, False, 0) is None
