"""The in-situ protocol's state machine, the experiment file and the journal (no devices).

Known answers: the paper's sequence (EIS, pristine scan, plate, scan, strip, scan, ..., short
confirmed by EIS, failed-cell scan, EIS), and each rule that changes it.
"""

from __future__ import annotations

import json

import pytest

from insitu.protocols.experiment_config import (
    PAPER_PELLET_AREA_CM2,
    ExperimentConfigError,
    load_config,
    validate_config,
)
from insitu.protocols.plans.experiment import half_cycle
from insitu.protocols.plans.experiment_protocol import (
    Outcome,
    Segment,
    advance,
    initial_state,
    note_crack_onset,
    pending_segment,
)
from insitu.protocols.storage.journal import ExperimentJournal, read_journal


def config(**sections):
    return validate_config({"material": "A-LPS", **sections})


def walk(cfg, outcomes, state=None, limit=200):
    """Run the state machine; ``outcomes(segment)`` says how each segment ended."""
    state = state or initial_state()
    labels = []
    while (segment := pending_segment(state)) is not None and len(labels) < limit:
        labels.append(segment.label)
        state = advance(state, segment, outcomes(segment), cfg)
    return labels, state


def half_cycle_charge(cfg, j):
    return j * 1e-3 * cfg.geometry.area_cm2 * cfg.schedule.half_cycle_s


def test_paper_sequence_to_a_confirmed_short():
    cfg = config(schedule={"current_densities_mA_cm2": [0.04, 0.08, 0.1]})

    def outcome(seg):
        if seg.kind in ("eis_before",):
            return Outcome("completed", z_low_ohm=1000.0)
        if seg.kind == "eis_confirm":
            return Outcome("completed", z_low_ohm=10.0)  # far below: a real short
        if seg.half_cycle:
            short = seg.kind == "strip" and seg.current_density_mA_cm2 == 0.08
            return Outcome(
                "short" if short else "completed",
                charge_C=half_cycle_charge(cfg, seg.current_density_mA_cm2),
                short=short,
            )
        return Outcome("completed")

    labels, state = walk(cfg, outcome)
    assert labels == [
        "EIS before",
        "tomogram (pristine)",
        "plate 0.04 mA/cm²",
        "tomogram after plate 0.04 mA/cm²",
        "strip 0.04 mA/cm²",
        "tomogram after strip 0.04 mA/cm²",
        "plate 0.08 mA/cm²",
        "tomogram after plate 0.08 mA/cm²",
        "strip 0.08 mA/cm²",
        "EIS (confirm short)",
        "tomogram (failed cell)",
        "EIS after",
    ]
    assert state["end_reason"] == "short"
    assert state["phase"] == "done"
    expected = 2 * half_cycle_charge(cfg, 0.04) + 2 * half_cycle_charge(cfg, 0.08)
    assert state["charge_C"] == pytest.approx(expected)
    # The paper's 3 mm pellet: 0.04 mA/cm² for 30 min is 5.09 mC.
    assert half_cycle_charge(cfg, 0.04) * 1e3 == pytest.approx(5.089, abs=1e-3)
    assert PAPER_PELLET_AREA_CM2 == pytest.approx(0.0706858, rel=1e-6)


def test_a_collapse_not_confirmed_by_eis_is_noted_and_cycling_goes_on():
    cfg = config(schedule={"current_densities_mA_cm2": [0.04, 0.08]})

    def outcome(seg):
        if seg.kind.startswith("eis"):
            return Outcome("completed", z_low_ohm=1000.0 if seg.kind != "eis_confirm" else 900.0)
        if seg.half_cycle:
            short = seg.kind == "plate" and seg.current_density_mA_cm2 == 0.04
            return Outcome("short" if short else "completed", charge_C=1e-3, short=short)
        return Outcome("completed")

    labels, state = walk(cfg, outcome)
    assert labels[:6] == [
        "EIS before",
        "tomogram (pristine)",
        "plate 0.04 mA/cm²",
        "EIS (confirm short)",
        "tomogram after plate 0.04 mA/cm²",
        "strip 0.04 mA/cm²",
    ]
    assert state["end_reason"] == "schedule_complete"
    assert labels[-2:] == ["tomogram after strip 0.08 mA/cm²", "EIS after"]
    assert "not confirmed by EIS" in state["notes"][0]


