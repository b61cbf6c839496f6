"""Tomography plan stubs: the pieces ``tomo_scan`` is made of, public for other plans.

In the manner of :mod:`bluesky.plan_stubs`: each stub is a small plan (or, for the metadata,
a plain function) that assumes a run is open and the camera staged, and composes into a
larger plan. ``tomo_scan`` is darks → flats → projections → flats → darks; a plan that needs
another sequence (flats only between steps of an in-situ experiment, a second set of
projections at another exposure) builds it from the same stubs, so its frames land in the
same streams and the Data Exchange file in the same layout.

Every frame is preceded by a checkpoint, so a suspender (beam loss) retakes the interrupted
frame when the beam is back; the fly sweep is the exception (see :func:`fly_projections`).
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky.utils import Msg

from insitu.analysis.provenance import software_version

__all__ = [
    "dark_frames",
    "declare_tomo_streams",
    "flat_frames",
    "fly_projections",
    "step_projections",
    "tomo_start_metadata",
]

Plan = Generator[Msg, Any, Any]


def declare_tomo_streams(camera: Any, stage: Any) -> Plan:
    """Declare the ``darks``, ``flats`` and ``projections`` streams of an open run."""
    yield from bps.declare_stream(camera, name="darks")
    yield from bps.declare_stream(camera, name="flats")
    yield from bps.declare_stream(camera, stage, name="projections")


def _frames(camera: Any, shutter: Any, stream: str, n: int, shutter_state: str) -> Plan:
    if n <= 0:
        return
    kind = "dark" if stream == "darks" else "flat"
    yield from bps.mv(shutter, shutter_state, camera.frame_type, kind)
    for _ in range(n):
        yield from bps.checkpoint()
        yield from bps.trigger_and_read([camera], name=stream)


def dark_frames(camera: Any, shutter: Any, n: int) -> Plan:
    """``n`` dark frames (shutter closed) into the ``darks`` stream; none when ``n`` is 0.

    Parameters
    ----------
    camera : SimTomoCamera or its EPICS flavour
        Staged, in an open run with the tomography streams declared.
    shutter : SimShutter or its EPICS flavour
        Closed for the darks.
    n : int
        Number of frames.
    """
    yield from _frames(camera, shutter, "darks", n, "close")


def flat_frames(camera: Any, shutter: Any, n: int) -> Plan:
    """``n`` flat-field frames (shutter open, sample out) into the ``flats`` stream.

    Parameters are those of :func:`dark_frames`; the shutter is opened instead.
    """
    yield from _frames(camera, shutter, "flats", n, "open")


def step_projections(camera: Any, stage: Any, shutter: Any, angles: list[float]) -> Plan:
    """Projections at ``angles`` (degrees), the stage stopped at each, into ``projections``.

    Parameters
    ----------
    camera, shutter
        As for :func:`dark_frames`; the shutter is opened.
    stage : SimRotationStage or EpicsMotor
        Rotation stage in degrees; read with each frame (the measured angle).
    angles : list of float
        Angles in degrees, in acquisition order.
    """
    yield from bps.mv(shutter, "open", camera.frame_type, "projection")
    for angle in angles:
        yield from bps.checkpoint()
        yield from bps.mv(stage, angle)
        yield from bps.trigger_and_read([camera, stage], name="projections")


def fly_projections(
    camera: Any, stage: Any, shutter: Any, angles: list[float], exposure_s: float
) -> Plan:
    """Projections at ``angles`` (evenly spaced, degrees) during one constant-speed sweep.

    The stage runs up far enough to be at constant speed over every exposure; the camera is
    triggered by position (``trigger_mode="position"`` with ``pso_start``/``pso_step``, the
    motion controller's position-compare output) so that each exposure is centred on its
    angle. The stage's velocity and the camera's trigger mode are restored afterwards, errors
    included.

    Parameters
    ----------
    camera, stage, shutter
        As for :func:`step_projections`.
    angles : list of float
        Evenly spaced angles in degrees, increasing.
    exposure_s : float
        Exposure of each frame.
    """
    yield from bps.mv(shutter, "open", camera.frame_type, "projection")
    period = max(float(camera.acquire_period.get()), exposure_s)
    step_deg = angles[1] - angles[0] if len(angles) > 1 else 1.0
    old_velocity = stage.velocity.get()
    fly_velocity = step_deg / period
    # Start and end far enough out that the stage is at constant speed over every exposure.
    runup = fly_velocity * float(stage.acceleration.get()) / 2 + fly_velocity * exposure_s
    yield from bps.mv(stage, angles[0] - runup)
    # Exposures centred on the angles: each pulse half an exposure before its angle.
    yield from bps.mv(
        stage.velocity,
        fly_velocity,
        camera.pso_start,
        angles[0] - fly_velocity * exposure_s / 2,
        camera.pso_step,
        step_deg,
    )
    yield from bps.mv(camera.trigger_mode, "position")  # arms the position compare

    def sweep() -> Plan:
        # No checkpoint in the sweep: a frame missed at speed cannot be retaken at its angle,
        # so a beam dump during a fly sweep pauses the run where it is, without replaying
        # frames already recorded (step scans rewind and retake); rescan if that happens.
        yield from bps.clear_checkpoint()
        yield from bps.abs_set(stage, angles[-1] + step_deg + runup, group="sweep")
        for _ in angles:
            yield from bps.trigger_and_read([camera, stage], name="projections")
        yield from bps.wait(group="sweep")

    def restore() -> Plan:
        yield from bps.mv(stage.velocity, old_velocity, camera.trigger_mode, "internal")

    yield from bpp.finalize_wrapper(sweep(), restore())


def tomo_start_metadata(
    camera: Any, stage: Any, parameters: Mapping[str, Any], plan_name: str = "tomo_scan"
) -> dict[str, Any]:
    """The start document of a tomography run: the scan, the detector and the file.

    Parameters
    ----------
    camera : SimTomoCamera or its EPICS flavour
        Staged (its ``full_file_name`` names the Data Exchange file); its ``metadata``
        mapping, when it has one, gives energy, pixel size, distance and beamline.
    stage : device
        The rotation stage (listed as the run's motor).
    parameters : mapping
        The plan's arguments (``n_projections``, ``exposure_s``, ``mode`` …), recorded as
        ``plan_args`` and ``protocol_parameters``.
    plan_name : str
        The plan that opens the run.

    Returns
    -------
    dict
        Metadata for ``open_run``; a caller adds its own keys on top.
    """
    cam_md = dict(getattr(camera, "metadata", {}) or {})
    return {
        "plan_name": plan_name,
        "plan_args": dict(parameters),
        "protocol_parameters": dict(parameters),
        "software": "insitu",
        "software_version": software_version(),
        "detectors": [camera.name],
        "motors": [stage.name],
        "technique": "tomography",
        "n_projections": parameters.get("n_projections"),
        "exposure_s": parameters.get("exposure_s"),
        "mode": parameters.get("mode"),
        "energy_keV": cam_md.get("energy_keV"),
        "pixel_size_um": cam_md.get("pixel_size_um"),
        "sample_detector_distance_mm": cam_md.get("sample_detector_distance_mm"),
        "beamline": cam_md.get("beamline"),
        "data_file": camera.full_file_name.get(),
        "data_format": "APS Data Exchange (HDF5)",
        "theta_units": "rad",
        "hints": {"dimensions": [([f"{camera.name}_theta"], "projections")]},
    }
