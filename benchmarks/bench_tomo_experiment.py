"""Benchmark: the microstructure analysis of a two-step experiment at beamline size.

Writes two uint8 Zarr volumes (default 1143 × 1000 × 2000 voxels, the issue's full-size volume:
2.3 G voxels each) of a synthetic cell — Li layers top and bottom, a porous electrolyte
(thresholded Gaussian noise, porosity ≈ 0.2) inside a disc wider than the field of view — the
second with planar cracks grown from the top interface; then runs
:func:`insitu.analysis.microstructure.experiment.analyze_experiment` on them in a *child process*
and
reports the wall time of each measurement (summed over both steps, and per step), the child's
CPU seconds and peak resident memory, and a reference measured in the same child: scipy's
exact distance transform of 32 electrolyte rows of the first step, scaled to the electrolyte's
rows, so that ``pore_sizes`` is printed as a ratio to it (machines are shared: the ratio moves
less than the seconds). Nothing is asserted.

Usage::

    .venv/bin/python benchmarks/bench_tomo_experiment.py [--shape 1143 1000 2000] [--no-psd]
        [--psd-fraction F] [--workdir DIR] [--keep] [--reuse]

``--psd-fraction`` measures the pore sizes on that random fraction of the 64-row blocks
(``TomoSettings.psd_fraction``); ``--reuse`` analyses the volumes already in ``--workdir``.

Smaller shapes give a quick run; times scale with the number of voxels.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

SOLID, PORE, LI = 200, 40, 60


def write_volume(path: Path, shape: tuple[int, int, int], cracks: bool, seed: int = 0) -> None:
    import zarr

    nz, ny, nx = shape
    li = max(4, nz // 8)  # Li layer thickness, rows
    vol = zarr.open_array(str(path), mode="w", shape=shape, chunks=(16, 512, 512), dtype="uint8")
    vol.attrs["voxel_um"] = 0.7
    yy, xx = np.mgrid[:ny, :nx]
    outside = (yy - (ny - 1) / 2) ** 2 + (xx - (nx - 1) / 2) ** 2 > (0.49 * max(ny, nx)) ** 2
    rng = np.random.default_rng(seed)
    slab = 32
    for z0 in range(0, nz, slab):
        z1 = min(z0 + slab, nz)
        noise = rng.standard_normal((z1 - z0 + 8, ny, nx), dtype=np.float32)
        field = ndimage.gaussian_filter(noise, 2.0)[4 : 4 + z1 - z0]
        block = np.where(field > 0.84 * field.std(), PORE, SOLID).astype(np.uint8)
        rows = np.arange(z0, z1)
        block[(rows < li) | (rows >= nz - li)] = LI
        if cracks:
            depth = nz // 3
            for k, x in enumerate(np.linspace(nx * 0.2, nx * 0.8, 4).astype(int)):
                sel = (rows >= li) & (rows < li + depth * (k + 1) // 4)
                block[sel, ny // 4 : 3 * ny // 4, x : x + 2] = PORE
        block[:, outside] = 0
        vol[z0:z1] = block


CHILD = """
import json, os, sys, time, zarr
import numpy as np
from scipy import ndimage
from insitu.analysis.microstructure.experiment import Step, TomoSettings, analyze_experiment
a, b, psd = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
fraction = None if sys.argv[4] == "none" else float(sys.argv[4])
steps = [Step("pristine", zarr.open_array(a, mode="r")),
         Step("cracked", zarr.open_array(b, mode="r"))]
settings = TomoSettings(voxel_um=0.7, psd=psd, align=False, psd_fraction=fraction)
t0, c0 = time.perf_counter(), os.times()
result = analyze_experiment(steps, settings)
wall, c1 = time.perf_counter() - t0, os.times()
# Reference, same process: scipy's exact EDT of 32 electrolyte rows of the first step.
row = result.table.iloc[0]
z0, z1 = int(row["electrolyte_z0"]), int(row["electrolyte_z1"])
mid = (z0 + z1) // 2
rows = min(32, z1 - z0)
grey = np.asarray(steps[0].volume[mid - rows // 2 : mid - rows // 2 + rows])
pores = grey < result.threshold.value
t = time.perf_counter()
ndimage.distance_transform_edt(pores)
ref = (time.perf_counter() - t) * (z1 - z0) / rows
summary = {"timings_s": result.timings, "table": result.table.to_dict("records"),
           "analysis_s": wall, "cpu_s": c1.user + c1.system - c0.user - c0.system,
           "scipy_edt_per_step_s": ref}
print(json.dumps(summary, default=str))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(1143, 1000, 2000))
    parser.add_argument("--no-psd", action="store_true", help="skip the local thickness")
    parser.add_argument("--psd-fraction", type=float, help="pore sizes on a random subset")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--reuse", action="store_true", help="volumes already in --workdir")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="insitu-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    shape = tuple(args.shape)
    out: dict[str, object] = {"shape": list(shape), "voxels": int(np.prod(shape))}
    try:
        t0 = time.perf_counter()
        if not args.reuse:
            write_volume(work / "a.zarr", shape, cracks=False)  # type: ignore[arg-type]
            write_volume(work / "b.zarr", shape, cracks=True)  # type: ignore[arg-type]
        out["write_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                CHILD,
                str(work / "a.zarr"),
                str(work / "b.zarr"),
                "0" if args.no_psd else "1",
                "none" if args.psd_fraction is None else str(args.psd_fraction),
            ],
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        )
        out["analysis_wall_s"] = time.perf_counter() - t0
        child = json.loads(done.stdout.strip().splitlines()[-1])
        out["timings_s"] = child["timings_s"]
        n_steps = len(child["table"])
        out["per_step_s"] = {k: v / n_steps for k, v in child["timings_s"].items()}
        out["analysis_per_step_s"] = child["analysis_s"] / n_steps
        out["analysis_cpu_s"] = child["cpu_s"]
        out["scipy_edt_per_step_s"] = child["scipy_edt_per_step_s"]
        out["pore_sizes_over_scipy_edt"] = (
            out["per_step_s"].get("pore_sizes", 0.0) / child["scipy_edt_per_step_s"]
        )
        out["psd_fraction"] = args.psd_fraction
        out["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
        out["steps"] = [
            {
                k: row[k]
                for k in (
                    "step",
                    "porosity",
                    "mean_pore_diameter_um",
                    "crack_count",
                    "crack_volume_um3",
                )
            }
            for row in child["table"]
        ]
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
