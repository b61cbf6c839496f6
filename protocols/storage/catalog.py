"""Run storage: Bluesky documents into a tiled catalog, with a JSONL backup that loses nothing.

Every run goes two ways at once:

1. a **JSONL backup** — one file per run, ``backup/<start uid>.jsonl``, one line per document
   (``{"name": ..., "doc": ...}``), flushed after every document. It is written *first* and
   independently of the catalog, so whatever happens to the catalog the run is on disk;
2. a **tiled catalog**, written by bluesky-tiled-plugins' ``TiledWriter``:

   * *embedded* (the default): a folder (``./insitu-data``, or ``$INSITU_DATA``) holding
     ``catalog.db`` (SQLite catalog), ``data/`` (file storage for arrays) and
     ``data/tables.sqlite`` (SQL storage for the event tables). The tiled app is served
     in-process (``Context.from_app``), so there is no server to start;
   * *remote*: a tiled server given by URI and API key (at scale, PostgreSQL behind it).

Policy on catalog failures: a catalog write that raises **does not fail the run**. A beamline
or a cell mid-cycle must not stop because a database hiccuped, and nothing is lost: the backup
is complete. The failure is logged, recorded in :attr:`RunStore.errors` (with the backup file
to restore from), the catalog receives no further documents of that run (so a partial run never
looks complete — it has no stop document), and :meth:`RunStore.restore_backup` puts the run
into the catalog later. :meth:`RunStore.raise_errors` turns recorded failures into an exception
for scripts that want to fail loudly at the end. A failure that will not heal — a full disk, a
folder without write rights (``ENOSPC``, ``EACCES``, ``EROFS``..., or SQLite's words for
them) — *stops* the run instead, with a :class:`StorageWriteError` (a user error) that names
the path and the backup holding the points so far.

Crashes: the catalog receives each run's points at most :data:`CATALOG_FLUSH_S` after they
were measured (the backup before the next point). A run a crash left without a stop document
is listed, and :meth:`RunStore.load` reads it from its backup; :meth:`RunStore.repair`
(``insitu runs --repair``) closes it (``abort``, :data:`RECOVERED_REASON`) and restores every
run missing from the catalog or partial there.

Reading back: :meth:`RunStore.runs` lists runs, :meth:`RunStore.load` returns a
:class:`StoredRun` whose streams are pandas DataFrames (a ``time`` column with the event
timestamps, then the data keys by their plain names); :func:`load_backup` gives the same
from a JSONL file alone.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import re
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import UserError

__all__ = [
    "DEFAULT_LOCATION",
    "LOCATION_ENV_VAR",
    "RECOVERED_REASON",
    "CatalogUnavailableError",
    "RunNotFoundError",
    "RunStore",
    "StorageFailure",
    "StorageWriteError",
    "StoredRun",
    "backup_in_use",
    "close_backup",
    "iter_backup",
    "load_backup",
]

logger = logging.getLogger(__name__)

#: Folder of the embedded catalog when neither an argument nor the environment names one.
DEFAULT_LOCATION = "insitu-data"
#: Environment variable that overrides :data:`DEFAULT_LOCATION`.
LOCATION_ENV_VAR = "INSITU_DATA"

# TiledWriter renames data keys that clash with the table's own columns ("time" and "seq_num"
# become "time_" and "seq_num_"); the backup reader applies the same renaming so that both
# paths give identical DataFrames.
_RESERVED_KEYS = ("time", "seq_num")
#: The ``reason`` of the stop document given to a run that a crash left without one.
RECOVERED_REASON = (
    "recovered from the JSONL backup: the process ended before the run was closed "
    "(killed, crashed or powered off); the points it measured are kept"
)
#: Longest time (s) a point waits in memory before it is appended to the catalog. One append
#: costs ~50 ms in the embedded catalog on 2 cores, so appending after every single event
#: (tomography's trigger-and-read) would cut a run's rate ~12-fold; the JSONL backup has
#: every point before the next is requested in any case.
CATALOG_FLUSH_S = 1.0
# What a message about a run that is not there tells the user to do.
_LIST_HINT = "list the runs with `insitu runs` (RunStore.runs() in Python)"
# Start-document keys that the run listing shows when a plan recorded them.
_LISTED_METADATA = (
    "scan_id",
    "sample",
    "sample_name",
    "material",
    "cell",
    "cell_id",
    "operator",
    # The in-situ experiment's runs: which experiment, which segment.
    "experiment_uid",
    "segment_index",
    "segment_label",
)


# --------------------------------------------------------------------------------------------
# Errors and records
# --------------------------------------------------------------------------------------------


class RunNotFoundError(UserError, KeyError):
    """No run matches the uid, uid prefix or index that was asked for."""

    def __str__(self) -> str:
        # KeyError.__str__ would repr() the message, quotes and escaped newlines included.
        return str(self.args[0]) if self.args else ""


class CatalogUnavailableError(UserError, ConnectionError):
    """The tiled catalog cannot be reached or opened."""


class StorageWriteError(UserError, OSError):
    """A run could not be written where it must go (a full disk, a folder without rights).

    Raised from the RunEngine's callback, so the plan stops (its cleanup switches the cell
    off) with the points so far kept: the message names the path and where the points are.
    """


@dataclass(frozen=True)
class StorageFailure:
    """A storage failure recorded while a run was being written.

    Attributes
    ----------
    run_uid : str or None
        Start uid of the run the document belonged to (None if it could not be routed).
    document : str
        Name of the document being written when the failure happened (``"event_page"``...).
    target : str
        ``"catalog"`` or ``"backup"``.
    error : BaseException
        The exception raised.
    backup_path : pathlib.Path or None
        The JSONL backup of the run, to give to :meth:`RunStore.restore_backup`.
    """

    run_uid: str | None
    document: str
    target: str
    error: BaseException
    backup_path: Path | None = None

    def __str__(self) -> str:
        where = f" (backup: {self.backup_path})" if self.backup_path else ""
        return (
            f"{self.target} write failed for run {self.run_uid} at a {self.document!r} "
            f"document: {type(self.error).__name__}: {self.error}{where}"
        )


@dataclass
class StoredRun:
    """A run read back from the catalog or from a JSONL backup.

    Attributes
    ----------
    uid : str
        Start-document uid.
    metadata : dict
        ``{"start": <start document>, "stop": <stop document or None>}`` as plain dicts.
    streams : dict of str to pandas.DataFrame
        One DataFrame per stream: a ``time`` column (event timestamps, s since the epoch) and
        one column per data key, named as the device named it (``voltage_V``...). A data key
        called ``time`` or ``seq_num`` appears as ``time_`` / ``seq_num_`` (tiled convention).
        Arrays of up to 16 elements are list-valued cells, bigger arrays numpy-valued cells.
    descriptors : dict of str to list of dict
        The event descriptors of each stream (data-key units, shapes, sources, configuration).
    external_keys : dict of str to list of str
        Per stream, data keys held in external files (e.g. HDF5 projections); they are *not*
        loaded into the DataFrames — read them through the catalog client when needed.
    """

    uid: str
    metadata: dict[str, Any]
    streams: dict[str, pd.DataFrame]
    descriptors: dict[str, list[dict[str, Any]]] = field(default_factory=dict, repr=False)
    external_keys: dict[str, list[str]] = field(default_factory=dict, repr=False)

    @property
    def start(self) -> dict[str, Any]:
        """The start document."""
        return self.metadata["start"]

    @property
    def stop(self) -> dict[str, Any] | None:
        """The stop document, or None for a run that did not finish writing."""
        return self.metadata.get("stop")

    def stream(self, name: str = "primary") -> pd.DataFrame:
        """Return one stream's data.

        Parameters
        ----------
        name : str
            Stream name (``"primary"``, ``"electrochem"``, ``"eis"``...).

        Raises
        ------
        KeyError
            If the run has no such stream; the message lists the streams it has.
        """
        try:
            return self.streams[name]
        except KeyError:
            raise KeyError(
                f"run {self.uid} has no stream {name!r}; its streams are {sorted(self.streams)}"
            ) from None


# --------------------------------------------------------------------------------------------
# JSON backup
# --------------------------------------------------------------------------------------------


def _json_default(obj: Any) -> Any:
    """Make numpy (and other array-like) values JSON-friendly."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "__array__"):
        return np.asarray(obj).tolist()
    raise TypeError(f"cannot store a {type(obj).__name__} in the JSONL backup: {obj!r}")


