"""caproto IOC serving the simulated 2-BM tomography hardware over Channel Access.

The EPICS flavour of :mod:`insitu.simulators.beamline.devices`: the IOC drives the very same
in-process
devices (:class:`~insitu.simulators.beamline.devices.SimRotationStage`, ``SimShutter``,
``SimRingCurrent``, ``SimTomoCamera`` on one :class:`~insitu.simulators.clock.SimClock`), so the
motion profiles, the position-compare triggering and the Data Exchange file are the same code in
both flavours; as an areaDetector HDF5 plugin does, the IOC process writes the file.

PVs, under a prefix ``P`` (default ``SIM2BM:``):

``P m1``
    Motor record (``VAL``, ``RBV``, ``DMOV``, ``MOVN``, ``STOP``, ``VELO``, ``ACCL``, ``EGU``,
    ``HLM``, ``LLM``, …) of the rotation stage, in degrees: enough for ``ophyd.EpicsMotor``.
``P Shutter`` / ``P ShutterStatus`` / ``P ShutterTime``
    Command ``close``/``open`` (the write completes when the shutter has moved), state
    ``closed``/``open``, actuation time in s.
``P RingCurrent`` / ``P BeamDump``
    Storage-ring current (mA); writing ``t > 0`` to ``BeamDump`` loses the beam for ``t``
    simulated seconds, ``t < 0`` until ``0`` is written (beam back).
``P cam1:``
    ``AcquireTime``, ``AcquirePeriod``, ``FrameType`` (dark/flat/projection), ``TriggerMode``
    (internal/position), ``PSOStart``, ``PSOStep`` (deg), ``Acquire`` (busy: a write of 1
    completes when the frame is in the file), ``ArrayCounter_RBV``, ``Theta_RBV`` (rad),
    ``FilePath`` (a folder inside the IOC's data folder, ``--path``: any other is refused, the
    put fails and nothing is created), ``FileName`` (a bare name), ``FileNumber``,
    ``FullFileName_RBV``, ``Capture`` (1 opens a new file, 0 closes it), ``Commit`` (the last
    frame is recorded by the run: keep it),
    ``FrameKind_RBV`` / ``FrameIndex_RBV`` (dataset and index of the last frame),
    ``ArraySizeX_RBV`` / ``ArraySizeY_RBV`` and ``StatusMessage_RBV`` (why the last command
    failed; empty when it did not).

Run it with ``python -m insitu.simulators.beamline.ioc --prefix SIM2BM: --port 5064 --path DIR
--frame-source insitu.simulators.imaging.disc_phantom:disc_frame_source``. It serves on 127.0.0.1
only.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from caproto import AlarmSeverity, AlarmStatus, ChannelType
from caproto.server import PVGroup, SubGroup, pvproperty, run
from caproto.server.records import MotorFields
from ophyd.status import StatusBase

from ..clock import SimClock
from .devices import FRAME_KINDS, FrameSource, SimTomoBench, sim_tomo_bench
from .ioc_settings import DEFAULT_PREFIX, LOOPBACK, READY_LINE, server_environment

__all__ = [
    "DEFAULT_PREFIX",
    "READY_LINE",
    "InvalidFilePathError",
    "TomoBeamlineIOC",
    "confined_folder",
    "load_frame_source",
    "main",
    "server_environment",
]

#: Readback updates per real second while the stage moves.
MOTOR_TICK_HZ = 50.0
#: Travel limits of the rotation stage (deg): it turns freely, fly scans run up below 0°.
TRAVEL_LIMITS_DEG = (-3600.0, 3600.0)


def load_frame_source(spec: str, kwargs: Mapping[str, Any] | None = None) -> FrameSource:
    """Build a frame source from ``"package.module:factory"`` and keyword arguments.

    Parameters
    ----------
    spec : str
        Import path of a callable returning ``frame_source(angle_rad, kind)``.
    kwargs : mapping, optional
        Keyword arguments of the factory (JSON-friendly, as they come from the command line).

    Returns
    -------
    callable
        The frame source.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(
            f"frame source must be given as 'package.module:callable', got {spec!r} "
            "(e.g. 'insitu.simulators.imaging.disc_phantom:disc_frame_source')"
        )
    factory = getattr(importlib.import_module(module_name), attr, None)
    if not callable(factory):
        raise ValueError(f"{attr!r} in module {module_name!r} is not a callable frame source")
    return factory(**dict(kwargs or {}))


