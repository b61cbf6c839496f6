"""Cracks of the virtual pellet: from a :class:`~insitu.simulators.cell.state.CrackState` to voxels.

Shape of one crack (the paper's failure mode, Figs 3–7):

* It is a sheet that starts as an **edge chip** at the interface of its origin electrode (the
  stripping one), at the nucleus near the pellet rim (radius fraction, angle of the state).
* In-plane it follows a **path** of length ``L`` that starts along the state's growth
  direction (inwards from the rim) and turns towards higher local porosity (up the gradient
  of the heterogeneity field averaged through the thickness), at most 60° off that
  direction, staying inside the pellet.
* Through the thickness it reaches depth ``D`` (depth fraction × electrolyte thickness); its
  lateral extent shrinks linearly with depth (a triangle ``s/D + a/L ≤ 1`` in depth ``s`` and
  path arc ``a``), so its area is ½·D·L as the cell's wedge volume assumes.
* Its opening (empty wedge plus Li) tapers from the mouth to the tip, at least one voxel.
* **Li** fills the part nearest the nucleus (the oldest, widest part, fed from the origin
  electrode): the sub-triangle ``s/D + a/L ≤ √f`` with ``f`` the state's Li fraction of the
  transparent crack volume, so the Li voxels follow plating and stripping.

Every rule is local in z, so a slab of rows renders the same as the rows of the whole volume.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..cell.state import CrackState
from .phases import Phase

__all__ = ["CrackRaster", "crack_path", "rasterise_path", "render_crack_rows"]

_MAX_TURN_RAD = 0.5  # per step: cracks bend, they do not zig-zag
_STEER_GAIN = 3.0  # how strongly the path turns up the porosity gradient
# Steering may bend a crack off its growth direction by at most this much. Without the bound
# the heading random-walked on the 40 µm porosity modulation: at beamline size every crack
# wandered along the rim where it nucleated (closest approach 1.05 mm from the axis) and
# none ever entered the 1.4 mm field of view, where the paper sees them grow.
_MAX_DEVIATION_RAD = np.pi / 3


def crack_path(
    crack: CrackState,
    radius_m: float,
    length_m: float,
    step_m: float,
    field: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """In-plane path of a crack, steered towards higher local porosity.

    Parameters
    ----------
    crack : CrackState
        Nucleus position (radius fraction, angle) and initial direction.
    radius_m : float
        Pellet radius in the volume's geometry.
    length_m : float
        Path length in the volume's geometry.
    step_m : float
        Step of the path.
    field : callable
        ``field(y, x)``: the through-thickness mean of the porosity modulation (metres from
        the pellet axis).

    Returns
    -------
    points : ndarray, shape (n, 2)
        (y, x) in metres from the pellet axis.
    arc : ndarray, shape (n,)
        Arc length at each point.
    """
    r0 = min(crack.radius_fraction, 0.999) * radius_m
    p = np.array([r0 * np.sin(crack.angle_rad), r0 * np.cos(crack.angle_rad)])
    heading = crack.direction_rad
    n = max(1, int(np.ceil(length_m / step_m)))
    step = length_m / n
    points = [p.copy()]
    for _ in range(n):
        # Gradient of the porosity modulation by central differences at the step scale.
        h = step
        gy = (field(p[0] + h, p[1]) - field(p[0] - h, p[1])) / (2 * h)
        gx = (field(p[0], p[1] + h) - field(p[0], p[1] - h)) / (2 * h)
        grad = np.array([float(gy), float(gx)]) * step
        # Turn by the gradient's component across the heading (up-hill), limited per step.
        across = -np.sin(heading) * grad[1] + np.cos(heading) * grad[0]
        heading += float(np.clip(_STEER_GAIN * across, -_MAX_TURN_RAD, _MAX_TURN_RAD))
        off = (heading - crack.direction_rad + np.pi) % (2 * np.pi) - np.pi
        heading = crack.direction_rad + float(np.clip(off, -_MAX_DEVIATION_RAD, _MAX_DEVIATION_RAD))
        nxt = p + step * np.array([np.sin(heading), np.cos(heading)])
        if np.hypot(*nxt) > 0.995 * radius_m:
            # At the rim the crack deflects inwards rather than leaving the pellet.
            heading = float(np.arctan2(-p[0], -p[1]))
            nxt = p + step * np.array([np.sin(heading), np.cos(heading)])
        p = nxt
        points.append(p.copy())
    pts = np.array(points)
    arc = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(pts, axis=0).T))])
    return pts, arc


@dataclass(frozen=True)
class CrackRaster:
    """Distance to a crack path and arc length of the nearest path point, in a pixel box.

    Attributes
    ----------
    y0, x0 : int
        Corner of the box in the grid (pixels).
    dist_vox : ndarray of float32
        In-plane distance (voxels) of each pixel to the rasterised path.
    arc_m : ndarray of float32
        Arc length of the nearest path pixel.
    """

    y0: int
    x0: int
    dist_vox: np.ndarray
    arc_m: np.ndarray


def rasterise_path(
    points: np.ndarray,
    arc: np.ndarray,
    shape_yx: tuple[int, int],
    voxel_m: float,
    margin_vox: int,
) -> CrackRaster | None:
    """Rasterise a path (metres from the grid's centre axis) into a box of the grid.

    Returns None when the path passes nowhere within ``margin_vox`` of the grid.
    """
    ny, nx = shape_yx
    # Dense resampling (half a voxel) so the rasterised line has no gaps.
    n = max(2, int(np.ceil(arc[-1] / (0.5 * voxel_m))) + 1)
    a = np.linspace(0.0, arc[-1], n)
    py = np.interp(a, arc, points[:, 0]) / voxel_m + ny / 2.0
    px = np.interp(a, arc, points[:, 1]) / voxel_m + nx / 2.0
    iy, ix = np.floor(py).astype(int), np.floor(px).astype(int)
    y0 = max(0, int(iy.min()) - margin_vox)
    y1 = min(ny, int(iy.max()) + margin_vox + 1)
    x0 = max(0, int(ix.min()) - margin_vox)
    x1 = min(nx, int(ix.max()) + margin_vox + 1)
    if y1 <= y0 or x1 <= x0:
        return None
    # Path points beyond the margin cannot be nearest to any pixel within reach: drop them.
    keep = (iy >= y0 - margin_vox) & (iy < y1 + margin_vox)
    keep &= (ix >= x0 - margin_vox) & (ix < x1 + margin_vox)
    if not keep.any():
        return None
    by, bx = y0 - margin_vox, x0 - margin_vox
    shape = (y1 - y0 + 2 * margin_vox, x1 - x0 + 2 * margin_vox)
    line = np.ones(shape, dtype=bool)
    arc_img = np.zeros(shape, dtype=np.float32)
    # Later points overwrite earlier ones: the arc of a pixel is that of its last visit.
    line[iy[keep] - by, ix[keep] - bx] = False
    arc_img[iy[keep] - by, ix[keep] - bx] = a[keep]
    dist, (jy, jx) = ndimage.distance_transform_edt(line, return_indices=True)
    sl = (slice(margin_vox, margin_vox + y1 - y0), slice(margin_vox, margin_vox + x1 - x0))
    return CrackRaster(
        y0=y0,
        x0=x0,
        dist_vox=dist[sl].astype(np.float32),
        arc_m=arc_img[jy, jx][sl],
    )


def render_crack_rows(
    out: np.ndarray,
    depth_s_m: np.ndarray,
    raster: CrackRaster,
    depth_m: float,
    length_m: float,
    mouth_opening_m: float,
    li_fraction: float,
    voxel_m: float,
    inside: np.ndarray,
) -> tuple[int, int]:
    """Write CRACK / CRACK_LITHIUM into the rows of ``out`` that the crack reaches.

    Parameters
    ----------
    out : ndarray of uint8, shape (n, ny, nx)
        Rows of the volume, modified in place.
    depth_s_m : ndarray, shape (n,)
        Depth of each row's centre below the origin interface (negative or NaN: not in the
        electrolyte on the crack's side).
    raster : CrackRaster
        The crack's in-plane distance/arc maps.
    depth_m, length_m : float
        Crack depth D and path length L in the volume's geometry.
    mouth_opening_m : float
        Transparent opening at the mouth (tapers linearly to the tip).
    li_fraction : float
        Li fraction f of the transparent crack volume.
    voxel_m : float
        Voxel size.
    inside : ndarray of bool, shape (ny, nx)
        Pellet cross-section (cracks stay inside it).

    Returns
    -------
    (int, int)
        Voxels written as crack (CRACK or CRACK_LITHIUM) and as CRACK_LITHIUM.
    """
    n_crack = n_li = 0
    if depth_m <= 0.0 or length_m <= 0.0:
        return n_crack, n_li
    h, w = raster.dist_vox.shape
    box = (slice(raster.y0, raster.y0 + h), slice(raster.x0, raster.x0 + w))
    inside_box = inside[box]
    li_key = np.sqrt(np.clip(li_fraction, 0.0, 1.0))
    for i, s in enumerate(depth_s_m):
        if not 0.0 <= s < depth_m:
            continue
        u = s / depth_m
        thickness_vox = max(1.0, mouth_opening_m * (1.0 - u) / voxel_m)
        key = u + raster.arc_m / length_m
        sheet = (raster.dist_vox <= 0.5 * (thickness_vox - 1.0) + 1e-6) & (key <= 1.0)
        sheet &= inside_box
        if not sheet.any():
            continue
        li = sheet & (key <= li_key)
        row = out[i][box]
        row[sheet] = Phase.CRACK
        row[li] = Phase.CRACK_LITHIUM
        n_crack += int(np.count_nonzero(sheet))
        n_li += int(np.count_nonzero(li))
    return n_crack, n_li
