"""A temperature controller as an ophyd device: set a temperature, wait until it has settled.

:class:`TemperatureController` wraps a :class:`~.lakeshore336.LakeShore336` driver (or any
object with ``set_setpoint_K(loop, K)``, ``temperature_K(input)``, ``set_heater_range(output,
range)`` and ``identify()``). In a plan::

    yield from bps.mv(oven, 333.15)  # returns once 333.15 K ± tolerance held for settle_time_s
    yield from bps.trigger_and_read([oven])

The settle criterion: the readback stays within ``tolerance_K`` of the setpoint for
``settle_time_s`` without interruption, as seen by polls every ``poll_s`` real seconds. The
settle time (and the timeout) are measured with ``time_source``: ``time.monotonic`` for real
hardware, a :class:`~insitu.simulators.clock.SimClock`'s ``now`` on a simulated bench, so that a
60 s settle takes 60 simulated seconds (milliseconds of real time at a high speed-up).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from ophyd import Component as Cpt
from ophyd import Device, Signal
from ophyd.status import Status

__all__ = ["SettleTimeoutError", "TemperatureController", "TemperatureDriver"]

log = logging.getLogger(__name__)


class TemperatureDriver(Protocol):
    """What :class:`TemperatureController` needs from a driver."""

    name: str

    def identify(self) -> Any: ...

    def set_setpoint_K(self, loop: int, value: float) -> None: ...

    def temperature_K(self, input: str) -> float: ...

    def set_heater_range(self, output: int, range: int) -> None: ...


class SettleTimeoutError(TimeoutError):
    """The temperature did not settle in time (the status of :meth:`TemperatureController.set`
    fails with it)."""


class _Kelvin(Signal):
    """A soft signal in kelvin (its ``describe()`` carries the units)."""

    def describe(self) -> dict[str, dict[str, Any]]:
        desc = super().describe()
        desc[self.name]["units"] = "K"
        return desc


class TemperatureController(Device):
    """A temperature-controller loop as a settable ophyd device.

    Parameters
    ----------
    driver : TemperatureDriver
        A connected driver, e.g. :class:`~.lakeshore336.LakeShore336` (the caller owns it).
    name : str
        Device name.
    loop : int
        Control loop (= heater output) that heats the oven.
    input : str
        Sensor input read as the readback.
    tolerance_K : float
        Settled means ``|readback - setpoint| <= tolerance_K``...
    settle_time_s : float
        ...continuously for this long, in ``time_source`` seconds.
    poll_s : float
        Real seconds between two readings while settling.
    time_source : callable
        Clock of the settle time and the timeout; ``time.monotonic`` by default, a SimClock's
        ``now`` on a simulated bench.
    timeout_s : float, optional
        Default settle timeout, in ``time_source`` seconds; ``None`` waits forever.
    heater_range : int, optional
        Heater range switched on with every :meth:`set` (3 = high); ``None`` leaves the range
        alone.
    **kwargs
        Passed to :class:`ophyd.Device`.
    """

    setpoint = Cpt(_Kelvin, value=math.nan, kind="normal")
    readback = Cpt(_Kelvin, value=math.nan, kind="hinted")
    settled = Cpt(Signal, value=False, kind="omitted")
    identity = Cpt(Signal, value="", kind="config")
    tolerance = Cpt(_Kelvin, value=0.0, kind="config")
    settle_time = Cpt(Signal, value=0.0, kind="config")

    def __init__(
        self,
        driver: TemperatureDriver,
        *,
        name: str,
        loop: int = 1,
        input: str = "A",
        tolerance_K: float = 0.5,
        settle_time_s: float = 60.0,
        poll_s: float = 0.01,
        time_source: Callable[[], float] = time.monotonic,
        timeout_s: float | None = None,
        heater_range: int | None = 3,
        **kwargs: Any,
    ) -> None:
        if not tolerance_K > 0:
            raise ValueError(f"tolerance_K must be positive, got {tolerance_K!r}")
        if not settle_time_s >= 0:
            raise ValueError(f"settle_time_s must not be negative, got {settle_time_s!r}")
        if not poll_s > 0:
            raise ValueError(f"poll_s must be positive, got {poll_s!r}")
        super().__init__(name=name, **kwargs)
        self.driver = driver
        self.loop = int(loop)
        self.input = str(input)
        self.tolerance_K = float(tolerance_K)
        self.settle_time_s = float(settle_time_s)
        self.poll_s = float(poll_s)
        self.time_source = time_source
        self.timeout_s = timeout_s
        self.heater_range = heater_range
        self.tolerance.put(self.tolerance_K)
        self.settle_time.put(self.settle_time_s)
        self._lock = threading.Lock()
        self._status: Status | None = None
        self._cancel: threading.Event | None = None
        self._thread: threading.Thread | None = None

    # --- reading ----------------------------------------------------------------------------
    def poll(self) -> float:
        """Read the sensor now, update :attr:`readback` and return the temperature."""
        value = float(self.driver.temperature_K(self.input))
        self.readback.put(value)
        return value

    def read(self) -> dict[str, dict[str, Any]]:
        """A fresh reading of the readback (and the setpoint)."""
        self.poll()
        return super().read()

    def read_configuration(self) -> dict[str, dict[str, Any]]:
        """Tolerance, settle time and the controller's identity (asked once)."""
        if not self.identity.get():
            self.identity.put(str(self.driver.identify()))
        return super().read_configuration()

    # --- moving -----------------------------------------------------------------------------
    def set(self, value_K: float, *, timeout_s: float | None = None) -> Status:
        """Set the temperature; the status finishes once it has settled.

        Parameters
        ----------
        value_K : float
            Setpoint in kelvin (the driver checks its limits before sending).
        timeout_s : float, optional
            Settle timeout in ``time_source`` seconds (default: the constructor's). On
            timeout the status fails with :class:`SettleTimeoutError`; the setpoint stays.

        Raises
        ------
        LimitError
            From the driver, for a setpoint outside its limits (nothing was sent).
        """
        target = float(value_K)
        timeout = self.timeout_s if timeout_s is None else timeout_s
        self._cancel_pending("superseded by a new setpoint")
        self.driver.set_setpoint_K(self.loop, target)
        if self.heater_range is not None:
            self.driver.set_heater_range(self.loop, self.heater_range)
        self.setpoint.put(target)
        self.settled.put(False)
        status = Status(obj=self)
        cancel = threading.Event()
        thread = threading.Thread(
            target=self._settle,
            args=(target, timeout, status, cancel),
            name=f"{self.name}-settle",
            daemon=True,
        )
        with self._lock:
            self._status, self._cancel, self._thread = status, cancel, thread
        thread.start()
        return status

    def stop(self, *, success: bool = False) -> None:
        """Stop waiting for the temperature to settle (the pending status fails).

        The controller keeps its setpoint and heater: switching an oven off when a plan
        pauses would thermally cycle the cell. Use the driver's ``heaters_off()`` for that.
        """
        self._cancel_pending("stopped")

    def _cancel_pending(self, why: str) -> None:
        with self._lock:
            status, cancel, thread = self._status, self._cancel, self._thread
            self._status = self._cancel = self._thread = None
        if cancel is None or status is None:
            return
        cancel.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(5.0)
        if not status.done:
            status.set_exception(RuntimeError(f"{self.name}: waiting to settle was {why}"))

    def _settle(
        self, target: float, timeout: float | None, status: Status, cancel: threading.Event
    ) -> None:
        start = self.time_source()
        inside_since: float | None = None
        last = math.nan
        try:
            while not cancel.is_set():
                last = self.poll()
                now = self.time_source()
                if abs(last - target) <= self.tolerance_K:
                    inside_since = now if inside_since is None else inside_since
                    if now - inside_since >= self.settle_time_s:
                        self.settled.put(True)
                        status.set_finished()
                        return
                else:
                    inside_since = None
                if timeout is not None and now - start >= timeout:
                    status.set_exception(
                        SettleTimeoutError(
                            f"{self.name}: the temperature did not settle at {target:g} K "
                            f"± {self.tolerance_K:g} K for {self.settle_time_s:g} s within "
                            f"{timeout:g} s (last reading {last:.3f} K); check the heater "
                            "range and the oven, or allow more time"
                        )
                    )
                    return
                cancel.wait(self.poll_s)
        except Exception as exc:  # a driver error ends the wait; the status carries it
            log.error("%s: reading the temperature failed: %s", self.name, exc)
            if not status.done:
                status.set_exception(exc)