class _DocumentRouting:
    """Find the run (start uid) that any Bluesky document belongs to.

    The backup and the catalog guard both need it, and bluesky may interleave documents of
    several open runs, so the mapping descriptor/resource → run is kept here once.
    """

    def __init__(self) -> None:
        self._by_descriptor: dict[str, str] = {}
        self._by_resource: dict[str, str] = {}

    def run_of(self, name: str, doc: Mapping[str, Any]) -> str | None:
        if name == "start":
            return doc["uid"]
        if name in ("stop", "descriptor"):
            run = doc.get("run_start")
            if name == "descriptor" and run is not None:
                self._by_descriptor[doc["uid"]] = run
            return run
        if name in ("event", "event_page", "stream_datum"):
            return self._by_descriptor.get(doc.get("descriptor"))  # type: ignore[arg-type]
        if name in ("resource", "stream_resource"):
            run = doc.get("run_start")
            if run is not None:
                self._by_resource[doc["uid"]] = run
            return run
        if name in ("datum", "datum_page"):
            return self._by_resource.get(doc.get("resource"))  # type: ignore[arg-type]
        return None

    def forget(self, run_uid: str) -> None:
        """Drop a finished run's entries so that a long session does not grow without bound."""
        for table in (self._by_descriptor, self._by_resource):
            for key in [k for k, v in table.items() if v == run_uid]:
                del table[key]


class _JsonlBackup:
    """Append each run's documents to ``<folder>/<start uid>.jsonl``, one flushed line each.

    While a run is open its file is held under an exclusive ``flock``: the kernel drops the
    lock when the process dies (even by ``kill -9``), so :func:`backup_in_use` tells a run
    being written now from one a crash left open, and a repair never closes a live run.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._files: dict[str, Any] = {}

    def path_of(self, run_uid: str) -> Path:
        return self.folder / f"{run_uid}.jsonl"

    def write(self, run_uid: str | None, name: str, doc: Mapping[str, Any]) -> None:
        if run_uid is None:
            raise RuntimeError(f"a {name!r} document does not belong to any open run")
        fh = self._files.get(run_uid)
        if fh is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            # Append, so that a run that is resumed after a crash of this process keeps its
            # earlier lines; line-buffering is not enough for one big event page, hence flush().
            fh = self._files[run_uid] = open(self.path_of(run_uid), "a", encoding="utf-8")
            _try_lock(fh)
        # Flushed, not fsynced: a flushed line is in the kernel and survives the death of
        # this process; fsync (power loss) is paid once per run, at its stop document.
        fh.write(json.dumps({"name": name, "doc": doc}, default=_json_default) + "\n")
        fh.flush()
        if name == "stop":
            # The run is complete: make it durable before the next run starts.
            os.fsync(fh.fileno())
            fh.close()
            del self._files[run_uid]

    def close(self) -> None:
        for fh in self._files.values():
            fh.close()
        self._files.clear()


def _try_lock(fh: Any) -> bool:
    """Take an exclusive, non-blocking ``flock`` on an open file; False if another holds it."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, so a repair cannot tell a live run (documented)
        return True
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def backup_in_use(path: str | Path) -> bool:
    """True while a process is writing the run of this backup (it holds the file's lock).

    Parameters
    ----------
    path : str or pathlib.Path
        A ``backup/<uid>.jsonl`` file.
    """
    with open(path, "rb") as fh:
        # Our own descriptor: closing it releases the probe's lock, never the writer's.
        return not _try_lock(fh)


