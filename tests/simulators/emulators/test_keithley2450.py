"""The Keithley 2450 emulator, driven the way third-party code drives a real 2450: raw SCPI
over a plain TCP socket (port 5025 style), commands from the Reference Manual."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import numpy as np
import pytest

from insitu.simulators.cell.model import VirtualCell
from insitu.simulators.clock import SimClock
from insitu.simulators.emulators.keithley2450.server import Keithley2450Emulator

pytestmark = pytest.mark.timeout(30)


class RawSCPI:
    """Minimal raw-socket SCPI client, as in the manual's programming examples."""

    def __init__(self, port: int, timeout_s: float = 2.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._pending = b""

    def write(self, command: str) -> None:
        self.sock.sendall(command.encode("ascii") + b"\n")

    def read(self) -> str:
        while b"\n" not in self._pending:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("emulator closed the connection")
            self._pending += data
        line, _, self._pending = self._pending.partition(b"\n")
        return line.decode("ascii")

    def query(self, command: str) -> str:
        self.write(command)
        return self.read()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def cell() -> VirtualCell:
    return VirtualCell("A-LPS", seed=1)


@pytest.fixture
def clock() -> SimClock:
    return SimClock(speedup=1e4)


@pytest.fixture
def emulator(cell: VirtualCell, clock: SimClock) -> Iterator[Keithley2450Emulator]:
    emu = Keithley2450Emulator(cell, clock)
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def k(emulator: Keithley2450Emulator) -> Iterator[RawSCPI]:
    client = RawSCPI(emulator.port)
    try:
        yield client
    finally:
        client.close()


def test_refuses_non_local_host(cell: VirtualCell, clock: SimClock) -> None:
    with pytest.raises(ValueError, match=r"127\.0\.0\.1"):
        Keithley2450Emulator(cell, clock, host="0.0.0.0")


def test_resource_string_and_context_manager(cell: VirtualCell, clock: SimClock) -> None:
    with Keithley2450Emulator(cell, clock) as emu:
        assert emu.port > 0
        assert emu.resource == f"TCPIP::127.0.0.1::{emu.port}::SOCKET"
        port = emu.port
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=0.5)


def test_identity(k: RawSCPI) -> None:
    assert k.query("*IDN?") == "KEITHLEY INSTRUMENTS,MODEL 2450,04512345,1.7.12b"


def test_manual_example_source_current_measure_voltage(k: RawSCPI, cell: VirtualCell) -> None:
    for command in (
        "*RST",
        ":SOUR:FUNC CURR",
        ":SOUR:CURR 1e-4",
        ":SOUR:CURR:VLIM 2",
        ':SENS:FUNC "VOLT"',
        ":OUTP ON",
    ):
        k.write(command)
    v = float(k.query(":READ?"))
    assert v == pytest.approx(cell.voltage(1e-4), rel=0.02, abs=1e-4)
    assert k.query(":OUTP?") == "1"

    k.write(':TRIG:LOAD "SimpleLoop", 10, 0.1')
    k.write(":INIT")
    k.write("*WAI")
    values = k.query(':TRAC:DATA? 1, 10, "defbuffer1", READ, REL').split(",")
    assert len(values) == 20
    readings = np.array(values[0::2], dtype=float)
    rel = np.array(values[1::2], dtype=float)
    np.testing.assert_allclose(rel, np.arange(10) * 0.1, atol=1e-6)
    np.testing.assert_allclose(readings, cell.voltage(1e-4), rtol=0.02, atol=1e-4)
    assert k.query(":TRAC:ACT?") == "10"
    assert k.query(":TRACe:ACTual:STARt?;:TRACe:ACTual:END?") == "1;10"
    assert k.query(":TRIG:STAT?") == "IDLE;IDLE;4"
    assert k.query(":SYST:ERR?") == '0,"No error"'


