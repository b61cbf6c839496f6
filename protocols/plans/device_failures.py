"""A device that fails mid-plan is named in the run's stop reason, not as a ``Status`` repr.

When a device's status fails (a motor stalls, a camera times out), the RunEngine throws
``FailedStatus`` into the plan; uncaught, the run's stop document says only
``Status(obj=None, done=True, success=False)`` and the command line shows a traceback.
:func:`name_device_failures` wraps a plan so that the failure is re-raised as a
:class:`DeviceFailedError` carrying the device's own explanation (the exception the status
failed with): the stop reason, and the one line the command line prints, say what happened.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from bluesky.utils import FailedStatus, Msg

from insitu.instruments.errors import InstrumentError

__all__ = ["DeviceFailedError", "describe_failed_status", "name_device_failures"]

Plan = Generator[Msg, Any, Any]


class DeviceFailedError(InstrumentError):
    """A device's operation failed during a run (its own explanation in the message)."""


def describe_failed_status(exc: FailedStatus) -> str:
    """One sentence: which device failed and why, from the failed status and its cause."""
    status = exc.args[0] if exc.args else None
    device = getattr(getattr(status, "obj", None), "name", None)
    cause = exc.__cause__ or (status.exception() if hasattr(status, "exception") else None)
    why = str(cause) if cause is not None and str(cause) else type(cause or exc).__name__
    return f"{device} failed: {why}" if device and device not in why else why


def name_device_failures(plan: Plan) -> Plan:
    """Run ``plan``; a failed device status is re-raised as :class:`DeviceFailedError`.

    Parameters
    ----------
    plan : generator
        Any plan.

    Returns
    -------
    The plan's return value.

    Raises
    ------
    DeviceFailedError
        A status of a device failed; the message is :func:`describe_failed_status`'s.
    """
    try:
        return (yield from plan)
    except FailedStatus as exc:
        raise DeviceFailedError(describe_failed_status(exc)) from exc
