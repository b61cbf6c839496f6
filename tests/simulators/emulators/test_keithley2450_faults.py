"""The emulated Keithley 2450's own faults (``InstrumentFaults``) and the source status of its
readings, driven over raw SCPI as third-party code would drive the instrument."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from insitu.simulators.cell.model import VirtualCell
from insitu.simulators.clock import SimClock
from insitu.simulators.emulators.keithley2450.server import Keithley2450Emulator
from insitu.simulators.emulators.keithley2450.source import FAULT_EVENT, STAT_LIMIT, STAT_OUTPUT
from insitu.simulators.faults import InstrumentFaults

pytestmark = pytest.mark.timeout(30)


class RawSCPI:
    """A raw-socket SCPI client, as in the manual's programming examples."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=2.0)
        self.file = self.sock.makefile("rb")

    def write(self, command: str) -> None:
        self.sock.sendall(command.encode("ascii") + b"\n")

    def query(self, command: str) -> str:
        self.write(command)
        return self.file.readline().decode("ascii").rstrip("\n")

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.fixture
def k() -> Iterator[RawSCPI]:
    """A client of a fresh emulator without faults (LiI-AN, seed 4)."""
    with Keithley2450Emulator(VirtualCell("LiI-AN", seed=4), SimClock(speedup=1e4)) as emulator:
        client = RawSCPI(emulator.port)
        try:
            yield client
        finally:
            client.close()


# 1e-4 A into LiI-AN: a few mV, far inside a 2 V voltage limit.
_SOURCE = ':SOUR:FUNC CURR;:SOUR:CURR 1e-4;:SOUR:CURR:VLIM 2;:SENS:FUNC "VOLT";:OUTP ON'
_ELEMENTS = "READ, SOUR, SOURSTAT"


def _loop(k: RawSCPI, readings: int) -> np.ndarray:
    """Run the SimpleLoop template (``readings`` readings 1 s apart) to its end; the rows
    (reading, source, source status) that it stored."""
    k.write(_SOURCE)
    k.write(f':TRIG:LOAD "SimpleLoop", {readings}, 1, "defbuffer1"')
    k.write(":INIT")
    k.write("*WAI")
    n = int(k.query(":TRAC:ACT?"))
    values = k.query(f':TRAC:DATA? 1, {n}, "defbuffer1", {_ELEMENTS}').split(",")
    return np.array(values, dtype=float).reshape(n, 3)


def aged_cell() -> VirtualCell:
    """LiI-AN (seed 4) after years at rest: its interphase has stopped changing at the scale
    of the seconds a test's timing shifts its readings by, so two runs read the same values
    to ~1e-8 V (a fresh cell's readings move by ~1e-5 V with the wall clock)."""
    cell = VirtualCell("LiI-AN", seed=4)
    cell.advance_to(1e8, 0.0)
    return cell


Loop = Callable[..., tuple[np.ndarray, RawSCPI, Keithley2450Emulator]]


@pytest.fixture
def run_loop() -> Iterator[Loop]:
    """Runs a loop of readings on a fresh emulator (LiI-AN, seed 4) with the given faults;
    returns (rows, the client, the emulator), open until the test ends."""
    opened: list[tuple[Keithley2450Emulator, RawSCPI]] = []

    def run(
        faults: InstrumentFaults | None, readings: int = 20
    ) -> tuple[np.ndarray, RawSCPI, Keithley2450Emulator]:
        cell = aged_cell()
        emulator = Keithley2450Emulator(
            cell, SimClock(speedup=1e4, start_s=cell.time_s), faults=faults
        )
        emulator.start()
        client = RawSCPI(emulator.port)
        opened.append((emulator, client))
        return _loop(client, readings), client, emulator

    yield run
    for emulator, client in opened:
        client.close()
        emulator.stop()


def test_readings_carry_their_source_status(k: RawSCPI) -> None:
    k.write(':SOUR:FUNC CURR;:SOUR:CURR 1e-4;:SENS:FUNC "VOLT"')
    off = k.query(':READ? "defbuffer1", SOURSTAT')
    k.write(":OUTP ON")
    on = k.query(':READ? "defbuffer1", SOURSTATus')
    assert (off, on) == ("0", str(STAT_OUTPUT))


