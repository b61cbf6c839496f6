"""The potentiostat flyer in a real RunEngine, with real drivers talking to emulators over TCP."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterator

import bluesky.plan_stubs as bps
import pytest
from bluesky import RunEngine
from bluesky.utils import FailedStatus

from insitu.instruments.devices.potentiostat import (
    PotentiostatDevice,
    SampleLimits,
    technique_from_dict,
    technique_to_dict,
)
from insitu.instruments.errors import InstrumentReportedError, LimitError
from insitu.instruments.potentiostat import (
    CurrentSequence,
    CurrentStep,
    GalvanostaticHold,
    Impedance,
    OpenCircuit,
)
from insitu.instruments.resources import open_potentiostat
from insitu.protocols.bench.emulated import SimBench, start_emulator
from insitu.simulators.faults import InstrumentFaults

pytestmark = pytest.mark.timeout(30)


class Documents:
    """Every document the RunEngine emits, by name."""

    def __init__(self) -> None:
        self.docs: dict[str, list[dict]] = defaultdict(list)

    def __call__(self, name: str, doc: dict) -> None:
        self.docs[name].append(doc)

    def events(self, stream: str) -> list[dict]:
        """Events of ``stream``, unpacked from the event pages."""
        uids = {d["uid"] for d in self.docs["descriptor"] if d["name"] == stream}
        out = []
        for page in self.docs["event_page"]:
            if page["descriptor"] not in uids:
                continue
            n = len(page["seq_num"])
            for i in range(n):
                out.append(
                    {
                        "seq_num": page["seq_num"][i],
                        "time": page["time"][i],
                        "data": {k: v[i] for k, v in page["data"].items()},
                        "timestamps": {k: v[i] for k, v in page["timestamps"].items()},
                    }
                )
        return out


@pytest.fixture
def keithley() -> Iterator[tuple[SimBench, PotentiostatDevice]]:
    with start_emulator("A-LPS", emulator="keithley2450", speedup=1e5) as bench:
        driver = open_potentiostat(bench.resource, timeout_s=2.0)
        driver.poll_interval_s = 0.005  # type: ignore[attr-defined]
        flyer = PotentiostatDevice(driver, name="pstat")
        try:
            yield bench, flyer
        finally:
            flyer.stop()
            driver.close()


@pytest.fixture
def emstat() -> Iterator[tuple[SimBench, PotentiostatDevice]]:
    with start_emulator("A-LPS", emulator="methodscript", speedup=1e6) as bench:
        driver = open_potentiostat(bench.resource, timeout_s=2.0)
        flyer = PotentiostatDevice(driver, name="pstat")
        try:
            yield bench, flyer
        finally:
            flyer.stop()
            driver.close()


def fly(flyer, technique, *, during=None, name=None):
    """open_run, prepare, kickoff, collect until complete, complete, collect, close_run."""
    yield from bps.open_run()
    if technique is not None:  # None: the technique prepared before
        yield from bps.prepare(flyer, technique, wait=True)
    if name is not None:
        yield from bps.declare_stream(flyer, name=name, collect=True)
    yield from bps.kickoff(flyer, wait=True)
    if during is not None:
        during()
    status = flyer.complete()
    collects = 0
    while not status.done:
        yield from bps.collect(flyer, name=name)
        collects += 1
        yield from bps.sleep(0.01)
    yield from bps.complete(flyer, wait=True)
    yield from bps.collect(flyer, name=name)
    yield from bps.close_run()
    return collects


def test_hold_in_a_run_engine(keithley):
    bench, flyer = keithley
    docs = Documents()
    RE = RunEngine({})
    hold = GalvanostaticHold(current_A=2e-4, duration_s=3000.0, interval_s=1.0)
    RE(fly(flyer, hold), docs)

    points = flyer.points()
    events = docs.events("electrochem")
    assert len(points) == 3000 and len(events) == len(points)
    assert [e["seq_num"] for e in events] == list(range(1, len(events) + 1))
    assert [e["data"]["time_s"] for e in events] == pytest.approx(points["time_s"].tolist())
    assert events[-1]["data"]["voltage_V"] == pytest.approx(points["voltage_V"].iloc[-1])
    assert all(e["data"]["current_A"] == pytest.approx(2e-4, rel=1e-3) for e in events)
    # Arrival timestamps are wall-clock times in the run, not the instrument's time_s.
    start = docs.docs["start"][0]["time"]
    stop = docs.docs["stop"][0]["time"]
    assert all(start <= e["timestamps"]["voltage_V"] <= stop for e in events)
    assert flyer.end_reason == "completed" and flyer.state.get() == "done"
    assert not bench.emulator.output_on
    assert docs.docs["stop"][0]["exit_status"] == "success"

    (descriptor,) = docs.docs["descriptor"]
    keys = descriptor["data_keys"]
    assert set(keys) == {"time_s", "voltage_V", "current_A", "step"}
    assert keys["voltage_V"]["units"] == "V" and keys["time_s"]["units"] == "s"
    assert keys["step"]["dtype"] == "integer" and keys["current_A"]["dtype"] == "number"
    assert all(k["shape"] == [] and k["source"].startswith("pstat:") for k in keys.values())
    config = descriptor["configuration"]["pstat"]["data"]
    assert config["pstat_technique_name"] == "GalvanostaticHold"
    assert json.loads(config["pstat_technique"]) == technique_to_dict(hold)
    assert "2450" in config["pstat_identity"]
    # The live signals carry the last point.
    assert flyer.voltage.get() == pytest.approx(points["voltage_V"].iloc[-1])


def test_collect_returns_only_new_points(keithley):
    _, flyer = keithley
    flyer.prepare(GalvanostaticHold(current_A=1e-4, duration_s=20_000.0, interval_s=1.0))
    flyer.kickoff().wait(5)
    times: list[float] = []
    while not flyer.complete().done:
        for page in flyer.collect_pages():
            assert len(page["time"]) == len(page["data"]["voltage_V"]) > 0
            times.extend(page["data"]["time_s"])
        time.sleep(0.005)
    for page in flyer.collect_pages():
        times.extend(page["data"]["time_s"])
    assert list(flyer.collect_pages()) == []
    assert len(times) == len(flyer.points()) == 20_000
    assert times == sorted(times) and len(set(times)) == len(times)


def test_points_of_the_last_seconds_cover_the_tail(keithley):
    _, flyer = keithley
    flyer.prepare(GalvanostaticHold(current_A=1e-4, duration_s=5_000.0, interval_s=1.0))
    flyer.kickoff().wait(5)
    flyer.complete().wait(10)
    everything = flyer.points()
    tail = flyer.points(last_s=100.0)
    assert len(tail) < len(everything)
    # Whole chunks are returned: at least the last 100 s, ending with the last point.
    assert tail["time_s"].iloc[0] <= everything["time_s"].iloc[-1] - 100.0
    assert tail["time_s"].iloc[-1] == everything["time_s"].iloc[-1]


def test_declared_stream_and_dict_technique(keithley):
    _, flyer = keithley
    flyer.collect_style = "flat"  # bluesky 1.15's declare_stream needs flat data keys
    docs = Documents()
    RE = RunEngine({})
    spec = {
        "technique": "CurrentSequence",
        "steps": [{"current_A": 1e-4, "duration_s": 100.0}, [-1e-4, 100.0]],
        "interval_s": 1.0,
    }
    RE(fly(flyer, spec, name="electrochem"), docs)
    events = docs.events("electrochem")
    assert len(events) == 200 == len(flyer.points())
    assert sorted({e["data"]["step"] for e in events}) == [0, 1]
    assert isinstance(flyer.prepared_technique, CurrentSequence)


def test_stop_mid_run_switches_the_cell_off(keithley):
    bench, flyer = keithley
    docs = Documents()
    RE = RunEngine({})

    def plan():
        yield from bps.open_run()
        # A long interval keeps the event count small: bluesky validates every event.
        yield from bps.prepare(flyer, GalvanostaticHold(1e-4, duration_s=1e7, interval_s=100.0))
        yield from bps.kickoff(flyer, wait=True)
        yield from bps.sleep(0.05)
        assert bench.emulator.output_on
        yield from bps.collect(flyer)
        flyer.stop()  # what the CCD plan does on a short
        yield from bps.complete(flyer, wait=True)
        yield from bps.collect(flyer)
        yield from bps.close_run()

    RE(plan(), docs)
    assert flyer.end_reason == "stopped" and flyer.state.get() == "stopped"
    assert not bench.emulator.output_on
    n = len(flyer.points())
    assert 0 < n < 1e5 and len(docs.events("electrochem")) == n


def test_driver_error_fails_the_plan_and_the_cell_is_off():
    # The instrument's own error mid-run (after 50 readings): the driver raises it, and
    # the output is off.
    faults = InstrumentFaults(error_after=50)
    with start_emulator(
        "A-LPS", emulator="keithley2450", speedup=1e5, instrument_faults=faults
    ) as bench:
        driver = open_potentiostat(bench.resource, timeout_s=2.0)
        flyer = PotentiostatDevice(driver, name="pstat")
        docs = Documents()
        hold = GalvanostaticHold(1e-4, duration_s=1e6, interval_s=1.0)
        try:
            with pytest.raises(FailedStatus):
                RunEngine({})(fly(flyer, hold), docs)
        finally:
            driver.close()
        assert flyer.end_reason == "failed" and flyer.state.get() == "failed"
        assert isinstance(flyer.error, InstrumentReportedError) and flyer.error.code == 2774
        assert len(flyer.points()) == 50
        assert not bench.emulator.output_on
        assert docs.docs["stop"][0]["exit_status"] == "fail"


def test_an_error_in_the_device_still_switches_the_cell_off(keithley, monkeypatch):
    bench, flyer = keithley

    def broken(*args):
        raise RuntimeError("bug while publishing")

    monkeypatch.setattr(flyer, "_publish", broken)
    flyer.prepare(GalvanostaticHold(1e-4, duration_s=1e6, interval_s=1.0))
    with pytest.raises(Exception, match="bug while publishing"):
        flyer.kickoff().wait(5)
    with pytest.raises(Exception, match="bug while publishing"):
        flyer.complete().wait(5)
    assert flyer.end_reason == "failed"
    assert not bench.emulator.output_on


def test_limits_are_checked_at_prepare(keithley):
    bench, flyer = keithley
    with pytest.raises(LimitError):
        flyer.prepare(GalvanostaticHold(5.0, duration_s=10.0))
    with pytest.raises(ValueError, match="unknown technique"):
        flyer.prepare({"technique": "Cyclic", "rate": 1})
    assert bench.emulator.commands.count("*IDN?") == 0  # nothing sent for bad techniques


def test_sample_limits_are_enforced_in_the_device(keithley):
    bench, flyer = keithley
    flyer.sample_limits = SampleLimits(max_abs_current_A=1e-3, max_abs_voltage_V=2.0)
    # Within what the instrument can do, beyond what this sample may see: refused, unsent.
    with pytest.raises(LimitError, match=r"this sample's limit of 0\.001 A"):
        flyer.prepare(GalvanostaticHold(2e-3, duration_s=10.0, voltage_max_V=1.0))
    with pytest.raises(LimitError, match=r"limits\.max_voltage_V"):
        flyer.prepare(GalvanostaticHold(1e-4, duration_s=10.0))  # window ±10 V
    assert bench.emulator.commands.count(":OUTP ON") == 0
    assert bench.emulator.commands.count("*IDN?") == 0


def test_a_point_beyond_the_sample_voltage_switches_the_cell_off(keithley):
    bench, flyer = keithley
    hold = GalvanostaticHold(2e-4, duration_s=3000.0, interval_s=1.0)
    # The instrument's own window (±10 V) is far away; the sample's limit is set below the
    # cell's voltage at this current, as if the instrument's window stop had failed.
    first = GalvanostaticHold(2e-4, duration_s=2.0, interval_s=1.0)
    v_cell = abs(flyer.driver.run(first)["voltage_V"].iloc[-1])
    flyer.prepare(hold)
    flyer.sample_limits = SampleLimits(max_abs_voltage_V=v_cell / 2)
    RE = RunEngine({})
    RE(fly(flyer, None), Documents())
    points = flyer.points()
    assert flyer.end_reason == "voltage_limit"
    assert 0 < len(points) < 3000  # it ended early ...
    assert abs(points["voltage_V"].iloc[-1]) > v_cell / 2  # ... at the first point beyond
    assert not bench.emulator.output_on


def test_eis_stream(emstat):
    bench, flyer = emstat
    docs = Documents()
    RE = RunEngine({})
    eis = Impedance(frequency_start_Hz=200e3, frequency_stop_Hz=1.0, points_per_decade=5)
    RE(fly(flyer, eis), docs)
    assert flyer.stream_name == "eis"
    events = docs.events("eis")
    assert len(events) == len(flyer.points()) > 20
    assert set(events[0]["data"]) == {"frequency_Hz", "z_real_ohm", "z_imag_ohm"}
    (descriptor,) = docs.docs["descriptor"]
    assert descriptor["name"] == "eis"
    assert descriptor["data_keys"]["z_real_ohm"]["units"] == "ohm"
    assert not bench.emulator.cell_is_on


@pytest.mark.parametrize(
    "technique",
    [
        OpenCircuit(duration_s=60.0, interval_s=0.5),
        GalvanostaticHold(1e-4, 3600.0, 2.0, voltage_min_V=-5.0, voltage_max_V=5.0),
        CurrentSequence(
            (CurrentStep(1e-4, 60.0), CurrentStep(-1e-4, 30.0)),
            interval_s=1.0,
            on_limit="next_step",
        ),
        Impedance(frequency_start_Hz=1e5, frequency_stop_Hz=0.1, mode="galvanostatic", dc_A=0.0),
    ],
)
def test_technique_dict_round_trip(technique):
    spec = technique_to_dict(technique)
    assert json.loads(json.dumps(spec)) == spec
    assert technique_from_dict(json.loads(json.dumps(spec))) == technique


def test_technique_from_dict_errors():
    with pytest.raises(ValueError, match="has no parameter"):
        technique_from_dict({"technique": "OpenCircuit", "duration_s": 1, "curent_A": 1})
    with pytest.raises(ValueError, match="requires"):
        technique_from_dict({"technique": "GalvanostaticHold", "duration_s": 1})
    with pytest.raises(ValueError, match="'technique' key"):
        technique_from_dict({"duration_s": 1})
