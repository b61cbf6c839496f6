"""The lab CCD test end to end, as a user runs it: ``insitu ccd --instrument sim:M --json``.

Command line → bench → Bluesky plan → RunEngine → catalog → analysis of the stored run, with
the driver meeting the emulator over a real transport. Ground truth: the seed paper's CCD of
each preset and its charge-to-failure where the paper's value is consistent with the protocol
(REFERENCE.md).
"""

import json

import pytest

from insitu.protocols.cli import main
from insitu.protocols.plans.electrochem import lab_ccd_densities_mA_cm2
from insitu.simulators.materials import MATERIALS


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    # One catalog for the module: creating a tiled catalog takes seconds.
    return str(tmp_path_factory.mktemp("catalog"))


def test_lab_protocol_current_densities():
    densities = lab_ccd_densities_mA_cm2()
    assert densities[:4] == [0.1, 0.25, 0.5, 0.75]
    assert densities[-1] == 4.0
    assert len(densities) == 17


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["keithley2450", "methodscript"])
@pytest.mark.parametrize("material", list(MATERIALS))
def test_each_preset_shorts_at_its_paper_ccd(material, protocol, data_dir, capsys):
    preset = MATERIALS[material]
    argv = ["ccd", "--instrument", f"sim:{material}", "--sim-protocol", protocol, "--json"]
    assert main([*argv, "--interval", "20", "--data", data_dir]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ccd_mA_cm2"] == pytest.approx(preset.ccd_mA_cm2)
    assert out["stopped_because"] == "short"
    # ... and stopped because of it (points every 20 s, time_s = 20 s × point), before the
    # next half-cycle: the plan looks for a short between half-cycles, while the instrument
    # holds none. Its own polling alone used to let the test run on for 3–21 half-cycles at
    # this speed-up (1e5: a 1 h half-cycle is 36 ms of real time), and looking at the newest
    # window only, to the end of the 68 h sequence (A-LPS: 200,000 s past its short).
    assert out["points"] * 20.0 <= out["short_time_s"] + 3600.0
    charge = out["charge_to_failure_C_cm2"]
    assert set(charge) == {"per_electrode_plated", "total_abs"}
    if preset.charge_to_failure_consistent:
        assert charge["per_electrode_plated"] == pytest.approx(
            preset.charge_to_failure_C_cm2, rel=0.10
        )
    assert charge["total_abs"] > charge["per_electrode_plated"]
    # The run is in the catalog and the same analysis of it gives the same numbers.
    assert main(["analyze", "ccd", out["run_uid"][:12], "--json", "--data", data_dir]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["ccd_mA_cm2"] == out["ccd_mA_cm2"]
    assert again["charge_to_failure_C_cm2"] == pytest.approx(charge)