def test_a_real_compliance_is_flagged_source_limited() -> None:
    # LiI-AN at 1 mA: about 40 mV, twice the 20 mV limit.
    with Keithley2450Emulator(VirtualCell("LiI-AN", seed=2), SimClock(speedup=1e4)) as emulator:
        k = RawSCPI(emulator.port)
        try:
            k.write(':SOUR:FUNC CURR;:SOUR:CURR 1e-3;:SOUR:CURR:VLIM 0.02;:SENS:FUNC "VOLT"')
            k.write(":OUTP ON")
            reading, status = map(float, k.query(':READ? "defbuffer1", READ, SOURSTAT').split(","))
            assert reading == pytest.approx(0.02, abs=1e-4)
            assert int(status) == STAT_OUTPUT | STAT_LIMIT
        finally:
            k.close()


def test_error_after_n_points_reports_the_event_and_stops_sourcing(run_loop: Loop) -> None:
    clean, _, _ = run_loop(None)
    rows, k, emulator = run_loop(InstrumentFaults(error_after=7))
    # Seven readings, the same as without the fault; then the instrument stopped.
    assert len(rows) == 7
    np.testing.assert_allclose(rows, clean[:7], rtol=0, atol=1e-6)
    assert not emulator.output_on
    assert k.query(":OUTP?") == "0"
    assert k.query(":TRIG:STAT?").startswith("FAILED;FAILED;")
    assert k.query("*STB?") == "4"  # an error is available
    code, message = FAULT_EVENT
    assert k.query(":SYST:ERR:COUN?") == "1"
    assert k.query(":SYST:ERR?") == f'{code},"{message}"'
    # It fires once: the instrument works again afterwards.
    k.write(":OUTP ON")
    assert k.query(':READ? "defbuffer1", SOURSTAT') == str(STAT_OUTPUT)
    assert k.query(":SYST:ERR?") == '0,"No error"'


def test_overload_puts_the_source_in_compliance_from_the_next_point_on(run_loop: Loop) -> None:
    clean, _, _ = run_loop(None)
    rows, k, emulator = run_loop(InstrumentFaults(overload_after=5))
    assert len(rows) == len(clean) == 20
    np.testing.assert_allclose(rows[:5], clean[:5], rtol=0, atol=1e-6)
    assert (rows[:5, 2] == STAT_OUTPUT).all()
    # From reading 6 on: the terminals at the 2 V limit, no current, flagged source-limited.
    np.testing.assert_array_equal(rows[5:, 0], 2.0)
    np.testing.assert_array_equal(rows[5:, 1], 0.0)
    assert (rows[5:, 2] == STAT_OUTPUT | STAT_LIMIT).all()
    assert k.query(":SOUR:CURR:VLIM:TRIP?") == "1"
    k.write(":OUTP OFF")
    assert k.query(":SOUR:CURR:VLIM:TRIP?") == "0"  # no source, no compliance
    assert k.query(":SYST:ERR:COUN?") == "0"  # compliance is no error
    assert emulator.faults.overload_after == 5


def test_overload_ends_a_step_at_the_limit_block() -> None:
    """A limit block on the voltage (as the driver programs one) sees the clamped reading."""
    emulator = Keithley2450Emulator(
        VirtualCell("LiI-AN", seed=4),
        SimClock(speedup=1e4),
        faults=InstrumentFaults(overload_after=3),
    )
    with emulator:
        raw = RawSCPI(emulator.port)
        try:
            for command in (
                ':SOUR:FUNC CURR;:SOUR:CURR 1e-4;:SOUR:CURR:VLIM 2;:SENS:FUNC "VOLT"',
                ':TRIG:LOAD "Empty"',
                ':TRIG:BLOC:BUFF:CLE 1, "defbuffer1"',
                ":TRIG:BLOC:SOUR:STAT 2, ON",
                ":TRIG:BLOC:DEL:CONS 3, 1",
                ':TRIG:BLOC:MEAS 4, "defbuffer1", 1',
                ":TRIG:BLOC:BRAN:LIM:CONS 5, OUTS, -1.99999, 1.99999, 7, 4",
                ":TRIG:BLOC:BRAN:COUN 6, 100, 3",
                ":TRIG:BLOC:SOUR:STAT 7, OFF",
                ":INIT",
                "*WAI",
            ):
                raw.write(command)
            assert raw.query(":TRAC:ACT?") == "4"  # 3 readings, then the clamped one
            assert raw.query(":TRIG:STAT?") == "IDLE;IDLE;7"
            assert raw.query(":OUTP?") == "0"
        finally:
            raw.close()
