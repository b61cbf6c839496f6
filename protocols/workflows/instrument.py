"""Talk to an instrument: what ``insitu instrument info`` runs."""

from __future__ import annotations

from typing import Any

from insitu.instruments.resources import open_potentiostat

__all__ = ["instrument_info"]


def instrument_info(resource: str, *, timeout_s: float = 5.0) -> dict[str, Any]:
    """Connect to the potentiostat at ``resource`` and say what it is and what it can run.

    Parameters
    ----------
    resource : str
        VISA resource, serial device or pyserial URL.
    timeout_s : float
        Instrument timeout.

    Returns
    -------
    dict
        The identity's fields (``manufacturer``, ``model``, ``serial``, ``firmware``),
        ``resource`` and ``capabilities`` (the technique names, sorted).
    """
    with open_potentiostat(resource, timeout_s=timeout_s) as driver:
        ident = driver.identify()
        caps = sorted(t.__name__ for t in driver.capabilities)
    return {**ident.__dict__, "resource": resource, "capabilities": caps}
