"""The in-situ experiment end to end: configuration → bench → plan → catalog → analysis → report.

What ``insitu experiment run|resume|status`` and ``insitu demo`` do, callable from Python:

- :func:`run_experiment` creates the experiment's folder (``<output>/<id>``: the resolved
  configuration, the journal, the simulated cell's checkpoint, scans, volumes, analysis and
  report), opens the bench, runs :func:`~insitu.protocols.plans.experiment.insitu_experiment`
  with a live view in the terminal and the background analysis, then the final analysis and
  the HTML report;
- :func:`resume_experiment` settles the segment a kill interrupted (an electrochemistry
  segment keeps what it measured and is closed in the catalog from its JSONL backup; a
  tomogram's partial run is withdrawn and the scan retaken), restores the simulated cell and
  continues with the next segment;
- :func:`experiment_status` reads the journal;
- :func:`experiment_report` rebuilds the report from the catalog and the analysis folder.
"""

from __future__ import annotations

import itertools
import json
import math
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pandas as pd
import yaml
from bluesky import RunEngine
from bluesky.utils import RunEngineInterrupted

from insitu.analysis.electrochem.shorts import find_short
from insitu.analysis.report.experiment import (
    ExperimentData,
    experiment_figures,
    experiment_report_json,
    write_experiment_report,
)

from ..bench import Bench, BenchSpec, open_bench
from ..experiment_config import (
    ExperimentConfig,
    ExperimentError,
    validate_config,
)
from ..plans.experiment import (
    charge_passed_C,
    insitu_experiment,
    new_experiment_id,
    z_at_lowest_frequency,
)
from ..plans.experiment_protocol import Outcome, Segment, advance, initial_state
from ..storage.catalog import RunStore, close_backup, iter_backup
from ..storage.journal import ExperimentJournal, JournalState, read_journal
from .experiment_analysis import ScanAnalyzer, ScanResult
from .interrupts import abort_on_signals, failures_at_debug
from .tomo import SuspensionCounter

__all__ = [
    "ExperimentError",
    "experiment_report",
    "experiment_status",
    "find_experiment",
    "resume_experiment",
    "run_experiment",
]


# --- where experiments live ------------------------------------------------------------------
def find_experiment(experiment_id: str, output: str | Path | None = None) -> Path:
    """The folder of experiment ``experiment_id`` (or a folder path given directly)."""
    candidates = [Path(experiment_id)]
    roots = [Path(output)] if output else [Path("experiments")]
    candidates += [root / experiment_id for root in roots]
    for folder in candidates:
        if (folder / "journal.jsonl").is_file():
            return folder
    for root in roots:
        if root.is_dir():
            matches = sorted(p for p in root.glob(f"{experiment_id}*") if p.is_dir())
            if len(matches) == 1 and (matches[0] / "journal.jsonl").is_file():
                return matches[0]
    where = ", ".join(str(r) for r in roots)
    raise ExperimentError(
        f"no experiment {experiment_id!r} under {where}: give its id as printed by `insitu "
        "experiment run`, its folder, or --output DIR where it was written"
    )


def _store_for(cfg: ExperimentConfig) -> RunStore:
    catalog = cfg.catalog
    return RunStore(catalog.data, uri=catalog.uri, api_key=catalog.api_key)


def _resolved(cfg: ExperimentConfig) -> ExperimentConfig:
    """Paths made absolute, so a resume from another folder finds the same files."""
    catalog = cfg.catalog
    data = catalog.data
    if catalog.uri is None:
        data = str(RunStore(data).location)
    return cfg.model_copy(
        update={
            "output": str(Path(cfg.output).expanduser().resolve()),
            "catalog": catalog.model_copy(update={"data": data}),
        }
    )


