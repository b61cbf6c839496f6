"""No instrument runs longer unattended than one half-cycle of ``insitu ccd``.

The CCD command runs as a subprocess against an emulator served from this process (as in
``test_lab_interrupts.py``), so the test sees what the instrument holds while the test
runs (the Keithley's trigger model and configuration list, the EmStat's script) and what
the cell does after the host is killed with SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from insitu.simulators.cell.model import VirtualCell
from insitu.simulators.clock import SimClock
from insitu.simulators.emulators.keithley2450.server import Keithley2450Emulator
from insitu.simulators.emulators.methodscript.server import MethodScriptEmulator

pytestmark = pytest.mark.slow

SPEEDUP = 2000.0
HALF_CYCLE_S = 1200.0
INTERVAL_S = 10.0
COMMAND = [sys.executable, "-m", "insitu.protocols.cli"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def keithley_model_s(emulator: Keithley2450Emulator) -> tuple[float, int]:
    """(simulated seconds the loaded trigger model sources, points of the config lists).

    Each delay block runs once per pass of every counter loop around it.
    """
    inst = emulator._instrument
    blocks = inst.trigger.blocks
    total = 0.0
    for n, block in blocks.items():
        if block.kind != "DELAY_CONSTANT":
            continue
        passes = 1
        for m, counter in blocks.items():
            if counter.kind == "BRANCH_COUNTER" and counter.target <= n < m:
                passes *= counter.count
        total += block.delay_s * passes
    points = sum(len(c.points) for c in inst.state.config_lists.values())
    return total, points


def script_s(statements: list[Any]) -> float:
    """Simulated seconds of current the ``meas_loop_cp`` loops of a script source."""
    total = 0.0
    for s in statements:
        if s.command == "meas_loop_cp":
            total += float(s.args[-1])
        total += script_s(s.body)
        for _, body in s.branches:
            total += script_s(body)
    return total


class Bench:
    """An emulator on a robust cell that records what it holds at each start."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.clock = SimClock(speedup=SPEEDUP)
        cell = VirtualCell("LiI-AN", seed=3)
        self.held_s: list[float] = []  # per trigger-model start or script
        self.config_points: list[int] = []
        if kind == "keithley2450":
            self.emulator: Any = Keithley2450Emulator(cell, self.clock)
            handle = self.emulator.handle_line

            def handle_line(line: str) -> str | None:
                if ":INIT" in line.upper():
                    with self.emulator._lock:
                        held, points = keithley_model_s(self.emulator)
                    self.held_s.append(held)
                    self.config_points.append(points)
                return handle(line)

            self.emulator.handle_line = handle_line
        else:
            self.emulator = MethodScriptEmulator(cell, self.clock, transport="tcp")
            start = self.emulator._start_script

            def start_script(conn: Any, main: list, finished: list) -> None:
                self.held_s.append(script_s(main))
                start(conn, main, finished)

            self.emulator._start_script = start_script
        self.emulator.start()

    @property
    def cell_on(self) -> bool:
        if self.kind == "keithley2450":
            _ = self.emulator.trigger_state  # runs the trigger model up to the clock's time
            return bool(self.emulator.output_on)
        return bool(self.emulator.cell_is_on)

    def keep_running_when_the_host_goes(self) -> None:
        """The EmStat aborts its script when its client goes (USB loss); a host that dies
        without the link dropping (a hung or powered-off PC on a powered hub) does not."""
        if self.kind == "methodscript":
            self.emulator.client_closed = lambda conn: None


@pytest.fixture(params=["keithley2450", "methodscript"])
def bench(request: pytest.FixtureRequest) -> Iterator[Bench]:
    b = Bench(request.param)
    try:
        yield b
    finally:
        b.emulator.stop()


@pytest.fixture(autouse=True)
def _new_catalog(tmp_path: Path, seed_catalog) -> None:
    """The commands' data folder starts with an empty catalog (tests/protocols/conftest.py):
    the subprocess skips tiled's ``catalog init`` subprocess, seconds that test nothing here."""
    seed_catalog(tmp_path / "data")


def ccd_command(tmp_path: Path, resource: str, *extra: str) -> list[str]:
    return [
        *COMMAND,
        "ccd",
        "--instrument",
        resource,
        "--half-cycle",
        str(HALF_CYCLE_S),
        "--interval",
        str(INTERVAL_S),
        "--data",
        str(tmp_path / "data"),
        *extra,
    ]


def test_the_instrument_never_holds_more_than_one_half_cycle(tmp_path, bench):
    # Two current densities, one cycle each: four half-cycles, no short on this cell.
    done = subprocess.run(
        ccd_command(tmp_path, bench.emulator.resource, "--densities", "0.1,0.25", "--cycles", "1"),
        cwd=tmp_path,
        capture_output=True,
        timeout=120,
        env=ENV,
    )
    assert done.returncode == 0, done.stderr
    currents = [h for h in bench.held_s if h > 0]
    assert len(currents) == 4  # one load per half-cycle
    assert max(bench.held_s) <= HALF_CYCLE_S
    if bench.kind == "keithley2450":
        assert max(bench.config_points) == 1  # one step current in the instrument at a time


def test_a_killed_host_leaves_the_cell_at_rest_within_one_half_cycle(tmp_path, bench):
    bench.keep_running_when_the_host_goes()
    process = subprocess.Popen(
        ccd_command(tmp_path, bench.emulator.resource),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=ENV,
    )
    try:
        # Kill it in the middle of the test (in the second half-cycle or later), current on.
        deadline = time.monotonic() + 120
        while not bench.held_s:
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.01)
        bench.clock.sleep(1.5 * HALF_CYCLE_S)
        while not bench.cell_on:
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.001)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    killed_at = bench.clock.now()
    # The half-cycle it holds ends at the latest one half-cycle (and a reading) later.
    bench.clock.sleep_until(killed_at + HALF_CYCLE_S + 2 * INTERVAL_S)
    assert not bench.cell_on
    # And it stays at rest: nothing else was loaded.
    bench.clock.sleep(HALF_CYCLE_S)
    assert not bench.cell_on
