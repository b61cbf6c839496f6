"""Equivalent-circuit impedance of the virtual cell.

Circuit (all in series)::

    (R_b ‖ C_geo) — (R_gb ‖ CPE_gb) — [Li: (R_int,w ‖ CPE_dl,w) — (R_int,c ‖ CPE_dl,c)]
                                     [blocking: CPE_bl,w — CPE_bl,c]

and, once shorted, the whole in parallel with the short resistance. ``R_b + R_gb`` is the
electrolyte resistance L/(σA): it is the real-axis intercept between the electrolyte arcs and
the electrode response, and the point the low-frequency spike of a blocking cell extrapolates
to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["EquivalentCircuit", "cpe_admittance"]


def cpe_admittance(omega_rad_s: np.ndarray, q: float, exponent: float) -> np.ndarray:
    """Admittance ``Q (jω)^n`` of a constant-phase element.

    Parameters
    ----------
    omega_rad_s : ndarray
        Angular frequency.
    q : float
        CPE coefficient in F·s^(n-1) (a capacitance in F when ``exponent`` is 1).
    exponent : float
        CPE exponent n, 0 < n ≤ 1.

    Returns
    -------
    ndarray of complex
    """
    return q * (1j * omega_rad_s) ** exponent


@dataclass(frozen=True)
class EquivalentCircuit:
    """Element values of the cell's equivalent circuit at one instant.

    Attributes
    ----------
    bulk_ohm : float
        Grain (bulk) resistance R_b.
    geometric_F : float
        Geometric capacitance ε0·εr·A/L in parallel with R_b.
    grain_boundary_ohm : float
        Grain-boundary resistance R_gb; ``bulk_ohm + grain_boundary_ohm = L/(σA)``.
    grain_boundary_q : float
        CPE coefficient in parallel with R_gb.
    grain_boundary_exponent : float
        Its exponent.
    interfaces : sequence of (R_int_ohm, Q_dl, n_dl)
        One per Li electrode; empty for blocking electrodes.
    blocking : sequence of (Q_bl, n_bl)
        One series CPE per blocking electrode; empty for Li electrodes.
    short_ohm : float or None
        Short resistance in parallel with everything, or None.
    """

    bulk_ohm: float
    geometric_F: float
    grain_boundary_ohm: float
    grain_boundary_q: float
    grain_boundary_exponent: float
    interfaces: Sequence[tuple[float, float, float]] = ()
    blocking: Sequence[tuple[float, float]] = ()
    short_ohm: float | None = None

    @property
    def electrolyte_ohm(self) -> float:
        """R_b + R_gb, the electrolyte resistance L/(σA)."""
        return self.bulk_ohm + self.grain_boundary_ohm

    def impedance(self, frequency_Hz: np.ndarray) -> np.ndarray:
        """Noise-free complex impedance in ohm at ``frequency_Hz``."""
        w = 2.0 * np.pi * np.asarray(frequency_Hz, dtype=float)
        z = self.bulk_ohm / (1.0 + 1j * w * self.bulk_ohm * self.geometric_F)
        z = z + self.grain_boundary_ohm / (
            1.0
            + self.grain_boundary_ohm
            * cpe_admittance(w, self.grain_boundary_q, self.grain_boundary_exponent)
        )
        for r_int, q_dl, n_dl in self.interfaces:
            z = z + r_int / (1.0 + r_int * cpe_admittance(w, q_dl, n_dl))
        for q_bl, n_bl in self.blocking:
            z = z + 1.0 / cpe_admittance(w, q_bl, n_bl)
        if self.short_ohm is not None:
            z = z * self.short_ohm / (z + self.short_ohm)
        return z
