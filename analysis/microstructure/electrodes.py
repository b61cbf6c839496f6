"""Transparent volume inside the electrolyte and the thickness of the Li electrodes.

Definitions (REFERENCE.md, "Analysis definitions")
--------------------------------------------------
* **X-ray transparent region volume**: pores + cracks + Li inside the electrolyte, per step:
  the voxels of the pore phase (below the study's global threshold) whose row centres lie
  between the two Li|SE interfaces, inside an optional region of interest.
* **Electrode thickness**: at 15 lateral locations (a 3 × 5 grid of small windows inside the
  pellet), the window-mean grey profile along z is followed outward from each Li|SE interface
  to the Li's outer surface; the thickness is the distance between the two, and the
  thicknesses of each electrode are averaged over the locations. The outer surface is the
  edge to the **current collector** (the stainless-steel piston pressed against the Li): at
  25 keV Li attenuates almost like argon (μ ≈ 9 vs ≈ 1 1/m) but steel strongly (≈ 1.2e4
  1/m, brighter than any electrolyte), so the edge is the steepest rise beyond the
  interface, and it counts as the collector only if the level beyond it is brighter than the
  electrolyte. The surface is placed sub-voxel by the profile's integral across the edge:
  each row adds the share of its height that is not collector, ``(c − g)/(c − l)`` with the
  collector and Li levels ``c`` and ``l`` (exact for partial-volume rows and for a blur that
  conserves the integral). Without such an edge (the Li runs out of the field of view, as
  the 150 µm foils do at the beamline, or the stack is not backed by a collector) no
  thickness is reported: NaN, flagged ``cut`` with the reason in ``status``, never the distance to
  the volume's edge posing as a thickness. A fixed ``threshold`` instead follows the
  profile until it *falls* through it (Li above, whatever lies beyond below: a Li indicator
  0/1, or Li against gas where phase contrast makes that visible); there a profile that
  never falls gives the visible thickness only (a lower bound), flagged ``cut``.
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
    "STATUS_CUT",
    "STATUS_NO_COLLECTOR",
    "STATUS_OK",
    "WindowProfiles",
    "charge_balance",
    "electrode_thickness",
    "thickness_locations",
    "thickness_to_charge_mC",
    "transparent_volume",
    "transparent_volume_from_counts",
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


def transparent_volume_from_counts(
    row_counts: np.ndarray, *, value: float, voxel_um: float, interfaces: Sequence[float]
) -> float:
    """:func:`transparent_volume` of a uint8 volume from its per-row value counts.

    Parameters
    ----------
    row_counts : ndarray of int, shape (nz, 256)
        Voxels of each row holding each grey value, inside the region of interest
        (:func:`~insitu.analysis.microstructure.segment.uint8_row_value_counts`).
    value : float
        The study threshold's grey value: a voxel is transparent iff ``grey < value``.
    voxel_um : float
        Voxel edge in µm.
    interfaces : (float, float)
        As for :func:`transparent_volume`.

    Returns
    -------
    float
        The same number as :func:`transparent_volume` of ``volume < value`` with that region.
    """
    voxel_um = _check_positive(voxel_um, "voxel_um", "µm")
    counts = np.asarray(row_counts)
    if counts.ndim != 2 or counts.shape[1] != 256:
        raise ValueError(f"row_counts must have shape (nz, 256), got {counts.shape}")
    top, bot = _check_interfaces(interfaces, counts.shape[0])
    z0, z1 = int(np.ceil(top - 0.5)), int(np.ceil(bot - 0.5))
    below = np.arange(256) < value
    count = int(counts[z0:z1, below].sum()) if z1 > z0 else 0
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


#: ``status`` of a location's electrode: measured, or why not.
STATUS_OK = "ok"
STATUS_NO_COLLECTOR = "no collector in view"
STATUS_CUT = "cut"


def _first_electrode_row(start: float, direction: int) -> int:
    """First row whose centre lies on the electrode's side of the interface at ``start``."""
    i = int(np.ceil(start - 0.5))
    return i if direction > 0 else i - 1


