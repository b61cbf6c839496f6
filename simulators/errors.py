"""Errors a user of the simulators can cause: an unknown material, an impossible setting.

Every one derives from :class:`SimulatorInputError` (a ``ValueError``), so the ``insitu``
command line prints it in one line as the user's to fix; any other exception out of the
simulators is a bug.
"""

from __future__ import annotations

__all__ = ["SimulatorInputError"]


class SimulatorInputError(ValueError):
    """A simulator setting that cannot be simulated; the message says what to give instead."""
