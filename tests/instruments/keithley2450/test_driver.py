"""The Keithley 2450 driver against the emulator; they meet only over TCP via pyvisa-py."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
import pyvisa

from insitu.instruments.errors import (
    InstrumentConnectionError,
    InstrumentProtocolError,
    InstrumentReportedError,
    InstrumentTimeoutError,
    LimitError,
    UnsupportedTechniqueError,
)
from insitu.instruments.keithley2450.driver import Keithley2450
from insitu.instruments.potentiostat import (
    CurrentSequence,
    CurrentStep,
    GalvanostaticHold,
    Impedance,
    OpenCircuit,
)
from insitu.simulators.cell.model import VirtualCell
from insitu.simulators.clock import SimClock
from insitu.simulators.emulators.keithley2450.server import Keithley2450Emulator

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def cell() -> VirtualCell:
    # LiI-AN: a low-resistance, robust cell that stays far from its critical current here.
    return VirtualCell("LiI-AN", seed=3)


@pytest.fixture
def clock() -> SimClock:
    return SimClock(speedup=2e4)


@pytest.fixture
def emulator(cell: VirtualCell, clock: SimClock) -> Iterator[Keithley2450Emulator]:
    with Keithley2450Emulator(cell, clock) as emu:
        yield emu


@pytest.fixture
def k2450(emulator: Keithley2450Emulator) -> Iterator[Keithley2450]:
    driver = Keithley2450(emulator.resource, timeout_s=1.0, poll_interval_s=0.005)
    try:
        yield driver
    finally:
        driver.close()


def raw_query(resource: str, command: str) -> str:
    """Ask the instrument directly through a separate pyvisa session (test-side check)."""
    rm = pyvisa.ResourceManager("@py")
    try:
        res = rm.open_resource(resource, read_termination="\n", write_termination="\n")
        res.timeout = 2000
        try:
            return res.query(command).strip()
        finally:
            res.close()
    finally:
        rm.close()


def test_identify(k2450: Keithley2450, emulator: Keithley2450Emulator) -> None:
    ident = k2450.identify()
    assert ident.manufacturer == "KEITHLEY INSTRUMENTS"
    assert ident.model == "MODEL 2450"
    assert ident.serial == "04512345"
    assert ident.firmware
    assert ident.resource == emulator.resource
    assert emulator.commands == ["*IDN?"]  # nothing else is sent on connecting


def test_galvanostatic_hold_gives_the_cell_voltage(
    k2450: Keithley2450, emulator: Keithley2450Emulator, cell: VirtualCell
) -> None:
    current = 1e-4
    expected = cell.voltage(current)  # state at the start; it changes slowly at 0.1 mA/cm²
    data = k2450.run(GalvanostaticHold(current, duration_s=300.0, interval_s=2.0))
    assert data.attrs["end_reason"] == "completed"
    assert list(data.columns) == ["time_s", "voltage_V", "current_A", "step"]
    assert len(data) == 150  # 2, 4, ..., 300 s: a delay, then a reading
    np.testing.assert_allclose(np.diff(data["time_s"]), 2.0, atol=1e-6)
    assert data["time_s"].iloc[0] == pytest.approx(2.0, abs=1e-9)
    assert data["voltage_V"].mean() == pytest.approx(expected, rel=0.05)
    np.testing.assert_allclose(data["current_A"], current)
    assert (data["step"] == 0).all()
    assert not emulator.output_on  # rests at open circuit afterwards


def test_current_sequence_alternates_sign(k2450: Keithley2450) -> None:
    seq = CurrentSequence(
        steps=(CurrentStep(2e-4, 100.0), CurrentStep(-2e-4, 100.0), CurrentStep(2e-4, 100.0)),
        interval_s=5.0,
    )
    data = k2450.run(seq)
    assert data.attrs["end_reason"] == "completed"
    assert list(data.groupby("step").size()) == [20, 20, 20]
    signs = data.groupby("step")["voltage_V"].mean().apply(np.sign).tolist()
    assert signs == [1.0, -1.0, 1.0]
    assert (np.sign(data["current_A"]) == np.sign(data["voltage_V"])).all()
    # One clock for the whole technique: time runs on across steps.
    assert data["time_s"].is_monotonic_increasing
    assert data["time_s"].iloc[-1] >= 300.0


def test_open_circuit(k2450: Keithley2450, emulator: Keithley2450Emulator) -> None:
    data = k2450.run(OpenCircuit(duration_s=50.0, interval_s=5.0))
    assert len(data) == 10
    assert (data["current_A"] == 0.0).all()
    assert data["voltage_V"].abs().max() < 1e-3  # symmetric Li|SE|Li cell at rest
    # Open circuit is a 0 A current source with the output on (documented practice): the
    # trigger model's source-output block switches it on.
    assert any(c.startswith(":TRIG:BLOC:SOUR:STAT") and c.endswith("ON") for c in emulator.commands)
    assert not emulator.output_on


def test_voltage_limit_ends_the_hold_and_switches_off(
    clock: SimClock,
) -> None:
    cell = VirtualCell("LiI-AN", seed=4)
    with (
        Keithley2450Emulator(cell, clock) as emu,
        Keithley2450(emu.resource, timeout_s=1.0, poll_interval_s=0.005) as k2450,
    ):
        # 1 mA gives ~40 mV on this cell: far beyond a ±20 mV window.
        assert cell.voltage(1e-3) > 0.03
        hold = GalvanostaticHold(
            1e-3, duration_s=1000.0, interval_s=1.0, voltage_min_V=-0.02, voltage_max_V=0.02
        )
        data = k2450.run(hold)
        assert data.attrs["end_reason"] == "voltage_limit"
        assert len(data) < 1000
        assert not emu.output_on
        assert raw_query(emu.resource, ":OUTP?") == "0"
        assert "*IDN?" not in emu.commands


def test_next_step_on_limit(clock: SimClock) -> None:
    cell = VirtualCell("LiI-AN", seed=5)
    with (
        Keithley2450Emulator(cell, clock) as emu,
        Keithley2450(emu.resource, timeout_s=1.0, poll_interval_s=0.005) as k2450,
    ):
        seq = CurrentSequence(
            steps=(CurrentStep(1e-3, 500.0), CurrentStep(1e-5, 50.0)),
            interval_s=5.0,
            voltage_min_V=-0.02,
            voltage_max_V=0.02,
            on_limit="next_step",
        )
        data = k2450.run(seq)
        assert data.attrs["end_reason"] == "completed"
        sizes = data.groupby("step").size()
        assert sizes[0] < 100  # cut short by the limit
        assert sizes[1] == 10
        assert not emu.output_on


def test_unknown_command_reported_by_the_error_queue(k2450: Keithley2450) -> None:
    k2450.write(":FOO:BAR")
    with pytest.raises(InstrumentReportedError) as info:
        k2450.check_errors()
    assert info.value.code == -113
    assert "Undefined header" in str(info.value)
    assert k2450.identify().model == "MODEL 2450"  # still answering


def test_bad_parameter_reported_with_its_code(k2450: Keithley2450) -> None:
    k2450.write(":SOUR:CURR 2")
    with pytest.raises(InstrumentReportedError) as info:
        k2450.check_errors()
    assert info.value.code == -222
    assert "Keithley 2450" in str(info.value)
    assert ":SOUR:CURR 2" in str(info.value)


def test_limit_errors_are_raised_before_sending(
    k2450: Keithley2450, emulator: Keithley2450Emulator
) -> None:
    with pytest.raises(LimitError, match=r"1\.05 A"):
        k2450.run(GalvanostaticHold(2.0, duration_s=10.0))
    with pytest.raises(LimitError, match="interval"):
        k2450.run(GalvanostaticHold(1e-3, duration_s=10.0, interval_s=1e-4))
    with pytest.raises(LimitError, match=r"1\.05 A"):
        k2450.run(CurrentSequence(steps=(CurrentStep(1e-3, 10.0), CurrentStep(-1.5, 10.0))))
    assert emulator.commands == []


def test_window_wider_than_the_instrument_uses_its_full_range(
    k2450: Keithley2450, emulator: Keithley2450Emulator
) -> None:
    data = k2450.run(
        GalvanostaticHold(1e-4, duration_s=10.0, voltage_min_V=-300.0, voltage_max_V=300.0)
    )
    assert data.attrs["end_reason"] == "completed"
    assert emulator.voltage_limit_V == pytest.approx(210.0)


def test_eis_is_unsupported_and_nothing_is_sent(
    k2450: Keithley2450, emulator: Keithley2450Emulator
) -> None:
    assert not k2450.supports(Impedance)
    with pytest.raises(UnsupportedTechniqueError):
        k2450.run(Impedance())
    assert emulator.commands == []


def test_connection_lost_mid_technique_is_opened_again_and_no_reading_is_lost(
    k2450: Keithley2450, emulator: Keithley2450Emulator
) -> None:
    # The trigger model runs inside the instrument whatever happens to the connection, and
    # its readings wait in the buffer: the driver reconnects and reads on.
    stream = k2450.stream(GalvanostaticHold(1e-4, duration_s=2000.0, interval_s=1.0))
    chunks = [next(stream)]
    assert len(chunks[0]) > 0
    emulator.drop_clients()
    chunks += list(stream)
    data = pd.concat([c for c in chunks if len(c)], ignore_index=True)
    np.testing.assert_allclose(data["time_s"], np.arange(1, 2001))  # each reading once
    assert chunks[-1].attrs["end_reason"] == "completed"
    assert not emulator.output_on


def test_an_instrument_gone_mid_technique_is_a_connection_error(
    k2450: Keithley2450, emulator: Keithley2450Emulator
) -> None:
    stream = k2450.stream(GalvanostaticHold(1e-4, duration_s=1e6, interval_s=1.0))
    assert len(next(stream)) > 0
    emulator.stop()  # nothing answers on its port any more
    with pytest.raises(InstrumentConnectionError) as info:
        for _ in stream:
            pass
    message = str(info.value)
    assert "Keithley 2450" in message and emulator.resource in message
    assert "connecting again failed" in message
    assert info.value.last_command is not None and "last command" in message


def test_timeout_when_the_instrument_stops_answering(
    emulator: Keithley2450Emulator,
) -> None:
    with Keithley2450(emulator.resource, timeout_s=0.2) as k2450:
        emulator.responding = False
        with pytest.raises(InstrumentTimeoutError) as info:
            k2450.identify()
        assert info.value.last_command == "*IDN?"
        assert "Keithley 2450" in str(info.value) and "not busy" in str(info.value)
        emulator.responding = True
        # The driver recovers on a fresh connection once the instrument answers again.
        assert k2450.identify().model == "MODEL 2450"
        k2450.cell_off()
        assert not emulator.output_on


def test_breaking_out_of_the_stream_switches_off(
    k2450: Keithley2450, emulator: Keithley2450Emulator
) -> None:
    for chunk in k2450.stream(GalvanostaticHold(1e-4, duration_s=1e6, interval_s=1.0)):
        assert len(chunk) > 0
        assert emulator.output_on
        break
    assert not emulator.output_on
    assert raw_query(emulator.resource, ":TRIG:STAT?").startswith("ABORTED")


def test_connection_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(InstrumentConnectionError, match="Keithley 2450"):
        Keithley2450(f"TCPIP::127.0.0.1::{port}::SOCKET", timeout_s=0.5)


def test_garbled_reply_is_a_protocol_error() -> None:
    """A fake instrument that answers every line with nonsense."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]

    def serve() -> None:
        conn, _ = server.accept()
        with conn, contextlib.suppress(OSError):  # the driver may reset the connection
            while data := conn.recv(4096):
                for _ in range(data.count(b"\n")):
                    conn.sendall(b"garbage\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        k2450 = Keithley2450(f"TCPIP::127.0.0.1::{port}::SOCKET", timeout_s=0.5)
        with pytest.raises(InstrumentProtocolError, match=r"\*IDN\?"):
            k2450.identify()
        with pytest.raises(InstrumentProtocolError):
            k2450.check_errors()
        k2450.close()
    finally:
        server.close()
        thread.join(timeout=2)


# --- sequences run as one instrument-side trigger model ---------------------------------
def test_sequence_steps_follow_each_other_without_gaps(
    k2450: Keithley2450, emulator: Keithley2450Emulator
) -> None:
    seq = CurrentSequence(
        steps=(
            CurrentStep(2e-4, 100.0),
            CurrentStep(-2e-4, 100.0),
            CurrentStep(1e-4, 30.0),  # a different length: a second loop of the model
            CurrentStep(-1e-4, 30.0),
        ),
        interval_s=5.0,
    )
    data = k2450.run(seq)
    assert data.attrs["end_reason"] == "completed"
    assert list(data.groupby("step").size()) == [20, 20, 6, 6]
    t = data["time_s"].to_numpy()
    # Readings every interval from start to end, across every step change.
    np.testing.assert_allclose(t, 5.0 * np.arange(1, 53), atol=1e-6)
    for k in range(3):
        last = data.loc[data["step"] == k, "time_s"].iloc[-1]
        first = data.loc[data["step"] == k + 1, "time_s"].iloc[0]
        assert first == pytest.approx(last + 5.0, abs=1e-6)
    np.testing.assert_allclose(
        data.groupby("step")["current_A"].mean(), [2e-4, -2e-4, 1e-4, -1e-4], rtol=1e-9
    )
    # One trigger model, started once: the host did not switch the steps.
    # One trigger model per step (Potentiostat.stream sends a sequence one half-cycle at a
    # time, so a dead host leaves at most one step running): 4 steps, 4 starts.
    assert emulator.commands.count(":INIT") == 4
    assert not emulator.output_on


def test_equal_consecutive_currents_are_separate_steps(k2450: Keithley2450) -> None:
    seq = CurrentSequence(
        steps=(
            CurrentStep(1e-4, 20.0),
            CurrentStep(1e-4, 20.0),
            CurrentStep(-1e-4, 10.0),
            CurrentStep(-1e-4, 10.0),
        ),
        interval_s=2.0,
    )
    data = k2450.run(seq)
    assert list(data.groupby("step").size()) == [10, 10, 5, 5]
    assert data["step"].is_monotonic_increasing


def test_next_step_on_limit_with_equal_currents(clock: SimClock) -> None:
    cell = VirtualCell("LiI-AN", seed=6)
    with (
        Keithley2450Emulator(cell, clock) as emu,
        Keithley2450(emu.resource, timeout_s=1.0, poll_interval_s=0.005) as k2450,
    ):
        seq = CurrentSequence(
            # Both 1 mA steps leave the ±20 mV window at once; the limit jumps to the next one.
            steps=(CurrentStep(1e-3, 500.0), CurrentStep(1e-3, 500.0), CurrentStep(1e-5, 50.0)),
            interval_s=5.0,
            voltage_min_V=-0.02,
            voltage_max_V=0.02,
            on_limit="next_step",
        )
        data = k2450.run(seq)
        assert data.attrs["end_reason"] == "completed"
        sizes = data.groupby("step").size()
        assert list(sizes.index) == [0, 1, 2]
        assert sizes[0] < 100 and sizes[1] < 100
        assert sizes[2] == 10
        for k in (0, 1):
            assert data.loc[data["step"] == k, "voltage_V"].abs().iloc[-1] >= 0.02 * (1 - 1e-6)
        np.testing.assert_allclose(np.diff(data["time_s"]), 5.0, atol=1e-6)
        assert not emu.output_on


def test_stop_on_limit_ends_the_sequence_in_the_instrument(clock: SimClock) -> None:
    cell = VirtualCell("LiI-AN", seed=8)
    with (
        Keithley2450Emulator(cell, clock) as emu,
        Keithley2450(emu.resource, timeout_s=1.0, poll_interval_s=0.005) as k2450,
    ):
        seq = CurrentSequence(
            steps=(CurrentStep(1e-5, 50.0), CurrentStep(1e-3, 500.0), CurrentStep(1e-5, 50.0)),
            interval_s=5.0,
            voltage_min_V=-0.03,
            voltage_max_V=0.03,
            on_limit="stop",
        )
        data = k2450.run(seq)
        assert data.attrs["end_reason"] == "voltage_limit"
        assert list(data.groupby("step").size().index) == [0, 1]
        # The last reading is at the 30 mV source limit (compliance), which ends it too.
        assert data["voltage_V"].iloc[-1] >= 0.03 * (1 - 1e-6)
        assert (data["voltage_V"].iloc[:-1].abs() < 0.03 * (1 - 1e-6)).all()
        # The instrument's own model jumped to its last block (1 + 3 loops of 8 + 1), which
        # switched the output off at the limit.
        # The step's own model (11 blocks; the whole sequence's had 26) ended at the limit.
        assert raw_query(emu.resource, ":TRIG:STAT?") == "IDLE;IDLE;10"
        assert not emu.output_on


def test_a_hold_beyond_the_buffer_is_refused_before_sending(
    k2450: Keithley2450, emulator: Keithley2450Emulator
) -> None:
    # (Step lengths no longer add up in one trigger model: each step is its own.)
    with pytest.raises(LimitError, match="buffer"):
        k2450.run(GalvanostaticHold(1e-4, duration_s=5e6, interval_s=1.0))
    assert emulator.commands == []