def _outer_surface(profile: np.ndarray, start: float, direction: int, threshold: float):
    """First crossing of ``threshold`` from above, walking from row ``start`` outward.

    Returns (surface z in continuous rows, cut flag). Row i's value sits at its centre i + 0.5;
    the crossing between two centres is interpolated linearly.
    """
    n = profile.size
    i = _first_electrode_row(start, direction)
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


def _collector_surface(
    profile: np.ndarray, start: float, direction: int, electrolyte_level: float
) -> float | None:
    """Edge to the current collector, walking from the interface at row ``start`` outward.

    Parameters
    ----------
    profile : ndarray, shape (nz,)
        Mean grey of the location's window per row (row i's value at its centre i + 0.5).
    start : float
        The Li|SE interface (continuous rows).
    direction : {-1, +1}
        Outward: -1 for the top (working) electrode, +1 for the bottom (counter) one.
    electrolyte_level : float
        Grey of the electrolyte next to this electrode; the collector must be brighter.

    Returns
    -------
    float or None
        The Li|collector surface (continuous rows), or None when no collector is in view.
    """
    i0 = _first_electrode_row(start, direction)
    rows = np.arange(i0, -1 if direction < 0 else profile.size, direction)
    if rows.size < 2:
        return None
    s = profile[rows]  # outward from the interface
    # The edge: the steepest rise. The Li|SE step falls outward, the Li|steel step is the
    # largest rise in the profile by far, noise and pores are much smaller.
    k = int(np.argmax(np.diff(s)))  # between s[k] and s[k + 1]
    # Collector level: the rows beyond the edge, skipping the one of partial volume when
    # there are enough of them; median, so a few rows of blur do not pull it down.
    beyond = s[k + 2 : k + 7] if s.size > k + 2 else s[k + 1 :]
    collector = float(np.median(beyond))
    if not collector > electrolyte_level:
        return None
    # Li level: the rows before the edge, skipping the first one (partial volume with the
    # electrolyte) when the Li is thick enough to have a plateau. Li is darker than the
    # electrolyte, so a brighter estimate (thin Li, blur, no Li at all) is capped there.
    before = s[1 : k + 1] if k >= 1 else s[: k + 1]
    li = min(float(np.median(before)), electrolyte_level)
    # The first row past the steepest step at or above half-way (a blurred edge rises over a
    # few rows): the sum below runs a margin beyond it.
    level = 0.5 * (li + collector)
    j = k + 1
    while j < s.size - 1 and s[j] < level:
        j += 1
    # The surface conserves the profile's integral: each row from the interface to a margin
    # past the edge adds the share of its height that is not collector, (c − g)/(c − l).
    # Exact for partial-volume rows (where a half-way crossing interpolated between row
    # centres is off by up to a sixth of a row) and for any blur narrower than the margin;
    # the electrolyte, next to steel almost as dark as Li, counts as ≈ Li, so a blurred
    # Li|SE interface or a stretch of it inside the sum barely moves the result.
    stop = min(s.size, j + 1 + _EDGE_MARGIN_ROWS)
    share = (collector - s[:stop]) / (collector - li)
    inner = rows[0] + (1 if direction < 0 else 0)  # the first row's edge nearest the interface
    thickness = direction * (inner - start) + float(share.sum())
    return float(start + direction * max(0.0, thickness))


#: Rows past the half-way row of the Li|collector edge that the integral runs over.
_EDGE_MARGIN_ROWS = 3


def _electrolyte_level(profile: np.ndarray, top: float, bot: float) -> float:
    """Median grey of the rows between the interfaces, a row clear of each (partial volume)."""
    z0, z1 = int(np.ceil(top + 0.5)), int(np.ceil(bot - 1.5))
    if z1 <= z0:  # thinner than three rows: take whatever lies between
        z0, z1 = int(np.floor(top)), int(np.ceil(bot))
    return float(np.median(profile[z0:z1]))


