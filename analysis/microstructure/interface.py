"""Interfacial intensity maps: the grey value at a Li|SE interface averaged through the sample.

After Dixit, Singh et al. (Fig. 6, S13): "Raw grayscale intensity is traced [over] a
150 × 150 µm² section over at least 500 µm depth. This is normalized to the depth and the
maximum theoretical intensity of an 8-bit image." Bright pixels are dense, attenuating
electrolyte; dark ones X-ray transparent Li, pores or voids, so a gap between electrode and
electrolyte shows as a dark band along the interface, and a porous electrolyte as a dimmer one.

Interpretation
--------------
Volumes are ``(z, y, x)`` with z the cell axis (the applied field, the rotation axis, the
detector rows); the Li|SE interfaces are z-planes, the top one at small z.

* **Window and depth** (``view="section"``, the default). The paper's maps are images with
  30 µm scale bars, labelled "top Li|SE" and "bottom SE|Li" (electrode above electrolyte, then
  electrolyte above electrode): they are *side views* of the interface. The 150 × 150 µm²
  window is therefore a vertical (through-plane) section straddling the interface: 150 µm
  along z centred on the interface row × 150 µm along the in-plane axis ``x``, and the "depth"
  is the line of sight through the sample normal to that section (``y``, ``depth_axis``):
  each map pixel is the grey value averaged over ≥ 500 µm of ``y``. The depth cannot be along
  z: the electrolyte is only ≈ 600 µm thick, so two 500 µm averages from its faces would
  almost coincide and say nothing about either interface.
* ``view="plan"`` is the other reading, offered for comparison: a 150 × 150 µm² window in the
  interface plane ``(y, x)``, averaged over ``depth_um`` along z into the electrolyte from the
  interface (``electrolyte_side``), clipped to the volume.
* **Normalised by depth and by 255**: each pixel is Σ g / (N · 255), the sum of the grey
  values on the 0–255 scale along the depth divided by the number N of voxels summed (the
  depth in voxels; with a ``mask``, only voxels inside the sample count) and by the maximum
  of an 8-bit image, i.e. the mean grey value / 255, in [0, 1]. Normalising by N rather than by
  the depth in µm makes the value independent of the voxel size.
* **Grey scale**: uint8 volumes are used as they are (the paper's "raw grayscale" is the
  8-bit export of the reconstruction). Any other dtype (float reconstructions, uint16) is
  mapped linearly onto 0–255 with ``grey_range=(lo, hi)`` → (0, 255), clipped, without rounding:
  the same fixed range for every scan of a study (like the binarisation threshold), so maps
  of successive scans compare. :func:`grey_range_from_percentiles` gives a range from one
  scan (e.g. the pristine one).
* **Too small a volume**: the window and the depth are clipped to what the volume (and the
  mask) holds, and the depth actually used is recorded (:attr:`InterfaceIntensity.depth_um`,
  ``depth_clipped``); nothing is padded.

The window is read as one sub-array per chunk of ``chunk_rows`` rows, so any array
sliceable along z (numpy, zarr, h5py) works and memory stays at the window's size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

__all__ = [
    "InterfaceIntensity",
    "grey_range_from_percentiles",
    "interface_intensity_table",
    "interfacial_intensity_map",
    "interfacial_intensity_maps",
    "plot_interfacial_intensity_maps",
    "to_grey255",
]

View = Literal["section", "plan"]
Side = Literal["below", "above"]


@dataclass(frozen=True)
class InterfaceIntensity:
    """An interfacial intensity map (see :func:`interfacial_intensity_map`).

    Attributes
    ----------
    name : str
        E.g. ``"top Li|SE"``.
    image : ndarray of float, 2-D
        Mean grey value / 255 per pixel, in [0, 1]; NaN where no voxel was counted.
        ``view="section"``: rows z, columns the lateral axis; ``view="plan"``: (y, x).
    view : {"section", "plan"}
        Which reading of the paper (module docstring).
    interface_z : float
        Interface position (continuous rows, 0 at the top edge of row 0).
    electrolyte_side : {"below", "above"}
        Side of the interface (in z) where the electrolyte is.
    row_axis, col_axis, depth_axis : str
        Volume axes of the image rows, image columns, and the averaged depth.
    row_range, col_range, depth_range : (int, int)
        Voxel index ranges ``[start, stop)`` read along each of those axes.
    voxel_um : float
        Voxel edge in µm.
    counted : ndarray of int, 2-D
        Voxels averaged per pixel (N of the normalisation).
    depth_requested_um : float
        The depth asked for.
    window_clipped : bool
        True if the window was cut by the volume's edges.
    """

    name: str
    image: np.ndarray
    view: str
    interface_z: float
    electrolyte_side: str
    row_axis: str
    col_axis: str
    depth_axis: str
    row_range: tuple[int, int]
    col_range: tuple[int, int]
    depth_range: tuple[int, int]
    voxel_um: float
    counted: np.ndarray
    depth_requested_um: float
    window_clipped: bool

    @property
    def depth_um(self) -> float:
        """Depth averaged, in µm: the largest number of voxels counted at a pixel × voxel."""
        return float(self.counted.max(initial=0)) * self.voxel_um

    @property
    def depth_clipped(self) -> bool:
        """True if less than the requested depth was available."""
        return self.depth_um < self.depth_requested_um - 0.5 * self.voxel_um

    @property
    def extent_um(self) -> tuple[float, float, float, float]:
        """``imshow`` extent (left, right, bottom, top) in µm.

        Columns from the window's first column; rows relative to the interface for a section
        (z downward: negative above the interface), from the window's first row in plan.
        """
        r0, r1 = self.row_range
        c0, c1 = self.col_range
        v = self.voxel_um
        if self.view == "section":
            top, bottom = (r0 - self.interface_z) * v, (r1 - self.interface_z) * v
        else:
            top, bottom = 0.0, (r1 - r0) * v
        return 0.0, (c1 - c0) * v, bottom, top

    def stats(self) -> dict[str, Any]:
        """Summary of the map (a row of :func:`interface_intensity_table`)."""
        img = self.image[np.isfinite(self.image)]
        out: dict[str, Any] = {
            "name": self.name,
            "view": self.view,
            "interface_z": self.interface_z,
            "depth_um": self.depth_um,
            "depth_requested_um": self.depth_requested_um,
            "depth_clipped": self.depth_clipped,
            "window_um": (
                (self.row_range[1] - self.row_range[0]) * self.voxel_um,
                (self.col_range[1] - self.col_range[0]) * self.voxel_um,
            ),
            "window_clipped": self.window_clipped,
            "mean": float(img.mean()) if img.size else np.nan,
            "std": float(img.std()) if img.size else np.nan,
            "min": float(img.min()) if img.size else np.nan,
            "max": float(img.max()) if img.size else np.nan,
        }
        if self.view == "section":
            # Split the side view at the interface: rows whose centres lie below it, above it.
            centres = np.arange(*self.row_range) + 0.5
            below = centres > self.interface_z
            se = below if self.electrolyte_side == "below" else ~below
            out["electrolyte_mean"] = _nanmean(self.image[se])
            out["electrode_mean"] = _nanmean(self.image[~se])
            # The electrolyte's first row at the interface: a void or a contact gap between
            # electrode and electrolyte darkens it below electrolyte_mean.
            first = np.flatnonzero(se)
            if first.size:
                k = first[0] if self.electrolyte_side == "below" else first[-1]
                out["first_electrolyte_row_mean"] = _nanmean(self.image[k])
            else:
                out["first_electrolyte_row_mean"] = np.nan
        return out


def _nanmean(a: np.ndarray) -> float:
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else np.nan


def to_grey255(values: np.ndarray, *, grey_range: tuple[float, float] | None = None) -> np.ndarray:
    """Grey values on the 8-bit scale 0–255 (float64, not rounded).

    Parameters
    ----------
    values : ndarray
        Raw grey values: uint8 as they are, anything else through ``grey_range``.
    grey_range : (lo, hi), optional
        Grey values mapped to 0 and 255 (linear, clipped). Required unless ``values`` is
        uint8; with uint8 it overrides the identity.

    Returns
    -------
    ndarray of float64
    """
    values = np.asarray(values)
    if grey_range is None:
        if values.dtype == np.uint8:
            return values.astype(np.float64)
        raise ValueError(
            f"grey values of dtype {values.dtype} need grey_range=(lo, hi), the study's fixed "
            "grey range mapped onto 0–255 (the same for every scan), e.g. "
            "grey_range_from_percentiles(pristine_volume)"
        )
    lo, hi = (float(g) for g in grey_range)
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise ValueError(f"grey_range must be finite (lo, hi) with hi > lo, got {grey_range!r}")
    out = (values.astype(np.float64) - lo) * (255.0 / (hi - lo))
    return np.clip(out, 0.0, 255.0, out=out)


def grey_range_from_percentiles(
    grey: Any,
    *,
    low: float = 0.1,
    high: float = 99.9,
    max_rows: int = 16,
) -> tuple[float, float]:
    """A grey range for :func:`to_grey255` from percentiles of a few evenly spaced rows.

    Parameters
    ----------
    grey : array-like, shape (nz, ny, nx)
        Reconstruction, sliceable along z.
    low, high : float
        Percentiles (0–100) mapped to 0 and 255.
    max_rows : int
        Rows sampled (bounded memory on a full volume).

    Returns
    -------
    (float, float)
        Use the same range for every scan of a study.
    """
    if not 0 <= low < high <= 100:
        raise ValueError(f"need 0 <= low < high <= 100, got low={low}, high={high}")
    nz = int(np.shape(grey)[0]) if hasattr(grey, "shape") else len(grey)
    picks = np.unique(np.linspace(0, nz - 1, min(nz, max(1, int(max_rows)))).round().astype(int))
    sample = np.concatenate([np.asarray(grey[int(z)], dtype=np.float64).ravel() for z in picks])
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        raise ValueError("grey holds no finite value in the sampled rows")
    lo, hi = np.percentile(sample, [low, high])
    if not hi > lo:
        hi = lo + 1.0  # a constant volume: any non-empty range maps it to 0
    return float(lo), float(hi)


def _span(centre: float, width: int, n: int) -> tuple[int, int, bool]:
    """``width`` voxels centred on continuous position ``centre``, clipped to ``[0, n)``."""
    a = math.floor(centre - width / 2 + 0.5)
    b = a + width
    clipped = a < 0 or b > n
    return max(0, a), min(n, b), clipped


@dataclass(frozen=True)
class _Sums:
    """Grey values (0–255) summed along the depth per map pixel, and where they came from."""

    total: np.ndarray
    counted: np.ndarray
    row_range: tuple[int, int]
    col_range: tuple[int, int]
    depth_range: tuple[int, int]
    row_axis: str
    col_axis: str
    depth_axis: str
    window_clipped: bool


def _check_map_args(
    shape: tuple[int, ...],
    interface_z: float,
    voxel_um: float,
    window_um: float,
    depth_um: float,
    view: str,
    depth_axis: str,
) -> float:
    """Refuse bad arguments of :func:`interfacial_intensity_map`; the interface's z."""
    if len(shape) != 3:
        raise ValueError(f"grey must be a 3-D (z, y, x) volume, got shape {shape}")
    if not (np.isfinite(voxel_um) and voxel_um > 0):
        raise ValueError(f"voxel_um must be a positive voxel edge in µm, got {voxel_um!r}")
    for label, value in (("window_um", window_um), ("depth_um", depth_um)):
        if not (np.isfinite(value) and value >= voxel_um):
            raise ValueError(f"{label} must be at least one voxel ({voxel_um} µm), got {value!r}")
    if view not in ("section", "plan"):
        raise ValueError(f"view must be 'section' or 'plan', got {view!r}")
    if depth_axis not in ("y", "x"):
        raise ValueError(f"depth_axis must be 'y' or 'x' (an in-plane axis), got {depth_axis!r}")
    z_if = float(interface_z)
    nz = int(shape[0])
    if not 0 <= z_if <= nz:
        raise ValueError(f"interface_z={interface_z!r} is outside the volume's rows 0..{nz}")
    return z_if