async def _wait(status: StatusBase) -> None:
    """Await an ophyd status finished from a worker thread, without blocking the IOC loop."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def finished(_: StatusBase) -> None:
        loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))

    status.add_callback(finished)
    await done
    exc = status.exception()
    if exc is not None:
        raise exc


def _message(exc: BaseException) -> str:
    # Channel Access strings are bytes the client decodes as it likes: keep them ASCII.
    text = f"{type(exc).__name__}: {exc}".replace("\u2014", "-").replace("\u2013", "-")
    return text.encode("ascii", "replace").decode("ascii")


def _text(name: str, *, read_only: bool = False, doc: str | None = None) -> pvproperty:
    """A long-string PV (char waveform): file paths outgrow the 40 characters of DBR_STRING."""
    return pvproperty(
        name=name,
        value="",
        dtype=ChannelType.CHAR,
        max_length=1024,
        string_encoding="utf-8",
        read_only=read_only,
        doc=doc,
    )


def _forwarded(name: str, signal_name: str, *, value: Any, **kwargs: Any) -> pvproperty:
    """A camera control PV whose writes go straight to the simulated camera's signal."""

    async def putter(group: CameraGroup, instance: Any, new: Any) -> Any:
        getattr(group.camera, signal_name).put(new)
        return new

    return pvproperty(put=putter, name=name, value=value, **kwargs)


class InvalidFilePathError(ValueError):
    """A ``FilePath`` or ``FileName`` put that would write outside the IOC's data folder.

    Raised in the PV's putter, so the Channel Access client's put fails (the value is not
    changed) and the reason is in ``cam1:StatusMessage_RBV``.
    """


def confined_folder(root: Path, requested: str) -> Path:
    """``requested`` as an absolute folder, provided it is ``root`` or inside it.

    Parameters
    ----------
    root : pathlib.Path
        The data folder (resolved).
    requested : str
        The folder asked for: absolute, or relative to ``root``.

    Returns
    -------
    pathlib.Path
        The resolved folder (symbolic links followed, ``..`` removed).

    Raises
    ------
    InvalidFilePathError
        For an empty path, a NUL character, or a folder that resolves outside ``root``.
    """
    if not requested.strip() or "\0" in requested:
        raise InvalidFilePathError(
            f"FilePath must name a folder inside the data folder {root}, got {requested!r}"
        )
    # Resolved (links followed) before the check, so a link inside root that points out of
    # it is refused too; nothing is created here or by the check.
    folder = (root / requested).resolve()
    if not folder.is_relative_to(root):
        raise InvalidFilePathError(
            f"FilePath {requested!r} is outside the IOC's data folder {root}; "
            f"write a folder inside {root}"
        )
    return folder


