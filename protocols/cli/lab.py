"""What each ``insitu`` subcommand does, one function per command.

Each takes the parsed arguments and returns the JSON-friendly result (printed with ``--json``)
or prints a human summary; :mod:`insitu.protocols.cli.app` holds the parser and error handling.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from tqdm import tqdm

if TYPE_CHECKING:
    from ..storage.catalog import RunStore

__all__ = [
    "cmd_analyze_ccd",
    "cmd_analyze_eis",
    "cmd_ccd",
    "cmd_conductivity",
    "cmd_export",
    "cmd_instrument_info",
    "cmd_report",
    "cmd_runs",
    "cmd_sim_materials",
    "cmd_sim_serve",
    "cmd_tomo_scan",
]


def _emit(args: argparse.Namespace, result: Mapping[str, Any], human: list[str]) -> int:
    if getattr(args, "json", False):
        print(json.dumps(result, default=_json_default))
    else:
        print("\n".join(human))
    return 0


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


@contextmanager
def _store(args: argparse.Namespace) -> Iterator[RunStore]:
    """The run store the arguments name, closed afterwards (its tiled app runs threads)."""
    # Imported here: tiled takes a second to import, which commands without storage skip.
    from ..storage.catalog import RunStore

    store = RunStore(args.data, uri=args.catalog, api_key=args.api_key)
    try:
        yield store
    finally:
        store.close()


def _positive(**values: float) -> None:
    """Check what the user typed before any instrument or emulator is touched."""
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {value:g}")


@contextmanager
def _progress(total_s: float, desc: str, quiet: bool, area_cm2: float = 1.0) -> Iterator[Any]:
    bar = tqdm(total=total_s, unit="s", desc=desc, disable=quiet, file=sys.stderr, leave=False)

    def update(stream: str, time_s: float, point: Mapping[str, Any]) -> None:
        if stream == "electrochem":
            j = abs(float(point.get("current_A", 0.0))) / area_cm2 * 1e3
            bar.set_postfix_str(f"step {int(point.get('step', 0))}, {j:.2f} mA/cm²", refresh=False)
            bar.update(max(time_s - bar.n, 0))
        elif stream == "eis":
            bar.set_postfix_str(f"EIS {float(point.get('frequency_Hz', 0)):.3g} Hz", refresh=True)

    try:
        yield update
    finally:
        bar.close()


# --- experiments ----------------------------------------------------------------------------
def cmd_ccd(args: argparse.Namespace) -> int:
    """Run a CCD test and print CCD, charge-to-failure and the run uid."""
    from ..plans.electrochem import lab_ccd_densities_mA_cm2
    from ..workflows.lab import run_ccd

    densities = args.densities or lab_ccd_densities_mA_cm2()
    _positive(
        area_cm2=args.area_cm2,
        half_cycle=args.half_cycle,
        interval=args.interval,
        voltage_limit=args.voltage_limit,
        cycles=args.cycles,
    )
    if any(not j > 0 for j in densities):
        raise ValueError(f"--densities must all be positive mA/cm², got {densities}")
    total_s = len(densities) * args.cycles * 2 * args.half_cycle
    md = {"sample": args.sample} if args.sample else {}
    with (
        _store(args) as store,
        _progress(total_s, "CCD", args.quiet or args.json, args.area_cm2) as progress,
    ):
        result = run_ccd(
            args.instrument,
            store=store,
            area_cm2=args.area_cm2,
            current_densities_mA_cm2=densities,
            half_cycle_s=args.half_cycle,
            cycles_per_step=args.cycles,
            interval_s=args.interval,
            voltage_limit_V=args.voltage_limit,
            speedup=args.speedup,
            seed=args.seed,
            sim_protocol=args.sim_protocol,
            timeout_s=args.timeout,
            md=md,
            progress=progress,
        )
    human = [
        "no short: the cell survived the protocol"
        if result["ccd_mA_cm2"] is None
        else f"CCD: {result['ccd_mA_cm2']:g} mA/cm² "
        f"(short at {result['short_time_s'] / 3600:.3f} h)"
    ]
    human += [
        f"charge-to-failure ({k}): {v:.3f} C/cm²"
        for k, v in result["charge_to_failure_C_cm2"].items()
    ]
    human.append(f"run: {result['run_uid']}  (insitu report {result['run_uid'][:8]})")
    return _emit(args, {"instrument": args.instrument, **result}, human)


def cmd_conductivity(args: argparse.Namespace) -> int:
    """Measure EIS over temperatures and print σ per temperature and Eₐ per convention."""
    from ..workflows.lab import run_conductivity

    if not args.temperatures:
        raise ValueError("give at least one temperature with --temperatures")
    for value, name in ((args.thickness_cm, "thickness_cm"), (args.area_cm2, "area_cm2")):
        if value is not None:
            _positive(**{name: value})
    with _store(args) as store, _progress(0.0, "conductivity", args.quiet or args.json) as progress:
        result = run_conductivity(
            args.instrument,
            store=store,
            oven=args.oven,
            temperatures_C=args.temperatures,
            thickness_cm=args.thickness_cm,
            area_cm2=args.area_cm2,
            frequency_start_Hz=args.f_start,
            frequency_stop_Hz=args.f_stop,
            points_per_decade=args.points_per_decade,
            amplitude_V=args.amplitude,
            speedup=args.speedup,
            seed=args.seed,
            sim_protocol=args.sim_protocol or "methodscript",
            oven_settle_time_s=args.settle_time,
            timeout_s=args.timeout,
            md={"sample": args.sample} if args.sample else {},
            progress=progress,
        )
    human = [f"σ at {t} °C: {s:.4g} S/cm" for t, s in result["sigma_S_cm"].items()]
    human += [f"Eₐ ({k}): {v:.4f} eV" for k, v in result["ea_eV"].items()]
    human.append(f"run: {result['run_uid']}")
    return _emit(args, {"instrument": args.instrument, **result}, human)


def cmd_tomo_scan(args: argparse.Namespace) -> int:
    """Scan a virtual pellet on the simulated beamline; print the file and the ground truth."""
    from contextlib import nullcontext

    from insitu.simulators.materials import get_material

    from ..workflows.tomo import run_tomo_scan

    material = get_material(args.sim).name  # unknown names fail before anything runs
    if not args.charge_mC >= 0:
        raise ValueError(f"--charge-mC must be zero or positive, got {args.charge_mC:g}")
    _positive(exposure=args.exposure, speedup=args.speedup)
    if args.projections is not None and args.projections < 2:
        raise ValueError(f"--projections must be at least 2, got {args.projections}")
    for name in ("darks", "flats"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be at least 1, got {getattr(args, name)}")
    quiet = args.quiet or args.json
    bars: list[tqdm] = []

    def progress(done: int, total: int) -> None:
        # Opened with the first frame, so that an error before the scan prints alone.
        if not bars:
            bars.append(
                tqdm(
                    total=total,
                    unit="frame",
                    desc="tomo-scan",
                    disable=quiet,
                    file=sys.stderr,
                    leave=False,
                )
            )
        bars[0].update(done - bars[0].n)

    try:
        with _store(args) if args.store else nullcontext() as store:
            result = run_tomo_scan(
                material,
                args.out,
                charge_mC=args.charge_mC,
                size=args.size,
                n_projections=args.projections,
                exposure_s=args.exposure,
                mode=args.mode,
                n_darks=args.darks,
                n_flats=args.flats,
                speedup=args.speedup,
                seed=args.seed,
                overwrite=args.overwrite,
                store=store,
                workdir=args.workdir,
                precompute_progress=None if not quiet else False,
                progress=progress,
            )
    finally:
        for bar in bars:
            bar.close()
    truth = result["ground_truth"]
    human = [
        f"wrote {result['file']}  ({' × '.join(map(str, result['shape']))} projections)",
        f"{material} after {truth['charge_passed_mC']:.3g} mC"
        + (" (shorted)" if truth["shorted"] else "")
        + f": porosity {truth['porosity']:.3f}, {truth['n_cracks']} crack(s), "
        f"crack volume {truth['crack_volume_m3'] * 1e18:.4g} µm³",
        f"ground truth: {result['truth_json']}",
        f"run: {result['run_uid']}" + ("" if result["stored"] else " (not stored; --store)"),
    ]
    return _emit(args, result, human)


# --- analysis of files and stored runs ------------------------------------------------------
def _load_table(args: argparse.Namespace, source: str, stream: str) -> tuple[pd.DataFrame, dict]:
    """A measured file (``.mpt``, ``.mpr``, ``.csv``) or a stored run's stream, and metadata."""
    from insitu.analysis.electrochem.readers import read_measurement

    path = Path(source)
    if path.suffix.lower() in (".mpt", ".mpr", ".csv", ".txt") or path.exists():
        if not path.exists():
            raise FileNotFoundError(f"no such file: {source}")
        return read_measurement(path), {}
    with _store(args) as store:
        run = store.load(source)
    return run.stream(stream), dict(run.start)


