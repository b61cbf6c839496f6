"""The lab critical-current-density (CCD) test, run directly on a potentiostat driver.

Protocol (seed paper, Methods): at 60 °C the current density rises stepwise 0.1, 0.25, 0.50,
… 4.0 mA/cm² (0.25 mA/cm² increments); each current runs as 1 h half-cycles (plate, then
strip) for 2 cycles. The CCD is the current density at which the voltage collapses
mid-half-cycle (a short). The test watches every chunk of data as it arrives, stops at the
short and switches the cell off.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from insitu.analysis.shorts import ShortEvent, charge_to_failure, find_short
from insitu.instruments.potentiostat import CurrentSequence, CurrentStep, Potentiostat

__all__ = ["CCDResult", "lab_ccd_densities_mA_cm2", "run_ccd"]


def lab_ccd_densities_mA_cm2(
    first: float = 0.1, increment: float = 0.25, last: float = 4.0
) -> list[float]:
    """Current densities of the lab protocol: ``first``, then ``increment`` … ``last``."""
    n = round(last / increment)
    return [first, *(round(increment * k, 10) for k in range(1, n + 1))]


@dataclass
class CCDResult:
    """Outcome of a CCD test."""

    ccd_mA_cm2: float | None
    short: ShortEvent | None
    charge_to_failure_C_cm2: dict[str, float]
    stopped_because: str
    data: pd.DataFrame = field(repr=False)

    def summary(self) -> dict:
        """JSON-friendly summary."""
        return {
            "ccd_mA_cm2": self.ccd_mA_cm2,
            "charge_to_failure_C_cm2": self.charge_to_failure_C_cm2,
            "short_time_s": None if self.short is None else self.short.time_s,
            "stopped_because": self.stopped_because,
            "points": len(self.data),
        }


def run_ccd(
    potentiostat: Potentiostat,
    *,
    area_cm2: float = 1.0,
    densities_mA_cm2: Sequence[float] | None = None,
    half_cycle_s: float = 3600.0,
    cycles_per_step: int = 2,
    interval_s: float = 10.0,
    voltage_limit_V: float = 10.0,
    progress: Callable[[float, float], None] | None = None,
) -> CCDResult:
    """Run the CCD protocol until the cell shorts or the steps run out.

    Parameters
    ----------
    potentiostat : Potentiostat
        Any driver that can run a :class:`CurrentSequence`.
    area_cm2 : float
        Electrode area in cm².
    densities_mA_cm2 : sequence of float, optional
        Current densities in mA/cm²; the paper's lab list by default.
    half_cycle_s, cycles_per_step, interval_s : float, int, float
        Half-cycle duration, cycles per current density and sampling interval.
    voltage_limit_V : float
        The test stops (cell off) if |voltage| exceeds this.
    progress : callable, optional
        Called as ``progress(time_s, current_density_mA_cm2)`` after each chunk.
    """
    if densities_mA_cm2 is None:
        densities_mA_cm2 = lab_ccd_densities_mA_cm2()
    if area_cm2 <= 0:
        raise ValueError(f"electrode area must be positive, got {area_cm2} cm²")
    steps: list[CurrentStep] = []
    for j in densities_mA_cm2:
        current_A = j * 1e-3 * area_cm2
        for _ in range(cycles_per_step):
            steps += [CurrentStep(current_A, half_cycle_s), CurrentStep(-current_A, half_cycle_s)]
    sequence = CurrentSequence(
        steps=tuple(steps),
        interval_s=interval_s,
        voltage_min_V=-voltage_limit_V,
        voltage_max_V=voltage_limit_V,
        on_limit="stop",
    )
    chunks: list[pd.DataFrame] = []
    short: ShortEvent | None = None
    stopped_because = "completed"
    stream = potentiostat.stream(sequence)
    try:
        for chunk in stream:
            if len(chunk):
                chunks.append(chunk)
                if progress is not None:
                    last_current = float(chunk["current_A"].iloc[-1])
                    progress(float(chunk["time_s"].iloc[-1]), abs(last_current) / area_cm2 * 1e3)
                # Only the recent half-cycles can hold a new short: look at the tail.
                recent = _recent(chunks, 2 * half_cycle_s + interval_s)
                short = find_short(recent, min_current_A=1e-12)
                if short is not None:
                    stopped_because = "short"
                    break
            if chunk.attrs.get("end_reason") == "voltage_limit":
                stopped_because = "voltage_limit"
    finally:
        # Closing the stream early (after a short) makes the driver switch the cell off.
        stream.close()
    data = pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame()
    if short is not None:
        # Positions in the tail differ from positions in the whole table.
        index = int(np.searchsorted(data["time_s"].to_numpy(), short.time_s))
        short = ShortEvent(**{**short.__dict__, "index": index})
    charge = charge_to_failure(data, None if short is None else short.time_s) if len(data) else {}
    return CCDResult(
        ccd_mA_cm2=None if short is None else round(abs(short.current_A) / area_cm2 * 1e3, 6),
        short=short,
        charge_to_failure_C_cm2={k: v / area_cm2 for k, v in charge.items()},
        stopped_because=stopped_because,
        data=data,
    )


def _recent(chunks: list[pd.DataFrame], span_s: float) -> pd.DataFrame:
    tail: list[pd.DataFrame] = []
    end = float(chunks[-1]["time_s"].iloc[-1])
    for chunk in reversed(chunks):
        tail.append(chunk)
        if float(chunk["time_s"].iloc[0]) < end - span_s:
            break
    return pd.concat(reversed(tail), ignore_index=True)