class CameraGroup(PVGroup):
    """Camera-control PVs (``cam1:``) in front of a :class:`SimTomoCamera`."""

    acquire_time = _forwarded("AcquireTime", "acquire_time", value=0.1, precision=4, units="s")
    acquire_period = _forwarded(
        "AcquirePeriod", "acquire_period", value=0.0, precision=4, units="s"
    )
    frame_type = _forwarded(
        "FrameType",
        "frame_type",
        value="projection",
        dtype=ChannelType.ENUM,
        enum_strings=FRAME_KINDS,
    )
    # Writing the trigger mode (even unchanged) re-arms the position compare, as on the camera.
    trigger_mode = _forwarded(
        "TriggerMode",
        "trigger_mode",
        value="internal",
        dtype=ChannelType.ENUM,
        enum_strings=("internal", "position"),
    )
    pso_start = _forwarded("PSOStart", "pso_start", value=0.0, precision=6, units="deg")
    pso_step = _forwarded("PSOStep", "pso_step", value=1.0, precision=6, units="deg")
    file_path = _text("FilePath")
    file_name = _text("FileName")
    file_number = _forwarded("FileNumber", "file_number", value=1)

    acquire = pvproperty(name="Acquire", value=0, doc="1: take a frame (busy until written)")
    capture = pvproperty(name="Capture", value=0, doc="1: open a new file, 0: close it")
    commit = pvproperty(name="Commit", value=0, doc="1: the run recorded the last frame")
    frame_counter = pvproperty(name="ArrayCounter_RBV", value=0, read_only=True)
    theta = pvproperty(name="Theta_RBV", value=0.0, read_only=True, precision=6, units="rad")
    frame_kind = pvproperty(
        name="FrameKind_RBV", value="", dtype=ChannelType.STRING, read_only=True
    )
    frame_index = pvproperty(name="FrameIndex_RBV", value=-1, read_only=True)
    size_x = pvproperty(name="ArraySizeX_RBV", value=0, read_only=True)
    size_y = pvproperty(name="ArraySizeY_RBV", value=0, read_only=True)
    full_file_name = _text("FullFileName_RBV", read_only=True)
    status_message = _text("StatusMessage_RBV", read_only=True)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # One frame at a time: a trigger replayed after a suspension waits for the interrupted
        # one, then its frame replaces the pending (unrecorded) one in the file.
        self._acquiring = asyncio.Lock()
        self._capturing = False

    @property
    def camera(self) -> Any:
        """The simulated camera behind the PVs."""
        return self.parent.bench.camera

    @size_x.startup
    async def size_x(self, instance: Any, async_lib: Any) -> None:
        """Publish the simulated camera's state, so the PVs start where the device is."""
        cam = self.camera
        rows, cols = cam.shape
        await instance.write(cols)
        await self.size_y.write(rows)
        for prop, sig in (
            (self.acquire_time, cam.acquire_time),
            (self.acquire_period, cam.acquire_period),
            (self.frame_type, cam.frame_type),
            (self.trigger_mode, cam.trigger_mode),
            (self.pso_start, cam.pso_start),
            (self.pso_step, cam.pso_step),
            (self.file_path, cam.file_path),
            (self.file_name, cam.file_name),
            (self.file_number, cam.file_number),
        ):
            await prop.write(sig.get(), verify_value=False)

    @file_path.putter
    async def file_path(self, instance: Any, value: Any) -> str:
        """Where the next file goes: a folder inside the IOC's data folder, nothing else.

        Any Channel Access client on the host may write this PV, so a folder outside the data
        folder (absolute, or reached with ``..`` or a symbolic link) is refused: the put fails
        at the client, :attr:`status_message` says why, and nothing is created. A relative
        folder is taken inside the data folder; the PV then reads the absolute folder used.
        """
        try:
            folder = self.parent.confine_folder(str(value))
        except InvalidFilePathError as exc:
            await self.status_message.write(_message(exc))
            raise
        await self.status_message.write("")
        self.camera.file_path.put(str(folder))
        return str(folder)

    @file_name.putter
    async def file_name(self, instance: Any, value: Any) -> str:
        """The next file's name (empty: numbered ``tomo_NNNN.h5``); a bare name, no folder."""
        name = str(value)
        if name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
            exc = InvalidFilePathError(
                f"FileName must be a bare file name without folders, got {name!r}; "
                "set the folder with FilePath"
            )
            await self.status_message.write(_message(exc))
            raise exc
        self.camera.file_name.put(name)
        return name

    @acquire.putter
    async def acquire(self, instance: Any, value: int) -> int:
        """Take one frame; the write completes when the frame is in the file."""
        if not value:
            return 0
        async with self._acquiring:
            await instance.write(1, verify_value=False)
            await self.status_message.write("")
            try:
                await _wait(self.camera.trigger())
            except Exception as exc:  # reported to the client, the IOC keeps serving
                await self.status_message.write(_message(exc))
            else:
                cam = self.camera
                kind, index = cam.last_frame
                await self.frame_kind.write(kind)
                await self.frame_index.write(index)
                await self.theta.write(float(cam.theta.get()))
                await self.frame_counter.write(int(cam.frame_counter.get()))
        return 0

    @commit.putter
    async def commit(self, instance: Any, value: int) -> int:
        """Keep the last frame: the run has recorded it."""
        if value:
            self.camera.commit_frame()
        return 0

    @capture.putter
    async def capture(self, instance: Any, value: int) -> int:
        """Open (1) or close (0) the Data Exchange file of a scan."""
        await self.status_message.write("")
        cam = self.camera
        if self._capturing:
            # A new capture closes the old file first (a client that died mid-scan).
            cam.unstage()
            self._capturing = False
            await self.file_number.write(int(cam.file_number.get()), verify_value=False)
        if not value:
            return 0
        try:
            cam.stage()
        except Exception as exc:
            await self.status_message.write(_message(exc))
            return 0
        self._capturing = True
        await self.full_file_name.write(str(cam.full_file_name.get()))
        return 1

    def close_file(self) -> None:
        """Close the file if a scan left it open (the IOC is stopping)."""
        if self._capturing:
            self.camera.unstage()
            self._capturing = False


