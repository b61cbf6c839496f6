"""``insitu experiment`` and ``insitu demo`` as a user meets them: errors and Ctrl-C.

Errors a user can cause print one line and exit 2, before any instrument is touched; Ctrl-C
during plating stops the experiment with the cell switched off, and the experiment resumes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from insitu.protocols.cli import main
from insitu.protocols.storage.journal import read_journal


def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_a_bad_experiment_file_is_one_line_and_exit_2(tmp_path, capsys):
    bad = write(tmp_path / "bad.yaml", {"material": "A-LPS", "schedule": {"half_cycle": 1800}})
    assert main(["experiment", "run", str(bad), "--output", str(tmp_path / "e")]) == 2
    line = one_line_error(capsys)
    assert "schedule.half_cycle: unknown key" in line
    assert not (tmp_path / "e").exists()  # nothing started, nothing written
    assert main(["experiment", "run", str(tmp_path / "missing.yaml")]) == 2
    assert "no experiment file" in one_line_error(capsys)


def test_check_validates_without_running(tmp_path, capsys):
    good = write(tmp_path / "good.yaml", {"material": "LiI-AN"})
    assert main(["experiment", "run", str(good), "--check", "--json"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["schedule"]["half_cycle_s"] == 1800
    assert cfg["devices"]["simulation"]["emulator"] == "methodscript"


def test_status_and_resume_of_an_unknown_experiment(tmp_path, capsys):
    out = ["--output", str(tmp_path)]
    assert main(["experiment", "status", "nope", *out]) == 2
    assert "no experiment 'nope'" in one_line_error(capsys)
    assert main(["experiment", "resume", "nope", *out]) == 2
    assert "no experiment 'nope'" in one_line_error(capsys)


def test_a_finished_experiment_is_not_resumed(tmp_path, capsys):
    cfg = {
        "material": "A-LPS",
        "schedule": {"current_densities_mA_cm2": [0.04], "eis": {"f_stop_Hz": 1.0}},
        "devices": {"tomography": "none"},
        "analysis": {"enabled": False},
        "catalog": {"data": str(tmp_path / "data")},
        "output": str(tmp_path / "e"),
    }
    path = write(tmp_path / "e.yaml", cfg)
    assert main(["experiment", "run", str(path), "--id", "done1", "--quiet", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["end_reason"] == "schedule_complete"
    assert result["charge_passed_mC"] == pytest.approx(2 * 5.089, abs=0.01)
    assert main(["experiment", "resume", "done1", "--output", str(tmp_path / "e")]) == 2
    assert "has finished (schedule_complete)" in one_line_error(capsys)
    assert main(["experiment", "status", "done1", "--output", str(tmp_path / "e"), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["finished"] == "schedule_complete" and status["segments_done"] == 7
    # The catalog lists the experiment's runs in order (skipped scans made none).
    data = ["--data", str(tmp_path / "data")]
    assert main(["runs", "--experiment", "done1", "--json", *data]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert [r["segment_label"] for r in runs] == [
        "EIS before",
        "plate 0.04 mA/cm²",
        "strip 0.04 mA/cm²",
        "EIS after",
    ]
    assert [r["segment_index"] for r in runs] == [0, 2, 4, 6]
    assert main(["runs", "--experiment", "nope", *data]) == 0
    assert capsys.readouterr().out.strip() == "no runs of experiment nope"
    # The same id twice is refused: the journal would be overwritten.
    assert main(["experiment", "run", str(path), "--id", "done1", "--quiet"]) == 2
    assert "exists" in one_line_error(capsys)


@pytest.mark.slow
@pytest.mark.parametrize(
    "signals", [["SIGINT"], ["SIGTERM", "SIGINT"]], ids=["ctrl-c", "term-then-ctrl-c"]
)
def test_ctrl_c_or_term_during_plating_stops_with_the_cell_off_and_resumes(
    tmp_path, capsys, signals, seed_catalog
):
    # An empty catalog to start from (tests/protocols/conftest.py): the subprocess skips
    # tiled's `catalog init` subprocess.
    seed_catalog(tmp_path / "data")
    cfg = {
        "material": "A-LPS",
        "schedule": {"current_densities_mA_cm2": [0.04], "eis": {"f_stop_Hz": 1.0}},
        "scan": {"n_projections": 30, "n_darks": 2, "n_flats": 2},
        "devices": {"tomography": "sim", "simulation": {"speedup": 300}},
        "analysis": {"enabled": False},
        "catalog": {"data": str(tmp_path / "data")},
        "output": str(tmp_path / "e"),
    }
    write(tmp_path / "e.yaml", cfg)
    folder = tmp_path / "e" / "c1"
    command = [sys.executable, "-m", "insitu.protocols.cli.app", "experiment"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [*command, "run", "e.yaml", "--id", "c1"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        # The folder exists a moment before its journal does.
        path = folder / "journal.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        entries = [json.loads(line) for line in lines]
        starts = [e for e in entries if e["type"] == "start"]
        if starts and starts[-1]["segment"]["kind"] == "plate":
            index = starts[-1]["segment"]["index"]
            if any(e["type"] == "run" and e["index"] == index for e in entries):
                break
        assert process.poll() is None, process.stderr.read()
        time.sleep(0.02)
    time.sleep(0.5)
    # One Ctrl-C aborts the half-cycle now (bluesky's own handler would have waited for the
    # next checkpoint, the scan); so does a polite kill, and a second signal changes nothing.
    for name in signals:
        process.send_signal(getattr(signal, name))
        time.sleep(0.2)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "experiment resume c1" in err, err
    assert "Traceback" not in err
    journal = read_journal(folder)
    assert journal.interrupted["kind"] == "plate"
    if signals == ["SIGINT"]:
        return  # the stop is the same whichever signal came first: one resume is enough

    # Resumed in this process: a new process's start-up would add seconds and test nothing
    # the kill above has not.
    resumed = ["experiment", "resume", "c1", "--output", str(tmp_path / "e"), "--json", "--quiet"]
    assert main(resumed) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["end_reason"] == "schedule_complete"
    journal = read_journal(folder)
    outcome = journal.done[journal.done[-1]["segment"]["index"] - 4]["outcome"]
    assert outcome["end_reason"] == "interrupted"
    # The plating was aborted by Ctrl-C: its run is closed as such, with its points.
    assert 0 < outcome["charge_C"] < 5.089e-3


def test_cut_off_moves_on_and_an_impossible_current_ends_the_experiment(tmp_path, capsys):
    # A-LPS polarises past 0.2 V while plating at 0.08 mA/cm² (0.25-0.4 V): the cut-off ends
    # that half-cycle and the schedule moves on to the next current density. 2000 mA/cm²
    # (141 mA through the 3 mm pellet) is beyond the EmStat4's 100 mA: nothing is sent, the
    # experiment ends with a last scan and EIS.
    cfg = {
        "material": "A-LPS",
        "schedule": {"current_densities_mA_cm2": [0.08, 2000.0], "voltage_limit_V": 0.2},
        "devices": {"tomography": "none"},
        "analysis": {"enabled": False},
        "catalog": {"data": str(tmp_path / "data")},
        "output": str(tmp_path / "e"),
    }
    path = write(tmp_path / "e.yaml", cfg)
    assert main(["experiment", "run", str(path), "--id", "lim", "--quiet", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["end_reason"] == "out_of_range"
    journal = read_journal(tmp_path / "e" / "lim")
    ended = [(e["segment"]["label"], e["outcome"]["end_reason"]) for e in journal.done]
    assert ended[2] == ("plate 0.08 mA/cm²", "voltage_limit")
    assert ended[3] == ("tomogram after plate 0.08 mA/cm² (cut-off)", "skipped")
    assert ended[4] == ("plate 2000 mA/cm²", "out_of_range")
    assert ended[-2:] == [("tomogram (final)", "skipped"), ("EIS after", "completed")]
    why = journal.done[4]["outcome"]["extra"]["why"]
    assert "exceeds the instrument limit" in why
    # The cut-off half-cycle stopped early: fewer than its 180 points, |V| at the limit.
    plate = journal.done[2]["outcome"]["extra"]
    assert plate["points"] < 180 and abs(plate["v_end_V"]) >= 0.2
