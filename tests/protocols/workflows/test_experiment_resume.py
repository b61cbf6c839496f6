"""Settling the segment a kill interrupted, at the edges: no points yet, a torn start.

The full kill-and-resume runs are in test_experiment.py; these build the journal and the JSONL
backup a kill leaves at the worst moments, and check what a resume makes of them.
"""

from __future__ import annotations

import json
import time

from insitu.protocols.experiment_config import validate_config
from insitu.protocols.plans.experiment_protocol import (
    Outcome,
    advance,
    initial_state,
    pending_segment,
)
from insitu.protocols.storage.catalog import RunStore
from insitu.protocols.storage.journal import ExperimentJournal, read_journal
from insitu.protocols.workflows.experiment import settle_interrupted


def killed_during_plating(tmp_path, backup_lines):
    """A journal whose plating started (run opened) and never ended; its backup as given."""
    cfg = validate_config({"material": "A-LPS", "schedule": {"current_densities_mA_cm2": [0.04]}})
    folder = tmp_path / "exp"
    journal = ExperimentJournal(folder)
    journal.create("x1", cfg.to_dict())
    state = initial_state()
    for _ in range(2):  # EIS before, pristine scan
        seg = pending_segment(state)
        journal.start(seg.to_dict())
        new = advance(state, seg, Outcome("completed"), cfg)
        journal.done(seg.to_dict(), Outcome("completed").to_dict(), new)
        state = new
    plate = pending_segment(state)
    assert plate.kind == "plate"
    journal.start(plate.to_dict())
    journal.run_opened(plate.index, "u-plate")
    store = RunStore(tmp_path / "data")
    store.backup_dir.mkdir(parents=True, exist_ok=True)
    (store.backup_dir / "u-plate.jsonl").write_text(backup_lines)
    return cfg, folder, store, plate


def start_line(index: int) -> str:
    doc = {
        "uid": "u-plate",
        "time": time.time(),
        "plan_name": "galvanostatic_hold",
        "experiment_uid": "x1",
        "segment_index": index,
        "experiment_segment": "plate",
    }
    return json.dumps({"name": "start", "doc": doc}) + "\n"


def test_a_plating_killed_before_its_first_points_counts_as_ended_with_no_charge(tmp_path):
    cfg, folder, store, plate = killed_during_plating(tmp_path, start_line(2))
    with store:
        said = settle_interrupted(read_journal(folder), folder, store, cfg)
        assert "interrupted" in said
        run = store.load("u-plate")
        assert run.stop["exit_status"] == "abort"
        assert "interrupted" in run.stop["reason"]
    journal = read_journal(folder)
    assert journal.interrupted is None
    last = journal.done[-1]
    assert last["segment"]["index"] == plate.index
    assert last["outcome"]["end_reason"] == "interrupted"
    assert last["outcome"]["charge_C"] == 0
    # The protocol goes on as after the plating: the scan after it is next.
    assert last["state"]["pending"]["kind"] == "tomogram"


def test_a_torn_start_document_means_the_segment_never_started(tmp_path):
    cfg, folder, store, _ = killed_during_plating(tmp_path, start_line(2)[:40])
    with store:
        said = settle_interrupted(read_journal(folder), folder, store, cfg)
    assert "had not started" in said
    journal = read_journal(folder)
    assert journal.interrupted is None and len(journal.done) == 2  # the plating runs again
    assert (folder / "superseded" / "u-plate.jsonl").is_file()
