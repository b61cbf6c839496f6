"""``insitu analyze eis|ccd|tomo|materials``: analyse measured files, volumes or stored runs.

What they run: :mod:`insitu.protocols.workflows.electrochem_analysis` (``eis``, ``ccd``),
:mod:`~insitu.protocols.workflows.tomo_analysis` (``tomo``, where the experiment manifest is
described) and :mod:`~insitu.protocols.workflows.materials` (``materials``).
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from typing import TYPE_CHECKING

from .common import add_output_options, add_storage_options, emit, open_store, print_json

if TYPE_CHECKING:
    from ..workflows.electrochem_analysis import SpectrumAnalysis

#: shorts.CHARGE_CONVENTIONS, spelt out: importing shorts (and pandas) for the parser cost
#: every insitu command 0.6 s. tests/protocols/cli/test_materials.py keeps them equal.
CHARGE_CONVENTIONS = ("per_electrode_plated", "total_abs")

__all__ = [
    "cmd_analyze_ccd",
    "cmd_analyze_eis",
    "cmd_analyze_materials",
    "cmd_analyze_tomo",
    "register",
]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``analyze`` and its subcommands to the ``insitu`` parser."""
    analyze = subparsers.add_parser("analyze", help="analyse measured files or stored runs")
    what = analyze.add_subparsers(dest="what", required=True, metavar="WHAT")
    _add_eis(what)
    _add_ccd(what)
    _add_tomo(what)
    _add_materials(what)


def _add_eis(what: argparse._SubParsersAction) -> None:
    eis = what.add_parser(
        "eis",
        help="electrolyte resistance (and σ) of a spectrum",
        description="SOURCE is a file (.mpt, .mpr, .csv) or a stored run (uid, uid prefix or "
        "index; its 'eis' stream). A source with several spectra (a conductivity run or its "
        "export: one per temperature) gives one result per spectrum, or the one --spectrum "
        "names.",
    )
    eis.add_argument("source", metavar="SOURCE")
    eis.add_argument(
        "--spectrum",
        type=int,
        metavar="N",
        help="analyse only spectrum N (0-based, in the order measured) of a source with several",
    )
    eis.add_argument("--cell", choices=("blocking", "li"), default="blocking")
    eis.add_argument("--method", choices=("fit", "spike_intercept", "hf_intercept"), default="fit")
    eis.add_argument("--thickness-cm", type=float, help="for σ = L/(R·A)")
    eis.add_argument("--area-cm2", type=float, help="for σ = L/(R·A)")
    add_output_options(eis)
    add_storage_options(eis)
    eis.set_defaults(func=cmd_analyze_eis)


def _add_ccd(what: argparse._SubParsersAction) -> None:
    ccd = what.add_parser(
        "ccd",
        help="CCD and charge-to-failure of a cycling trace",
        description="SOURCE is a file (.mpt, .mpr, .csv) or a stored run ('electrochem').",
    )
    ccd.add_argument("source", metavar="SOURCE")
    ccd.add_argument("--area-cm2", type=float, help="electrode area (runs record it)")
    add_output_options(ccd)
    add_storage_options(ccd)
    ccd.set_defaults(func=cmd_analyze_ccd)


