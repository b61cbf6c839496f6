"""A virtual cell behind a potentiostat emulator on loopback: the far end of a ``sim:`` wire.

``sim:MATERIAL`` resource strings resolve here. :func:`start_emulator` starts an emulator
server that speaks a real instrument protocol on 127.0.0.1;
:func:`~insitu.protocols.bench.open_bench` connects the ordinary driver to it, so the code
path from driver to wire is the one used with real hardware. ``insitu sim serve`` serves one
on its own.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal

from insitu.simulators.cell.model import CellGeometry, CellState, VirtualCell
from insitu.simulators.clock import SimClock
from insitu.simulators.faults import FaultyLink, InstrumentFaults, WireFaults
from insitu.simulators.materials import get_material

__all__ = ["SIM_PREFIX", "EmulatorKind", "SimBench", "is_sim_resource", "start_emulator"]

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
    #: The faulty cable between the driver and the emulator, when faults were asked for.
    link: FaultyLink | None = None

    @property
    def cell_lock(self) -> AbstractContextManager[Any]:
        """The lock the emulator holds while it touches the cell.

        Hold it to read or save the cell from another thread (a beamline imaging the cell, a
        checkpointer): no hold is then half applied. The Keithley 2450 emulator's is an
        ``RLock``, the MethodSCRIPT emulator's a ``Lock`` (not re-entrant).
        """
        lock = getattr(self.emulator, "cell_lock", None)
        if lock is None:
            # The Keithley emulator runs every command under its private lock and offers no
            # public name for it.
            lock = getattr(self.emulator, "_lock", None)
        if lock is None:
            raise AttributeError(
                f"{type(self.emulator).__name__} has no lock guarding its cell (cell_lock or _lock)"
            )
        return lock

    def cell_state(self) -> CellState:
        """The cell's state now, taken under :attr:`cell_lock`.

        The state is as the emulator last brought the cell up to date: the Keithley 2450
        emulator does so lazily, at each command it receives, the MethodSCRIPT emulator at
        each batch of samples of a running script.
        """
        with self.cell_lock:
            return self.cell.state


@contextlib.contextmanager
def start_emulator(
    material: str,
    *,
    emulator: EmulatorKind = "keithley2450",
    speedup: float = 1.0,
    seed: int | None = 0,
    geometry: CellGeometry | None = None,
    port: int = 0,
    transport: Literal["tcp", "pty"] = "tcp",
    cell: VirtualCell | None = None,
    faults: WireFaults | None = None,
    instrument_faults: InstrumentFaults | None = None,
) -> Iterator[SimBench]:
    """Start an emulator serving a virtual cell of ``material``; stop it on exit.

    Parameters
    ----------
    material : str
        Material preset (``A-LPS``, ``LPS:0.5LiI``, ``LiI-AT``, ``LiI-AN``).
    emulator : {"keithley2450", "methodscript"}
        Which instrument to emulate (the wire protocol it speaks).
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
    cell : VirtualCell, optional
        Serve this cell (e.g. one restored from a checkpoint,
        :func:`insitu.simulators.cell.persistence.load_cell`) instead of a fresh one; it must
        be of ``material``, ``geometry`` (if given) must be its own, and ``seed`` is unused
        (the cell carries its own random state). The clock starts at the cell's time.
    faults : WireFaults, optional
        Put a faulty cable between the driver and the emulator
        (:class:`~insitu.simulators.faults.FaultyLink`, TCP only): the bench's ``resource``
        is then the link's, and ``SimBench.link`` counts what it did.
    instrument_faults : InstrumentFaults, optional
        Faults inside the emulated instrument (its own error, readings in compliance).
    """
    if faults is not None and faults.any and transport != "tcp":
        raise ValueError("wire faults need the TCP transport (the faulty link is a TCP proxy)")
    name = get_material(material).name  # fail early, with the list of valid names
    if cell is None:
        clock = SimClock(speedup=speedup)
        cell = VirtualCell(material, geometry, seed=seed, start_time_s=clock.now())
    else:
        if cell.material.name != name:
            raise ValueError(
                f"the cell given is of {cell.material.name}, not of {name}: serve it as "
                f"sim:{cell.material.name}"
            )
        if geometry is not None and geometry != cell.geometry:
            raise ValueError(
                f"the cell given has its own geometry ({cell.geometry}); leave geometry out "
                f"or pass that one, not {geometry}"
            )
        # The emulators need the clock never behind the cell: the cell's time is where the
        # simulation resumes.
        clock = SimClock(speedup=speedup, start_s=cell.time_s)
    if emulator == "keithley2450":
        from insitu.simulators.emulators.keithley2450.server import Keithley2450Emulator

        emulator = Keithley2450Emulator(cell, clock, port=port, faults=instrument_faults)
    elif emulator == "methodscript":
        from insitu.simulators.emulators.methodscript.server import MethodScriptEmulator

        emulator = MethodScriptEmulator(
            cell, clock, transport=transport, port=port, faults=instrument_faults
        )
    else:
        raise ValueError(f"unknown emulator {emulator!r}; choose keithley2450 or methodscript")
    resource = emulator.start()
    link = None
    try:
        if faults is not None and faults.any:
            link = FaultyLink(_host_port(resource), faults)
            resource = _same_form(resource, link.port)
        yield SimBench(cell=cell, clock=clock, emulator=emulator, resource=resource, link=link)
    finally:
        if link is not None:
            link.stop()
        emulator.stop()


def _host_port(resource: str) -> tuple[str, int]:
    """Host and port of an emulator's resource (``TCPIP::H::P::SOCKET`` or ``socket://H:P``)."""
    match = re.fullmatch(r"TCPIP\d*::([^:]+)::(\d+)::SOCKET", resource) or re.fullmatch(
        r"socket://([^:/]+):(\d+)", resource
    )
    if match is None:
        raise ValueError(f"wire faults need a TCP emulator; {resource!r} is not one")
    return match[1], int(match[2])


def _same_form(resource: str, port: int) -> str:
    """``resource`` pointed at ``port`` on 127.0.0.1, in the same form."""
    if resource.startswith("socket://"):
        return f"socket://127.0.0.1:{port}"
    return f"TCPIP::127.0.0.1::{port}::SOCKET"
