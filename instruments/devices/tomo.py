"""ophyd devices of a 2-BM-style tomography end station on EPICS.

Plain ophyd EPICS classes with the component names of the simulated devices of
:mod:`insitu.simulators.beamline.devices`, so ``tomo_scan`` runs on either: the rotation stage is an
``ophyd.EpicsMotor``, the ring current an ``EpicsSignalRO``, and :class:`EpicsShutter` and
:class:`EpicsTomoCamera` are ``Device`` subclasses of ``EpicsSignal`` components. Beamline staff
point them at their own IOCs by prefix (:func:`epics_tomo_devices`).

The camera IOC writes the APS Data Exchange file itself (as an areaDetector HDF5 plugin does);
the device references the frames from the run (``stream_resource``/``stream_datum``, shared with
the simulated camera through :mod:`insitu.instruments.devices.tomo_assets`) and tells the IOC when
the
run has recorded a frame (``Commit``), so that a frame retaken after a suspension replaces the
unrecorded one in the file, as in the in-process flavour.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ophyd import Component as Cpt
from ophyd import Device, EpicsMotor, EpicsSignal, EpicsSignalRO
from ophyd.status import DeviceStatus, StatusBase

from .tomo_assets import FrameAssets, image_data_key

__all__ = [
    "EpicsShutter",
    "EpicsTomoCamera",
    "EpicsTomoDevices",
    "epics_tomo_devices",
]

#: Longest wait (s) for a command the IOC acknowledges at once (open a file, commit a frame).
COMMAND_TIMEOUT_S = 30.0


class EpicsShutter(Device):
    """Photon shutter: ``set("open")`` / ``set("close")`` finish when the shutter is there.

    PVs: ``<prefix>Shutter`` (command ``close``/``open``, put-completion when moved),
    ``<prefix>ShutterStatus`` (``closed``/``open``) and ``<prefix>ShutterTime`` (s).
    """

    setpoint = Cpt(EpicsSignal, "Shutter", string=True, put_complete=True, kind="omitted")
    readback = Cpt(EpicsSignalRO, "ShutterStatus", string=True, kind="normal")
    actuation_time = Cpt(EpicsSignal, "ShutterTime", put_complete=True, kind="config")

    _COMMANDS: ClassVar[dict[str, str]] = {"open": "open", "close": "close", "closed": "close"}

    @property
    def is_open(self) -> bool:
        """True when the shutter is open."""
        return self.readback.get() == "open"

    def set(self, value: str, **kwargs: Any) -> StatusBase:
        """``"open"`` or ``"close"``; the status finishes when the IOC reports it done."""
        command = self._COMMANDS.get(str(value).lower())
        if command is None:
            raise ValueError(
                f"{self.name}: shutter command must be 'open' or 'close', got {value!r}"
            )
        return self.setpoint.set(command)

    def open(self) -> StatusBase:
        """Open the shutter."""
        return self.set("open")

    def close(self) -> StatusBase:
        """Close the shutter."""
        return self.set("close")


class EpicsTomoCamera(Device):
    """Tomography camera whose IOC writes an APS Data Exchange file; frames referenced.

    Parameters
    ----------
    prefix : str
        Camera PV prefix, e.g. ``"SIM2BM:cam1:"``.
    metadata : mapping, optional
        Acquisition metadata for the run's start document (``energy_keV``,
        ``pixel_size_um`` …), as the simulated camera carries.

    Notes
    -----
    Components carry the names of :class:`insitu.simulators.beamline.devices.SimTomoCamera`
    (``acquire_time``, ``acquire_period``, ``frame_type``, ``trigger_mode``, ``pso_start``,
    ``pso_step``, ``frame_counter``, ``theta`` (rad), ``file_path``, ``file_name``,
    ``file_number``, ``full_file_name``). Controls use put-completion, so a ``bps.mv`` returns
    once the IOC has applied the value. :meth:`stage` opens a new file in the IOC
    (``Capture``), :meth:`unstage` closes it; :meth:`trigger` writes ``Acquire`` and finishes
    when the frame is in the file.
    """

    acquire_time = Cpt(EpicsSignal, "AcquireTime", put_complete=True, kind="config")
    acquire_period = Cpt(EpicsSignal, "AcquirePeriod", put_complete=True, kind="config")
    frame_type = Cpt(EpicsSignal, "FrameType", string=True, put_complete=True, kind="config")
    trigger_mode = Cpt(EpicsSignal, "TriggerMode", string=True, put_complete=True, kind="config")
    pso_start = Cpt(EpicsSignal, "PSOStart", put_complete=True, kind="config")
    pso_step = Cpt(EpicsSignal, "PSOStep", put_complete=True, kind="config")
    frame_counter = Cpt(EpicsSignalRO, "ArrayCounter_RBV", kind="normal")
    theta = Cpt(EpicsSignalRO, "Theta_RBV", kind="hinted")
    file_path = Cpt(EpicsSignal, "FilePath", string=True, put_complete=True, kind="config")
    file_name = Cpt(EpicsSignal, "FileName", string=True, put_complete=True, kind="config")
    file_number = Cpt(EpicsSignal, "FileNumber", put_complete=True, kind="config")
    full_file_name = Cpt(EpicsSignalRO, "FullFileName_RBV", string=True, kind="config")

    acquire = Cpt(EpicsSignal, "Acquire", kind="omitted")
    capture = Cpt(EpicsSignal, "Capture", put_complete=True, kind="omitted")
    commit = Cpt(EpicsSignal, "Commit", put_complete=True, kind="omitted")
    frame_kind = Cpt(EpicsSignalRO, "FrameKind_RBV", string=True, kind="omitted")
    frame_index = Cpt(EpicsSignalRO, "FrameIndex_RBV", kind="omitted")
    size_x = Cpt(EpicsSignalRO, "ArraySizeX_RBV", kind="omitted")
    size_y = Cpt(EpicsSignalRO, "ArraySizeY_RBV", kind="omitted")
    status_message = Cpt(EpicsSignalRO, "StatusMessage_RBV", string=True, kind="omitted")

    def __init__(
        self, prefix: str = "", *, metadata: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(prefix, **kwargs)
        self.metadata: dict[str, Any] = dict(metadata or {})
        self._assets: FrameAssets | None = None
        self._last_frame: tuple[str, int] | None = None

    @property
    def image_key(self) -> str:
        """Data key of the external image."""
        return f"{self.name}_image"

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of a frame, as the IOC reports it."""
        return int(self.size_y.get()), int(self.size_x.get())

    def _ioc_error(self, action: str) -> RuntimeError | None:
        message = str(self.status_message.get(use_monitor=False) or "")
        if message:
            return RuntimeError(f"{self.name}: the camera IOC could not {action}: {message}")
        return None

    # -- staging: one Data Exchange file per scan -------------------------------------------
    def stage(self) -> list[Any]:
        """Open a new Data Exchange file in the IOC; raise with the IOC's reason if it cannot."""
        staged = super().stage()
        try:
            self.capture.set(1).wait(timeout=COMMAND_TIMEOUT_S)
            if int(self.capture.get(use_monitor=False)) != 1:
                raise self._ioc_error("open a file") or RuntimeError(
                    f"{self.name}: the camera IOC did not open a file"
                )
            path = Path(str(self.full_file_name.get(use_monitor=False)))
            self._assets = FrameAssets(path.as_uri(), self.image_key, self.shape)
            self._last_frame = None
        except BaseException:
            super().unstage()
            raise
        return staged

    def unstage(self) -> list[Any]:
        """Close the file in the IOC (it trims a frame the run never recorded)."""
        self._assets = None
        self._last_frame = None
        self.capture.set(0).wait(timeout=COMMAND_TIMEOUT_S)
        return super().unstage()

    # -- acquisition ------------------------------------------------------------------------
    def trigger(self) -> DeviceStatus:
        """Take one frame; the status finishes when the IOC has written it."""
        if self._assets is None:
            raise RuntimeError(
                f"{self.name} is not staged: stage it (bps.stage or bpp.stage_wrapper) so that "
                "the IOC has a Data Exchange file to write to"
            )
        status = DeviceStatus(self)

        def acquired(*args: Any, **kwargs: Any) -> None:
            # ophyd runs put callbacks in its own thread, where Channel Access reads are safe;
            # the IOC updated these PVs before it completed the put.
            try:
                error = self._ioc_error("take a frame")
                if error is not None:
                    raise error
                kind = str(self.frame_kind.get(use_monitor=False))
                index = int(self.frame_index.get(use_monitor=False))
            except Exception as exc:
                status.set_exception(exc)
            else:
                self._last_frame = (kind, index)
                status.set_finished()

        self.acquire.put(1, use_complete=True, callback=acquired)
        return status

    # -- documents --------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """Data keys, the external ``<name>_image`` included."""
        out = dict(super().describe())
        out[self.image_key] = image_data_key(f"PV:{self.prefix}image", self.shape)
        if not out.get(self.theta.name, {}).get("units"):
            out[self.theta.name]["units"] = "rad"
        return out

    def collect_asset_docs(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Keep the last frame in the IOC's file and reference it from the run."""
        frame, self._last_frame = self._last_frame, None
        assets = self._assets
        if frame is None or assets is None:
            return
        self.commit.set(1).wait(timeout=COMMAND_TIMEOUT_S)
        yield from assets.docs(*frame)


@dataclass
class EpicsTomoDevices:
    """The EPICS devices of one tomography end station."""

    stage: EpicsMotor
    shutter: EpicsShutter
    ring_current: EpicsSignalRO
    camera: EpicsTomoCamera

    def all(self) -> tuple[Device | EpicsSignalRO, ...]:
        """Every device, for connecting and destroying them together."""
        return (self.stage, self.shutter, self.ring_current, self.camera)


def epics_tomo_devices(
    prefix: str,
    *,
    metadata: Mapping[str, Any] | None = None,
    stage_pv: str = "m1",
    camera_prefix: str = "cam1:",
    ring_current_pv: str = "RingCurrent",
) -> EpicsTomoDevices:
    """Stage, shutter, ring current and camera under one PV prefix (not yet connected).

    Parameters
    ----------
    prefix : str
        Prefix of every PV, e.g. ``"SIM2BM:"`` or a beamline's own ``"2bma:"``.
    metadata : mapping, optional
        Acquisition metadata carried by the camera into the run's start document.
    stage_pv, camera_prefix, ring_current_pv : str
        PV names after the prefix: the motor record, the camera, the ring current.

    Returns
    -------
    EpicsTomoDevices
        Devices named ``rotation``, ``shutter``, ``ring_current`` and ``camera``, as on the
        simulated bench.
    """
    return EpicsTomoDevices(
        stage=EpicsMotor(prefix + stage_pv, name="rotation"),
        shutter=EpicsShutter(prefix, name="shutter"),
        # Monitored: suspenders on the ring current act on its updates.
        ring_current=EpicsSignalRO(
            prefix + ring_current_pv, name="ring_current", auto_monitor=True
        ),
        camera=EpicsTomoCamera(prefix + camera_prefix, name="camera", metadata=metadata),
    )