def _add_tomo(what: argparse._SubParsersAction) -> None:
    tomo = what.add_parser(
        "tomo",
        help="porosity, pores, cracks, porosity factor, interfaces of volumes or an experiment",
        description=(
            "Microstructure analysis with one study threshold for every scan: porosity and "
            "pore sizes, cracks and their growth, transparent volume, electrode thickness, "
            "porosity-factor maps and interfacial intensity."
        ),
    )
    tomo.add_argument(
        "path",
        metavar="VOLUME_OR_EXPERIMENT",
        help="a volume (Zarr, TIFF stack or folder of TIFF slices, HDF5, .npy) or manifest.json",
    )
    tomo.add_argument("--out", metavar="DIR", help="results folder (default PATH-analysis)")
    tomo.add_argument(
        "--dataset", metavar="NAME", help="HDF5 dataset of the volume (default: found)"
    )
    tomo.add_argument(
        "--voxel-um", type=float, help="voxel size, µm (default: from the manifest or the file)"
    )
    tomo.add_argument(
        "--method", choices=("default", "otsu"), default="default", help="ImageJ threshold"
    )
    tomo.add_argument(
        "--min-crack-um3",
        type=float,
        default=1000.0,
        help="smallest crack grown since the first scan, µm³ (1000; crack_* columns)",
    )
    tomo.add_argument(
        "--paper-crack-min-um3",
        type=float,
        metavar="V",
        help="the paper's per-scan cracks (cracks_per_scan_* columns): pore components of at "
        "least V µm³ (default 2e4); choose V above the pristine scan's largest pore",
    )
    tomo.add_argument(
        "--paper-crack-planarity",
        type=float,
        metavar="P",
        help="per-scan cracks must also have planarity >= P, 0 to 1 (default 0, the paper's "
        "volume-only rule; ~0.6 keeps sheets only)",
    )
    tomo.add_argument("--area-cm2", type=float, help="electrode area, for charge per electrode")
    tomo.add_argument(
        "--solid-level",
        type=float,
        metavar="MU",
        help="grey of the dense electrolyte for porosity_pv (μ per voxel); by default computed "
        "from the material (or --electrolyte) at the scan's energy",
    )
    tomo.add_argument(
        "--electrolyte",
        metavar="FORMULA:DENSITY",
        help="the dense electrolyte's formula and skeletal density (g/cm³), e.g. Li3PS4:1.87, "
        "for porosity_pv's solid level",
    )
    tomo.add_argument(
        "--energy-keV", type=float, help="beam energy for the solid level (default: the scan's)"
    )
    tomo.add_argument("--no-psd", action="store_true", help="skip the pore size distribution")
    tomo.add_argument(
        "--psd-fraction",
        type=float,
        metavar="F",
        help="measure the pore sizes on a random fraction F (0 < F ≤ 1) of the electrolyte's "
        "64-row blocks, for speed (porosity still counts every row); the fraction and seed are "
        "recorded in result.json (default: every row)",
    )
    tomo.add_argument("--psd-seed", type=int, default=0, help="seed of --psd-fraction's draw (0)")
    tomo.add_argument("--no-figures", action="store_true", help="write tables only")
    tomo.add_argument("--json", action="store_true", help="print one JSON object with results")
    tomo.set_defaults(func=cmd_analyze_tomo)


def _add_materials(what: argparse._SubParsersAction) -> None:
    materials = what.add_parser(
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
    materials.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="an `insitu analyze tomo` results folder (or its result.json) or a manifest",
    )
    materials.add_argument(
        "--ccd",
        nargs="+",
        action="extend",
        default=[],
        metavar="RUN",
        help="stored CCD runs (uid, uid prefix or index) for the lab charge-to-failure",
    )
    materials.add_argument(
        "--material",
        action="append",
        default=[],
        metavar="SOURCE=NAME",
        help="the material of a SOURCE or RUN (as typed) that does not record it; repeatable",
    )
    materials.add_argument(
        "--convention",
        choices=CHARGE_CONVENTIONS,
        default="per_electrode_plated",
        help="lab charge-to-failure convention (per_electrode_plated)",
    )
    materials.add_argument(
        "--conflict",
        choices=("error", "first", "mean"),
        default="error",
        help="two sources with different numbers for one material: stop (error), keep the "
        "first given, or average them (default error)",
    )
    materials.add_argument("--out", metavar="DIR", default="materials-analysis", help="results")
    materials.add_argument("--json", action="store_true", help="print one JSON object")
    add_storage_options(materials)
    materials.set_defaults(func=cmd_analyze_materials)


def cmd_analyze_eis(args: argparse.Namespace) -> int:
    """Electrolyte resistance (and σ when the geometry is known) of each spectrum."""
    from ..workflows.electrochem_analysis import analyze_spectra

    results = analyze_spectra(
        args.source,
        open_store=partial(open_store, args),
        cell=args.cell,
        method=args.method,
        thickness_cm=args.thickness_cm,
        area_cm2=args.area_cm2,
        spectrum=args.spectrum,
    )
    human = [line for result in results for line in _spectrum_lines(result)]
    if len(results) == 1:
        return emit(args, results[0].to_dict(), human)
    # Several spectra: one entry each, nothing chosen silently.
    entries = [{k: v for k, v in r.to_dict().items() if k != "source"} for r in results]
    return emit(args, {"source": args.source, "spectra": entries}, human)


