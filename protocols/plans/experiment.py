"""The in-situ experiment as one Bluesky plan over a potentiostat and a tomography bench.

:func:`insitu_experiment` runs the segments the protocol state machine
(:mod:`insitu.protocols.plans.experiment_protocol`) hands it, one Bluesky run per segment, linked by
``experiment_uid``, ``segment_index``, ``step`` and ``cycle`` in every start document:

- **EIS** (before, to confirm a short, after): potentiostatic EIS on the potentiostat flyer
  (stream ``eis``);
- **half-cycle** (plate or strip): a galvanostatic hold with the ±``voltage_limit_V`` window
  (stream ``electrochem``); the plan watches the points as they arrive and stops at a voltage
  collapse (a short), which switches the cell off;
- **tomogram**: the existing :func:`~insitu.protocols.plans.tomo.tomo_scan` (darks, flats,
  projections, flats, darks) while the cell rests at open circuit; the open-circuit voltage
  is recorded over the scan into the same run's ``electrochem`` stream.

Safety and interruptions:

- electrochemistry segments run non-rewindable: a pause (Ctrl-C) or a suspension never
  replays a kickoff, and pausing never switches the cell off (the potentiostat is not a
  movable the RunEngine stops); aborting, failing or stopping the plan does (every technique
  is wrapped so that the cell is off whatever ends the plan);
- the beam-loss suspender is installed by ``tomo_scan`` for the scan only: a beam loss during
  plating does not interrupt the plating;
- every segment's start, run uid and end go to the journal
  (:mod:`insitu.protocols.storage.journal`) as they happen, so a killed experiment resumes
  at the next segment (``insitu experiment resume``).

Devices are passed as objects (or by name under bluesky-queueserver); ``config`` is the
JSON-friendly dict of :class:`~insitu.protocols.experiment_config.ExperimentConfig`.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any, Protocol

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import numpy as np
import pandas as pd
from bluesky.utils import Msg

from insitu.analysis.electrochem.shorts import find_short
from insitu.instruments.devices.potentiostat import SampleLimits
from insitu.instruments.errors import LimitError, UnsupportedTechniqueError
from insitu.instruments.potentiostat import GalvanostaticHold, Impedance, OpenCircuit

from ..experiment_config import (
    ExperimentConfig,
    ExperimentError,
    validate_config,
)
from ..storage.journal import ExperimentJournal, read_journal
from .electrochem import _start_metadata, run_technique
from .experiment_protocol import (
    Outcome,
    Segment,
    advance,
    initial_state,
    note_crack_onset,
    pending_segment,
)
from .tomo import tomo_scan

__all__ = [
    "ExperimentObserver",
    "charge_passed_C",
    "insitu_experiment",
    "new_experiment_id",
    "z_at_lowest_frequency",
]

Plan = Generator[Msg, Any, Any]

#: Longest rest recorded during one scan; the recording is stopped when the scan ends.
_OCV_MAX_S = 24 * 3600.0
#: Collect the open-circuit points after every this many frames of a scan.
_OCV_COLLECT_EVERY = 25


class ExperimentObserver(Protocol):
    """What the command line (or a notebook) learns while the experiment runs.

    All methods are optional in practice: the plan calls only those the object has.
    """

    def segment_started(self, segment: Segment, state: dict[str, Any]) -> None: ...

    def segment_done(self, segment: Segment, outcome: Outcome, state: dict[str, Any]) -> None: ...

    def crack_onset(self) -> bool: ...


def new_experiment_id(sample: str) -> str:
    """``SAMPLE-YYYYmmdd-HHMMSS-xxxx``: sortable, unique, safe as a folder name."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in sample)[:40] or "sample"
    return f"{safe}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def charge_passed_C(points: pd.DataFrame) -> float:
    """∫|I| dt of a time series (trapezoids over the instrument's times), C.

    The first point stands for the interval before it (the instruments report a point at the
    end of each sampling interval, counted from the start of the technique).
    """
    if len(points) == 0:
        return 0.0
    t = points["time_s"].to_numpy(float)
    i = np.abs(points["current_A"].to_numpy(float))
    first = i[0] * max(t[0], 0.0)
    return float(first + np.sum(0.5 * (i[1:] + i[:-1]) * np.diff(t)))


def z_at_lowest_frequency(spectrum: pd.DataFrame) -> float | None:
    """|Z| at the spectrum's lowest frequency, Ω (what confirms a short); None if empty."""
    if len(spectrum) == 0:
        return None
    row = spectrum.loc[spectrum["frequency_Hz"].idxmin()]
    return float(math.hypot(row["z_real_ohm"], row["z_imag_ohm"]))


