"""``insitu tomo-scan --faults``: each beamline fault chosen on the command line, and its outcome.

A small scan: 2 darks (frames 1–2), 2 flats (3–4), then 20 projections (frames 5–24, one
stage move each), 2 flats and 2 darks.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from insitu.instruments.dxchange import read_scan_info
from insitu.protocols.cli import main

N = 20


def tomo_scan(tmp_path: Path, faults: str) -> list[str]:
    out = tmp_path / "scan.h5"
    argv = ["tomo-scan", "--sim", "A-LPS", "--out", str(out), "--projections", str(N)]
    return [*argv, "--darks", "2", "--flats", "2", "--json", "--faults", faults]


def run_json(capsys, argv: list[str]) -> dict:
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, out  # one JSON object, nothing else on stdout
    return json.loads(out[0])


def test_a_lost_frame_is_retaken_and_counted_in_the_file(tmp_path, capsys) -> None:
    result = run_json(capsys, tomo_scan(tmp_path, "lose_frame=7"))  # projection 3
    done = result["beamline_faults"]
    assert done["asked"] == "lose_frame=7"
    assert done["frames_lost"] == 1 and done["frames_retaken"] == 1
    with h5py.File(result["file"]) as f:
        assert f["/exchange/data"].shape[0] == N
        assert f["/process/acquisition/frames_retaken"][()] == 1
    info = read_scan_info(result["file"])
    assert np.degrees(info.theta_rad) == pytest.approx(np.arange(N) * 180 / N, abs=0.5)
    assert any("1 frame(s) lost by the camera were retaken" in n for n in info.notes)


def test_a_frame_lost_three_times_ends_the_scan_with_the_cameras_reason(tmp_path, capsys):
    assert main(tomo_scan(tmp_path, "lose_frame=7,lose_frame=8,lose_frame=9")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("insitu: error:") and "\n" not in err
    assert "exposed 3 times and never arrived" in err
    assert "(2 projection(s), 2 flat(s), 2 dark(s))" in err  # what the file kept


def test_a_stalled_stage_exits_2_with_the_reason_and_keeps_the_frames(tmp_path, capsys):
    assert main(tomo_scan(tmp_path, "stall=3")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("insitu: error: rotation stalled at ") and "\n" not in err
    assert "on its way to 18.000° (motor fault)" in err  # the third angle, 2 × 9°
    assert f"kept in {tmp_path / 'scan.h5'} (2 projection(s), 2 flat(s), 2 dark(s))" in err
    with h5py.File(tmp_path / "scan.h5") as f:
        assert f["/exchange/data"].shape[0] == 2


def test_a_beam_loss_suspends_the_scan_which_completes(tmp_path, capsys) -> None:
    result = run_json(capsys, tomo_scan(tmp_path, "beam_loss=10:5"))
    done = result["beamline_faults"]
    assert done["beam_losses"] == 1 and done["beam_back"] == 1
    assert done["suspensions"] == 1
    info = read_scan_info(result["file"])
    assert info.n_angles == N and info.n_flats == 4 and info.n_darks == 4
    # A frame retaken after the suspension replaced the unrecorded one: no gap, no repeat.
    assert np.degrees(info.theta_rad) == pytest.approx(np.arange(N) * 180 / N, abs=0.5)


def test_a_bad_fault_is_one_line_naming_the_kinds(tmp_path, capsys) -> None:
    assert main(tomo_scan(tmp_path, "lose_frame=7,jam=2")) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "insitu: error: --faults: beamline fault 'jam=2': give kind=value with kind one of "
        "lose_frame, stall, beam_loss (e.g. lose_frame=12,stall=3,beam_loss=40:5)"
    )
    assert not (tmp_path / "scan.h5").exists()


def test_ctrl_c_stops_a_scan_waiting_for_a_beam_that_never_comes_back(tmp_path) -> None:
    """One Ctrl-C aborts the suspended scan (bluesky's own handler would wait for a
    checkpoint that never comes): exit 130, the frames so far kept in the file."""
    argv = tomo_scan(tmp_path, "beam_loss=10")
    process = subprocess.Popen(
        [sys.executable, "-m", "insitu.protocols.cli.app", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        for line in process.stderr:  # --json: the RunEngine's messages go to stderr
            if line.startswith("Suspending"):
                break
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert out == ""  # no result: the scan did not complete
    with h5py.File(tmp_path / "scan.h5") as f:
        assert 0 < f["/exchange/data"].shape[0] < N
