"""Porosity-factor maps: local porosity of cubic sub-volumes relative to the mean porosity.

After Dixit, Singh et al. (Fig. 5, S10–S12): the binarised electrolyte is cut into cubes of
30 × 30 × 30 µm³ (also 60 and 120 µm); each cube's porosity Φ is compared with the mean
porosity Φ₀ through the *porosity factor*

    d = Φ / Φ₀ − 1,

so d = 0 is the average microstructure, d > 0 a locally more porous region and d < 0 a
denser one. The factors are mapped on sections of the cube grid and summarised per section
(mean, median, standard deviation, minimum, maximum: Fig. S10 plots ≈ 40 sections of
≈ 750 × 500 × 30 µm³, i.e. ≈ 24 × 30 factors each).

Geometry and interpretation
---------------------------
Volumes are ``(z, y, x)`` with z the cell axis: the stack axis, the rotation axis and the
detector rows at the beamline, and the direction of the applied electric field (the Li
electrodes lie above and below the electrolyte in z, their interfaces are z-planes).

* **In-plane** sections are "normal to the applied electric field … the horizontal cross
  section of the pellet": one map of shape ``(y, x)`` per layer of cubes along z.
* **Through-plane** sections are "parallel to the applied electric field … the vertical
  cross section": one map of shape ``(z, x)`` per layer of cubes along y (``axis="y"``), or
  ``(z, y)`` per layer along x (``axis="x"``). A section is one cube thick (30 µm for the
  paper's 750 × 500 × 30 µm³ sections).
* **Φ₀** is "the mean porosity calculated on a binarized dataset": the pore fraction of the
  whole analysed region (the electrolyte rows inside the region mask), *including* voxels the
  cube grid leaves out, so that Φ₀ is the pellet's porosity and does not change with the
  cube size. Pass ``phi0=`` to use a study-wide value (e.g. from the porosity analysis).
* **Binary or grey-scale**: a binarised volume gives Φ as a pore-voxel fraction (Fig. 5,
  S10); a floating-point volume is read as per-voxel pore fractions, the paper's grey-scale
  variant "to remove errors from the binarization process" (Fig. S11–S12).

The remainder
-------------
A region is rarely a whole number of cubes. The remainder is never zero-padded (a padded cube
would read as dense electrolyte and bias d low); instead:

* ``remainder="drop"`` (default): only whole cubes are mapped; the rows and columns left over
  are listed in :attr:`PorosityFactor.dropped` (axis, voxel range, µm), so the reader knows
  which slab of the pellet is missing from the maps. ``align="center"`` splits the leftover
  between both ends of each axis, ``"start"`` leaves it at the far end.
* ``remainder="partial"``: the leftover becomes a last, thinner cube along each axis, whose Φ
  is its own pore count over its own voxel count; such cubes are flagged in
  :attr:`PorosityFactor.partial`, drawn in the maps at their true size, and excluded from the
  section statistics unless ``include_partial=True`` (their Φ is noisier).

Cubes only partly inside the region mask (the pellet's edge, a crack excluded from the mask)
are counted only if their coverage is at least ``min_coverage`` (default 1: whole cubes only);
their Φ is then taken over their in-region voxels.

Memory
------
The pore volume is read slab by slab along z (``chunk_rows`` rows at a time) from any array
that supports ``arr[z0:z1]`` (numpy, zarr, h5py, a memory map), and reduced at once to
per-column pore counts, so memory is ``chunk_rows × ny × nx`` bytes plus a few ``(ny, nx)``
count planes, whatever the cube size. Measured on 2 shared cores: the 857 electrolyte rows of
the 1143 × 2000 × 2000 beamline volume (3.4 G voxels, uint8 0/1) in ≈ 4.5 s at 30 and at
120 µm, ≈ 0.15 GiB above the interpreter's baseline (``chunk_rows=32``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

__all__ = [
    "PorosityFactor",
    "plot_porosity_factor_maps",
    "plot_porosity_factor_stats",
    "porosity_factor",
    "section_stats",
]

_AXES = ("z", "y", "x")
Orientation = Literal["in-plane", "through-plane"]


@dataclass(frozen=True)
class PorosityFactor:
    """Cube porosities and porosity factors on a block grid (see :func:`porosity_factor`).

    Attributes
    ----------
    phi : ndarray, shape (nbz, nby, nbx)
        Porosity Φ of each cube over its in-region voxels; NaN where the cube is not counted
        (coverage below ``min_coverage``).
    d : ndarray, shape (nbz, nby, nbx)
        Porosity factor Φ/Φ₀ − 1; NaN where ``phi`` is.
    coverage : ndarray, shape (nbz, nby, nbx)
        Fraction of the cube's voxels inside the region.
    partial : ndarray of bool, shape (nbz, nby, nbx)
        True for cubes thinner than ``block_voxels`` along some axis (``remainder="partial"``).
    phi0 : float
        Mean porosity Φ₀ used for ``d``.
    voxel_um : float
        Voxel edge in µm.
    block_voxels : int
        Cube edge in voxels (``block_um`` rounded to whole voxels).
    edges : tuple of three int arrays
        Voxel edges of the cubes along z, y and x, in the volume's own indices (cube ``i``
        along an axis spans ``edges[a][i]:edges[a][i + 1]``).
    dropped : pandas.DataFrame
        Slabs of the region left out of the grid (``remainder="drop"``): columns ``axis``,
        ``start``, ``stop`` (voxel indices), ``n_voxels``, ``thickness_um``.
    region_voxels : int
        Voxels of the analysed region (the denominator of the default Φ₀).
    region_pores : int
        Pore voxels of the analysed region (the sum of the pore fractions for a float
        volume).
    """

    phi: np.ndarray
    d: np.ndarray
    coverage: np.ndarray
    partial: np.ndarray
    phi0: float
    voxel_um: float
    block_voxels: int
    edges: tuple[np.ndarray, np.ndarray, np.ndarray]
    dropped: pd.DataFrame
    region_voxels: int
    region_pores: float

    @property
    def block_um(self) -> float:
        """Cube edge actually used, in µm (``block_voxels × voxel_um``)."""
        return self.block_voxels * self.voxel_um

    @property
    def shape(self) -> tuple[int, int, int]:
        """Number of cubes along (z, y, x)."""
        return self.phi.shape  # type: ignore[return-value]

    def edges_um(self, axis: str) -> np.ndarray:
        """Cube edges along ``axis`` (``"z"``, ``"y"`` or ``"x"``) in µm from voxel 0's edge."""
        return self.edges[_axis_index(axis)] * self.voxel_um

    def centers_um(self, axis: str) -> np.ndarray:
        """Cube centres along ``axis`` in µm from voxel 0's edge."""
        e = self.edges_um(axis)
        return 0.5 * (e[:-1] + e[1:])

    def to_frame(self) -> pd.DataFrame:
        """One row per cube: indices, centres (µm), ``phi``, ``d``, ``coverage``, ``partial``."""
        iz, iy, ix = np.meshgrid(*(np.arange(n) for n in self.shape), indexing="ij")
        cz, cy, cx = np.meshgrid(*(self.centers_um(a) for a in _AXES), indexing="ij")
        return pd.DataFrame(
            {
                "iz": iz.ravel(),
                "iy": iy.ravel(),
                "ix": ix.ravel(),
                "z_um": cz.ravel(),
                "y_um": cy.ravel(),
                "x_um": cx.ravel(),
                "phi": self.phi.ravel(),
                "d": self.d.ravel(),
                "coverage": self.coverage.ravel(),
                "partial": self.partial.ravel(),
            }
        )

    def sections(
        self, orientation: Orientation = "through-plane", *, axis: str = "y"
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(index, map)`` for each section; maps are views of :attr:`d`.

        Parameters
        ----------
        orientation : {"through-plane", "in-plane"}
            Through-plane: parallel to the field (z), maps ``(z, x)`` (``axis="y"``) or
            ``(z, y)`` (``axis="x"``). In-plane: normal to the field, maps ``(y, x)``.
        axis : {"y", "x"}
            Normal of the through-plane sections; ignored for in-plane sections (normal z).
        """
        normal = _section_normal(orientation, axis)
        for i in range(self.d.shape[normal]):
            yield i, np.take(self.d, i, axis=normal)

    def section_stats(
        self,
        orientation: Orientation = "through-plane",
        *,
        axis: str = "y",
        include_partial: bool = False,
    ) -> pd.DataFrame:
        """Per-section statistics of d; see :func:`section_stats`."""
        return section_stats(self, orientation, axis=axis, include_partial=include_partial)


def _axis_index(axis: str) -> int:
    if axis not in _AXES:
        raise ValueError(f"axis must be one of 'z', 'y', 'x', got {axis!r}")
    return _AXES.index(axis)


def _section_normal(orientation: str, axis: str) -> int:
    """Array axis normal to the sections of an orientation."""
    if orientation == "in-plane":
        return 0
    if orientation == "through-plane":
        if axis not in ("y", "x"):
            raise ValueError(
                f"through-plane sections are normal to 'y' or 'x' (they contain the field "
                f"axis z), got axis={axis!r}"
            )
        return _axis_index(axis)
    raise ValueError(f"orientation must be 'through-plane' or 'in-plane', got {orientation!r}")


def _grid(
    lo: int, hi: int, n: int, remainder: str, align: str, axis: str
) -> tuple[np.ndarray, list[tuple[str, int, int]]]:
    """Cube edges over ``[lo, hi)`` and the leftover ranges it drops."""
    length = hi - lo
    whole, rest = divmod(length, n)
    if remainder == "partial":
        edges = lo + np.arange(whole + 1) * n
        if rest:
            edges = np.append(edges, hi)
        return edges.astype(np.int64), []
    start = lo + (rest // 2 if align == "center" else 0)
    edges = (start + np.arange(whole + 1) * n).astype(np.int64)
    dropped = []
    if start > lo:
        dropped.append((axis, lo, int(start)))
    if edges[-1] < hi:
        dropped.append((axis, int(edges[-1]), hi))
    return edges, dropped


def _rows(rows: tuple[float, float] | None, nz: int) -> tuple[int, int]:
    """Rows ``[z0, z1)`` from integer rows or continuous interface positions."""
    if rows is None:
        return 0, nz
    if len(rows) != 2:
        raise ValueError(f"rows must be (top, bottom) z positions, got {rows!r}")
    top, bottom = (float(r) for r in rows)
    # Continuous positions (0 at the top edge of row 0, as interface finders report them):
    # keep the rows whose centres lie between; whole numbers give exactly range(top, bottom).
    z0, z1 = math.ceil(top - 0.5), math.ceil(bottom - 0.5)
    if not 0 <= z0 < z1 <= nz:
        raise ValueError(
            f"rows={rows!r} gives rows {z0}:{z1}, outside the volume's 0:{nz} or empty; "
            "pass (top, bottom) with top < bottom inside the volume"
        )
    return z0, z1


def _column_sum(slab: np.ndarray) -> np.ndarray:
    """Sum over axis 0; booleans in uint8 runs of ≤ 255 rows (≈ 7× faster than int64)."""
    if slab.dtype != bool:
        return slab.sum(axis=0, dtype=np.float64)
    out = np.zeros(slab.shape[1:], dtype=np.int64)
    for k in range(0, slab.shape[0], 255):
        out += slab[k : k + 255].sum(axis=0, dtype=np.uint8)
    return out


def _check_porosity_factor_args(
    shape: tuple[int, ...],
    voxel_um: float,
    block_um: float,
    remainder: str,
    align: str,
    min_coverage: float,
    chunk_rows: int,
) -> int:
    """Refuse bad arguments of :func:`porosity_factor`; the cube edge in voxels."""
    if len(shape) != 3:
        raise ValueError(
            f"binary_pore must be a 3-D (z, y, x) volume, got shape {shape}; "
            "pass the binarised volume (pores non-zero)"
        )
    if not (np.isfinite(voxel_um) and voxel_um > 0):
        raise ValueError(f"voxel_um must be a positive voxel edge in µm, got {voxel_um!r}")
    if not (np.isfinite(block_um) and block_um > 0):
        raise ValueError(f"block_um must be a positive cube edge in µm, got {block_um!r}")
    n = round(block_um / voxel_um)
    if n < 1:
        raise ValueError(
            f"block_um={block_um} is less than one voxel ({voxel_um} µm); "
            "use a cube of at least one voxel"
        )
    if remainder not in ("drop", "partial"):
        raise ValueError(f"remainder must be 'drop' or 'partial', got {remainder!r}")
    if align not in ("start", "center"):
        raise ValueError(f"align must be 'start' or 'center', got {align!r}")
    if not 0 < min_coverage <= 1:
        raise ValueError(f"min_coverage must be in (0, 1], got {min_coverage!r}")
    if int(chunk_rows) < 1:
        raise ValueError(f"chunk_rows must be a positive number of rows, got {chunk_rows!r}")
    return int(n)


def _split_mask(mask: Any | None, shape: tuple[int, int, int]) -> tuple[np.ndarray | None, Any]:
    """``(mask2d, mask3d)``: a cross-section applied to every row, or a per-voxel mask."""
    if mask is None:
        return None, None
    nz, ny, nx = shape
    mshape = tuple(getattr(mask, "shape", np.shape(mask)))
    if mshape == (ny, nx):
        return np.asarray(mask, dtype=bool), None
    if mshape == (nz, ny, nx):
        return None, mask
    raise ValueError(
        f"mask must have shape (ny, nx) = {(ny, nx)} or the volume's {(nz, ny, nx)}, got {mshape}"
    )


def _pore_slab(slab: np.ndarray) -> np.ndarray:
    """Pores of a slab as booleans, or as float64 pore fractions for a float volume."""
    if slab.dtype.kind == "f":
        return slab.astype(np.float64, copy=False)  # pore fractions
    if slab.dtype == np.uint8 and slab.max(initial=0) <= 1:
        return slab.view(bool)  # 0/1 bytes are valid booleans: no copy
    if slab.dtype != bool:
        return slab != 0
    return slab


def _column_counts(
    binary_pore: Any,
    rows: tuple[int, int],
    mask2d: np.ndarray | None,
    mask3d: Any,
    chunk_rows: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Pores and region voxels of each (y, x) column over rows ``[a, b)``, read in chunks."""
    a, b = rows
    ny, nx = (int(s) for s in binary_pore.shape[1:])
    col_pores = np.zeros((ny, nx))  # float64: exact for counts below 2**53
    col_count = np.zeros((ny, nx), dtype=np.int64) if mask3d is not None else None
    for c0 in range(a, b, chunk_rows):
        c1 = min(b, c0 + chunk_rows)
        slab = _pore_slab(np.asarray(binary_pore[c0:c1]))
        if mask3d is not None:
            m = np.asarray(mask3d[c0:c1], dtype=bool)
            slab = slab * m if slab.dtype.kind == "f" else slab & m
            col_count += _column_sum(m)  # type: ignore[operator]
        col_pores += _column_sum(slab)
    if mask2d is not None:
        # The 2-D mask is the same on every row: apply it once to the column sums.
        col_pores *= mask2d
        col_count = mask2d.astype(np.int64) * (b - a)
    elif col_count is None:
        col_count = np.full((ny, nx), b - a, dtype=np.int64)
    return col_pores, col_count


@dataclass(frozen=True)
class _Counts:
    """Pores and region voxels per cube, and of the whole region (grid leftovers included)."""

    pores: np.ndarray
    voxels: np.ndarray
    region_pores: float
    region_voxels: int


def _cube_counts(
    binary_pore: Any,
    edges: tuple[np.ndarray, np.ndarray, np.ndarray],
    dropped_z: Sequence[tuple[str, int, int]],
    mask2d: np.ndarray | None,
    mask3d: Any,
    chunk_rows: int,
) -> _Counts:
    """Count pores and region voxels per cube, one layer of cubes (or leftover) at a time."""
    ze, ye, xe = edges
    shape = (ze.size - 1, ye.size - 1, xe.size - 1)
    pores = np.zeros(shape)
    voxels = np.zeros(shape, dtype=np.int64)

    def block_sums(plane: np.ndarray) -> np.ndarray:
        # Sum a (ny, nx) plane of per-column counts into the cube columns; reduceat handles
        # a thinner last cube, and slicing to the last edge leaves dropped columns out.
        p = plane[ye[0] : ye[-1], xe[0] : xe[-1]]
        p = np.add.reduceat(p, ye[:-1] - ye[0], axis=0)
        return np.add.reduceat(p, xe[:-1] - xe[0], axis=1)

    # Segments of rows: each cube layer, plus leftovers that only feed Φ₀.
    segments: list[tuple[int, int, int | None]] = [
        (int(a), int(b), i) for i, (a, b) in enumerate(itertools.pairwise(ze))
    ]
    segments += [(a, b, None) for _, a, b in dropped_z]
    region_pores, region_voxels = 0.0, 0
    for a, b, layer in segments:
        col_pores, col_count = _column_counts(binary_pore, (a, b), mask2d, mask3d, chunk_rows)
        region_pores += float(col_pores.sum())
        region_voxels += int(col_count.sum())
        if layer is not None:
            pores[layer] = block_sums(col_pores)
            voxels[layer] = block_sums(col_count)
    return _Counts(pores, voxels, region_pores, region_voxels)


def _mean_porosity(counts: _Counts, phi0: float | None) -> float:
    """Φ₀: the given one, or pores / voxels of the whole region; refused unless positive."""
    if counts.region_voxels == 0:
        raise ValueError("the region (rows × mask) holds no voxel; check rows and mask")
    if phi0 is None:
        phi0 = counts.region_pores / counts.region_voxels
    if not (np.isfinite(phi0) and phi0 > 0):
        raise ValueError(
            f"the mean porosity Φ₀ is {phi0!r}: d = Φ/Φ₀ − 1 needs Φ₀ > 0; check that pores "
            "are non-zero in binary_pore, or pass phi0="
        )
    return float(phi0)


def _dropped_table(dropped: Sequence[tuple[str, int, int]], voxel_um: float) -> pd.DataFrame:
    """The slabs the grid leaves out, one row each (:attr:`PorosityFactor.dropped`)."""
    return pd.DataFrame(
        [
            {
                "axis": ax,
                "start": a,
                "stop": b,
                "n_voxels": b - a,
                "thickness_um": (b - a) * voxel_um,
            }
            for ax, a, b in dropped
        ],
        columns=["axis", "start", "stop", "n_voxels", "thickness_um"],
    )


def porosity_factor(
    binary_pore: Any,
    *,
    voxel_um: float,
    block_um: float = 30.0,
    mask: Any | None = None,
    rows: tuple[float, float] | None = None,
    remainder: Literal["drop", "partial"] = "drop",
    align: Literal["start", "center"] = "start",
    min_coverage: float = 1.0,
    phi0: float | None = None,
    chunk_rows: int = 32,
) -> PorosityFactor:
    """Porosity Φ of cubic sub-volumes and the porosity factor d = Φ/Φ₀ − 1.

    Parameters
    ----------
    binary_pore : array-like, shape (nz, ny, nx)
        Binarised volume, pores non-zero (bool or integers). Anything sliceable along z
        (numpy, zarr, h5py, memory map); it is read ``chunk_rows`` rows at a time. A
        floating-point volume is taken as a per-voxel pore *fraction* and summed as it is:
        this is the paper's grey-scale variant (Fig. S11–S12), e.g. ``(g_solid − g) /
        (g_solid − g_pore)`` from the reconstruction, which avoids binarisation errors when
        the pores are near the voxel size (noise outside [0, 1] is kept, not clipped, so
        it averages out instead of biasing Φ).
    voxel_um : float
        Voxel edge in µm.
    block_um : float
        Cube edge in µm (30, 60 or 120 in the paper); rounded to whole voxels, the edge used
        is :attr:`PorosityFactor.block_um`.
    mask : array-like of bool, shape (ny, nx) or (nz, ny, nx), optional
        The region whose porosity is measured, e.g. the pellet's cross-section ``(ny, nx)``
        or, in 3-D, electrolyte + pores (so that cracks or Li can be left out). Default: every
        voxel of ``rows``.
    rows : (top, bottom), optional
        z range of the electrolyte, e.g. the two Li|SE interface positions (continuous rows,
        0 at the top edge of row 0: the rows whose centres lie between are used; integers
        give ``top:bottom``). Default: all rows.
    remainder : {"drop", "partial"}
        What to do with the part of the region that is not a whole number of cubes (module
        docstring): leave it out and list it in ``dropped``, or map it as thinner cubes
        flagged ``partial``. Never zero-padded.
    align : {"start", "center"}
        With ``remainder="drop"``: start the grid at the region's first voxel, or centre it so
        the leftover is split between both ends.
    min_coverage : float
        Smallest fraction of a cube's voxels inside ``mask`` for the cube to be counted
        (0 < min_coverage ≤ 1).
    phi0 : float, optional
        Mean porosity Φ₀. Default: pores / voxels of the whole region (grid leftovers
        included).
    chunk_rows : int
        Rows read at a time (memory ≈ ``chunk_rows × ny × nx`` bytes of pores).

    Returns
    -------
    PorosityFactor
        Cube porosities, factors, coverage, the grid and what it dropped.

    Raises
    ------
    ValueError
        A bad argument, with the fix; or a region without any voxel, or Φ₀ = 0 (a volume
        without pores has no porosity factor).

    Examples
    --------
    >>> pf = porosity_factor(pores, voxel_um=0.7, block_um=30, mask=inside, rows=(143.0, 1000.1))
    >>> pf.section_stats("through-plane", axis="y")  # doctest: +SKIP
    """
    shape = tuple(getattr(binary_pore, "shape", ()))
    n = _check_porosity_factor_args(
        shape, voxel_um, block_um, remainder, align, min_coverage, chunk_rows
    )
    nz, ny, nx = (int(s) for s in shape)
    z0, z1 = _rows(rows, nz)
    mask2d, mask3d = _split_mask(mask, (nz, ny, nx))

    ze, dz = _grid(z0, z1, n, remainder, align, "z")
    ye, dy = _grid(0, ny, n, remainder, align, "y")
    xe, dx = _grid(0, nx, n, remainder, align, "x")
    if min(ze.size, ye.size, xe.size) < 2:
        raise ValueError(
            f"no whole {n}-voxel cube fits in the region {z1 - z0} × {ny} × {nx} voxels; "
            "use a smaller block_um or remainder='partial'"
        )
    counts = _cube_counts(binary_pore, (ze, ye, xe), dz, mask2d, mask3d, int(chunk_rows))
    phi0 = _mean_porosity(counts, phi0)
    size = np.einsum("i,j,k->ijk", np.diff(ze), np.diff(ye), np.diff(xe))
    coverage = counts.voxels / size
    valid = (counts.voxels > 0) & (coverage >= min_coverage - 1e-12)
    phi = np.full(size.shape, np.nan)
    np.divide(counts.pores, counts.voxels, out=phi, where=valid)
    return PorosityFactor(
        phi=phi,
        d=phi / phi0 - 1.0,
        coverage=coverage,
        partial=size < n**3,
        phi0=phi0,
        voxel_um=float(voxel_um),
        block_voxels=n,
        edges=(ze, ye, xe),
        dropped=_dropped_table((*dz, *dy, *dx), voxel_um),
        region_voxels=counts.region_voxels,
        region_pores=counts.region_pores,
    )


def section_stats(
    result: PorosityFactor,
    orientation: Orientation = "through-plane",
    *,
    axis: str = "y",
    include_partial: bool = False,
) -> pd.DataFrame:
    """Statistics of the porosity factor per section (Fig. S10–S11 of the paper).

    Parameters
    ----------
    result : PorosityFactor
        From :func:`porosity_factor`.
    orientation : {"through-plane", "in-plane"}
        Sections parallel to the field (one cube layer along ``axis``) or normal to it (one
        cube layer along z).
    axis : {"y", "x"}
        Normal of the through-plane sections.
    include_partial : bool
        Count the thinner remainder cubes of ``remainder="partial"`` (default: left out,
        and whole sections made only of them report ``n_blocks = 0``).

    Returns
    -------
    pandas.DataFrame
        One row per section: ``section`` (index along the normal), ``orientation``,
        ``normal_axis``, ``position_um`` (section centre along the normal),
        ``thickness_um``, ``mean``, ``median``, ``std`` (population, ddof = 0), ``min``,
        ``max`` of d over the section's counted cubes, and ``n_blocks``. Sections without a
        counted cube have NaN statistics.
    """
    normal = _section_normal(orientation, axis)
    keep = np.isfinite(result.d) & (include_partial | ~result.partial)
    edges = result.edges_um(_AXES[normal])
    rows = []
    for i in range(result.d.shape[normal]):
        v = np.take(result.d, i, axis=normal)[np.take(keep, i, axis=normal)]
        has = v.size > 0
        rows.append(
            {
                "section": i,
                "orientation": orientation,
                "normal_axis": _AXES[normal],
                "position_um": 0.5 * (edges[i] + edges[i + 1]),
                "thickness_um": edges[i + 1] - edges[i],
                "mean": float(v.mean()) if has else np.nan,
                "median": float(np.median(v)) if has else np.nan,
                "std": float(v.std()) if has else np.nan,
                "min": float(v.min()) if has else np.nan,
                "max": float(v.max()) if has else np.nan,
                "n_blocks": int(v.size),
            }
        )
    return pd.DataFrame(rows)


def _pick_sections(count: int, sections: Sequence[int] | None, max_panels: int) -> list[int]:
    if sections is None:
        k = min(count, max_panels)
        return sorted({round(v) for v in np.linspace(0, count - 1, k + 2)[1:-1]}) or [0]
    bad = [s for s in sections if not -count <= int(s) < count]
    if bad:
        raise ValueError(f"sections {bad} out of range: there are {count} sections")
    return [int(s) % count for s in sections]


def plot_porosity_factor_maps(
    result: PorosityFactor,
    *,
    orientation: Orientation = "through-plane",
    axis: str = "y",
    sections: Sequence[int] | None = None,
    max_panels: int = 4,
    vlim: float | None = None,
    cmap: str = "RdBu_r",
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Porosity-factor maps of a few sections, as in Fig. 5c–f and S12 of the paper.

    Parameters
    ----------
    result : PorosityFactor
        From :func:`porosity_factor`.
    orientation : {"through-plane", "in-plane"}
        Section orientation (see :meth:`PorosityFactor.sections`).
    axis : {"y", "x"}
        Normal of the through-plane sections.
    sections : sequence of int, optional
        Section indices to draw; default up to ``max_panels`` evenly spaced inner sections.
    max_panels : int
        Panels drawn when ``sections`` is None.
    vlim : float, optional
        Colour limits ``[-vlim, vlim]``; default the largest |d| drawn. The diverging map is
        centred on d = 0 (the mean microstructure); uncounted cubes are blank.
    cmap : str
        Diverging colormap (red: more porous than average).
    figsize : (float, float), optional
        Figure size in inches.

    Returns
    -------
    matplotlib.figure.Figure
        One panel per section, axes in µm (z downward, as in the volume), one colourbar.
    """
    normal = _section_normal(orientation, axis)
    chosen = _pick_sections(result.d.shape[normal], sections, max_panels)
    rows_ax, cols_ax = (a for k, a in enumerate(_AXES) if k != normal)
    maps = [np.take(result.d, i, axis=normal) for i in chosen]
    finite = np.concatenate([m[np.isfinite(m)] for m in maps])
    if vlim is None:
        vlim = float(np.max(np.abs(finite))) if finite.size else 1.0
    vlim = max(float(vlim), 1e-12)
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-vlim, vmax=vlim)
    ye, xe = result.edges_um(rows_ax), result.edges_um(cols_ax)
    aspect = (ye[-1] - ye[0]) / max(xe[-1] - xe[0], 1e-12)
    w = 3.2
    fig = Figure(
        figsize=figsize or (w * len(chosen) + 1.0, min(w * aspect, 8.0) + 0.8),
        layout="constrained",
    )
    axes = fig.subplots(1, len(chosen), squeeze=False)[0]
    normal_edges = result.edges_um(_AXES[normal])
    mesh = None
    for ax, i, m in zip(axes, chosen, maps, strict=True):
        mesh = ax.pcolormesh(xe, ye, np.ma.masked_invalid(m), cmap=cmap, norm=norm)
        ax.set_aspect("equal")
        ax.invert_yaxis()  # row 0 at the top, as the volume (and z downward)
        ax.set_xlabel(f"{cols_ax} (µm)")
        ax.set_ylabel(f"{rows_ax} (µm)")
        centre = 0.5 * (normal_edges[i] + normal_edges[i + 1])
        ax.set_title(f"{orientation} {_AXES[normal]} = {centre:.0f} µm", fontsize="medium")
    fig.colorbar(mesh, ax=list(axes), label="porosity factor d = Φ/Φ₀ − 1", shrink=0.9)
    fig.suptitle(f"{result.block_um:.0f} µm sub-volumes, Φ₀ = {result.phi0:.3f}", fontsize="medium")
    return fig


def plot_porosity_factor_stats(table: pd.DataFrame, *, ax: Axes | None = None) -> Axes:
    """Per-section statistics as in Fig. S10: mean ± std box, median line, min/max whiskers.

    Parameters
    ----------
    table : pandas.DataFrame
        From :func:`section_stats` (columns ``section``, ``mean``, ``median``, ``std``,
        ``min``, ``max``).
    ax : matplotlib.axes.Axes, optional
        Where to draw; default a new pyplot-free Figure.

    Returns
    -------
    matplotlib.axes.Axes
    """
    missing = [c for c in ("section", "mean", "median", "std", "min", "max") if c not in table]
    if missing:
        raise ValueError(f"table misses columns {missing}; pass the output of section_stats")
    if ax is None:
        ax = Figure(figsize=(7.0, 3.2), layout="constrained").add_subplot()
    t = table.dropna(subset=["mean"])
    x = t["section"].to_numpy()
    ax.vlines(x, t["min"], t["max"], color="0.4", lw=0.8, label="min–max")
    ax.bar(x, 2 * t["std"], bottom=t["mean"] - t["std"], width=0.6, color="C0", alpha=0.4,
           label="mean ± std")  # fmt: skip
    ax.hlines(t["median"], x - 0.3, x + 0.3, color="C3", lw=1.2, label="median")
    ax.plot(x, t["mean"], "k.", ms=4, label="mean")
    ax.axhline(0.0, color="0.6", lw=0.6, ls=":")
    ax.set_xlabel("section")
    ax.set_ylabel("porosity factor d")
    ax.legend(fontsize="small", ncols=4, loc="best")
    return ax