class RotationMotorFields(MotorFields):
    """Motor-record fields whose ``STOP`` stops the simulated stage when written."""

    stop = pvproperty(name="STOP", dtype=ChannelType.INT, value=0, doc="Stop")

    @stop.putter
    async def stop(self, instance: Any, value: int) -> int:
        """Stop where the stage is; the field reads 0 again, as the record's does."""
        if value:
            self.parent.group.bench.stage.stop()
        return 0


class TomoBeamlineIOC(PVGroup):
    """Rotation stage, shutter, ring current and camera of a :class:`SimTomoBench` as PVs.

    Parameters
    ----------
    bench : SimTomoBench
        The in-process devices the IOC drives.
    prefix : str
        PV prefix, e.g. ``"SIM2BM:"``.
    data_root : str or pathlib.Path, optional
        The only folder (with its sub-folders) ``cam1:FilePath`` may name; by default the
        camera's folder when the IOC is made (the ``--path`` of the IOC process).
    """

    rotation = pvproperty(
        name="m1",
        value=0.0,
        record=RotationMotorFields,
        precision=4,
        lower_ctrl_limit=TRAVEL_LIMITS_DEG[0],
        upper_ctrl_limit=TRAVEL_LIMITS_DEG[1],
    )
    shutter = pvproperty(
        name="Shutter", value="close", dtype=ChannelType.ENUM, enum_strings=("close", "open")
    )
    shutter_status = pvproperty(
        name="ShutterStatus",
        value="closed",
        dtype=ChannelType.ENUM,
        enum_strings=("closed", "open"),
        read_only=True,
    )
    shutter_time = pvproperty(name="ShutterTime", value=0.5, precision=3, units="s")
    ring_current = pvproperty(
        name="RingCurrent", value=0.0, read_only=True, precision=3, units="mA"
    )
    beam_dump = pvproperty(name="BeamDump", value=0.0, units="s")
    cam = SubGroup(CameraGroup, prefix="cam1:")

    def __init__(
        self,
        *args: Any,
        bench: SimTomoBench,
        data_root: str | Path | None = None,
        **kwargs: Any,
    ) -> None:
        self.bench = bench
        root = data_root if data_root is not None else bench.camera.file_path.get()
        #: The folder the camera's files must stay in.
        self.data_root = Path(root or ".").resolve()
        super().__init__(*args, **kwargs)
        self._motion: asyncio.Task[None] | None = None

    def confine_folder(self, requested: str) -> Path:
        """``requested`` as an absolute folder inside :attr:`data_root` (see
        :func:`confined_folder`)."""
        return confined_folder(self.data_root, requested)

    # -- rotation stage ---------------------------------------------------------------------
    @rotation.startup
    async def rotation(self, instance: Any, async_lib: Any) -> None:
        """Motor-record fields from the simulated stage; the ring current mirrored as it goes."""
        stage = self.bench.stage
        fields = instance.field_inst
        await fields.velocity.write(float(stage.velocity.get()))
        await fields.seconds_to_velocity.write(float(stage.acceleration.get()))
        await fields.user_low_limit.write(TRAVEL_LIMITS_DEG[0])
        await fields.user_high_limit.write(TRAVEL_LIMITS_DEG[1])
        await fields.engineering_units.write("deg")
        await fields.user_readback_value.write(float(stage.position))
        await fields.motor_is_moving.write(0)
        await fields.done_moving_to_value.write(1)
        await self.shutter_time.write(float(self.bench.shutter.actuation_time.get()))
        await self.ring_current.write(float(self.bench.ring_current.get()))
        # The ring current changes from the simulator's worker threads (a refill after a dump):
        # hand each value to the IOC's loop.
        loop = asyncio.get_running_loop()

        def mirror(value: float, **_: Any) -> None:
            asyncio.run_coroutine_threadsafe(self.ring_current.write(float(value)), loop)

        self.bench.ring_current.subscribe(mirror, run=False)

    @rotation.putter
    async def rotation(self, instance: Any, value: float) -> float:
        """Start a move to ``value`` deg at the record's ``VELO``/``ACCL``."""
        stage = self.bench.stage
        fields = instance.field_inst
        # VELO and ACCL take effect at the next move, as in the motor record.
        stage.velocity.put(float(fields.velocity.value))
        stage.acceleration.put(float(fields.seconds_to_velocity.value))
        if self._motion is not None:
            self._motion.cancel()
        try:
            stage.set(float(value))
        except ValueError:
            # A move the stage refuses (VELO <= 0): done at once with the readback in alarm,
            # so EpicsMotor's status fails instead of waiting for a DMOV that never comes.
            here = float(stage.position)
            await fields.done_moving_to_value.write(0)
            await fields.user_readback_value.write(
                here, status=AlarmStatus.STATE, severity=AlarmSeverity.MAJOR_ALARM
            )
            await fields.done_moving_to_value.write(1)
            return here
        # DMOV drops for every move, a zero-length one included: EpicsMotor's status waits
        # for the 0 → 1 transition.
        await fields.done_moving_to_value.write(0)
        await fields.motor_is_moving.write(1)
        self._motion = asyncio.create_task(self._follow(instance, float(value)))
        return value

    async def _follow(self, instance: Any, target: float) -> None:
        """Publish the readback while the stage moves (or until STOP); DMOV=1 at the end."""
        stage = self.bench.stage
        clock = self.bench.clock
        fields = instance.field_inst
        end = stage.time_at(target)
        while stage.moving:
            await fields.user_readback_value.write(float(stage.position))
            remaining = clock.real_seconds(max(end - clock.now(), 0.0))
            await asyncio.sleep(min(1.0 / MOTOR_TICK_HZ, remaining))
        here = float(stage.position)
        await fields.user_readback_value.write(
            here, status=AlarmStatus.NO_ALARM, severity=AlarmSeverity.NO_ALARM
        )
        await fields.dial_readback_value.write(here)
        if abs(here - target) > 1e-9:  # stopped: the setpoint follows the readback (as the record)
            await instance.write(here, verify_value=False)
        await fields.motor_is_moving.write(0)
        await fields.done_moving_to_value.write(1)

    # -- shutter and ring ------------------------------------------------------------------
    @shutter.putter
    async def shutter(self, instance: Any, value: str) -> str:
        """Move the shutter; the write completes when it is there."""
        await _wait(self.bench.shutter.set(value))
        await self.shutter_status.write(str(self.bench.shutter.readback.get()))
        return value

    @shutter_time.putter
    async def shutter_time(self, instance: Any, value: float) -> float:
        """Actuation time of the shutter, s."""
        self.bench.shutter.actuation_time.put(float(value))
        return value

    @beam_dump.putter
    async def beam_dump(self, instance: Any, value: float) -> float:
        """Lose the beam for ``value`` simulated seconds (< 0: until 0 is written)."""
        ring = self.bench.ring_current
        if value > 0:
            ring.beam_dump(outage_s=float(value))
        elif value < 0:
            ring.beam_dump(None)
        else:
            ring.recover()
        return value


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m insitu.simulators.beamline.ioc",
        description="Serve the simulated 2-BM tomography hardware over Channel Access on "
        "127.0.0.1.",
    )
    parser.add_argument("--prefix", default=DEFAULT_PREFIX, help="PV prefix (%(default)s)")
    parser.add_argument("--port", type=int, default=5064, help="CA server port (%(default)s)")
    parser.add_argument("--path", required=True, help="folder of the Data Exchange files")
    parser.add_argument(
        "--speedup", type=float, default=1.0, help="simulated seconds per real second"
    )
    parser.add_argument(
        "--frame-source",
        default="insitu.simulators.imaging.disc_phantom:disc_frame_source",
        help="'package.module:callable' returning frame_source(angle_rad, kind)",
    )
    parser.add_argument(
        "--frame-source-kwargs", default="{}", help="JSON keyword arguments of the callable"
    )
    parser.add_argument(
        "--metadata", default="{}", help="JSON Data Exchange metadata (energy_keV, …)"
    )
    parser.add_argument("--velocity", type=float, default=30.0, help="stage speed, deg/s")
    parser.add_argument("--acceleration", type=float, default=0.5, help="stage ramp time, s")
    parser.add_argument("--shutter-time", type=float, default=0.5, help="shutter time, s")
    parser.add_argument("--ring-current", type=float, default=130.0, help="ring current, mA")
    return parser.parse_args(argv)