def cmd_analyze_eis(args: argparse.Namespace) -> int:
    """Electrolyte resistance (and σ when the geometry is known) of one spectrum."""
    from insitu.analysis.electrochem.conductivity import conductivity_S_cm
    from insitu.analysis.electrochem.eis import electrolyte_resistance

    data, meta = _load_table(args, args.source, "eis")
    fit = electrolyte_resistance(data, cell=args.cell, method=args.method)
    result: dict[str, Any] = {
        "source": args.source,
        "electrolyte_resistance_ohm": fit.electrolyte_resistance_ohm,
        "method": fit.method,
        "note": getattr(fit, "note", ""),
        "points": len(data),
    }
    thickness = args.thickness_cm or meta.get("thickness_cm")
    area = args.area_cm2 or meta.get("area_cm2")
    if thickness and area:
        result["sigma_S_cm"] = float(
            conductivity_S_cm(fit.electrolyte_resistance_ohm, thickness, area)
        )
    human = [f"R_electrolyte = {fit.electrolyte_resistance_ohm:.4g} Ω ({fit.method})"]
    if "sigma_S_cm" in result:
        human.append(f"σ = {result['sigma_S_cm']:.4g} S/cm (L = {thickness} cm, A = {area} cm²)")
    return _emit(args, result, human)