def _stream_counts(docs: Iterable[tuple[str, Mapping[str, Any]]]) -> dict[str, int]:
    """Events per stream name in a run's documents."""
    streams: dict[str, str] = {}
    counts: dict[str, int] = {}
    for name, doc in docs:
        if name == "descriptor":
            streams[doc["uid"]] = doc["name"]
            counts.setdefault(doc["name"], 0)
        elif name in ("event", "event_page"):
            key = streams.get(doc["descriptor"], "")
            counts[key] = counts.get(key, 0) + (len(doc["seq_num"]) if name == "event_page" else 1)
    return counts


def _table_streams(docs: Iterable[tuple[str, Mapping[str, Any]]]) -> set[str]:
    """The streams with at least one data key stored in the catalog's tables (not a file)."""
    return {
        doc["name"]
        for name, doc in docs
        if name == "descriptor"
        and any("external" not in key for key in doc.get("data_keys", {}).values())
    }


def _last_time(docs: Iterable[tuple[str, Mapping[str, Any]]]) -> float:
    """The latest timestamp among a run's documents (an event page has one per event)."""
    latest = 0.0
    for _, doc in docs:
        stamp = doc.get("time")
        if isinstance(stamp, list):
            latest = max([latest, *(float(t) for t in stamp)])
        elif stamp is not None:
            latest = max(latest, float(stamp))
    return latest


def close_backup(
    path: str | Path, *, exit_status: str = "abort", reason: str = RECOVERED_REASON
) -> dict[str, Any] | None:
    """Append the stop document that a run's backup lacks (the process ended mid-run).

    Parameters
    ----------
    path : str or pathlib.Path
        A ``backup/<uid>.jsonl`` file.
    exit_status : str
        The stop document's ``exit_status`` (``"abort"`` or ``"fail"``).
    reason : str
        Its ``reason``: by default that the run was recovered from the backup.

    Returns
    -------
    dict or None
        The stop document appended, or None when the backup already had one.

    Raises
    ------
    StorageWriteError
        If a process is still writing the run (closing it would end a live run).
    ValueError
        If the file does not begin with a start document.
    """
    path = Path(path)
    docs = list(iter_backup(path))
    if not docs or docs[0][0] != "start":
        raise ValueError(f"{path} does not begin with a start document: it is not a run backup")
    if any(name == "stop" for name, _ in docs):
        return None
    start = docs[0][1]
    stop = {
        "run_start": start["uid"],
        "time": max(_last_time(docs), float(start["time"])),
        "uid": str(uuid.uuid4()),
        "exit_status": exit_status,
        "reason": reason,
        "num_events": _stream_counts(docs),
    }
    line = json.dumps({"name": "stop", "doc": stop}).encode() + b"\n"
    with open(path, "rb+") as fh:
        if not _try_lock(fh):
            raise StorageWriteError(
                f"run {start['uid']} is still being written by another process ({path}); "
                "let it finish, or stop that process first"
            )
        end = fh.seek(0, os.SEEK_END)
        if end:
            fh.seek(end - 1)
            # A kill can tear the last line: the stop document must start a line of its own.
            if fh.read(1) != b"\n":
                line = b"\n" + line
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())
    return stop