def _check_mask(mask: np.ndarray | None, ny: int, nx: int) -> np.ndarray | None:
    """The sample's cross-section as booleans, refused unless it is ``(ny, nx)``."""
    if mask is None:
        return None
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (ny, nx):
        raise ValueError(f"mask must be the (ny, nx) = {(ny, nx)} cross-section, got {mask.shape}")
    return mask


def _section_sums(
    grey: Any,
    z_if: float,
    centre_px: tuple[float, float],
    window: int,
    depth: int,
    depth_axis: str,
    grey_range: tuple[float, float] | None,
    mask: np.ndarray | None,
    chunk_rows: int,
) -> _Sums:
    """Side view: rows z centred on the interface × the lateral axis, summed along the depth."""
    nz, ny, nx = (int(s) for s in grey.shape)
    cy_px, cx_px = centre_px
    y_span, x_span = _span(cy_px, window, ny), _span(cx_px, window, nx)
    z_span = _span(z_if, window, nz)
    if depth_axis == "y":
        d_span, c_span = _span(cy_px, depth, ny), x_span
    else:
        d_span, c_span = _span(cx_px, depth, nx), y_span
    rows_range = z_span[:2]
    ys = slice(*d_span[:2]) if depth_axis == "y" else slice(*y_span[:2])
    xs = slice(*x_span[:2]) if depth_axis == "y" else slice(*d_span[:2])
    m = mask[ys, xs] if mask is not None else None
    d_ax = 1 if depth_axis == "y" else 2  # axis of the depth in a (z, y, x) chunk
    sums, counts = [], []
    for a in range(rows_range[0], rows_range[1], chunk_rows):
        b = min(rows_range[1], a + chunk_rows)
        g = to_grey255(np.asarray(grey[a:b, ys, xs]), grey_range=grey_range)
        if m is not None:
            g = g * m  # voxels outside the sample add nothing ...
            n = np.broadcast_to(m.sum(axis=d_ax - 1), (b - a, g.shape[3 - d_ax]))
        else:
            n = np.full((b - a, g.shape[3 - d_ax]), g.shape[d_ax])
        sums.append(g.sum(axis=d_ax))
        counts.append(n)  # ... and are not counted in N
    return _Sums(
        total=np.concatenate(sums),
        counted=np.concatenate(counts).astype(np.int64),
        row_range=rows_range,
        col_range=c_span[:2],
        depth_range=d_span[:2],
        row_axis="z",
        col_axis="x" if depth_axis == "y" else "y",
        depth_axis=depth_axis,
        window_clipped=z_span[2] or c_span[2],
    )


