"""A device failing mid-scan ends the run with its own words, the frames so far kept."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
from bluesky import RunEngine

from insitu.instruments.dxchange import read_scan_info
from insitu.instruments.errors import InstrumentError
from insitu.protocols.plans.device_failures import DeviceFailedError
from insitu.protocols.plans.tomo import tomo_scan
from insitu.simulators.beamline.devices import StageStalledError, sim_tomo_bench
from insitu.simulators.clock import SimClock

ROWS, COLS = 16, 24


def source(angle_rad: float, kind: str) -> np.ndarray:
    if kind == "dark":
        return np.full((ROWS, COLS), 100.0)
    x = np.arange(COLS) - COLS / 2 + 3 * math.cos(angle_rad)
    return np.full((ROWS, COLS), 1e4) * np.where(np.abs(x) < 4, 0.5, 1.0)[None, :]


@pytest.mark.parametrize("stall_at", [1, 6])
def test_a_stalled_stage_ends_the_scan_with_its_reason(tmp_path, stall_at) -> None:
    bench = sim_tomo_bench(source, clock=SimClock(speedup=1e4), path=tmp_path)
    bench.stage.stall_at_move = stall_at
    RE = RunEngine({})
    docs: list[tuple[str, dict]] = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    with pytest.raises(DeviceFailedError, match=r"rotation stalled at [\d.]+° on its way") as err:
        RE(
            tomo_scan(
                bench.camera, bench.stage, bench.shutter, n_projections=20, n_darks=2, n_flats=2
            )
        )
    assert isinstance(err.value, InstrumentError)  # the command line's one-line kind
    assert isinstance(err.value.__cause__.__cause__, StageStalledError)
    (stop,) = [doc for name, doc in docs if name == "stop"]
    assert stop["exit_status"] == "fail" and stop["reason"] == str(err.value)
    # Every projection the run recorded is in the file, and nothing else; the beam is off.
    recorded = stop["num_events"].get("projections", 0)
    assert recorded == stall_at - 1  # the stage stalled on its way to projection `stall_at`
    (scan,) = tmp_path.glob("*.h5")
    with h5py.File(scan) as f:
        assert f["/exchange/data"].shape[0] == recorded
    assert not bench.shutter.is_open


def test_lost_frames_are_taken_again_and_counted_in_the_file(tmp_path) -> None:
    """Frames the camera loses (a flat, a projection, and two tries of another projection)
    are exposed again: the scan is complete, and its file says how many were retaken."""
    bench = sim_tomo_bench(source, clock=SimClock(speedup=1e4), path=tmp_path)
    # Exposures: 2 darks (1-2), 2 flats (3-4), then projections from 5 on.
    bench.camera.lose_frames = {3, 10, 15, 16}
    RE = RunEngine({})
    RE(tomo_scan(bench.camera, bench.stage, bench.shutter, n_projections=20, n_darks=2, n_flats=2))
    (scan,) = tmp_path.glob("*.h5")
    with h5py.File(scan) as f:
        assert f["/exchange/data"].shape[0] == 20
        assert f["/exchange/data_white"].shape[0] == 4 and f["/exchange/data_dark"].shape[0] == 4
        assert f["/process/acquisition/frames_retaken"][()] == 4
    info = read_scan_info(scan)
    assert np.degrees(info.theta_rad) == pytest.approx(np.arange(20) * 9.0)  # each angle once
    assert any("4 frame(s) lost by the camera were retaken" in n for n in info.notes)


def test_a_frame_lost_too_often_ends_the_scan_with_the_cameras_reason(tmp_path) -> None:
    bench = sim_tomo_bench(source, clock=SimClock(speedup=1e4), path=tmp_path)
    bench.camera.lose_frames = {7, 8, 9}  # one projection, exposed three times
    with pytest.raises(DeviceFailedError, match="exposed 3 times and never arrived"):
        RunEngine({})(
            tomo_scan(
                bench.camera, bench.stage, bench.shutter, n_projections=20, n_darks=2, n_flats=2
            )
        )
