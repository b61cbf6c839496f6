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

from .device_failures import name_device_failures
from .tomo_stubs import (
    dark_frames,
    declare_tomo_streams,
    flat_frames,
    fly_projections,
    step_projections,
    tomo_start_metadata,
)

__all__ = ["projection_angles_deg", "tomo_scan"]

Plan = Generator[Msg, Any, Any]


def projection_angles_deg(n_projections: int, range_deg: float = 180.0) -> list[float]:
    """Angles ``k·range/N`` for ``k = 0 … N-1`` (the end of the range excluded), in degrees."""
    if n_projections < 1:
        raise ValueError(f"n_projections must be at least 1, got {n_projections}")
    return [range_deg * k / n_projections for k in range(n_projections)]


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
        meta = tomo_start_metadata(camera, stage, parameters)
        meta.update(md or {})
        yield from bps.open_run(meta)
        yield from declare_tomo_streams(camera, stage)
        yield from dark_frames(camera, shutter, n_darks)
        yield from flat_frames(camera, shutter, n_flats)
        if mode == "step":
            yield from step_projections(camera, stage, shutter, angles)
        else:
            yield from fly_projections(camera, stage, shutter, angles, exposure_s)
        if flats_at_end:
            yield from flat_frames(camera, shutter, n_flats)
        if darks_at_end:
            yield from dark_frames(camera, shutter, n_darks)
        yield from bps.mv(shutter, "close")
        return (yield from bps.close_run())

    def cleanup() -> Plan:
        # Whatever happened: no beam on the sample, the file closed.
        yield from bps.abs_set(shutter, "close", wait=True)
        yield from bps.unstage(camera)

    # A stalled motor or a failed camera ends the run with its own words as the reason.
    plan = bpp.finalize_wrapper(name_device_failures(body()), cleanup())
    if ring_current is not None:
        resume = resume_current_mA if resume_current_mA is not None else 2 * min_current_mA
        suspender = SuspendFloor(
            ring_current, min_current_mA, resume_thresh=resume, sleep=suspend_sleep_s
        )
        plan = bpp.suspend_wrapper(plan, suspender)
    return (yield from plan)
