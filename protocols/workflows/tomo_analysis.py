"""Microstructure of one volume or of a whole experiment: what ``insitu analyze tomo`` runs.

``PATH`` is a reconstructed volume in any format :func:`insitu.analysis.volumes.open_volume`
reads (a Zarr store written by ``insitu recon``, a TIFF stack or folder of slices, an HDF5
volume, a ``.npy`` array) or an experiment manifest (JSON)::

    {"voxel_um": 3.0, "area_cm2": 0.785,
     "steps": [{"name": "pristine", "volume": "v0.zarr", "charge_mC": 0},
               {"name": "plate 1", "volume": "v1.tif", "charge_mC": 5.0,
                "current_density_mA_cm2": 0.04, "half_cycle": "plate"},
               {"name": "plate 2", "volume": "recon.h5", "dataset": "/exchange/data",
                "voxel_um": 3.0}]}

(volume paths relative to the manifest; a step's ``"dataset"`` names its HDF5 dataset, its
``"voxel_um"`` its voxel size). The voxel size is, first to last: ``--voxel-um``, the step's,
the manifest's, the volume file's metadata; every step must end up with the same one.

Optional top-level keys describe the experiment as a
whole, for comparisons across materials (``insitu analyze materials``): ``"material"`` (e.g.
``"A-LPS"``; without it the material is read from the ground truth that ``insitu tomo-scan``
writes next to a simulated scan), ``"failed": true`` when the cell failed at the last step (its
``charge_mC`` is then the in-situ charge-to-failure) and ``"charge_to_failure_mC"`` to give that
number explicitly (it wins over ``failed``).

:func:`analyze_tomo` writes the results to ``out`` (default ``PATH`` without its suffix +
``-analysis``): ``steps.csv``
(one row per step), ``result.json`` (the table, the study threshold, the settings, and under
``"experiment"`` the source, material and in-situ charge-to-failure), ``sections.csv``
(porosity-factor statistics per section), ``porosity_factor.npz`` (every step's cube
porosities and porosity factors with the cube edges), ``interfaces.csv`` and the figures as
PNG. ``charge_mC`` is cumulative: the charge passed since the first scan.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from insitu.analysis.microstructure.experiment import (
    ExperimentResult,
    Step,
    TomoSettings,
    analyze_experiment,
)
from insitu.analysis.microstructure.maps import plot_porosity_factor_maps
from insitu.analysis.report.tomo_figures import (
    plot_thickness_change,
    plot_volumes_vs_step,
    render_cracks,
)
from insitu.analysis.volumes import Volume, open_volume

from ..errors import InputNotFoundError, InvalidInputError
from .solid_level import calibrate_solid_level

__all__ = ["analyze_path", "analyze_tomo", "experiment_info", "load_steps", "write_analysis"]


def _open_volume(
    path: Path, *, dataset: str | None = None, voxel_um: float | None = None
) -> Volume:
    """One volume, any format; ``voxel_um`` wins over the file's (with a warning)."""
    return open_volume(path, dataset=dataset, voxel_um=voxel_um)


def _number(value: Any, what: str) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{what} must be a number (µm), got {value!r}") from None