def _call(observer: Any, name: str, *args: Any) -> Any:
    method = getattr(observer, name, None)
    return None if method is None else method(*args)


def insitu_experiment(
    potentiostat: Any,
    camera: Any = None,
    stage: Any = None,
    shutter: Any = None,
    ring_current: Any = None,
    *,
    config: dict[str, Any],
    experiment_id: str | None = None,
    folder: str | None = None,
    poll_s: float = 0.05,
    observer: Any = None,
) -> Plan:
    """Run (or continue) an in-situ experiment: EIS, scans, plating and stripping to failure.

    Parameters
    ----------
    potentiostat : PotentiostatDevice
        The cell's potentiostat flyer.
    camera, stage, shutter, ring_current
        The tomography bench (:func:`insitu.simulators.beamline.devices.sim_tomo_bench`, its EPICS
        flavour or the beamline's EPICS devices); ``camera=None`` skips the tomograms (an
        electrochemistry-only rehearsal). ``ring_current`` arms the beam-loss suspender
        during scans.
    config : dict
        The experiment (:class:`~insitu.protocols.experiment_config.ExperimentConfig` as a
        dict, or the model itself).
    experiment_id : str, optional
        A new id by default. If the experiment's folder holds a journal, the experiment
        continues from its last completed segment.
    folder : str, optional
        The experiment's folder (journal, scans); default ``<config.output>/<id>``.
    poll_s : float
        Real seconds between collections while a technique runs.
    observer : optional
        An :class:`ExperimentObserver` (progress, analysis-driven rules).

    Returns
    -------
    str
        The experiment id.
    """
    cfg = validate_config(config)
    experiment_id = experiment_id or new_experiment_id(cfg.sample)
    where = Path(folder) if folder else Path(cfg.output) / experiment_id
    journal = ExperimentJournal(where)
    if journal.path.exists():
        history = read_journal(where)
        if history.interrupted is not None:
            raise ExperimentError(
                f"experiment {experiment_id} was interrupted during segment "
                f"{history.interrupted['index']} ({history.interrupted['label']}); run "
                f"`insitu experiment resume {experiment_id}` to settle it first"
            )
        state = history.last_state or initial_state()
        finished = history.finished is not None
    else:
        journal.create(experiment_id, cfg.to_dict())
        state = initial_state()
        finished = False

    base_md: dict[str, Any] = {
        "experiment_uid": experiment_id,
        "experiment_folder": str(where.resolve()),
        "sample": cfg.sample,
        "material": cfg.material,
        "area_cm2": cfg.geometry.area_cm2,
        "simulated": cfg.devices.simulated,
    }
    if cfg.geometry.thickness_cm is not None:
        base_md["thickness_cm"] = cfg.geometry.thickness_cm
    if cfg.operator:
        base_md["operator"] = cfg.operator

    while (segment := pending_segment(state)) is not None:
        if not state["crack_onset"] and _call(observer, "crack_onset"):
            state = note_crack_onset(state)
        journal.start(segment.to_dict())
        _call(observer, "segment_started", segment, state)
        md = {
            **base_md,
            "experiment_segment": segment.kind,
            "segment_index": segment.index,
            "segment_label": segment.label,
            "step": segment.step,
            "cycle": segment.cycle,
            "half_cycle": segment.half_cycle,
            "current_density_mA_cm2": segment.current_density_mA_cm2,
            "segment_tag": segment.tag,
            "charge_before_mC": state["charge_C"] * 1e3,
        }
        outcome = yield from _segment_plan(
            segment, cfg, md, journal, potentiostat, camera, stage, shutter, ring_current, poll_s
        )
        state = advance(state, segment, outcome, cfg)
        journal.done(segment.to_dict(), outcome.to_dict(), state)
        _call(observer, "segment_done", segment, outcome, state)
    if not finished:
        journal.finished(state.get("end_reason") or "done")
    return experiment_id


def _segment_plan(
    segment: Segment,
    cfg: ExperimentConfig,
    md: dict[str, Any],
    journal: ExperimentJournal,
    potentiostat: Any,
    camera: Any,
    stage: Any,
    shutter: Any,
    ring_current: Any,
    poll_s: float,
) -> Plan:
    if segment.kind == "tomogram":
        if camera is None:
            return Outcome("skipped", extra={"why": "no tomography bench"})
        return (
            yield from tomogram_at_rest(
                potentiostat,
                camera,
                stage,
                shutter,
                ring_current,
                cfg=cfg,
                md=md,
                on_open=lambda uid: journal.run_opened(segment.index, uid),
            )
        )
    if segment.kind in ("plate", "strip"):
        plan = half_cycle(
            potentiostat,
            segment,
            cfg=cfg,
            md=md,
            on_open=lambda uid: journal.run_opened(segment.index, uid),
            poll_s=poll_s,
        )
    else:
        plan = eis_segment(
            potentiostat,
            cfg=cfg,
            md=md,
            on_open=lambda uid: journal.run_opened(segment.index, uid),
            poll_s=poll_s,
        )
    # Electrochemistry is never rewound: a pause or a suspension resumes where it was
    # instead of replaying a kickoff (which would pass current twice).
    return (yield from bpp.rewindable_wrapper(plan, False))


