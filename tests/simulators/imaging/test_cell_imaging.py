"""Imaging the cell an emulator drives: a pellet source built from its state, per scan.

The known answers come from the cell model: A-LPS in the in-situ cell has three cracks at
20 mC (damage 0.795, all nucleated at the working electrode, which was stripping); plating
Li back onto that electrode at 0.04 mA/cm² keeps the local current density below the in-situ
j_c, so damage stays put and the Li taken up by the cracks grows linearly in time, and Li is
conserved: what plates at the working electrode is its foil's growth plus the Li in its
cracks. At 0.3 mA/cm² the same cell shorts about 110 s into the hold.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap
import threading
from multiprocessing.connection import Client

import numpy as np
import pytest
from bluesky import RunEngine

from insitu.instruments.dxchange import read_data_exchange, read_metadata
from insitu.protocols.plans.tomo import tomo_scan
from insitu.simulators.beamline.devices import sim_tomo_bench
from insitu.simulators.cell.history import cycle_to_charge
from insitu.simulators.cell.model import CellGeometry, VirtualCell
from insitu.simulators.cell.parameters import FARADAY_C_MOL, LI_MOLAR_VOLUME_M3_MOL
from insitu.simulators.clock import SimClock
from insitu.simulators.imaging.cell_imaging import (
    CellImagingSource,
    CellStateServer,
    remote_cell_frame_source,
)
from insitu.simulators.imaging.frame_source import PelletFrameSource

MATERIAL = "A-LPS"
N = 4  # projections of the sources whose frames are not looked at
REMOTE = "insitu.simulators.imaging.cell_imaging:remote_cell_frame_source"


@pytest.fixture(scope="module")
def cracked() -> VirtualCell:
    """The in-situ A-LPS cell after 20 mC of the in-situ protocol: three cracks, no short."""
    cell = VirtualCell(MATERIAL, CellGeometry.insitu(), seed=0)
    cycle_to_charge(cell, 20e-3)
    state = cell.state
    assert len(state.cracks) == 3 and not state.shorted
    assert {c.origin for c in state.cracks} == {"working"}
    assert state.crack_li_volume_m3 == 0.0  # the working electrode was stripping last
    return cell


def plating_current_A(cell: VirtualCell, j_mA_cm2: float) -> float:
    """Current that plates Li on the working electrode (where the cracks started): I < 0."""
    return -j_mA_cm2 * 10.0 * cell.geometry.area_m2


def plate(cell: VirtualCell, duration_s: float, j_mA_cm2: float = 0.04) -> None:
    """Hold the plating current for ``duration_s``, sampled every 10 s as the protocol does."""
    n = max(int(np.ceil(duration_s / 10.0)), 1)
    cell.hold(
        plating_current_A(cell, j_mA_cm2), cell.time_s + np.linspace(0, duration_s, n + 1)[1:]
    )


def test_interrupted_plating_images_less_li(cracked) -> None:
    before = cracked.state
    full, interrupted = copy.deepcopy(cracked), copy.deepcopy(cracked)
    plate(full, 1800.0)  # the in-situ protocol's 30 min half-cycle
    plate(interrupted, 600.0)  # stopped after a third of it
    truths = {}
    for name, cell in (("full", full), ("interrupted", interrupted)):
        with CellImagingSource(lambda c=cell: c.state, MATERIAL, n_projections=N) as source:
            truths[name] = source.ground_truth
            # The same as imaging the state directly.
            reference = PelletFrameSource(MATERIAL, state=cell.state, n_projections=N)
            assert source.ground_truth == reference.ground_truth
            reference.close()
    f, i = truths["full"], truths["interrupted"]
    assert not f["shorted"] and not i["shorted"]
    assert f["damage"] == i["damage"] == pytest.approx(before.damage)  # below j_c: no damage
    assert f["n_cracks"] == i["n_cracks"] == 3
    # Li in the cracks: linear in the plating time, so a third; the voxels see it too.
    assert i["cell_crack_li_volume_m3"] == pytest.approx(f["cell_crack_li_volume_m3"] / 3, rel=1e-9)
    assert 0 < i["crack_li_volume_m3"] < f["crack_li_volume_m3"]
    assert f["crack_li_volume_m3"] == pytest.approx(3 * i["crack_li_volume_m3"], rel=0.15)
    # The working foil grows, the counter one shrinks, three times less when interrupted.
    pristine = PelletFrameSource(MATERIAL, state=before, n_projections=N)
    t0 = pristine.ground_truth["electrode_thickness_m"]
    pristine.close()
    grow = {k: t["electrode_thickness_m"]["working"] - t0["working"] for k, t in truths.items()}
    assert 0 < grow["interrupted"] < grow["full"]
    assert grow["interrupted"] == pytest.approx(grow["full"] / 3, rel=1e-6)
    # Li conservation at the working electrode: plated = foil growth + Li into the cracks.
    for cell, name in ((full, "full"), (interrupted, "interrupted")):
        plated_C = cell.state.working.plated_charge_C - before.working.plated_charge_C
        into_foil_m3 = grow[name] * cell.geometry.area_m2
        into_cracks_m3 = truths[name]["cell_crack_li_volume_m3"]
        expected_m3 = LI_MOLAR_VOLUME_M3_MOL * plated_C / FARADAY_C_MOL
        assert into_foil_m3 + into_cracks_m3 == pytest.approx(expected_m3, rel=1e-9)
    assert f["charge_passed_mC"] == pytest.approx(
        before.charge_passed_C * 1e3 + 0.04 * 10 * full.geometry.area_m2 * 1800 * 1e3, rel=1e-12
    )
    assert f["current_density_mA_cm2"] is None and f["half_cycle"] is None  # unknown


def test_plating_stopped_before_the_short_images_an_unshorted_cell(cracked) -> None:
    full, interrupted = copy.deepcopy(cracked), copy.deepcopy(cracked)
    plate(full, 1800.0, j_mA_cm2=0.3)
    plate(interrupted, 60.0, j_mA_cm2=0.3)
    assert full.state.short_time_s - cracked.time_s == pytest.approx(110, abs=15)
    f = PelletFrameSource(MATERIAL, state=full.state, n_projections=N)
    i = PelletFrameSource(MATERIAL, state=interrupted.state, n_projections=N)
    try:
        assert f.ground_truth["shorted"] and f.ground_truth["damage"] == 1.0
        assert not i.ground_truth["shorted"] and i.ground_truth["damage"] < 1.0
        assert i.ground_truth["crack_volume_m3"] < f.ground_truth["crack_volume_m3"]
        assert f"{i.state.charge_passed_C * 1e3:.3g} mC" in i.metadata["sample_description"]
    finally:
        f.close()
        i.close()


def test_state_and_charge_are_exclusive(cracked) -> None:
    with pytest.raises(ValueError, match="not both"):
        PelletFrameSource(MATERIAL, 5.0, state=cracked.state)
    with pytest.raises(TypeError, match="state_provider"):
        CellImagingSource(lambda: cracked.state, MATERIAL, state=cracked.state)
    with pytest.raises(TypeError, match="CellState"):
        CellImagingSource(lambda: 1.0, MATERIAL, n_projections=N)  # type: ignore[arg-type, return-value]


def test_live_cell_rebuilds_only_when_the_state_changes(cracked, tmp_path) -> None:
    cell = copy.deepcopy(cracked)
    source = CellImagingSource(
        lambda: cell.state, MATERIAL, n_projections=6, seed=1, workdir=tmp_path, ram_limit_bytes=0
    )
    try:
        assert source.builds == 1 and source.shape == (64, 128)

        def frames() -> list[np.ndarray]:
            return [source(0.0, "dark"), source(0.0, "flat"), source(0.4, "projection")]

        truth0 = source.prepare_scan()
        assert source.builds == 1  # the state has not changed since construction
        first = frames()
        again = source.prepare_scan(tmp_path / "scan_0002.h5")
        assert source.builds == 1 and again == truth0
        # Same state, same seed, noise restarted: the same frames for the same requests.
        for a, b in zip(first, frames(), strict=True):
            np.testing.assert_array_equal(a, b)
        written = json.loads((tmp_path / "scan_0002.truth.json").read_text())
        assert written == json.loads(json.dumps(truth0))

        plate(cell, 600.0)
        truth1 = source.prepare_scan()
        assert source.builds == 2
        assert truth1["cell_time_s"] == cell.time_s > truth0["cell_time_s"]
        assert truth1["cell_crack_li_volume_m3"] > truth0["cell_crack_li_volume_m3"] == 0.0
        assert truth1["electrode_thickness_m"] != truth0["electrode_thickness_m"]
        assert source.state == cell.state
        # The old source's disk store went with it: one store left, the new one.
        assert len(list(tmp_path.glob("insitu-tomo-*"))) == 1
    finally:
        source.close()
    assert not list(tmp_path.glob("insitu-tomo-*"))
    with pytest.raises(RuntimeError, match="closed"):
        source(0.0, "flat")


def test_camera_stage_images_the_state_at_each_scan(cracked, tmp_path) -> None:
    cell = copy.deepcopy(cracked)
    source = CellImagingSource(lambda: cell.state, MATERIAL, n_projections=8)
    bench = sim_tomo_bench(source, clock=SimClock(speedup=1e3), path=tmp_path, shape=source.shape)
    RE = RunEngine({})

    def scan() -> None:
        RE(
            tomo_scan(
                bench.camera, bench.stage, bench.shutter, n_projections=8, n_darks=1, n_flats=1
            )
        )

    try:
        plate(cell, 300.0)  # after the source was built: the scan must see this state
        at_first = cell.state
        scan()
        plate(cell, 300.0)
        at_second = cell.state
        scan()
    finally:
        source.close()
    for number, state in ((1, at_first), (2, at_second)):
        truth = json.loads((tmp_path / f"tomo_{number:04d}.truth.json").read_text())
        assert truth["cell_time_s"] == state.time_s
        assert truth["charge_passed_mC"] == state.charge_passed_C * 1e3
        assert truth["cell_crack_li_volume_m3"] == state.crack_li_volume_m3
        data = tmp_path / f"tomo_{number:04d}.h5"
        proj, flat, dark, _ = read_data_exchange(data)
        assert proj.shape == (8, 64, 128) and flat.shape[0] == dark.shape[0] == 2
        description = read_metadata(data)["sample_description"]
        assert f"{state.charge_passed_C * 1e3:.3g} mC passed" in description
    assert at_second.crack_li_volume_m3 > at_first.crack_li_volume_m3


# --- across processes ---------------------------------------------------------------------


def test_state_server_round_trip_in_process(cracked) -> None:
    cell = copy.deepcopy(cracked)
    with CellStateServer(lambda: cell.state) as server:
        assert server.address.startswith("127.0.0.1:") and len(server.authkey_hex) == 64
        source = remote_cell_frame_source(server.address, server.authkey_hex, MATERIAL, "small", N)
        try:
            assert source.state == cell.state
            plate(cell, 300.0)
            truth = source.prepare_scan()
            assert source.state == cell.state
            assert truth["cell_time_s"] == cell.time_s
        finally:
            source.close()
        key = bytes.fromhex(server.authkey_hex)
        host, port = server.address.split(":")
        # A client that goes away mid-request does not take the server down.
        quitter = Client((host, int(port)), authkey=key)
        quitter.send("state")
        quitter.close()
        lingering = Client((host, int(port)), authkey=key)
        lingering.send("volume")
        answer = lingering.recv()
        assert isinstance(answer, str) and "unknown request" in answer
        lingering.send("state")
        assert lingering.recv() == cell.state
        assert server.running
    # Stopped: the server thread, and the thread of the client still connected, are gone.
    assert not server.running
    assert not [t for t in threading.enumerate() if t.name.startswith("cell-state")]
    with pytest.raises((EOFError, OSError)):
        lingering.send("state")
        lingering.recv()
    lingering.close()


def test_state_server_refuses_a_wrong_key_and_reports_provider_errors(cracked) -> None:
    def broken():
        raise RuntimeError("the emulator has stopped")

    with CellStateServer(lambda: cracked.state) as server:
        with pytest.raises(ConnectionError, match="refused the authentication key"):
            remote_cell_frame_source(server.address, "00" * 32, MATERIAL, n_projections=N)
        source = remote_cell_frame_source(
            server.address, server.authkey_hex, MATERIAL, n_projections=N
        )
        source.close()
    with CellStateServer(broken) as server:
        with pytest.raises(RuntimeError, match="the emulator has stopped"):
            remote_cell_frame_source(server.address, server.authkey_hex, MATERIAL)


def test_server_gone_is_a_clear_error(cracked) -> None:
    with CellStateServer(lambda: cracked.state) as server:
        address, key = server.address, server.authkey_hex
    with pytest.raises(ConnectionError, match=f"cell state server at {address}.*still running"):
        remote_cell_frame_source(address, key, MATERIAL, n_projections=N)


def test_state_server_from_a_subprocess(cracked) -> None:
    cell = copy.deepcopy(cracked)
    plate(cell, 120.0)
    script = textwrap.dedent(
        """
        import json, sys
        from insitu.simulators.imaging.cell_imaging import remote_cell_frame_source
        source = remote_cell_frame_source(**json.loads(sys.argv[1]))
        truth = source.prepare_scan()
        print(json.dumps({"time_s": source.state.time_s, "truth": truth}))
        source.close()
        """
    )
    with CellStateServer(lambda: cell.state) as server:
        kwargs = {
            "address": server.address,
            "authkey_hex": server.authkey_hex,
            "material": MATERIAL,
            "n_projections": N,
        }
        done = subprocess.run(
            [sys.executable, "-c", script, json.dumps(kwargs)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["time_s"] == cell.time_s
    expected = PelletFrameSource(MATERIAL, state=cell.state, n_projections=N)
    assert out["truth"] == json.loads(json.dumps(expected.ground_truth))
    expected.close()


def test_epics_flavour_images_the_served_state(cracked, tmp_path) -> None:
    from insitu.protocols.bench.tomo_epics import epics_tomo_bench

    cell = copy.deepcopy(cracked)
    with CellStateServer(lambda: cell.state) as server:
        kwargs = {
            "address": server.address,
            "authkey_hex": server.authkey_hex,
            "material": MATERIAL,
            "n_projections": 8,
        }
        with epics_tomo_bench(
            tmp_path,
            frame_source=REMOTE,
            frame_source_kwargs=kwargs,
            speedup=100,
            shutter_time_s=0.2,
        ) as bench:
            plate(cell, 300.0)  # after the IOC built its source: the scan must fetch this state
            served = cell.state
            RE = RunEngine({})
            RE(
                tomo_scan(
                    bench.camera, bench.stage, bench.shutter, n_projections=8, n_darks=1, n_flats=1
                )
            )
    truth = json.loads((tmp_path / "tomo_0001.truth.json").read_text())
    assert truth["cell_time_s"] == served.time_s
    assert truth["charge_passed_mC"] == served.charge_passed_C * 1e3
    assert truth["cell_crack_li_volume_m3"] == served.crack_li_volume_m3 > 0
    proj, _, _, _ = read_data_exchange(tmp_path / "tomo_0001.h5")
    assert proj.shape == (8, 64, 128)
