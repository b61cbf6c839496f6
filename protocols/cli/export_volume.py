"""``insitu export-volume``: write a volume (any format) as an ImageJ TIFF that Fiji opens.

What it runs: :mod:`insitu.protocols.workflows.volume_export`.
"""

from __future__ import annotations

import argparse

from .common import number_pair, print_json

__all__ = ["cmd_export_volume", "register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``export-volume`` to the ``insitu`` parser."""
    export = subparsers.add_parser(
        "export-volume",
        help="write a volume as an ImageJ TIFF stack (8-bit study scale or 32-bit float)",
        description=(
            "Write one volume (Zarr, TIFF stack or folder of slices, HDF5, .npy) as a single "
            "ImageJ hyperstack TIFF with its voxel size, slab by slab. 8-bit maps the grey "
            "values onto the study threshold's 256 bins (recorded in the file's Info), so a "
            "threshold set in Fiji equals the analysis's; 32-bit keeps the values."
        ),
    )
    export.add_argument("volume", metavar="VOLUME", help="the volume to export")
    export.add_argument("--format", choices=("tiff",), default="tiff", help="output format")
    export.add_argument("--bits", type=int, choices=(8, 32), default=32, help="8 or 32 (32)")
    export.add_argument("--out", metavar="FILE.tif", required=True, help="the TIFF to write")
    export.add_argument("--dataset", metavar="NAME", help="HDF5 dataset (default: found)")
    export.add_argument("--voxel-um", type=float, help="voxel size, µm (default: the file's)")
    scale = export.add_mutually_exclusive_group()
    scale.add_argument(
        "--study",
        metavar="RESULTS",
        help="8-bit: scale as this `insitu analyze tomo` results folder (or result.json) did",
    )
    scale.add_argument(
        "--grey-range",
        type=number_pair,
        metavar="LO,HI",
        help="8-bit: grey values of levels 0 and 256 (default: the volume's extremes)",
    )
    export.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    export.add_argument("--json", action="store_true", help="print one JSON object")
    export.add_argument("--quiet", action="store_true", help="no progress bar")
    export.set_defaults(func=cmd_export_volume)


def cmd_export_volume(args: argparse.Namespace) -> int:
    """Export the volume and print where it went (or JSON)."""
    from ..workflows.volume_export import export_volume

    summary = export_volume(
        args.volume,
        args.out,
        format=args.format,
        bits=args.bits,
        dataset=args.dataset,
        voxel_um=args.voxel_um,
        grey_range=args.grey_range,
        study=args.study,
        overwrite=args.overwrite,
        progress=not (args.quiet or args.json),
    )
    if args.json:
        print_json(summary)
        return 0
    z, y, x = summary["shape"]
    scale = ""
    if summary["grey_range"] is not None:
        lo, hi = summary["grey_range"]
        scale = f", grey {lo:.6g}…{hi:.6g} on 0–255"
    print(
        f"{summary['path']}: {z} × {y} × {x} voxels of {summary['voxel_um']:g} µm, "
        f"{summary['bits']}-bit{scale}"
    )
    return 0