def test_short_long_forms_case_and_relative_paths(k: RawSCPI) -> None:
    k.write(":source:function current")
    k.write(":SOURce1:CURRent:LEVel:IMMediate:AMPLitude 2.5e-4")
    assert k.query(":SOUR:FUNC?") == "CURR"
    assert float(k.query(":sour:curr?")) == pytest.approx(2.5e-4)
    # A command without a leading colon continues from the previous command's path.
    k.write(":SOUR:CURR:VLIM 3;:SOUR:CURR:LEV 1e-3;VLIM 4")
    assert float(k.query(":SOUR:CURR:VLIM?")) == pytest.approx(4.0)
    assert k.query(":SOUR:CURR?;:SOUR:CURR:VLIM?") == "1.000000E-03;4.000000E+00"
    # Only short or long forms are accepted, nothing in between.
    k.write(":SOURC:CURR 1e-3")
    assert k.query(":SYST:ERR?") == '-113,"Undefined header"'


def test_unknown_command_error_and_server_keeps_working(k: RawSCPI) -> None:
    assert k.query(":SYST:ERR?") == '0,"No error"'
    k.write(":FOO:BAR 1")
    k.write(":NOPE?")  # an unknown query gets no reply, only an error
    assert k.query(":SYSTem:ERRor:COUNt?") == "2"
    assert k.query(":SYST:ERR?") == '-113,"Undefined header"'
    assert k.query(":SYST:ERR:NEXT?") == '-113,"Undefined header"'
    assert k.query(":SYST:ERR?") == '0,"No error"'
    assert k.query("*IDN?").startswith("KEITHLEY INSTRUMENTS,MODEL 2450")


def test_over_long_message_overruns_the_input_buffer_once(k: RawSCPI) -> None:
    # More than 1 MiB without a line feed: discarded whole, tail included, and one -363.
    k.write(":SOUR:CURR " + "1" * (1 << 20) + ";*IDN?")
    assert k.query(":SYST:ERR?") == '-363,"Input buffer overrun"'
    assert k.query(":SYST:ERR?") == '0,"No error"'
    assert k.query("*IDN?").startswith("KEITHLEY INSTRUMENTS,MODEL 2450")


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (":SOUR:CURR 2", -222),  # beyond ±1.05 A
        (":SOUR:CURR:VLIM 500", -222),  # beyond 210 V
        (":SOUR:CURR abc", -104),  # not a number
        (":SOUR:FUNC FOO", -141),  # not one of CURR/VOLT
        (":OUTP MAYBE", -141),
        (":SOUR:CURR", -109),  # missing parameter
        ("*RST 1", -108),  # parameter not allowed
        (':TRIG:LOAD "SimpleLoop", 0', -222),  # count must be ≥ 1
        (':TRAC:DATA? 1, 5, "nosuchbuffer"', -224),
    ],
)
def test_bad_parameters_give_the_scpi_error(k: RawSCPI, command: str, code: int) -> None:
    k.write(command)
    reply = k.query(":SYST:ERR?")
    assert int(reply.split(",")[0]) == code
    assert k.query(":SYST:ERR?") == '0,"No error"'


def test_init_while_running_is_ignored(k: RawSCPI) -> None:
    k.write(':TRIG:LOAD "SimpleLoop", 5, 1000')
    k.write(":INIT")
    assert k.query(":TRIG:STAT?").startswith("RUNNING;RUNNING;")
    k.write(":INIT")
    assert k.query(":SYST:ERR?") == '-213,"Init ignored"'
    k.write(":ABOR")
    assert k.query(":TRIG:STAT?").startswith("ABORTED;ABORTED;")


def test_compliance_clamps_voltage_and_reduces_current(clock: SimClock) -> None:
    # LiI-AN at 1 mA: about 40 mV, twice the 20 mV limit, and far from its critical current.
    cell = VirtualCell("LiI-AN", seed=2)
    with Keithley2450Emulator(cell, clock) as emulator:
        k = RawSCPI(emulator.port)
        _check_compliance(k, cell)