def _read_manifest(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputNotFoundError(f"no experiment manifest at {path}")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise InvalidInputError(f"{path} is not a JSON object with 'steps'")
    return manifest


def load_steps(
    path: Path, *, dataset: str | None = None, voxel_um: float | None = None
) -> tuple[list[Step], dict[str, Any]]:
    """The steps (volumes opened read-only) of a manifest or of one volume, and the manifest.

    Parameters
    ----------
    path : Path
        A manifest (``.json``) or a volume in any format :func:`open_volume` reads.
    dataset : str, optional
        HDF5 dataset of the volume (of every step without its own ``"dataset"``).
    voxel_um : float, optional
        Voxel size (µm) that wins over the steps', the manifest's and the files'.

    Returns
    -------
    steps : list of Step
        Pristine first; each ``volume`` is a :class:`~insitu.analysis.volumes.Volume`.
    manifest : dict
        The manifest's contents (empty for a single volume).
    """
    if path.suffix.lower() == ".json":
        manifest = _read_manifest(path)
        entries = manifest.get("steps")
        if not entries or not isinstance(entries, list):
            raise InvalidInputError(f"{path} has no 'steps' (a list of {{'name', 'volume', ...}})")
        default_voxel = _number(manifest.get("voxel_um"), f"{path}: 'voxel_um'")
        steps = []
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or "volume" not in entry:
                raise InvalidInputError(f"{path}: step {i} has no 'volume'")
            voxel = voxel_um or _number(entry.get("voxel_um"), f"{path}: step {i} 'voxel_um'")
            steps.append(
                Step(
                    name=str(entry.get("name", f"step {i}")),
                    volume=_open_volume(
                        path.parent / entry["volume"],
                        dataset=entry.get("dataset", dataset),
                        voxel_um=voxel or default_voxel,
                    ),
                    charge_mC=entry.get("charge_mC"),
                    current_density_mA_cm2=entry.get("current_density_mA_cm2"),
                    half_cycle=entry.get("half_cycle"),
                )
            )
        return steps, manifest
    volume = _open_volume(path, dataset=dataset, voxel_um=voxel_um)
    return [Step(name=path.stem, volume=volume)], {}


def _voxel_um(path: Path, steps: list[Step]) -> float:
    """The one voxel size of every step (the analysis measures all with one)."""
    sizes = {s.name: s.volume.voxel_um for s in steps}
    unknown = [name for name, v in sizes.items() if v is None]
    if unknown:
        raise InvalidInputError(
            f"the voxel size of {path if len(steps) == 1 else unknown[0]} is unknown: pass "
            "--voxel-um (µm) or put 'voxel_um' in the manifest"
        )
    first = steps[0].volume.voxel_um
    for name, v in sizes.items():
        if abs(v - first) > 1e-6 * first:
            raise InvalidInputError(
                f"{path}: the steps have different voxel sizes ({steps[0].name}: {first:g} µm, "
                f"{name}: {v:g} µm); one experiment is measured with one: resample, or give "
                "the right one with --voxel-um"
            )
    return float(first)


def _material_of_scan(volume: Any) -> str | None:
    """The material recorded with the scan a volume was reconstructed from, if any.

    ``insitu recon`` keeps the scan's path in the volume's ``source`` attribute and
    ``insitu tomo-scan`` writes the simulated pellet's ground truth (with its material) next
    to the scan; a beamline scan has no such file and gives None.
    """
    source = getattr(volume, "attrs", {}).get("source")
    if not source:
        return None
    # Imported here: the scan workflow pulls in Bluesky and the simulators.
    from .tomo import truth_paths

    truth = truth_paths(source)[0]
    try:
        material = json.loads(truth.read_text()).get("material")
    except (OSError, ValueError, AttributeError):
        return None
    return str(material) if material else None


def experiment_info(path: Path, manifest: dict[str, Any], steps: list[Step]) -> dict[str, Any]:
    """What the experiment is, as a whole: source, material and in-situ charge-to-failure.

    Parameters
    ----------
    path : Path
        The manifest (or single volume) analysed.
    manifest : dict
        Its contents (empty for a single volume).
    steps : list of Step
        Its steps, pristine first.

    Returns
    -------
    dict
        ``source`` (absolute path), ``material`` and ``material_from`` (``"manifest"``,
        ``"scan"`` or None when unknown), ``failed`` and ``charge_to_failure_mC`` (None when
        the cell is not known to have failed).
    """
    material, material_from = manifest.get("material"), "manifest"
    if not material:
        material, material_from = _material_of_scan(steps[0].volume), "scan"
    failed = manifest.get("failed", False)
    if not isinstance(failed, bool):
        raise InvalidInputError(f"{path}: 'failed' must be true or false, got {failed!r}")
    charge = manifest.get("charge_to_failure_mC")
    if charge is not None:
        try:
            charge = float(charge)
        except (TypeError, ValueError):
            raise InvalidInputError(
                f"{path}: 'charge_to_failure_mC' must be a number (mC), got {charge!r}"
            ) from None
    elif failed:
        charge = steps[-1].charge_mC
        if charge is None:
            raise InvalidInputError(
                f"{path} marks the cell failed but its last step has no 'charge_mC': add it "
                "(or give 'charge_to_failure_mC')"
            )
        charge = float(charge)
    return {
        "source": str(path.resolve()),
        "material": str(material) if material else None,
        "material_from": material_from if material else None,
        "failed": failed or charge is not None,
        "charge_to_failure_mC": charge,
    }


def _paper_crack_settings(min_um3: float | None, planarity: float | None) -> dict[str, float]:
    """The per-scan crack convention's settings that were given (the rest keep defaults)."""
    given = {"paper_crack_min_um3": min_um3, "paper_crack_planarity_min": planarity}
    return {k: float(v) for k, v in given.items() if v is not None}


def analyze_path(
    path: Path,
    *,
    dataset: str | None = None,
    voxel_um: float | None = None,
    method: str = "default",
    min_crack_um3: float = 1000.0,
    area_cm2: float | None = None,
    psd: bool = True,
    solid_level: float | None = None,
    electrolyte: str | None = None,
    energy_keV: float | None = None,
    paper_crack_min_um3: float | None = None,
    paper_crack_planarity: float | None = None,
    psd_fraction: float | None = None,
    psd_seed: int = 0,
) -> tuple[list[Step], dict[str, Any], ExperimentResult]:
    """Load a volume or an experiment manifest and analyse it with one study threshold.

    The experiment's description (:func:`experiment_info`) is checked before the analysis,
    so a manifest with a bad key fails in a second, not after minutes of measuring.

    Parameters
    ----------
    path : Path
        A volume (any format :func:`open_volume` reads) or a manifest (JSON).
    dataset, voxel_um, method, min_crack_um3, area_cm2, psd
        As the ``insitu analyze tomo`` options (None: from the manifest or the volume).
    solid_level, electrolyte, energy_keV
        The dense electrolyte's grey level for ``porosity_pv``, or how to compute it
        (:func:`~insitu.protocols.workflows.solid_level.calibrate_solid_level`; by default from the
        experiment's material and the scan's energy).
    paper_crack_min_um3, paper_crack_planarity
        The paper's per-scan crack convention: smallest crack (µm³) and planarity floor
        (``TomoSettings.paper_crack_min_um3``/``paper_crack_planarity_min``; None: their
        defaults).
    psd_fraction, psd_seed
        Pore sizes on a seeded random fraction of the electrolyte's 64-row blocks, for speed
        (``TomoSettings.psd_fraction``/``psd_seed``); None: every row.

    Returns
    -------
    steps : list of Step
    experiment : dict
        :func:`experiment_info` of the manifest or volume.
    result : ExperimentResult
    """
    steps, manifest = load_steps(path, dataset=dataset, voxel_um=voxel_um)
    experiment = experiment_info(path, manifest, steps)
    voxel = _voxel_um(path, steps)
    solid = calibrate_solid_level(
        [step.volume for step in steps],
        voxel_um=voxel,
        material=experiment.get("material"),
        value=solid_level,
        electrolyte=electrolyte,
        energy_keV=energy_keV,
    )
    experiment["solid_level"] = solid.to_dict()
    settings = TomoSettings(
        solid_level=solid.value,
        voxel_um=voxel,
        method=method,  # type: ignore[arg-type]
        min_crack_volume_um3=min_crack_um3,
        area_cm2=area_cm2 or manifest.get("area_cm2"),
        psd=psd,
        psd_fraction=psd_fraction,
        psd_seed=psd_seed,
        **_paper_crack_settings(paper_crack_min_um3, paper_crack_planarity),
    )
    return steps, experiment, analyze_experiment(steps, settings)


def _write_porosity_factors(path: Path, result: ExperimentResult) -> None:
    """Every step's porosity-factor grids, so maps can be redrawn or compared later.

    Keys ``<step>/<block>um/<field>``: ``phi`` and ``d`` (NaN where a cube is not counted),
    ``coverage``, ``edges_z``/``edges_y``/``edges_x`` (voxel edges of the cubes; z counted
    from ``z0``, the first electrolyte row analysed, also stored) and ``phi0``.
    """
    arrays: dict[str, np.ndarray] = {}
    for step, z0 in zip(result.table["step"], result.table["electrolyte_z0"], strict=True):
        for size, pf in result.porosity_factors.get(step, {}).items():
            key = f"{step}/{size:g}um"
            arrays[f"{key}/phi"] = pf.phi
            arrays[f"{key}/d"] = pf.d
            arrays[f"{key}/coverage"] = pf.coverage
            for axis, edges in zip("zyx", pf.edges, strict=True):
                arrays[f"{key}/edges_{axis}"] = np.asarray(edges)
            arrays[f"{key}/phi0"] = np.asarray(pf.phi0)
            arrays[f"{key}/z0"] = np.asarray(int(z0))
    np.savez_compressed(path, **arrays)


def write_analysis(
    out: Path,
    steps: list[Step],
    experiment: dict[str, Any],
    result: ExperimentResult,
    *,
    figures: bool = True,
) -> dict[str, Any]:
    """Write an analysis's results folder: tables, ``result.json``, porosity factors, figures.

    Returns
    -------
    dict
        What ``result.json`` holds, plus ``figures`` (paths written).
    """
    settings = result.settings
    out.mkdir(parents=True, exist_ok=True)
    result.table.to_csv(out / "steps.csv", index=False)
    result.section_stats.to_csv(out / "sections.csv", index=False)
    result.interface_intensity.to_csv(out / "interfaces.csv", index=False)
    summary = {
        **result.to_dict(),
        "experiment": experiment,
        "out": str(out),
    }
    (out / "result.json").write_text(json.dumps(summary, indent=2, default=str))
    _write_porosity_factors(out / "porosity_factor.npz", result)
    written: list[str] = []
    if figures:
        last = steps[-1].name
        drawn = {
            "volumes_vs_step.png": plot_volumes_vs_step(result.table, summary["conventions"]),
            "thickness_change.png": plot_thickness_change(result.table),
            "cracks_last_step.png": render_cracks(
                result.crack_labels[last],
                voxel_um=settings.voxel_um,
                title=f"cracks grown since the first scan, {last}",
            ),
        }
        factors = result.porosity_factors[last]
        if factors:
            size = min(factors)
            drawn[f"porosity_factor_{size:g}um.png"] = plot_porosity_factor_maps(factors[size])
        for name, fig in drawn.items():
            fig.savefig(out / name, dpi=120)
            written.append(str(out / name))
    summary["figures"] = written
    return summary


def analyze_tomo(
    path: str | Path,
    *,
    out: str | Path | None = None,
    dataset: str | None = None,
    voxel_um: float | None = None,
    method: str = "default",
    min_crack_um3: float = 1000.0,
    area_cm2: float | None = None,
    psd: bool = True,
    figures: bool = True,
    solid_level: float | None = None,
    electrolyte: str | None = None,
    energy_keV: float | None = None,
    paper_crack_min_um3: float | None = None,
    paper_crack_planarity: float | None = None,
    psd_fraction: float | None = None,
    psd_seed: int = 0,
) -> tuple[dict[str, Any], ExperimentResult]:
    """Analyse a volume or an experiment manifest and write its results folder.

    Parameters
    ----------
    path : str or Path
        A volume (any format :func:`open_volume` reads) or a manifest (JSON).
    out : str or Path, optional
        The results folder (default ``PATH`` without its suffix + ``-analysis``).
    dataset, voxel_um, method, min_crack_um3, area_cm2, psd, solid_level, electrolyte, energy_keV
        As :func:`analyze_path`.
    paper_crack_min_um3, paper_crack_planarity, psd_fraction, psd_seed
        As :func:`analyze_path`.
    figures : bool
        Also draw the figures (PNG).

    Returns
    -------
    summary : dict
        What ``result.json`` holds, plus ``figures``.
    result : ExperimentResult
    """
    path = Path(path)
    steps, experiment, result = analyze_path(
        path,
        dataset=dataset,
        voxel_um=voxel_um,
        method=method,
        min_crack_um3=min_crack_um3,
        area_cm2=area_cm2,
        psd=psd,
        solid_level=solid_level,
        electrolyte=electrolyte,
        energy_keV=energy_keV,
        paper_crack_min_um3=paper_crack_min_um3,
        paper_crack_planarity=paper_crack_planarity,
        psd_fraction=psd_fraction,
        psd_seed=psd_seed,
    )
    folder = Path(out) if out else path.with_name(path.stem + "-analysis")
    return write_analysis(folder, steps, experiment, result, figures=figures), result
