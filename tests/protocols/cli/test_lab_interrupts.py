"""``insitu ccd`` and ``insitu conductivity`` stopped from outside, as an operator meets them.

Each test runs the command as a subprocess against an emulator served from this process, so
the test sees the instrument's own state afterwards (the Keithley's output, the EmStat's cell
switch) the way a second connection to the real instrument would. One signal (Ctrl-C,
SIGTERM, SIGHUP) must end the run with the cell off, the run closed as ``abort`` with every
point in the catalog, one line on stderr and exit status 130; a limit error or an instrument
that dies mid-run must be one line and exit 2, with a readable stop reason in the run.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from insitu.protocols.cli import main
from insitu.protocols.storage.catalog import RunStore, iter_backup
from insitu.simulators.cell.model import VirtualCell
from insitu.simulators.clock import SimClock
from insitu.simulators.emulators.keithley2450.server import Keithley2450Emulator
from insitu.simulators.emulators.methodscript.server import MethodScriptEmulator

pytestmark = pytest.mark.slow

#: Simulated seconds per real second: the default CCD protocol (68 h) lasts about two minutes,
#: so a signal sent once the first points are stored always finds it running.
SPEEDUP = 2000.0
COMMAND = [sys.executable, "-m", "insitu.protocols.cli"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


class Bench:
    """An emulator serving a robust cell, and whether its cell is on (now, at disconnect)."""

    def __init__(self, kind: str) -> None:
        cell = VirtualCell("LiI-AN", seed=3)
        clock = SimClock(speedup=SPEEDUP)
        self.kind = kind
        self.on_at_disconnect: list[bool] = []
        if kind == "keithley2450":
            self.emulator: Any = Keithley2450Emulator(cell, clock)
        else:
            self.emulator = MethodScriptEmulator(cell, clock, transport="tcp")
            # The EmStat aborts its script when the client goes away, as the real one does on
            # USB loss: what counts is whether the driver switched the cell off before that.
            closed = self.emulator.client_closed

            def client_closed(conn: Any) -> None:
                self.on_at_disconnect.append(self.cell_on)
                closed(conn)

            self.emulator.client_closed = client_closed
        self.emulator.start()

    @property
    def resource(self) -> str:
        return self.emulator.resource

    @property
    def cell_on(self) -> bool:
        if self.kind == "keithley2450":
            return bool(self.emulator.output_on)
        return bool(self.emulator.cell_is_on)


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


def visible_lines(raw: bytes) -> list[str]:
    """What a terminal shows: each line as its last carriage return left it (progress bar).

    Bytes, not text: text mode would turn the progress bar's carriage returns into lines.
    """
    lines = [line.split("\r")[-1].strip() for line in raw.decode().split("\n")]
    return [line for line in lines if line]


def backup_of(data: Path) -> Path | None:
    files = sorted((data / "backup").glob("*.jsonl")) if (data / "backup").is_dir() else []
    return files[0] if files else None


def backup_points(path: Path) -> int:
    """Events of the ``electrochem`` stream in a run's JSONL backup (written first)."""
    streams: dict[str, str] = {}
    count = 0
    for name, doc in iter_backup(path):
        if name == "descriptor":
            streams[doc["uid"]] = doc["name"]
        elif name == "event_page" and streams.get(doc["descriptor"]) == "electrochem":
            count += len(doc["seq_num"])
        elif name == "event" and streams.get(doc["descriptor"]) == "electrochem":
            count += 1
    return count


