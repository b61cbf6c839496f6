"""tomo_scan on the EPICS flavour of the 2-BM bench: a caproto IOC over Channel Access on loopback.

The same scan checks as tests/protocols/test_tomo_plans.py (in-process flavour), with ophyd's
EpicsMotor/EpicsSignal devices talking to the IOC on 127.0.0.1. One IOC serves the module.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time

import numpy as np
import pytest
from bluesky import RunEngine
from run_documents import Documents
from tomo_scan_checks import COLS, ROWS, N, check_file, run_scan

from insitu.instruments.dxchange import read_data_exchange
from insitu.protocols.bench.tomo_epics import epics_tomo_bench
from insitu.protocols.plans.tomo import tomo_scan
from insitu.simulators.beamline.ioc_process import IOCStartError

SOURCE = "insitu.simulators.imaging.disc_phantom:disc_frame_source"


def test_ioc_that_cannot_start_says_why(tmp_path) -> None:
    # Runs before the module's IOC starts: one bench at a time per process.
    with pytest.raises(IOCStartError, match="no_such_module"):
        with epics_tomo_bench(tmp_path, frame_source="no_such_module:source", timeout_s=30):
            pass


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    path = tmp_path_factory.mktemp("epics_tomo")
    with epics_tomo_bench(
        path,
        frame_source=SOURCE,
        frame_source_kwargs={"rows": ROWS, "cols": COLS},
        speedup=100,
        shutter_time_s=0.2,
    ) as bench:
        yield bench
    # Stopped with the context, errors or not.
    assert bench.process.poll() is not None


def test_channel_access_stays_on_loopback(bench) -> None:
    assert os.environ["EPICS_CA_ADDR_LIST"] == f"127.0.0.1:{bench.port}"
    assert os.environ["EPICS_CA_AUTO_ADDR_LIST"] == "NO"
    assert bench.process.poll() is None
    assert bench.stage.connected and bench.camera.connected
    assert bench.ring_current.get() == pytest.approx(130.0)
    # A file path longer than a DBR_STRING's 40 characters travels whole.
    assert bench.camera.file_path.get() == str(bench.path)


def test_step_scan_file_and_documents(bench) -> None:
    _, docs = run_scan(bench, mode="step")
    start = docs.of("start")[0]
    assert start["mode"] == "step" and start["n_projections"] == N
    assert start["energy_keV"] == 25.0 and start["exposure_s"] == 0.1
    path = start["data_file"]
    assert path.startswith(str(bench.path))
    _, _, _, theta = check_file(path)
    np.testing.assert_allclose(theta, np.arange(N) * math.pi / N, atol=1e-9)
    assert theta.max() < math.pi
    streams = {d["name"]: d for d in docs.of("descriptor")}
    assert set(streams) == {"darks", "flats", "projections"}
    image = streams["projections"]["data_keys"]["camera_image"]
    assert image["external"] == "STREAM:" and image["shape"] == [ROWS, COLS]
    assert streams["projections"]["data_keys"]["camera_theta"]["units"] == "rad"
    # Frames referenced from the file the IOC wrote, never copied into events.
    resources = docs.of("stream_resource")
    assert {r["parameters"]["dataset"] for r in resources} == {
        "/exchange/data",
        "/exchange/data_white",
        "/exchange/data_dark",
    }
    assert all(r["uri"].endswith(path.split("/")[-1]) for r in resources)
    datums = docs.of("stream_datum")
    assert len(datums) == N + 8 + 6
    assert all("camera_image" not in e["data"] for e in docs.of("event"))
    proj_events = docs.events("projections")
    np.testing.assert_allclose(
        [e["data"]["camera_theta"] for e in proj_events], np.arange(N) * math.pi / N, atol=1e-9
    )
    # The EpicsMotor readback: the stage stopped at each angle.
    np.testing.assert_allclose(
        [e["data"]["rotation"] for e in proj_events], np.arange(N) * 180 / N, atol=1e-6
    )
    assert docs.of("stop")[0]["exit_status"] == "success"
    assert not bench.shutter.is_open


def test_fly_scan(bench) -> None:
    _, docs = run_scan(bench, mode="fly")
    start = docs.of("start")[0]
    assert start["mode"] == "fly"
    _, _, _, theta = check_file(start["data_file"])
    # Triggered by the stage position in the IOC: angles within a fraction of a step of k·π/N.
    np.testing.assert_allclose(theta, np.arange(N) * math.pi / N, atol=0.3 * math.pi / N)
    assert np.all(np.diff(theta) > 0)
    assert bench.stage.velocity.get() == 30.0  # restored after the sweep
    assert bench.camera.trigger_mode.get() == "internal"
    assert docs.of("stop")[0]["exit_status"] == "success"


def test_beam_dump_suspends_and_resumes(bench) -> None:
    RE = RunEngine({})
    docs = Documents()
    RE.subscribe(docs)
    dumped = threading.Event()
    suspended = threading.Event()

    def dump_mid_scan(name, doc):
        # Lose the beam at the 10th projection for 5 simulated seconds (through the IOC).
        if name == "event" and doc["seq_num"] == 10 and not dumped.is_set():
            dumped.set()
            bench.beam_dump(outage_s=5.0)

    def saw_no_beam(value, **kwargs):
        if value < 50:
            suspended.set()

    RE.subscribe(dump_mid_scan)
    bench.ring_current.subscribe(saw_no_beam, run=False)
    plan = tomo_scan(
        bench.camera,
        bench.stage,
        bench.shutter,
        n_projections=N,
        n_darks=3,
        n_flats=4,
        ring_current=bench.ring_current,
        min_current_mA=50,
    )
    RE(plan)
    assert dumped.is_set() and suspended.is_set()
    assert RE.suspenders == ()  # installed for the scan only
    assert bench.ring_current.get() == pytest.approx(130.0)
    start = docs.of("start")[0]
    _, _, _, theta = check_file(start["data_file"])
    # A frame retaken after the suspension replaced the unrecorded one: no gap, no repeat.
    np.testing.assert_allclose(theta, np.arange(N) * math.pi / N, atol=1e-9)
    proj = docs.events("projections")
    assert [e["seq_num"] for e in proj] == list(range(1, N + 1))
    assert len(docs.of("stream_datum")) == N + 8 + 6
    assert docs.of("stop")[0]["exit_status"] == "success"


def test_retaken_frame_replaces_the_unrecorded_one(bench) -> None:
    # What a suspension does to a step scan: the RunEngine triggers again without having
    # collected the first frame; the IOC's file must keep only the frame the run records.
    cam = bench.camera
    with pytest.raises(RuntimeError, match="not staged"):
        cam.trigger()
    bench.shutter.set("open").wait(timeout=10)
    cam.frame_type.set("flat").wait(timeout=10)
    cam.stage()
    try:
        cam.trigger().wait(timeout=10)  # interrupted: never recorded
        cam.trigger().wait(timeout=10)  # retaken
        first = list(cam.collect_asset_docs())
        cam.trigger().wait(timeout=10)
        second = list(cam.collect_asset_docs())
        path = cam.full_file_name.get()
    finally:
        cam.unstage()
        bench.shutter.set("close").wait(timeout=10)
    assert [name for name, _ in first] == ["stream_resource", "stream_datum"]
    assert first[1][1]["indices"] == {"start": 0, "stop": 1}
    assert [name for name, _ in second] == ["stream_datum"]
    assert second[0][1]["indices"] == {"start": 1, "stop": 2}
    _, flat, _, _ = read_data_exchange(path)
    assert flat.shape == (2, ROWS, COLS)


def test_motor_record_as_epics_motor_expects_it(bench) -> None:
    stage = bench.stage
    stage.set(10.0).wait(timeout=10)
    assert stage.position == pytest.approx(10.0)
    stage.set(10.0).wait(timeout=10)  # zero-length moves finish too (DMOV 0 → 1)
    assert stage.egu == "deg"
    try:
        # STOP mid-move (slowly: 80 real seconds at full travel): the stage stays where it is
        # and the setpoint follows the readback.
        stage.velocity.set(2.0).wait(timeout=10)
        status = stage.set(170.0)
        deadline = time.monotonic() + 10
        while stage.position < 20.0 and time.monotonic() < deadline:
            time.sleep(0.005)
        stage.stop()
        with contextlib.suppress(Exception):  # a stopped move may report failure
            status.wait(timeout=10)
        time.sleep(0.1)  # the readback monitor after the stop
        here = stage.position
        assert 20.0 <= here < 40.0
        assert stage.user_setpoint.get() == pytest.approx(here)
        # A move the stage refuses fails instead of hanging.
        stage.velocity.set(0.0).wait(timeout=10)
        with pytest.raises(Exception, match="failed"):
            stage.set(0.0).wait(timeout=10)
    finally:
        stage.velocity.set(30.0).wait(timeout=10)
    stage.set(0.0).wait(timeout=10)
    assert stage.position == pytest.approx(0.0)
