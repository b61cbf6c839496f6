"""The EPICS flavour of the simulated 2-BM bench: the IOC on loopback plus ophyd EPICS devices.

:func:`epics_tomo_bench` starts the beamline IOC
(:func:`insitu.simulators.beamline.ioc_process.beamline_ioc_process`) and yields ordinary ophyd
EPICS
devices (:func:`insitu.instruments.devices.tomo.epics_tomo_devices`) talking to it over Channel
Access on 127.0.0.1, so ``tomo_scan`` runs on it unchanged. Beamline staff use
``epics_tomo_devices`` with their own PV prefix instead.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ophyd import Device, EpicsMotor, EpicsSignal, EpicsSignalRO

from insitu.instruments.devices.tomo import EpicsShutter, EpicsTomoCamera, epics_tomo_devices
from insitu.simulators.beamline.faults import BeamlineFaultInjector, BeamlineFaults
from insitu.simulators.beamline.ioc_process import (
    IOCStartError,
    RunningIOC,
    beamline_ioc_process,
)
from insitu.simulators.beamline.ioc_settings import DEFAULT_PREFIX

__all__ = ["EpicsTomoBench", "epics_tomo_bench"]


@dataclass
class EpicsTomoBench:
    """The EPICS devices of a simulated bench and the IOC process behind them."""

    stage: EpicsMotor
    shutter: EpicsShutter
    ring_current: EpicsSignalRO
    camera: EpicsTomoCamera
    beam_dump_control: EpicsSignal
    process: subprocess.Popen[bytes]
    prefix: str
    port: int
    path: Path

    def beam_dump(self, outage_s: float | None = None) -> None:
        """Lose the beam now; with ``outage_s`` it comes back after that long (simulated).

        Parameters
        ----------
        outage_s : float, optional
            Simulated seconds without beam; ``None`` until :meth:`beam_restore`.
        """
        if outage_s is not None and outage_s <= 0:
            raise ValueError(f"outage_s must be positive, got {outage_s}")
        self.beam_dump_control.put(-1.0 if outage_s is None else float(outage_s))

    def beam_restore(self) -> None:
        """Beam back at the nominal current."""
        self.beam_dump_control.put(0.0)

    def apply_faults(self, faults: BeamlineFaults) -> BeamlineFaultInjector:
        """Lose the beam at the frames ``faults`` names, through the IOC's ``BeamDump`` PV.

        The IOC has no PV that loses a frame or stalls the stage, so only beam losses can be
        applied here; the camera's frame counter (``ArrayCounter_RBV``) is watched for
        their frames, so a loss comes within a frame or two of the one asked for (the
        monitor reaches this process while the next frame starts).

        Raises
        ------
        SimulatorInputError
            If ``faults`` loses frames or stalls the stage.
        """
        return faults.apply_beam_losses(
            frame_counter=self.camera.frame_counter,
            ring_current=self.ring_current,
            dump=self.beam_dump,
        )


@contextmanager
def epics_tomo_bench(
    path: str | Path,
    *,
    prefix: str = DEFAULT_PREFIX,
    timeout_s: float = 60.0,
    **ioc_options: Any,
) -> Iterator[EpicsTomoBench]:
    """Run the beamline IOC on 127.0.0.1 and yield ophyd EPICS devices connected to it.

    Parameters
    ----------
    path : str or pathlib.Path
        Folder the IOC writes its Data Exchange files to.
    prefix : str
        PV prefix.
    timeout_s : float
        Longest wait for the IOC to start and for its PVs to connect.
    **ioc_options
        The IOC's settings, as :func:`insitu.simulators.beamline.ioc_process.beamline_ioc_process`
        takes them: ``frame_source`` (``"package.module:callable"``, the analytic disc by
        default), ``frame_source_kwargs``, ``speedup``, ``velocity_deg_s``, ``acceleration_s``,
        ``shutter_time_s``, ``ring_current_mA``, ``metadata`` (Data Exchange metadata, written
        by the IOC and put in the start document by the camera device).

    Yields
    ------
    EpicsTomoBench
        ``stage`` (``EpicsMotor``), ``shutter``, ``ring_current``, ``camera`` and the process.

    Raises
    ------
    IOCStartError
        If the IOC exits or its PVs do not connect; the message carries the IOC's output.
    """
    deadline = time.monotonic() + timeout_s
    with beamline_ioc_process(path, prefix=prefix, timeout_s=timeout_s, **ioc_options) as ioc:
        # Channels are created only once the IOC serves, so libca's first search finds it at
        # once instead of backing off while the IOC starts.
        devices = epics_tomo_devices(prefix, metadata=ioc.metadata)
        dump = EpicsSignal(prefix + "BeamDump", name="beam_dump")
        try:
            _connect((*devices.all(), dump), ioc, deadline)
            yield EpicsTomoBench(
                stage=devices.stage,
                shutter=devices.shutter,
                ring_current=devices.ring_current,
                camera=devices.camera,
                beam_dump_control=dump,
                process=ioc.process,
                prefix=prefix,
                port=ioc.port,
                path=ioc.path,
            )
        finally:
            # Released before the IOC stops: no disconnection callbacks into a finished test.
            for device in (*devices.all(), dump):
                device.destroy()


def _connect(devices: tuple[Any, ...], ioc: RunningIOC, deadline: float) -> None:
    """Wait for every PV of every device, failing early if the IOC dies."""
    for device in devices:
        while True:
            try:
                if isinstance(device, Device):
                    device.wait_for_connection(all_signals=True, timeout=0.5)
                else:
                    device.wait_for_connection(timeout=0.5)
                break
            except TimeoutError as exc:
                ioc.check_alive()
                if time.monotonic() > deadline:
                    raise IOCStartError(
                        f"{device.name}: PVs did not connect over Channel Access "
                        f"(EPICS_CA_ADDR_LIST={os.environ.get('EPICS_CA_ADDR_LIST')}): {exc}; "
                        f"IOC output:\n{ioc.output()}"
                    ) from exc