class _NoBeaconListener(logging.Filter):
    """Drop caproto's error for a beacon that nobody receives.

    Beacons go to 127.0.0.1 only; without a CA repeater there (none is needed: clients find the
    IOC by searching it) every beacon is refused, which is not a fault of the IOC.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Failed to send beacon")


def _stop_on_sigterm(signum: int, frame: Any) -> None:
    # caproto's run() treats KeyboardInterrupt as a clean shutdown, so main() closes the file.
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run the IOC until SIGTERM or Ctrl-C.

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status.
    """
    args = _parse_args(argv)
    try:
        frame_source = load_frame_source(args.frame_source, json.loads(args.frame_source_kwargs))
        bench = sim_tomo_bench(
            frame_source,
            clock=SimClock(speedup=args.speedup),
            path=Path(args.path),
            velocity_deg_s=args.velocity,
            acceleration_s=args.acceleration,
            shutter_time_s=args.shutter_time,
            ring_current_mA=args.ring_current,
            metadata=json.loads(args.metadata),
        )
    except Exception as exc:  # a bad option: one line, no traceback
        print(f"beamline_ioc: {_message(exc)}", file=sys.stderr)
        return 2
    os.environ.update(server_environment(args.port))
    logging.getLogger("caproto.ctx").addFilter(_NoBeaconListener())
    ioc = TomoBeamlineIOC(prefix=args.prefix, bench=bench, data_root=Path(args.path))
    signal.signal(signal.SIGTERM, _stop_on_sigterm)

    async def ready(async_lib: Any) -> None:
        # Runs once the server's sockets are bound.
        print(f"{READY_LINE}: prefix {args.prefix} on {LOOPBACK}:{args.port}", flush=True)

    try:
        run(ioc.pvdb, interfaces=[LOOPBACK], startup_hook=ready)
    finally:
        ioc.cam.close_file()
    return 0


if __name__ == "__main__":
    sys.exit(main())