def _check_compliance(k: RawSCPI, cell: VirtualCell) -> None:
    try:
        k.write('*RST;:SOUR:FUNC CURR;:SOUR:CURR 1e-3;:SOUR:CURR:VLIM 0.02;:SENS:FUNC "VOLT"')
        assert k.query(":SOUR:CURR:VLIM:TRIP?") == "0"  # output off: no compliance
        assert cell.voltage(1e-3) > 0.03
        k.write(":OUTP ON")
        assert k.query(":SOUR:CURR:VLIMit:TRIPped?") == "1"
        reading, source = map(float, k.query(':READ? "defbuffer1", READ, SOUR').split(","))
        assert reading == pytest.approx(0.02, abs=1e-4)
        assert 0 < source < 1e-3
        assert cell.voltage(source) == pytest.approx(0.02, rel=1e-2)
        k.write(":SOUR:CURR 1e-4")  # well inside the limit again
        assert k.query(":SOUR:CURR:VLIM:TRIP?") == "0"
    finally:
        k.close()


def test_output_off_is_open_circuit(k: RawSCPI, cell: VirtualCell) -> None:
    k.write(':SOUR:FUNC CURR;:SOUR:CURR 1e-3;:SENS:FUNC "VOLT"')
    assert k.query(":OUTP?") == "0"
    reading, source = map(float, k.query(':MEAS:VOLT? "defbuffer1", READ, SOUR').split(","))
    assert source == 0.0
    assert reading == pytest.approx(cell.voltage(0.0), abs=2e-4)


def test_readings_at_exact_times_and_cell_never_ahead(
    k: RawSCPI, emulator: Keithley2450Emulator, cell: VirtualCell, clock: SimClock
) -> None:
    k.write(":SOUR:FUNC CURR;:SOUR:CURR 1e-4;:OUTP ON")
    k.write(':TRIG:LOAD "SimpleLoop", 5, 1000, "defbuffer1"')
    k.write(":INIT")
    # Readings are far apart in simulated time: the cell must not run ahead of the clock.
    assert cell.time_s <= clock.now()
    k.write("*WAI")
    values = k.query(':TRAC:DATA? 1, 5, "defbuffer1", SEC, FRAC, REL, UNIT, SOURUNIT')
    rows = np.array(values.split(","), dtype=object).reshape(5, 5)
    t = rows[:, 0].astype(float) + rows[:, 1].astype(float)
    np.testing.assert_allclose(np.diff(t), 1000.0, atol=1e-6)
    np.testing.assert_allclose(rows[:, 2].astype(float), np.arange(5) * 1000.0, atol=1e-6)
    assert set(rows[:, 3]) == {"Volt DC"} or set(rows[:, 3]) == {"Amp DC"}
    assert set(rows[:, 4]) == {"Amp DC"}


def test_buffers_make_points_clear(k: RawSCPI) -> None:
    assert k.query(":TRAC:POIN?") == "100000"
    k.write(':TRACe:MAKE "mybuf", 50')
    assert k.query(':TRAC:POIN? "mybuf"') == "50"
    k.write(':TRIG:LOAD "SimpleLoop", 3, 0, "mybuf"')
    k.write(":INIT;*WAI")
    assert k.query(':TRAC:ACT? "mybuf"') == "3"
    assert k.query(":TRAC:ACT?") == "0"
    k.write(':TRAC:CLE "mybuf"')
    assert k.query(':TRAC:ACT? "mybuf"') == "0"
    k.write(':TRAC:MAKE "mybuf", 50')  # already exists
    assert k.query(":SYST:ERR?").startswith("-224,")


def test_sequential_clients_share_the_instrument(emulator: Keithley2450Emulator) -> None:
    first = RawSCPI(emulator.port)
    first.write(":SOUR:FUNC CURR;:SOUR:CURR 5e-4")
    # Each connection has its own server thread: wait until the first client's commands are
    # done, as a client of the real instrument would, before the second one asks.
    assert first.query("*OPC?") == "1"
    first.close()
    second = RawSCPI(emulator.port)
    try:
        assert float(second.query(":SOUR:CURR?")) == pytest.approx(5e-4)
    finally:
        second.close()
    assert ":SOUR:FUNC CURR;:SOUR:CURR 5e-4" in emulator.commands


def test_rst_restores_defaults(k: RawSCPI) -> None:
    k.write(":SOUR:FUNC CURR;:SOUR:CURR 1e-3;:SOUR:CURR:VLIM 5;:OUTP ON")
    k.write("*RST")
    assert k.query(":SOUR:FUNC?") == "VOLT"
    assert k.query(":OUTP?") == "0"
    assert float(k.query(":SOUR:CURR:VLIM?")) == pytest.approx(21.0)
    assert k.query(":SENS:FUNC?") == '"CURR:DC"'
    assert k.query("*OPC?") == "1"


