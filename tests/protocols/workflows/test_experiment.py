"""The in-situ experiment end to end on the simulated bench.

One virtual cell sits behind the potentiostat emulator (TCP) and is imaged by the simulated
beamline (in-process, or over EPICS). Known answers: the paper's in-situ charge-to-failure
(REFERENCE.md: 25 / 35 / 40 / 90 mC), Faraday's law for the electrode thickness change the
scans' ground truth shows, the number of points of a 30 min half-cycle at 10 s, and the
catalog holding every segment exactly once after kills and resumes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from insitu.protocols.storage.catalog import RunStore
from insitu.protocols.storage.journal import read_journal
from insitu.protocols.workflows.experiment import experiment_status, run_experiment

pytestmark = pytest.mark.slow

AREA_CM2 = np.pi * 0.15**2
FARADAY = 96485.33212
LI_MOLAR_VOLUME_M3 = 6.94e-3 / 534.0  # M/ρ of Li: 13.0 cm³/mol


def config(tmp_path: Path, **sections) -> dict:
    """A short experiment: small scans with few projections, quick to simulate."""
    base = {
        "sample": "t",
        "material": "A-LPS",
        # EIS down to 1 Hz, not 0.1 Hz: the sweep takes a fraction of the time, and the
        # impedance's collapse after the short shows there as well.
        "schedule": {"current_densities_mA_cm2": [0.04, 0.08, 0.1], "eis": {"f_stop_Hz": 1.0}},
        "scan": {"n_projections": 60, "n_darks": 4, "n_flats": 4},
        "analysis": {"enabled": False},
        "catalog": {"data": str(tmp_path / "data")},
        "output": str(tmp_path / "experiments"),
        "devices": {"potentiostat": "sim", "tomography": "sim"},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return base


def experiment_runs(data: Path, experiment_id: str) -> list:
    with RunStore(data) as store:
        listed = store.runs()
        runs = [store.load(uid) for uid in listed["uid"]]
        runs = [r for r in runs if r.start.get("experiment_uid") == experiment_id]
        for r in runs:  # read the streams while the catalog is open
            r.cached = {}
            for name in ("electrochem", "eis", "projections", "interruptions"):
                try:
                    r.cached[name] = r.stream(name)
                except Exception:
                    r.cached[name] = None
    return sorted(runs, key=lambda r: r.start["segment_index"])


def truth(scan_file: str) -> dict:
    return json.loads(Path(scan_file).with_suffix(".truth.json").read_text())


def thickness_m(gt: dict) -> tuple[float, float]:
    e = gt["electrode_thickness_m"]
    return e["working"], e["counter"]


# --- end to end, in-process beamline, analysis and report ----------------------------------
def test_experiment_end_to_end_on_the_simulated_bench(tmp_path):
    cfg = config(tmp_path, analysis={"enabled": True})
    result = run_experiment(cfg, experiment_id="e2e", out=None)

    # The cell shorted during the strip at 0.08 mA/cm², at the paper's in-situ charge.
    assert result["end_reason"] == "short"
    assert result["ccd_mA_cm2"] == pytest.approx(0.08)
    assert result["charge_to_failure_mC"] == pytest.approx(25.0, rel=0.10)

    runs = experiment_runs(tmp_path / "data", "e2e")
    kinds = [r.start["experiment_segment"] for r in runs]
    assert kinds == [
        "eis_before",
        "tomogram",
        "plate",
        "tomogram",
        "strip",
        "tomogram",
        "plate",
        "tomogram",
        "strip",
        "eis_confirm",
        "tomogram",
        "eis_after",
    ]
    assert [r.start["segment_index"] for r in runs] == list(range(len(runs)))
    assert all(r.stop["exit_status"] == "success" for r in runs)
    plates = [r for r in runs if r.start["experiment_segment"] == "plate"]
    for run in plates:
        points = run.cached["electrochem"]
        assert len(points) == 180  # 30 min at 10 s, no short
        j = run.start["current_density_mA_cm2"]
        assert points["current_A"].median() == pytest.approx(j * 1e-3 * AREA_CM2, rel=1e-6)
        assert run.start["half_cycle"] == "plate"
    scans = [r for r in runs if r.start["experiment_segment"] == "tomogram"]
    for run in scans:
        # The cell rested at open circuit over the scan, and the OCV was recorded in the run.
        ocv = run.cached["electrochem"]
        assert ocv is not None and len(ocv) >= 1
        assert np.all(ocv["current_A"] == 0)
        assert len(run.cached["projections"]) == 60
    # EIS before is the intact cell, after the short its low-frequency impedance collapsed.
    before, after = runs[0].cached["eis"], runs[-1].cached["eis"]
    z = lambda s: np.hypot(s["z_real_ohm"], s["z_imag_ohm"]).iloc[-1]  # noqa: E731
    assert z(after) < 0.5 * z(before)

    # Each scan imaged the cell as it was when the scan started: the crack volume of the
    # ground truth grows with the charge passed, and the last (failed) scan has cracks.
    truths = [truth(r.start["data_file"]) for r in scans]
    charge = [t["charge_passed_mC"] for t in truths]
    assert charge == sorted(charge) and charge[0] == 0
    cracks = [t["crack_volume_m3"] for t in truths]
    assert cracks[0] == 0 and cracks[-1] > 0
    assert truths[-1]["shorted"]

    # Scans were reconstructed and measured as they came in; the final analysis and the
    # report are in the experiment's folder.
    folder = Path(result["folder"])
    steps = pd.read_csv(folder / "analysis" / "final" / "steps.csv")
    assert len(steps) == len(scans)
    assert steps["crack_volume_um3"].iloc[0] == 0
    assert steps["crack_volume_um3"].iloc[-1] > 0
    assert steps["porosity"].iloc[0] == pytest.approx(truths[0]["porosity"], abs=0.02)
    html = Path(result["report"]).read_text()
    assert "A-LPS" in html and html.count("<img") >= 5
    status = experiment_status("e2e", tmp_path / "experiments")
    assert status["finished"] == "short" and status["segments_done"] == len(runs)


# --- the same plan over EPICS --------------------------------------------------------------
def test_experiment_over_the_epics_beamline_images_the_same_cell(tmp_path):
    cfg = config(
        tmp_path,
        schedule={"current_densities_mA_cm2": [0.04]},
        devices={"potentiostat": "sim", "tomography": "sim-epics"},
    )
    result = run_experiment(cfg, experiment_id="epics", out=None, report=False)
    assert result["end_reason"] == "schedule_complete"
    runs = experiment_runs(tmp_path / "data", "epics")
    scans = [r for r in runs if r.start["experiment_segment"] == "tomogram"]
    assert len(scans) == 3
    assert all(len(r.cached["projections"]) == 60 for r in scans)
    pristine, plated, stripped = (truth(r.start["data_file"]) for r in scans)
    # The IOC (another process) imaged the cell the emulator drives: after plating 5.09 mC
    # the counter electrode grew and the working one thinned by Faraday's law.
    plate = next(r for r in runs if r.start["experiment_segment"] == "plate")
    points = plate.cached["electrochem"]
    q = float(np.sum(points["current_A"]) * 10.0)  # 180 points of 10 s
    dh = LI_MOLAR_VOLUME_M3 * q / (FARADAY * AREA_CM2 * 1e-4)
    w0, c0 = thickness_m(pristine)
    w1, c1 = thickness_m(plated)
    assert c1 - c0 == pytest.approx(dh, rel=0.02)
    assert w0 - w1 == pytest.approx(dh, rel=0.02)
    w2, c2 = thickness_m(stripped)
    assert (w2, c2) == pytest.approx((w0, c0), abs=0.02 * dh)


# --- interrupting the plating shows in the next scan ----------------------------------------
def stop_plating_after(points: int, stopped: dict | None = None):
    """An observer factory: stop the first plating once it has ``points`` points.

    ``stopped["off_wall"]`` gets the wall-clock time at which :meth:`stop` returned, that
    is when the cell was off, and ``stopped["last_arrival_wall"]`` when the device had
    received its last points.
    """

    def factory(bench):
        class Stopper:
            def segment_started(self, segment, state):
                if segment.kind != "plate" or segment.step != 0:
                    return

                def stop():
                    deadline = time.monotonic() + 60
                    while bench.potentiostat.n_points < points and time.monotonic() < deadline:
                        time.sleep(0.005)
                    bench.potentiostat.stop()
                    if stopped is not None:
                        stopped["off_wall"] = time.time()
                        # When the device received its last chunk (the stored events'
                        # ``time`` is when the plan collected them, later).
                        stopped["last_arrival_wall"] = bench.potentiostat._arrivals[-1]

                threading.Thread(target=stop, daemon=True).start()

        return Stopper()

    return factory


def test_interrupting_the_plating_early_shows_in_the_next_scan(tmp_path):
    """A plating stopped after 60 of its 180 points: the next scan shows the charge it
    passed, not the whole half-cycle's (Faraday's law for both; the uninterrupted
    plating's 180 points are checked in the end-to-end test).

    The cell plates on until it is switched off, a little after the last point it
    recorded. At 2000 × speed, every real millisecond of that is 2 s of plating, so on a
    loaded machine the charge the points record falls short of what the cell passed by a
    few points (CI once saw 3 %). The test therefore bounds that tail by the real time the
    switch-off took after the last point arrived, instead of assuming it is zero.
    """
    speedup = 2000
    j = 0.04
    stopped: dict = {}
    result = run_experiment(
        config(
            tmp_path,
            schedule={"current_densities_mA_cm2": [j]},
            devices={"simulation": {"speedup": speedup}},
        ),
        experiment_id="cut",
        out=None,
        report=False,
        observers=[stop_plating_after(60, stopped)],
    )
    runs = experiment_runs(tmp_path / "data", "cut")
    plate = next(r for r in runs if r.start["experiment_segment"] == "plate")
    scans = [r for r in runs if r.start["experiment_segment"] == "tomogram"]
    before, after = (truth(s.start["data_file"]) for s in scans[:2])
    _, c0 = thickness_m(before)
    _, c1 = thickness_m(after)
    points = plate.cached["electrochem"]
    assert plate.stop.get("reason") == "stopped" and 60 <= len(points) < 180
    per_coulomb = LI_MOLAR_VOLUME_M3 / (FARADAY * AREA_CM2 * 1e-4)
    # The scan after the plating shows exactly the charge the cell passed ...
    passed_C = (after["charge_passed_mC"] - before["charge_passed_mC"]) * 1e-3
    assert c1 - c0 == pytest.approx(per_coulomb * passed_C, rel=0.03)
    # ... which is what the recorded points passed (10 s each), plus the plating between
    # the last point and the switch-off: at most one interval and the real time the
    # switch-off took after that point arrived, at the simulation's speed.
    current_A = float(np.median(points["current_A"]))
    recorded_C = float(np.sum(points["current_A"]) * 10.0)
    tail_s = 10.0 + speedup * (stopped["off_wall"] - stopped["last_arrival_wall"])
    assert recorded_C * (1 - 1e-3) <= passed_C <= recorded_C + current_A * tail_s * 1.001
    # ... well short of what the whole half-cycle (30 min at j) would have plated.
    q_full = j * 1e-3 * AREA_CM2 * 1800.0
    assert c1 - c0 < 0.9 * per_coulomb * q_full
    assert result["end_reason"] == "schedule_complete"


# --- beam loss ------------------------------------------------------------------------------
def dump_beam_during(kind: str, after: int):
    """An observer factory: lose the beam during the first segment of ``kind``."""

    def factory(bench):
        class Dumper:
            done = False

            def segment_started(self, segment, state):
                if segment.kind != kind or self.done:
                    return
                self.done = True

                def dump():
                    deadline = time.monotonic() + 60
                    if kind == "tomogram":
                        count = bench.camera.frame_counter
                        while count.get() < after and time.monotonic() < deadline:
                            time.sleep(0.002)
                    else:
                        while bench.potentiostat.n_points < after and time.monotonic() < deadline:
                            time.sleep(0.002)
                    bench.beam_dump(outage_s=30.0)

                threading.Thread(target=dump, daemon=True).start()

        return Dumper()

    return factory


def test_beam_loss_suspends_a_scan_but_never_the_plating(tmp_path):
    cfg = config(
        tmp_path,
        schedule={"current_densities_mA_cm2": [0.04]},
        devices={"simulation": {"speedup": 2000}},
    )
    run_experiment(
        cfg,
        experiment_id="beam",
        out=None,
        report=False,
        observers=[dump_beam_during("tomogram", 20), dump_beam_during("plate", 30)],
    )
    runs = experiment_runs(tmp_path / "data", "beam")
    pristine = runs[1]
    assert pristine.start["segment_tag"] == "pristine"
    events = pristine.cached["interruptions"]
    assert events is not None, "the scan was not suspended"
    # The RunEngine recorded the suspension with its justification.
    recorded = list(events["interruption"])
    assert len(recorded) == 1
    assert "ring_current" in recorded[0] and "fell below 10.0" in recorded[0]
    assert len(pristine.cached["projections"]) == 60  # the scan completed after the beam
    plate = runs[2]
    assert plate.start["experiment_segment"] == "plate"
    # Plating went on through the beam loss: nothing in its interruptions stream.
    assert plate.cached["interruptions"] is None or len(plate.cached["interruptions"]) == 0
    assert len(plate.cached["electrochem"]) == 180
    assert plate.stop["reason"] == "completed"


# --- kills and resume -----------------------------------------------------------------------
def _journal_entries(folder: Path) -> list[dict]:
    path = folder / "journal.jsonl"
    if not path.exists():
        return []
    lines = path.read_text().splitlines(keepends=True)
    return [json.loads(line) for line in lines if line.endswith("\n")]


def _wait_for(predicate, process, timeout_s=120.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        if process.poll() is not None:
            raise AssertionError(f"the experiment ended first: {process.stderr.read()}")
        time.sleep(0.02)
    raise AssertionError("timed out waiting for the experiment")


def _insitu(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "insitu.protocols.cli.app", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _running(folder: Path, kind: str, min_index: int = 0) -> bool:
    """A segment of ``kind`` has started and its run is open."""
    entries = _journal_entries(folder)
    started = [e for e in entries if e["type"] == "start"]
    if not started or started[-1]["segment"]["kind"] != kind:
        return False
    index = started[-1]["segment"]["index"]
    return index >= min_index and any(e["type"] == "run" and e["index"] == index for e in entries)


def test_kills_during_a_half_cycle_and_a_scan_then_resume(tmp_path, seed_catalog):
    cfg = config(tmp_path, devices={"simulation": {"speedup": 1000}})
    # An empty catalog to start from (tests/protocols/conftest.py): the first process skips
    # tiled's `catalog init` subprocess.
    seed_catalog(tmp_path / "data")
    (tmp_path / "e.yaml").write_text(yaml.safe_dump(cfg))
    folder = tmp_path / "experiments" / "k1"

    # 1. Killed (SIGKILL: no clean-up at all) in the middle of the first plating.
    process = _insitu("experiment", "run", "e.yaml", "--id", "k1", "--quiet", cwd=tmp_path)
    _wait_for(lambda: _running(folder, "plate"), process)
    time.sleep(0.6)  # well into the 1.8 s (real) plating
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    journal = read_journal(folder)
    assert journal.interrupted["kind"] == "plate"
    killed_plate = journal.interrupted["index"]

    # 2. Resumed, then killed again in the middle of a scan.
    process = _insitu("experiment", "resume", "k1", "--quiet", cwd=tmp_path)
    _wait_for(lambda: _running(folder, "tomogram", killed_plate + 1), process)
    time.sleep(0.3)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    journal = read_journal(folder)
    assert journal.interrupted["kind"] == "tomogram"
    killed_scan = journal.interrupted["index"]

    # 3. Resumed to the end.
    done = subprocess.run(
        [sys.executable, "-m", "insitu.protocols.cli.app", "experiment", "resume", "k1", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["end_reason"] == "short"
    journal = read_journal(folder)
    assert journal.finished == "short" and journal.resumes == 2

    # The catalog holds every segment exactly once, each run closed.
    runs = experiment_runs(tmp_path / "data", "k1")
    indices = [r.start["segment_index"] for r in runs]
    assert indices == list(range(len(journal.done)))
    assert all(r.stop is not None for r in runs)
    # The killed plating kept its points (never repeated) and is marked as interrupted.
    plate = runs[killed_plate]
    assert plate.stop["exit_status"] == "abort"
    assert 0 < len(plate.cached["electrochem"]) < 180
    assert journal.done[killed_plate]["outcome"]["end_reason"] == "interrupted"
    # The killed scan was taken again, whole; the partial file was kept aside.
    scan = runs[killed_scan]
    assert scan.stop["exit_status"] == "success"
    assert len(scan.cached["projections"]) == 60
    assert list((folder / "scans").glob("*.partial.h5"))
    assert list((folder / "superseded").glob("*.jsonl"))
    # The restored cell went on from where it was: it shorted at the in-situ charge.
    assert result["charge_to_failure_mC"] == pytest.approx(25.0, rel=0.15)


# --- the four presets ------------------------------------------------------------------------
PAPER_CHARGE_TO_FAILURE_MC = {"A-LPS": 25.0, "LPS:0.5LiI": 35.0, "LiI-AT": 40.0, "LiI-AN": 90.0}


@pytest.fixture(scope="module")
def presets(tmp_path_factory):
    results = {}
    for material in PAPER_CHARGE_TO_FAILURE_MC:
        tmp = tmp_path_factory.mktemp(material.replace(":", "_"))
        cfg = config(
            tmp,
            material=material,
            schedule={"current_densities_mA_cm2": [0.04, 0.08, 0.1, 0.2, 0.3]},
            # Only the pristine, the last and the failed cell's scans.
            scan={"every_half_cycles": 99},
            analysis={"enabled": True},
            # Rest (scans, EIS) at 1000x, not 100x: the charge to failure is counted while
            # current flows, and the pristine scan comes before any rest.
            devices={"simulation": {"rest_speedup": 1000}},
        )
        result = run_experiment(cfg, experiment_id=f"preset-{material}", out=None, report=False)
        steps = pd.read_csv(Path(result["folder"]) / "analysis" / "final" / "steps.csv")
        results[material] = (result, steps)
    return results


def test_in_situ_charge_to_failure_of_the_four_presets(presets):
    for material, expected in PAPER_CHARGE_TO_FAILURE_MC.items():
        result, _ = presets[material]
        assert result["end_reason"] == "short", material
        assert result["charge_to_failure_mC"] == pytest.approx(expected, rel=0.10), material


def test_porosity_falls_as_the_charge_to_failure_rises(presets):
    order = sorted(PAPER_CHARGE_TO_FAILURE_MC, key=PAPER_CHARGE_TO_FAILURE_MC.get)
    porosity = [presets[m][1]["porosity"].iloc[0] for m in order]
    assert porosity == sorted(porosity, reverse=True), dict(zip(order, porosity, strict=True))


# --- a pause never switches the cell off, and resuming never replays current ------------------
def test_a_pause_during_plating_keeps_the_cell_plating_and_resumes_without_replay(tmp_path):
    from bluesky import RunEngine
    from bluesky.utils import RunEngineInterrupted

    from insitu.protocols.bench import BenchSpec, open_bench
    from insitu.protocols.experiment_config import validate_config
    from insitu.protocols.plans.experiment import insitu_experiment

    cfg = validate_config(
        config(
            tmp_path,
            schedule={"current_densities_mA_cm2": [0.04]},
            devices={"tomography": "none", "simulation": {"speedup": 600}},
        )
    )
    store = RunStore(tmp_path / "data")
    RE = RunEngine({})
    RE.record_interruptions = True
    store.subscribe(RE)
    with open_bench(BenchSpec.from_experiment(cfg, tmp_path / "p1")) as bench:
        RE.subscribe(bench.pace)
        device = bench.potentiostat

        class PauseDuringPlating:
            def segment_started(self, segment, state):
                if segment.kind != "plate":
                    return

                def pause():
                    # The plating's own points (the device still holds the EIS's when the
                    # segment starts).
                    while not (
                        type(device.prepared_technique).__name__ == "GalvanostaticHold"
                        and device.running
                        and device.n_points >= 20
                    ):
                        time.sleep(0.005)
                    RE.request_pause(defer=False)

                threading.Thread(target=pause, daemon=True).start()

        plan = insitu_experiment(
            device,
            config=cfg.to_dict(),
            experiment_id="p1",
            folder=str(tmp_path / "p1"),
            observer=PauseDuringPlating(),
        )
        with pytest.raises(RunEngineInterrupted):
            RE(plan)
        assert RE.state == "paused"
        # Paused: the plating goes on in the instrument, the cell is not switched off.
        assert device.running and device.state.get() == "running"
        n_paused = device.n_points
        time.sleep(0.5)
        assert device.n_points > n_paused
        RE.resume()
    runs = experiment_runs(tmp_path / "data", "p1")
    store.close()
    assert [r.start["experiment_segment"] for r in runs] == [
        "eis_before",
        "plate",
        "strip",
        "eis_after",
    ]
    plate = runs[1]
    points = plate.cached["electrochem"]
    # One technique, never kicked off twice: 180 points of 10 s, times strictly increasing.
    assert len(points) == 180
    assert np.all(np.diff(points["time_s"]) > 0)
    assert plate.stop["exit_status"] == "success" and plate.stop["reason"] == "completed"
    pauses = list(plate.cached["interruptions"]["interruption"])
    assert pauses == ["pause", "resume"]