# --- the live view ---------------------------------------------------------------------------
_SHADES = " .:-=+*#%@"
_BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: np.ndarray, width: int = 32) -> str:
    """A trace as a line of block characters (the voltage of a half-cycle in the terminal)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return ""
    edges = np.linspace(0, values.size, min(width, values.size) + 1).astype(int)
    means = np.array([values[a:b].mean() for a, b in itertools.pairwise(edges)])
    lo, hi = means.min(), means.max()
    scaled = (means - lo) / (hi - lo) if hi > lo else np.zeros_like(means)
    return "".join(_BARS[round(float(x) * (len(_BARS) - 1))] for x in scaled)


def ascii_slice(image: np.ndarray, width: int = 48) -> str:
    """A grey image as characters (for the terminal's latest slice)."""
    image = np.asarray(image, dtype=float)
    if image.ndim != 2 or image.size == 0:
        return ""
    rows = max(1, round(image.shape[0] * width / image.shape[1] / 2))
    zi = np.linspace(0, image.shape[0] - 1, rows).round().astype(int)
    xi = np.linspace(0, image.shape[1] - 1, width).round().astype(int)
    small = image[np.ix_(zi, xi)]
    lo, hi = np.nanpercentile(small, [1, 99])
    scaled = np.clip((small - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
    idx = (scaled * (len(_SHADES) - 1)).round().astype(int)
    return "\n".join("".join(_SHADES[k] for k in row) for row in idx)


class LiveView:
    """Progress, the latest voltage and slice, and the crack volume while the plan runs.

    Also the plan's :class:`~insitu.protocols.plans.experiment.ExperimentObserver`: it queues
    each new scan for the background analysis, answers the crack-onset rule, and refreshes
    the report folder's figures after every segment.
    """

    def __init__(
        self,
        cfg: ExperimentConfig,
        bench: Bench,
        folder: Path,
        analyzer: ScanAnalyzer | None,
        *,
        out: TextIO | None = sys.stderr,
        figures: bool = True,
    ) -> None:
        self.cfg = cfg
        self.bench = bench
        self.folder = folder
        self.analyzer = analyzer
        self.out = out
        self.figures = figures
        self.t0 = time.perf_counter()
        self.electrochem: list[pd.DataFrame] = []
        self.segments: list[dict[str, Any]] = []
        self.elapsed_s = 0.0
        self.seg_t0 = time.perf_counter()
        self.scan_wall: list[float] = []
        self.half_wall: list[float] = []
        self.eis: dict[str, pd.DataFrame] = {}
        self._painter: ThreadPoolExecutor | None = None
        self._drawing: Future[None] | None = None

    # --- estimate -----------------------------------------------------------------------
    def _remaining(self, state: dict[str, Any]) -> tuple[int, float]:
        sched = self.cfg.schedule
        per_step = 2 * sched.cycles_per_step
        left_half = max(
            (len(sched.current_densities_mA_cm2) - state["step"]) * per_step - state["half"], 0
        )
        left_scans = math.ceil(left_half / self.cfg.scan.every_half_cycles)
        half_s = np.mean(self.half_wall) if self.half_wall else sched.half_cycle_s / self._speed()
        scan_s = np.mean(self.scan_wall) if self.scan_wall else 10.0
        return left_half, float(left_half * half_s + left_scans * scan_s)

    def _speed(self) -> float:
        return self.cfg.devices.simulation.speedup if self.cfg.devices.simulated else 1.0

    def _print(self, text: str) -> None:
        if self.out is not None:
            print(text, file=self.out, flush=True)

    # --- observer -----------------------------------------------------------------------
    def segment_started(self, segment: Segment, state: dict[str, Any]) -> None:
        self.seg_t0 = time.perf_counter()
        left_half, left_s = self._remaining(state)
        n_steps = len(self.cfg.schedule.current_densities_mA_cm2)
        step = f"step {min(state['step'] + 1, n_steps)}/{n_steps}"
        self._print(
            f"[{time.perf_counter() - self.t0:7.1f} s] segment {segment.index}, {step}: "
            f"{segment.label}  (charge so far {state['charge_C'] * 1e3:.3g} mC; "
            f"≤{left_half} half-cycles left, ≤{left_s / 60:.1f} min at this pace)"
        )

    def segment_done(self, segment: Segment, outcome: Outcome, state: dict[str, Any]) -> None:
        wall = time.perf_counter() - self.seg_t0
        start_s = self.elapsed_s
        # Only a segment that made a run measured anything (a skipped scan, an EIS the
        # instrument cannot do or a current out of range did not: the device still holds
        # the previous technique's points).
        points = self._points(segment) if outcome.run_uid else None
        if points is not None and len(points) and "time_s" in points:
            self.electrochem.append(segment_trace(points, segment, start_s))
            self.elapsed_s += float(points["time_s"].iloc[-1])
        elif points is not None and len(points) and "frequency_Hz" in points:
            key = "eis_after" if segment.kind == "eis_after" else segment.kind
            self.eis[key] = points
        self.segments.append(
            _segment_row(segment, outcome, state, start_s=start_s, end_s=self.elapsed_s)
        )
        detail = f"{outcome.end_reason}"
        if outcome.extra.get("why"):
            detail += f" ({outcome.extra['why']})"
        if segment.half_cycle:
            self.half_wall.append(wall)
            v = outcome.extra.get("v_end_V")
            detail += f", {outcome.charge_C * 1e3:.3g} mC" + (
                f", last {v:.3f} V" if v is not None else ""
            )
            if points is not None and "voltage_V" in points and len(points):
                volts = points["voltage_V"].to_numpy(float)
                detail += (
                    f"\n             V {np.nanmin(volts):+.3f} {sparkline(volts)} "
                    f"{np.nanmax(volts):+.3f}"
                )
        if segment.kind == "tomogram" and outcome.scan_file:
            self.scan_wall.append(wall)
            detail += f", {outcome.scan_file}"
            if outcome.extra.get("ocv_V") is not None:
                detail += f", OCV {outcome.extra['ocv_V'] * 1e3:.2f} mV"
            if self.analyzer is not None and outcome.scan_file:
                self.analyzer.submit(
                    segment.index,
                    segment.label,
                    outcome.scan_file,
                    charge_mC=state["charge_C"] * 1e3,
                    current_density_mA_cm2=_last_density(self.segments),
                    half_cycle=_last_half(self.segments),
                    pristine=segment.tag == "pristine",
                )
        self._print(f"           → {detail} ({wall:.1f} s)")
        self.report_new_results()
        if self.figures:
            self.refresh_figures()

    def crack_onset(self) -> bool:
        rule = self.cfg.adaptive
        if self.analyzer is None or rule.after_crack_onset_every is None:
            return False
        return self.analyzer.crack_onset(rule.crack_onset_um3)

    # --- helpers ------------------------------------------------------------------------
    def _points(self, segment: Segment) -> pd.DataFrame | None:
        device = self.bench.potentiostat
        technique = device.prepared_technique
        if technique is None:
            return None
        return device.points()

    def report_new_results(self) -> list[ScanResult]:
        """Print the scans analysed since the last call; returns them."""
        if self.analyzer is None:
            return []
        new = self.analyzer.poll()
        for r in new:
            if r.error:
                self._print(f"           analysis of {r.label}: FAILED ({r.error})")
                continue
            d = r.data or {}
            self._print(
                f"           analysed {r.label}: porosity {d.get('porosity', math.nan):.3f}, "
                f"cracks {d.get('crack_volume_um3') or 0:.4g} µm³ "
                f"({d.get('crack_count') or 0} grown since pristine), transparent "
                f"{d.get('transparent_volume_um3') or 0:.4g} µm³ "
                f"[recon {d.get('recon_s', 0):.1f} s, measure {d.get('measure_s', 0):.1f} s]"
            )
            if d.get("slice") and self.out is not None and self.out.isatty():
                self._print(ascii_slice(np.load(d["slice"])))
        return new

    def data(self) -> ExperimentData:
        """What the run has measured so far, for the figures."""
        return ExperimentData(
            experiment_id=self.folder.name,
            material=self.cfg.material,
            area_cm2=self.cfg.geometry.area_cm2,
            electrochem=pd.concat(self.electrochem, ignore_index=True)
            if self.electrochem
            else pd.DataFrame(),
            segments=pd.DataFrame(self.segments),
            eis_before=self.eis.get("eis_before"),
            eis_after=self.eis.get("eis_after"),
            steps=_live_steps(self.analyzer),
            porosity_factors=None,
            slices=_slices(self.analyzer),
            voxel_um=_voxel(self.analyzer),
            summary={"material": self.cfg.material, "live": True},
        )

    def refresh_figures(self) -> None:
        """Redraw the report folder's figures with what is known now, in the background.

        Drawing takes most of a second; the next segment must not wait for it (at rest, a
        second is minutes of simulated relaxation). A refresh still drawing when the next
        segment ends makes that segment skip its own: the one after catches up.
        """
        if self._drawing is not None and not self._drawing.done():
            return
        data = self.data()
        if self._painter is None:
            self._painter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="live-figures")
        self._drawing = self._painter.submit(self._draw, data)

    def _draw(self, data: ExperimentData) -> None:
        try:
            experiment_figures(data, self.folder / "report" / "figures")
        except Exception as exc:  # figures are a convenience: never stop the experiment
            self._print(f"           (live figures not refreshed: {type(exc).__name__}: {exc})")

    def close(self) -> None:
        """Wait for a refresh still drawing (the report then writes the final figures)."""
        if self._painter is not None:
            self._painter.shutdown(wait=True)
            self._painter = None


def segment_trace(points: pd.DataFrame, segment: Segment, start_s: float) -> pd.DataFrame:
    """A segment's time series on the experiment's time axis, as the report takes it.

    ``time_s`` counts from the experiment's start (segments laid end to end), ``kind`` is
    ``plate``, ``strip`` or ``ocv`` (the rest during a scan) and the current density is NaN
    at open circuit.
    """
    return pd.DataFrame(
        {
            "time_s": points["time_s"].to_numpy(float) + start_s,
            "voltage_V": points["voltage_V"].to_numpy(float),
            "current_A": points["current_A"].to_numpy(float),
            "segment": segment.index,
            "kind": "ocv" if segment.kind == "tomogram" else segment.kind,
            "current_density_mA_cm2": segment.current_density_mA_cm2
            if segment.half_cycle
            else math.nan,
        }
    )


def _segment_row(
    segment: Segment, outcome: Outcome, state: dict[str, Any], *, start_s: float, end_s: float
) -> dict[str, Any]:
    return {
        "index": segment.index,
        "kind": segment.kind,
        "label": segment.label,
        "step": segment.step,
        "cycle": segment.cycle,
        "current_density_mA_cm2": segment.current_density_mA_cm2,
        "start_s": start_s,
        "end_s": end_s,
        "end_reason": "short" if outcome.short else outcome.end_reason,
        "charge_mC": state["charge_C"] * 1e3,
        "run_uid": outcome.run_uid,
        "tag": segment.tag,
        "scan_file": outcome.scan_file,
    }


def _last_density(rows: list[dict[str, Any]]) -> float | None:
    for row in reversed(rows):
        if row["kind"] in ("plate", "strip"):
            return row["current_density_mA_cm2"]
    return None


def _last_half(rows: list[dict[str, Any]]) -> str | None:
    for row in reversed(rows):
        if row["kind"] in ("plate", "strip"):
            return row["kind"]
    return None


def _live_steps(analyzer: ScanAnalyzer | None) -> pd.DataFrame | None:
    if analyzer is None or not analyzer.results:
        return None
    rows = []
    for index in sorted(analyzer.results):
        r = analyzer.results[index]
        if r.data is None:
            continue
        rows.append({"step": f"{index:03d} {r.label}", **r.to_dict()})
    return pd.DataFrame(rows) if rows else None


def _slices(analyzer: ScanAnalyzer | None) -> dict[str, np.ndarray]:
    if analyzer is None:
        return {}
    done = [r for _, r in sorted(analyzer.results.items()) if r.data and r.data.get("slice")]
    if not done:
        return {}
    out = {"pristine": np.load(done[0].data["slice"])}  # type: ignore[index]
    if len(done) > 1:
        out["latest"] = np.load(done[-1].data["slice"])  # type: ignore[index]
    return out


def _voxel(analyzer: ScanAnalyzer | None) -> float | None:
    if analyzer is None:
        return None
    for r in analyzer.results.values():
        if r.data and r.data.get("voxel_um"):
            return float(r.data["voxel_um"])
    return None


class Observers:
    """Several experiment observers as one (each method calls those that have it)."""

    def __init__(self, *observers: Any) -> None:
        self.observers = [o for o in observers if o is not None]

    def segment_started(self, segment: Segment, state: dict[str, Any]) -> None:
        for o in self.observers:
            if hasattr(o, "segment_started"):
                o.segment_started(segment, state)

    def segment_done(self, segment: Segment, outcome: Outcome, state: dict[str, Any]) -> None:
        for o in self.observers:
            if hasattr(o, "segment_done"):
                o.segment_done(segment, outcome, state)

    def crack_onset(self) -> bool:
        return any(o.crack_onset() for o in self.observers if hasattr(o, "crack_onset"))


# --- running ---------------------------------------------------------------------------------
def run_experiment(
    config: ExperimentConfig | dict[str, Any],
    *,
    experiment_id: str | None = None,
    store: RunStore | None = None,
    out: TextIO | None = sys.stderr,
    analysis: bool | None = None,
    report: bool = True,
    observers: Sequence[Callable[[Bench], Any]] = (),
) -> dict[str, Any]:
    """Run a new experiment to its end; returns its summary (see :func:`experiment_report`).

    ``observers`` are factories called with the open bench; what they return is told of
    every segment (:class:`~insitu.protocols.plans.experiment.ExperimentObserver`), e.g. a
    notebook's own display.
    """
    cfg = _resolved(validate_config(config))
    experiment_id = experiment_id or new_experiment_id(cfg.sample)
    folder = Path(cfg.output) / experiment_id
    if (folder / "journal.jsonl").exists():
        raise ExperimentError(
            f"experiment {experiment_id} exists in {folder}; resume it with `insitu experiment "
            f"resume {experiment_id}` or choose another id"
        )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "experiment.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    ExperimentJournal(folder).create(experiment_id, cfg.to_dict())
    return _drive(
        cfg,
        folder,
        experiment_id,
        store=store,
        restore=False,
        out=out,
        analysis=analysis,
        report=report,
        observers=observers,
    )


def resume_experiment(
    experiment_id: str,
    *,
    output: str | Path | None = None,
    store: RunStore | None = None,
    out: TextIO | None = sys.stderr,
    analysis: bool | None = None,
    report: bool = True,
    observers: Sequence[Callable[[Bench], Any]] = (),
) -> dict[str, Any]:
    """Continue an experiment after a kill, a Ctrl-C or a restart, from its next segment."""
    folder = find_experiment(experiment_id, output)
    journal = read_journal(folder)
    if journal.finished is not None:
        raise ExperimentError(
            f"experiment {journal.experiment_id} has finished ({journal.finished}); nothing to "
            f"resume (its report: `insitu experiment report {journal.experiment_id}`)"
        )
    cfg = validate_config(journal.config, source=f"{folder}/journal.jsonl")
    store = store or _store_for(cfg)
    settled = settle_interrupted(journal, folder, store, cfg)
    ExperimentJournal(folder).note("resumed", settled=settled)
    if out is not None and settled:
        print(f"resume: {settled}", file=out)
    return _drive(
        cfg,
        folder,
        journal.experiment_id,
        store=store,
        restore=cfg.devices.simulated,
        out=out,
        analysis=analysis,
        report=report,
        observers=observers,
    )


def _drive(
    cfg: ExperimentConfig,
    folder: Path,
    experiment_id: str,
    *,
    store: RunStore | None,
    restore: bool,
    out: TextIO | None,
    analysis: bool | None,
    report: bool,
    observers: Sequence[Callable[[Bench], Any]] = (),
) -> dict[str, Any]:
    t0 = time.perf_counter()
    store = store or _store_for(cfg)
    do_analysis = cfg.analysis.enabled if analysis is None else analysis
    if out is not None:
        print(f"experiment {experiment_id} in {folder}", file=out, flush=True)
    with open_bench(BenchSpec.from_experiment(cfg, folder, restore=restore)) as bench:
        analyzer = (
            ScanAnalyzer(folder, cfg.analysis, area_cm2=cfg.geometry.area_cm2)
            if do_analysis and bench.camera is not None
            else None
        )
        try:
            if analyzer is not None:
                _resubmit_scans(analyzer, read_journal(folder))
            view = LiveView(cfg, bench, folder, analyzer, out=out, figures=report)
            # No bluesky SIGINT handler: its first Ctrl-C waits for a checkpoint, which a
            # half-cycle does not reach for hours; one Ctrl-C (or SIGTERM, SIGHUP) aborts the
            # segment instead (abort_on_signals), and the journal keeps the place.
            RE = RunEngine({}, context_managers=[])
            # Pauses, suspensions (beam loss) and resumes go into each run's 'interruptions'
            # stream: the catalog shows which scan waited for the beam.
            RE.record_interruptions = True
            suspended = SuspensionCounter()
            RE.subscribe(suspended)
            store.subscribe(RE)
            if bench.pace is not None:
                RE.subscribe(bench.pace)
            plan = insitu_experiment(
                bench.potentiostat,
                bench.camera,
                bench.stage,
                bench.shutter,
                bench.ring_current,
                config=cfg.to_dict(),
                experiment_id=experiment_id,
                folder=str(folder),
                observer=Observers(view, *(o(bench) for o in observers)),
            )
            try:
                # The abort's traceback in bluesky's log is noise for an operator's Ctrl-C.
                with failures_at_debug(), abort_on_signals(RE) as signals:
                    RE(plan)
            except RunEngineInterrupted:
                # Aborted by a signal (the cell is off, the segment's run closed), or paused
                # from Python (RE.request_pause): abort that too, which switches the cell off.
                if RE.state == "paused":
                    with failures_at_debug():
                        RE.abort(signals.reason or "interrupted by the operator")
                if out is not None:
                    how = f" ({signals.reason})" if signals.reason else ""
                    print(
                        f"experiment {experiment_id} interrupted{how}: the cell was switched "
                        f"off; continue it with `insitu experiment resume {experiment_id}`",
                        file=out,
                    )
                raise KeyboardInterrupt from None
            finally:
                view.close()
            run_s = time.perf_counter() - t0
            faults = _faults_summary(cfg, bench, suspended)
            final = None
            if analyzer is not None:
                if out is not None and analyzer.busy:
                    print(f"waiting for {analyzer.busy} scan(s) to be analysed", file=out)
                analyzer.wait()
                view.report_new_results()
                if len(analyzer.results) and any(r.data for r in analyzer.results.values()):
                    final = analyzer.final(psd=cfg.analysis.psd)
        finally:
            if analyzer is not None:
                analyzer.close()
    summary = experiment_report(folder, store=store, final=final, write=report)
    if faults:
        summary["faults"] = faults
    summary["run_s"] = run_s
    summary["wall_s"] = time.perf_counter() - t0
    return summary


def _faults_summary(
    cfg: ExperimentConfig, bench: Bench, suspended: SuspensionCounter
) -> dict[str, Any]:
    """What the file's ``faults`` asked for and what they did (``{}`` without faults).

    ``injected``: the faulty cable's counts by kind (``wire``: ``lines`` seen, ``delay``,
    ``garble``, ``drop``, ``split``, ``disconnect``) and the beamline's (``beamline``:
    ``frames_lost``, ``frames_retaken``, ``stage_stalls``, ``beam_losses``, ``beam_back``);
    ``scan_suspensions``: the scans' suspensions (beam losses) the RunEngine recorded;
    ``points_lost``: measured points that never reached this host readable (the driver's
    count).
    """
    asked = cfg.faults
    if not (asked.potentiostat or asked.beamline):
        return {}
    driver = getattr(bench.potentiostat, "driver", None)
    return {
        "potentiostat": asked.potentiostat,
        "beamline": asked.beamline,
        "injected": bench.faults_injected(),
        "scan_suspensions": suspended.suspensions,
        "points_lost": int(getattr(driver, "points_lost", 0)),
    }


def _resubmit_scans(analyzer: ScanAnalyzer, journal: JournalState) -> None:
    """Scans taken before a resume: queue those not analysed yet (pristine first)."""
    for entry in journal.done:
        segment = Segment.from_dict(entry["segment"])
        outcome = entry["outcome"]
        if segment.kind == "tomogram" and outcome.get("scan_file"):
            analyzer.submit(
                segment.index,
                segment.label,
                outcome["scan_file"],
                charge_mC=entry["state"]["charge_C"] * 1e3,
                pristine=segment.tag == "pristine",
            )


# --- resume: settle the interrupted segment ---------------------------------------------------
def _find_segment_run(store: RunStore, experiment_id: str, index: int) -> str | None:
    """The uid of a segment's run, from the JSONL backups (they are written first)."""
    folder = store.backup_dir
    if not folder.is_dir():
        return None
    for path in sorted(folder.glob("*.jsonl"), key=lambda p: p.stat().st_mtime, reverse=True):
        name, doc = next(iter_backup(path), (None, {}))
        if (
            name == "start"
            and doc.get("experiment_uid") == experiment_id
            and doc.get("segment_index") == index
        ):
            return str(doc["uid"])
    return None


def settle_interrupted(
    journal: JournalState, folder: Path, store: RunStore, cfg: ExperimentConfig
) -> str | None:
    """Deal with the segment a kill interrupted; returns what was done (None if nothing).

    An electrochemistry segment is never repeated: what it measured is kept (its run is
    closed with exit status ``abort`` and put into the catalog from the JSONL backup), its
    charge counts, and the protocol goes on as after that segment. A tomogram passes no
    current, so a partial one is withdrawn from the catalog (its backup kept in
    ``superseded/``, its file renamed ``*.partial.h5``) and the scan is taken again.
    """
    seg_dict = journal.interrupted
    if seg_dict is None:
        return None
    segment = Segment.from_dict(seg_dict)
    writer = ExperimentJournal(folder)
    uid = journal.interrupted_run_uid or _find_segment_run(
        store, journal.experiment_id, segment.index
    )
    backup = store.backup_dir / f"{uid}.jsonl" if uid else None
    if uid is None or backup is None or not backup.is_file():
        writer.note("redo", index=segment.index, why="interrupted before its run was opened")
        return f"segment {segment.index} ({segment.label}) had not started measuring: run it"
    docs = list(iter_backup(backup))
    if not docs or docs[0][0] != "start":
        # Killed while the start document itself was being written: nothing was measured.
        superseded = folder / "superseded"
        superseded.mkdir(exist_ok=True)
        shutil.move(str(backup), superseded / backup.name)
        writer.note("redo", index=segment.index, why="its run never started")
        return f"segment {segment.index} ({segment.label}) had not started measuring: run it"
    if segment.kind == "tomogram":
        root = store.client
        if uid in root:
            root[uid].delete(recursive=True, external_only=False)
        superseded = folder / "superseded"
        superseded.mkdir(exist_ok=True)
        shutil.move(str(backup), superseded / backup.name)
        data_file = docs[0][1].get("data_file") if docs else None
        if data_file and Path(data_file).is_file():
            Path(data_file).rename(Path(data_file).with_suffix(".partial.h5"))
        writer.note("redo", index=segment.index, why="tomogram interrupted: retaken")
        return f"segment {segment.index} ({segment.label}) was a partial scan: retaking it"
    # The catalog's own closer: it also mends a last line torn by the kill, where a stop line
    # appended as is would have merged into it and been lost.
    close_backup(
        backup, reason="interrupted: the process ended during this segment (closed on resume)"
    )
    root = store.client
    if not (uid in root and root[uid].metadata.get("stop")):
        store.restore_backup(uid, replace=True)
    run = store.load(uid, streams=("electrochem",))
    outcome = Outcome("interrupted", run_uid=uid)
    if segment.half_cycle:
        try:
            points = run.stream("electrochem")
        except (KeyError, ValueError):  # killed before the first points were collected
            points = pd.DataFrame({"time_s": [], "voltage_V": [], "current_A": []})
        outcome.charge_C = charge_passed_C(points)
        outcome.extra = {"points": len(points)}
        if len(points) >= 3:
            short = find_short(points, drop_fraction=cfg.schedule.drop_fraction)
            outcome.short = short is not None
    else:
        try:
            outcome.z_low_ohm = z_at_lowest_frequency(run.stream("eis"))
        except (KeyError, ValueError):  # killed before the first points were collected
            pass
    state = journal.last_state or initial_state()
    new_state = advance(state, segment, outcome, cfg)
    writer.done(segment.to_dict(), outcome.to_dict(), new_state)
    return (
        f"segment {segment.index} ({segment.label}) was interrupted: its "
        f"{outcome.extra.get('points', 'measured')} points are kept and it counts as ended"
    )


# --- status and report -----------------------------------------------------------------------
def experiment_status(experiment_id: str, output: str | Path | None = None) -> dict[str, Any]:
    """Where an experiment stands, from its journal (no device, no catalog needed)."""
    folder = find_experiment(experiment_id, output)
    journal = read_journal(folder)
    state = journal.last_state or initial_state()
    pending = state.get("pending")
    segments = [
        {
            "index": e["segment"]["index"],
            "label": e["segment"]["label"],
            "end_reason": e["outcome"]["end_reason"],
            "run_uid": e["outcome"].get("run_uid"),
            "charge_mC": e["state"]["charge_C"] * 1e3,
        }
        for e in journal.done
    ]
    live = sorted((folder / "analysis" / "live").glob("*.json"))
    return {
        "experiment_id": journal.experiment_id,
        "folder": str(folder.resolve()),
        "material": journal.config.get("material"),
        "sample": journal.config.get("sample"),
        "segments_done": len(journal.done),
        "finished": journal.finished,
        "interrupted": journal.interrupted,
        "next_segment": pending,
        "charge_mC": state["charge_C"] * 1e3,
        "end_reason": state.get("end_reason"),
        "resumes": journal.resumes,
        "scans_analysed": len(live),
        "report": str(folder / "report" / "report.html")
        if (folder / "report" / "report.html").exists()
        else None,
        "segments": segments,
    }


def _steps_from_live(folder: Path) -> pd.DataFrame | None:
    rows = []
    for path in sorted((folder / "analysis" / "live").glob("[0-9][0-9][0-9].json")):
        data = json.loads(path.read_text()).get("data")
        if data:
            rows.append({"step": path.stem, "segment_index": int(path.stem), **data})
    return pd.DataFrame(rows) if rows else None


def _eis_of(store: RunStore, uid: str | None) -> pd.DataFrame | None:
    if not uid:
        return None
    try:
        return store.load(uid, streams=("eis",)).stream("eis")
    except Exception:  # an EIS run that never got its points
        return None


def _porosity_factors(final: Any, folder: Path) -> dict[str, dict[float, Any]] | None:
    if final is not None:
        return final[1].porosity_factors
    path = folder / "analysis" / "final" / "porosity_factor.npz"
    if not path.is_file():
        return None
    grids: dict[str, dict[float, Any]] = {}
    with np.load(path) as npz:
        for key in npz.files:
            step, size, field = key.rsplit("/", 2)
            if field == "phi":
                grids.setdefault(step, {})[float(size.removesuffix("um"))] = npz[key]
    return grids


def experiment_report(
    experiment_id: str | Path,
    *,
    output: str | Path | None = None,
    store: RunStore | None = None,
    final: Any = None,
    write: bool = True,
) -> dict[str, Any]:
    """Gather an experiment from its journal, the catalog and the analysis; write the report.

    Returns
    -------
    dict
        The report's numbers (:func:`~insitu.analysis.report.experiment.experiment_report_json`)
        plus ``experiment_id``, ``folder``, ``report`` (the HTML file, if written),
        ``charge_to_failure_mC`` (the charge passed up to the onset of the short),
        ``end_reason``.
    """
    folder = (
        Path(experiment_id)
        if isinstance(experiment_id, Path)
        else find_experiment(experiment_id, output)
    )
    journal = read_journal(folder)
    cfg = validate_config(journal.config, source=f"{folder}/journal.jsonl")
    store = store or _store_for(cfg)
    rows: list[dict[str, Any]] = []
    traces: list[pd.DataFrame] = []
    eis_before = eis_after = None
    elapsed = 0.0
    charge_to_failure_mC = None
    short_time_s = None
    for entry in journal.done:
        segment = Segment.from_dict(entry["segment"])
        outcome = Outcome.from_dict(entry["outcome"])
        start = elapsed
        charge_before = (rows[-1]["charge_mC"] if rows else 0.0) / 1e3
        if segment.kind in ("plate", "strip", "tomogram") and outcome.run_uid:
            try:
                points = store.load(outcome.run_uid, streams=("electrochem",)).stream("electrochem")
            except Exception:  # a tomogram without OCV points
                points = pd.DataFrame()
            if len(points):
                traces.append(segment_trace(points, segment, start))
                elapsed += float(points["time_s"].iloc[-1])
                if outcome.short and charge_to_failure_mC is None:
                    event = find_short(points, drop_fraction=cfg.schedule.drop_fraction)
                    if event is not None:
                        upto = points[points["time_s"] <= event.time_s]
                        charge_to_failure_mC = (charge_before + charge_passed_C(upto)) * 1e3
                        short_time_s = start + event.time_s
        elif segment.kind == "eis_before":
            eis_before = _eis_of(store, outcome.run_uid)
        elif segment.kind == "eis_after":
            eis_after = _eis_of(store, outcome.run_uid)
        rows.append(_segment_row(segment, outcome, entry["state"], start_s=start, end_s=elapsed))
    state = journal.last_state or initial_state()
    steps = None
    steps_csv = folder / "analysis" / "final" / "steps.csv"
    if steps_csv.is_file():
        steps = pd.read_csv(steps_csv)
    else:
        # No final analysis (it was switched off, or the process ended before it): the live
        # measurements, each scan against the pristine one.
        steps = _steps_from_live(folder)
    slices: dict[str, np.ndarray] = {}
    live = sorted((folder / "analysis" / "live").glob("*-slice.npy"))
    voxel = None
    if live:
        slices["pristine"] = np.load(live[0])
        if len(live) > 1:
            slices["failed" if state.get("end_reason") == "short" else "last"] = np.load(live[-1])
        first = json.loads(
            live[0].with_name(live[0].name.replace("-slice.npy", ".json")).read_text()
        )
        voxel = (first.get("data") or {}).get("voxel_um")
    ccd = None
    if charge_to_failure_mC is not None:
        ccd = next((r["current_density_mA_cm2"] for r in rows if r["end_reason"] == "short"), None)
    summary = {
        "experiment_id": journal.experiment_id,
        "material": cfg.material,
        "sample": cfg.sample,
        "end_reason": state.get("end_reason"),
        "finished": journal.finished,
        "charge_passed_mC": state["charge_C"] * 1e3,
        "charge_to_failure_mC": charge_to_failure_mC,
        "short_time_s": short_time_s,
        "ccd_mA_cm2": ccd,
        "n_segments": len(rows),
        "n_scans": sum(1 for r in rows if r["kind"] == "tomogram" and r["scan_file"]),
        "notes": state.get("notes", []),
        "simulated": cfg.devices.simulated,
    }
    data = ExperimentData(
        experiment_id=journal.experiment_id,
        material=cfg.material,
        area_cm2=cfg.geometry.area_cm2,
        electrochem=pd.concat(traces, ignore_index=True) if traces else pd.DataFrame(),
        segments=pd.DataFrame(rows),
        eis_before=eis_before,
        eis_after=eis_after,
        steps=steps,
        porosity_factors=_porosity_factors(final, folder),
        slices=slices,
        voxel_um=voxel,
        summary=summary,
    )
    result = {**experiment_report_json(data), **summary, "folder": str(folder.resolve())}
    if write:
        path = write_experiment_report(data, folder / "report" / "report.html")
        result["report"] = str(path)
    return result
