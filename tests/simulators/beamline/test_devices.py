"""Simulated 2-BM devices and the Data Exchange writer/reader, in simulated time."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest

from insitu.instruments.dxchange import (
    CHUNK_ROWS,
    DataExchangeWriter,
    read_data_exchange,
    read_metadata,
)
from insitu.simulators.beamline.devices import (
    SimRingCurrent,
    SimRotationStage,
    SimShutter,
    move_time_s,
    sim_tomo_bench,
)
from insitu.simulators.clock import SimClock

ROWS, COLS = 32, 48


def flat_source(angle_rad: float, kind: str) -> np.ndarray:
    """Flat 1e4 counts/s, a disc absorbing half the beam, dark 100."""
    if kind == "dark":
        return np.full((ROWS, COLS), 100.0)
    flat = np.full((ROWS, COLS), 1e4)
    if kind == "flat":
        return flat
    x = np.arange(COLS) - COLS / 2 + 4 * math.cos(angle_rad)
    return flat * np.where(np.abs(x) < 8, 0.5, 1.0)[None, :]


def test_move_time_follows_velocity_and_acceleration() -> None:
    # Trapezoid: d/v + t_acc; triangle when too short to reach v.
    assert move_time_s(90, 30, 0.5) == pytest.approx(3.5)
    assert move_time_s(5, 30, 0.5) == pytest.approx(2 * math.sqrt(5 / 60))
    assert move_time_s(0, 30, 0.5) == 0


def test_stage_moves_in_simulated_time() -> None:
    clock = SimClock(speedup=100)
    stage = SimRotationStage(name="rot", clock=clock)
    stage.velocity.put(30.0)
    stage.acceleration.put(0.5)
    t0 = clock.now()
    status = stage.set(90.0)
    assert not status.done
    status.wait(timeout=5)
    elapsed = clock.now() - t0
    assert 3.5 <= elapsed < 3.5 + 0.5  # simulated seconds, a little slack for threads
    assert stage.position == pytest.approx(90.0)
    assert stage.read()["rot"]["value"] == pytest.approx(90.0)
    # Mid-move the readback follows the profile: at constant speed half-way.
    t_start = clock.now()
    status = stage.set(0.0)
    # Measured from the move's own start (not from a later clock read, which a loaded
    # machine can delay by many simulated seconds at this speed-up).
    move_start = stage._moves[-1].t0
    assert t_start <= move_start
    t_mid = stage.time_at(45.0)
    assert t_mid - move_start == pytest.approx(1.75, abs=1e-9)
    assert stage.position_at(t_mid) == pytest.approx(45.0)
    status.wait(timeout=5)


def test_shutter_and_ring_current() -> None:
    clock = SimClock(speedup=1000)
    shutter = SimShutter(name="shutter", clock=clock)
    assert not shutter.is_open
    shutter.set("open").wait(timeout=5)
    assert shutter.is_open
    shutter.close().wait(timeout=5)
    assert shutter.readback.get() == "closed"
    with pytest.raises(ValueError, match="open"):
        shutter.set("ajar")
    ring = SimRingCurrent(clock=clock, nominal_mA=130)
    status = ring.beam_dump(outage_s=10)
    assert ring.get() == 0
    status.wait(timeout=5)
    assert ring.get() == 130


def test_writer_and_reader_round_trip(tmp_path) -> None:
    path = tmp_path / "scan.h5"
    meta = {"energy_keV": 25.0, "pixel_size_um": 0.69, "exposure_s": 0.1}
    with DataExchangeWriter(path, shape=(ROWS, COLS), metadata=meta) as w:
        for _ in range(3):
            w.append("dark", flat_source(0, "dark"))
            w.append("flat", flat_source(0, "flat"))
        for k in range(5):
            w.append("projection", flat_source(k, "projection"), theta_rad=k * math.pi / 5)
        # A provisional frame overwritten, then one never committed: dropped at close.
        w.append("projection", np.zeros((ROWS, COLS)), theta_rad=9.0, pending=True)
        w.append("projection", np.ones((ROWS, COLS)), theta_rad=9.0, pending=True)
    with h5py.File(path) as f:
        # Bands of CHUNK_ROWS rows, each with its Fletcher32 checksum (a slab read checks
        # its own rows).
        assert f["/exchange/data"].chunks == (1, min(ROWS, CHUNK_ROWS), COLS)
        assert f["/exchange/data"].fletcher32
        assert f["/exchange/data"].maxshape[0] is None
        assert f["/measurement/instrument/monochromator/energy"][()] == 25.0
    proj, flat, dark, theta = read_data_exchange(path)
    assert proj.shape == (5, ROWS, COLS) and proj.dtype == np.uint16
    assert flat.shape == dark.shape == (3, ROWS, COLS)
    np.testing.assert_allclose(theta, np.arange(5) * math.pi / 5)
    proj2, flat2, dark2, theta2 = read_data_exchange(path, rows=slice(4, 6), angles=slice(1, 3))
    assert proj2.shape == (2, 2, COLS) and flat2.shape == dark2.shape == (3, 2, COLS)
    np.testing.assert_allclose(theta2, theta[1:3])
    np.testing.assert_array_equal(proj2, proj[1:3, 4:6])
    assert read_metadata(path)["pixel_size_um"] == pytest.approx(0.69)
    with pytest.raises(FileExistsError):
        DataExchangeWriter(path, shape=(ROWS, COLS))
    with pytest.raises(ValueError, match="energy_keV"):
        DataExchangeWriter(tmp_path / "x.h5", shape=(ROWS, COLS), metadata={"energy": 1})


def test_camera_frames_honour_shutter_and_reference_file(tmp_path) -> None:
    clock = SimClock(speedup=1000)
    bench = sim_tomo_bench(flat_source, clock=clock, path=tmp_path)
    cam = bench.camera
    with pytest.raises(RuntimeError, match="stage"):
        cam.trigger()
    cam.stage()
    try:
        cam.frame_type.put("flat")
        cam.trigger().wait(timeout=5)  # shutter closed: a dark whatever the frame type
        docs = list(cam.collect_asset_docs())
        assert [n for n, _ in docs] == ["stream_resource", "stream_datum"]
        assert docs[0][1]["parameters"]["dataset"] == "/exchange/data_dark"
        assert docs[0][1]["mimetype"] == "application/x-hdf5"
        bench.shutter.open().wait(timeout=5)
        cam.trigger().wait(timeout=5)
        docs = list(cam.collect_asset_docs())
        assert docs[0][1]["parameters"]["dataset"] == "/exchange/data_white"
        assert "image" in cam.describe()[cam.image_key]["source"]
        assert cam.describe()[cam.image_key]["external"] == "STREAM:"
    finally:
        cam.unstage()
    _, flat, dark, _ = read_data_exchange(tmp_path / "tomo_0001.h5")
    assert dark[0].mean() == pytest.approx(100)
    assert flat[0].mean() == pytest.approx(1e4 * 0.1)  # counts/s × exposure
    assert cam.file_number.get() == 2


def test_numbered_files_skip_existing_scans(tmp_path) -> None:
    """A second bench writing to the same folder must not collide with the first's files."""
    clock = SimClock(speedup=1000)

    def source(angle, kind):
        return np.full((4, 6), 100.0 if kind == "dark" else 1000.0)

    (tmp_path / "tomo_0001.h5").write_bytes(b"an earlier scan")
    bench = sim_tomo_bench(source, clock=clock, path=tmp_path)
    bench.camera.stage()
    try:
        assert bench.camera.full_file_name.get().endswith("tomo_0002.h5")
    finally:
        bench.camera.unstage()
    assert (tmp_path / "tomo_0001.h5").read_bytes() == b"an earlier scan"
