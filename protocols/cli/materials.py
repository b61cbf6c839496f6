"""``insitu analyze materials``: the paper's cross-material figure, porosity vs charge-to-failure.

One row per material: the porosity of its pristine scan (from ``insitu analyze tomo``), its
in-situ charge-to-failure (mC, when the experiment's manifest says the cell failed) and its
lab charge-to-failure (C/cm² per electrode, from stored ``insitu ccd`` runs), each with where
it came from; then Spearman's rank correlation of porosity against charge-to-failure and the
figure. The numbers are gathered here (files, the catalog); the table and the correlation are
:mod:`insitu.analysis.materials_compare`.

``SOURCE`` is a results folder of ``insitu analyze tomo`` (its ``result.json``), that
``result.json`` itself, or an experiment manifest, which is then analysed here with the
default settings (no pore sizes) exactly as ``insitu analyze tomo MANIFEST`` would; a folder
keeps the settings it was analysed with. The material comes from ``--material SOURCE=NAME``,
else the manifest's ``"material"``, else the ground truth of a simulated scan; a CCD run's from
``--material RUN=NAME``, else its start document.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from insitu.analysis.materials_compare import (
    FAILURE_COLUMNS,
    failure_correlations,
    materials_table,
)
from insitu.analysis.report.tomo_figures import plot_porosity_vs_failure

from .analyze_tomo import analyze_path

__all__ = [
    "CCD_CONVENTIONS",
    "add_analyze_materials_parser",
    "ccd_observations",
    "cmd_analyze_materials",
    "tomo_observations",
]

#: Charge-to-failure conventions of a CCD run (:func:`insitu.protocols.workflows.lab.ccd_summary`).
CCD_CONVENTIONS = ("per_electrode_plated", "total_abs")

FIGURE = "porosity_vs_failure.png"


def add_analyze_materials_parser(an_sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``analyze materials`` to the ``insitu analyze`` subcommands.

    The storage options (``--data``, ``--catalog``, ``--api-key``) are added by the caller,
    with the same helper as every other command that reads the catalog.
    """
    parser = an_sub.add_parser(
        "materials",
        help="porosity vs charge-to-failure across materials (the paper's Fig. 3b)",
        description=(
            "One row per material: pristine porosity from tomography results, in-situ "
            "charge-to-failure (mC) from the experiment manifest, lab charge-to-failure "
            "(C/cm² per electrode) from stored CCD runs; writes materials.csv, materials.json "
            "and porosity_vs_failure.png and reports Spearman's ρ of porosity against "
            "charge-to-failure. Put --ccd after the sources."
        ),
    )
    parser.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="an `insitu analyze tomo` results folder (or its result.json) or a manifest",
    )
    parser.add_argument(
        "--ccd",
        nargs="+",
        action="extend",
        default=[],
        metavar="RUN",
        help="stored CCD runs (uid, uid prefix or index) for the lab charge-to-failure",
    )
    parser.add_argument(
        "--material",
        action="append",
        default=[],
        metavar="SOURCE=NAME",
        help="the material of a SOURCE or RUN (as typed) that does not record it; repeatable",
    )
    parser.add_argument(
        "--convention",
        choices=CCD_CONVENTIONS,
        default="per_electrode_plated",
        help="lab charge-to-failure convention (per_electrode_plated)",
    )
    parser.add_argument(
        "--conflict",
        choices=("error", "first", "mean"),
        default="error",
        help="two sources with different numbers for one material: stop (error), keep the "
        "first given, or average them (default error)",
    )
    parser.add_argument("--out", metavar="DIR", default="materials-analysis", help="results")
    parser.add_argument("--json", action="store_true", help="print one JSON object with results")
    parser.set_defaults(func=cmd_analyze_materials)
    return parser


