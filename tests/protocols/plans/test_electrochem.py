"""Plans on the simulated bench, in a real RunEngine: documents, results, the cell switched off.

Ground truth comes from the virtual cell behind the emulators (its CCD, its conductivity).
"""

from __future__ import annotations

import bluesky.plan_stubs as bps
import numpy as np
import pytest
from bluesky import RunEngine
from run_documents import Documents

from insitu.instruments.potentiostat import GalvanostaticHold
from insitu.protocols.bench import BenchSpec, open_bench
from insitu.protocols.plans.electrochem import (
    ccd_test,
    conductivity_vs_temperature,
    eis,
    galvanostatic_hold,
    plate_strip,
    run_technique,
)
from insitu.simulators.cell.model import CellGeometry
from insitu.simulators.materials import MATERIALS


def run(plan, **bench_kwargs):
    docs = Documents()
    RE = RunEngine({})
    RE.subscribe(docs)
    with open_bench(BenchSpec(**bench_kwargs)) as bench:
        RE(plan(bench))
        output_on = getattr(bench.potentiostat.driver, "query", None)
        state = {
            "cell": bench.cell,
            "shorted": bench.cell.shorted,
            "keithley_output": output_on(":OUTP?") if output_on else None,
        }
    return docs, state


@pytest.mark.parametrize("material", ["A-LPS", "LiI-AT"])
def test_ccd_test_stops_at_the_short_and_records_the_paper_numbers(material):
    preset = MATERIALS[material]
    docs, state = run(
        lambda bench: ccd_test(bench.potentiostat, interval_s=20.0, md={"sample": "S1"}),
        potentiostat=f"sim:{material}",
        # Slow enough that the plan sees the short before the instrument-side sequence has
        # run far past it (the instrument does not wait for the host).
        speedup=2e4,
    )
    start, stop = docs.of("start")[0], docs.of("stop")[0]
    assert start["plan_name"] == "ccd_test" and start["sample"] == "S1"
    assert "2450" in start["instrument"] and start["software_version"]
    assert start["protocol_parameters"]["current_densities_mA_cm2"][:2] == [0.1, 0.25]
    assert stop["exit_status"] == "success" and stop["reason"] == "short"
    assert state["shorted"] and state["keithley_output"] == "0"  # the cell was switched off
    results = docs.stream("results")
    assert results["ccd_mA_cm2"][0] == pytest.approx(preset.ccd_mA_cm2)
    assert results["charge_to_failure_per_electrode_plated_C_cm2"][0] == pytest.approx(
        preset.charge_to_failure_C_cm2, rel=0.10
    )
    points = docs.stream("electrochem")
    assert set(points) >= {"time_s", "voltage_V", "current_A", "step"}
    assert np.all(np.diff(points["time_s"]) > 0)  # every point stored once, in order
    # The data end shortly after the short: the test stopped rather than running on.
    assert points["time_s"][-1] - results["short_time_s"][0] < 3 * 3600


def test_plate_strip_alternates_and_moves_on_at_the_cutoff():
    docs, _ = run(
        lambda bench: plate_strip(
            bench.potentiostat,
            current_densities_mA_cm2=[0.05, 0.1],
            area_cm2=0.0707,
            half_cycle_s=600.0,
            interval_s=10.0,
        ),
        potentiostat="sim:LiI-AN",
        speedup=1e5,
        geometry=CellGeometry.insitu(),
    )
    points = docs.stream("electrochem")
    current = points["current_A"]
    expected = np.array([0.05, -0.05, 0.1, -0.1]) * 1e-3 * 0.0707
    steps = points["step"]
    assert list(np.unique(steps)) == [0, 1, 2, 3]
    for step, value in enumerate(expected):
        np.testing.assert_allclose(current[steps == step], value, rtol=1e-3)
        assert np.all(np.sign(points["voltage_V"][steps == step]) == np.sign(value))
    assert docs.of("start")[0]["area_cm2"] == 0.0707


def test_eis_plan_stores_a_spectrum_that_gives_back_the_cell_resistance():
    docs, state = run(
        lambda bench: eis(bench.potentiostat, frequency_start_Hz=2e5, points_per_decade=5),
        potentiostat="sim:LiI-AN",
        emulator="methodscript",
        speedup=1e5,
        geometry=CellGeometry.conductivity(),
    )
    spectrum = docs.stream("eis")
    f = spectrum["frequency_Hz"]
    assert f[0] == pytest.approx(2e5) and f[-1] == pytest.approx(0.1, rel=1e-3)
    assert len(f) >= 5 * np.log10(2e5 / 0.1)  # at least 5 points per decade
    np.testing.assert_allclose(np.diff(np.log10(f)), np.diff(np.log10(f))[0], rtol=1e-3)
    # Blocking electrodes: the real part at the highest frequency is the electrolyte.
    expected = state["cell"].bulk_resistance_ohm()
    assert spectrum["z_real_ohm"][0] == pytest.approx(expected, rel=0.05)


def test_conductivity_series_settles_the_oven_before_each_spectrum():
    docs, state = run(
        lambda bench: conductivity_vs_temperature(
            bench.potentiostat,
            bench.oven,
            temperatures_C=[25.0, 60.0],
            frequency_start_Hz=2e5,
            points_per_decade=4,
        ),
        potentiostat="sim:LiI-AN",
        oven="sim",
        emulator="methodscript",
        speedup=1e5,
        geometry=CellGeometry.conductivity(),
        oven_settle_time_s=120.0,
    )
    temperatures = docs.stream("temperature")["oven_readback"]
    np.testing.assert_allclose(temperatures, [298.15, 333.15], atol=0.6)
    spectrum = docs.stream("eis")
    assert len(spectrum["frequency_Hz"]) % 2 == 0  # two spectra of the same frequencies
    # Hotter means more conductive: the second spectrum's high-frequency resistance is lower.
    half = len(spectrum["z_real_ohm"]) // 2
    assert spectrum["z_real_ohm"][half] < 0.8 * spectrum["z_real_ohm"][0]
    assert state["cell"].temperature_K == pytest.approx(333.15, abs=0.6)


def test_a_failing_plan_switches_the_cell_off():
    class Boom(RuntimeError):
        pass

    def plan(bench):
        def explode(points):
            if len(points) > 5:
                raise Boom("analysis failed mid-technique")
            return None

        yield from bps.open_run()
        yield from run_technique(
            bench.potentiostat,
            GalvanostaticHold(current_A=1e-4, duration_s=1e6, interval_s=1.0),
            stop_when=explode,
        )
        yield from bps.close_run()

    RE = RunEngine({})
    with open_bench(BenchSpec("sim:LiI-AN", speedup=1e3)) as bench:
        with pytest.raises(Boom):
            RE(plan(bench))
        assert bench.potentiostat.driver.query(":OUTP?") == "0"


def test_hold_plan_records_technique_and_limits():
    docs, _ = run(
        lambda bench: galvanostatic_hold(
            bench.potentiostat, current_A=1e-4, duration_s=100.0, interval_s=1.0
        ),
        potentiostat="sim:LiI-AN",
        speedup=1e4,
    )
    start = docs.of("start")[0]
    assert start["protocol_parameters"]["current_A"] == 1e-4
    assert len(docs.stream("electrochem")["time_s"]) == 100