# --- configurable trigger model and source configuration lists ---------------------------
def _send(k: RawSCPI, *commands: str) -> None:
    for command in commands:
        k.write(command)
    assert k.query(":SYST:ERR?") == '0,"No error"', commands


def _rows(k: RawSCPI, n: int, elements: str) -> np.ndarray:
    values = k.query(f':TRAC:DATA? 1, {n}, "defbuffer1", {elements}').split(",")
    return np.array(values, dtype=float).reshape(n, -1)


def test_manual_nested_counter_example_gives_15_readings(k: RawSCPI) -> None:
    # Reference Manual, :TRIGger:BLOCk:BRANch:COUNter: inner loop of 5 readings, a 1 s delay,
    # repeated 3 times -> 15 readings (a finished counter starts over when reached again).
    _send(
        k,
        ':TRIG:LOAD "Empty"',
        ":TRIG:BLOC:BUFF:CLE 1",
        ":TRIG:BLOC:MEAS 2",
        ":TRIG:BLOC:BRAN:COUN 3, 5, 2",
        ":TRIG:BLOC:DEL:CONS 4, 1",
        ":TRIG:BLOC:BRAN:COUN 5, 3, 2",
    )
    assert k.query(":TRIG:STAT?") == "BUILDING;BUILDING;0"
    assert k.query(":TRIG:BLOC:LIST?").split(";") == [
        "1) BUFFER_CLEAR BUFFER: defbuffer1",
        "2) MEASURE BUFFER: defbuffer1 COUNT: 1",
        "3) BRANCH_COUNTER VALUE: 5 BRANCH_BLOCK: 2",
        "4) DELAY_CONSTANT DELAY: 1.000000000",
        "5) BRANCH_COUNTER VALUE: 3 BRANCH_BLOCK: 2",
    ]
    k.write(":INIT")
    k.write("*WAI")
    assert k.query(":TRAC:ACT?") == "15"
    rel = _rows(k, 15, "REL")[:, 0]
    np.testing.assert_allclose(rel, np.repeat([0.0, 1.0, 2.0], 5), atol=1e-9)
    assert k.query(":TRIG:STAT?") == "IDLE;IDLE;5"
    assert k.query(":TRIG:BLOC:BRAN:COUN:COUN? 5") == "3"


def test_counter_reset_block(k: RawSCPI) -> None:
    _send(
        k,
        ':TRIG:LOAD "Empty"',
        ":TRIG:BLOC:MEAS 1",
        ":TRIG:BLOC:BRAN:COUN 2, 4, 1",
        ":TRIG:BLOC:BRAN:COUN:RES 3, 2",
        ":INIT",
        "*WAI",
    )
    assert k.query(":TRAC:ACT?") == "4"
    assert k.query(":TRIG:BLOC:BRAN:COUN:COUN? 2") == "0"


def test_limit_branch_cuts_the_batch_at_the_exact_reading(clock: SimClock) -> None:
    cell = VirtualCell("LiI-AN", seed=7)
    current = 1e-3
    threshold = cell.voltage(current) + 2 * cell.noise_V  # met by ~2 % of the readings
    with Keithley2450Emulator(cell, clock) as emu:
        k = RawSCPI(emu.port)
        try:
            _send(
                k,
                f':SOUR:FUNC CURR;:SOUR:CURR {current};:SENS:FUNC "VOLT"',
                ':TRIG:LOAD "Empty"',
                ":TRIG:BLOC:BUFF:CLE 1",
                ":TRIG:BLOC:SOUR:STAT 2, ON",
                ":TRIG:BLOC:DEL:CONS 3, 1",
                ":TRIG:BLOC:MEAS 4",
                f":TRIG:BLOC:BRAN:LIM:CONS 5, ABOV, 0, {threshold:.9g}, 7, 4",
                ":TRIG:BLOC:BRAN:COUN 6, 1000, 3",
                ":TRIG:BLOC:SOUR:STAT 7, OFF",
            )
            charge0 = cell.state.charge_passed_C
            k.write(":INIT")
            clock.sleep(2000.0)  # everything is due at the next command: one batch
            n = int(k.query(":TRAC:ACT?"))
            assert 1 <= n < 1000
            rows = _rows(k, n, "READ, REL")
            assert rows[-1, 0] > threshold
            assert (rows[:-1, 0] <= threshold).all()
            np.testing.assert_allclose(rows[:, 1], np.arange(n), atol=1e-9)
            assert k.query(":TRIG:STAT?") == "IDLE;IDLE;7"
            assert k.query(":OUTP?") == "0"
            # Current flowed from the first delay to the reading that met the limit, and not
            # a moment longer: the cell was not advanced past it at the old current.
            assert cell.state.charge_passed_C - charge0 == pytest.approx(current * n, rel=1e-9)
        finally:
            k.close()


