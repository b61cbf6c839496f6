"""The lab CCD protocol end to end: driver ⇄ real transport ⇄ emulator ⇄ virtual cell.

Ground truth: the seed paper's CCD of each preset and its charge-to-failure where the paper's
value is consistent with the protocol (REFERENCE.md).
"""

import pytest

from insitu.protocols.lab_ccd import lab_ccd_densities_mA_cm2, run_ccd
from insitu.protocols.simbench import open_instrument
from insitu.simulators.materials import MATERIALS


def test_lab_protocol_current_densities():
    densities = lab_ccd_densities_mA_cm2()
    assert densities[:4] == [0.1, 0.25, 0.5, 0.75]
    assert densities[-1] == 4.0
    assert len(densities) == 17


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["keithley2450", "methodscript"])
@pytest.mark.parametrize("material", list(MATERIALS))
def test_each_preset_shorts_at_its_paper_ccd_through_the_wire(material, protocol):
    preset = MATERIALS[material]
    with open_instrument(f"sim:{material}", speedup=2e6, sim_protocol=protocol, timeout_s=30) as (
        driver,
        bench,
    ):
        result = run_ccd(driver, interval_s=20.0)
        assert bench.cell.shorted
    assert result.stopped_because == "short"
    assert result.ccd_mA_cm2 == pytest.approx(preset.ccd_mA_cm2)
    # The short happens mid-half-cycle, not at a current reversal.
    assert 60.0 < result.short.time_into_half_cycle_s < 3600.0 - 60.0
    if preset.charge_to_failure_consistent:
        assert result.charge_to_failure_C_cm2["per_electrode_plated"] == pytest.approx(
            preset.charge_to_failure_C_cm2, rel=0.10
        )
    assert (
        result.charge_to_failure_C_cm2["total_abs"]
        > result.charge_to_failure_C_cm2["per_electrode_plated"]
    )