def _plan_sums(
    grey: Any,
    z_if: float,
    centre_px: tuple[float, float],
    window: int,
    depth: int,
    electrolyte_side: str,
    grey_range: tuple[float, float] | None,
    mask: np.ndarray | None,
    chunk_rows: int,
) -> _Sums:
    """Plan view: the window in the interface plane, summed along z into the electrolyte."""
    nz, ny, nx = (int(s) for s in grey.shape)
    y_span, x_span = _span(centre_px[0], window, ny), _span(centre_px[1], window, nx)
    # From the interface into the electrolyte, as deep as the volume allows.
    if electrolyte_side == "below":
        z0 = math.ceil(z_if - 0.5)
        d_span = (z0, min(nz, z0 + depth), z0 + depth > nz)
    else:
        z1 = math.ceil(z_if - 0.5)
        d_span = (max(0, z1 - depth), z1, z1 - depth < 0)
    depth_range = d_span[:2]
    ys, xs = slice(*y_span[:2]), slice(*x_span[:2])
    m = mask[ys, xs] if mask is not None else None
    total = np.zeros((ys.stop - ys.start, xs.stop - xs.start))
    for a in range(depth_range[0], depth_range[1], chunk_rows):
        b = min(depth_range[1], a + chunk_rows)
        total += to_grey255(np.asarray(grey[a:b, ys, xs]), grey_range=grey_range).sum(axis=0)
    counted = np.full(total.shape, depth_range[1] - depth_range[0], dtype=np.int64)
    if m is not None:
        total, counted = total * m, counted * m
    return _Sums(
        total=total,
        counted=counted,
        row_range=y_span[:2],
        col_range=x_span[:2],
        depth_range=depth_range,
        row_axis="y",
        col_axis="x",
        depth_axis="z",
        window_clipped=y_span[2] or x_span[2],
    )


