"""``insitu recon``: reconstruct a Data Exchange scan into a Zarr volume.

The pipeline and its defaults live in :mod:`insitu.analysis.tomo.pipeline` (the whole
workflow: read the scan, reconstruct slab by slab, write the volume); this module only turns
command-line options into :class:`~insitu.analysis.tomo.pipeline.ReconOptions` and prints the
summary.
"""

from __future__ import annotations

import argparse

from insitu.analysis.tomo.recon.algorithm import FILTERS
from insitu.analysis.tomo.recon.backends import BACKENDS

from .common import number_pair, print_json

__all__ = ["OUTPUT_DTYPES", "cmd_recon", "prefer_small_pages", "register"]

#: ``pipeline.OUTPUT_DTYPES``, spelt out: importing the pipeline for its choices would add
#: 0.5 s to every command's start-up (a test keeps the two equal).
OUTPUT_DTYPES = ("float32", "float16", "uint16", "uint8")


def prefer_small_pages() -> bool:
    """Stop numpy from asking the kernel for huge pages, unless ``NUMPY_MADVISE_HUGEPAGE``
    says otherwise; returns whether it was stopped.

    Why: with transparent huge pages in ``madvise`` mode (the kernel's usual default),
    numpy's request makes the kernel compact memory, synchronously, at the first touch of
    each new array of 4 MB or more. A reconstruction allocates such arrays for every slab
    (the frames read, the line integrals), and on a machine whose memory is full of page
    cache that cost more than it saved: ``insitu recon`` of 32 rows of a 2048 × 1500 scan
    took 5.9–6.3 s (2.7–3.1 s in the kernel) with huge pages and 5.1–5.3 s (1.3–1.4 s)
    without, on 2 cores, in interleaved runs. The arrays are streamed through, so the
    translation misses that huge pages save matter little here.
    """
    import os

    if "NUMPY_MADVISE_HUGEPAGE" in os.environ:
        return False  # the user chose
    try:
        from numpy._core.multiarray import _set_madvise_hugepage
    except ImportError:  # a numpy without the switch: nothing to stop
        return False
    _set_madvise_hugepage(False)
    return True


