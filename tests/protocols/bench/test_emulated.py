"""A simulated bench serving an existing (restored) cell: its clock, its lock, a driver over TCP."""

from __future__ import annotations

import time

import numpy as np
import pytest

from insitu.instruments.potentiostat import GalvanostaticHold
from insitu.instruments.resources import open_potentiostat
from insitu.protocols.bench import BenchSpec, open_bench
from insitu.protocols.bench.emulated import start_emulator
from insitu.simulators.cell.history import cycle_to_charge
from insitu.simulators.cell.model import CellGeometry, VirtualCell
from insitu.simulators.cell.persistence import load_cell, save_cell

SPEEDUP = 1e3


@pytest.fixture
def restored(tmp_path) -> VirtualCell:
    """An in-situ A-LPS cell after 15 mC (cracked, hours in), saved and loaded again."""
    cell = VirtualCell("A-LPS", CellGeometry.insitu(), seed=2)
    cycle_to_charge(cell, 15e-3)
    assert cell.time_s > 3600 and cell.state.cracks
    return load_cell(save_cell(cell, tmp_path / "cell.ckpt"))


@pytest.mark.parametrize("protocol", ["keithley2450", "methodscript"])
def test_restored_cell_resumes_where_it_was(restored, protocol) -> None:
    saved = restored.state
    current = -0.04 * 10.0 * restored.geometry.area_m2
    expected_V = restored.voltage(current)  # noise-free, in the restored state
    real_start = time.monotonic()
    with start_emulator("A-LPS", emulator=protocol, speedup=SPEEDUP, cell=restored) as sim:
        # The clock resumes at the cell's time: never behind it, nor hours ahead of it.
        now = sim.clock.now()
        assert sim.cell is restored
        assert saved.time_s <= now <= saved.time_s + (time.monotonic() - real_start) * SPEEDUP
        expected_lock = sim.emulator.cell_lock if protocol == "methodscript" else sim.emulator._lock
        assert sim.cell_lock is expected_lock
        with open_potentiostat(sim.resource, timeout_s=5.0) as driver:
            assert driver.identify().model
            data = driver.run(GalvanostaticHold(current, duration_s=60.0, interval_s=5.0))
        assert data.attrs["end_reason"] == "completed"
        assert np.median(data["voltage_V"]) == pytest.approx(expected_V, rel=0.05)
        state = sim.cell_state()
        assert state.time_s >= saved.time_s + 60.0
        passed = state.charge_passed_C - saved.charge_passed_C
        assert passed == pytest.approx(abs(current) * 60.0, rel=0.05)
        assert len(state.cracks) >= len(saved.cracks)


def test_cell_of_another_material_or_geometry_is_refused(restored) -> None:
    with pytest.raises(ValueError, match="A-LPS, not of LiI-AN"):
        with start_emulator("LiI-AN", cell=restored):
            pass
    with pytest.raises(ValueError, match="its own geometry"):
        with start_emulator("A-LPS", cell=restored, geometry=CellGeometry.lab_ccd()):
            pass
    # Its own geometry is fine (a configuration that names it).
    with start_emulator("A-LPS", cell=restored, geometry=CellGeometry.insitu()) as sim:
        assert sim.cell is restored


def test_open_bench_serves_the_cell_given(restored) -> None:
    saved_time = restored.time_s
    with open_bench(BenchSpec("sim:A-LPS", speedup=SPEEDUP, cell=restored)) as bench:
        assert bench.cell is restored and bench.simulated
        assert bench.clock is not None and bench.clock.now() >= saved_time
        assert bench.potentiostat.connected
    with pytest.raises(ValueError, match="temperature_C"):
        with open_bench(BenchSpec("sim:A-LPS", cell=restored, temperature_C=60.0)):
            pass
