"""Cracks of the virtual cell: nucleation at the stripping electrode and Li held in them.

Damage D (0..1) is integrated by :class:`insitu.simulators.cell.model.VirtualCell`; this module
turns it into explicit cracks (the paper's failure mode: edge chipping at the stripping
electrode, then lateral growth through the thickness, with Li cycled in the cracks).

* Crack k of N nucleates when D first exceeds ``CRACK_NUCLEATION_SPAN·k/N`` (the first as
  soon as damage starts), at the electrode that strips at that moment, near the pellet rim.
* Its depth fraction grows linearly from 0 at its threshold to 1 at D = 1 (the first crack
  reaches through the pellet when the cell shorts).
* While its origin electrode plates, a fraction ``CRACK_LI_FRACTION·depth`` of that
  electrode's Faradaic current deposits Li into the crack, of which
  ``CRACK_DEAD_LI_FRACTION`` is isolated for good; while it strips, the active Li returns.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import parameters as cp
from .state import CrackState

__all__ = ["Crack", "fill_cracks", "nucleate_cracks"]

_TO_M3 = cp.LI_MOLAR_VOLUME_M3_MOL / cp.FARADAY_C_MOL  # Li volume per coulomb


class Crack:
    """Mutable crack record; :meth:`snapshot` gives its frozen :class:`CrackState`.

    Parameters
    ----------
    index : int
        Nucleation order.
    threshold : float
        Damage at which it nucleated.
    origin : int
        Electrode index (0 working, 1 counter) that was stripping at nucleation.
    time_s : float
        Nucleation time.
    rng : numpy.random.Generator
        Source of its random position, direction and aspect ratio.
    """

    __slots__ = (
        "angle_rad",
        "aspect",
        "dead_m3",
        "direction_rad",
        "index",
        "li_m3",
        "nucleation_time_s",
        "origin",
        "radius_fraction",
        "threshold",
    )

    def __init__(
        self, index: int, threshold: float, origin: int, time_s: float, rng: np.random.Generator
    ) -> None:
        self.index = index
        self.threshold = threshold
        self.origin = origin
        self.nucleation_time_s = time_s
        # Edge chipping: nuclei sit near the pellet rim; lateral growth points inwards.
        self.radius_fraction = float(1.0 - 0.15 * rng.random())
        self.angle_rad = float(2.0 * np.pi * rng.random())
        self.direction_rad = float((self.angle_rad + np.pi + rng.normal(0.0, 0.5)) % (2 * np.pi))
        self.aspect = float(rng.uniform(1.0, 3.0))  # lateral length / depth
        self.li_m3 = 0.0
        self.dead_m3 = 0.0

    def depth_fraction(self, damage: np.ndarray | float) -> np.ndarray:
        """Depth fraction at damage D: 0 at the threshold, 1 at D = 1."""
        return np.clip((np.asarray(damage) - self.threshold) / (1.0 - self.threshold), 0.0, 1.0)

    def snapshot(self, damage: float, thickness_m: float, names: Sequence[str]) -> CrackState:
        """Frozen state at damage ``damage`` in a pellet ``thickness_m`` thick."""
        depth = float(self.depth_fraction(damage))
        return CrackState(
            index=self.index,
            radius_fraction=self.radius_fraction,
            angle_rad=self.angle_rad,
            direction_rad=self.direction_rad,
            origin=names[self.origin],
            nucleation_time_s=self.nucleation_time_s,
            depth_fraction=depth,
            depth_m=depth * thickness_m,
            length_m=self.aspect * depth * thickness_m,
            opening_m=cp.CRACK_BASE_OPENING_M * depth,
            li_volume_m3=self.li_m3,
            dead_li_volume_m3=self.dead_m3,
        )


def nucleate_cracks(
    cracks: list[Crack],
    grid_s: np.ndarray,
    damage: np.ndarray,
    stripping: int,
    max_cracks: int,
    rng: np.random.Generator,
) -> None:
    """Append the cracks whose damage threshold is crossed on ``grid_s``.

    Parameters
    ----------
    cracks : list of Crack
        Existing cracks, in nucleation order; extended in place.
    grid_s, damage : ndarray
        Damage (non-decreasing) at the internal grid times of the present hold.
    stripping : int
        The electrode stripping during the hold (the origin of new cracks).
    max_cracks : int
        Number of cracks the material forms by D = 1.
    rng : numpy.random.Generator
        The cell's crack stream (seeded, independent of the noise stream).
    """
    while len(cracks) < max_cracks:
        k = len(cracks)
        threshold = cp.CRACK_NUCLEATION_SPAN * k / max_cracks
        if not damage[-1] > threshold:
            return
        i = int(np.argmax(damage > threshold))
        if i == 0:
            t_nuc = float(grid_s[0])
        else:
            frac = (threshold - damage[i - 1]) / (damage[i] - damage[i - 1])
            t_nuc = float(grid_s[i - 1] + frac * (grid_s[i] - grid_s[i - 1]))
        cracks.append(Crack(k, threshold, stripping, t_nuc, rng))


def fill_cracks(
    cracks: Sequence[Crack], current_A: float, grid_s: np.ndarray, damage: np.ndarray
) -> np.ndarray:
    """Move Li into (origin plating) or out of (origin stripping) each crack over the grid.

    Parameters
    ----------
    cracks : sequence of Crack
        Updated in place.
    current_A : float
        Faradaic current (positive: the working electrode strips).
    grid_s, damage : ndarray
        Damage at the internal grid times spanning the Faradaic part of the hold.

    Returns
    -------
    ndarray, shape (2,)
        Charge per electrode that went into (+) or came out of (-) its cracks, C; it
        bypasses that electrode's foil.
    """
    moved_C = np.zeros(2)
    if not cracks or current_A == 0.0:
        return moved_C
    rate_C_s = cp.CRACK_LI_FRACTION * abs(current_A)
    dt = np.diff(grid_s)
    for crack in cracks:
        depth = crack.depth_fraction(damage)
        volume = rate_C_s * float(np.sum(0.5 * (depth[1:] + depth[:-1]) * dt)) * _TO_M3
        origin_plates = (current_A < 0) == (crack.origin == 0)
        if origin_plates:
            crack.li_m3 += (1.0 - cp.CRACK_DEAD_LI_FRACTION) * volume
            crack.dead_m3 += cp.CRACK_DEAD_LI_FRACTION * volume
            moved_C[crack.origin] += volume / _TO_M3
        else:
            removed = min(crack.li_m3, volume)
            crack.li_m3 -= removed
            moved_C[crack.origin] -= removed / _TO_M3
    return moved_C