def _center(text: str) -> float | None:
    if text == "auto":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--center takes 'auto' or a column number, got {text!r}"
        ) from None


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``recon`` to the ``insitu`` parser."""
    recon = subparsers.add_parser(
        "recon",
        help="reconstruct a Data Exchange scan (HDF5) into a Zarr volume",
        description=(
            "Flat/dark normalisation, optional zinger removal and Paganin retrieval, -log, "
            "ring removal and Fourier-gridding FBP, slab by slab within a memory budget."
        ),
    )
    recon.add_argument("scan", metavar="SCAN.h5", help="APS Data Exchange file")
    recon.add_argument("--out", metavar="VOLUME.zarr", required=True, help="Zarr store to write")
    recon.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    recon.add_argument(
        "--center",
        type=_center,
        default=None,
        metavar="auto|X",
        help=(
            "rotation axis column, or 'auto' (default: first vs mirrored last projection, "
            "refined by Vo's method)"
        ),
    )
    recon.add_argument(
        "--center-search",
        type=number_pair,
        metavar="MIN,MAX",
        help="search Vo's method alone over this range, columns from the detector centre",
    )
    recon.add_argument(
        "--rings",
        choices=("fw", "sort", "none"),
        default="fw",
        help="stripe removal: Fourier-wavelet (default), sorting-based, or none",
    )
    recon.add_argument("--ring-level", type=int, help="Fourier-wavelet levels (default: auto)")
    recon.add_argument("--ring-sigma", type=float, default=1.0, help="Fourier-wavelet sigma (1)")
    recon.add_argument(
        "--paganin",
        type=float,
        metavar="DELTA_BETA",
        help="Paganin phase retrieval with this δ/β (off by default)",
    )
    recon.add_argument("--energy-keV", type=float, help="beam energy (default: from the file)")
    recon.add_argument("--pixel-size-um", type=float, help="pixel size (default: from the file)")
    recon.add_argument("--distance-mm", type=float, help="sample–detector (default: from file)")
    recon.add_argument(
        "--zinger", type=float, metavar="DIF", help="remove zingers brighter than DIF (off)"
    )
    recon.add_argument(
        "--backend",
        choices=tuple(BACKENDS),
        default="insitu",
        help="reconstruction backend: insitu (default), tomopy (needs TomoPy from conda), "
        "cupy (NVIDIA GPU, pip install insitu[gpu]; not yet measured on a GPU) or auto "
        "(cupy where CuPy sees a GPU, else insitu)",
    )
    recon.add_argument(
        "--sample-diameter-um",
        type=float,
        metavar="UM",
        help="diameter of a cylindrical sample wider than the field of view (e.g. 3000 for "
        "the paper's pellet seen through a 1.4 mm window): pads the rows along its chord so "
        "the grey scale stays absolute; default: the sample fits in the field of view",
    )
    recon.add_argument("--filter", choices=FILTERS, default="shepp", help="FBP window (shepp)")
    recon.add_argument(
        "--dtype",
        choices=OUTPUT_DTYPES,
        default="float32",
        help="how the volume stores values: float32 (default, what the analysis needs), "
        "float16 (half the size, 0.05 %% steps), or uint16/uint8 levels over --value-range, "
        "recorded in the volume and read back as attenuation by insitu analyze",
    )
    recon.add_argument(
        "--value-range",
        type=number_pair,
        metavar="LO,HI",
        help="attenuation (1/pixel) of the first and last uint8/uint16 level; values outside "
        "are clipped and counted (default: the middle slab's extremes, widened by half their "
        "span each side); write --value-range=LO,HI when LO is negative",
    )
    recon.add_argument("--rows", type=number_pair, metavar="START,STOP", help="only these rows")
    recon.add_argument(
        "--memory-gib", type=float, default=8.0, help="memory budget, all workers (8 GiB)"
    )
    recon.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run slabs on Dask: 'local' for a local cluster (a worker per core, at most 2), "
        "'local:N' for N workers, or a scheduler address",
    )
    recon.add_argument("--json", action="store_true", help="print one JSON object with results")
    recon.add_argument("--quiet", action="store_true", help="no progress bar")
    recon.set_defaults(func=cmd_recon)


def cmd_recon(args: argparse.Namespace) -> int:
    """Run the reconstruction and print where the volume went."""
    from insitu.analysis.tomo.pipeline import ReconOptions, reconstruct_scan

    prefer_small_pages()
    rows = None if args.rows is None else (int(args.rows[0]), int(args.rows[1]))
    options = ReconOptions(
        center=args.center,
        center_search=args.center_search,
        rings=args.rings,
        ring_level=args.ring_level,
        ring_sigma=args.ring_sigma,
        paganin=args.paganin is not None,
        delta_beta=args.paganin if args.paganin is not None else ReconOptions.delta_beta,
        energy_keV=args.energy_keV,
        pixel_size_um=args.pixel_size_um,
        distance_mm=args.distance_mm,
        zinger_dif=args.zinger,
        filter_name=args.filter,
        rows=rows,
        memory_budget_gib=args.memory_gib,
        backend=args.backend,
        sample_diameter_um=args.sample_diameter_um,
        dtype=args.dtype,
        value_range=None if args.value_range is None else tuple(map(float, args.value_range)),
    )
    summary = reconstruct_scan(
        args.scan,
        args.out,
        options,
        scheduler=args.scheduler,
        overwrite=args.overwrite,
        progress=not (args.quiet or args.json),
    )
    if args.json:
        print_json(summary)
        return 0
    z, y, x = summary["shape"]
    print(
        f"{summary['volume']}: {z} × {y} × {x} voxels, centre {summary['center']:.2f}, "
        f"{summary['slabs']} slab(s) of {summary['rows_per_slab']} rows, "
        f"{summary['wall_s']:.1f} s, peak memory {summary['peak_rss_bytes'] / 2**30:.2f} GiB"
    )
    steps = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in summary["timings_s"].items())
    if summary["value_range"] is not None:
        lo, hi = summary["value_range"]
        print(
            f"stored as {summary['dtype']} levels over {lo:.6g} … {hi:.6g} (1/pixel), "
            f"{summary['clipped_voxels']} voxel(s) clipped"
        )
    elif summary["dtype"] != "float32":
        print(f"stored as {summary['dtype']}")
    print(f"time: {steps}")
    return 0
