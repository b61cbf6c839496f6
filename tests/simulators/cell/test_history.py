"""Cycling a virtual cell to a chosen point of the in-situ protocol."""

import pytest

from insitu.simulators.cell.history import cycle_to_charge
from insitu.simulators.cell.model import CellGeometry, VirtualCell


def test_cycles_until_the_requested_charge_has_passed():
    cell = VirtualCell("LiI-AN", CellGeometry.insitu(), seed=1)
    point = cycle_to_charge(cell, 0.012)
    assert point.charge_passed_C == pytest.approx(0.012)
    # The cell's own bookkeeping agrees: ∫|I| dt.
    assert cell.state.charge_passed_C == pytest.approx(0.012, rel=1e-6)
    # 0.04 mA/cm² on the 3 mm pellet passes 5.1 mC per 30 min half-cycle: 12 mC ends in the
    # 0.08 mA/cm² step's plating half-cycle.
    assert (point.current_density_mA_cm2, point.half_cycle) == (0.08, "plate")


def test_stops_at_the_short():
    cell = VirtualCell("A-LPS", CellGeometry.insitu(), seed=0)
    point = cycle_to_charge(cell, 1.0)
    assert point.shorted and cell.shorted
    assert point.charge_passed_C < 1.0


def test_zero_charge_leaves_the_cell_pristine_and_negative_is_refused():
    cell = VirtualCell("LiI-AT", CellGeometry.insitu())
    assert cycle_to_charge(cell, 0.0).charge_passed_C == 0.0
    assert cell.state.charge_passed_C == 0.0
    with pytest.raises(ValueError, match="negative"):
        cycle_to_charge(cell, -1.0)
