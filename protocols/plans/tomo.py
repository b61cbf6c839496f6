"""Tomography scan plan: the APS 2-BM tomoScan sequence as one Bluesky run.

Sequence (``tomo_scan``): darks with the shutter closed → flats with the sample out and the
shutter open → projections evenly over 180° (θ_k = k·π/N, 180° itself excluded, since it
repeats 0°) → flats and darks again at the end (optional). One run, three streams:
``"darks"``, ``"flats"`` and ``"projections"``. The frames stay in the camera's Data Exchange
HDF5 file; the run references them (``stream_resource``/``stream_datum``) and carries in its
events the angle of each projection (``<camera>_theta``, radians, measured at mid-exposure)
and the frame counter.

Two modes:

- ``"step"``: the stage stops at every angle, then the camera exposes;
- ``"fly"``: the stage turns at constant speed over 180° (after a run-up that covers its
  acceleration) and the camera is triggered as the stage passes each angle (the camera's
  ``trigger_mode="position"`` with ``pso_start``/``pso_step``, standing for the motion
  controller's position-compare output).

Beam loss: a ``SuspendFloor`` on the ring current is installed for the scan only
(``bpp.suspend_wrapper``); a checkpoint precedes every frame, so a frame interrupted by a beam
dump is retaken when the beam is back (the camera overwrites the frame the run never
recorded, so the file and the run stay in step).

Devices are any objects with the component names of the simulated ones in
:mod:`insitu.simulators.beamline.devices` (the EPICS flavour keeps them).
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import Any, Literal

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky.suspenders import SuspendFloor
from bluesky.utils import Msg

from insitu.analysis.provenance import software_version

__all__ = ["projection_angles_deg", "tomo_scan"]

Plan = Generator[Msg, Any, Any]


def projection_angles_deg(n_projections: int, range_deg: float = 180.0) -> list[float]:
    """Angles ``k·range/N`` for ``k = 0 … N-1`` (the end of the range excluded), in degrees."""
    if n_projections < 1:
        raise ValueError(f"n_projections must be at least 1, got {n_projections}")
    return [range_deg * k / n_projections for k in range(n_projections)]


def _frames(camera: Any, shutter: Any, stream: str, n: int, *, shutter_state: str) -> Plan:
    """``n`` frames of one kind into ``stream`` (a checkpoint before each, for suspenders)."""
    kind = "dark" if stream == "darks" else "flat"
    yield from bps.mv(shutter, shutter_state, camera.frame_type, kind)
    for _ in range(n):
        yield from bps.checkpoint()
        yield from bps.trigger_and_read([camera], name=stream)


def tomo_scan(
    camera: Any,
    stage: Any,
    shutter: Any,
    *,
    n_projections: int = 1500,
    exposure_s: float = 0.1,
    n_darks: int = 20,
    n_flats: int = 20,
    flats_at_end: bool = True,
    darks_at_end: bool = True,
    mode: Literal["step", "fly"] = "step",
    ring_current: Any | None = None,
    min_current_mA: float = 10.0,
    resume_current_mA: float | None = None,
    suspend_sleep_s: float = 0.0,
    start_deg: float = 0.0,
    range_deg: float = 180.0,
    md: Mapping[str, Any] | None = None,
) -> Plan:
    """Darks, flats, projections over 180°, flats and darks again: one tomography run.

    Parameters
    ----------
    camera : SimTomoCamera or its EPICS flavour
        Writes the Data Exchange file (one per scan, opened when staged).
    stage : SimRotationStage or EpicsMotor
        Rotation stage in degrees.
    shutter : SimShutter or its EPICS flavour
        ``"open"`` / ``"close"``.
    n_projections : int
        Projections evenly over ``range_deg`` excluding its end (1500 at 2-BM).
    exposure_s : float
        Exposure of every frame (0.1 s at 2-BM).
    n_darks, n_flats : int
        Darks and flats at the start (and at the end when ``darks_at_end``/``flats_at_end``).
    flats_at_end, darks_at_end : bool
        Repeat flats/darks after the projections (drift of the beam and the detector).
    mode : {"step", "fly"}
        Stop at each angle, or turn at constant speed and trigger at the angles.
    ring_current : Signal, optional
        Storage-ring current (mA); when given, the scan suspends below ``min_current_mA``
        and resumes above ``resume_current_mA`` (default: twice the floor).
    min_current_mA, resume_current_mA : float
        Suspender thresholds.
    suspend_sleep_s : float
        Extra wait (real seconds) after the beam is back before resuming.
    start_deg, range_deg : float
        First angle and angular range.
    md : mapping, optional
        Extra start metadata (sample, cell, step of the in-situ protocol…); wins over defaults.

    Returns
    -------
    str
        The run's start uid.
    """
    if mode not in ("step", "fly"):
        raise ValueError(f"mode must be 'step' or 'fly', got {mode!r}")
    if exposure_s <= 0:
        raise ValueError(f"exposure_s must be positive, got {exposure_s}")
    if n_darks < 0 or n_flats < 0:
        raise ValueError("n_darks and n_flats must be zero or more")
    angles = [start_deg + a for a in projection_angles_deg(n_projections, range_deg)]
    parameters = {
        "n_projections": n_projections,
        "exposure_s": exposure_s,
        "n_darks": n_darks,
        "n_flats": n_flats,
        "flats_at_end": flats_at_end,
        "darks_at_end": darks_at_end,
        "mode": mode,
        "start_deg": start_deg,
        "range_deg": range_deg,
    }

    def body() -> Plan:
        yield from bps.mv(camera.acquire_time, exposure_s, camera.trigger_mode, "internal")
        # Staged before the run opens so that the start document names the file.
        yield from bps.stage(camera)
        cam_md = dict(getattr(camera, "metadata", {}) or {})
        meta: dict[str, Any] = {
            "plan_name": "tomo_scan",
            "plan_args": parameters,
            "protocol_parameters": parameters,
            "software": "insitu",
            "software_version": software_version(),
            "detectors": [camera.name],
            "motors": [stage.name],
            "technique": "tomography",
            "n_projections": n_projections,
            "exposure_s": exposure_s,
            "mode": mode,
            "energy_keV": cam_md.get("energy_keV"),
            "pixel_size_um": cam_md.get("pixel_size_um"),
            "sample_detector_distance_mm": cam_md.get("sample_detector_distance_mm"),
            "beamline": cam_md.get("beamline"),
            "data_file": camera.full_file_name.get(),
            "data_format": "APS Data Exchange (HDF5)",
            "theta_units": "rad",
            "hints": {"dimensions": [([f"{camera.name}_theta"], "projections")]},
        }
        meta.update(md or {})
        yield from bps.open_run(meta)
        yield from bps.declare_stream(camera, name="darks")
        yield from bps.declare_stream(camera, name="flats")
        yield from bps.declare_stream(camera, stage, name="projections")

        if n_darks:
            yield from _frames(camera, shutter, "darks", n_darks, shutter_state="close")
        if n_flats:
            yield from _frames(camera, shutter, "flats", n_flats, shutter_state="open")
        yield from bps.mv(shutter, "open", camera.frame_type, "projection")
        if mode == "step":
            yield from _step_projections(camera, stage, angles)
        else:
            yield from _fly_projections(camera, stage, angles, exposure_s)
        if flats_at_end and n_flats:
            yield from _frames(camera, shutter, "flats", n_flats, shutter_state="open")
        if darks_at_end and n_darks:
            yield from _frames(camera, shutter, "darks", n_darks, shutter_state="close")
        yield from bps.mv(shutter, "close")
        return (yield from bps.close_run())

    def cleanup() -> Plan:
        # Whatever happened: no beam on the sample, the file closed.
        yield from bps.abs_set(shutter, "close", wait=True)
        yield from bps.unstage(camera)

    plan = bpp.finalize_wrapper(body(), cleanup())
    if ring_current is not None:
        resume = resume_current_mA if resume_current_mA is not None else 2 * min_current_mA
        suspender = SuspendFloor(
            ring_current, min_current_mA, resume_thresh=resume, sleep=suspend_sleep_s
        )
        plan = bpp.suspend_wrapper(plan, suspender)
    return (yield from plan)


def _step_projections(camera: Any, stage: Any, angles: list[float]) -> Plan:
    for angle in angles:
        yield from bps.checkpoint()
        yield from bps.mv(stage, angle)
        yield from bps.trigger_and_read([camera, stage], name="projections")


def _fly_projections(camera: Any, stage: Any, angles: list[float], exposure_s: float) -> Plan:
    """Constant-speed sweep; the camera exposes as the stage passes each angle."""
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
