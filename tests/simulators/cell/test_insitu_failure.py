"""In-situ charge-to-failure of the virtual cell (Fig. 3b: 25, 35, 40, 90 mC).

Measured the way ``insitu tomo-scan --sim MATERIAL --charge-mC Q`` sees it: the cell of
``CellGeometry.insitu()`` cycled through the in-situ protocol with ``cycle_to_charge`` (what
:class:`~insitu.simulators.imaging.frame_source.PelletFrameSource` runs before a scan). Each run
takes
a few milliseconds.
"""

from __future__ import annotations

import pytest

from insitu.simulators.cell import parameters as cp
from insitu.simulators.cell.history import cycle_to_charge, insitu_charge_to_failure_C
from insitu.simulators.cell.model import CellGeometry, VirtualCell, insitu_damage_law
from insitu.simulators.materials import MATERIALS

PRESETS = list(MATERIALS)


def _cycled(name: str, charge_mC: float, seed: int = 0) -> VirtualCell:
    """The in-situ cell after ``charge_mC`` of the protocol, as the tomography source has it."""
    cell = VirtualCell(name, CellGeometry.insitu(), seed=seed)
    cycle_to_charge(cell, charge_mC * 1e-3)
    return cell


@pytest.mark.parametrize("name", PRESETS)
def test_insitu_charge_to_failure_matches_reference(name: str) -> None:
    expected_mC = MATERIALS[name].insitu_charge_to_failure_mC
    assert insitu_charge_to_failure_C(name) * 1e3 == pytest.approx(expected_mC, rel=0.10)


@pytest.mark.parametrize("name", PRESETS)
def test_tomo_scan_history_is_shorted_only_beyond_the_charge_to_failure(name: str) -> None:
    expected_mC = MATERIALS[name].insitu_charge_to_failure_mC
    before = _cycled(name, 0.9 * expected_mC).state
    after = _cycled(name, 1.1 * expected_mC).state
    assert not before.shorted
    assert after.shorted
    assert after.short_charge_C * 1e3 == pytest.approx(expected_mC, rel=0.10)


@pytest.mark.parametrize("name", PRESETS)
def test_cracks_grow_before_the_short(name: str) -> None:
    # The paper's failure sequence: cracks first, growing with charge, then the short. The
    # crack onset comes at 35-50 % of the charge-to-failure (A-LPS ≈ 11 of 25 mC).
    expected_mC = MATERIALS[name].insitu_charge_to_failure_mC
    assert _cycled(name, 0.3 * expected_mC).state.cracks == ()
    early, late = _cycled(name, 0.75 * expected_mC).state, _cycled(name, 0.95 * expected_mC).state
    assert 0.0 < early.damage <= late.damage < 1.0
    assert len(late.cracks) >= 1


def test_short_does_not_depend_on_the_seed() -> None:
    assert insitu_charge_to_failure_C("LiI-AT", seed=1) == insitu_charge_to_failure_C(
        "LiI-AT", seed=2
    )


@pytest.mark.parametrize("name", PRESETS)
def test_insitu_damage_law_is_derived_at_a_fixed_margin(name: str) -> None:
    law = insitu_damage_law(name)
    assert law.critical_current_A_m2 == pytest.approx(
        cp.INSITU_CRITICAL_FRACTION * law.failure_local_current_A_m2
    )
    assert law.damage_charge_C_m2 > 0.0
    assert law.temperature_K == CellGeometry.insitu().temperature_K


def test_insitu_damage_law_is_derived_once_per_preset() -> None:
    # The name is resolved at the edge: a name and its preset share the derivation.
    assert insitu_damage_law("a-lps") is insitu_damage_law(MATERIALS["A-LPS"])


def test_lab_cell_keeps_the_lab_damage_law() -> None:
    # At the lab stack pressure the in-situ calibration has no weight: the lab CCD
    # calibration (test_cell_calibration.py) is untouched.
    for name in PRESETS:
        lab = VirtualCell(name)
        p = cp.PARAMETERS[name]
        rates = lab._rates()
        assert rates.critical_A_m2 == pytest.approx(p.critical_current_A_m2, rel=1e-12)
        assert rates.damage_charge_C_m2 == p.damage_charge_C_m2


def test_intermediate_pressure_lies_between_lab_and_insitu() -> None:
    law = insitu_damage_law("A-LPS")
    p = cp.PARAMETERS["A-LPS"]
    cell = VirtualCell("A-LPS", CellGeometry(stack_pressure_Pa=5e6))
    q = cell._rates().damage_charge_C_m2
    assert min(p.damage_charge_C_m2, law.damage_charge_C_m2) < q
    assert q < max(p.damage_charge_C_m2, law.damage_charge_C_m2)
