"""The devices of an in-situ experiment: a potentiostat and a tomography bench, real or simulated.

:func:`open_experiment_bench` reads the ``devices`` section of an experiment file:

- ``potentiostat: sim`` starts ONE virtual cell (the in-situ geometry: 3 mm pellet, 0.5 MPa)
  behind a potentiostat emulator on 127.0.0.1 (EmStat4 MethodSCRIPT or Keithley 2450, over
  TCP), reached through the ordinary driver; a resource string opens a real instrument;
- ``tomography: sim`` builds the simulated 2-BM bench in this process on the same simulation
  clock; its camera images that same cell's pellet in the state the cell is in when each scan
  starts (:class:`~insitu.simulators.imaging.cell_imaging.CellImagingSource`);
- ``tomography: sim-epics`` runs the beamline as a caproto IOC in its own process; the IOC
  asks this process for the cell's state over an authenticated loopback connection
  (:class:`~insitu.simulators.imaging.cell_imaging.CellStateServer`) when each scan starts;
- ``tomography: epics`` connects to a real beamline's PVs under ``epics_prefix``;
- ``tomography: none`` runs the electrochemistry only.

On the simulated bench the cell's state is checkpointed to ``cell.pkl`` in the experiment's
folder every half second (and at exit), so ``insitu experiment resume`` finds the cell as it
was when the process ended.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from insitu.instruments.devices.potentiostat import PotentiostatDevice
from insitu.instruments.resources import open_potentiostat
from insitu.simulators.cell.model import CellGeometry

from ..experiment_config import ExperimentConfig
from .emulated import SimBench, start_emulator

__all__ = ["CELL_CHECKPOINT", "ExperimentBench", "SimPace", "open_experiment_bench"]

#: The simulated cell's checkpoint in the experiment's folder.
CELL_CHECKPOINT = "cell.pkl"


@dataclass
class ExperimentBench:
    """What the experiment plan runs on."""

    potentiostat: PotentiostatDevice
    camera: Any = None
    stage: Any = None
    shutter: Any = None
    ring_current: Any = None
    #: The simulated bench behind the potentiostat (None for real hardware).
    sim: SimBench | None = None
    #: The tomography bench object (simulated, EPICS-simulated or EPICS devices).
    tomo: Any = None
    #: The frame source of the in-process simulated beamline.
    imaging: Any = None
    scans: Path | None = None
    #: Simulated bench: switches the clock between cycling and rest (``RE.subscribe(pace)``).
    pace: SimPace | None = None

    @property
    def simulated(self) -> bool:
        """Whether the cell is simulated."""
        return self.sim is not None

    def beam_dump(self, outage_s: float | None = None) -> None:
        """Simulated beamlines only: lose the beam now (back after ``outage_s`` simulated s)."""
        tomo = self.tomo
        if tomo is None or not (hasattr(tomo, "ring_current") or hasattr(tomo, "beam_dump")):
            raise RuntimeError("no simulated beamline on this bench")
        if hasattr(tomo, "beam_dump"):
            tomo.beam_dump(outage_s)
        else:
            tomo.ring_current.beam_dump(outage_s)


class SimPace:
    """Simulated time runs fast only while current flows; at rest it runs near real time.

    On the simulated bench one clock drives the cell. While a half-cycle runs, a high
    speed-up makes 30 min of plating take a fraction of a second. But at rest (a scan, an
    EIS, the software between segments) a high speed-up would turn each real second of
    computing into hours of open-circuit relaxation, which heals voids and delays the short.
    A real scan takes minutes: at ``rest_speedup`` (100×) the few real seconds a simulated
    scan takes are about that.

    Subscribe it to the RunEngine (``RE.subscribe(pace)``): it reads the documents, so it
    paces any plan, under the command line or the queue server. A run that passes current
    (a half-cycle of the experiment, or a ``galvanostatic_hold``, ``plate_strip`` or
    ``ccd_test`` run) runs at ``cycling_speedup`` from its start document to its stop
    document; everything else at ``rest_speedup``. Time stays continuous.
    """

    #: Plans whose runs pass current throughout.
    CURRENT_PLANS = frozenset({"galvanostatic_hold", "plate_strip", "ccd_test"})

    def __init__(self, clock: Any, cycling_speedup: float, rest_speedup: float) -> None:
        self.clock = clock
        self.cycling_speedup = float(cycling_speedup)
        self.rest_speedup = float(rest_speedup)
        self.clock.speedup = self.rest_speedup

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        """The RunEngine's document callback."""
        if name == "start":
            segment = doc.get("experiment_segment")
            current = (
                segment in ("plate", "strip")
                if segment is not None
                else doc.get("plan_name") in self.CURRENT_PLANS
            )
            self.clock.speedup = self.cycling_speedup if current else self.rest_speedup
        elif name == "stop":
            self.clock.speedup = self.rest_speedup


def insitu_geometry(cfg: ExperimentConfig) -> CellGeometry:
    """The in-situ cell with the experiment's area and thickness."""
    geometry = CellGeometry.insitu()
    geometry = replace(geometry, area_m2=cfg.geometry.area_cm2 * 1e-4)
    if cfg.geometry.thickness_cm is not None:
        geometry = replace(geometry, thickness_m=cfg.geometry.thickness_cm * 1e-2)
    return geometry


@contextlib.contextmanager
def open_experiment_bench(
    cfg: ExperimentConfig, folder: str | Path, *, restore: bool = False
) -> Iterator[ExperimentBench]:
    """Open the experiment's devices; close drivers, stop emulators and IOCs on exit.

    Parameters
    ----------
    cfg : ExperimentConfig
    folder : str or Path
        The experiment's folder (scans go to ``folder/scans``; the simulated cell's
        checkpoint is ``folder/cell.pkl``).
    restore : bool
        Simulated bench: continue with the cell of the checkpoint (a resume) instead of a
        fresh one.
    """
    folder = Path(folder)
    scans = folder / "scans"
    scans.mkdir(parents=True, exist_ok=True)
    dev = cfg.devices
    with contextlib.ExitStack() as stack:
        sim: SimBench | None = None
        if dev.simulated:
            sim = stack.enter_context(_simulated_cell(cfg, folder, restore))
            resource = sim.resource
        else:
            resource = dev.potentiostat
        driver = stack.enter_context(open_potentiostat(resource, timeout_s=dev.timeout_s))
        bench = ExperimentBench(
            potentiostat=PotentiostatDevice(driver, name="potentiostat"), sim=sim, scans=scans
        )
        if sim is not None:
            sim_cfg = dev.simulation
            bench.pace = SimPace(sim.clock, sim_cfg.speedup, sim_cfg.rest_speedup)
        if dev.tomography == "sim":
            assert sim is not None  # the configuration checks this
            _sim_beamline(bench, sim, cfg, scans)
        elif dev.tomography == "sim-epics":
            assert sim is not None
            _sim_epics_beamline(stack, bench, sim, cfg, scans)
        elif dev.tomography == "epics":
            _real_beamline(bench, cfg)
        if bench.imaging is not None:
            stack.callback(bench.imaging.close)
        yield bench


@contextlib.contextmanager
def _simulated_cell(cfg: ExperimentConfig, folder: Path, restore: bool) -> Iterator[SimBench]:
    from insitu.simulators.cell.persistence import CellCheckpointer, load_cell

    sim_cfg = cfg.devices.simulation
    checkpoint = folder / CELL_CHECKPOINT
    cell = None
    if restore:
        if not checkpoint.is_file():
            raise FileNotFoundError(
                f"no cell checkpoint at {checkpoint}: the simulated cell of this experiment "
                "cannot be restored (was the folder moved or cleaned?)"
            )
        cell = load_cell(checkpoint)
    with start_emulator(
        cfg.material,
        protocol=sim_cfg.protocol,
        speedup=sim_cfg.speedup,
        seed=sim_cfg.seed,
        geometry=insitu_geometry(cfg),
        cell=cell,
    ) as sim:
        with CellCheckpointer(sim.cell, checkpoint, lock=sim.cell_lock):
            yield sim


def _source_kwargs(cfg: ExperimentConfig) -> dict[str, Any]:
    sim_cfg = cfg.devices.simulation
    return {
        "material": cfg.material,
        "size": sim_cfg.size,
        "n_projections": cfg.n_projections,
        "seed": sim_cfg.seed,
        "exposure_s": cfg.scan.exposure_s,
    }


def _sim_beamline(
    bench: ExperimentBench, sim: SimBench, cfg: ExperimentConfig, scans: Path
) -> None:
    from insitu.simulators.beamline.devices import sim_tomo_bench
    from insitu.simulators.imaging.cell_imaging import CellImagingSource

    kwargs = _source_kwargs(cfg)
    source = CellImagingSource(sim.cell_state, kwargs.pop("material"), **kwargs)
    tomo = sim_tomo_bench(source, clock=sim.clock, path=scans, shape=source.shape)
    bench.imaging = source
    bench.tomo = tomo
    bench.camera, bench.stage = tomo.camera, tomo.stage
    bench.shutter, bench.ring_current = tomo.shutter, tomo.ring_current


def _sim_epics_beamline(
    stack: contextlib.ExitStack,
    bench: ExperimentBench,
    sim: SimBench,
    cfg: ExperimentConfig,
    scans: Path,
) -> None:
    from insitu.simulators.imaging.cell_imaging import CellStateServer

    from .tomo_epics import epics_tomo_bench

    server = stack.enter_context(CellStateServer(sim.cell_state))
    kwargs = {**_source_kwargs(cfg), "address": server.address, "authkey_hex": server.authkey_hex}
    tomo = stack.enter_context(
        epics_tomo_bench(
            scans,
            frame_source="insitu.simulators.imaging.cell_imaging:remote_cell_frame_source",
            frame_source_kwargs=kwargs,
            speedup=cfg.devices.simulation.speedup,
        )
    )
    bench.tomo = tomo
    bench.camera, bench.stage = tomo.camera, tomo.stage
    bench.shutter, bench.ring_current = tomo.shutter, tomo.ring_current


def _real_beamline(bench: ExperimentBench, cfg: ExperimentConfig) -> None:
    from insitu.instruments.devices.tomo import epics_tomo_devices

    prefix = cfg.devices.epics_prefix or ""
    devices = epics_tomo_devices(prefix)
    deadline = time.monotonic() + max(cfg.devices.timeout_s, 10.0)
    for device in devices.all():
        remaining = max(deadline - time.monotonic(), 0.1)
        try:
            device.wait_for_connection(timeout=remaining)
        except TimeoutError as exc:
            raise ConnectionError(
                f"the beamline PVs under {prefix!r} did not connect ({device.name}: {exc}); "
                f"check epics_prefix and EPICS_CA_ADDR_LIST "
                f"({os.environ.get('EPICS_CA_ADDR_LIST', 'unset')})"
            ) from None
    bench.tomo = devices
    bench.camera, bench.stage = devices.camera, devices.stage
    bench.shutter, bench.ring_current = devices.shutter, devices.ring_current
