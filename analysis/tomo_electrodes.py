"""Transparent volume inside the electrolyte and the thickness of the Li electrodes.

Definitions (REFERENCE.md, "Analysis definitions")
--------------------------------------------------
* **X-ray transparent region volume**: pores + cracks + Li inside the electrolyte, per step:
  the voxels of the pore phase (below the study's global threshold) whose row centres lie
  between the two Li|SE interfaces, inside an optional region of interest.
* **Electrode thickness**: at 15 lateral locations (a 3 × 5 grid of small windows inside the
  pellet), the window-mean grey profile along z is followed outward from each Li|SE interface
  until it falls through ``threshold`` (halfway between Li and what lies beyond it, argon
  or the plunger); the sub-voxel crossing is the Li's outer surface and the thickness the
  distance to the interface. The thicknesses of each electrode are averaged over the
  locations. At the beamline the 150 µm foils can run out of the 0.8 mm field of view: a
  profile that never falls through the threshold before the first or last row gives the
  visible thickness only (a lower bound) and is flagged ``cut``; its *change* between steps
  is still the electrode's while the moving surface is in view.
* **Charge from a thickness change**: ``Q = Δh · A · ρ_Li · F / M_Li`` (ρ = 0.534 g/cm³,
  M = 6.94 g/mol, F = 96485 C/mol), ≈ 742 mC/cm² per µm of Li. Between two steps one
  electrode plates and the other strips; equal charges are expected, and Li that stays in
  cracks (or is lost as dead Li) shows as more charge stripped than plated.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "LI_DENSITY_G_CM3",
    "LI_MOLAR_MASS_G_MOL",
    "charge_balance",
    "electrode_thickness",
    "thickness_locations",
    "thickness_to_charge_mC",
    "transparent_volume",
]

LI_DENSITY_G_CM3 = 0.534
LI_MOLAR_MASS_G_MOL = 6.94
FARADAY_C_MOL = 96485.0


def _check_positive(value: float, name: str, unit: str) -> float:
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number ({unit}), got {value!r}")
    return float(value)


def _check_interfaces(interfaces: Sequence[float], nz: int) -> tuple[float, float]:
    if interfaces is None or len(interfaces) != 2:
        raise ValueError(
            f"interfaces must be (top_row, bottom_row) of the electrolyte, got {interfaces!r}"
        )
    top, bot = (float(v) for v in interfaces)
    if not 0 <= top < bot <= nz:
        raise ValueError(
            f"interfaces must satisfy 0 <= top < bottom <= {nz} rows, got ({top}, {bot})"
        )
    return top, bot


def _check_volume(volume: Any, name: str) -> tuple[int, int, int]:
    shape = tuple(getattr(volume, "shape", ()))
    if len(shape) != 3:
        raise ValueError(f"{name} must be a 3-D array (z, y, x), got shape {shape}")
    return shape  # type: ignore[return-value]


def transparent_volume(
    binary: Any,
    *,
    voxel_um: float,
    interfaces: Sequence[float],
    mask: Any | None = None,
    slab_rows: int = 64,
) -> float:
    """X-ray transparent volume inside the electrolyte (pores, cracks, Li in cracks), µm³.

    Parameters
    ----------
    binary : array_like of bool, shape (nz, ny, nx)
        Transparent phase (True below the global threshold). Anything that slices like numpy
        (Zarr, HDF5); read ``slab_rows`` rows at a time.
    voxel_um : float
        Voxel edge in µm.
    interfaces : (float, float)
        ``(top_row, bottom_row)`` of the electrolyte (continuous rows, 0 at the top edge of
        row 0); rows whose centres lie in ``[top, bottom)`` count.
    mask : array_like of bool, optional
        Region of interest, ``(ny, nx)`` or the volume's shape (e.g. the pellet disc: the
        air around it is transparent too).
    slab_rows : int
        Rows read at a time.

    Returns
    -------
    float
        Transparent volume in µm³.
    """
    voxel_um = _check_positive(voxel_um, "voxel_um", "µm")
    shape = _check_volume(binary, "binary")
    top, bot = _check_interfaces(interfaces, shape[0])
    if int(slab_rows) < 1:
        raise ValueError(f"slab_rows must be a positive number of rows, got {slab_rows!r}")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape not in (shape, shape[1:]):
            raise ValueError(
                f"mask must have the volume's shape {shape} or its cross-section {shape[1:]}, "
                f"got {mask.shape}"
            )
    z0, z1 = int(np.ceil(top - 0.5)), int(np.ceil(bot - 0.5))
    count = 0
    for a in range(z0, z1, int(slab_rows)):
        b = min(z1, a + int(slab_rows))
        slab = np.asarray(binary[a:b]).astype(bool)
        if mask is not None:
            slab = slab & (mask if mask.ndim == 2 else mask[a:b])
        count += int(np.count_nonzero(slab))
    return count * voxel_um**3


def thickness_locations(
    shape_yx: tuple[int, int],
    *,
    window_px: int,
    mask: np.ndarray | None = None,
    grid: tuple[int, int] = (3, 5),
) -> np.ndarray:
    """Centres (y, x) of the thickness windows: a ``grid`` pattern inside the pellet.

    The grid is centred on the mask's centroid (the field of view's centre without a mask)
    and spaced as widely as keeps every window inside the mask (inside the field of view),
    so the locations sample the whole electrode rather than its middle.

    Parameters
    ----------
    shape_yx : (int, int)
        Cross-section of the volume.
    window_px : int
        Window edge in pixels.
    mask : ndarray of bool, shape (ny, nx), optional
        The pellet's cross-section.
    grid : (int, int)
        Rows and columns of the pattern (3 × 5 = 15 locations).

    Returns
    -------
    ndarray of int, shape (grid[0] * grid[1], 2)
    """
    ny, nx = shape_yx
    if mask is None:
        mask = np.ones((ny, nx), dtype=bool)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (ny, nx):
        raise ValueError(f"mask must be the cross-section {(ny, nx)}, got {mask.shape}")
    if window_px < 1:
        raise ValueError(f"window_px must be >= 1, got {window_px!r}")
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        raise ValueError("mask is empty: pass the pellet's cross-section")
    cy, cx = ys.mean(), xs.mean()
    gy, gx = (np.arange(n) - (n - 1) / 2 for n in grid)
    h = window_px // 2

    def centres(step: float) -> np.ndarray:
        yy, xx = np.meshgrid(cy + gy * step, cx + gx * step, indexing="ij")
        return np.stack([yy.ravel(), xx.ravel()], axis=1).round().astype(int)

    def fits(c: np.ndarray) -> bool:
        for y, x in c:
            y0, x0 = y - h, x - h
            if y0 < 0 or x0 < 0 or y0 + window_px > ny or x0 + window_px > nx:
                return False
            if not mask[y0 : y0 + window_px, x0 : x0 + window_px].all():
                return False
        return True

    # The widest spacing that fits, by bisection (fitting is monotone for convex masks).
    lo, hi = 0.0, float(max(ny, nx))
    if not fits(centres(lo)):
        raise ValueError(
            f"a {window_px}-pixel window does not fit in the mask at its centre; "
            "use a smaller window_um"
        )
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if fits(centres(mid)) else (lo, mid)
    return centres(lo)


def _outer_surface(profile: np.ndarray, start: float, direction: int, threshold: float):
    """First crossing of ``threshold`` from above, walking from row ``start`` outward.

    Returns (surface z in continuous rows, cut flag). Row i's value sits at its centre i + 0.5;
    the crossing between two centres is interpolated linearly.
    """
    n = profile.size
    # First row fully on the electrode's side of the interface.
    i = int(np.ceil(start - 0.5)) if direction > 0 else int(np.ceil(start - 0.5)) - 1
    prev_i = None
    while 0 <= i < n:
        if profile[i] < threshold:
            if prev_i is None:
                return start, False  # no Li at all next to the interface
            a, b = profile[prev_i], profile[i]
            f = (a - threshold) / (a - b) if a != b else 0.5
            return prev_i + 0.5 + direction * f, False
        prev_i = i
        i += direction
    # Never fell below: the electrode runs out of the field of view.
    return (float(n) if direction > 0 else 0.0), True


def electrode_thickness(
    volume: Any,
    *,
    voxel_um: float,
    interfaces: Sequence[float],
    threshold: float,
    mask: np.ndarray | None = None,
    window_um: float = 30.0,
    locations: np.ndarray | None = None,
) -> pd.DataFrame:
    """Thickness of both Li electrodes at 15 lateral locations.

    Parameters
    ----------
    volume : array_like, shape (nz, ny, nx)
        Grey volume (or any field where Li is above ``threshold`` and what lies beyond the
        electrode below it, e.g. a Li indicator 0/1). Only the windows' columns are read.
    voxel_um : float
        Voxel edge in µm.
    interfaces : (float, float)
        ``(top_row, bottom_row)``: the working Li|SE and SE|counter Li interfaces
        (continuous rows, 0 at the top edge of row 0), e.g. from the interface detection.
    threshold : float
        Grey value between Li and the outside (argon) beyond it: halfway between the two
        phases' levels.
    mask : ndarray of bool, shape (ny, nx), optional
        Pellet cross-section; the windows stay inside it.
    window_um : float
        Edge of each square window, µm; its mean profile averages out Li roughness and noise.
    locations : ndarray of int, shape (n, 2), optional
        Window centres (y, x) in pixels; default :func:`thickness_locations` (3 × 5).

    Returns
    -------
    pandas.DataFrame
        One row per location: ``y``, ``x`` (pixels), ``top_um`` and ``bottom_um`` (working
        and counter electrode thickness), ``top_cut`` and ``bottom_cut`` (True where the Li
        reaches the field of view's edge: the visible thickness only). ``df[["top_um",
        "bottom_um"]].mean()`` is the 15-location average.
    """
    voxel_um = _check_positive(voxel_um, "voxel_um", "µm")
    window_um = _check_positive(window_um, "window_um", "µm")
    shape = _check_volume(volume, "volume")
    top, bot = _check_interfaces(interfaces, shape[0])
    w = max(1, round(window_um / voxel_um))
    if locations is None:
        locations = thickness_locations(shape[1:], window_px=w, mask=mask)
    locations = np.asarray(locations, dtype=int).reshape(-1, 2)
    h = w // 2
    rows = []
    for y, x in locations:
        y0, x0 = max(0, y - h), max(0, x - h)
        block = np.asarray(volume[:, y0 : y0 + w, x0 : x0 + w], dtype=np.float64)
        if mask is not None:
            m = np.asarray(mask)[y0 : y0 + w, x0 : x0 + w]
            profile = block[:, m].mean(axis=1) if m.any() else block.mean(axis=(1, 2))
        else:
            profile = block.mean(axis=(1, 2))
        z_top, cut_top = _outer_surface(profile, top, -1, threshold)
        z_bot, cut_bot = _outer_surface(profile, bot, +1, threshold)
        rows.append(
            {
                "y": int(y),
                "x": int(x),
                "top_um": (top - z_top) * voxel_um,
                "bottom_um": (z_bot - bot) * voxel_um,
                "top_cut": cut_top,
                "bottom_cut": cut_bot,
            }
        )
    return pd.DataFrame(rows, columns=["y", "x", "top_um", "bottom_um", "top_cut", "bottom_cut"])


def thickness_to_charge_mC(
    delta_thickness_um: float | np.ndarray, *, area_cm2: float | None = None
) -> float | np.ndarray:
    """Charge of a Li thickness change: ``Q = Δh · A · ρ_Li · F / M_Li``.

    Parameters
    ----------
    delta_thickness_um : float or ndarray
        Thickness change in µm (positive: Li plated on that electrode).
    area_cm2 : float, optional
        Electrode area in cm²; without it the result is per cm².

    Returns
    -------
    float or ndarray
        mC (mC/cm² without ``area_cm2``); ≈ 742.4 mC/cm² per µm.
    """
    per_cm2 = (
        np.asarray(delta_thickness_um, dtype=float)
        * 1e-4  # µm → cm
        * LI_DENSITY_G_CM3
        / LI_MOLAR_MASS_G_MOL
        * FARADAY_C_MOL
        * 1e3  # C → mC
    )
    if area_cm2 is not None:
        per_cm2 = per_cm2 * _check_positive(area_cm2, "area_cm2", "cm²")
    return float(per_cm2) if per_cm2.ndim == 0 else per_cm2


def charge_balance(
    top_um: Sequence[float],
    bottom_um: Sequence[float],
    *,
    area_cm2: float,
    charge_passed_mC: Sequence[float] | None = None,
) -> pd.DataFrame:
    """Charge plated and stripped per electrode between successive scans, and the imbalance.

    Parameters
    ----------
    top_um, bottom_um : sequence of float
        Mean thickness of the working (top) and counter (bottom) electrode at each step.
    area_cm2 : float
        Electrode area in cm² (the in-situ cell: π·(0.15 cm)² for the 3 mm pellet).
    charge_passed_mC : sequence of float, optional
        Charge the potentiostat passed between successive scans (one value per interval),
        for comparison.

    Returns
    -------
    pandas.DataFrame
        One row per interval ``k → k + 1``: ``dh_top_um``, ``dh_bottom_um``, ``q_top_mC``,
        ``q_bottom_mC`` (signed, positive = plated), ``plated_mC`` (sum of the positive
        charges), ``stripped_mC`` (sum of the magnitudes of the negative ones),
        ``imbalance_mC`` = stripped − plated (> 0: Li left the stripping electrode but did
        not reach the other one, e.g. it stays in cracks) and, if given,
        ``charge_passed_mC``.
    """
    top = np.asarray(top_um, dtype=float)
    bot = np.asarray(bottom_um, dtype=float)
    if top.ndim != 1 or top.shape != bot.shape or top.size < 2:
        raise ValueError(
            "top_um and bottom_um must be two equally long sequences of at least two steps, "
            f"got {top.shape} and {bot.shape}"
        )
    dt, db = np.diff(top), np.diff(bot)
    qt = thickness_to_charge_mC(dt, area_cm2=area_cm2)
    qb = thickness_to_charge_mC(db, area_cm2=area_cm2)
    q = np.stack([qt, qb])
    plated = np.clip(q, 0, None).sum(axis=0)
    stripped = np.clip(-q, 0, None).sum(axis=0)
    df = pd.DataFrame(
        {
            "step": np.arange(1, top.size),
            "dh_top_um": dt,
            "dh_bottom_um": db,
            "q_top_mC": qt,
            "q_bottom_mC": qb,
            "plated_mC": plated,
            "stripped_mC": stripped,
            "imbalance_mC": stripped - plated,
        }
    )
    if charge_passed_mC is not None:
        passed = np.asarray(charge_passed_mC, dtype=float)
        if passed.shape != dt.shape:
            raise ValueError(
                f"charge_passed_mC needs one value per interval ({dt.size}), got {passed.size}"
            )
        df["charge_passed_mC"] = passed
    return df