def _windows(
    shape_yx: tuple[int, int],
    *,
    voxel_um: float,
    window_um: float,
    mask: np.ndarray | None,
    locations: np.ndarray | None,
) -> tuple[np.ndarray, list[tuple[slice, slice, np.ndarray | None]]]:
    """The locations and, per location, its window ``(ys, xs, m)``: ``m`` the mask's voxels
    in it (None: every voxel, as when the mask has none there)."""
    voxel_um = _check_positive(voxel_um, "voxel_um", "µm")
    window_um = _check_positive(window_um, "window_um", "µm")
    w = max(1, round(window_um / voxel_um))
    if locations is None:
        locations = thickness_locations(shape_yx, window_px=w, mask=mask)
    locations = np.asarray(locations, dtype=int).reshape(-1, 2)
    h = w // 2
    windows = []
    for y, x in locations:
        y0, x0 = max(0, y - h), max(0, x - h)
        ys, xs = slice(y0, y0 + w), slice(x0, x0 + w)
        m = None if mask is None else np.asarray(mask)[ys, xs]
        windows.append((ys, xs, m if m is not None and m.any() else None))
    return locations, windows


class WindowProfiles:
    """The thickness windows' mean profiles of a uint8 volume, gathered slab by slab.

    For a pass that reads the volume anyway (the experiment's study pass): the profiles then
    need no read of their own, where :func:`electrode_thickness` reads every window's column
    of the volume (whole Zarr chunks of it). Sums of integers, so the means are bit-identical
    to the float64 means that function takes.

    Parameters
    ----------
    shape : (int, int, int)
        The volume's shape.
    voxel_um, window_um, mask, locations
        As for :func:`electrode_thickness`.
    """

    def __init__(
        self,
        shape: tuple[int, int, int],
        *,
        voxel_um: float,
        window_um: float = 30.0,
        mask: np.ndarray | None = None,
        locations: np.ndarray | None = None,
    ) -> None:
        self.locations, self._windows = _windows(
            tuple(shape[1:]),  # type: ignore[arg-type]
            voxel_um=voxel_um,
            window_um=window_um,
            mask=mask,
            locations=locations,
        )
        self._sums = np.zeros((len(self._windows), shape[0]), dtype=np.int64)
        self._counts = np.zeros(len(self._windows), dtype=np.int64)

    def add(self, slab: np.ndarray, z0: int) -> None:
        """Adds rows ``z0 : z0 + len(slab)`` (uint8) of the volume."""
        for i, (ys, xs, m) in enumerate(self._windows):
            block = slab[:, ys, xs]
            if m is not None:
                block = block[:, m]
            flat = block.reshape(len(block), -1)
            self._sums[i, z0 : z0 + len(slab)] = flat.sum(axis=1, dtype=np.int64)
            self._counts[i] = flat.shape[1]

    def profiles(self) -> np.ndarray:
        """The mean profiles, shape ``(n_locations, nz)``, float64."""
        return self._sums / self._counts[:, None]


