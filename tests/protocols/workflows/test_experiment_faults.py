"""The experiment file's ``faults`` section: validated, handed to the bench, reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from insitu.protocols.bench import BenchSpec
from insitu.protocols.experiment_config import ExperimentConfigError, validate_config
from insitu.protocols.storage.catalog import RunStore
from insitu.protocols.workflows.experiment import run_experiment
from insitu.simulators.beamline.faults import BeamlineFaults
from insitu.simulators.faults import InstrumentFaults, WireFaults

POTENTIOSTAT = "delay=1%:0.2,garble=0.5%,disconnect=400,error=900"


def config(tmp_path: Path, faults: dict, **devices) -> dict:
    return {
        "sample": "f",
        "material": "A-LPS",
        "schedule": {
            "current_densities_mA_cm2": [0.04],
            "half_cycle_s": 600,
            "eis": {"f_stop_Hz": 1.0},
        },
        "scan": {"n_projections": 20, "n_darks": 2, "n_flats": 2},
        "analysis": {"enabled": False},
        "catalog": {"data": str(tmp_path / "data")},
        "output": str(tmp_path / "experiments"),
        "devices": {"potentiostat": "sim", "tomography": "sim", **devices},
        "faults": faults,
    }


def test_the_faults_reach_the_bench_description(tmp_path) -> None:
    cfg = validate_config(
        config(
            tmp_path,
            {"potentiostat": POTENTIOSTAT, "beamline": "lose_frame=12,beam_loss=40:5"},
            simulation={"seed": 7},
        )
    )
    spec = BenchSpec.from_experiment(cfg, tmp_path / "x")
    assert spec.faults == WireFaults(
        delay=0.01, delay_s=0.2, garble=0.005, disconnect_after=(400,), seed=7
    )
    assert spec.instrument_faults == InstrumentFaults(error_after=900)
    assert spec.beamline_faults == BeamlineFaults.parse("lose_frame=12,beam_loss=40:5")
    clean = BenchSpec.from_experiment(validate_config(config(tmp_path, {})), tmp_path / "y")
    assert clean.faults is None and clean.beamline_faults is None


@pytest.mark.parametrize(
    ("faults", "devices", "message"),
    [
        (
            {"potentiostat": "delay=1%"},
            {"potentiostat": "TCPIP::10.0.0.5::5025::SOCKET", "tomography": "none"},
            "faults.potentiostat is injected on the simulated bench only, and "
            "devices.potentiostat is 'TCPIP::10.0.0.5::5025::SOCKET'",
        ),
        (
            {"beamline": "beam_loss=3"},
            {
                "potentiostat": "TCPIP::10.0.0.5::5025::SOCKET",
                "tomography": "epics",
                "epics_prefix": "2bma:",
            },
            "faults.beamline is injected on a simulated beamline only, and "
            "devices.tomography is 'epics'",
        ),
        (
            {"beamline": "lose_frame=3,beam_loss=9"},
            {"tomography": "sim-epics"},
            "faults.beamline: beamline faults lose_frame=3: the EPICS flavour",
        ),
        (
            {"potentiostat": "jitter=1%", "beamline": "stall=two"},
            {},
            "faults.potentiostat: fault 'jitter=1%': give kind=value with kind one of delay",
        ),
        ({"beamline": "stall=two"}, {}, "faults.beamline: beamline fault 'stall=two': 'two'"),
    ],
)
def test_faults_are_refused_where_they_cannot_be_injected(
    tmp_path, faults, devices, message
) -> None:
    with pytest.raises(ExperimentConfigError) as err:
        validate_config(config(tmp_path, faults, **devices))
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.slow
def test_a_short_experiment_through_a_faulty_cable_measures_every_point(tmp_path) -> None:
    """Replies delayed and split, a frame lost and the beam lost during the first scan: the
    experiment completes with every point (600 s at 10 s: 60 per half-cycle) and every
    projection, and its summary says what was injected."""
    faults = {"potentiostat": "delay=3%:0.01,split=3%", "beamline": "lose_frame=8,beam_loss=15:5"}
    result = run_experiment(config(tmp_path, faults), experiment_id="faulty", out=None)
    assert result["end_reason"] == "schedule_complete"
    done = result["faults"]
    wire, beamline = done["injected"]["wire"], done["injected"]["beamline"]
    assert wire["lines"] > 100 and wire["delay"] > 0 and wire["split"] > 0
    assert beamline["frames_lost"] == beamline["frames_retaken"] == 1
    assert beamline["beam_losses"] == beamline["beam_back"] == 1
    assert done["scan_suspensions"] == 1 and done["points_lost"] == 0
    with RunStore(tmp_path / "data") as store:
        runs = [store.load(uid) for uid in store.runs()["uid"]]
        kinds = {}
        for run in runs:
            kind = run.start["experiment_segment"]
            stream = {"tomogram": "projections", "plate": "electrochem", "strip": "electrochem"}
            if kind in stream:
                kinds.setdefault(kind, []).append(len(run.stream(stream[kind])))
            assert run.stop["exit_status"] == "success"
    assert kinds == {"tomogram": [20, 20, 20], "plate": [60], "strip": [60]}
