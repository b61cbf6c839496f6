"""Reconstruction and microstructure analysis of an experiment's scans as they come in.

While the next half-cycle runs, each new scan is reconstructed (``insitu recon``'s pipeline)
and measured against the pristine scan in a worker process (a local process pool, or a Dask
cluster given by address), so the operator sees crack growth before deciding the next step.
These *live* numbers use a threshold of the pristine and the new scan only; when the
experiment ends, :meth:`ScanAnalyzer.final` measures every scan with one study threshold
(``insitu analyze tomo`` on the experiment's manifest), which is the number to report.

Files, under the experiment's folder:

- ``volumes/<segment>.zarr`` (and ``<segment>.zarr.complete`` once written);
- ``analysis/live/<segment>.json``: the live measurement of each scan;
- ``analysis/live/<segment>-slice.npy``: its central vertical slice (z, x), for the live view
  and the report;
- ``analysis/manifest.json`` and ``analysis/final/``: the final analysis.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import sys
import time
import types
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..experiment_config import AnalysisConfig

__all__ = ["ScanAnalyzer", "ScanResult", "reconstruct_and_measure"]

log = logging.getLogger(__name__)

_LIVE_COLUMNS = (
    "porosity",
    "crack_count",
    "crack_volume_um3",
    "transparent_volume_um3",
    "top_thickness_um",
    "bottom_thickness_um",
)


def _complete_marker(volume: Path) -> Path:
    return volume.with_name(volume.name + ".complete")


def _plain(value: Any) -> Any:
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def reconstruct_and_measure(
    scan_file: str,
    volume: str,
    pristine_volume: str | None,
    *,
    memory_gib: float = 2.0,
    method: str = "default",
    min_crack_um3: float = 1000.0,
    area_cm2: float | None = None,
    wait_s: float = 1800.0,
) -> dict[str, Any]:
    """Reconstruct one scan and measure it against the pristine scan (worker function).

    Parameters
    ----------
    scan_file : str
        The Data Exchange file of the scan.
    volume : str
        Zarr volume to write (replaced if an incomplete one is there).
    pristine_volume : str or None
        The pristine scan's volume; None if this scan is the pristine one. Another worker
        may still be writing it: this waits up to ``wait_s`` for it to be complete.

    Returns
    -------
    dict
        ``volume``, ``center``, ``recon_s``, ``measure_s``, the measurements of
        ``analyze_experiment``'s table row for this scan (``porosity``, ``crack_volume_um3``,
        ...; cracks are growth since the pristine scan) and ``slice`` (path of the central
        vertical slice).
    """
    import zarr

    from insitu.analysis.microstructure.experiment import (
        Step,
        TomoSettings,
        analyze_experiment,
        voxel_um_from_attrs,
    )
    from insitu.analysis.tomo.pipeline import ReconOptions, reconstruct_scan

    out = Path(volume)
    t0 = time.perf_counter()
    summary = reconstruct_scan(
        scan_file,
        out,
        ReconOptions(memory_budget_gib=memory_gib),
        overwrite=True,
        progress=False,
    )
    _complete_marker(out).write_text(json.dumps({"scan": scan_file}))
    recon_s = time.perf_counter() - t0
    vol = zarr.open_array(str(out), mode="r")
    voxel = voxel_um_from_attrs(vol.attrs) or 1.0
    steps = []
    if pristine_volume is not None:
        reference = Path(pristine_volume)
        deadline = time.monotonic() + wait_s
        while not _complete_marker(reference).exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the pristine volume {reference} was not written in time")
            time.sleep(0.5)
        steps.append(Step("pristine", zarr.open_array(str(reference), mode="r")))
    steps.append(Step("scan", vol))
    t1 = time.perf_counter()
    result = analyze_experiment(
        steps,
        TomoSettings(
            voxel_um=voxel,
            method=method,  # type: ignore[arg-type]
            min_crack_volume_um3=min_crack_um3,
            area_cm2=area_cm2,
            psd=False,
        ),
    )
    row = result.table.iloc[-1]
    measured = {k: _plain(row[k]) for k in _LIVE_COLUMNS if k in row}
    middle = vol.shape[1] // 2
    slice_path = out.parent.parent / "analysis" / "live" / f"{out.stem}-slice.npy"
    slice_path.parent.mkdir(parents=True, exist_ok=True)
    np.save(slice_path, np.asarray(vol[:, middle, :], dtype=np.float32))
    return {
        "volume": str(out),
        "center": _plain(summary.get("center")),
        "voxel_um": voxel,
        "recon_s": recon_s,
        "measure_s": time.perf_counter() - t1,
        "slice": str(slice_path),
        **measured,
    }


@contextlib.contextmanager
def _without_main_module() -> Iterator[None]:
    """Start worker processes without the caller's ``__main__``.

    A spawned child imports the parent's main module before it runs anything: a script that
    calls :func:`~insitu.protocols.workflows.experiment.run_experiment` without an
    ``if __name__ == "__main__":`` guard would run the whole experiment again in every worker
    (and their workers), and the pool breaks. The workers run insitu's own functions only, so
    the main module is hidden from them while they start.
    """
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


@dataclass
class ScanResult:
    """The live measurement of one scan of the experiment."""

    segment_index: int
    label: str
    charge_mC: float
    current_density_mA_cm2: float | None
    half_cycle: str | None
    scan_file: str
    data: dict[str, Any] | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "segment_index": self.segment_index,
            "label": self.label,
            "charge_mC": self.charge_mC,
            "current_density_mA_cm2": self.current_density_mA_cm2,
            "half_cycle": self.half_cycle,
            "scan_file": self.scan_file,
            "error": self.error,
            **(self.data or {}),
        }


class ScanAnalyzer:
    """Reconstruct and measure scans in the background (see the module docstring).

    Parameters
    ----------
    folder : Path
        The experiment's folder.
    config : AnalysisConfig
        ``scheduler``: ``"process"`` (a local process pool of ``workers``) or a Dask
        scheduler address.
    area_cm2 : float, optional
        Electrode area, for the charge from thickness changes in the final analysis.
    """

    def __init__(
        self, folder: str | Path, config: AnalysisConfig, area_cm2: float | None = None
    ) -> None:
        self.folder = Path(folder)
        self.config = config
        self.area_cm2 = area_cm2
        self.volumes = self.folder / "volumes"
        self.live = self.folder / "analysis" / "live"
        self.volumes.mkdir(parents=True, exist_ok=True)
        self.live.mkdir(parents=True, exist_ok=True)
        self._pending: dict[int, tuple[ScanResult, Future[Any]]] = {}
        self.results: dict[int, ScanResult] = {}
        self._pristine: Path | None = None
        self._executor: Any = None
        self._client: Any = None

    # --- workers ---------------------------------------------------------------------------
    def _submit(self, *args: Any, **kwargs: Any) -> Future[Any]:
        if self.config.scheduler == "process":
            if self._executor is None:
                import multiprocessing

                # spawn, not fork: this process runs the RunEngine's loop and the emulators'
                # threads, which a forked child would inherit in an undefined state.
                self._executor = ProcessPoolExecutor(
                    max_workers=self.config.workers,
                    mp_context=multiprocessing.get_context("spawn"),
                )
            try:
                # The workers are started here, at the first submissions.
                with _without_main_module():
                    return self._executor.submit(reconstruct_and_measure, *args, **kwargs)
            except BrokenProcessPool:
                # A worker died (killed, out of memory): start a new pool for what follows.
                self._executor.shutdown(wait=False, cancel_futures=True)
                self._executor = None
                return self._submit(*args, **kwargs)
        if self._client is None:
            from distributed import Client

            self._client = Client(self.config.scheduler, timeout="20s")
        return self._client.submit(reconstruct_and_measure, *args, pure=False, **kwargs)

    def submit(
        self,
        segment_index: int,
        label: str,
        scan_file: str,
        *,
        charge_mC: float,
        current_density_mA_cm2: float | None = None,
        half_cycle: str | None = None,
        pristine: bool = False,
    ) -> None:
        """Queue a scan (the pristine one first)."""
        result = ScanResult(
            segment_index, label, charge_mC, current_density_mA_cm2, half_cycle, scan_file
        )
        volume = self.volumes / f"{segment_index:03d}.zarr"
        saved = self.live / f"{segment_index:03d}.json"
        if pristine:
            self._pristine = volume
        if saved.is_file() and _complete_marker(volume).exists():
            # Measured before a resume: keep it.
            result.data = json.loads(saved.read_text()).get("data")
            self.results[segment_index] = result
            return
        reference = None if pristine else (str(self._pristine) if self._pristine else None)
        future = self._submit(
            scan_file,
            str(volume),
            reference,
            memory_gib=self.config.memory_gib,
            method=self.config.method,
            min_crack_um3=self.config.min_crack_um3,
            area_cm2=self.area_cm2,
        )
        self._pending[segment_index] = (result, future)

    def poll(self) -> list[ScanResult]:
        """Results finished since the last call (never blocks)."""
        new: list[ScanResult] = []
        for index, (result, future) in list(self._pending.items()):
            if not future.done():
                continue
            del self._pending[index]
            try:
                result.data = future.result()
            except Exception as exc:  # a bad scan must not stop the experiment
                result.error = f"{type(exc).__name__}: {exc}"
                log.error("analysis of scan %s failed: %s", result.scan_file, result.error)
            (self.live / f"{index:03d}.json").write_text(
                json.dumps({"data": result.data, "error": result.error}, default=str)
            )
            self.results[index] = result
            new.append(result)
        return new

    def crack_onset(self, threshold_um3: float) -> bool:
        """Whether any scan measured so far has cracks grown past ``threshold_um3``."""
        self.poll()
        return any(
            (r.data or {}).get("crack_volume_um3") is not None
            and r.data["crack_volume_um3"] > threshold_um3
            for r in self.results.values()
        )

    def wait(self, timeout_s: float | None = None) -> list[ScanResult]:
        """Wait for every queued scan; returns all results in segment order."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self._pending:
            self.poll()
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{len(self._pending)} scan(s) still being analysed")
            time.sleep(0.2)
        return [self.results[k] for k in sorted(self.results)]

    @property
    def busy(self) -> int:
        """Scans queued or being analysed."""
        return len(self._pending)

    def close(self) -> None:
        """Stop the workers (queued scans are dropped)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> ScanAnalyzer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the final analysis ----------------------------------------------------------------
    def manifest(self) -> Path:
        """Write ``analysis/manifest.json`` (every reconstructed scan, pristine first)."""
        steps = []
        for index in sorted(self.results):
            r = self.results[index]
            if r.data is None:
                continue
            steps.append(
                {
                    "name": f"{index:03d} {r.label}",
                    "volume": str(Path(r.data["volume"]).resolve()),
                    "charge_mC": r.charge_mC,
                    "current_density_mA_cm2": r.current_density_mA_cm2,
                    "half_cycle": r.half_cycle,
                }
            )
        path = self.folder / "analysis" / "manifest.json"
        path.write_text(json.dumps({"steps": steps, "area_cm2": self.area_cm2}, indent=2))
        return path

    def final(self, *, psd: bool = False) -> tuple[dict[str, Any], Any]:
        """Measure every scan with one study threshold; write ``analysis/final``.

        Returns
        -------
        summary : dict
            What ``insitu analyze tomo MANIFEST --json`` prints.
        result : ExperimentResult
            The analysis itself (tables, porosity factors, crack labels).
        """
        from .tomo_analysis import analyze_path, write_analysis

        self.wait()
        path = self.manifest()
        steps, experiment, result = analyze_path(
            path,
            method=self.config.method,
            min_crack_um3=self.config.min_crack_um3,
            area_cm2=self.area_cm2,
            psd=psd,
        )
        out = self.folder / "analysis" / "final"
        return write_analysis(out, steps, experiment, result, figures=True), result
