"""A simulated bench with a faulty cable between the driver and the emulator."""

from __future__ import annotations

import pytest

from insitu.instruments.errors import InstrumentError, InstrumentTimeoutError
from insitu.protocols.bench import BenchSpec, BenchSpecError, open_bench
from insitu.simulators.faults import WireFaults


@pytest.mark.parametrize("emulator", ["keithley2450", "methodscript"])
def test_the_driver_talks_through_the_link(emulator) -> None:
    faults = WireFaults(delay=0.05, delay_s=0.001, split=0.05, seed=2)
    with open_bench(BenchSpec("sim:A-LPS", emulator=emulator, faults=faults)) as bench:
        assert bench.sim is not None and bench.sim.link is not None
        port = str(bench.sim.link.port)
        assert port in bench.sim.resource  # the driver's resource is the link's, same form
        driver = bench.potentiostat.driver
        for _ in range(20):
            assert driver.identify().model  # delayed and split replies still read whole
        injected = bench.sim.link.injected
        assert injected["lines"] >= 20 and injected["delay"] + injected["split"] > 0


def test_replies_that_cannot_be_read_are_instrument_errors() -> None:
    """Every reply garbled: a one-character reply (``:OUTP?`` answers 0 or 1) is then noise,
    refused with the project's error naming the command, never a bare ValueError."""
    faults = WireFaults(garble=1.0)
    spec = BenchSpec("sim:A-LPS", emulator="keithley2450", faults=faults, timeout_s=0.5)
    with open_bench(spec) as bench:
        driver = bench.potentiostat.driver
        with pytest.raises(InstrumentError, match=r":OUTP\?"):
            driver.parse_number(driver.query(":OUTP?"), int, ":OUTP?")


def test_an_instrument_that_never_answers_times_out() -> None:
    spec = BenchSpec(
        "sim:A-LPS", emulator="keithley2450", faults=WireFaults(drop=1.0), timeout_s=0.3
    )
    with open_bench(spec) as bench:
        with pytest.raises(InstrumentTimeoutError, match=r"\*IDN\?"):
            bench.potentiostat.driver.identify()


def test_faults_need_a_simulated_cell() -> None:
    with pytest.raises(BenchSpecError, match="faults"):
        BenchSpec("TCPIP::10.0.0.5::5025::SOCKET", faults=WireFaults(drop=0.1))
