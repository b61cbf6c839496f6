"""The Lake Shore 336 emulator spoken to over a raw TCP socket, as a third-party client would."""

from __future__ import annotations

import math
import socket
from collections.abc import Iterator

import pytest

from insitu.simulators.cell.model import VirtualCell
from insitu.simulators.clock import SimClock
from insitu.simulators.emulators.lakeshore336 import LakeShore336Emulator, first_order_response

pytestmark = pytest.mark.timeout(30)


class Client:
    """A bare socket client: newline-terminated commands, CR LF replies."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=1.0)
        self.buffer = b""

    def raw(self, data: bytes) -> None:
        self.sock.sendall(data + b"\n")

    def send(self, line: str) -> None:
        """Send a command and wait until it was executed (``*OPC?``), so that the test's
        simulated time steps come after it."""
        self.raw(line.encode("ascii"))
        assert self.query("*OPC?") == "1"

    def query(self, line: str) -> str:
        self.raw(line.encode("ascii"))
        while b"\r\n" not in self.buffer:
            data = self.sock.recv(4096)
            assert data, "connection closed"
            self.buffer += data
        reply, _, self.buffer = self.buffer.partition(b"\r\n")
        return reply.decode("ascii")

    def silent(self, line: str, wait_s: float = 0.1) -> bool:
        """Send ``line``; True if nothing came back within ``wait_s``."""
        self.raw(line.encode("ascii"))
        self.sock.settimeout(wait_s)
        try:
            return not self.sock.recv(4096)
        except TimeoutError:
            return True
        finally:
            self.sock.settimeout(1.0)

    def close(self) -> None:
        self.sock.close()


class StepClock(SimClock):
    """A simulation clock that only moves when the test says, for exact comparisons."""

    def __init__(self) -> None:
        super().__init__()
        self.t = 0.0

    def now(self) -> float:
        return self.t


@pytest.fixture
def clock() -> StepClock:
    return StepClock()


def advance(clock: StepClock, seconds: float) -> None:
    clock.t += seconds


@pytest.fixture
def cell() -> VirtualCell:
    return VirtualCell("A-LPS")


@pytest.fixture
def emulator(clock: SimClock, cell: VirtualCell) -> Iterator[LakeShore336Emulator]:
    with LakeShore336Emulator(clock, cells=(cell,), noise_K=0.0, time_constant_s=300.0) as emu:
        yield emu


@pytest.fixture
def client(emulator: LakeShore336Emulator) -> Iterator[Client]:
    c = Client(emulator.port)
    try:
        yield c
    finally:
        c.close()


def test_identity_and_resource(emulator, client):
    assert emulator.resource == f"TCPIP::127.0.0.1::{emulator.port}::SOCKET"
    manufacturer, model, serial, _firmware = client.query("*IDN?").split(",")
    assert (manufacturer, model) == ("LSCI", "MODEL336")
    assert serial.startswith(emulator.serial)


def test_first_order_approach_to_the_setpoint(emulator, client, clock, cell):
    client.send("SETP 1,333.15")
    client.send("RANGE 1,3")
    assert client.query("SETP? 1") == "+333.150"
    assert client.query("RANGE? 1") == "3"
    assert float(client.query("KRDG? A")) == pytest.approx(298.15)
    elapsed = 0.0
    for step in (60.0, 240.0, 600.0, 2100.0):
        advance(clock, step)
        elapsed += step
        expected = 333.15 + (298.15 - 333.15) * math.exp(-elapsed / 300.0)
        assert float(client.query("KRDG? A")) == pytest.approx(expected, abs=2e-3)
        assert float(client.query("CRDG? A")) == pytest.approx(expected - 273.15, abs=2e-3)
        # The cell in the oven follows the oven (and so does its conductivity).
        assert cell.temperature_K == pytest.approx(expected, abs=1e-3)


def test_heater_off_cools_to_ambient(emulator, client, clock):
    client.send("SETP 1,353.15;RANGE 1,3")
    advance(clock, 3000.0)
    hot = float(client.query("KRDG? A"))
    client.send("RANGE 1,0")
    advance(clock, 300.0)
    expected = 298.15 + (hot - 298.15) * math.exp(-1.0)
    assert float(client.query("KRDG? A")) == pytest.approx(expected, abs=2e-3)
    assert float(client.query("HTR? 1")) == 0.0


def test_low_range_limits_the_rise(clock):
    with LakeShore336Emulator(clock, noise_K=0.0, max_rise_K=400.0) as emu:
        c = Client(emu.port)
        try:
            c.send("SETP 1,353.15;RANGE 1,1")  # low: 1 % power, 4 K of rise
            advance(clock, 1e5)
            assert float(c.query("KRDG? A")) == pytest.approx(298.15 + 4.0, abs=1e-6)
            assert float(c.query("HTR? 1")) == pytest.approx(100.0)
        finally:
            c.close()


def test_ramp_then_lag_matches_the_closed_form(emulator, client, clock):
    client.send("RAMP 1,1,6.0")  # 0.1 K/s
    client.send("SETP 1,308.15;RANGE 1,3")
    assert client.query("RAMP? 1") == "1,6.0"
    advance(clock, 50.0)
    assert float(client.query("SETP? 1")) == pytest.approx(303.15)
    assert client.query("RAMPST? 1") == "1"
    tau, slope = 300.0, 0.1
    expected = first_order_response(50.0, 298.15, 298.15, tau, slope)
    assert float(client.query("KRDG? A")) == pytest.approx(expected, abs=1e-3)  # mK digits
    assert emulator.temperature_K == pytest.approx(expected, abs=1e-6)
    advance(clock, 50.0)  # the ramp ends at 100 s
    assert client.query("RAMPST? 1") == "0"
    at_100 = first_order_response(100.0, 298.15, 298.15, tau, slope)
    advance(clock, 200.0)
    expected = first_order_response(200.0, at_100, 308.15, tau)
    assert float(client.query("KRDG? A")) == pytest.approx(expected, abs=1e-3)
    assert emulator.temperature_K == pytest.approx(expected, abs=1e-6)


def test_lazy_advance_is_exact_whatever_the_polling(clock):
    """Polling often or once gives the same temperature: the solution is closed form."""
    results = []
    for polls in (1, 37):
        clk = StepClock()
        with LakeShore336Emulator(clk, noise_K=0.0) as emu:
            c = Client(emu.port)
            try:
                c.send("RAMP 1,1,2.0;SETP 1,340.0;RANGE 1,2")
                for _ in range(polls):
                    advance(clk, 2000.0 / polls)
                    c.query("KRDG? A")
                results.append(float(c.query("KRDG? A")))
            finally:
                c.close()
    assert results[0] == pytest.approx(results[1], abs=2e-3)


def test_bad_commands_are_ignored_and_flag_the_status_register(emulator, client):
    assert client.query("*ESR?") == "128"  # power-on
    assert client.query("*ESR?") == "0"  # cleared by reading
    assert client.silent("FOO 1,2")  # unknown command: no reply
    assert client.query("*ESR?") == "32"  # command error
    client.send("RANGE 1,7")  # out of range: ignored
    assert client.query("RANGE? 1") == "0"
    assert client.query("*ESR?") == "16"  # execution error
    assert client.silent("KRDG? Q")  # a bad query is not answered
    assert client.query("*ESR?") == "32"
    client.send("SETP 1,2000")
    assert client.query("SETP? 1") == "+298.150" and client.query("*ESR?") == "16"
    # The server survives garbage and keeps serving.
    client.raw(b"\x00\xff;;,,,SETP ,;")
    assert client.query("*IDN?").startswith("LSCI,MODEL336")


def test_over_long_message_is_discarded_whole(emulator, client):
    assert client.query("*ESR?") == "128"  # power-on
    # Over the 336's 1024 characters: nothing of it runs, not even a valid command in it.
    assert client.silent("*CLS;" + " " * 2000 + ";SETP 1,350.0")
    assert client.query("SETP? 1") == "+298.150"
    assert client.query("*ESR?") == "32"  # command error
    assert client.query("*IDN?").startswith("LSCI,MODEL336")


def test_chained_queries_and_all_inputs(emulator, client):
    assert client.query("KRDG? A;RDGST? A;RDGST? C") == "+298.150;000;001"
    assert client.query("KRDG? 0") == "+298.150,+298.150,+0.000,+0.000"
    assert client.query("OUTMODE? 1") == "1,1,0"
    client.send("OUTMODE 1,1,3,0")  # control from input C: no sensor, no heating
    client.send("SETP 1,330;RANGE 1,3")
    assert client.query("OUTMODE? 1") == "1,3,0"
    assert float(client.query("HTR? 1")) == 0.0


def test_rst_switches_heaters_off(emulator, client, clock):
    client.send("SETP 1,330;RANGE 1,3;RAMP 1,1,10")
    client.send("*RST")
    assert client.query("RANGE? 1") == "0"
    assert client.query("RAMP? 1").startswith("0,")


def test_loopback_only(clock):
    with pytest.raises(ValueError, match=r"127\.0\.0\.1"):
        LakeShore336Emulator(clock, host="0.0.0.0")


def test_cell_conductivity_follows_the_oven(emulator, client, clock, cell):
    sigma_rt = cell.conductivity_S_m()
    client.send("SETP 1,333.15;RANGE 1,3")
    advance(clock, 5000.0)
    client.query("KRDG? A")
    assert cell.temperature_K == pytest.approx(333.15, abs=0.01)
    assert cell.conductivity_S_m() > 1.5 * sigma_rt
