"""Stored runs read back: list them, export a stream, write a run's HTML report.

What ``insitu runs``, ``insitu export`` and ``insitu report`` run; each takes an open
:class:`~insitu.protocols.storage.catalog.RunStore`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from insitu.analysis.electrochem.readers import write_mpt

from ..errors import InvalidInputError
from .reports import report_for_run

if TYPE_CHECKING:
    from ..storage.catalog import RunStore, StoredRun

__all__ = [
    "export_run",
    "list_runs",
    "repair_runs",
    "stream_of",
    "with_temperature",
    "write_run_report",
]

ExportFormat = Literal["csv", "parquet", "mpt"]


def list_runs(
    store: RunStore, *, limit: int | None = None, experiment: str | None = None
) -> pd.DataFrame:
    """The stored runs, one row each; with ``experiment``, that experiment's runs in order.

    Row labels stay the catalog's indices, so ``insitu export INDEX`` works on any listing.
    """
    table = store.runs(limit=limit)
    if not experiment:
        return table
    if "experiment_uid" not in table:
        return table.iloc[0:0]
    table = table[table["experiment_uid"] == experiment]
    return table.sort_values(["segment_index", "time"], kind="stable") if len(table) else table


def stream_of(run: StoredRun, name: str) -> pd.DataFrame:
    """The stream ``name`` of a stored run; an unknown name is the user's to fix."""
    if name not in run.streams:
        raise InvalidInputError(
            f"run {run.uid[:8]} has no stream {name!r}; its streams are "
            f"{', '.join(sorted(run.streams)) or 'none'}"
        )
    return run.stream(name)


def with_temperature(eis: pd.DataFrame, temperature: pd.DataFrame) -> pd.DataFrame:
    """The ``eis`` points, each with the temperature it was measured at (``temperature_K``).

    A temperature series reads the settled oven into the ``temperature`` stream just before
    each spectrum, so a point's temperature is the latest reading before it (as
    :func:`~insitu.analysis.electrochem.runs.spectra_by_temperature` groups them). Points
    measured before any reading get NaN; a stream without exactly one ``*readback`` column
    (in K) leaves the points as they are.
    """
    readback = [c for c in temperature.columns if str(c).endswith("readback")]
    if len(readback) != 1 or "time" not in eis or not len(temperature):
        return eis
    marks = temperature[["time", readback[0]]].rename(columns={readback[0]: "temperature_K"})
    order = eis["time"].argsort(kind="stable")
    joined = pd.merge_asof(
        eis.iloc[order].reset_index(drop=True),
        marks.sort_values("time").reset_index(drop=True),
        on="time",
        direction="backward",
    )
    joined.index = eis.index[order]
    return joined.sort_index()


def repair_runs(store: RunStore) -> dict[str, Any]:
    """Rebuild the catalog's runs from the JSONL backups (what ``insitu runs --repair`` runs).

    Runs missing from the catalog, or held there partially (no stop document, or fewer points
    than the backup), are restored; a run a crash left open is closed with exit status
    ``abort`` and a reason saying it was recovered from the backup
    (:meth:`~insitu.protocols.storage.catalog.RunStore.repair`).

    Returns
    -------
    dict
        ``runs`` (one entry per backup, see ``RunStore.repair``), and the counts
        ``restored``, ``completed``, ``ok``, ``in_use``, ``unreadable``.
    """
    runs = store.repair()
    counts = {
        key.replace(" ", "_"): sum(r["action"] == key for r in runs)
        for key in ("restored", "completed", "ok", "in use", "unreadable")
    }
    return {"runs": runs, **counts}


def export_run(
    store: RunStore,
    run: str | int = -1,
    *,
    fmt: ExportFormat = "csv",
    stream: str | None = None,
    out: str | Path | None = None,
) -> dict[str, Any]:
    """Write one stream of a stored run as CSV, Parquet or an EC-Lab-style ``.mpt`` file.

    Parameters
    ----------
    store : RunStore
        Where the run is.
    run : str or int
        Uid, uid prefix or index (``-1``: the latest).
    fmt : {"csv", "parquet", "mpt"}
        Output format.
    stream : str, optional
        Which stream (default ``electrochem`` if the run has one, else ``eis``).
    out : str or Path, optional
        Output file (default ``UID8-STREAM.FORMAT`` in the working folder).

    Returns
    -------
    dict
        ``run_uid``, ``stream``, ``rows`` and ``path``.
    """
    stored = store.load(run)
    stream = stream or ("electrochem" if "electrochem" in stored.streams else "eis")
    data = stream_of(stored, stream)
    if stream == "eis" and "temperature" in stored.streams:
        data = with_temperature(data, stored.streams["temperature"])
    path = Path(out or f"{stored.uid[:8]}-{stream}.{fmt}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        data.to_csv(path, index=False)
    elif fmt == "parquet":
        data.to_parquet(path, index=False)
    else:
        write_mpt(data.drop(columns=["time"], errors="ignore"), path)
    return {"run_uid": stored.uid, "stream": stream, "rows": len(data), "path": str(path)}


def write_run_report(
    store: RunStore, run: str | int = -1, *, out: str | Path | None = None
) -> dict[str, Any]:
    """Write the HTML report of a stored run (default ``UID8-report.html``).

    Returns
    -------
    dict
        ``run_uid`` and ``path``.
    """
    stored = store.load(run)
    path = Path(out or f"{stored.uid[:8]}-report.html")
    report_for_run(stored, path)
    return {"run_uid": stored.uid, "path": str(path)}