def test_source_configuration_list_recall_and_next(k: RawSCPI) -> None:
    _send(
        k,
        ':SOUR:FUNC CURR;:SENS:FUNC "VOLT"',
        ':SOUR:CONF:LIST:CRE "steps"',
        ':SOUR:CURR 1e-4;:SOUR:CONF:LIST:STOR "steps"',
        ':SOUR:CURR -1e-4;:SOUR:CONF:LIST:STOR "steps"',
        ':SOUR:CURR 2e-4;:SOUR:CONF:LIST:STOR "steps"',
        ":SOUR:CURR 0",
    )
    assert k.query(':SOUR:CONF:LIST:SIZE? "steps"') == "3"
    _send(k, ':SOUR:CONF:LIST:REC "steps", 2')
    assert float(k.query(":SOUR:CURR?")) == pytest.approx(-1e-4)
    _send(
        k,
        ':TRIG:LOAD "Empty"',
        ":TRIG:BLOC:BUFF:CLE 1",
        ':TRIG:BLOC:CONF:NEXT 2, "steps"',
        ":TRIG:BLOC:SOUR:STAT 3, ON",  # the stored points hold the output off
        ":TRIG:BLOC:DEL:CONS 4, 10",
        ":TRIG:BLOC:MEAS 5",
        ":TRIG:BLOC:BRAN:COUN 6, 2, 4",
        ":TRIG:BLOC:BRAN:COUN 7, 4, 2",  # a fourth step wraps to the first point
        ":TRIG:BLOC:SOUR:STAT 8, OFF",
        ":INIT",
        "*WAI",
    )
    rows = _rows(k, 8, "SOUR, REL")
    np.testing.assert_allclose(rows[:, 0], np.repeat([1e-4, -1e-4, 2e-4, 1e-4], 2), rtol=1e-9)
    # Every block takes effect when it is reached: no gap between steps.
    np.testing.assert_allclose(rows[:, 1], np.arange(8) * 10.0, atol=1e-9)
    assert k.query(":OUTP?") == "0"
    # A recall block sets the position: the next block then recalls the following index.
    _send(
        k,
        ':TRIG:BLOC:CONF:REC 2, "steps", 2',
        ":TRIG:BLOC:BRAN:COUN 7, 1, 2",
        ':TRIG:BLOC:CONF:NEXT 8, "steps"',
        ":TRIG:BLOC:SOUR:STAT 9, ON",
        ":TRIG:BLOC:MEAS 10",
        ":TRIG:BLOC:SOUR:STAT 11, OFF",
        ":INIT",
        "*WAI",
    )
    sources = _rows(k, 3, "SOUR")[:, 0]
    np.testing.assert_allclose(sources, [-1e-4, -1e-4, 2e-4], rtol=1e-9)


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (":TRIG:BLOC:MEAS 0", -222),  # block numbers start at 1
        (":TRIG:BLOC:MEAS 64", -222),  # ... and end at 63
        (":TRIG:BLOC:MEAS 3", -222),  # block 2 comes first
        (':TRIG:BLOC:MEAS 1, "nosuchbuffer"', -224),
        (':TRIG:BLOC:CONF:NEXT 1, "nosuchlist"', 2790),
        (":TRIG:BLOC:DEL:CONS 1, -1", -222),
        (":TRIG:BLOC:DEL:CONS 1", -109),
        (":TRIG:BLOC:BRAN:LIM:CONS 1, SIDEWAYS, 0, 1, 2, 1", -141),
        (":TRIG:BLOC:BRAN:COUN 1, 0, 1", -222),
        (':SOUR:CONF:LIST:REC "nosuchlist"', 2790),
        (':SOUR:CONF:LIST:SIZE? "nosuchlist"', 2790),
        (':SOUR:CONF:LIST:CRE ""', -224),
    ],
)
def test_trigger_block_errors(k: RawSCPI, command: str, code: int) -> None:
    k.write(command)
    assert int(k.query(":SYST:ERR?").split(",")[0]) == code
    assert k.query(":SYST:ERR?") == '0,"No error"'


