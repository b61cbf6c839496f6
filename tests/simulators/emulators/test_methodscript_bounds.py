"""The MethodSCRIPT emulator cannot be broken from the wire (issue 12): every break over TCP.

Each test sends what used to break the emulator, checks the instrument's own error code (or
that ``Z`` ends the script) and that the emulator still answers ``v`` afterwards. Memory is
checked on the emulator's own buffers (sample batches, queued output, kept script lines).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time

import pytest
import serial

from insitu.instruments.methodscript import codec as ms
from insitu.simulators.cell.model import VirtualCell
from insitu.simulators.clock import SimClock
from insitu.simulators.emulators.methodscript.interpreter import EMSTAT4_HR, ScriptRunner
from insitu.simulators.emulators.methodscript.server import MethodScriptEmulator

VERSION = b"v01.08.00\n"


@pytest.fixture
def bench():
    emu = MethodScriptEmulator(VirtualCell("A-LPS"), SimClock(speedup=1e4), transport="tcp")
    emu.start()
    port = serial.serial_for_url(emu.resource, timeout=5)
    try:
        yield emu, port
    finally:
        port.close()
        emu.stop()


def _still_answers(port: serial.Serial) -> None:
    port.write(b"v\n")
    assert port.readline() == VERSION


def _read_until_blank(port: serial.Serial, limit_s: float = 20.0) -> list[str]:
    lines, deadline = [], time.monotonic() + limit_s
    while time.monotonic() < deadline:
        line = port.readline().decode("ascii")
        if line == "\n":
            return lines
        if line:
            lines.append(line.rstrip("\n"))
    raise AssertionError(f"no end of script output; got {lines[-5:]}")


def _wait_for(predicate, limit_s: float = 10.0) -> None:
    deadline = time.monotonic() + limit_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


@pytest.mark.parametrize(
    "literal",
    ["9" * 400, "0x" + "F" * 400, "9" * 300 + "E"],  # beyond a float: OverflowError, or inf
)
def test_literal_beyond_a_float_is_refused(bench, literal):
    _, port = bench
    port.write(f"e\nvar a\nset_i {literal}\n\n".encode())
    assert ms.parse_error(port.readline().decode()) == ms.ErrorReply(
        0x4003, line=2, column=7, prefix="e"
    )
    _still_answers(port)


def test_empty_loop_is_aborted_by_z(bench):
    emu, port = bench
    port.write(b"e\nvar a\nloop a == a\nendloop\non_finished:\ncell_off\n\n")
    assert port.readline() == b"e\n"
    _wait_for(lambda: emu.running)
    port.write(b"Z\n")
    lines = _read_until_blank(port)
    assert "Z" in lines and lines[-2:] == ["L", "+"]  # the loop was closed
    assert not emu.running
    _still_answers(port)


def test_stop_ends_an_endless_loop(bench):
    emu, port = bench
    port.write(b"e\nvar a\nloop a == a\nendloop\n\n")
    assert port.readline() == b"e\n"
    _wait_for(lambda: emu.running)
    emu.stop()
    assert not any(t.name == "methodscript-script" for t in threading.enumerate())


def test_interval_under_the_instrument_minimum_is_refused(bench):
    emu, port = bench
    port.write(
        b"e\nvar p\nvar c\nset_pgstat_mode 6\ncell_on\nmeas_loop_cp p c 1m 1u 1000\n"
        b"endloop\non_finished:\ncell_off\n\n"
    )
    assert port.readline() == b"e\n"
    lines = _read_until_blank(port)
    assert ms.parse_error(lines[-1]) == ms.ErrorReply(0x000D, line=5)
    assert not emu.cell_is_on
    _still_answers(port)


def test_long_run_is_taken_in_bounded_batches(bench, monkeypatch):
    emu, port = bench
    emu.clock.speedup = 1e7  # 10⁴ samples of 1 ms due every real millisecond
    sizes: list[int] = []
    hold = emu.cell.hold

    def recording_hold(current, times):
        sizes.append(len(times))
        return hold(current, times)

    monkeypatch.setattr(emu.cell, "hold", recording_hold)
    # 10¹¹ samples: the whole run's sample times alone would be 800 GB.
    port.write(
        b"e\nvar p\nvar c\nset_pgstat_mode 6\ncell_on\nmeas_loop_cp p c 1m 1m 100G\n"
        b"endloop\non_finished:\ncell_off\n\n"
    )
    assert port.readline() == b"e\n"
    _wait_for(lambda: len(sizes) >= 5)
    port.write(b"Z\n")
    lines = _read_until_blank(port)
    assert "Z" in lines and lines[-1] == "*"
    assert max(sizes) == ScriptRunner.MAX_BATCH
    _still_answers(port)


def test_output_of_an_endless_loop_is_bounded(bench):
    emu, port = bench
    port.write(b'e\nvar a\nloop a == a\nsend_string "x"\nendloop\n\n')
    assert port.readline() == b"e\n"
    _wait_for(lambda: emu.packages_sent == 0 and emu.running)
    time.sleep(0.5)  # the client reads nothing meanwhile: the emulator must wait, not queue
    with emu._out_lock:
        queued = sum(piece.count("\n") for piece in emu._out)
    assert queued <= ScriptRunner.MAX_PENDING_LINES
    port.write(b"Z\n")
    lines = _read_until_blank(port, limit_s=60)
    assert "Z" in lines and lines[-1] == "+"
    _still_answers(port)


def test_script_larger_than_the_script_memory_is_refused(bench):
    emu, port = bench
    line = "# " + "x" * 98 + "\n"
    n = EMSTAT4_HR.max_script_bytes // len(line) + 100
    first_over = EMSTAT4_HR.max_script_bytes // len(line) + 1
    port.write(b"e\n" + line.encode() * n)
    _wait_for(lambda: emu._receiving_lines == n)
    assert emu._receiving == []  # nothing of it kept past the script memory
    port.write(b"\n")
    assert ms.parse_error(port.readline().decode()) == ms.ErrorReply(
        0x4005, line=first_over, prefix="e"
    )
    _still_answers(port)


def test_line_longer_than_the_maximum_is_refused(bench):
    emu, port = bench
    port.write(b"v" + b"x" * (2 * emu.max_line) + b"\n")
    assert ms.parse_error(port.readline().decode()) == ms.ErrorReply(0x0008)
    _still_answers(port)


def test_nesting_deeper_than_the_instrument_is_refused(bench):
    _, port = bench
    depth = EMSTAT4_HR.max_nesting + 1
    script = "var a\n" + "loop a != a\n" * depth + "endloop\n" * depth
    port.write(b"e\n" + script.encode() + b"\n")
    assert ms.parse_error(port.readline().decode()) == ms.ErrorReply(
        0x4005, line=depth + 1, column=1, prefix="e"
    )
    _still_answers(port)


def test_serve_stops_on_sigterm_during_an_endless_loop():
    cmd = [sys.executable, "-m", "insitu.protocols.cli", "sim", "serve"]
    cmd += ["--emulator", "methodscript", "--material", "A-LPS", "--speedup", "1000"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready, "the emulator printed no resource"
        resource = proc.stdout.readline().decode().strip()
        port = serial.serial_for_url(resource, timeout=5)
        port.write(b"e\nvar a\nloop a == a\nendloop\n\n")
        assert port.readline() == b"e\n"
        proc.send_signal(signal.SIGTERM)
        # Seconds on an idle machine; CI's loaded one once took over 30.
        assert proc.wait(timeout=120) == 0
        port.close()
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