@dataclass
class _Names:
    """``--material KEY=NAME`` pairs, looked up by a source or run as typed or as a path."""

    pairs: dict[str, str]

    @classmethod
    def parse(cls, items: list[str]) -> _Names:
        pairs: dict[str, str] = {}
        for item in items:
            key, sep, name = item.rpartition("=")
            if not sep or not key.strip() or not name.strip():
                raise ValueError(
                    f"--material takes SOURCE=NAME (e.g. results/A-LPS=A-LPS), got {item!r}"
                )
            pairs[key.strip()] = name.strip()
        return cls(pairs)

    def of(self, key: str) -> str | None:
        """The name given for ``key`` (matched as typed, or as the same path), or None."""
        for given, name in self.pairs.items():
            if _same(given, key):
                return name
        return None

    def check_used(self, keys: list[str]) -> None:
        """A ``--material`` that names nothing is a typo the user wants to hear about."""
        for given, name in self.pairs.items():
            if not any(_same(given, key) for key in keys):
                raise ValueError(
                    f"--material {given}={name} names no SOURCE or --ccd RUN; write the key "
                    "as the source or run was given"
                )


def _same(a: str, b: str) -> bool:
    return a == b or Path(a).resolve() == Path(b).resolve()


def _canonical(name: str) -> str:
    """A preset's own spelling for a known material (``a-lps`` → ``A-LPS``), else as given."""
    from insitu.simulators.materials import UnknownMaterialError, get_material

    try:
        return get_material(name).name
    except UnknownMaterialError:
        return name.strip()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a JSON object")
    return data


def _is_result(data: dict[str, Any]) -> bool:
    steps = data.get("steps")
    return bool(steps) and "threshold" in data and "porosity" in steps[0]


def _is_manifest(data: dict[str, Any]) -> bool:
    steps = data.get("steps")
    return bool(steps) and isinstance(steps[0], dict) and "volume" in steps[0]


def tomo_observations(source: str, material: str | None = None) -> list[dict[str, Any]]:
    """Porosity (and in-situ charge-to-failure) of one tomography source, as observations.

    Parameters
    ----------
    source : str
        A results folder of ``insitu analyze tomo``, its ``result.json``, or a manifest.
    material : str, optional
        The material, overriding what the source records.

    Returns
    -------
    list of dict
        Rows ``material``, ``quantity``, ``value``, ``source`` for
        :func:`insitu.analysis.materials_compare.materials_table`.
    """
    path = Path(source)
    if path.is_dir():
        if not (path / "result.json").is_file():
            raise FileNotFoundError(
                f"{path} has no result.json: give a folder written by `insitu analyze tomo` "
                "or an experiment manifest (.json)"
            )
        path = path / "result.json"
    elif not path.exists():
        raise FileNotFoundError(f"no such file or folder: {source}")
    data = _read_json(path) if path.suffix.lower() == ".json" else {}
    if _is_result(data):
        first = data["steps"][0]
        experiment = data.get("experiment") or {}
        porosity, step = first["porosity"], first.get("step")
        where = str(path)
    elif _is_manifest(data):
        steps, experiment, result = analyze_path(path, psd=False)
        porosity, step = float(result.table["porosity"].iloc[0]), steps[0].name
        where = f"{path} (analysed, default settings)"
    else:
        raise ValueError(
            f"{source} is neither an `insitu analyze tomo` results folder (result.json) nor an "
            "experiment manifest (.json with 'steps' naming volumes)"
        )
    name = material or experiment.get("material")
    if not name:
        raise ValueError(
            f'the material of {source} is unknown: add "material": "NAME" to its manifest '
            f"(and re-run `insitu analyze tomo`), or pass --material {source}=NAME"
        )
    name = _canonical(str(name))
    rows = [
        {
            "material": name,
            "quantity": "porosity",
            "value": porosity,
            "source": f"{where}, step {step!r}",
        }
    ]
    charge = experiment.get("charge_to_failure_mC")
    if charge is not None:
        rows.append(
            {
                "material": name,
                "quantity": "charge_to_failure_mC",
                "value": float(charge),
                "source": f"{where}, in-situ failure",
            }
        )
    return rows


