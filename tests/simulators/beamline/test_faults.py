"""Beamline faults chosen per run: parsed from ``kind=value`` items, applied to the devices."""

from __future__ import annotations

import time

import h5py
import numpy as np
import pytest
from bluesky import RunEngine
from ophyd import Signal

from insitu.protocols.plans.device_failures import DeviceFailedError
from insitu.protocols.plans.tomo import tomo_scan
from insitu.simulators.beamline.devices import sim_tomo_bench
from insitu.simulators.beamline.faults import BeamlineFaults, BeamLoss
from insitu.simulators.clock import SimClock
from insitu.simulators.errors import SimulatorInputError

ROWS, COLS = 8, 12


def source(angle_rad: float, kind: str) -> np.ndarray:
    return np.full((ROWS, COLS), 100.0 if kind == "dark" else 1e4)


# --- parsing ---------------------------------------------------------------------------------
def test_parse_reads_every_kind() -> None:
    faults = BeamlineFaults.parse(
        " lose_frame=30, stall=3,lose_frame=12,beam_loss=40:5,beam_loss=9"
    )
    assert faults.lose_frames == (12, 30)
    assert faults.stall_at_move == 3
    assert faults.beam_losses == (BeamLoss(9, None), BeamLoss(40, 5.0))
    assert (
        faults.any
        and str(faults) == "lose_frame=12,lose_frame=30,stall=3,beam_loss=9,beam_loss=40:5"
    )
    assert not BeamlineFaults.parse("").any


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("jitter=3", "beamline fault 'jitter=3': give kind=value with kind one of lose_frame, "),
        ("lose_frame", "beamline fault 'lose_frame': give kind=value"),
        ("lose_frame=1.5", "'1.5' is not a whole number"),
        ("stall=x", "beamline fault 'stall=x': 'x' is not a whole number"),
        ("beam_loss=4:soon", "'soon' is not a number of seconds"),
        ("beam_loss=4:0", "the outage must be positive"),
        ("lose_frame=0", "lose_frame counts frames from 1"),
        ("stall=1,stall=2", "stall given 2 times"),
    ],
)
def test_bad_items_are_named_with_the_valid_kinds(text, message) -> None:
    with pytest.raises(SimulatorInputError) as err:
        BeamlineFaults.parse(text)
    assert message in str(err.value)


def test_the_epics_flavour_refuses_what_its_ioc_cannot_do() -> None:
    BeamlineFaults.parse("beam_loss=4:1").check_flavour("sim-epics")  # a beam loss it can do
    with pytest.raises(SimulatorInputError, match=r"lose_frame=2,stall=1: the EPICS flavour"):
        BeamlineFaults.parse("lose_frame=2,stall=1,beam_loss=4").check_flavour("sim-epics")
    BeamlineFaults.parse("lose_frame=2,stall=1").check_flavour("sim")


# --- applied ---------------------------------------------------------------------------------
def scan(bench, **kw):
    RE = RunEngine({})
    RE.record_interruptions = True
    docs: list[tuple[str, dict]] = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    RE(
        tomo_scan(
            bench.camera,
            bench.stage,
            bench.shutter,
            n_projections=10,
            n_darks=2,
            n_flats=2,
            ring_current=bench.ring_current,
            **kw,
        )
    )
    return docs


def test_applied_faults_count_from_now_and_say_what_they_did(tmp_path) -> None:
    bench = sim_tomo_bench(source, clock=SimClock(speedup=1e4), path=tmp_path)
    scan(bench)  # 28 frames and 10 moves before the faults: they count from after them
    injector = BeamlineFaults.parse("lose_frame=6,beam_loss=8:5").apply(bench)
    docs = scan(bench)
    assert injector.injected == {
        "frames_lost": 1,
        "frames_retaken": 1,
        "stage_stalls": 0,
        "beam_losses": 1,
        "beam_back": 1,
    }
    second = sorted(tmp_path.glob("*.h5"))[-1]
    with h5py.File(second) as f:
        assert f["/exchange/data"].shape[0] == 10  # complete: the lost frame was retaken
        assert f["/process/acquisition/frames_retaken"][()] == 1
    interruptions = [d for n, d in docs if n == "descriptor" and d["name"] == "interruptions"]
    assert len(interruptions) == 1  # the beam loss suspended the scan
    assert [d["exit_status"] for n, d in docs if n == "stop"] == ["success"]


def test_a_stall_counts_moves_from_now(tmp_path) -> None:
    bench = sim_tomo_bench(source, clock=SimClock(speedup=1e4), path=tmp_path)
    bench.stage.set(5.0).wait(timeout=10)  # one move before the faults
    injector = BeamlineFaults.parse("stall=2").apply(bench)
    with pytest.raises(DeviceFailedError, match="rotation stalled"):
        scan(bench)
    assert injector.injected["stage_stalls"] == 1
    (file,) = tmp_path.glob("*.h5")
    with h5py.File(file) as f:
        assert f["/exchange/data"].shape[0] == 1  # stalled on its way to the second angle


def wait_until(predicate, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.005)


def test_beam_losses_on_any_beamline_with_a_dump_command() -> None:
    """The EPICS flavour's path: watch a frame counter, dump through a callable (from a
    thread of its own, as a Channel Access put from a monitor callback must be)."""
    frames, ring = Signal(name="frames", value=3), Signal(name="ring", value=130.0)
    dumped: list[float | None] = []

    def dump(outage_s: float | None) -> None:
        ring.put(0.0)
        dumped.append(outage_s)

    injector = BeamlineFaults.parse("beam_loss=2:5,beam_loss=4").apply_beam_losses(
        frame_counter=frames, ring_current=ring, dump=dump
    )
    frames.put(4)  # frame 1 since the faults were applied
    time.sleep(0.05)
    assert dumped == []
    frames.put(6)  # frame 3: a monitor may skip values, the loss at frame 2 still comes
    wait_until(lambda: len(dumped) == 1)
    assert dumped == [5.0]
    ring.put(130.0)  # the beam back
    frames.put(7)
    wait_until(lambda: len(dumped) == 2)
    assert dumped == [5.0, None]
    assert injector.injected == {"beam_losses": 2, "beam_back": 1}
    injector.detach()
    with pytest.raises(SimulatorInputError, match="EPICS flavour"):
        BeamlineFaults.parse("stall=1").apply_beam_losses(
            frame_counter=frames, ring_current=ring, dump=dump
        )
