"""The emulated EmStat4's own faults (``InstrumentFaults``), seen from raw pyserial over TCP."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import pytest
import serial

from insitu.instruments.methodscript import codec as ms
from insitu.simulators.cell.model import VirtualCell
from insitu.simulators.clock import SimClock
from insitu.simulators.emulators.methodscript.server import MethodScriptEmulator
from insitu.simulators.faults import InstrumentFaults

# Chronopotentiometry, 1 mA, a package every 100 ms for 2 s (as in test_methodscript.py).
CP_SCRIPT = """e
var potential
var current
var t
set_pgstat_chan 0
set_pgstat_mode 6
set_range db 20m
set_i 0
cell_on
timer_start
meas_loop_cp potential current 1m 100m 2
    timer_get t
    pck_start
        pck_add t
        pck_add current
        pck_add potential
    pck_end
endloop
on_finished:
    cell_off

"""
# The same chronopotentiometry with a body the interpreter runs sample by sample (add_var is
# not one of the fast path's steps): both paths must count and flag points alike.
CP_SCRIPT_SLOW = CP_SCRIPT.replace("var t\n", "var t\nvar n\nstore_var n 0i ja\n").replace(
    "    pck_end\n", "    pck_end\n    add_var n 1i\n"
)
SCRIPTS = {"fast": CP_SCRIPT, "interpreted": CP_SCRIPT_SLOW}
EIS_SCRIPT = """e
var f
var r
var j
set_pgstat_chan 0
set_pgstat_mode 6
set_range db 1m
set_i 0
cell_on
meas_loop_geis f r j 10u 100k 10 5i 0
  pck_start
    pck_add f
    pck_add r
    pck_add j
  pck_end
endloop
on_finished:
  cell_off

"""


@contextlib.contextmanager
def emulator(faults: InstrumentFaults) -> Iterator[tuple[MethodScriptEmulator, serial.Serial]]:
    emu = MethodScriptEmulator(VirtualCell("A-LPS"), SimClock(speedup=1e4), faults=faults)
    emu.start()
    port = serial.serial_for_url(emu.resource, timeout=2)
    try:
        yield emu, port
    finally:
        port.close()
        emu.stop()


def read_until_blank(port: serial.Serial, limit_s: float = 10.0) -> list[str]:
    lines, deadline = [], time.monotonic() + limit_s
    while time.monotonic() < deadline:
        line = port.readline().decode("ascii")
        if line == "\n":
            return lines
        if line:
            lines.append(line.rstrip("\n"))
    raise AssertionError(f"no end of script output; got {lines[-5:]}")


def run_script(port: serial.Serial, script: str) -> list[str]:
    port.write(script.encode("ascii"))
    assert port.readline() == b"e\n"
    return read_until_blank(port)


def packages(lines: list[str]) -> list[dict[str, ms.Variable]]:
    return [{v.type: v for v in ms.parse_package(x)} for x in lines if x.startswith("P")]


@pytest.mark.parametrize("path", SCRIPTS)
def test_error_after_aborts_the_script_with_its_own_error_once(path):
    with emulator(InstrumentFaults(error_after=5)) as (emu, port):
        lines = run_script(port, SCRIPTS[path])
        assert not emu.cell_is_on and not emu.running  # on_finished: cell_off ran
        text = SCRIPTS[path].splitlines()  # "e" first: the index is the 1-based script line
        line_of_loop = next(k for k, x in enumerate(text) if x.startswith("meas_loop_cp"))
        assert lines[0] == "M000A" and lines[-2:] == ["*", f"!000E: Line {line_of_loop}"]
        assert [p["eb"].value for p in packages(lines)] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
        assert (
            ms.parse_error(lines[-1]).code == 0x000E
        )  # the fault's code: "overflow while averaging"
        again = run_script(port, SCRIPTS[path])  # the fault fires once
        assert len(packages(again)) == 20 and again[-1] == "*"
        assert emu.points_measured == 25


def test_error_after_counts_points_over_scripts():
    with emulator(InstrumentFaults(error_after=25)) as (emu, port):
        assert len(packages(run_script(port, CP_SCRIPT))) == 20
        lines = run_script(port, CP_SCRIPT)
        assert len(packages(lines)) == 5 and ms.parse_error(lines[-1]).code == 0x000E
        assert not emu.cell_is_on


@pytest.mark.parametrize("path", SCRIPTS)
def test_overload_after_flags_the_measured_potential(path):
    with emulator(InstrumentFaults(overload_after=3)) as (_, port):
        first = packages(run_script(port, SCRIPTS[path]))
        second = packages(run_script(port, SCRIPTS[path]))
    assert [p["ab"].status for p in first] == [0] * 3 + [ms.STATUS_OVERLOAD] * 17
    assert all(p["ab"].status == ms.STATUS_OVERLOAD for p in second)
    assert all(p["ba"].status == 0 for p in first + second)  # the set current is not read
    # The readings themselves are the cell's: only the flag says the source is not held.
    assert all(abs(p["ab"].value) < 1.0 for p in first)


def test_overload_after_flags_impedance_points():
    with emulator(InstrumentFaults(overload_after=2)) as (_, port):
        points = packages(run_script(port, EIS_SCRIPT))
    assert len(points) == 5
    assert [p["cc"].status for p in points] == [0, 0, 2, 2, 2]
    assert [p["cd"].status for p in points] == [0, 0, 2, 2, 2]