def iter_backup(path: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """The ``(name, document)`` pairs of a JSONL backup, in order.

    A line a kill tore (the last one, cut mid-write) is skipped with a warning.
    """
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as err:
                # A process killed mid-write leaves a truncated last line: keep what is whole.
                logger.warning("%s:%d: skipping an unreadable line (%s)", path, lineno, err)
                continue
            yield item["name"], item["doc"]


def _rename_reserved(keys: Iterable[str]) -> dict[str, str]:
    return {k: (f"{k}_" if k in _RESERVED_KEYS else k) for k in keys}


def load_backup(path: str | Path) -> StoredRun:
    """Rebuild a run from its JSONL backup alone (for when the catalog is lost).

    Parameters
    ----------
    path : str or pathlib.Path
        A ``backup/<uid>.jsonl`` file written by :class:`RunStore`.

    Returns
    -------
    StoredRun
        The same streams, columns and values as :meth:`RunStore.load` gives for the run.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no JSONL backup at {path}")
    start: dict[str, Any] | None = None
    stop: dict[str, Any] | None = None
    descriptors: dict[str, dict[str, Any]] = {}
    # Per stream, the columns as lists of chunks (one chunk per event or event page), so a
    # 25 000-point event page is one list extension rather than 25 000 appends.
    chunks: dict[str, dict[str, list[list[Any]]]] = {}
    by_stream: dict[str, list[dict[str, Any]]] = {}
    for name, doc in iter_backup(path):
        if name == "start":
            start = doc
        elif name == "stop":
            stop = doc
        elif name == "descriptor":
            descriptors[doc["uid"]] = doc
            by_stream.setdefault(doc["name"], []).append(doc)
            chunks.setdefault(doc["name"], {})
        elif name in ("event", "event_page"):
            desc = descriptors.get(doc["descriptor"])
            if desc is None:
                logger.warning("%s: event for an unknown descriptor; skipped", path)
                continue
            columns = chunks[desc["name"]]
            page = name == "event_page"
            columns.setdefault("seq_num", []).append(doc["seq_num"] if page else [doc["seq_num"]])
            columns.setdefault("time", []).append(doc["time"] if page else [doc["time"]])
            for key, value in doc["data"].items():
                columns.setdefault(key, []).append(value if page else [value])
    if start is None:
        raise ValueError(f"{path} holds no start document: it is not a run backup")

    streams: dict[str, pd.DataFrame] = {}
    external: dict[str, list[str]] = {}
    for stream, descs in by_stream.items():
        data_keys = _merged_data_keys(descs)
        ext = [k for k, v in data_keys.items() if "external" in v]
        internal = [k for k in data_keys if k not in ext]
        columns = {k: [x for chunk in v for x in chunk] for k, v in chunks[stream].items()}
        n = len(columns.get("time", []))
        frame: dict[str, Any] = {
            "seq_num": columns.get("seq_num", []),
            "time": columns.get("time", []),
        }
        renamed = _rename_reserved(internal)
        for key in internal:
            frame[renamed[key]] = columns.get(key, [None] * n)
        df = pd.DataFrame(frame)
        df = _tidy(df, [renamed[k] for k in internal], data_keys)
        streams[stream] = df
        if ext:
            external[stream] = ext
    return StoredRun(
        uid=start["uid"],
        metadata={"start": start, "stop": stop},
        streams=streams,
        descriptors=by_stream,
        external_keys=external,
    )


def _merged_data_keys(descriptors: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = {}
    for desc in descriptors:
        for key, spec in desc.get("data_keys", {}).items():
            merged.setdefault(key, spec)
    return merged


def _tidy(
    df: pd.DataFrame, data_columns: list[str], data_keys: Mapping[str, Mapping[str, Any]]
) -> pd.DataFrame:
    """Common final shape of a stream DataFrame, whichever way it was read."""
    if "seq_num" in df.columns and len(df):
        df = df.sort_values("seq_num", kind="stable")
    df = df[["time", *data_columns]].reset_index(drop=True)
    # Numeric widths are not kept by the JSON backup, and the catalog keeps whatever width
    # pyarrow guessed from the values (float32 for numpy float32 scalars): one rule for both
    # paths — 64-bit floats and integers — so that the two readings compare equal. Widening
    # loses nothing.
    for col in data_columns:
        kind = df[col].dtype.kind
        if kind == "f" and df[col].dtype != np.float64:
            df[col] = df[col].astype(np.float64)
        elif kind in "iu" and df[col].dtype != np.int64 and df[col].dtype != np.uint64:
            df[col] = df[col].astype(np.int64)
    # Give an empty stream the dtypes its descriptor declares, so that it concatenates cleanly.
    if not len(df):
        inverse = {v: k for k, v in _rename_reserved(data_keys).items()}
        dtypes = {"time": "float64"}
        for col in data_columns:
            declared = data_keys.get(inverse.get(col, col), {}).get("dtype")
            dtypes[col] = {"number": "float64", "integer": "int64", "boolean": "bool"}.get(
                declared, "object"
            )
        df = df.astype(dtypes)
    return df


# --------------------------------------------------------------------------------------------
# Writing to tiled
# --------------------------------------------------------------------------------------------


def _page_normalizer_class(flush_each_document: bool) -> type:
    """RunNormalizer that passes event pages through whole and, if asked, writes them at once.

    The stock normalizer unpacks every event page into single events and deep-copies and
    JSON-schema-validates each one: ~7 s of the ~8 s TiledWriter spends on a 25 000-point
    flyer page. A page of internal data needs none of that per-event work — only the reserved
    key renaming — so it is renamed and handed to the writer as a page.
    Pages that carry external (file-referenced) data or a patch for events take the stock path.

    TiledWriter's run writer keeps up to ``batch_size`` (10 000) rows in memory and writes
    them at the stop document, so a killed run reached the catalog with none of its points.
    Its ``batch_size=1`` writes each *row* alone (an event page of 25 000 points would be
    25 000 appends), so instead, with ``flush_each_document``, the rows held after an
    ``event`` or ``event_page`` document are appended as one table partition, at most every
    :data:`CATALOG_FLUSH_S` (what the run writer itself does at the stop document): a point
    is in the JSONL backup when the next is requested, and in the catalog within a second.
    Built lazily so that importing this module does not import tiled.
    """
    from bluesky_tiled_plugins.writing.tiled_writer import RunNormalizer
    from event_model import DocumentNames

    class _PageNormalizer(RunNormalizer):
        _run_writers: list[Any]

        def subscribe(self, func, name="all"):  # type: ignore[no-untyped-def]
            # TiledWriter subscribes the run's writer here: keep it, to flush its rows.
            self.__dict__.setdefault("_run_writers", []).append(func)
            return super().subscribe(func, name)

        def __call__(self, name, doc, *args, **kwargs):  # type: ignore[no-untyped-def]
            result = super().__call__(name, doc, *args, **kwargs)
            if flush_each_document and name in ("event", "event_page"):
                now = time.monotonic()
                if now - self.__dict__.get("_flushed_at", -math.inf) >= CATALOG_FLUSH_S:
                    for writer in self.__dict__.get("_run_writers", []):
                        _flush_rows(writer)
                    self.__dict__["_flushed_at"] = time.monotonic()
            return result

        def event_page(self, doc):  # type: ignore[no-untyped-def]
            keys = set(doc["data"])
            filled = doc.get("filled") or {}
            if "event" in self.patches or "event_page" in self.patches or filled:
                return super().event_page(doc)
            if keys & self._ext_keys or not keys <= self._int_keys:
                return super().event_page(doc)
            page = dict(doc)  # shallow: the column lists are not modified downstream
            page["data"] = dict(doc["data"])
            page["timestamps"] = dict(doc["timestamps"])
            page["filled"] = {}
            for name in _RESERVED_KEYS:
                if name in page["data"]:
                    page["data"][f"{name}_"] = page["data"].pop(name)
                    page["timestamps"][f"{name}_"] = page["timestamps"].pop(name)
            # No schema validation here: validating a page checks every element of every
            # column (~5 s for 25 000 rows), and each event was validated when the RunEngine
            # composed it.
            self.dispatcher.process(DocumentNames.event_page, page)

    return _PageNormalizer


def _flush_rows(run_writer: Any) -> None:
    """Append the rows a TiledWriter run writer holds in memory to its tables now.

    The same calls as the writer's own ``stop`` makes for its cached rows (bluesky-tiled-
    plugins has no public flush).
    """
    cache = getattr(run_writer, "_internal_data_cache", None)
    if not cache:
        return
    for stream, rows in cache.items():
        if rows:
            run_writer._write_internal_data(rows, desc_node=run_writer._desc_nodes[stream])
            rows.clear()


def _make_tiled_writer(client: Any, *, flush_each_document: bool = True) -> Any:
    """A TiledWriter with the page-passing normalizer (see :func:`_page_normalizer_class`).

    ``flush_each_document=False`` keeps TiledWriter's batching: for replaying a whole backup,
    where the stop document comes within the same call and nothing is live.
    """
    from bluesky_tiled_plugins import TiledWriter

    return TiledWriter(client, normalizer=_page_normalizer_class(flush_each_document))


#: OS errors that the user fixes (rights, a full or read-only disk), not a bug or a hiccup.
_USER_ERRNOS = frozenset(
    {errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.ENOTDIR}
)
# What SQLite (through sqlite3, SQLAlchemy or ADBC) says for the same causes: it raises its
# own exception types, not OSError, with these words.
_SQLITE_USER_PHRASES = (
    "database or disk is full",
    "readonly database",
    "unable to open database file",
    "failed to open",
)


def _user_cause(err: BaseException) -> str | None:
    """Why a write failed, if it is a full disk or a folder without rights; else None.

    Looks through the exception's causes and exception groups (tiled's in-process server
    re-raises the storage's exception inside an ``ExceptionGroup``).
    """
    seen: set[int] = set()
    todo: list[BaseException] = [err]
    while todo:
        exc = todo.pop()
        if id(exc) in seen:
            continue
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _USER_ERRNOS:
            return exc.strerror or str(exc)
        text = str(exc).lower()
        if any(phrase in text for phrase in _SQLITE_USER_PHRASES):
            return str(exc)
        todo.extend(e for e in (exc.__cause__, exc.__context__) if e is not None)
        todo.extend(getattr(exc, "exceptions", ()))
    return None


class _StoreCallback:
    """The one RunEngine subscriber: backup first, then the catalog, never raising.

    One callback rather than two subscriptions makes the order (backup before catalog) a
    guarantee instead of a property of the dispatcher.
    """

    def __init__(self, store: RunStore) -> None:
        self._store = store
        self._routing = _DocumentRouting()
        self._backup = _JsonlBackup(store.backup_dir)
        self._writer: Any = None
        self._open_runs: set[str] = set()
        self._failed_runs: set[str] = set()

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        run_uid = self._routing.run_of(name, doc)
        try:
            self._backup.write(run_uid, name, doc)
        except Exception as err:
            self._record(run_uid, name, "backup", err)
            if _user_cause(err) is not None and name != "stop":
                raise self._stop_error(run_uid, "backup", err) from err
        if name == "start" and run_uid is not None:
            self._open_runs.add(run_uid)
        self._write_catalog(run_uid, name, doc)
        if name == "stop" and run_uid is not None:
            self._open_runs.discard(run_uid)
            self._routing.forget(run_uid)
            if run_uid in self._failed_runs:
                self._failed_runs.discard(run_uid)
                # The failed run's half-built writer state is dropped with the writer; only
                # safe when no other run is still being written through it.
                if not self._open_runs:
                    self._writer = None

    def _write_catalog(self, run_uid: str | None, name: str, doc: dict[str, Any]) -> None:
        if run_uid in self._failed_runs:
            return
        try:
            if self._writer is None:
                self._writer = _make_tiled_writer(self._store.client)
            self._writer(name, doc)
        except Exception as err:
            if run_uid is not None:
                self._failed_runs.add(run_uid)
            self._record(run_uid, name, "catalog", err)
            # A database hiccup does not stop a cell mid-cycle (the backup is complete), but a
            # full disk or a folder without rights will not heal: stop the run now, cleanly,
            # rather than measure on into a catalog that keeps nothing.
            if _user_cause(err) is not None and name != "stop":
                raise self._stop_error(run_uid, "catalog", err) from err

    def _stop_error(self, run_uid: str | None, target: str, err: Exception) -> StorageWriteError:
        # One line: the CLI prints it as such, and a driver's message may span several.
        cause = " ".join((_user_cause(err) or str(err)).split())
        backup = self._backup.path_of(run_uid) if run_uid else self._store.backup_dir
        if target == "backup":
            where = getattr(err, "filename", None) or backup
            kept = "the catalog holds its points up to here"
        else:
            where = getattr(err, "filename", None) or self._store._where()
            kept = f"its points so far are in the backup {backup}"
        return StorageWriteError(
            f"cannot write run {run_uid} to the {target} at {where}: {cause}. The run was "
            f"stopped; {kept}. Free space or give the folder write access, then run "
            "`insitu runs --repair`"
        )

    def _record(self, run_uid: str | None, name: str, target: str, err: Exception) -> None:
        path = self._backup.path_of(run_uid) if (run_uid and target == "catalog") else None
        failure = StorageFailure(run_uid, name, target, err, path)
        self._store.errors.append(failure)
        if _user_cause(err) is not None and name != "stop":
            # The run stops with a StorageWriteError that says it all, in one line.
            logger.debug("%s", failure, exc_info=err)
            return
        logger.error(
            "%s; the run goes on%s",
            failure,
            f" and is complete in {path}: RunStore.restore_backup({str(path)!r}) "
            "puts it into the catalog"
            if path
            else "",
            exc_info=err,
        )

    def close(self) -> None:
        self._backup.close()


# --------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------


class RunStore:
    """Where runs are written to and read back from.

    Parameters
    ----------
    location : str or pathlib.Path, optional
        Folder of the embedded catalog and of the JSONL backups. Default: ``$INSITU_DATA``, or
        ``./insitu-data``. Created on first use. With ``uri`` it only holds ``backup/``.
    uri : str, optional
        URI of a tiled server (``http://host:8000/api/v1/...`` or ``http://host:8000``,
        optionally with a sub-path to a container). When given, runs go there instead of the
        embedded catalog.
    api_key : str, optional
        API key for the tiled server (with ``uri``).

    Attributes
    ----------
    errors : list of StorageFailure
        Storage failures recorded while writing runs (see the module docstring for the policy).

    Examples
    --------
    >>> store = RunStore(tmp_path)                                   # doctest: +SKIP
    >>> store.subscribe(RE)                                          # doctest: +SKIP
    >>> RE(count([det], 5))                                          # doctest: +SKIP
    >>> store.load(-1).stream("primary")                             # doctest: +SKIP
    """

    def __init__(
        self,
        location: str | Path | None = None,
        *,
        uri: str | None = None,
        api_key: str | None = None,
    ) -> None:
        if location is None:
            location = os.environ.get(LOCATION_ENV_VAR) or DEFAULT_LOCATION
        self.location = Path(location).expanduser().resolve()
        self.uri = uri
        self.api_key = api_key
        self.errors: list[StorageFailure] = []
        self._client: Any = None
        self._context: Any = None
        self._callbacks: list[_StoreCallback] = []

    def __repr__(self) -> str:
        where = self.uri if self.uri else str(self.catalog_path)
        return f"RunStore({where!r}, backup={str(self.backup_dir)!r})"

    # -- locations -----------------------------------------------------------------------

    @property
    def backup_dir(self) -> Path:
        """Folder of the JSONL backups (``<location>/backup``)."""
        return self.location / "backup"

    @property
    def catalog_path(self) -> Path:
        """SQLite file of the embedded catalog (``<location>/catalog.db``)."""
        return self.location / "catalog.db"

    @property
    def data_dir(self) -> Path:
        """File storage of the embedded catalog (``<location>/data``)."""
        return self.location / "data"

    @property
    def is_remote(self) -> bool:
        """True when runs go to a tiled server rather than the embedded catalog."""
        return self.uri is not None

    # -- the catalog client ----------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The tiled client on the catalog root (opened on first use)."""
        if self._client is None:
            self._client = self._connect_remote() if self.uri else self._open_embedded()
        return self._client

    def _open_embedded(self) -> Any:
        from tiled.catalog import from_uri as catalog_from_uri
        from tiled.client import Context, from_context
        from tiled.server.app import build_app

        # tiled announces its version at INFO on every in-process app, through a handler of
        # its own: in an embedded store that is noise on the user's terminal.
        logging.getLogger("tiled.server.app").setLevel(logging.WARNING)

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.backup_dir.mkdir(parents=True, exist_ok=True)
        # Event tables go to SQL storage; SQLite rather than tiled's usual DuckDB because a
        # DuckDB file is locked by one process, and a run must be readable from a second
        # process (an analysis notebook) while the acquisition process holds the store open.
        tables = f"sqlite:///{self.data_dir / 'tables.sqlite'}"
        try:
            adapter = catalog_from_uri(
                f"sqlite:///{self.catalog_path}",
                writable_storage=[self.data_dir, tables],
                # Initialising runs `python -m tiled catalog init` in a subprocess (~3 s), so
                # only do it for a new folder.
                init_if_not_exists=not self.catalog_path.exists(),
            )
            context = Context.from_app(build_app(adapter))
            client = from_context(context)
        except Exception as err:
            raise CatalogUnavailableError(
                f"cannot open the embedded tiled catalog at {self.catalog_path}: "
                f"{type(err).__name__}: {err}. If the file is damaged, move it away: the "
                f"runs can be restored from the JSONL backups in {self.backup_dir} with "
                "`insitu runs --repair`."
            ) from err
        self._context = context
        return client

    def _connect_remote(self) -> Any:
        import httpx
        from tiled.client import from_uri

        # tiled's client retries a refused connection with back-off for ~25 s; one direct
        # probe first turns "no server there" into an immediate, clear error.
        parts = httpx.URL(self.uri)
        try:
            httpx.get(str(parts.copy_with(path="/healthz", query=None)), timeout=5.0)
        except httpx.TransportError as err:
            raise CatalogUnavailableError(self._unreachable(err)) from err
        try:
            return from_uri(self.uri, api_key=self.api_key)
        except httpx.HTTPStatusError as err:
            code = err.response.status_code
            hint = (
                "the API key is missing or wrong: pass api_key=... (the server's "
                "--api-key or a key from `tiled api_key create`)"
                if code in (401, 403)
                else "check the URI"
            )
            raise CatalogUnavailableError(
                f"tiled server at {self.uri} answered {code}: {hint}"
            ) from err
        except (httpx.TransportError, OSError) as err:
            raise CatalogUnavailableError(self._unreachable(err)) from err
        except RuntimeError as err:
            # tiled's client, given no key by a server that requires one, raises a bare
            # RuntimeError naming the API key: that is the user's to fix, not a bug.
            if "API key" not in str(err):
                raise
            raise CatalogUnavailableError(
                f"the tiled server at {self.uri} requires an API key: set $TILED_API_KEY or "
                "pass --api-key-file FILE (api_key=... in Python)"
            ) from err

    def _unreachable(self, err: BaseException) -> str:
        return (
            f"cannot reach the tiled server at {self.uri} ({type(err).__name__}: {err}). "
            "Is it running (`tiled serve catalog ...`) and is the URI right? Without a "
            "server, use the embedded catalog: RunStore(location) with no uri."
        )

    # -- writing ---------------------------------------------------------------------------

    def callback(self) -> Callable[[str, dict[str, Any]], None]:
        """A new document callback (backup, then catalog) for any Bluesky dispatcher."""
        self.backup_dir.mkdir(parents=True, exist_ok=True)
        cb = _StoreCallback(self)
        self._callbacks.append(cb)
        return cb

    def subscribe(self, RE: Any) -> list[int]:
        """Write every run of a RunEngine to the backup and the catalog.

        The catalog is opened (or the server contacted) here, so that a wrong URI or key
        fails before a run starts rather than during it.

        Parameters
        ----------
        RE : bluesky.RunEngine
            The RunEngine.

        Returns
        -------
        list of int
            Subscription tokens, for ``RE.unsubscribe``.
        """
        self.client  # noqa: B018 - open now: fail early, not mid-run
        return [RE.subscribe(self.callback())]

    def raise_errors(self) -> None:
        """Raise a RuntimeError summarising :attr:`errors`, if there are any."""
        if self.errors:
            lines = "\n".join(f"  - {e}" for e in self.errors)
            raise RuntimeError(
                f"{len(self.errors)} storage failure(s); the JSONL backups are complete and "
                "`insitu runs --repair` (RunStore.repair(), or RunStore.restore_backup(path) "
                f"for one run) puts the runs into the catalog:\n{lines}"
            )

    # -- reading ---------------------------------------------------------------------------

    def _runs_container(self) -> Any:
        from tiled.queries import SpecsQuery

        return self.client.search(SpecsQuery(["BlueskyRun"]))

    def runs(self, limit: int | None = None) -> pd.DataFrame:
        """List the runs in the catalog, oldest first.

        Parameters
        ----------
        limit : int, optional
            Only the ``limit`` most recent runs.

        Returns
        -------
        pandas.DataFrame
            Columns ``uid``, ``plan_name``, ``time`` (start, UTC), ``exit_status`` (None for a
            run whose stop never reached the catalog), ``scan_id``, and whichever of
            ``sample``, ``sample_name``, ``material``, ``cell``, ``cell_id``, ``operator`` the
            runs recorded. Row ``i`` is what ``load(i)`` returns when ``limit`` is None.
        """
        node = self._runs_container().sort(("start.time", -1))
        items = node.items() if limit is None else node.items().head(limit)
        rows = []
        for uid, run in items:
            md = run.metadata
            start = dict(md.get("start") or {})
            stop = md.get("stop") or {}
            row = {
                "uid": uid,
                "plan_name": start.get("plan_name"),
                "time": pd.to_datetime(start.get("time"), unit="s", utc=True),
                "exit_status": stop.get("exit_status"),
            }
            row.update({k: start[k] for k in _LISTED_METADATA if k in start})
            rows.append(row)
        columns = ["uid", "plan_name", "time", "exit_status"]
        df = pd.DataFrame(rows[::-1])
        if df.empty:
            return pd.DataFrame(columns=columns)
        extra = [k for k in _LISTED_METADATA if k in df.columns]
        return df[columns + extra].reset_index(drop=True)

    def _find(self, uid_or_index: str | int) -> Any:
        from tiled.queries import Like

        container = self._runs_container()
        hint = _LIST_HINT
        if isinstance(uid_or_index, str) and re.fullmatch(r"-?[0-9]+", uid_or_index):
            # Text from a command line: "-1" or "3" is an index, but a uid prefix can be
            # all digits too ("34852053"), so digits are an index only when one exists.
            n = len(container)
            if -n <= int(uid_or_index) < n:
                uid_or_index = int(uid_or_index)
        if isinstance(uid_or_index, (int, np.integer)) and not isinstance(uid_or_index, bool):
            i = int(uid_or_index)
            ordered = container.sort(("start.time", 1))
            n = len(ordered)
            if not -n <= i < n:
                raise RunNotFoundError(
                    f"no run at index {i}: the catalog {self._where()} holds {n} run(s); {hint}"
                )
            return ordered.values()[i]
        uid = str(uid_or_index)
        if not uid:
            raise RunNotFoundError(f"an empty uid matches no run; {hint}")
        try:
            return container[uid]
        except KeyError:
            pass
        # '%' and '_' are LIKE wildcards; uids hold neither, other strings are taken literally.
        if any(c in uid for c in "%_\\"):
            raise RunNotFoundError(f"no run with uid {uid!r} in {self._where()}; {hint}")
        matches = container.search(Like("start.uid", f"{uid}%")).keys().head(2)
        if not matches:
            raise RunNotFoundError(
                f"no run with uid or uid prefix {uid!r} in {self._where()}; {hint}"
            )
        if len(matches) > 1:
            raise RunNotFoundError(
                f"uid prefix {uid!r} matches several runs ({', '.join(matches)}...): "
                f"give more characters; {hint}"
            )
        return container[matches[0]]

    def _where(self) -> str:
        return self.uri if self.uri else str(self.catalog_path)

    def load(
        self, uid_or_index: str | int = -1, *, streams: Collection[str] | None = None
    ) -> StoredRun:
        """Read a run back from the catalog.

        Parameters
        ----------
        uid_or_index : str or int
            A start uid, a unique prefix of one, or an index into the runs ordered by start
            time (``-1``, the default, is the latest; ``0`` the first). A string of digits
            (as typed on a command line) is an index when such an index exists, otherwise
            a uid prefix: ``"-1"`` is the latest run, ``"34852053"`` a uid prefix.
        streams : collection of str, optional
            Read only these streams (those the run has); by default every stream. Each
            stream read costs several requests to the catalog: a report that needs one
            stream of each of many runs reads it in less than half the time.

        Returns
        -------
        StoredRun
            For a run without a stop document (being written, or ended by a crash) whose
            JSONL backup is here, the backup's reading: every point the run has so far.

        Raises
        ------
        RunNotFoundError
            If nothing (or more than one run, for a prefix) matches.
        """
        node = self._find(uid_or_index)
        if not node.metadata.get("stop"):
            # No stop document: the run is being written, or a crash ended it. Its backup is
            # written first, so it holds every point the catalog has, and maybe one more page.
            backup = self.backup_dir / f"{node.metadata['start']['uid']}.jsonl"
            if backup.is_file():
                return load_backup(backup)
        return self._load_node(node, streams)

    def _load_node(self, node: Any, streams: Collection[str] | None = None) -> StoredRun:
        """A run as the catalog holds it (only ``streams``, if given)."""
        wanted = None if streams is None else set(streams)
        md = node.metadata
        start = _plain(md.get("start"))
        stop = _plain(md.get("stop")) if md.get("stop") else None
        base = getattr(node, "base", node)
        frames: dict[str, pd.DataFrame] = {}
        descriptors: dict[str, list[dict[str, Any]]] = {}
        external: dict[str, list[str]] = {}
        for stream_name in list(base):
            if wanted is not None and stream_name not in wanted:
                continue
            stream_node = base[stream_name]
            smd = _plain(stream_node.metadata)
            data_keys = smd.get("data_keys", {})
            desc = {"name": stream_name, **smd}
            descriptors[stream_name] = [desc]
            ext = [k for k, v in data_keys.items() if "external" in v]
            if ext:
                external[stream_name] = ext
            frames[stream_name] = self._read_stream(stream_node, data_keys, ext)
        return StoredRun(
            uid=start["uid"],
            metadata={"start": start, "stop": stop},
            streams=frames,
            descriptors=descriptors,
            external_keys=external,
        )

    @staticmethod
    def _read_stream(
        stream_node: Any, data_keys: Mapping[str, Mapping[str, Any]], external: list[str]
    ) -> pd.DataFrame:
        sbase = getattr(stream_node, "base", stream_node)
        children = list(sbase)
        tables = sorted(k for k in children if k == "internal" or k.startswith("internal_"))
        renamed = _rename_reserved(k for k in data_keys if k not in external)
        df = pd.DataFrame({"seq_num": pd.Series(dtype="int64"), "time": pd.Series(dtype="f8")})
        if tables:
            parts = [sbase[t].read() for t in tables]
            df = parts[0]
            for part in parts[1:]:
                # Wide streams are split into several tables that share seq_num/time.
                df = df.merge(part, on=[c for c in ("seq_num", "time") if c in part], how="left")
        # Internal arrays too big for a table cell are stored as array nodes, one per key.
        for col in renamed.values():
            if col in df.columns or col not in children:
                continue
            array = np.asarray(sbase[col].read())
            if len(array) == len(df):
                df[col] = list(array)
        columns = [c for c in renamed.values() if c in df.columns]
        return _tidy(df, columns, data_keys)

    def load_backup(self, path_or_uid: str | Path) -> StoredRun:
        """Rebuild a run from its JSONL backup alone (see :func:`load_backup`).

        Parameters
        ----------
        path_or_uid : str or pathlib.Path
            A backup file, or the start uid of a run backed up in :attr:`backup_dir`.
        """
        return load_backup(self._backup_path(path_or_uid))

    def _backup_path(self, path_or_uid: str | Path) -> Path:
        path = Path(path_or_uid)
        if not path.is_file() and (self.backup_dir / f"{path_or_uid}.jsonl").is_file():
            path = self.backup_dir / f"{path_or_uid}.jsonl"
        return path

    def restore_backup(self, path_or_uid: str | Path, *, replace: bool = False) -> str:
        """Put a backed-up run into the catalog by replaying its documents.

        A partial copy of the run already in the catalog (one without a stop document, as a
        failed write leaves it) is deleted first. A backup without a stop document (the
        process ended mid-run) is first closed with :func:`close_backup`: exit status
        ``abort`` and :data:`RECOVERED_REASON`.

        Parameters
        ----------
        path_or_uid : str or pathlib.Path
            A backup file, or the start uid of a run backed up in :attr:`backup_dir`.
        replace : bool
            Also replace a *complete* copy of the run already in the catalog.

        Returns
        -------
        str
            The uid of the restored run.

        Raises
        ------
        FileExistsError
            If the catalog already holds the complete run and ``replace`` is False.
        StorageWriteError
            If a process is still writing the run.
        """
        path = self._backup_path(path_or_uid)
        if not path.is_file():
            raise FileNotFoundError(f"no JSONL backup at {path}")
        documents = list(iter_backup(path))
        if not documents or documents[0][0] != "start":
            raise ValueError(f"{path} does not begin with a start document")
        uid = documents[0][1]["uid"]
        root = self.client
        if uid in root and root[uid].metadata.get("stop") and not replace:
            raise FileExistsError(
                f"run {uid} is already complete in {self._where()}; pass replace=True "
                "to overwrite it from the backup"
            )
        if close_backup(path) is not None:
            documents = list(iter_backup(path))
        if uid in root:
            root[uid].delete(recursive=True, external_only=False)
        # Batched: the whole run is replayed in this call, and its stop document writes it.
        writer = _make_tiled_writer(root, flush_each_document=False)
        for name, doc in documents:
            writer(name, doc)
        return uid

    def repair(self) -> list[dict[str, Any]]:
        """Rebuild the catalog's runs from the JSONL backups in :attr:`backup_dir`.

        A run missing from the catalog, or held there without its stop document or with
        fewer points than its backup, is restored from the backup (see
        :meth:`restore_backup`); a backup without a stop document is closed first (exit
        status ``abort``, :data:`RECOVERED_REASON`). A run still being written by a process
        is left alone. Points are counted in the streams the catalog keeps in tables (data
        held in external files, such as projections, is referenced, not counted).

        Returns
        -------
        list of dict
            One per backup, oldest first: ``uid``, ``action`` (``"restored"``: it was not in
            the catalog; ``"completed"``: it was partial there; ``"ok"``; ``"in use"``;
            ``"unreadable"``), ``points`` (in the backup), ``catalog_points`` (before the
            repair; None when it was missing), ``exit_status`` and ``path``.
        """
        if not self.backup_dir.is_dir():
            return []
        report = []
        for path in sorted(self.backup_dir.glob("*.jsonl"), key=lambda p: p.stat().st_mtime):
            report.append(self._repair_one(path))
        return report

    def _repair_one(self, path: Path) -> dict[str, Any]:
        docs = list(iter_backup(path))
        entry: dict[str, Any] = {"uid": path.stem, "path": str(path), "points": None}
        entry.update(action="unreadable", catalog_points=None, exit_status=None)
        if not docs or docs[0][0] != "start":
            return entry  # killed while its start document was written: nothing measured
        uid = entry["uid"] = docs[0][1]["uid"]
        tables = _table_streams(docs)
        counts = _stream_counts(docs)
        entry["points"] = sum(counts.get(k, 0) for k in tables)
        stop = next((doc for name, doc in docs if name == "stop"), None)
        entry["exit_status"] = stop.get("exit_status") if stop else None
        if stop is None and backup_in_use(path):
            entry["action"] = "in use"
            return entry
        root = self.client
        if uid in root:
            node = root[uid]
            held = self._load_node(node)
            entry["catalog_points"] = sum(len(held.streams.get(k, ())) for k in tables)
            complete = bool(node.metadata.get("stop"))
            if complete and entry["catalog_points"] >= entry["points"]:
                entry["action"] = "ok"
                return entry
            entry["action"] = "completed"
        else:
            entry["action"] = "restored"
        self.restore_backup(path, replace=True)
        closed = self._find(uid).metadata.get("stop") or {}
        entry["exit_status"] = closed.get("exit_status")
        return entry

    # -- lifetime --------------------------------------------------------------------------

    def close(self) -> None:
        """Close the backup files and the catalog connection."""
        for cb in self._callbacks:
            cb.close()
        if self._context is not None:
            self._context.close()
            self._context = None
        self._client = None

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _plain(obj: Any) -> Any:
    """Tiled metadata (DictView/ListView, possibly nested) as plain dicts and lists."""
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj
