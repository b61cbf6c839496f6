"""A piece of :func:`~insitu.protocols.bench.open_bench`: the tomography devices.

- ``"sim"``: the simulated 2-BM devices in this process
  (:func:`insitu.simulators.beamline.devices.sim_tomo_bench`). With a simulated cell they run
  on its clock and the camera images its pellet in the state the cell is in when each scan
  starts (:class:`~insitu.simulators.imaging.cell_imaging.CellImagingSource`); without one,
  the frame source given, on a clock of their own.
- ``"sim-epics"``: the simulated beamline as a caproto IOC in its own process, reached through
  ordinary ophyd EPICS devices (:func:`~insitu.protocols.bench.tomo_epics.epics_tomo_bench`).
  The IOC asks this process for the cell's state over an authenticated loopback connection
  (:class:`~insitu.simulators.imaging.cell_imaging.CellStateServer`) when each scan starts.
- :class:`~insitu.protocols.bench.spec.EpicsBeamline`: a real beamline's PVs.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from typing import Any

from .emulated import SimBench
from .spec import BenchSpec, EpicsBeamline

__all__ = ["Tomography", "enter_tomography"]

#: What the IOC loads to image the simulated cell it asks this process about.
_REMOTE_CELL_SOURCE = "insitu.simulators.imaging.cell_imaging:remote_cell_frame_source"

#: Shortest wait for a real beamline's PVs, whatever the instrument timeout.
_MIN_CONNECT_S = 10.0


@dataclass
class Tomography:
    """The tomography devices and what stands behind them."""

    #: ``SimTomoBench``, ``EpicsTomoBench`` or ``EpicsTomoDevices``: each has ``camera``,
    #: ``stage``, ``shutter`` and ``ring_current``.
    devices: Any
    #: The frame source the bench built (in-process simulated beamline imaging the cell).
    imaging: Any = None
    #: Where the PVs are (EPICS flavours).
    prefix: str | None = None
    #: The spec's beamline faults at work (simulated beamlines given ``beamline_faults``).
    faults: Any = None


def enter_tomography(
    stack: contextlib.ExitStack, spec: BenchSpec, sim: SimBench | None
) -> Tomography:
    """Open the tomography devices of ``spec`` on ``stack``.

    Parameters
    ----------
    stack : contextlib.ExitStack
        Closes the frame source, stops the IOC and the cell-state server.
    spec : BenchSpec
        A description with tomography.
    sim : SimBench or None
        The simulated cell a simulated beamline images.
    """
    if isinstance(spec.tomography, EpicsBeamline):
        return _real_beamline(spec, spec.tomography)
    if spec.tomography == "sim-epics":
        tomography = _sim_epics_beamline(stack, spec, sim)
    else:
        tomography = _sim_beamline(stack, spec, sim)
    faults = spec.beamline_faults
    if faults is not None and faults.any:
        # Applied last, once the devices are connected: frames and moves count from here.
        # In-process devices take every fault; the IOC's devices only a beam loss (the
        # description refused the rest).
        devices = tomography.devices
        tomography.faults = (
            devices.apply_faults(faults)
            if spec.tomography == "sim-epics"
            else faults.apply(devices)
        )
        stack.callback(tomography.faults.detach)
    return tomography


def _imaging_kwargs(spec: BenchSpec) -> dict[str, Any]:
    """How the simulated pellet of the cell is imaged."""
    return {
        "size": spec.size,
        "n_projections": spec.n_projections,
        "seed": int(spec.seed or 0),
        "exposure_s": spec.exposure_s,
    }


def _sim_beamline(stack: contextlib.ExitStack, spec: BenchSpec, sim: SimBench | None) -> Tomography:
    from insitu.simulators.beamline.devices import sim_tomo_bench
    from insitu.simulators.clock import SimClock

    imaging = None
    if sim is not None:
        from insitu.simulators.imaging.cell_imaging import CellImagingSource

        imaging = CellImagingSource(sim.cell_state, spec.material or "", **_imaging_kwargs(spec))
        stack.callback(imaging.close)
        source, clock = imaging, sim.clock
    else:
        # A frame source given is the caller's to close.
        source, clock = spec.frame_source, SimClock(speedup=spec.speedup)
    assert spec.scans is not None  # the description checks this
    devices = sim_tomo_bench(
        source,
        clock=clock,
        path=spec.scans,
        # Known without asking the source for a frame, which would advance its noise.
        shape=getattr(source, "shape", None),
        metadata=spec.metadata,
    )
    return Tomography(devices, imaging=imaging)


def _sim_epics_beamline(
    stack: contextlib.ExitStack, spec: BenchSpec, sim: SimBench | None
) -> Tomography:
    from .tomo_epics import epics_tomo_bench

    kwargs: dict[str, Any] = {}
    if sim is not None:
        from insitu.simulators.imaging.cell_imaging import CellStateServer

        server = stack.enter_context(CellStateServer(sim.cell_state))
        kwargs["frame_source"] = _REMOTE_CELL_SOURCE
        kwargs["frame_source_kwargs"] = {
            "material": spec.material,
            **_imaging_kwargs(spec),
            "address": server.address,
            "authkey_hex": server.authkey_hex,
        }
    else:
        if spec.frame_source is not None:
            kwargs["frame_source"] = spec.frame_source
        kwargs["frame_source_kwargs"] = spec.frame_source_kwargs
    assert spec.scans is not None  # the description checks this
    devices = stack.enter_context(
        epics_tomo_bench(spec.scans, speedup=spec.speedup, metadata=spec.metadata, **kwargs)
    )
    return Tomography(devices, prefix=devices.prefix)


def _real_beamline(spec: BenchSpec, beamline: EpicsBeamline) -> Tomography:
    from insitu.instruments.devices.tomo import epics_tomo_devices

    devices = epics_tomo_devices(
        beamline.prefix,
        metadata=spec.metadata,
        stage_pv=beamline.stage_pv,
        camera_prefix=beamline.camera_prefix,
        ring_current_pv=beamline.ring_current_pv,
    )
    deadline = time.monotonic() + max(spec.timeout_s, _MIN_CONNECT_S)
    for device in devices.all():
        remaining = max(deadline - time.monotonic(), 0.1)
        try:
            device.wait_for_connection(timeout=remaining)
        except TimeoutError as exc:
            raise ConnectionError(
                f"the beamline PVs under {beamline.prefix!r} did not connect ({device.name}: "
                f"{exc}); check the prefix (epics_prefix) and EPICS_CA_ADDR_LIST "
                f"({os.environ.get('EPICS_CA_ADDR_LIST', 'unset')})"
            ) from None
    return Tomography(devices, prefix=beamline.prefix)
