"""Porosity vs charge-to-failure across materials (the paper's Fig. 3b): what ``insitu analyze
materials`` runs.

One row per material: the porosity of its pristine scan (from ``insitu analyze tomo``), its
in-situ charge-to-failure (mC, when the experiment's manifest says the cell failed) and its
lab charge-to-failure (C/cm² per electrode, from stored ``insitu ccd`` runs), each with where
it came from; then Spearman's rank correlation of porosity against charge-to-failure and the
figure. The numbers are gathered here (files, the catalog); the table and the correlation are
:mod:`insitu.analysis.materials_compare`.

A tomography source is a results folder of ``insitu analyze tomo`` (its ``result.json``), that
``result.json`` itself, or an experiment manifest, which is then analysed here with the
default settings (no pore sizes) exactly as ``insitu analyze tomo MANIFEST`` would; a folder
keeps the settings it was analysed with. The material comes from ``--material SOURCE=NAME``,
else the manifest's ``"material"``, else the ground truth of a simulated scan; a CCD run's from
``--material RUN=NAME``, else its start document.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from insitu.analysis.electrochem.shorts import CHARGE_CONVENTIONS
from insitu.analysis.materials_compare import (
    FAILURE_COLUMNS,
    RankCorrelation,
    failure_correlations,
    materials_table,
)
from insitu.analysis.report.tomo_figures import plot_porosity_vs_failure

from ..errors import InputNotFoundError, InvalidInputError
from .tomo_analysis import analyze_path

if TYPE_CHECKING:
    from ..storage.catalog import RunStore

__all__ = [
    "CCD_CONVENTIONS",
    "FIGURE",
    "MaterialNames",
    "ccd_observations",
    "compare_materials",
    "tomo_observations",
]

#: Charge-to-failure conventions of a CCD run (:func:`insitu.protocols.workflows.lab.ccd_summary`).
CCD_CONVENTIONS = CHARGE_CONVENTIONS

#: The figure of the first (preferred) charge-to-failure.
FIGURE = "porosity_vs_failure.png"

#: Opens the run store, for ``--ccd`` runs.
StoreOpener = Callable[[], AbstractContextManager["RunStore"]]


@dataclass
class MaterialNames:
    """``--material KEY=NAME`` pairs, looked up by a source or run as typed or as a path."""

    pairs: dict[str, str]

    @classmethod
    def parse(cls, items: Sequence[str]) -> MaterialNames:
        """From ``SOURCE=NAME`` strings as typed."""
        pairs: dict[str, str] = {}
        for item in items:
            key, sep, name = item.rpartition("=")
            if not sep or not key.strip() or not name.strip():
                raise InvalidInputError(
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
                raise InvalidInputError(
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
        raise InvalidInputError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInputError(f"{path} is not a JSON object")
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
            raise InputNotFoundError(
                f"{path} has no result.json: give a folder written by `insitu analyze tomo` "
                "or an experiment manifest (.json)"
            )
        path = path / "result.json"
    elif not path.exists():
        raise InputNotFoundError(f"no such file or folder: {source}")
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
        raise InvalidInputError(
            f"{source} is neither an `insitu analyze tomo` results folder (result.json) nor an "
            "experiment manifest (.json with 'steps' naming volumes)"
        )
    name = material or experiment.get("material")
    if not name:
        raise InvalidInputError(
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
    store: RunStore, runs: Sequence[str], names: MaterialNames, convention: str
) -> list[dict[str, Any]]:
    """Lab charge-to-failure (C/cm² per electrode) and CCD of stored CCD runs.

    The numbers come from :func:`insitu.protocols.workflows.lab.ccd_summary`, the same analysis
    of the stored run that ``insitu ccd`` and ``insitu analyze ccd`` print.
    """
    # Imported here: the lab workflow pulls in Bluesky and the benches.
    from .lab import ccd_summary

    rows: list[dict[str, Any]] = []
    for key in runs:
        run = store.load(key)
        if "electrochem" not in run.streams:
            raise InvalidInputError(
                f"run {run.uid[:8]} ({key}) has no 'electrochem' stream: --ccd takes runs "
                "of `insitu ccd`"
            )
        summary = ccd_summary(run)
        if summary["ccd_mA_cm2"] is None:
            raise InvalidInputError(
                f"run {run.uid[:8]} ({key}) did not short, so it has no charge-to-failure: "
                "leave it out"
            )
        name = names.of(key) or run.start.get("material")
        if not name:
            raise InvalidInputError(
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


def compare_materials(
    sources: Sequence[str],
    *,
    ccd_runs: Sequence[str] = (),
    materials: Sequence[str] = (),
    convention: str = "per_electrode_plated",
    conflict: str = "error",
    out: str | Path = "materials-analysis",
    open_store: StoreOpener | None = None,
) -> tuple[dict[str, Any], pd.DataFrame, dict[str, RankCorrelation]]:
    """Build the materials table, correlate, and write ``materials.csv``, ``materials.json``
    and the figure(s) to ``out``.

    Parameters
    ----------
    sources : sequence of str
        Tomography sources (:func:`tomo_observations`).
    ccd_runs : sequence of str
        Stored CCD runs (uid, uid prefix or index) for the lab charge-to-failure.
    materials : sequence of str
        ``SOURCE=NAME`` or ``RUN=NAME`` for sources that do not record their material.
    convention : {"per_electrode_plated", "total_abs"}
        The lab charge-to-failure convention.
    conflict : {"error", "first", "mean"}
        What two sources with different numbers for one material give
        (:func:`insitu.analysis.materials_compare.materials_table`).
    out : str or Path
        The results folder.
    open_store : callable, optional
        Opens the run store; needed with ``ccd_runs``.

    Returns
    -------
    summary : dict
        What ``materials.json`` holds: ``materials``, ``correlations``, ``convention``,
        ``out``, ``table``, ``figures``.
    table : DataFrame
        One row per material.
    correlations : dict of RankCorrelation
        By charge-to-failure column.
    """
    names = MaterialNames.parse(materials)
    names.check_used([*sources, *ccd_runs])
    observations: list[dict[str, Any]] = []
    for source in sources:
        observations += tomo_observations(source, names.of(source))
    if ccd_runs:
        if open_store is None:
            raise TypeError("compare_materials needs open_store= to read the --ccd runs")
        with open_store() as store:
            observations += ccd_observations(store, ccd_runs, names, convention)
    table = materials_table(observations, conflict=conflict)
    # Checked before anything is written: a comparison that cannot be made leaves no files.
    correlations = failure_correlations(table, FAILURE_COLUMNS)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    table.to_csv(folder / "materials.csv", index=False)
    figures: list[str] = []
    for i, column in enumerate(correlations):
        # The first (preferred) charge-to-failure is the figure; another gets its own file.
        name = FIGURE if i == 0 else f"porosity_vs_{column}.png"
        plot_porosity_vs_failure(table, column=column).savefig(folder / name, dpi=120)
        figures.append(str(folder / name))
    summary: dict[str, Any] = {
        "materials": _records(table),
        "correlations": {k: c.to_dict() for k, c in correlations.items()},
        "convention": convention if ccd_runs else None,
        "out": str(folder),
        "table": str(folder / "materials.csv"),
        "figures": figures,
    }
    (folder / "materials.json").write_text(json.dumps(summary, indent=2))
    return summary, table, correlations
