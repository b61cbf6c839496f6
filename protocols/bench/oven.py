"""A piece of :func:`~insitu.protocols.bench.open_bench`: the oven, real or emulated.

``oven="sim"`` starts a Lake Shore 336 emulator whose oven holds the simulated cell, on the
cell's clock; a resource opens a real controller. Either way the ordinary driver talks to it
and a :class:`~insitu.instruments.devices.temperature.TemperatureController` wraps it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from insitu.instruments.devices.temperature import TemperatureController
from insitu.instruments.lakeshore336 import LakeShore336

from .emulated import SimBench
from .spec import BenchSpec

__all__ = ["enter_oven"]


def enter_oven(
    stack: contextlib.ExitStack, spec: BenchSpec, sim: SimBench | None
) -> tuple[TemperatureController, str]:
    """Open the oven of ``spec`` on ``stack``; the device named ``oven`` and its resource.

    Parameters
    ----------
    stack : contextlib.ExitStack
        Closes the driver, then stops an emulator.
    spec : BenchSpec
        A description with an oven.
    sim : SimBench or None
        The simulated cell the emulated oven holds (required with ``oven="sim"``).
    """
    assert spec.oven is not None
    resource = spec.oven
    # Settling is timed in simulated seconds on a simulated bench.
    time_source: Callable[[], float] | None = None
    if spec.oven == "sim":
        assert sim is not None  # the description checks this
        from insitu.simulators.emulators.lakeshore336 import LakeShore336Emulator

        emulator = LakeShore336Emulator(
            sim.clock, cells=(sim.cell,), initial_K=sim.cell.temperature_K, seed=spec.seed or 0
        )
        resource = emulator.start()
        stack.callback(emulator.stop)
        time_source = sim.clock.now
    driver = LakeShore336(resource, timeout_s=spec.timeout_s)
    stack.callback(driver.close)
    kwargs = {} if time_source is None else {"time_source": time_source}
    device = TemperatureController(
        driver,
        name="oven",
        tolerance_K=spec.oven_tolerance_K,
        settle_time_s=spec.oven_settle_time_s,
        timeout_s=spec.oven_timeout_s,
        **kwargs,
    )
    return device, resource