def eis_segment(
    potentiostat: Any,
    *,
    cfg: ExperimentConfig,
    md: dict[str, Any],
    on_open: Any = None,
    poll_s: float = 0.05,
) -> Plan:
    """One EIS run; the outcome carries |Z| at the lowest frequency (for short confirmation).

    An instrument without EIS (a SourceMeter) skips it: no run, outcome ``unsupported``.
    """
    eis_cfg = cfg.schedule.eis
    technique = Impedance(
        frequency_start_Hz=eis_cfg.f_start_Hz,
        frequency_stop_Hz=eis_cfg.f_stop_Hz,
        points_per_decade=eis_cfg.points_per_decade,
        amplitude=eis_cfg.amplitude_V,
    )
    driver = getattr(potentiostat, "driver", None)
    if driver is not None:
        try:
            technique = _within_frequency_range(driver, technique)
            driver.check(technique)
        except UnsupportedTechniqueError as exc:
            return Outcome("unsupported", extra={"why": str(exc)})
    meta = _start_metadata("eis", potentiostat, technique.__dict__, md)
    uid = yield from bps.open_run(meta)
    if on_open is not None:
        on_open(uid)
    reason = yield from run_technique(potentiostat, technique, poll_s=poll_s)
    z_low = z_at_lowest_frequency(potentiostat.points())
    yield from bps.close_run(reason=reason)
    return Outcome(reason or "completed", z_low_ohm=z_low, run_uid=uid)


def _within_frequency_range(driver: Any, technique: Impedance) -> Impedance:
    """Start at the instrument's highest frequency if it cannot reach the configured one."""
    limits = getattr(driver, "limits", None)
    top = getattr(limits, "max_frequency_Hz", None)
    if top is not None and technique.frequency_start_Hz > top:
        from dataclasses import replace

        return replace(technique, frequency_start_Hz=float(top))
    return technique


def half_cycle(
    potentiostat: Any,
    segment: Segment,
    *,
    cfg: ExperimentConfig,
    md: dict[str, Any],
    on_open: Any = None,
    poll_s: float = 0.05,
) -> Plan:
    """Plate or strip at the segment's current, stopping at a short or past the cut-off.

    Returns
    -------
    Outcome
        ``end_reason``: ``completed``, ``voltage_limit`` (the cut-off), ``short`` (stopped at
        a voltage collapse), ``out_of_range`` (the instrument cannot source the current;
        nothing is sent and no run is made) or ``failed``; ``charge_C`` from the points.
    """
    sched = cfg.schedule
    technique = GalvanostaticHold(
        current_A=float(segment.current_A or 0.0),
        duration_s=float(segment.duration_s or sched.half_cycle_s),
        interval_s=sched.interval_s,
        voltage_min_V=-sched.voltage_limit_V,
        voltage_max_V=sched.voltage_limit_V,
    )
    # The sample's own limit, checked before anything is sent (the configuration was
    # validated against it; this guards a segment built some other way).
    j_max = cfg.limits.max_current_density_mA_cm2
    density = abs(technique.current_A) / (cfg.geometry.area_cm2 * 1e-3)  # mA/cm²
    if j_max is not None and density > j_max * (1 + 1e-9):
        why = (
            f"{density:g} mA/cm² is above this sample's limit "
            f"(limits.max_current_density_mA_cm2 = {j_max:g}); nothing was sent"
        )
        return Outcome("out_of_range", extra={"why": why})
    if hasattr(potentiostat, "sample_limits"):
        # ... and enforced again in the device: it refuses a technique beyond them and ends
        # one whose points leave the sample's voltage window.
        potentiostat.sample_limits = SampleLimits(
            max_abs_current_A=None if j_max is None else j_max * cfg.geometry.area_cm2 * 1e-3,
            max_abs_voltage_V=cfg.limits.max_voltage_V,
        )
    driver = getattr(potentiostat, "driver", None)
    if driver is not None:
        try:
            driver.check(technique)
            if getattr(potentiostat, "sample_limits", None) is not None:
                potentiostat.sample_limits.check(technique, potentiostat.name)
        except LimitError as exc:
            return Outcome("out_of_range", extra={"why": str(exc)})

    def short_in(points: pd.DataFrame) -> str | None:
        if len(points) < 3:
            return None
        event = find_short(points, drop_fraction=sched.drop_fraction, min_current_A=1e-12)
        return None if event is None else "short"

    meta = _start_metadata("galvanostatic_hold", potentiostat, technique.__dict__, md)
    uid = yield from bps.open_run(meta)
    if on_open is not None:
        on_open(uid)
    reason = yield from run_technique(potentiostat, technique, stop_when=short_in, poll_s=poll_s)
    points = potentiostat.points()
    yield from bps.close_run(reason=reason)
    duration = float(points["time_s"].iloc[-1]) if len(points) else 0.0
    return Outcome(
        reason or "completed",
        charge_C=charge_passed_C(points),
        short=reason == "short",
        run_uid=uid,
        extra={
            "points": len(points),
            "duration_s": duration,
            "v_end_V": float(points["voltage_V"].iloc[-1]) if len(points) else None,
        },
    )