def start_ccd(tmp_path: Path, resource: str) -> subprocess.Popen:
    data = tmp_path / "data"
    process = subprocess.Popen(
        [*COMMAND, "ccd", "--instrument", resource, "--data", str(data)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ENV,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        path = backup_of(data)
        if path is not None and backup_points(path) > 0:
            return process
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    process.kill()
    raise AssertionError("the CCD run stored no point within 120 s")


# Ctrl-C on both instruments, and each other signal on one: the three go through one
# handler (tests/protocols/workflows/test_interrupts.py checks each on its own).
@pytest.mark.parametrize(
    ("bench", "signame"),
    [
        ("keithley2450", "SIGINT"),
        ("methodscript", "SIGINT"),
        ("keithley2450", "SIGTERM"),
        ("methodscript", "SIGHUP"),
    ],
    indirect=["bench"],
)
def test_one_signal_stops_the_ccd_run_cleanly(tmp_path, bench, signame, capsys):
    process = start_ccd(tmp_path, bench.resource)
    time.sleep(0.3)  # mid-run, a few chunks later
    process.send_signal(getattr(signal, signame))
    out, err = process.communicate(timeout=60)

    assert process.returncode == 130, err
    assert out == b""  # stdout carries --json results only
    lines = visible_lines(err)
    assert len(lines) == 1, err
    assert b"Traceback" not in err
    line = lines[0]
    assert f"({signame})" in line and "switched off" in line
    # The instrument was left with its cell off, by the driver, before it disconnected.
    assert not bench.cell_on
    assert bench.on_at_disconnect in ([], [False])

    # The run: closed as an abort with the reason, and every point measured is exported.
    data = tmp_path / "data"
    backup = backup_of(data)
    assert backup is not None
    uid = backup.stem
    assert f"run {uid} closed as abort" in line
    assert f"insitu export {uid[:8]} --format csv --data {data}" in line
    run = RunStore(data).load(uid)
    assert run.stop is not None
    assert run.stop["exit_status"] == "abort"
    assert f"({signame})" in run.stop["reason"]
    expected = backup_points(backup)
    assert expected > 0 and f"with its {expected} points" in line
    csv_path = tmp_path / "points.csv"
    assert (
        main(["export", uid[:8], "--format", "csv", "--out", str(csv_path), "--data", str(data)])
        == 0
    )
    capsys.readouterr()
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == expected


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*COMMAND, *args, "--data", str(tmp_path / "data")],
        cwd=tmp_path,
        capture_output=True,
        timeout=120,
        env=ENV,
    )


def only_run(tmp_path: Path) -> Any:
    store = RunStore(tmp_path / "data")
    path = backup_of(tmp_path / "data")
    assert path is not None
    return store.load(path.stem)


@pytest.mark.parametrize(
    "args",
    [
        ["ccd", "--instrument", "sim:A-LPS", "--densities", "5000"],
        ["conductivity", "--instrument", "sim:A-LPS", "--amplitude", "5"],
        # The Keithley cannot measure EIS. Closing the bench also checked that closing the
        # oven's VISA session no longer closes pyvisa's shared resource manager (the
        # Keithley's close then logged two lines: its link was cut).
        ["conductivity", "--instrument", "sim:A-LPS", "--emulator", "keithley2450"],
    ],
    ids=["ccd-current-limit", "conductivity-amplitude-limit", "conductivity-no-eis"],
)
def test_a_refusal_is_one_line_and_the_run_says_why(tmp_path, args):
    done = run_cli(tmp_path, *args)
    assert done.returncode == 2, done.stderr
    assert done.stdout == b""
    lines = visible_lines(done.stderr)
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("insitu: error: ") and b"Traceback" not in done.stderr
    run = only_run(tmp_path)
    assert run.stop["exit_status"] == "fail"
    assert run.stop["reason"] and run.stop["reason"] in lines[0]


def test_an_instrument_that_dies_mid_run_is_one_line(tmp_path, bench):
    process = start_ccd(tmp_path, bench.resource)
    bench.emulator.stop()  # the instrument goes away: no answer, no reconnection
    out, err = process.communicate(timeout=120)
    assert process.returncode == 2, err
    assert out == b""
    assert b"Traceback" not in err
    *warnings, error = visible_lines(err)
    assert error.startswith("insitu: error: ")
    # A dead instrument cannot confirm that its cell is off: the driver says so, one line per
    # attempt to switch it off, never a traceback.
    assert all("switch" in line and "off" in line for line in warnings), err
    run = only_run(tmp_path)
    assert run.stop["exit_status"] == "fail"
    assert "Status(" not in run.stop["reason"]
    assert run.stop["reason"] in error
