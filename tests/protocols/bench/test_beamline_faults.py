"""A bench description with beamline faults: on a simulated beamline only, applied on open."""

from __future__ import annotations

import numpy as np
import pytest

from insitu.protocols.bench import BenchSpec, BenchSpecError, EpicsBeamline, open_bench
from insitu.simulators.beamline.faults import BeamlineFaults


def source(angle_rad: float, kind: str) -> np.ndarray:
    return np.full((4, 6), 100.0 if kind == "dark" else 1e4)


@pytest.mark.parametrize(
    ("tomography", "where"),
    [(None, "no beamline"), (EpicsBeamline("2bma:"), "the real beamline '2bma:'")],
)
def test_beamline_faults_need_a_simulated_beamline(tomography, where) -> None:
    with pytest.raises(BenchSpecError, match=f"beamline faults \\(beam_loss=3\\).*{where}"):
        BenchSpec(tomography=tomography, beamline_faults=BeamlineFaults.parse("beam_loss=3"))


def test_the_epics_flavour_is_refused_what_its_ioc_cannot_do(tmp_path) -> None:
    with pytest.raises(BenchSpecError, match="stall=2: the EPICS flavour"):
        BenchSpec(
            tomography="sim-epics", scans=tmp_path, beamline_faults=BeamlineFaults.parse("stall=2")
        )


def test_open_bench_applies_them_and_counts_what_they_did(tmp_path) -> None:
    spec = BenchSpec(
        tomography="sim",
        frame_source=source,
        scans=tmp_path,
        beamline_faults=BeamlineFaults.parse("lose_frame=1,stall=1"),
    )
    with open_bench(spec) as bench:
        assert bench.faults_injected() == {
            "beamline": {
                "frames_lost": 0,
                "frames_retaken": 0,
                "stage_stalls": 0,
                "beam_losses": 0,
                "beam_back": 0,
            }
        }
        assert bench.camera.lose_frames == {1} and bench.stage.stall_at_move == 1
    with open_bench(BenchSpec(tomography="sim", frame_source=source, scans=tmp_path)) as bench:
        assert bench.beamline_faults is None and bench.faults_injected() == {}
