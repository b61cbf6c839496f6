"""``insitu ccd --faults``: the simulated bench's cable delays, splits and garbles replies."""

from __future__ import annotations

import json

import numpy as np
import pytest

from insitu.protocols.cli import main


@pytest.mark.parametrize(
    ("emulator", "faults"),
    [
        # A CCD on the Keithley is a few tens of reply lines (buffers read in bulk): high rates.
        ("keithley2450", "delay=20%:0.002,split=20%"),
        # On the EmStat4 each point is a line (~4700): 2 % still splits ~90 of them, each
        # split pausing 20 ms mid-line.
        ("methodscript", "delay=2%:0.002,split=2%"),
    ],
)
def test_a_ccd_through_a_slow_cable_gives_the_clean_answer(
    tmp_path, capsys, emulator, faults
) -> None:
    """Replies delayed and split in two: the CCD and charge-to-failure are the clean run's
    (0.75 mA/cm², 6.84 C/cm² for sim:A-LPS, seed 0), and the summary counts what the cable
    did."""
    argv = ["ccd", "--instrument", "sim:A-LPS", "--emulator", emulator, "--json"]
    argv += ["--data", str(tmp_path / "data")]
    assert main([*argv, "--faults", faults]) == 0
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


def _last_run(data):
    from insitu.protocols.storage.catalog import RunStore

    with RunStore(data) as store:
        run = store.load(-1)
        return run.stream("electrochem"), dict(run.stop or {}), run


@pytest.mark.parametrize(
    ("emulator", "code"), [("keithley2450", "2774"), ("methodscript", "0x000E")]
)
def test_the_instruments_own_error_ends_the_run_with_its_points(tmp_path, capsys, emulator, code):
    data = tmp_path / "data"
    argv = ["ccd", "--instrument", "sim:A-LPS", "--emulator", emulator, "--json"]
    assert main([*argv, "--data", str(data), "--faults", "error=150"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and code in err[0], err
    points, stop, _ = _last_run(data)
    assert stop["exit_status"] == "fail" and code in stop["reason"]
    # Every point measured before the error is stored, and none after it.
    assert len(points) == 150
    np.testing.assert_allclose(points["time_s"], 10.0 * np.arange(1, 151))


def test_a_reading_in_overload_ends_the_run_with_the_points_before_it(tmp_path, capsys):
    data = tmp_path / "data"
    argv = ["ccd", "--instrument", "sim:A-LPS", "--emulator", "methodscript", "--json"]
    assert main([*argv, "--data", str(data), "--faults", "overload=150"]) == 2
    err = capsys.readouterr().err.strip()
    assert "overloaded" in err and "cell switched off" in err
    points, stop, _ = _last_run(data)
    assert stop["exit_status"] == "fail" and "overloaded" in stop["reason"]
    assert len(points) == 150


def test_garbled_packages_are_lost_points_counted_in_the_run(tmp_path, capsys):
    data = tmp_path / "data"
    argv = ["ccd", "--instrument", "sim:A-LPS", "--emulator", "methodscript", "--json"]
    assert main([*argv, "--data", str(data), "--faults", "garble=2%"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ccd_mA_cm2"] == 0.75  # the clean run's answer
    assert out["points_lost"] > 20  # ~2 % of ~4700 packages
    points, _, run = _last_run(data)
    assert len(points) + out["points_lost"] == 4680  # the clean run's points, all accounted
    assert int(run.stream("data_quality")["points_lost"].sum()) == out["points_lost"]


def test_a_disconnect_between_buffer_reads_is_recovered_on_the_keithley(tmp_path, capsys):
    data = tmp_path / "data"
    argv = ["ccd", "--instrument", "sim:A-LPS", "--emulator", "keithley2450", "--json"]
    assert main([*argv, "--data", str(data), "--faults", "disconnect=40"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["wire_faults"]["disconnect"] == 1
    assert out["ccd_mA_cm2"] == 0.75 and out["points"] == 4680 and out["points_lost"] == 0