def interfacial_intensity_map(
    grey: Any,
    interface_z: float,
    *,
    voxel_um: float,
    window_um: float = 150.0,
    depth_um: float = 500.0,
    view: View = "section",
    depth_axis: Literal["y", "x"] = "y",
    center_um: tuple[float, float] | None = None,
    electrolyte_side: Side | None = None,
    grey_range: tuple[float, float] | None = None,
    mask: np.ndarray | None = None,
    name: str | None = None,
    chunk_rows: int = 64,
) -> InterfaceIntensity:
    """Grey value averaged over the depth in a window at one Li|SE interface, / 255.

    Parameters
    ----------
    grey : array-like, shape (nz, ny, nx)
        The raw reconstruction (any dtype; see ``grey_range``), sliceable along z.
    interface_z : float
        Interface position along z (continuous rows, 0 at the top edge of row 0).
    voxel_um : float
        Voxel edge in µm.
    window_um : float
        Edge of the square window (150 µm in the paper).
    depth_um : float
        Depth averaged (≥ 500 µm in the paper); clipped to the volume and recorded.
    view : {"section", "plan"}
        ``"section"``: a side view, rows z (window centred on the interface) × the lateral
        axis, averaged along ``depth_axis``. ``"plan"``: the interface plane (y, x), averaged
        along z into the electrolyte.
    depth_axis : {"y", "x"}
        Line of sight of the section view; the other in-plane axis is the map's columns.
    center_um : (float, float), optional
        Centre of the window and of the depth span in the plane, ``(y, x)`` in µm from voxel
        0's edge. Default: the middle of the volume (the pellet axis).
    electrolyte_side : {"below", "above"}, optional
        Where the electrolyte is in z: "below" for the top Li|SE interface, "above" for the
        bottom SE|Li one. Default: "below" if the interface is in the upper half of the volume.
    grey_range : (lo, hi), optional
        Grey values mapped to 0 and 255 (required unless ``grey`` is uint8).
    mask : ndarray of bool, shape (ny, nx), optional
        The sample's cross-section: only voxels inside count, and N counts them (so air
        beside a narrow pellet does not darken the map).
    name : str, optional
        Label; default "top Li|SE" or "bottom SE|Li" from ``electrolyte_side``.
    chunk_rows : int
        Rows read at a time.

    Returns
    -------
    InterfaceIntensity
    """
    shape = tuple(getattr(grey, "shape", ()))
    z_if = _check_map_args(shape, interface_z, voxel_um, window_um, depth_um, view, depth_axis)
    nz, ny, nx = (int(s) for s in shape)
    if electrolyte_side is None:
        electrolyte_side = "below" if z_if < nz / 2 else "above"
    if electrolyte_side not in ("below", "above"):
        raise ValueError(f"electrolyte_side must be 'below' or 'above', got {electrolyte_side!r}")
    if grey_range is None and np.dtype(getattr(grey, "dtype", np.float64)) != np.uint8:
        to_grey255(np.zeros(1, dtype=getattr(grey, "dtype", np.float64)))  # raises the fix
    mask = _check_mask(mask, ny, nx)
    if name is None:
        name = "top Li|SE" if electrolyte_side == "below" else "bottom SE|Li"
    cy, cx = center_um if center_um is not None else (ny * voxel_um / 2, nx * voxel_um / 2)
    centre_px = (cy / voxel_um, cx / voxel_um)
    w = max(1, round(window_um / voxel_um))
    nd = max(1, round(depth_um / voxel_um))
    if view == "section":
        sums = _section_sums(
            grey, z_if, centre_px, w, nd, depth_axis, grey_range, mask, int(chunk_rows)
        )
    else:
        sums = _plan_sums(
            grey, z_if, centre_px, w, nd, electrolyte_side, grey_range, mask, int(chunk_rows)
        )

    image = np.full(sums.total.shape, np.nan)
    # Normalised by depth (N voxels summed at the pixel) and by 255, the 8-bit maximum.
    np.divide(sums.total, sums.counted * 255.0, out=image, where=sums.counted > 0)
    return InterfaceIntensity(
        name=name,
        image=image,
        view=view,
        interface_z=z_if,
        electrolyte_side=electrolyte_side,
        row_axis=sums.row_axis,
        col_axis=sums.col_axis,
        depth_axis=sums.depth_axis,
        row_range=(int(sums.row_range[0]), int(sums.row_range[1])),
        col_range=(int(sums.col_range[0]), int(sums.col_range[1])),
        depth_range=(int(sums.depth_range[0]), int(sums.depth_range[1])),
        voxel_um=float(voxel_um),
        counted=sums.counted,
        depth_requested_um=float(depth_um),
        window_clipped=bool(sums.window_clipped),
    )