def test_cut_off_moves_on_to_the_next_current_density_after_a_scan():
    cfg = config(schedule={"current_densities_mA_cm2": [0.04, 0.08, 0.1], "cycles_per_step": 2})

    def outcome(seg):
        if seg.half_cycle:
            cut = seg.current_density_mA_cm2 == 0.08 and seg.kind == "plate"
            return Outcome("voltage_limit" if cut else "completed", charge_C=1e-4)
        return Outcome("completed", z_low_ohm=100.0)

    labels, state = walk(cfg, outcome)
    half_cycles = [lab for lab in labels if lab.startswith(("plate", "strip"))]
    # 0.04: 2 cycles; 0.08: the first plating hits the cut-off; 0.1: 2 cycles.
    assert half_cycles == [
        "plate 0.04 mA/cm²",
        "strip 0.04 mA/cm²",
        "plate 0.04 mA/cm²",
        "strip 0.04 mA/cm²",
        "plate 0.08 mA/cm²",
        "plate 0.1 mA/cm²",
        "strip 0.1 mA/cm²",
        "plate 0.1 mA/cm²",
        "strip 0.1 mA/cm²",
    ]
    after_cut = labels[labels.index("plate 0.08 mA/cm²") + 1]
    assert after_cut == "tomogram after plate 0.08 mA/cm² (cut-off)"
    assert state["end_reason"] == "schedule_complete"


def test_out_of_range_ends_with_a_scan_and_eis():
    cfg = config(schedule={"current_densities_mA_cm2": [0.04, 100.0]})

    def outcome(seg):
        if seg.half_cycle and seg.current_density_mA_cm2 == 100.0:
            return Outcome("out_of_range")
        return Outcome("completed", charge_C=1e-4 if seg.half_cycle else 0.0)

    labels, state = walk(cfg, outcome)
    assert labels[-3:] == ["plate 100 mA/cm²", "tomogram (final)", "EIS after"]
    assert state["end_reason"] == "out_of_range"


def test_scan_every_second_half_cycle_and_densely_after_crack_onset():
    cfg = config(
        schedule={"current_densities_mA_cm2": [0.04, 0.08, 0.1]},
        scan={"every_half_cycles": 2},
        adaptive={"after_crack_onset_every": 1},
    )
    state = initial_state()
    labels = []
    while (seg := pending_segment(state)) is not None:
        labels.append(seg.label)
        if seg.label == "strip 0.08 mA/cm²":
            state = note_crack_onset(state)  # the analysis saw cracks during this half-cycle
        state = advance(state, seg, Outcome("completed", charge_C=1e-4), cfg)
    assert labels == [
        "EIS before",
        "tomogram (pristine)",
        "plate 0.04 mA/cm²",
        "strip 0.04 mA/cm²",
        "tomogram after strip 0.04 mA/cm²",
        "plate 0.08 mA/cm²",
        "strip 0.08 mA/cm²",
        "tomogram after strip 0.08 mA/cm²",
        "plate 0.1 mA/cm²",
        "tomogram after plate 0.1 mA/cm²",
        "strip 0.1 mA/cm²",
        "tomogram after strip 0.1 mA/cm²",
        "EIS after",
    ]


def test_stop_before_the_expected_short_images_the_pre_failure_state():
    cfg = config(
        schedule={"current_densities_mA_cm2": [0.04, 0.08, 0.1]},
        adaptive={"stop_before_charge_mC": 22.0},
    )

    def outcome(seg):
        charge = half_cycle_charge(cfg, seg.current_density_mA_cm2) if seg.half_cycle else 0.0
        return Outcome("completed", charge_C=charge)

    labels, state = walk(cfg, outcome)
    # 5.09 + 5.09 + 10.18 = 20.4 mC; the next (10.18 mC) would pass 22 mC.
    assert labels[-3:] == ["plate 0.08 mA/cm²", "tomogram after plate 0.08 mA/cm²", "EIS after"]
    assert state["end_reason"] == "pre_failure"
    assert state["charge_C"] * 1e3 == pytest.approx(20.36, abs=0.01)


