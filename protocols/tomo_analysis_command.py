"""``insitu analyze tomo``: microstructure analysis of one volume or of a whole experiment.

``PATH`` is a reconstructed volume (a Zarr store written by ``insitu recon``, or any 3-D Zarr
array) or an experiment manifest (JSON)::

    {"voxel_um": 3.0, "area_cm2": 0.785,
     "steps": [{"name": "pristine", "volume": "v0.zarr", "charge_mC": 0},
               {"name": "plate 1", "volume": "v1.zarr", "charge_mC": 5.0,
                "current_density_mA_cm2": 0.04, "half_cycle": "plate"}]}

(volume paths relative to the manifest). Results go to ``--out`` (default ``PATH`` without its
suffix + ``-analysis``): ``steps.csv`` (one row per step), ``result.json`` (the table, the study
threshold, the settings), ``sections.csv`` (porosity-factor statistics per section),
``interfaces.csv`` and the figures as PNG.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from insitu.analysis.tomo_experiment import Step, TomoSettings, analyze_experiment
from insitu.analysis.tomo_figures import plot_thickness_change, plot_volumes_vs_step, render_cracks
from insitu.analysis.tomo_maps import plot_porosity_factor_maps

__all__ = ["add_analyze_tomo_parser", "cmd_analyze_tomo"]


def add_analyze_tomo_parser(an_sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``analyze tomo`` to the ``insitu analyze`` subcommands."""
    tomo = an_sub.add_parser(
        "tomo",
        help="porosity, pores, cracks, porosity factor, interfaces of volumes or an experiment",
        description=(
            "Microstructure analysis with one study threshold for every scan: porosity and "
            "pore sizes, cracks and their growth, transparent volume, electrode thickness, "
            "porosity-factor maps and interfacial intensity."
        ),
    )
    tomo.add_argument("path", metavar="VOLUME_OR_EXPERIMENT", help="VOLUME.zarr or manifest.json")
    tomo.add_argument("--out", metavar="DIR", help="results folder (default PATH-analysis)")
    tomo.add_argument("--voxel-um", type=float, help="voxel size (default: from the volume)")
    tomo.add_argument(
        "--method", choices=("default", "otsu"), default="default", help="ImageJ threshold"
    )
    tomo.add_argument(
        "--min-crack-um3", type=float, default=1000.0, help="smallest crack, µm³ (1000)"
    )
    tomo.add_argument("--area-cm2", type=float, help="electrode area, for charge per electrode")
    tomo.add_argument("--no-psd", action="store_true", help="skip the pore size distribution")
    tomo.add_argument("--no-figures", action="store_true", help="write tables only")
    tomo.add_argument("--json", action="store_true", help="print one JSON object with results")
    tomo.set_defaults(func=cmd_analyze_tomo)
    return tomo


def _open_volume(path: Path) -> Any:
    import zarr

    if not path.exists():
        raise FileNotFoundError(f"no volume at {path}")
    try:
        return zarr.open_array(str(path), mode="r")
    except Exception as exc:  # zarr raises several types for a non-array path
        raise ValueError(
            f"{path} is not a Zarr array: give a volume written by `insitu recon` or an "
            "experiment manifest (.json)"
        ) from exc


def _load(path: Path) -> tuple[list[Step], dict[str, Any]]:
    if path.suffix.lower() == ".json":
        try:
            manifest = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from None
        entries = manifest.get("steps")
        if not entries:
            raise ValueError(f"{path} has no 'steps' (a list of {{'name', 'volume', ...}})")
        steps = []
        for i, entry in enumerate(entries):
            if "volume" not in entry:
                raise ValueError(f"{path}: step {i} has no 'volume'")
            steps.append(
                Step(
                    name=str(entry.get("name", f"step {i}")),
                    volume=_open_volume(path.parent / entry["volume"]),
                    charge_mC=entry.get("charge_mC"),
                    current_density_mA_cm2=entry.get("current_density_mA_cm2"),
                    half_cycle=entry.get("half_cycle"),
                )
            )
        return steps, manifest
    volume = _open_volume(path)
    return [Step(name=path.stem, volume=volume)], {}


def cmd_analyze_tomo(args: argparse.Namespace) -> int:
    """Analyse, write the results folder and print the per-step table (or JSON)."""
    path = Path(args.path)
    steps, manifest = _load(path)
    voxel = args.voxel_um or manifest.get("voxel_um")
    if voxel is None:
        voxel = steps[0].volume.attrs.get("voxel_size_um")
    if voxel is None:
        raise ValueError(
            f"the voxel size of {path} is unknown: pass --voxel-um (µm) or put 'voxel_um' in "
            "the manifest"
        )
    settings = TomoSettings(
        voxel_um=float(voxel),
        method=args.method,
        min_crack_volume_um3=args.min_crack_um3,
        area_cm2=args.area_cm2 or manifest.get("area_cm2"),
        psd=not args.no_psd,
    )
    result = analyze_experiment(steps, settings)
    out = Path(args.out) if args.out else path.with_name(path.stem + "-analysis")
    out.mkdir(parents=True, exist_ok=True)
    result.table.to_csv(out / "steps.csv", index=False)
    result.section_stats.to_csv(out / "sections.csv", index=False)
    result.interface_intensity.to_csv(out / "interfaces.csv", index=False)
    summary = {**result.to_dict(), "out": str(out)}
    (out / "result.json").write_text(json.dumps(summary, indent=2, default=str))
    figures: list[str] = []
    if not args.no_figures:
        last = steps[-1].name
        drawn = {
            "volumes_vs_step.png": plot_volumes_vs_step(result.table),
            "thickness_change.png": plot_thickness_change(result.table),
            "cracks_last_step.png": render_cracks(
                result.crack_labels[last], voxel_um=settings.voxel_um, title=f"cracks, {last}"
            ),
        }
        factors = result.porosity_factors[last]
        if factors:
            size = min(factors)
            drawn[f"porosity_factor_{size:g}um.png"] = plot_porosity_factor_maps(factors[size])
        for name, fig in drawn.items():
            fig.savefig(out / name, dpi=120)
            figures.append(str(out / name))
    summary["figures"] = figures
    if args.json:
        print(json.dumps(summary, default=str))
    else:
        columns = ["step", "porosity", "crack_count", "crack_volume_um3", "transparent_volume_um3"]
        print(result.table[columns].to_string(index=False))
        print(f"threshold {result.threshold.value:.6g} ({settings.method}); results in {out}")
    return 0
