"""Simulated time that runs fast while current flows and near real time at rest."""

from __future__ import annotations

from typing import Any

__all__ = ["SimPace"]


class SimPace:
    """Simulated time runs fast only while current flows; at rest it runs near real time.

    On the simulated bench one clock drives the cell. While a half-cycle runs, a high
    speed-up makes 30 min of plating take a fraction of a second. But at rest (a scan, an
    EIS, the software between segments) a high speed-up would turn each real second of
    computing into hours of open-circuit relaxation, which heals voids and delays the short.
    A real scan takes minutes: at ``rest_speedup`` (100×) the few real seconds a simulated
    scan takes are about that.

    Subscribe it to the RunEngine (``RE.subscribe(pace)``): it reads the documents, so it
    paces any plan, under the command line or the queue server. A run that passes current
    (a half-cycle of the experiment, or a ``galvanostatic_hold``, ``plate_strip`` or
    ``ccd_test`` run) runs at ``cycling_speedup`` from its start document to its stop
    document; everything else at ``rest_speedup``. Time stays continuous.
    """

    #: Plans whose runs pass current throughout.
    CURRENT_PLANS = frozenset({"galvanostatic_hold", "plate_strip", "ccd_test"})

    def __init__(self, clock: Any, cycling_speedup: float, rest_speedup: float) -> None:
        self.clock = clock
        self.cycling_speedup = float(cycling_speedup)
        self.rest_speedup = float(rest_speedup)
        self.clock.speedup = self.rest_speedup

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        """The RunEngine's document callback."""
        if name == "start":
            segment = doc.get("experiment_segment")
            current = (
                segment in ("plate", "strip")
                if segment is not None
                else doc.get("plan_name") in self.CURRENT_PLANS
            )
            self.clock.speedup = self.cycling_speedup if current else self.rest_speedup
        elif name == "stop":
            self.clock.speedup = self.rest_speedup
