"""The bench: a potentiostat (and optionally an oven) as ophyd devices, real or simulated.

One call gives tests, the command line and users the same hardware::

    with open_bench("sim:LiI-AN", oven="sim", speedup=1e5) as bench:
        RE(conductivity_vs_temperature(bench.potentiostat, bench.oven))

``sim:MATERIAL`` starts a virtual cell behind an instrument emulator on 127.0.0.1 (and, with
``oven="sim"``, a Lake Shore 336 emulator whose oven holds that cell), all on one simulation
clock; the devices talk to them through the ordinary drivers over real sockets. A real
resource string opens the real instrument instead, with the same devices on top.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from insitu.instruments.devices.potentiostat import PotentiostatDevice
from insitu.instruments.devices.temperature import TemperatureController
from insitu.instruments.lakeshore336 import LakeShore336
from insitu.instruments.resources import open_potentiostat
from insitu.simulators.cell.model import CellGeometry, VirtualCell
from insitu.simulators.clock import SimClock

from .emulated import EmulatorKind, is_sim_resource, start_emulator

__all__ = ["Bench", "open_bench"]


@dataclass
class Bench:
    """The devices of a bench, and the simulation behind them if it is simulated."""

    potentiostat: PotentiostatDevice
    oven: TemperatureController | None = None
    cell: VirtualCell | None = None
    clock: SimClock | None = None
    resources: dict[str, str] = field(default_factory=dict)

    @property
    def simulated(self) -> bool:
        """Whether the hardware is simulated."""
        return self.cell is not None


@contextlib.contextmanager
def open_bench(
    instrument: str,
    *,
    oven: str | None = None,
    speedup: float = 1e5,
    seed: int | None = 0,
    geometry: CellGeometry | None = None,
    sim_protocol: EmulatorKind = "keithley2450",
    temperature_C: float | None = None,
    oven_tolerance_K: float = 0.5,
    oven_settle_time_s: float = 600.0,
    oven_timeout_s: float | None = None,
    timeout_s: float = 5.0,
    cell: VirtualCell | None = None,
) -> Iterator[Bench]:
    """Open the devices of a bench; close drivers and stop emulators on exit.

    Parameters
    ----------
    instrument : str
        Potentiostat resource (see :func:`insitu.instruments.resources.open_potentiostat`)
        or ``sim:MATERIAL``.
    oven : str, optional
        Temperature controller: a Lake Shore 336 VISA resource, or ``"sim"`` (only with a
        simulated potentiostat) for an emulated oven holding the virtual cell.
    speedup, seed, geometry, sim_protocol, temperature_C
        Simulation only: speed-up of the shared clock, seed of the cell, its geometry
        (the lab CCD cell by default), which instrument to emulate, and the cell's starting
        temperature (the geometry's by default).
    oven_tolerance_K, oven_settle_time_s, oven_timeout_s
        Settle criterion of the oven: within the tolerance for the settle time (simulated
        seconds on a simulated bench), giving up after the timeout.
    timeout_s : float
        Instrument answer timeout in real seconds.
    cell : VirtualCell, optional
        Simulation only: serve this existing cell (e.g. restored from a checkpoint) instead
        of a new one; it keeps its own geometry, temperature and random state.
    """
    if is_sim_resource(instrument):
        material = instrument.strip()[len("sim:") :]
        if cell is not None and temperature_C is not None:
            raise ValueError("temperature_C sets up a new cell; the cell given keeps its own")
        if cell is None:
            geometry = geometry or CellGeometry.lab_ccd()
        if temperature_C is not None:
            geometry = replace(geometry, temperature_K=temperature_C + 273.15)
        with contextlib.ExitStack() as stack:
            sim = stack.enter_context(
                start_emulator(
                    material,
                    protocol=sim_protocol,
                    speedup=speedup,
                    seed=seed,
                    geometry=geometry,
                    cell=cell,
                )
            )
            driver = stack.enter_context(open_potentiostat(sim.resource, timeout_s=timeout_s))
            bench = Bench(
                potentiostat=PotentiostatDevice(driver, name="potentiostat"),
                cell=sim.cell,
                clock=sim.clock,
                resources={"potentiostat": sim.resource},
            )
            if oven is not None:
                if oven != "sim":
                    raise ValueError(
                        f"a simulated cell can only sit in a simulated oven; use --oven sim, "
                        f"not {oven!r}"
                    )
                from insitu.simulators.emulators.lakeshore336 import LakeShore336Emulator

                emulator = LakeShore336Emulator(
                    sim.clock, cells=(sim.cell,), initial_K=sim.cell.temperature_K, seed=seed or 0
                )
                oven_resource = emulator.start()
                stack.callback(emulator.stop)
                bench.oven = _oven_device(
                    stack,
                    oven_resource,
                    timeout_s=timeout_s,
                    tolerance_K=oven_tolerance_K,
                    settle_time_s=oven_settle_time_s,
                    settle_timeout_s=oven_timeout_s,
                    time_source=sim.clock.now,
                )
                bench.resources["oven"] = oven_resource
            yield bench
        return
    if oven == "sim":
        raise ValueError("a simulated oven needs a simulated cell: use --instrument sim:MATERIAL")
    if cell is not None:
        raise ValueError(
            f"a virtual cell can only be served by a simulated bench, not {instrument!r}"
        )
    with contextlib.ExitStack() as stack:
        driver = stack.enter_context(open_potentiostat(instrument, timeout_s=timeout_s))
        bench = Bench(
            potentiostat=PotentiostatDevice(driver, name="potentiostat"),
            resources={"potentiostat": instrument},
        )
        if oven is not None:
            bench.oven = _oven_device(
                stack,
                oven,
                timeout_s=timeout_s,
                tolerance_K=oven_tolerance_K,
                settle_time_s=oven_settle_time_s,
                settle_timeout_s=oven_timeout_s,
            )
            bench.resources["oven"] = oven
        yield bench


def _oven_device(
    stack: contextlib.ExitStack,
    resource: str,
    *,
    timeout_s: float,
    tolerance_K: float,
    settle_time_s: float,
    settle_timeout_s: float | None,
    # A simulation clock's ``now`` (settling in simulated seconds) or the default monotonic clock.
    time_source: Callable[[], float] | None = None,
) -> TemperatureController:
    driver = LakeShore336(resource, timeout_s=timeout_s)
    stack.callback(driver.close)
    kwargs = {} if time_source is None else {"time_source": time_source}
    return TemperatureController(
        driver,
        name="oven",
        tolerance_K=tolerance_K,
        settle_time_s=settle_time_s,
        timeout_s=settle_timeout_s,
        **kwargs,
    )
