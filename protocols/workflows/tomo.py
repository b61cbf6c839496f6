"""A simulated tomography scan end to end: virtual pellet → 2-BM sim bench → tomo_scan → files.

What ``insitu tomo-scan --sim MATERIAL`` runs; a script can call :func:`run_tomo_scan` too.
The virtual cell is first cycled to the chosen charge
(:mod:`insitu.simulators.imaging.frame_source`),
then the ordinary :func:`~insitu.protocols.plans.tomo.tomo_scan` plan runs on the simulated
stage, shutter and camera, so the Data Exchange file is written exactly as a beamline scan
would be. Next to it go the answers the analysis should find: ``FILE.truth.json`` (the
ground-truth summary) and, when small enough, ``FILE.truth.h5`` (the label volume) — never
inside the Data Exchange file, which holds only what a detector would record.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import cc3d
import h5py
import numpy as np
from bluesky import RunEngine
from bluesky.utils import RunEngineInterrupted

from insitu.simulators.beamline.faults import BeamlineFaults
from insitu.simulators.imaging.frame_source import DEFAULT_PROJECTIONS, SIZES, PelletFrameSource
from insitu.simulators.pellet.phases import Phase

from ..bench import BenchSpec, open_bench
from ..errors import InvalidInputError, OutputExistsError
from ..plans.device_failures import DeviceFailedError
from ..plans.tomo import tomo_scan
from ..storage.catalog import RunStore
from .interrupts import abort_on_signals

__all__ = ["TRUTH_LABELS_MAX_BYTES", "SuspensionCounter", "run_tomo_scan", "truth_paths"]

#: The label volume is written next to the scan only up to this size (the small pellet is
#: 1 MB; the full one, 4.6 GB, is regenerated from the seed instead).
TRUTH_LABELS_MAX_BYTES = 64 << 20

#: Called with (frames done, frames in total) as frames arrive.
FrameProgress = Callable[[int, int], None]


def truth_paths(out: str | Path) -> tuple[Path, Path]:
    """``FILE.truth.json`` and ``FILE.truth.h5`` next to the scan file ``FILE.h5``."""
    out = Path(out)
    stem = out.with_suffix("") if out.suffix in (".h5", ".hdf5", ".hdf") else out
    return stem.with_name(stem.name + ".truth.json"), stem.with_name(stem.name + ".truth.h5")


def _check_out(out: Path, overwrite: bool) -> None:
    targets = [out, *truth_paths(out)]
    if out.exists() and not overwrite:
        raise OutputExistsError(
            f"{out} exists; a scan file is never overwritten by accident — choose another "
            "--out or pass --overwrite"
        )
    if out.is_dir():
        raise InvalidInputError(f"--out must be a file name (FILE.h5), and {out} is a folder")
    if overwrite:
        for path in targets:
            path.unlink(missing_ok=True)


class SuspensionCounter:
    """A RunEngine subscriber counting the suspensions its runs recorded (a beam loss).

    Needs ``RE.record_interruptions = True``: the RunEngine then writes each pause,
    suspension and resume into the run's ``interruptions`` stream; a suspension's entry is
    its justification (e.g. the ring current fell below the floor).
    """

    def __init__(self) -> None:
        self.suspensions = 0
        self._streams: set[str] = set()

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        if name == "descriptor" and doc.get("name") == "interruptions":
            self._streams.add(doc["uid"])
        elif name == "event" and doc.get("descriptor") in self._streams:
            if doc["data"].get("interruption") not in ("pause", "resume"):
                self.suspensions += 1


def _frame_counter(total: int, progress: FrameProgress) -> Callable[[str, dict], None]:
    done = 0

    def count(name: str, doc: dict) -> None:
        nonlocal done
        if name == "event":
            done += 1
            progress(done, total)

    return count


def _ground_truth(source: PelletFrameSource) -> tuple[dict[str, Any], np.ndarray | None]:
    """The truth summary and, when small enough to keep, the label volume.

    With the labels, the summary also counts the connected components of the crack voxels
    (``n_crack_components``): the simulator's cracks can grow into one another, and a
    measurement that counts connected components can at best find this many.
    """
    truth = dict(source.ground_truth)
    nz, ny, nx = source.geometry.shape
    if nz * ny * nx > TRUTH_LABELS_MAX_BYTES:
        return truth, None
    labels = source.labels()
    crack = np.isin(labels, [Phase.CRACK, Phase.CRACK_LITHIUM])
    truth["n_crack_components"] = int(
        cc3d.connected_components(crack, connectivity=26, return_N=True)[1]
    )
    return truth, labels


def _write_truth(
    source: PelletFrameSource, out: Path, truth: dict[str, Any], labels: np.ndarray | None
) -> dict[str, str]:
    """Ground truth next to the scan: the summary as JSON, the labels as HDF5 if kept."""
    json_path, h5_path = truth_paths(out)
    json_path.write_text(json.dumps(truth, indent=2) + "\n")
    written = {"truth_json": str(json_path)}
    if labels is not None:
        with h5py.File(h5_path, "w") as f:
            ds = f.create_dataset("/labels", data=labels, compression="gzip")
            ds.attrs["axes"] = "z:y:x"
            ds.attrs["phases"] = json.dumps({p.name: int(p) for p in Phase})
            ds.attrs["voxel_m"] = source.geometry.voxel_m
            ds.attrs["rotation_axis_column"] = source.rotation_axis_column
            ds.attrs["description"] = (
                "ground-truth phase labels of the simulated pellet; row z is detector row z, "
                "column x is detector column x, the rotation axis at rotation_axis_column"
            )
        written["truth_labels"] = str(h5_path)
    return written


def frames_kept(path: Path) -> str:
    """What a scan file holds, in words (after a scan that ended early)."""
    if not path.is_file():
        return f"no frames were written ({path} does not exist)"
    counts = {}
    with h5py.File(path, "r") as f:
        for name, dataset in (
            ("projection(s)", "/exchange/data"),
            ("flat(s)", "/exchange/data_white"),
            ("dark(s)", "/exchange/data_dark"),
        ):
            counts[name] = int(f[dataset].shape[0]) if dataset in f else 0
    held = ", ".join(f"{n} {name}" for name, n in counts.items())
    return f"the frames recorded are kept in {path} ({held})"


def _injected(bench: Any, faults: BeamlineFaults | None, suspended: SuspensionCounter) -> dict:
    """``beamline_faults`` of the summary: what was asked for and what it did."""
    if faults is None or bench.beamline_faults is None:
        return {}
    return {
        "beamline_faults": {
            "asked": str(faults),
            **bench.beamline_faults.injected,
            "suspensions": suspended.suspensions,
        }
    }


def run_tomo_scan(
    material: str,
    out: str | Path,
    *,
    charge_mC: float = 0.0,
    size: str = "small",
    n_projections: int | None = None,
    exposure_s: float = 0.1,
    mode: str = "step",
    n_darks: int = 10,
    n_flats: int = 10,
    speedup: float = 1e3,
    seed: int = 0,
    overwrite: bool = False,
    store: RunStore | None = None,
    workdir: str | Path | None = None,
    md: Mapping[str, Any] | None = None,
    precompute_progress: bool | None = None,
    progress: FrameProgress | None = None,
    faults: BeamlineFaults | None = None,
) -> dict[str, Any]:
    """Scan a virtual pellet cycled to ``charge_mC`` on the simulated 2-BM bench.

    Parameters
    ----------
    material : str
        Electrolyte preset.
    out : str or Path
        The Data Exchange file to write (``FILE.h5``); the ground truth goes next to it.
    charge_mC : float
        Charge passed through the in-situ protocol before the scan (0: pristine).
    size : {"small", "full"}
        Virtual pellet geometry (see :mod:`insitu.simulators.imaging.frame_source`).
    n_projections : int, optional
        Projections over 180° (default 180 small, 1500 full).
    exposure_s : float
        Exposure per frame.
    mode : {"step", "fly"}
        Scan mode of :func:`~insitu.protocols.plans.tomo.tomo_scan`.
    n_darks, n_flats : int
        Darks and flats before (and again after) the projections.
    speedup : float
        Simulated seconds per real second of the bench's clock.
    seed : int
        Seed of cracks, microstructure and noise.
    overwrite : bool
        Replace an existing ``out`` (and its truth files).
    store : RunStore, optional
        Also store the run; its frames stay in ``out`` and are referenced.
    workdir : str or Path, optional
        Scratch folder for the full-size line-integral store (default: the system's).
    md : mapping, optional
        Extra start metadata.
    precompute_progress : bool, optional
        Progress bar for the precompute (default: full size only).
    progress : callable, optional
        ``progress(done, total)`` per recorded frame.
    faults : BeamlineFaults, optional
        Faults of the simulated beamline (:mod:`insitu.simulators.beamline.faults`): frames
        lost (retaken), a stage move that stalls, beam losses (the scan suspends and
        resumes); frames and moves counted from the scan's first frame.

    Returns
    -------
    dict
        ``file``, ``run_uid``, ``material``, ``charge_mC`` (as asked; the ground truth has
        the charge actually passed, less if the cell shorted), ``n_projections``, ``mode``,
        ``shape`` (projections: angles, rows, cols), ``ground_truth``, ``truth_json`` (and
        ``truth_labels`` when written), ``elapsed_s``; with ``faults``, also
        ``beamline_faults``: ``asked``, ``frames_lost``, ``frames_retaken``,
        ``stage_stalls``, ``beam_losses``, ``beam_back`` and ``suspensions`` (of the scan).

    Raises
    ------
    DeviceFailedError
        A device failed during the scan (a stalled stage, a frame lost three times): its
        reason, and what the scan file kept.
    """
    if mode not in ("step", "fly"):
        raise ValueError(f"mode must be 'step' or 'fly', got {mode!r}")
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    if n_darks < 1 or n_flats < 1:
        raise ValueError("give at least one dark and one flat (they normalise the projections)")
    out = Path(out).expanduser().resolve()
    _check_out(out, overwrite)
    t0 = time.perf_counter()
    n = DEFAULT_PROJECTIONS[size] if n_projections is None else int(n_projections)
    source = PelletFrameSource(
        material,
        charge_mC,
        size=size,
        n_projections=n,
        seed=seed,
        exposure_s=exposure_s,
        workdir=workdir,
        progress=precompute_progress,
    )
    try:
        # The bench does not close the source: its ground truth is written after the scan.
        spec = BenchSpec(
            tomography="sim",
            frame_source=source,
            scans=out.parent,
            metadata=source.metadata,
            speedup=speedup,
            beamline_faults=faults,
        )
        suspended = SuspensionCounter()
        with open_bench(spec) as bench:
            # The camera writes exactly the file asked for, not its numbered default.
            bench.camera.file_name.put(out.name)
            # No bluesky SIGINT handler: during a suspension (a beam that does not come back)
            # its first Ctrl-C waits for a checkpoint that never comes; one Ctrl-C (SIGTERM,
            # SIGHUP) aborts the scan instead, the shutter closed and the file kept.
            RE = RunEngine({}, context_managers=[])
            # A beam loss's suspension goes into the run ('interruptions') and is counted.
            RE.record_interruptions = True
            RE.subscribe(suspended)
            if store is not None:
                store.subscribe(RE)
            if progress is not None:
                RE.subscribe(_frame_counter(n + 2 * (n_darks + n_flats), progress))
            truth, labels = _ground_truth(source)
            meta = {
                "simulated": True,
                "material": source.material,
                "sample": f"virtual {source.material} pellet",
                "charge_requested_mC": float(charge_mC),
                "charge_passed_mC": truth["charge_passed_mC"],
                "size": size,
                "seed": seed,
                "ground_truth": truth,
                **(md or {}),
            }
            plan = tomo_scan(
                bench.camera,
                bench.stage,
                bench.shutter,
                n_projections=n,
                exposure_s=exposure_s,
                n_darks=n_darks,
                n_flats=n_flats,
                mode=mode,  # type: ignore[arg-type]
                ring_current=bench.ring_current,
                md=meta,
            )
            try:
                with abort_on_signals(RE) as signals:
                    (uid,) = RE(plan)
            except RunEngineInterrupted:
                if RE.state == "paused":  # paused from Python (RE.request_pause)
                    RE.abort(signals.reason or "interrupted by the user")
                raise KeyboardInterrupt from None
            if store is not None:
                store.raise_errors()
            written = _write_truth(source, out, truth, labels)
            injected = _injected(bench, faults, suspended)
    except DeviceFailedError as exc:
        # The bench is closed, and with it the file: say what it kept.
        raise DeviceFailedError(f"{exc}; the scan stopped there: {frames_kept(out)}") from exc
    finally:
        source.close()
    rows, cols = source.shape
    return {
        "file": str(out),
        "run_uid": uid,
        "material": source.material,
        "charge_mC": float(charge_mC),
        "n_projections": n,
        "mode": mode,
        "shape": [n, rows, cols],
        "ground_truth": truth,
        **written,
        "elapsed_s": round(time.perf_counter() - t0, 3),
        "stored": store is not None,
        **injected,
    }