def cmd_analyze_ccd(args: argparse.Namespace) -> int:
    """CCD and charge-to-failure of a cycling trace (file or stored run)."""
    from insitu.analysis.electrochem.shorts import ccd_from_trace

    data, meta = _load_table(args, args.source, "electrochem")
    area = args.area_cm2 or meta.get("area_cm2")
    if not area:
        raise ValueError("give the electrode area with --area-cm2")
    analysis = ccd_from_trace(data, float(area))
    result = {
        "source": args.source,
        "ccd_mA_cm2": analysis.ccd_mA_cm2,
        "charge_to_failure_C_cm2": analysis.charge_to_failure_C_cm2,
        "short_time_s": None if analysis.short is None else analysis.short.time_s,
        "area_cm2": float(area),
    }
    human = ["no short" if analysis.ccd_mA_cm2 is None else f"CCD: {analysis.ccd_mA_cm2:g} mA/cm²"]
    human += [f"charge ({k}): {v:.3f} C/cm²" for k, v in analysis.charge_to_failure_C_cm2.items()]
    return _emit(args, result, human)


def cmd_runs(args: argparse.Namespace) -> int:
    """List the stored runs."""
    with _store(args) as store:
        table = store.runs(limit=args.limit)
    experiment = getattr(args, "experiment", None)
    if experiment:
        # Row labels stay the catalog's indices (`insitu export INDEX` still works).
        ids = table["experiment_uid"] if "experiment_uid" in table else None
        table = table[ids == experiment] if ids is not None else table.iloc[0:0]
        if not table.empty:
            table = table.sort_values(["segment_index", "time"], kind="stable")
    if args.json:
        print(table.to_json(orient="records", date_format="iso"))
        return 0
    if table.empty:
        print(f"no runs of experiment {experiment}" if experiment else "no runs yet")
    else:
        print(table.to_string(index=True))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Write one stream of a stored run as CSV, Parquet or an EC-Lab-style .mpt text file."""
    from insitu.analysis.electrochem.readers import write_mpt

    with _store(args) as store:
        run = store.load(args.run)
    stream = args.stream or ("electrochem" if "electrochem" in run.streams else "eis")
    data = run.stream(stream)
    out = Path(args.out or f"{run.uid[:8]}-{stream}.{args.format}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.format == "csv":
        data.to_csv(out, index=False)
    elif args.format == "parquet":
        data.to_parquet(out, index=False)
    else:
        write_mpt(data.drop(columns=["time"], errors="ignore"), out)
    result = {"run_uid": run.uid, "stream": stream, "rows": len(data), "path": str(out)}
    return _emit(args, result, [f"wrote {len(data)} rows of {stream} to {out}"])


def cmd_report(args: argparse.Namespace) -> int:
    """Write the HTML report of a stored run."""
    from ..workflows.reports import report_for_run

    with _store(args) as store:
        run = store.load(args.run)
    out = Path(args.out or f"{run.uid[:8]}-report.html")
    report_for_run(run, out)
    return _emit(args, {"run_uid": run.uid, "path": str(out)}, [f"report: {out}"])


# --- simulators and instruments ---------------------------------------------------------------
def cmd_sim_serve(args: argparse.Namespace) -> int:
    """Serve a virtual cell through an emulator until interrupted."""
    from dataclasses import replace

    from insitu.simulators.cell.model import CellGeometry

    from ..bench.emulated import start_emulator

    # Install the SIGTERM handler before the resource is printed: a client may read it and
    # ask us to stop at once, and the emulator must still shut down cleanly.
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    geometry = CellGeometry.lab_ccd()
    if args.temperature_C is not None:
        geometry = replace(geometry, temperature_K=args.temperature_C + 273.15)
    with start_emulator(
        args.material,
        protocol=args.protocol,
        speedup=args.speedup,
        seed=args.seed,
        geometry=geometry,
        port=args.port,
        transport=args.transport,
    ) as bench:
        if args.json:
            print(json.dumps({"resource": bench.resource, "material": args.material}), flush=True)
        else:
            print(bench.resource, flush=True)
            print(
                f"serving a virtual {args.material} cell as {args.protocol} at speed-up "
                f"{args.speedup:g}; Ctrl-C stops",
                file=sys.stderr,
                flush=True,
            )
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
    return 0


def cmd_sim_materials(args: argparse.Namespace) -> int:
    """List the material presets and their published numbers."""
    from insitu.simulators.materials import MATERIALS

    if args.json:
        print(json.dumps([m.__dict__ for m in MATERIALS.values()]))
        return 0
    for m in MATERIALS.values():
        print(
            f"{m.name:<11} σ(25 °C) {m.sigma_rt_S_cm:.2e} S/cm  "
            f"Eₐ {m.activation_energy_eV:.3f} eV  CCD {m.ccd_mA_cm2:g} mA/cm²"
            f"  — {m.description}"
        )
    return 0


def cmd_instrument_info(args: argparse.Namespace) -> int:
    """Connect to an instrument and print its identity and what it can run."""
    from insitu.instruments.resources import open_potentiostat

    with open_potentiostat(args.resource, timeout_s=args.timeout) as driver:
        ident = driver.identify()
        caps = sorted(t.__name__ for t in driver.capabilities)
    result = {**ident.__dict__, "resource": args.resource, "capabilities": caps}
    return _emit(
        args, result, [str(ident), f"resource: {args.resource}", f"can run: {', '.join(caps)}"]
    )
