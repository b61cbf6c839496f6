"""Every point survives: a killed CCD run is listed and exported, and ``insitu runs --repair``
rebuilds runs from their JSONL backups; an unwritable catalog stops the run in one line.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from insitu.protocols.cli import main
from insitu.protocols.storage.catalog import RECOVERED_REASON, RunStore, load_backup

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
CCD = ["ccd", "--instrument", "sim:A-LPS", "--speedup", "2000", "--quiet"]


def insitu(*args: str, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "insitu.protocols.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
    )


def backup_points(path: Path) -> int:
    return len(load_backup(path).stream("electrochem"))


def kill_mid_run(data: Path, cwd: Path, min_points: int = 30) -> Path:
    """Start ``insitu ccd``, SIGKILL it once its backup holds ``min_points``; the backup."""
    process = subprocess.Popen(
        [sys.executable, "-m", "insitu.protocols.cli", *CCD, "--data", str(data)],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    deadline = time.monotonic() + 120
    backups: list[Path] = []
    try:
        while time.monotonic() < deadline:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            backups = list((data / "backup").glob("*.jsonl"))
            if backups:
                try:
                    if backup_points(backups[0]) >= min_points:
                        break
                except (ValueError, KeyError):  # no start or no electrochem stream yet
                    pass
            time.sleep(0.05)
        else:
            pytest.fail("the CCD run produced no points in 120 s")
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL
    (backup,) = backups
    return backup


def in_process(*args: str) -> tuple[int, str, str]:
    """``insitu ARGS`` in this process (the commands that read the catalog back need no
    process of their own; each would cost a few seconds of start-up): (status, out, err)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(list(args))
    return status, out.getvalue(), err.getvalue()


def runs_json(data: Path, *extra: str) -> object:
    status, out, err = in_process("runs", "--data", str(data), "--json", *extra)
    assert status == 0, err
    return json.loads(out)


def export_rows(data: Path, uid: str, out: Path) -> pd.DataFrame:
    status, _, err = in_process(
        "export", uid, "--format", "csv", "--out", str(out), "--data", str(data)
    )
    assert status == 0, err
    return pd.read_csv(out)


@pytest.mark.slow
def test_a_killed_run_is_listed_exported_and_repaired(tmp_path: Path, seed_catalog) -> None:
    # An empty catalog to start from (tests/protocols/conftest.py): the killed process skips
    # tiled's `catalog init` subprocess.
    data = seed_catalog(tmp_path / "data")
    backup = kill_mid_run(data, tmp_path)
    uid = backup.stem
    points = backup_points(backup)
    assert points >= 30

    # Listed, open (no stop document reached anything) ...
    (row,) = runs_json(data)
    assert (row["uid"], row["plan_name"], row["exit_status"]) == (uid, "ccd_test", None)
    # ... and the catalog itself already holds the points of every page it was handed: all
    # of the backup's but, at most, the page in flight when the kill came.
    with RunStore(data) as store:
        held = store._load_node(store.client[uid]).stream("electrochem")
        backed = load_backup(backup).stream("electrochem")
    assert 0 < len(held) <= points
    pd.testing.assert_frame_equal(held, backed.iloc[: len(held)])

    # The export gives exactly the backup's points, before and after the repair.
    exported = export_rows(data, uid[:8], tmp_path / "before.csv")
    assert len(exported) == points
    repair = runs_json(data, "--repair")
    (fixed,) = repair["repair"]["runs"]
    assert (fixed["action"], fixed["points"]) == ("completed", points)
    assert fixed["exit_status"] == "abort"
    assert repair["runs"][0]["exit_status"] == "abort"
    after = export_rows(data, uid[:8], tmp_path / "after.csv")
    pd.testing.assert_frame_equal(after, exported)
    with RunStore(data) as store:
        stop = store.client[uid].metadata["stop"]
    assert stop["reason"] == RECOVERED_REASON
    assert stop["num_events"]["electrochem"] == points

    # A run deleted from the catalog comes back whole; a second repair changes nothing.
    with RunStore(data) as store:
        store.client[uid].delete(recursive=True, external_only=False)
        assert store.runs().empty
    repair = runs_json(data, "--repair")
    assert [r["action"] for r in repair["repair"]["runs"]] == ["restored"]
    pd.testing.assert_frame_equal(export_rows(data, uid, tmp_path / "x.csv"), exported)
    again = runs_json(data, "--repair")
    assert [r["action"] for r in again["repair"]["runs"]] == ["ok"]


@pytest.mark.slow
def test_an_unwritable_catalog_stops_the_run_in_one_line_and_the_backup_keeps_the_points(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    with RunStore(data) as store:
        store.client  # noqa: B018 - create the catalog
        tables = store.data_dir / "tables.sqlite"
    tables.unlink(missing_ok=True)
    # A folder where the event tables' file should be: the catalog cannot write a point (and,
    # unlike chmod, this holds for root too).
    tables.mkdir()
    done = insitu(*CCD, "--data", str(data), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("insitu: error: cannot write run ")
    assert str(tables) in line and "insitu runs --repair" in line
    (backup,) = (data / "backup").glob("*.jsonl")
    assert str(backup) in line
    kept = load_backup(backup)
    assert len(kept.stream("electrochem")) > 0
    assert kept.stop is not None and kept.stop["exit_status"] == "fail"
