"""Benchmark: pristine porosity of the four presets against the simulator's truth.

For each preset and size: ``insitu tomo-scan --sim MATERIAL --size SIZE`` (pristine),
``insitu recon``, then :func:`~insitu.analysis.microstructure.experiment.analyze_experiment`
(no pore sizes) three times over the same volume, and one table row with

- ``truth``: the simulator's porosity (PORE / (PORE + ELECTROLYTE) voxels of its labels);
- ``paper``: the paper's method (one ImageJ Default threshold for the study);
- ``pv_peak``: the partial-volume estimator with both levels from the study's histogram;
- ``pv_phys``: the estimator with the solid level from the dense electrolyte's composition
  and density at the beam energy (μ · voxel, what a user knows of the material) and the
  void at 0 (argon, μ ≈ 0);
- the errors of each against the truth (the target is ±0.01).

Sizes: ``small`` (3 µm voxels, 64×128×128) and ``medium`` (the same pellet at 1.5 µm,
128×256×256), seconds each on 2 cores; ``region`` (the beamline's 0.7 µm voxels and 3 mm
pellet, every row, a 96×96-column window, 1500 projections), about 1.5 min each. The region
is local tomography: it is reconstructed with ``--sample-diameter-um`` (the pellet's, from
the truth) and ``--center`` (the truth's axis: the automatic centre fails on this window),
and optionally ``--paganin`` (as the paper did).

Usage: ``.venv/bin/python benchmarks/bench_porosity_truth.py [--sizes small medium region]
[--materials A-LPS ...] [--workdir DIR] [--paganin DELTA_BETA]``
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import zarr

from insitu.analysis.microstructure.experiment import Step, TomoSettings, analyze_experiment
from insitu.analysis.microstructure.partial_volume import solid_level_from_composition
from insitu.protocols.cli import main

MATERIALS = ("A-LPS", "LPS:0.5LiI", "LiI-AT", "LiI-AN")
#: The simulator's dense electrolytes (``simulators/pellet/phases.py``): what a user knows of
#: the material, not something read from the simulation.
COMPOSITION = {
    "A-LPS": ("Li3PS4", 1.87),
    "LPS:0.5LiI": ("Li3.5PS4I0.5", 2.2),
    "LiI-AT": ("Li3.5PS4I0.5", 2.2),
    "LiI-AN": ("Li3.5PS4I0.5", 2.2),
}
ENERGY_KEV = 25.0
TARGET = 0.01


def simulate(material: str, size: str, folder: Path, paganin: float | None) -> tuple[Path, dict]:
    """Scan and reconstruct the pristine pellet; the volume and the truth."""
    stem = f"{size}-{material.replace(':', '_')}"
    scan, volume = folder / f"{stem}.h5", folder / f"{stem}.zarr"
    argv = ["tomo-scan", "--sim", material, "--size", size, "--out", str(scan), "--quiet"]
    assert main([*argv, "--overwrite"]) == 0
    truth = json.loads(scan.with_suffix(".truth.json").read_text())
    recon = ["recon", str(scan), "--out", str(volume), "--quiet", "--overwrite"]
    if size == "region":
        diameter_um = 2 * truth["pellet_radius_px"] * truth["voxel_m"] * 1e6
        recon += ["--sample-diameter-um", f"{diameter_um:g}"]
        recon += ["--center", f"{truth['rotation_axis_column']:g}"]
    if paganin is not None:
        recon += ["--paganin", f"{paganin:g}"]
    assert main(recon) == 0
    return volume, truth


def measure(volume: Path, material: str, voxel_um: float) -> dict[str, float]:
    """Paper method and the estimator under both calibrations."""
    vol = zarr.open_array(str(volume), mode="r")
    step = [Step(name="pristine", volume=vol)]
    formula, density = COMPOSITION[material]
    solid = solid_level_from_composition(formula, density, energy_keV=ENERGY_KEV, voxel_um=voxel_um)
    peak = analyze_experiment(step, TomoSettings(voxel_um=voxel_um, psd=False))
    phys = analyze_experiment(
        step, TomoSettings(voxel_um=voxel_um, psd=False, solid_level=solid, void_level=0.0)
    )
    row = peak.table.iloc[0]
    return {
        "paper": float(row["porosity"]),
        "pv_peak": float("nan") if row["porosity_pv"] is None else float(row["porosity_pv"]),
        "pv_phys": float(phys.table.iloc[0]["porosity_pv"]),
    }


def main_bench() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", nargs="+", default=["small", "medium"])
    ap.add_argument("--materials", nargs="+", default=list(MATERIALS))
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--paganin", type=float, metavar="DELTA_BETA", help="Paganin (off)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-porosity-") as tmp:
        folder = args.workdir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        header = (
            f"{'preset':11s} {'size':6s} {'voxel':>6s} {'truth':>6s} {'paper':>6s} "
            f"{'pv_peak':>7s} {'pv_phys':>7s} {'err_paper':>9s} {'err_peak':>8s} "
            f"{'err_phys':>8s} {'s':>5s}"
        )
        print(header)
        for size in args.sizes:
            for material in args.materials:
                t0 = time.perf_counter()
                volume, truth = simulate(material, size, folder, args.paganin)
                voxel_um = truth["voxel_m"] * 1e6
                m = measure(volume, material, voxel_um)
                phi = truth["porosity"]
                err = {k: v - phi for k, v in m.items()}
                ok = "ok" if abs(err["pv_phys"]) <= TARGET else "MISS"
                print(
                    f"{material:11s} {size:6s} {voxel_um:6.2f} {phi:6.3f} {m['paper']:6.3f} "
                    f"{m['pv_peak']:7.3f} {m['pv_phys']:7.3f} {err['paper']:+9.3f} "
                    f"{err['pv_peak']:+8.3f} {err['pv_phys']:+8.3f} "
                    f"{time.perf_counter() - t0:5.1f} {ok}",
                    flush=True,
                )


if __name__ == "__main__":
    main_bench()
