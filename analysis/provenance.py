"""What produced a result: the installed insitu's version, recorded with runs and volumes."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["software_version"]


def software_version() -> str:
    """The installed ``insitu`` distribution's version.

    Returns
    -------
    str
        E.g. ``"0.1.0"``; ``"0+unknown"`` when running from a source tree that was never
        installed (PEP 440 local-version form, so it still sorts and parses as a version).
    """
    try:
        return version("insitu")
    except PackageNotFoundError:
        return "0+unknown"