def ccd_observations(
    store: Any, runs: list[str], names: _Names, convention: str
) -> list[dict[str, Any]]:
    """Lab charge-to-failure (C/cm² per electrode) and CCD of stored CCD runs.

    The numbers come from :func:`insitu.protocols.workflows.lab.ccd_summary`, the same analysis
    of the stored run that ``insitu ccd`` and ``insitu analyze ccd`` print.
    """
    # Imported here: the workflows pull in Bluesky and the benches.
    from ..workflows.lab import ccd_summary

    rows: list[dict[str, Any]] = []
    for key in runs:
        run = store.load(key)
        if "electrochem" not in run.streams:
            raise ValueError(
                f"run {run.uid[:8]} ({key}) has no 'electrochem' stream: --ccd takes runs "
                "of `insitu ccd`"
            )
        summary = ccd_summary(run)
        if summary["ccd_mA_cm2"] is None:
            raise ValueError(
                f"run {run.uid[:8]} ({key}) did not short, so it has no charge-to-failure: "
                "leave it out"
            )
        name = names.of(key) or run.start.get("material")
        if not name:
            raise ValueError(
                f"the material of run {run.uid[:8]} ({key}) is unknown (its start document "
                f"has no 'material'): pass --material {key}=NAME"
            )
        name = _canonical(str(name))
        where = f"run {run.uid[:8]}"
        rows.append(
            {
                "material": name,
                "quantity": "charge_to_failure_C_cm2",
                "value": summary["charge_to_failure_C_cm2"][convention],
                "source": f"{where} ({convention})",
            }
        )
        rows.append(
            {
                "material": name,
                "quantity": "ccd_mA_cm2",
                "value": summary["ccd_mA_cm2"],
                "source": where,
            }
        )
    return rows


def _records(table: pd.DataFrame) -> list[dict[str, Any]]:
    return table.astype(object).replace({np.nan: None}).to_dict(orient="records")


def cmd_analyze_materials(args: argparse.Namespace) -> int:
    """Build the materials table, correlate, write the results folder and print them."""
    names = _Names.parse(args.material)
    names.check_used([*args.sources, *args.ccd])
    observations: list[dict[str, Any]] = []
    for source in args.sources:
        observations += tomo_observations(source, names.of(source))
    if args.ccd:
        # Imported here: tiled takes a second to import, which sources-only calls skip.
        from ..storage.catalog import RunStore

        with RunStore(
            getattr(args, "data", None),
            uri=getattr(args, "catalog", None),
            api_key=getattr(args, "api_key", None),
        ) as store:
            observations += ccd_observations(store, args.ccd, names, args.convention)
    table = materials_table(observations, conflict=args.conflict)
    # Checked before anything is written: a comparison that cannot be made leaves no files.
    correlations = failure_correlations(table, FAILURE_COLUMNS)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "materials.csv", index=False)
    figures: list[str] = []
    for i, column in enumerate(correlations):
        # The first (preferred) charge-to-failure is the figure; another gets its own file.
        name = FIGURE if i == 0 else f"porosity_vs_{column}.png"
        plot_porosity_vs_failure(table, column=column).savefig(out / name, dpi=120)
        figures.append(str(out / name))
    summary: dict[str, Any] = {
        "materials": _records(table),
        "correlations": {k: c.to_dict() for k, c in correlations.items()},
        "convention": args.convention if args.ccd else None,
        "out": str(out),
        "table": str(out / "materials.csv"),
        "figures": figures,
    }
    (out / "materials.json").write_text(json.dumps(summary, indent=2))
    if args.json:
        print(json.dumps(summary))
        return 0
    shown = ["material", "porosity", *[c for c in FAILURE_COLUMNS if table[c].notna().any()]]
    print(table[shown].to_string(index=False))
    for corr in correlations.values():
        print(
            f"Spearman ρ({corr.x}, {corr.y}) = {corr.rho:+.3f} over {corr.n} materials: {corr.sign}"
        )
    print(f"sources and figure in {out}")
    return 0
