"""tomo_scan on the simulated 2-BM bench: the file, the run's documents, fly mode, beam loss."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
from bluesky import RunEngine
from run_documents import Documents
from tomo_scan_checks import COLS, ROWS, N, check_file, run_scan

from insitu.instruments.dxchange import read_data_exchange
from insitu.protocols.plans.tomo import tomo_scan
from insitu.simulators.beamline.devices import sim_tomo_bench
from insitu.simulators.clock import SimClock


def frame_source(angle_rad: float, kind: str) -> np.ndarray:
    """Flat × transmission of an off-axis disc, dark offset, small seeded noise."""
    rng = np.random.default_rng(int(angle_rad * 1e6) % 2**32)
    noise = rng.normal(0, 5, (ROWS, COLS))
    if kind == "dark":
        return 100 + noise
    flat = np.full((ROWS, COLS), 2e4) + noise  # counts per second of beam
    if kind == "flat":
        return flat
    x = np.arange(COLS) - COLS / 2 - 6 * math.cos(angle_rad)
    path = 2 * np.sqrt(np.clip(8**2 - x**2, 0, None))
    return flat * np.exp(-0.05 * path)[None, :]


@pytest.fixture
def bench(tmp_path):
    clock = SimClock(speedup=200)
    return sim_tomo_bench(frame_source, clock=clock, path=tmp_path, shutter_time_s=0.2)


def test_step_scan_file_and_documents(bench) -> None:
    _, docs = run_scan(bench, mode="step")
    start = docs.of("start")[0]
    assert start["mode"] == "step" and start["n_projections"] == N
    assert start["energy_keV"] == 25.0 and start["exposure_s"] == 0.1
    path = start["data_file"]
    _, _, _, theta = check_file(path)
    np.testing.assert_allclose(theta, np.arange(N) * math.pi / N, atol=1e-9)
    assert theta.max() < math.pi
    streams = {d["name"]: d for d in docs.of("descriptor")}
    assert set(streams) == {"darks", "flats", "projections"}
    # Frames referenced from the file, never copied into events.
    resources = docs.of("stream_resource")
    assert {r["parameters"]["dataset"] for r in resources} == {
        "/exchange/data",
        "/exchange/data_white",
        "/exchange/data_dark",
    }
    assert all(r["uri"].endswith(path.split("/")[-1]) for r in resources)
    datums = docs.of("stream_datum")
    assert len(datums) == N + 8 + 6
    events = docs.of("event")
    assert all("camera_image" not in e["data"] for e in events)
    proj_events = docs.events("projections")
    np.testing.assert_allclose(
        [e["data"]["camera_theta"] for e in proj_events], np.arange(N) * math.pi / N, atol=1e-9
    )
    assert docs.of("stop")[0]["exit_status"] == "success"
    assert not bench.shutter.is_open


def test_fly_scan(bench) -> None:
    # At 200× a 0.1 s frame period is 0.5 ms of real time, far faster than the RunEngine asks
    # for frames: the angles must come from the stage's position compare, not from when the
    # plan triggers (this failed with per-frame software triggers).
    _, docs = run_scan(bench, mode="fly")
    start = docs.of("start")[0]
    assert start["mode"] == "fly"
    _, _, _, theta = check_file(start["data_file"])
    # Triggered by the stage position: angles within a fraction of a step of k·π/N.
    np.testing.assert_allclose(theta, np.arange(N) * math.pi / N, atol=0.3 * math.pi / N)
    assert np.all(np.diff(theta) > 0)
    assert bench.stage.velocity.get() == 30.0  # restored after the sweep
    assert docs.of("stop")[0]["exit_status"] == "success"


def test_beam_dump_suspends_and_resumes(bench) -> None:
    ring = bench.ring_current
    RE = RunEngine({})
    docs = Documents()
    RE.subscribe(docs)
    dumped = threading.Event()

    def dump_mid_scan(name, doc):
        # Lose the beam at the 10th projection for 5 simulated seconds.
        if name == "event" and doc["seq_num"] == 10 and not dumped.is_set():
            dumped.set()
            ring.beam_dump(outage_s=5.0)

    RE.subscribe(dump_mid_scan)
    plan = tomo_scan(
        bench.camera,
        bench.stage,
        bench.shutter,
        n_projections=N,
        n_darks=3,
        n_flats=4,
        ring_current=ring,
        min_current_mA=50,
    )
    assert RE.suspenders == ()
    RE(plan)
    assert dumped.is_set()
    assert RE.suspenders == ()  # installed for the scan only
    start = docs.of("start")[0]
    check_file(start["data_file"])
    proj = docs.events("projections")
    assert [e["seq_num"] for e in proj] == list(range(1, N + 1))
    assert docs.of("stop")[0]["exit_status"] == "success"


def test_tiled_writer_references_the_file(tmp_path) -> None:
    from insitu.protocols.storage.catalog import RunStore

    with RunStore(tmp_path / "store") as store:
        clock = SimClock(speedup=500)
        # Files under the catalog's storage, where the embedded tiled server may read them.
        bench = sim_tomo_bench(frame_source, clock=clock, path=store.data_dir / "tomo")
        RE = RunEngine({})
        store.subscribe(RE)
        (uid,) = RE(
            tomo_scan(
                bench.camera, bench.stage, bench.shutter, n_projections=8, n_darks=2, n_flats=2
            )
        )
        store.raise_errors()
        run = store.client[uid]
        proj = run["projections"]["camera_image"].read()
        darks = run["darks"]["camera_image"].read()
    assert proj.shape == (8, ROWS, COLS)
    assert darks.shape == (4, ROWS, COLS)
    file_proj, _, file_dark, _ = read_data_exchange(bench.camera.full_file_name.get())
    np.testing.assert_array_equal(proj, file_proj)
    np.testing.assert_array_equal(darks, file_dark)


def test_a_plan_built_from_the_stubs_writes_the_same_layout(bench) -> None:
    # Another sequence than tomo_scan's (flats, 4 projections at 0-135°, darks) from the public
    # stubs: the frames land in the same streams and the same Data Exchange datasets.
    from bluesky import plan_stubs as bps
    from bluesky import preprocessors as bpp

    from insitu.protocols.plans import tomo_stubs

    camera, stage, shutter = bench.camera, bench.stage, bench.shutter
    angles = [0.0, 45.0, 90.0, 135.0]

    def plan():
        yield from bps.stage(camera)
        md = tomo_stubs.tomo_start_metadata(camera, stage, {"n_projections": 4}, "custom")
        yield from bps.open_run(md)
        yield from tomo_stubs.declare_tomo_streams(camera, stage)
        yield from tomo_stubs.flat_frames(camera, shutter, 3)
        yield from tomo_stubs.step_projections(camera, stage, shutter, angles)
        yield from tomo_stubs.dark_frames(camera, shutter, 2)
        yield from tomo_stubs.dark_frames(camera, shutter, 0)  # nothing, no shutter move
        yield from bps.close_run()

    def cleanup():
        yield from bps.abs_set(shutter, "close", wait=True)
        yield from bps.unstage(camera)

    docs = Documents()
    RE = RunEngine({})
    RE(bpp.finalize_wrapper(plan(), cleanup()), docs)
    start = docs.of("start")[0]
    assert start["plan_name"] == "custom" and start["data_format"].startswith("APS Data")
    assert [len(docs.events(s)) for s in ("flats", "projections", "darks")] == [3, 4, 2]
    proj, flat, dark, theta = read_data_exchange(start["data_file"])
    assert (proj.shape[0], flat.shape[0], dark.shape[0]) == (4, 3, 2)
    np.testing.assert_allclose(theta, np.deg2rad(angles), atol=1e-9)
