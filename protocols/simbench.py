"""The simulated bench: a virtual cell behind a potentiostat emulator on loopback.

``sim:MATERIAL`` resource strings resolve here. The bench starts an emulator server that
speaks a real instrument protocol on 127.0.0.1 and connects the ordinary driver to it, so the
code path from driver to wire is the one used with real hardware.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from insitu.instruments.potentiostat import Potentiostat
from insitu.instruments.resources import open_potentiostat
from insitu.simulators.cell import CellGeometry, VirtualCell
from insitu.simulators.clock import SimClock
from insitu.simulators.materials import get_material

__all__ = ["SIM_PREFIX", "EmulatorKind", "SimBench", "is_sim_resource", "open_instrument"]

SIM_PREFIX = "sim:"
EmulatorKind = Literal["keithley2450", "methodscript"]


def is_sim_resource(resource: str) -> bool:
    """Whether ``resource`` names the simulated bench (``sim:MATERIAL``)."""
    return resource.strip().lower().startswith(SIM_PREFIX)


@dataclass
class SimBench:
    """What a running simulated bench is made of."""

    cell: VirtualCell
    clock: SimClock
    emulator: object
    resource: str


@contextlib.contextmanager
def start_emulator(
    material: str,
    *,
    protocol: EmulatorKind = "keithley2450",
    speedup: float = 1.0,
    seed: int | None = 0,
    geometry: CellGeometry | None = None,
    port: int = 0,
    transport: Literal["tcp", "pty"] = "tcp",
) -> Iterator[SimBench]:
    """Start an emulator serving a fresh virtual cell of ``material``; stop it on exit.

    Parameters
    ----------
    material : str
        Material preset (``A-LPS``, ``LPS:0.5LiI``, ``LiI-AT``, ``LiI-AN``).
    protocol : {"keithley2450", "methodscript"}
        Which instrument to emulate.
    speedup : float
        Simulated seconds per real second.
    seed : int or None
        Seed of the cell's measurement noise and damage.
    geometry : CellGeometry, optional
        Cell geometry; the lab CCD cell by default.
    port : int
        TCP port on 127.0.0.1 (0 picks a free one).
    transport : {"tcp", "pty"}
        MethodSCRIPT only: a ``socket://`` URL or a pseudo-terminal path.
    """
    get_material(material)  # fail early, with the list of valid names
    clock = SimClock(speedup=speedup)
    cell = VirtualCell(material, geometry, seed=seed, start_time_s=clock.now())
    if protocol == "keithley2450":
        from insitu.simulators.keithley2450_emulator import Keithley2450Emulator

        emulator = Keithley2450Emulator(cell, clock, port=port)
    elif protocol == "methodscript":
        from insitu.simulators.methodscript_emulator import MethodScriptEmulator

        emulator = MethodScriptEmulator(cell, clock, transport=transport, port=port)
    else:
        raise ValueError(f"unknown emulator {protocol!r}; choose keithley2450 or methodscript")
    resource = emulator.start()
    try:
        yield SimBench(cell=cell, clock=clock, emulator=emulator, resource=resource)
    finally:
        emulator.stop()


@contextlib.contextmanager
def open_instrument(
    resource: str,
    *,
    speedup: float = 1.0,
    seed: int | None = 0,
    geometry: CellGeometry | None = None,
    sim_protocol: EmulatorKind = "keithley2450",
    timeout_s: float = 5.0,
) -> Iterator[tuple[Potentiostat, SimBench | None]]:
    """Connect to a real instrument or to a simulated bench (``sim:MATERIAL``).

    Yields the driver and, for ``sim:`` resources, the bench behind it (``None`` otherwise).
    The driver is closed (cell off) and the emulator stopped on exit.
    """
    if is_sim_resource(resource):
        material = resource.strip()[len(SIM_PREFIX) :]
        with start_emulator(
            material, protocol=sim_protocol, speedup=speedup, seed=seed, geometry=geometry
        ) as bench:
            # A 1 s simulated answer time would be microseconds of real time at high
            # speed-ups; the driver's timeout stays in real seconds.
            with open_potentiostat(bench.resource, timeout_s=timeout_s) as driver:
                yield driver, bench
    else:
        with open_potentiostat(resource, timeout_s=timeout_s) as driver:
            yield driver, None