def electrode_thickness(
    volume: Any,
    *,
    voxel_um: float,
    interfaces: Sequence[float],
    threshold: float | None = None,
    mask: np.ndarray | None = None,
    window_um: float = 30.0,
    locations: np.ndarray | None = None,
    profiles: np.ndarray | None = None,
) -> pd.DataFrame:
    """Thickness of both Li electrodes at 15 lateral locations.

    Parameters
    ----------
    volume : array_like, shape (nz, ny, nx)
        Grey volume: a reconstruction (attenuation: the collector brighter than the
        electrolyte, brighter than Li), or with ``threshold`` any field where Li is above it
        and what lies beyond the electrode below it (e.g. a Li indicator 0/1). Only the
        windows' columns are read (nothing with ``profiles``).
    voxel_um : float
        Voxel edge in µm.
    interfaces : (float, float)
        ``(top_row, bottom_row)``: the working Li|SE and SE|counter Li interfaces
        (continuous rows, 0 at the top edge of row 0), e.g. from the interface detection.
    threshold : float, optional
        None (default): the outer surface is the edge to the current collector, found per
        location (module docstring). A number: the outer surface is where the profile falls
        through it (Li above, what lies beyond below), the earlier method for a Li indicator
        or a Li/gas edge; it cannot see the Li against argon in an absorption
        reconstruction at 25 keV.
    mask : ndarray of bool, shape (ny, nx), optional
        Pellet cross-section; the windows stay inside it.
    window_um : float
        Edge of each square window, µm; its mean profile averages out Li roughness and noise.
    locations : ndarray of int, shape (n, 2), optional
        Window centres (y, x) in pixels; default :func:`thickness_locations` (3 × 5).
    profiles : ndarray, shape (n, nz), optional
        The windows' mean profiles, already gathered (:class:`WindowProfiles`, with the same
        ``voxel_um``, ``window_um``, ``mask`` and ``locations``); the volume is then not read.

    Returns
    -------
    pandas.DataFrame
        One row per location: ``y``, ``x`` (pixels), ``top_um`` and ``bottom_um`` (working
        and counter electrode thickness), ``top_cut`` and ``bottom_cut`` (True where the
        outer surface was not found before the volume's edge) and ``top_status`` and
        ``bottom_status``: ``"ok"``; ``"no collector in view"`` (collector edge, the
        default: the thickness is NaN); ``"cut"`` (with ``threshold``: the thickness is the
        visible part only, a lower bound). ``df[["top_um", "bottom_um"]].mean()`` is the
        15-location average (NaN locations left out; NaN if none was measured).
    """
    voxel_um = _check_positive(voxel_um, "voxel_um", "µm")
    shape = _check_volume(volume, "volume")
    top, bot = _check_interfaces(interfaces, shape[0])
    locations, windows = _windows(
        shape[1:], voxel_um=voxel_um, window_um=window_um, mask=mask, locations=locations
    )
    if threshold is not None and not np.isfinite(threshold):
        raise ValueError(f"threshold must be a finite grey value or None, got {threshold!r}")
    if profiles is not None and np.shape(profiles) != (len(windows), shape[0]):
        raise ValueError(
            f"profiles must have shape {(len(windows), shape[0])} (one per location), got "
            f"{np.shape(profiles)}"
        )
    rows = []
    for i, ((y, x), (ys, xs, m)) in enumerate(zip(locations, windows, strict=True)):
        if profiles is not None:
            profile = np.asarray(profiles[i], dtype=np.float64)
        else:
            block = np.asarray(volume[:, ys, xs], dtype=np.float64)
            profile = block[:, m].mean(axis=1) if m is not None else block.mean(axis=(1, 2))
        record: dict[str, Any] = {"y": int(y), "x": int(x)}
        if threshold is None:
            se = _electrolyte_level(profile, top, bot)
        for name, start, direction in (("top", top, -1), ("bottom", bot, +1)):
            if threshold is None:
                z = _collector_surface(profile, start, direction, se)
                cut = z is None
                status = STATUS_NO_COLLECTOR if cut else STATUS_OK
            else:
                z, cut = _outer_surface(profile, start, direction, float(threshold))
                status = STATUS_CUT if cut else STATUS_OK
            record[f"{name}_um"] = np.nan if z is None else direction * (z - start) * voxel_um
            record[f"{name}_cut"] = bool(cut)
            record[f"{name}_status"] = status
        rows.append(record)
    return pd.DataFrame(rows, columns=_THICKNESS_COLUMNS)


_THICKNESS_COLUMNS = [
    "y",
    "x",
    "top_um",
    "bottom_um",
    "top_cut",
    "bottom_cut",
    "top_status",
    "bottom_status",
]


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