def test_advance_refuses_a_segment_that_is_not_pending():
    cfg = config()
    state = initial_state()
    seg = pending_segment(state)
    state2 = advance(state, seg, Outcome("completed"), cfg)
    with pytest.raises(ValueError, match="not the pending segment"):
        advance(state2, seg, Outcome("completed"), cfg)
    assert pending_segment(state).kind == "eis_before"  # the original is kept


def test_state_survives_json():
    cfg = config(schedule={"current_densities_mA_cm2": [0.04]})
    state = initial_state()
    for _ in range(3):  # EIS, pristine scan, plating
        seg = pending_segment(state)
        state = json.loads(json.dumps(advance(state, seg, Outcome("completed", 1e-3), cfg)))
    assert pending_segment(state).label == "tomogram after plate 0.04 mA/cm²"
    assert state["charge_C"] == pytest.approx(1e-3)


# --- the experiment file -------------------------------------------------------------------
def test_config_errors_name_every_bad_key(tmp_path):
    with pytest.raises(ExperimentConfigError) as err:
        validate_config(
            {
                "material": "A-LPS",
                "schedule": {"half_cycle_s": -1, "current_densites": [1]},
                "scan": {"mode": "spiral"},
            }
        )
    text = str(err.value)
    assert "schedule.half_cycle_s: Input should be greater than 0 (got -1)" in text
    assert "schedule.current_densites: unknown key" in text
    assert "scan.mode" in text
    with pytest.raises(ExperimentConfigError, match="no simulator preset"):
        validate_config({"material": "NaCl"})
    with pytest.raises(ExperimentConfigError, match="material: required"):
        validate_config({})
    with pytest.raises(ExperimentConfigError, match="epics_prefix"):
        validate_config({"material": "X", "devices": {"potentiostat": "x", "tomography": "epics"}})
    with pytest.raises(ExperimentConfigError, match="images the simulated cell"):
        validate_config({"material": "X", "devices": {"potentiostat": "TCPIP::1::SOCKET"}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("material: A-LPS\nschedule: [\n")
    with pytest.raises(ExperimentConfigError, match="not valid YAML at line"):
        load_config(bad)
    # Found by benchmarks/bench_fuzz_readers.py: YAML nested past Python's recursion limit.
    deep = tmp_path / "deep.yaml"
    deep.write_text("material: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ExperimentConfigError, match="nests its YAML too deeply"):
        load_config(deep)
    with pytest.raises(ExperimentConfigError, match="no experiment file"):
        load_config(tmp_path / "missing.yaml")


def test_smallest_config_has_the_papers_protocol(tmp_path):
    path = tmp_path / "e.yaml"
    path.write_text("material: LiI-AT\n")
    cfg = load_config(path)
    assert cfg.schedule.current_densities_mA_cm2[:2] == [0.04, 0.08]
    assert cfg.schedule.half_cycle_s == 1800
    assert cfg.schedule.voltage_limit_V == 10
    assert cfg.n_projections == 180  # the small simulated size
    assert validate_config(cfg.to_dict()) == cfg


# --- the journal ---------------------------------------------------------------------------
def test_journal_records_and_a_torn_last_line_is_ignored(tmp_path):
    journal = ExperimentJournal(tmp_path)
    journal.create("x1", {"material": "A-LPS"})
    state = initial_state()
    seg = pending_segment(state)
    journal.start(seg.to_dict())
    journal.run_opened(seg.index, "uid-0")
    journal.done(seg.to_dict(), Outcome("completed").to_dict(), state)
    nxt = {**seg.to_dict(), "index": 1, "label": "tomogram (pristine)", "kind": "tomogram"}
    journal.start(nxt)
    journal.run_opened(1, "uid-1")
    with open(journal.path, "a") as fh:
        fh.write('{"type": "done", "segm')  # a kill in the middle of a write
    read = read_journal(tmp_path)
    assert read.experiment_id == "x1"
    assert len(read.done) == 1
    assert read.interrupted["index"] == 1
    assert read.interrupted_run_uid == "uid-1"
    with pytest.raises(FileExistsError, match="experiment resume x1"):
        ExperimentJournal(tmp_path).create("x1", {})


# --- simulated time: fast while current flows, near real time at rest ---------------------
def test_sim_pace_runs_fast_only_while_current_flows():
    from insitu.protocols.bench import SimPace
    from insitu.simulators.clock import SimClock

    clock = SimClock(speedup=5.0)
    pace = SimPace(clock, cycling_speedup=2e4, rest_speedup=100.0)
    assert clock.speedup == 100.0
    pace("start", {"experiment_segment": "plate", "plan_name": "galvanostatic_hold"})
    assert clock.speedup == 2e4
    pace("event_page", {})
    assert clock.speedup == 2e4
    pace("stop", {"exit_status": "success"})
    assert clock.speedup == 100.0
    for doc in (
        {"experiment_segment": "tomogram", "plan_name": "tomo_scan"},
        {"experiment_segment": "eis_confirm", "plan_name": "eis"},
        {"plan_name": "eis"},
    ):
        pace("start", doc)
        assert clock.speedup == 100.0, doc
    pace("start", {"plan_name": "ccd_test"})  # a lab CCD test through the queue server
    assert clock.speedup == 2e4
    t = clock.now()
    pace("stop", {})
    assert clock.now() >= t  # time stays continuous across the switch


def test_the_emulator_key_and_its_old_name() -> None:
    # Experiment files (and journals) written before 0.2 name the emulator "protocol".
    for key in ("emulator", "protocol"):
        cfg = validate_config(
            {"material": "A-LPS", "devices": {"simulation": {key: "keithley2450"}}}
        )
        assert cfg.devices.simulation.emulator == "keithley2450"
        assert cfg.to_dict()["devices"]["simulation"]["emulator"] == "keithley2450"
        assert validate_config(cfg.to_dict()) == cfg


def test_the_samples_limits_bound_the_schedule_and_every_half_cycle():
    """limits: the schedule must stay inside them (an error naming both keys), and a
    half-cycle above the current-density limit is not sent (out_of_range, with the reason)."""
    with pytest.raises(ExperimentConfigError) as err:
        config(
            schedule={"current_densities_mA_cm2": [0.04, 0.5], "voltage_limit_V": 10},
            limits={"max_current_density_mA_cm2": 0.2, "max_voltage_V": 5},
        )
    text = str(err.value)
    assert "[0.5] above limits.max_current_density_mA_cm2 (0.2)" in text
    cfg = config(
        schedule={"current_densities_mA_cm2": [0.04], "voltage_limit_V": 5},
        limits={"max_current_density_mA_cm2": 0.1, "max_voltage_V": 5},
    )
    with pytest.raises(ExperimentConfigError, match=r"above limits\.max_voltage_V"):
        config(schedule={"voltage_limit_V": 10}, limits={"max_voltage_V": 5})

    class NeverDriven:
        """A potentiostat that fails the test if anything reaches it."""

        def __getattr__(self, name):
            raise AssertionError(f"the instrument was used ({name}) past the sample's limit")

    # A segment built past the validated schedule (0.3 mA/cm² against a 0.1 limit).
    segment = Segment(
        index=2, kind="plate", label="plate 0.3", step=0, cycle=0,
        current_density_mA_cm2=0.3, current_A=0.3e-3 * cfg.geometry.area_cm2, duration_s=60.0,
    )  # fmt: skip
    plan = half_cycle(NeverDriven(), segment, cfg=cfg, md={})
    with pytest.raises(StopIteration) as done:
        next(plan)
    outcome = done.value.value
    assert outcome.end_reason == "out_of_range"
    assert "above this sample's limit" in outcome.extra["why"]
