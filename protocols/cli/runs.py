"""``insitu runs``, ``insitu export`` and ``insitu report``: the stored runs read back.

What they run is :mod:`insitu.protocols.workflows.runs`.
"""

from __future__ import annotations

import argparse
import json

from .common import add_output_options, add_storage_options, emit, open_store, print_json

__all__ = ["cmd_export", "cmd_report", "cmd_runs", "register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``runs``, ``export`` and ``report`` to the ``insitu`` parser."""
    runs = subparsers.add_parser("runs", help="list the stored runs")
    runs.add_argument("--limit", type=int, default=None, help="only the last N runs")
    runs.add_argument(
        "--experiment", metavar="ID", help="only the runs of this in-situ experiment, in order"
    )
    runs.add_argument(
        "--repair",
        action="store_true",
        help="first rebuild runs from the JSONL backups: runs missing from the catalog or "
        "partial there are restored, a run a crash left open is closed as 'abort'",
    )
    add_output_options(runs)
    add_storage_options(runs)
    runs.set_defaults(func=cmd_runs)

    export = subparsers.add_parser(
        "export", help="write a stored run's data as CSV, Parquet or .mpt"
    )
    export.add_argument("run", metavar="RUN", help="uid, uid prefix or index (-1: latest)")
    export.add_argument("--format", choices=("csv", "parquet", "mpt"), default="csv")
    export.add_argument("--stream", help="which stream (default electrochem, else eis)")
    export.add_argument("--out", metavar="PATH", help="output file (default UID-STREAM.FORMAT)")
    add_output_options(export)
    add_storage_options(export)
    export.set_defaults(func=cmd_export)

    report = subparsers.add_parser("report", help="write the HTML report of a stored run")
    report.add_argument("run", metavar="RUN", help="uid, uid prefix or index (-1: latest)")
    report.add_argument("--out", metavar="FILE.html", help="default UID-report.html")
    add_output_options(report)
    add_storage_options(report)
    report.set_defaults(func=cmd_report)


def cmd_runs(args: argparse.Namespace) -> int:
    """List the stored runs (after repairing them from the backups, with ``--repair``)."""
    from ..workflows.runs import list_runs, repair_runs

    with open_store(args) as store:
        repair = repair_runs(store) if args.repair else None
        table = list_runs(store, limit=args.limit, experiment=args.experiment)
    if args.json:
        runs = json.loads(table.to_json(orient="records", date_format="iso"))
        print_json({"repair": repair, "runs": runs} if repair is not None else runs)
        return 0
    if repair is not None:
        print(_repair_summary(repair))
    if table.empty:
        print(f"no runs of experiment {args.experiment}" if args.experiment else "no runs yet")
    else:
        print(table.to_string(index=True))
    return 0


def _repair_summary(repair: dict) -> str:
    lines = [
        f"repair: {repair['restored']} restored, {repair['completed']} completed, "
        f"{repair['ok']} already complete, {repair['in_use']} still being written, "
        f"{repair['unreadable']} without a start document"
    ]
    for run in repair["runs"]:
        if run["action"] in ("restored", "completed"):
            had = "none" if run["catalog_points"] is None else run["catalog_points"]
            lines.append(
                f"  {run['action']} {run['uid'][:8]}: {run['points']} points (catalog had "
                f"{had}), exit status {run['exit_status']}"
            )
    return "\n".join(lines)


def cmd_export(args: argparse.Namespace) -> int:
    """Write one stream of a stored run as CSV, Parquet or an EC-Lab-style .mpt text file."""
    from ..workflows.runs import export_run

    with open_store(args) as store:
        result = export_run(store, args.run, fmt=args.format, stream=args.stream, out=args.out)
    human = [f"wrote {result['rows']} rows of {result['stream']} to {result['path']}"]
    return emit(args, result, human)


def cmd_report(args: argparse.Namespace) -> int:
    """Write the HTML report of a stored run."""
    from ..workflows.runs import write_run_report

    with open_store(args) as store:
        result = write_run_report(store, args.run, out=args.out)
    return emit(args, result, [f"report: {result['path']}"])
