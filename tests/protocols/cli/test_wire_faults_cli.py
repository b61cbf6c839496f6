"""``insitu ccd --faults``: the simulated bench's cable delays, splits and garbles replies."""

from __future__ import annotations

import json

import pytest

from insitu.protocols.cli import main


@pytest.mark.parametrize("emulator", ["keithley2450", "methodscript"])
def test_a_ccd_through_a_slow_cable_gives_the_clean_answer(tmp_path, capsys, emulator) -> None:
    """Replies delayed and split in two: the CCD and charge-to-failure are the clean run's
    (0.75 mA/cm², 6.84 C/cm² for sim:A-LPS, seed 0), and the summary counts what the cable
    did."""
    argv = ["ccd", "--instrument", "sim:A-LPS", "--emulator", emulator, "--json"]
    argv += ["--data", str(tmp_path / "data")]
    # High rates: a CCD on the Keithley is a few tens of reply lines (buffers read in bulk).
    assert main([*argv, "--faults", "delay=20%:0.002,split=20%"]) == 0
    faulty = json.loads(capsys.readouterr().out)
    assert faulty["ccd_mA_cm2"] == 0.75
    assert faulty["charge_to_failure_C_cm2"]["per_electrode_plated"] == 6.84
    injected = faulty["wire_faults"]
    assert injected["lines"] > 20 and injected["delay"] > 0 and injected["split"] > 0


def test_a_bad_fault_spec_is_refused(tmp_path, capsys) -> None:
    argv = ["ccd", "--instrument", "sim:A-LPS", "--faults", "jitter=1%"]
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--data", str(tmp_path / "data")])
    assert exit_.value.code == 2
    assert "kind=value" in capsys.readouterr().err
