"""The experiment's journal: one JSON line per event, flushed and fsynced as it happens.

``journal.jsonl`` in the experiment's folder is what ``insitu experiment resume`` reads after a
kill or a restart. Its lines, in order:

- ``{"type": "experiment", "id", "created", "config", "software_version"}``: once, first;
- ``{"type": "start", "segment", "time"}``: a segment begins;
- ``{"type": "run", "index", "run_uid"}``: the segment's run was opened;
- ``{"type": "done", "segment", "outcome", "state", "time"}``: it ended; ``state`` is the
  protocol state after it (:mod:`insitu.protocols.plans.experiment_protocol`), so the journal's last
  ``done`` line is where the experiment stands;
- ``{"type": "redo", "index", "why"}`` / ``{"type": "resumed", "time"}``: what a resume did;
- ``{"type": "finished", "reason", "time"}``.

A line torn by a kill (the last one, without its newline) is ignored on reading: the event it
recorded did not complete.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from insitu.analysis.provenance import software_version

__all__ = ["JOURNAL_NAME", "ExperimentJournal", "JournalState", "read_journal"]

JOURNAL_NAME = "journal.jsonl"


class ExperimentJournal:
    """Append-only journal of one experiment (see the module docstring).

    Parameters
    ----------
    folder : Path
        The experiment's folder; the journal is ``folder / "journal.jsonl"``.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / JOURNAL_NAME

    def _append(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, default=_json_default, allow_nan=False) + "\n"
        # Open, write, fsync, close per line: a kill at any moment leaves at most a torn last
        # line, never a lost earlier one.
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def create(self, experiment_id: str, config: dict[str, Any]) -> None:
        """Start a new journal; refuses to overwrite one."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and self.path.stat().st_size:
            raise FileExistsError(
                f"{self.path} exists: experiment {experiment_id} has started already; use "
                f"`insitu experiment resume {experiment_id}`"
            )
        self._append(
            {
                "type": "experiment",
                "id": experiment_id,
                "created": time.time(),
                "config": config,
                "software_version": software_version(),
            }
        )

    def start(self, segment: dict[str, Any]) -> None:
        """A segment begins."""
        self._append({"type": "start", "segment": segment, "time": time.time()})

    def run_opened(self, index: int, run_uid: str) -> None:
        """The segment's run was opened with ``run_uid``."""
        self._append({"type": "run", "index": index, "run_uid": run_uid})

    def done(self, segment: dict[str, Any], outcome: dict[str, Any], state: dict[str, Any]) -> None:
        """A segment ended; ``state`` is the protocol state after it."""
        self._append(
            {
                "type": "done",
                "segment": segment,
                "outcome": outcome,
                "state": state,
                "time": time.time(),
            }
        )

    def note(self, kind: str, **fields: Any) -> None:
        """Any other event (``redo``, ``resumed``, ``analysis``, ...)."""
        self._append({"type": kind, **fields, "time": time.time()})

    def finished(self, reason: str) -> None:
        """The experiment ended."""
        self._append({"type": "finished", "reason": reason, "time": time.time()})


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.endswith("\n"):
                return  # torn by a kill: that event did not complete
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(
                    f"{path} line {n} is not a journal entry ({exc}); the journal was edited or "
                    "damaged: restore it from a copy, or remove that line if it is the last"
                ) from None


@dataclass
class JournalState:
    """What a journal says about its experiment."""

    experiment_id: str
    config: dict[str, Any]
    created: float
    #: ``done`` entries in order.
    done: list[dict[str, Any]] = field(default_factory=list)
    #: The segment that started and never ended (a kill), or None.
    interrupted: dict[str, Any] | None = None
    #: Run uid of the interrupted segment's run, if it was opened.
    interrupted_run_uid: str | None = None
    #: Run uid of every segment index seen in ``run`` entries.
    run_uids: dict[int, str] = field(default_factory=dict)
    finished: str | None = None
    resumes: int = 0

    @property
    def last_state(self) -> dict[str, Any] | None:
        """Protocol state after the last completed segment (None before any)."""
        return self.done[-1]["state"] if self.done else None


def read_journal(folder: str | Path) -> JournalState:
    """Read an experiment's journal.

    Raises
    ------
    FileNotFoundError
        No journal in ``folder``.
    ValueError
        A journal that does not begin with its experiment line, or a damaged line.
    """
    path = Path(folder) / JOURNAL_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no experiment journal at {path}")
    entries = iter(_lines(path))
    head = next(entries, None)
    if head is None or head.get("type") != "experiment":
        raise ValueError(f"{path} does not begin with an experiment line; it is not a journal")
    journal = JournalState(
        experiment_id=head["id"], config=head["config"], created=float(head["created"])
    )
    started: dict[str, Any] | None = None
    for entry in entries:
        kind = entry.get("type")
        if kind == "start":
            started = entry["segment"]
        elif kind == "run":
            journal.run_uids[int(entry["index"])] = entry["run_uid"]
        elif kind == "done":
            journal.done.append(entry)
            started = None
        elif kind == "redo":
            if started is not None and started["index"] == entry["index"]:
                started = None
        elif kind == "resumed":
            journal.resumes += 1
        elif kind == "finished":
            journal.finished = entry["reason"]
    if started is not None:
        journal.interrupted = started
        journal.interrupted_run_uid = journal.run_uids.get(int(started["index"]))
    return journal
