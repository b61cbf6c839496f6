"""Benchmark: the Dask path of ``insitu recon`` — speed-up per worker on a local cluster.

Writes one Data Exchange scan (bench_recon_full's phantom, default 96 rows of 1024 columns,
720 angles), then reconstructs it with
:func:`insitu.analysis.tomo.pipeline.reconstruct_scan`, the same options every time:

- in this process (``scheduler=None``: slabs one after the other, the next read and the last
  written on threads) — the reference;
- on a Dask ``LocalCluster`` of N worker processes (``scheduler="local:N"``), N = 1, 2, … up
  to ``--max-workers``; each worker reconstructs one slab at a time on ``cores // N``
  threads.

Reported (nothing asserted: machines are shared and noisy), all measured in this run: the
wall time of each (the cluster's start included: it is part of what a user waits for), the
speed-up against one worker and against the in-process run, the speed-up per worker
(``speed-up / N``: 1 is perfect scaling), the time to start and stop an empty cluster of
that size (measured separately), and whether every volume equals the in-process one
(to float32 rounding: threads sum in another order). On a machine with C cores, workers
beyond C share cores and cannot scale; the table says how many cores there were.

Usage::

    .venv/bin/python benchmarks/bench_recon_dask.py [--rows 96] [--cols 1024] [--angles 720]
        [--max-workers 4] [--slab-rows 16] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def _full_bench():
    """bench_recon_full's scan writer (benchmarks are scripts, not a package)."""
    path = Path(__file__).with_name("bench_recon_full.py")
    spec = importlib.util.spec_from_file_location("bench_recon_full", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=96)
    parser.add_argument("--cols", type=int, default=1024)
    parser.add_argument("--angles", type=int, default=720)
    parser.add_argument("--max-workers", type=int, default=4)
    parser.add_argument("--slab-rows", type=int, default=16)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    import warnings

    import zarr

    from insitu.analysis.tomo import pipeline
    from insitu.analysis.tomo.pipeline import ReconOptions, reconstruct_scan

    # The phantom's file has no checksums and constant darks: said once, not per run.
    warnings.simplefilter("ignore", UserWarning)

    work = Path(tempfile.mkdtemp(dir=args.workdir))
    try:
        scan = work / "scan.h5"
        center = (args.cols - 1) / 2 + 12.0
        _full_bench().write_scan(scan, args.angles, args.rows, args.cols, center)
        opts = ReconOptions(center=center, rings="fw", slab_rows=args.slab_rows)

        def run(scheduler: str | None) -> tuple[float, np.ndarray]:
            out = work / f"{scheduler or 'here'}.zarr".replace(":", "-")
            t0 = time.perf_counter()
            reconstruct_scan(scan, out, opts, scheduler=scheduler, progress=False)
            seconds = time.perf_counter() - t0
            volume = zarr.open_array(str(out), mode="r")[:]
            shutil.rmtree(out)
            return seconds, volume

        here_s, reference = run(None)
        scale = float(np.abs(reference).max())
        rows = [{"run": "in process", "workers": 0, "wall_s": round(here_s, 2)}]
        one_s = None
        for n in range(1, args.max_workers + 1):
            t0 = time.perf_counter()
            with pipeline._dask_client(f"local:{n}", opts):
                pass
            start_s = time.perf_counter() - t0
            seconds, volume = run(f"local:{n}")
            one_s = seconds if n == 1 else one_s
            speedup = one_s / seconds
            rows.append(
                {
                    "run": f"local:{n}",
                    "workers": n,
                    "wall_s": round(seconds, 2),
                    "cluster_start_stop_s": round(start_s, 2),
                    "speedup_vs_1_worker": round(speedup, 2),
                    "speedup_per_worker": round(speedup / n, 2),
                    "vs_in_process": round(here_s / seconds, 2),
                    "max_diff_rel": float(np.abs(volume - reference).max() / scale),
                }
            )
        print(
            f"{os.cpu_count()} cores; scan {args.angles} × {args.rows} × {args.cols}, "
            f"slabs of {args.slab_rows} rows"
        )
        print(json.dumps(rows, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
