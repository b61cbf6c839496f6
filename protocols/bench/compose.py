"""The one bench entry point: :func:`open_bench` turns a :class:`BenchSpec` into a :class:`Bench`.

It composes the pieces in order (potentiostat, oven, pace, tomography) on one exit stack,
so whatever opened is closed in reverse however the block ends: the cell is switched off
before its emulator stops, the IOC stopped, the checkpoint written once more.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from insitu.instruments.devices.potentiostat import PotentiostatDevice
from insitu.instruments.devices.temperature import TemperatureController
from insitu.simulators.cell.model import VirtualCell
from insitu.simulators.clock import SimClock

from .emulated import SimBench
from .oven import enter_oven
from .pace import SimPace
from .potentiostat import enter_potentiostat
from .spec import BenchSpec
from .tomography import enter_tomography

__all__ = ["Bench", "open_bench"]

#: The names plans look devices up by (``Bench.devices``), in this order.
DEVICE_NAMES = ("potentiostat", "oven", "camera", "stage", "shutter", "ring_current")


@dataclass
class Bench:
    """The devices of an open bench, and the simulation behind them if it is simulated."""

    #: What was opened.
    spec: BenchSpec
    potentiostat: PotentiostatDevice | None = None
    oven: TemperatureController | None = None
    camera: Any = None
    stage: Any = None
    shutter: Any = None
    ring_current: Any = None
    #: The emulator and virtual cell behind a simulated potentiostat.
    sim: SimBench | None = None
    #: The one simulation clock (the cell's, else the simulated beamline's).
    clock: SimClock | None = None
    #: Simulated cell with ``rest_speedup``: subscribe it to the RunEngine.
    pace: SimPace | None = None
    #: The tomography devices as one object (``SimTomoBench``, ``EpicsTomoBench`` or
    #: ``EpicsTomoDevices``).
    tomo: Any = None
    #: The frame source of an in-process simulated beamline imaging the cell.
    imaging: Any = None
    #: Where each instrument was reached (``potentiostat``, ``oven``, ``tomography``).
    resources: dict[str, str] = field(default_factory=dict)
    #: The spec's beamline faults at work (a ``BeamlineFaultInjector``: ``injected`` counts
    #: what was done), when it gave any.
    beamline_faults: Any = None

    def faults_injected(self) -> dict[str, dict[str, int]]:
        """What the simulated bench's faults did so far, by where they were injected.

        Returns
        -------
        dict
            ``wire`` (the faulty cable's counts by kind, and ``lines``, the reply lines
            seen) and ``beamline`` (frames lost and retaken, stage stalls, beam losses and
            the beam coming back), each present only where faults were asked for.
        """
        out: dict[str, dict[str, int]] = {}
        link = None if self.sim is None else self.sim.link
        if link is not None:
            out["wire"] = dict(link.injected)
        if self.beamline_faults is not None:
            out["beamline"] = dict(self.beamline_faults.injected)
        return out

    @property
    def simulated(self) -> bool:
        """Whether the cell is simulated."""
        return self.sim is not None

    @property
    def cell(self) -> VirtualCell | None:
        """The simulated cell (``None`` for a real one)."""
        return None if self.sim is None else self.sim.cell

    @property
    def scans(self) -> Path | None:
        """Folder the simulated camera writes to."""
        return self.spec.scans

    def devices(self) -> dict[str, Any]:
        """The devices present, by the names plans look them up by."""
        named = {name: getattr(self, name) for name in DEVICE_NAMES}
        return {name: device for name, device in named.items() if device is not None}

    def beam_dump(self, outage_s: float | None = None) -> None:
        """Simulated beamlines only: lose the beam now (back after ``outage_s`` simulated s)."""
        tomo = self.tomo
        if hasattr(tomo, "beam_dump"):  # the IOC's control PV
            tomo.beam_dump(outage_s)
        elif hasattr(getattr(tomo, "ring_current", None), "beam_dump"):  # in-process device
            tomo.ring_current.beam_dump(outage_s)
        else:
            raise RuntimeError("no simulated beamline on this bench: nothing to dump the beam of")


@contextlib.contextmanager
def open_bench(spec: BenchSpec) -> Iterator[Bench]:
    """Open the devices ``spec`` describes; close drivers, stop emulators and IOCs on exit.

    Parameters
    ----------
    spec : BenchSpec
        What to open (see :class:`~insitu.protocols.bench.BenchSpec`).

    Yields
    ------
    Bench
        The devices, and for a simulated bench the emulator, the cell, the clock and the
        pace.

    Raises
    ------
    UnknownResourceError, InstrumentError
        A potentiostat or oven resource that does not open or does not answer.
    IOCStartError, ConnectionError
        A beamline IOC that does not start, or PVs that do not connect.
    FileNotFoundError
        ``restore=True`` without a checkpoint file.
    """
    if not isinstance(spec, BenchSpec):
        raise TypeError(
            f"open_bench takes a BenchSpec, e.g. open_bench(BenchSpec('sim:A-LPS')), "
            f"not {type(spec).__name__}"
        )
    if spec.scans is not None:
        spec.scans.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        bench = Bench(spec)
        if spec.potentiostat is not None:
            bench.potentiostat, bench.sim = enter_potentiostat(stack, spec)
            bench.resources["potentiostat"] = (
                spec.potentiostat if bench.sim is None else bench.sim.resource
            )
        if bench.sim is not None:
            bench.clock = bench.sim.clock
        if spec.oven is not None:
            bench.oven, bench.resources["oven"] = enter_oven(stack, spec, bench.sim)
        if bench.sim is not None and spec.rest_speedup is not None:
            # Before the beamline: the clock is at rest speed when the first scan is staged.
            bench.pace = SimPace(bench.sim.clock, spec.speedup, spec.rest_speedup)
        if spec.tomography is not None:
            tomography = enter_tomography(stack, spec, bench.sim)
            tomo = bench.tomo = tomography.devices
            bench.camera, bench.stage = tomo.camera, tomo.stage
            bench.shutter, bench.ring_current = tomo.shutter, tomo.ring_current
            bench.imaging = tomography.imaging
            bench.beamline_faults = tomography.faults
            if tomography.prefix is not None:
                bench.resources["tomography"] = tomography.prefix
            if bench.clock is None:
                bench.clock = getattr(tomo, "clock", None)
        yield bench