def test_models_that_cannot_start(k: RawSCPI) -> None:
    _send(k, ':SOUR:CONF:LIST:CRE "l"')
    k.write(':SOUR:CONF:LIST:CRE "L"')  # names are not case sensitive: it exists
    assert k.query(":SYST:ERR?").startswith("-224,")
    k.write(':SOUR:CONF:LIST:REC "l", 1')  # an empty list has no index 1
    assert k.query(":SYST:ERR?").startswith("2790,")
    _send(k, ':TRIG:LOAD "Empty"', ":TRIG:BLOC:BRAN:ALW 1, 5")
    k.write(":INIT")  # branch to a block that does not exist
    assert k.query(":SYST:ERR?").startswith("-221,")
    _send(k, ':TRIG:LOAD "Empty"', ":TRIG:BLOC:BRAN:LIM:CONS 1, ABOV, 0, 1, 1, 0")
    k.write(":INIT")  # a limit block needs a measure block before it
    assert k.query(":SYST:ERR?").startswith("-221,")
    # A next block on an empty list fails when it runs.
    _send(k, ':TRIG:LOAD "Empty"', ':TRIG:BLOC:CONF:NEXT 1, "l"')
    k.write(":INIT")
    assert k.query(":TRIG:STAT?") == "FAILED;FAILED;1"
    assert k.query(":SYST:ERR?").startswith("2790,")


def test_abort_mid_run_stops_at_the_abort_time(k: RawSCPI, clock: SimClock) -> None:
    _send(
        k,
        ':TRIG:LOAD "Empty"',
        ":TRIG:BLOC:BUFF:CLE 1",
        ":TRIG:BLOC:DEL:CONS 2, 100",
        ":TRIG:BLOC:MEAS 3",
        ":TRIG:BLOC:BRAN:COUN 4, 1000000, 2",
        ":INIT",
    )
    clock.sleep(1050.0)
    assert k.query(":TRIG:STAT?").startswith("RUNNING;RUNNING;")
    k.write(":ABOR")
    state = k.query(":TRIG:STAT?")
    assert state.startswith("ABORTED;ABORTED;")
    n = int(k.query(":TRAC:ACT?"))
    assert n >= 10
    clock.sleep(500.0)
    assert int(k.query(":TRAC:ACT?")) == n  # nothing more after the abort


def test_long_loop_runs_in_batches_at_exact_times(cell: VirtualCell) -> None:
    clock = SimClock(speedup=1e7)
    with Keithley2450Emulator(cell, clock) as emu:
        k = RawSCPI(emu.port)
        try:
            _send(
                k,
                ':SOUR:FUNC CURR;:SOUR:CURR 1e-5;:SENS:FUNC "VOLT";:OUTP ON',
                ':TRAC:POIN 200000, "defbuffer1"',
                ':TRIG:LOAD "SimpleLoop", 200000, 1',
                ":INIT",
                "*WAI",
                ":OUTP OFF",
            )
            assert k.query(":TRAC:ACT?") == "200000"
            rel = np.array(k.query(':TRAC:DATA? 199990, 200000, "defbuffer1", REL').split(","))
            np.testing.assert_allclose(rel.astype(float), np.arange(199989, 200000), atol=1e-6)
            assert k.query(":TRIG:STAT?") == "IDLE;IDLE;4"
        finally:
            k.close()
