"""A piece of :func:`~insitu.protocols.bench.open_bench`: the potentiostat, real or simulated.

A real resource opens the instrument. ``sim:MATERIAL`` starts the virtual cell (new, given,
or restored from its checkpoint) behind an emulator on 127.0.0.1, checkpoints it if asked,
and connects the same driver to it over the wire.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace

from insitu.instruments.devices.potentiostat import PotentiostatDevice
from insitu.instruments.resources import open_potentiostat
from insitu.simulators.cell.model import CellGeometry, VirtualCell

from .emulated import SimBench, start_emulator
from .spec import BenchSpec

__all__ = ["enter_potentiostat"]


def enter_potentiostat(
    stack: contextlib.ExitStack, spec: BenchSpec
) -> tuple[PotentiostatDevice, SimBench | None]:
    """Open the potentiostat of ``spec`` on ``stack``; the device and the simulation behind it.

    Parameters
    ----------
    stack : contextlib.ExitStack
        Closes the driver (the cell switched off), then stops the emulator.
    spec : BenchSpec
        A description with a potentiostat.

    Returns
    -------
    tuple
        The ophyd device named ``potentiostat``, and the simulated bench behind it
        (``None`` for a real instrument).
    """
    assert spec.potentiostat is not None
    sim: SimBench | None = None
    resource = spec.potentiostat
    if spec.simulated:
        sim = stack.enter_context(_simulated_cell(spec))
        resource = sim.resource
    # The driver's timeout stays in real seconds: a simulated answer time would be
    # microseconds of real time at high speed-ups.
    driver = stack.enter_context(open_potentiostat(resource, timeout_s=spec.timeout_s))
    return PotentiostatDevice(driver, name="potentiostat"), sim


@contextlib.contextmanager
def _simulated_cell(spec: BenchSpec) -> Iterator[SimBench]:
    """The emulator serving the spec's cell, checkpointed while it runs if asked."""
    from insitu.simulators.cell.persistence import CellCheckpointer

    cell = _restored_cell(spec) if spec.restore else spec.cell
    geometry = spec.geometry
    if cell is None:
        geometry = geometry or CellGeometry.lab_ccd()
        if spec.temperature_C is not None:
            geometry = replace(geometry, temperature_K=spec.temperature_C + 273.15)
    with start_emulator(
        spec.material or "",
        emulator=spec.emulator,
        speedup=spec.speedup,
        seed=spec.seed,
        geometry=geometry,
        cell=cell,
        faults=spec.faults,
        instrument_faults=spec.instrument_faults,
    ) as sim:
        if spec.checkpoint is None:
            yield sim
            return
        with CellCheckpointer(sim.cell, spec.checkpoint, lock=sim.cell_lock):
            yield sim


def _restored_cell(spec: BenchSpec) -> VirtualCell:
    from insitu.simulators.cell.persistence import load_cell

    checkpoint = spec.checkpoint
    assert checkpoint is not None  # the description checks this
    if not checkpoint.is_file():
        raise FileNotFoundError(
            f"no cell checkpoint at {checkpoint}: the simulated cell of this experiment "
            "cannot be restored (was the folder moved or cleaned?)"
        )
    return load_cell(checkpoint)