def interfacial_intensity_maps(
    grey: Any,
    interfaces_z: Sequence[float],
    *,
    voxel_um: float,
    **kwargs: Any,
) -> list[InterfaceIntensity]:
    """Maps at the top Li|SE and the bottom SE|Li interface (two z positions, top first).

    Keyword arguments go to :func:`interfacial_intensity_map`; the electrolyte lies below the
    first interface and above the second.
    """
    if len(interfaces_z) != 2 or not float(interfaces_z[0]) < float(interfaces_z[1]):
        raise ValueError(
            "interfaces_z must be (top, bottom) z positions with top < bottom, "
            f"got {interfaces_z!r}"
        )
    top, bottom = interfaces_z
    return [
        interfacial_intensity_map(
            grey, top, voxel_um=voxel_um, electrolyte_side="below", name="top Li|SE", **kwargs
        ),
        interfacial_intensity_map(
            grey, bottom, voxel_um=voxel_um, electrolyte_side="above", name="bottom SE|Li", **kwargs
        ),
    ]


def interface_intensity_table(maps: Sequence[InterfaceIntensity]) -> pd.DataFrame:
    """One row of :meth:`InterfaceIntensity.stats` per map."""
    return pd.DataFrame([m.stats() for m in maps])


def plot_interfacial_intensity_maps(
    maps: Sequence[InterfaceIntensity],
    *,
    vmin: float = 0.0,
    vmax: float = 1.0,
    cmap: str = "gray",
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """The maps side by side as in Fig. 6b–c: µm axes, one colourbar (grey / 255).

    Parameters
    ----------
    maps : sequence of InterfaceIntensity
        From :func:`interfacial_intensity_maps`.
    vmin, vmax : float
        Colour limits of the normalised intensity (default the full 0–1 scale, so maps of
        different samples and scans compare).
    cmap : str
        Colormap.
    figsize : (float, float), optional
        Figure size in inches.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if len(maps) == 0:
        raise ValueError("maps is empty: pass the output of interfacial_intensity_maps")
    fig = Figure(figsize=figsize or (3.4 * len(maps) + 1.0, 3.6), layout="constrained")
    axes = fig.subplots(1, len(maps), squeeze=False)[0]
    im = None
    for ax, m in zip(axes, maps, strict=True):
        im = ax.imshow(m.image, cmap=cmap, vmin=vmin, vmax=vmax, extent=m.extent_um)
        if m.view == "section":
            ax.axhline(0.0, color="C1", lw=0.6, ls="--")  # the interface
            ax.set_ylabel("z from interface (µm)")
        else:
            ax.set_ylabel(f"{m.row_axis} (µm)")
        ax.set_xlabel(f"{m.col_axis} (µm)")
        ax.set_title(f"{m.name}, {m.depth_um:.0f} µm deep ({m.depth_axis})", fontsize="medium")
    fig.colorbar(im, ax=list(axes), label="normalised intensity (grey / 255)", shrink=0.9)
    return fig
