"""One simulation clock shared by every simulated device.

Simulated time runs ``speedup`` times faster than the wall clock, so a 1 h half-cycle takes
3.6 ms at ``speedup=1e6`` and a real hour at ``speedup=1``. Every emulator and simulated
device of one bench reads the same :class:`SimClock`, so their timestamps agree.
"""

from __future__ import annotations

import threading
import time

__all__ = ["SimClock"]


class SimClock:
    """Simulated time, in seconds, advancing ``speedup`` times faster than real time.

    Parameters
    ----------
    speedup : float
        Simulated seconds per real second; must be positive. ``1.0`` runs in real time.
    start_s : float, optional
        Simulated time at creation.

    Notes
    -----
    The clock is monotonic and thread-safe. Changing the speed-up keeps simulated time
    continuous: time already elapsed is not rescaled.
    """

    def __init__(self, speedup: float = 1.0, start_s: float = 0.0) -> None:
        self._lock = threading.Lock()
        self._speedup = self._checked(speedup)
        self._anchor_real = time.monotonic()
        self._anchor_sim = float(start_s)

    @staticmethod
    def _checked(speedup: float) -> float:
        speedup = float(speedup)
        if not speedup > 0 or speedup != speedup or speedup == float("inf"):
            raise ValueError(
                f"speed-up must be a positive finite number of simulated seconds per real "
                f"second, got {speedup!r}; use 1 for real time or e.g. 1e4 for a fast demo"
            )
        return speedup

    @property
    def speedup(self) -> float:
        """Simulated seconds per real second."""
        return self._speedup

    @speedup.setter
    def speedup(self, value: float) -> None:
        value = self._checked(value)
        with self._lock:
            now_real = time.monotonic()
            self._anchor_sim += (now_real - self._anchor_real) * self._speedup
            self._anchor_real = now_real
            self._speedup = value

    def now(self) -> float:
        """Current simulated time in seconds."""
        with self._lock:
            return self._anchor_sim + (time.monotonic() - self._anchor_real) * self._speedup

    def real_seconds(self, sim_seconds: float) -> float:
        """Wall-clock seconds that ``sim_seconds`` of simulated time take."""
        return sim_seconds / self._speedup

    def sleep(self, sim_seconds: float) -> None:
        """Block the calling thread for ``sim_seconds`` of simulated time."""
        if sim_seconds > 0:
            self.sleep_until(self.now() + sim_seconds)

    def sleep_until(self, sim_time_s: float) -> None:
        """Block until simulated time reaches ``sim_time_s``."""
        while True:
            remaining = sim_time_s - self.now()
            if remaining <= 0:
                return
            time.sleep(self.real_seconds(remaining))

    def __repr__(self) -> str:
        return f"SimClock(speedup={self._speedup:g}, now={self.now():.3f} s)"