def _spectrum_lines(result: SpectrumAnalysis) -> list[str]:
    """The human-readable lines of one spectrum's result."""
    fit = result.fit
    label = ""
    if result.count > 1:
        at = "" if result.temperature_C is None else f" at {result.temperature_C:g} °C"
        label = f"spectrum {result.index}{at}: "
    lines = [f"{label}R_electrolyte = {fit.electrolyte_resistance_ohm:.4g} Ω ({fit.method})"]
    if result.sigma_S_cm is not None:
        lines.append(
            f"{' ' * len(label)}σ = {result.sigma_S_cm:.4g} S/cm "
            f"(L = {result.thickness_cm} cm, A = {result.area_cm2} cm²)"
        )
    return lines


def cmd_analyze_ccd(args: argparse.Namespace) -> int:
    """CCD and charge-to-failure of a cycling trace (file or stored run)."""
    from ..workflows.electrochem_analysis import analyze_trace

    result = analyze_trace(
        args.source, open_store=partial(open_store, args), area_cm2=args.area_cm2
    )
    # Rows left out of the short detection are said on stderr, so --json stays one object.
    for note in result.get("warnings", []):
        print(f"insitu: warning: {note}", file=sys.stderr)
    ccd = result["ccd_mA_cm2"]
    human = ["no short" if ccd is None else f"CCD: {ccd:g} mA/cm²"]
    human += [f"charge ({k}): {v:.3f} C/cm²" for k, v in result["charge_to_failure_C_cm2"].items()]
    return emit(args, result, human)


def cmd_analyze_tomo(args: argparse.Namespace) -> int:
    """Analyse, write the results folder and print the per-step table (or JSON)."""
    from ..workflows.tomo_analysis import analyze_tomo

    summary, result = analyze_tomo(
        args.path,
        out=args.out,
        dataset=args.dataset,
        voxel_um=args.voxel_um,
        method=args.method,
        min_crack_um3=args.min_crack_um3,
        area_cm2=args.area_cm2,
        psd=not args.no_psd,
        figures=not args.no_figures,
        solid_level=args.solid_level,
        electrolyte=args.electrolyte,
        energy_keV=args.energy_keV,
        paper_crack_min_um3=args.paper_crack_min_um3,
        paper_crack_planarity=args.paper_crack_planarity,
        psd_fraction=args.psd_fraction,
        psd_seed=args.psd_seed,
    )
    if args.json:
        print_json(summary, default=str)
        return 0
    columns = ["step", "porosity", "porosity_pv", "crack_count", "crack_volume_um3"]
    columns += ["cracks_per_scan_count", "cracks_per_scan_volume_um3", "transparent_volume_um3"]
    print(result.table[columns].to_string(index=False))
    # Two crack conventions side by side: say which column is which.
    for convention in summary["conventions"].values():
        rule = f">= {convention['min_volume_um3']:g} µm³"
        if convention.get("planarity_min"):
            rule += f", planarity >= {convention['planarity_min']:g}"
        print(f"{convention['columns'][0]}: cracks {convention['name']} ({rule})")
    threshold = f"{result.threshold.value:.6g} ({result.settings.method})"
    print(f"threshold {threshold}; results in {summary['out']}")
    solid = summary.get("experiment", {}).get("solid_level", {})
    if solid:
        print(f"porosity_pv: solid level {solid.get('value')} from {solid.get('source')}")
    return 0


def cmd_analyze_materials(args: argparse.Namespace) -> int:
    """Build the materials table, correlate, write the results folder and print them."""
    from insitu.analysis.materials_compare import FAILURE_COLUMNS

    from ..workflows.materials import compare_materials

    summary, table, correlations = compare_materials(
        args.sources,
        ccd_runs=args.ccd,
        materials=args.material,
        convention=args.convention,
        conflict=args.conflict,
        out=args.out,
        open_store=partial(open_store, args),
    )
    if args.json:
        print_json(summary)
        return 0
    shown = ["material", "porosity", *[c for c in FAILURE_COLUMNS if table[c].notna().any()]]
    print(table[shown].to_string(index=False))
    for c in correlations.values():
        print(f"Spearman ρ({c.x}, {c.y}) = {c.rho:+.3f} over {c.n} materials: {c.sign}")
    print(f"sources and figure in {summary['out']}")
    return 0