def tomogram_at_rest(
    potentiostat: Any,
    camera: Any,
    stage: Any,
    shutter: Any,
    ring_current: Any = None,
    *,
    cfg: ExperimentConfig,
    md: dict[str, Any],
    on_open: Any = None,
) -> Plan:
    """A tomography scan while the cell rests at open circuit, OCV recorded in the run.

    The scan is :func:`~insitu.protocols.plans.tomo.tomo_scan` with its beam-loss
    suspender; an open-circuit recording on the potentiostat starts as the run opens, its
    points are collected into the run's ``electrochem`` stream every few frames and at the end,
    and it is stopped when the scan ends, whatever ends it.
    """
    scan_cfg = cfg.scan
    ocv = OpenCircuit(duration_s=_OCV_MAX_S, interval_s=cfg.schedule.ocv_interval_s)
    opened: dict[str, Any] = {"uid": None, "ocv": False, "saves": 0}
    with_ocv = potentiostat is not None and _supports(potentiostat, ocv)

    def start_ocv() -> Plan:
        yield from bps.prepare(potentiostat, ocv, wait=True)
        yield from bps.kickoff(potentiostat, wait=True)
        opened["ocv"] = True

    def stop_ocv() -> Plan:
        if opened["ocv"]:
            potentiostat.stop()
            opened["ocv"] = False
            yield from bps.collect(potentiostat, return_payload=False)
        else:
            yield from bps.null()

    def msg_proc(msg: Msg) -> tuple[Any, Any]:
        if msg.command == "open_run":

            def head() -> Plan:
                uid = yield msg
                opened["uid"] = uid
                if on_open is not None:
                    on_open(uid)
                return uid

            return head(), (start_ocv() if with_ocv else None)
        if msg.command == "close_run" and with_ocv:

            def before_close() -> Plan:
                yield from stop_ocv()
                return (yield msg)

            return before_close(), None
        if msg.command == "save" and with_ocv and opened["ocv"]:
            opened["saves"] += 1
            if opened["saves"] % _OCV_COLLECT_EVERY == 0:
                return None, bps.collect(potentiostat, return_payload=False)
        return None, None

    def make_sure_ocv_stopped() -> Plan:
        # A failed or aborted scan: end the recording (no current flows at open circuit, but
        # the instrument must be free for the next technique).
        if opened["ocv"]:
            potentiostat.stop()
            opened["ocv"] = False
        yield from bps.null()

    scan = tomo_scan(
        camera,
        stage,
        shutter,
        n_projections=cfg.n_projections,
        exposure_s=scan_cfg.exposure_s,
        n_darks=scan_cfg.n_darks,
        n_flats=scan_cfg.n_flats,
        mode=scan_cfg.mode,
        ring_current=ring_current,
        min_current_mA=scan_cfg.min_ring_current_mA,
        md={**md, "plan_name": "tomo_scan"},
    )
    yield from bpp.finalize_wrapper(bpp.plan_mutator(scan, msg_proc), make_sure_ocv_stopped())
    ocv_points = potentiostat.points() if with_ocv else pd.DataFrame()
    return Outcome(
        "completed",
        run_uid=opened["uid"],
        scan_file=str(camera.full_file_name.get()),
        extra={
            "ocv_points": len(ocv_points),
            "duration_s": float(ocv_points["time_s"].iloc[-1]) if len(ocv_points) else 0.0,
            "ocv_V": float(ocv_points["voltage_V"].median()) if len(ocv_points) else None,
        },
    )


def _supports(potentiostat: Any, technique: Any) -> bool:
    driver = getattr(potentiostat, "driver", None)
    return driver is None or bool(driver.supports(technique))
