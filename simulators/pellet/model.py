"""The virtual pellet: a labelled 3-D volume of the in-situ cell in the tomography field of view.

Axes and geometry
-----------------
* The volume is ``(nz, ny, nx)`` uint8 labels from :class:`~insitu.simulators.pellet.phases.Phase`.
  z is the stack axis = rotation axis = detector rows, row 0 at the top. The pellet axis is
  the grid's centre line ``(y, x) = (ny/2, nx/2)`` (voxel corners at integers).
* From top to bottom: the upper stainless-steel piston (COLLECTOR), the **working** Li
  electrode, the solid electrolyte (with pores and, once the cell is damaged, cracks and Li
  in cracks), the **counter** Li electrode, the lower piston (COLLECTOR). The pistons have
  the pellet's radius; around the stack is OUTSIDE (argon). The electrolyte is centred in z;
  its interfaces do not move, the Li electrodes' outer surfaces (the Li|piston contacts)
  follow the cell state's Li thickness, and the pistons fill every row beyond them.
* :meth:`PelletGeometry.small` scales the whole pellet down so it fits in a 64×128×128 grid
  (fast tests), with four rows of piston beyond each pristine Li electrode;
  :meth:`PelletGeometry.medium` is the same pellet at 1.5 µm voxels (128×256×256);
  :meth:`PelletGeometry.full` is the beamline (0.7 µm voxels, 1143 × 2000 ×
  2000), where the 3 mm pellet is wider than the 1.4 mm field of view: the grid covers the
  field of view only and **the pellet outside the grid is for the projector to add as
  homogeneous material** (:meth:`VirtualPellet.outside_grid_chord_m` for the path length,
  :meth:`VirtualPellet.row_phase_fractions` for the mean composition of each row). There the
  150 µm Li foils reach beyond the top and bottom rows, so no piston is in the grid.
* Why the pistons are there: at 25 keV Li attenuates almost like argon (μ ≈ 9 vs ≈ 1 1/m),
  so a Li surface facing gas is invisible in a reconstruction; the steel (μ ≈ 1.2e4 1/m)
  makes the Li's outer surface a strong edge, as in the real cell ("Stainless-steel pistons
  were pressed against the Li"). A 360 µm chord of steel (the small pellet's diameter)
  transmits ≈ 1.6 % at 25 keV, well above the −log floor of the normalisation.

Microstructure
--------------
Pores: a unit-variance Gaussian-filtered noise field ``g`` (filter width → pore size) below a
spatially varying threshold ``t = Φ⁻¹(φ_local)``, ``φ_local = φ0·(1 + cv·h)`` with ``h`` a
smooth unit-variance field (correlation length ~40 µm) — the heterogeneity; a constant shift of
``t`` calibrates the expected porosity of the electrolyte in the grid to the preset's mean.
The noise is drawn per block of rows from a block-indexed seed, so :meth:`VirtualPellet.labels`
of a slab equals the same rows of the whole volume (the full volume, 4.6 GB, is never built).
Cracks come from the cell state (:mod:`insitu.simulators.pellet.cracks`).

Simplifications
---------------
* Pores are a level cut of a Gaussian random field (no particle packing); pore sizes are set
  by the filter width only and are sub-voxel for the denser presets at the small size.
* The electrolyte interfaces are flat and fixed; only the Li outer surfaces move. No
  interphase, no voids at the interfaces; the Li|piston contact is flat and perfect.
* A crack is a tapered triangular sheet, at least one voxel thick (so at coarse voxels it is
  rendered thicker than the cell's micrometre opening); cracks of the cell state map onto a
  scaled pellet by the radius (in-plane) and thickness (depth) ratios.
* Outside the grid the pellet is homogeneous (mean composition per row, no cracks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
from scipy import optimize, special

from ..cell.state import CellState, CrackState
from ..materials import MATERIALS, MaterialPreset, get_material
from .cracks import CrackRaster, crack_path, rasterise_path, render_crack_rows
from .fields import FourierField, interpolation_matrix, pore_field
from .phases import Phase

__all__ = ["MICROSTRUCTURES", "Microstructure", "PelletGeometry", "TruthCounter", "VirtualPellet"]


@dataclass(frozen=True)
class Microstructure:
    """Pore structure of one electrolyte preset.

    Attributes
    ----------
    pore_sigma_m : float
        Width of the Gaussian filter of the pore field; the mean pore chord of a level cut is
        ≈ 2π·φ·√2·σ·exp(t²/2) (≈ 4σ at φ ≈ 0.5).
    heterogeneity_cv : float
        Relative amplitude of the local porosity modulation, ``φ_local = φ0(1 + cv·h)``.
    heterogeneity_length_m : float
        Correlation length of the modulation.
    """

    pore_sigma_m: float
    heterogeneity_cv: float
    heterogeneity_length_m: float = 40e-6


#: Per preset: A-LPS has the largest pores (> 3–5 µm, Fig. S3); milling and annealing make
#: them smaller; LiI-AN is the most heterogeneous relative to its (small) mean porosity.
MICROSTRUCTURES: dict[str, Microstructure] = {
    "A-LPS": Microstructure(pore_sigma_m=1.8e-6, heterogeneity_cv=0.10),
    "LPS:0.5LiI": Microstructure(pore_sigma_m=1.0e-6, heterogeneity_cv=0.20),
    "LiI-AT": Microstructure(pore_sigma_m=0.7e-6, heterogeneity_cv=0.25),
    "LiI-AN": Microstructure(pore_sigma_m=0.5e-6, heterogeneity_cv=0.60),
}


@dataclass(frozen=True)
class PelletGeometry:
    """Voxel grid and pellet dimensions of the virtual pellet.

    Attributes
    ----------
    shape : tuple of int
        ``(nz, ny, nx)``.
    voxel_m : float
        Voxel edge.
    pellet_radius_m : float
        Pellet radius in this volume (may exceed the grid's half-width).
    electrolyte_thickness_m : float
        Electrolyte thickness in this volume.
    li_thickness_m : float
        Li thickness of each electrode in this volume when the cell's foil has its initial
        thickness ``cell_li_thickness_m``.
    cell_radius_m, cell_thickness_m, cell_li_thickness_m : float
        The virtual cell's dimensions (:meth:`CellGeometry.insitu`); positions and lengths
        of the cell state map onto this volume by the ratios (in-plane by radius, through-
        plane by thickness); Li thickness changes map one to one.
    """

    shape: tuple[int, int, int]
    voxel_m: float
    pellet_radius_m: float
    electrolyte_thickness_m: float
    li_thickness_m: float
    cell_radius_m: float = 1.5e-3
    cell_thickness_m: float = 0.6e-3
    cell_li_thickness_m: float = 150e-6

    def __post_init__(self) -> None:
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise ValueError(f"shape must be three positive sizes (nz, ny, nx), got {self.shape}")
        for name in ("voxel_m", "pellet_radius_m", "electrolyte_thickness_m"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.electrolyte_thickness_m > self.shape[0] * self.voxel_m:
            raise ValueError("the electrolyte must fit in the grid's height; enlarge shape[0]")

    @classmethod
    def small(cls) -> PelletGeometry:
        """Fast tests: 64×128×128 voxels of 3 µm, the whole pellet scaled to fit the grid.

        Radius 180 µm, electrolyte 120 µm (40 rows), Li 24 µm (8 rows) each side, and 4
        rows of steel piston beyond each pristine Li electrode.
        """
        return cls(
            shape=(64, 128, 128),
            voxel_m=3e-6,
            pellet_radius_m=180e-6,
            electrolyte_thickness_m=120e-6,
            li_thickness_m=24e-6,
        )

    @classmethod
    def medium(cls) -> PelletGeometry:
        """Between the two: the small pellet at half its voxel, 128×256×256 voxels of 1.5 µm.

        The same scaled pellet as :meth:`small` (radius 180 µm, electrolyte 120 µm = 80 rows,
        Li 24 µm = 16 rows each side, 8 rows of steel piston beyond each pristine Li
        electrode), so the two sizes image the same physical microstructure at two voxel
        sizes: pores are twice as many voxels across (partial volume checks).
        """
        return cls(
            shape=(128, 256, 256),
            voxel_m=1.5e-6,
            pellet_radius_m=180e-6,
            electrolyte_thickness_m=120e-6,
            li_thickness_m=24e-6,
        )

    @classmethod
    def full(cls) -> PelletGeometry:
        """The beamline: 0.7 µm voxels, 1143 rows × 2000 × 2000 (1.4 × 0.8 mm² field of view).

        The 3 mm pellet (600 µm electrolyte, 150 µm Li) is wider than the grid and its Li
        electrodes reach beyond the top and bottom rows (so the steel pistons are out of
        view); the projector adds the pellet outside the grid as homogeneous material.
        """
        return cls(
            shape=(1143, 2000, 2000),
            voxel_m=0.7e-6,
            pellet_radius_m=1.5e-3,
            electrolyte_thickness_m=0.6e-3,
            li_thickness_m=150e-6,
        )

    @classmethod
    def region(cls) -> PelletGeometry:
        """The beamline's pellet and voxel, seen through a narrow window: 1143 × 96 × 96.

        :meth:`full`'s 3 mm pellet at 0.7 µm voxels, every row (both Li|SE interfaces in
        view), but only the 96 × 96 columns (67 µm) around the axis: the partial-volume and
        local-tomography regime of the beamline at a cost of seconds. The pellet is 64×
        wider than the window, so reconstruct with ``--sample-diameter-um 3000``.
        """
        full = cls.full()
        return cls(
            shape=(full.shape[0], 96, 96),
            voxel_m=full.voxel_m,
            pellet_radius_m=full.pellet_radius_m,
            electrolyte_thickness_m=full.electrolyte_thickness_m,
            li_thickness_m=full.li_thickness_m,
        )

    def outside_grid_chord_m(self, u_m: np.ndarray | float, theta_rad: float) -> np.ndarray:
        """Path length through the pellet that lies outside the grid, per ray.

        A ray of the parallel beam at detector offset ``u_m`` from the rotation axis, at
        rotation angle ``theta_rad`` (direction ``(cos θ, sin θ)`` in the (x, y) plane, ray
        offset along ``(-sin θ, cos θ)``), crosses the pellet cylinder over ``2√(R²-u²)``; the
        part inside the grid's square cross-section is projected from the labels, the rest
        (returned here) the projector adds as homogeneous material of the row's composition
        (:meth:`VirtualPellet.row_phase_fractions`). Zero where the pellet fits in the grid.
        """
        g = self
        u = np.asarray(u_m, dtype=float)
        r = g.pellet_radius_m
        half = np.sqrt(np.clip(r**2 - u**2, 0.0, None))  # cylinder chord: t in [-half, half]
        d = np.array([np.cos(theta_rad), np.sin(theta_rad)])
        p0 = u[..., None] * np.array([-np.sin(theta_rad), np.cos(theta_rad)])
        hw = np.array([g.shape[2], g.shape[1]]) * g.voxel_m / 2.0
        lo, hi = -half, half.copy()
        # Liang–Barsky clip of the chord to the square, per axis.
        for k in range(2):
            if abs(d[k]) < 1e-15:
                outside = np.abs(p0[..., k]) > hw[k]
                hi = np.where(outside, lo, hi)
                continue
            t1 = (-hw[k] - p0[..., k]) / d[k]
            t2 = (hw[k] - p0[..., k]) / d[k]
            lo = np.maximum(lo, np.minimum(t1, t2))
            hi = np.minimum(hi, np.maximum(t1, t2))
        inside = np.clip(hi - lo, 0.0, None)
        return 2.0 * half - inside

    @property
    def interfaces_rows(self) -> tuple[float, float]:
        """z (in rows, continuous) of the working Li|SE and the SE|counter Li interfaces."""
        n_se = self.electrolyte_thickness_m / self.voxel_m
        top = 0.5 * (self.shape[0] - n_se)
        return top, top + n_se

    @property
    def lateral_scale(self) -> float:
        """In-plane scale from the cell to this volume."""
        return self.pellet_radius_m / self.cell_radius_m

    @property
    def depth_scale(self) -> float:
        """Through-plane scale from the cell to this volume."""
        return self.electrolyte_thickness_m / self.cell_thickness_m


class VirtualPellet:
    """Labelled volume of the in-situ cell, generated slab by slab.

    Parameters
    ----------
    material : str or MaterialPreset
        Electrolyte preset (``MATERIALS``).
    geometry : PelletGeometry
        Grid and dimensions (default :meth:`PelletGeometry.small`).
    seed : int
        Seed of the microstructure; the same seed and state give identical labels.
    """

    def __init__(
        self,
        material: str | MaterialPreset,
        geometry: PelletGeometry | None = None,
        *,
        seed: int = 0,
    ) -> None:
        self.material = get_material(material)
        self.geometry = geometry or PelletGeometry.small()
        self.microstructure = MICROSTRUCTURES[self.material.name]
        self.porosity_target = float(self.material.porosity)
        self.seed = int(seed)
        g = self.geometry
        nz, ny, nx = g.shape
        self._entropy = (self.seed, list(MATERIALS).index(self.material.name))
        self._sigma_vox = self.microstructure.pore_sigma_m / g.voxel_m
        rng = np.random.default_rng(np.random.SeedSequence([*self._entropy, 7]))
        self.heterogeneity = FourierField(self.microstructure.heterogeneity_length_m, rng)
        # Voxel-centre coordinates in metres: z from row 0's top, (y, x) from the pellet axis.
        self._z_m = (np.arange(nz) + 0.5) * g.voxel_m
        self._y_m = (np.arange(ny) + 0.5 - ny / 2) * g.voxel_m
        self._x_m = (np.arange(nx) + 0.5 - nx / 2) * g.voxel_m
        yy, xx = np.meshgrid(self._y_m, self._x_m, indexing="ij")
        self.inside = np.hypot(yy, xx) <= g.pellet_radius_m  #: pellet cross-section (ny, nx)
        self._build_threshold_nodes()
        self._plane_cache: dict[int, np.ndarray] = {}
        # Noise blocks of the last slab: the next slab's z-filter halo reuses them.
        self._noise_cache: dict[str, Any] = {}
        # The pore field of the slab being labelled, kept for the next slab.
        self._field_buffer: np.ndarray | None = None
        self._raster_cache: dict[tuple[Any, ...], CrackRaster | None] = {}

    # --- microstructure ------------------------------------------------------------------
    def _build_threshold_nodes(self) -> None:
        """Coarse nodes of the threshold field and the calibration shift."""
        g, ms = self.geometry, self.microstructure
        spacing = ms.heterogeneity_length_m / 3.0

        def nodes(coords: np.ndarray) -> np.ndarray:
            n = int(np.ceil((coords[-1] - coords[0]) / spacing)) + 3
            return coords[0] - spacing + spacing * np.arange(n)

        self._zn, self._yn, self._xn = nodes(self._z_m), nodes(self._y_m), nodes(self._x_m)
        zz, yy, xx = np.meshgrid(self._zn, self._yn, self._xn, indexing="ij")
        self._h_nodes = self.heterogeneity(zz, yy, xx)
        self._wy = interpolation_matrix(self._yn, self._y_m).astype(np.float32)
        self._wx = interpolation_matrix(self._xn, self._x_m).astype(np.float32)
        # Calibration: the expected porosity E[Φ(t)] over the electrolyte in the grid equals
        # the preset's, on a strided sample of voxels (the random error of the realisation
        # around its expectation is far below 0.01 at the small size).
        top, bot = g.interfaces_rows
        rows = np.arange(int(np.ceil(top - 0.5)), int(np.ceil(bot - 0.5)))
        rows = rows[:: max(1, rows.size // 24)]
        stride = max(1, g.shape[1] // 128)
        mask = self.inside[::stride, ::stride]
        wz = interpolation_matrix(self._zn, self._z_m[rows])
        wy = interpolation_matrix(self._yn, self._y_m[::stride])
        wx = interpolation_matrix(self._xn, self._x_m[::stride])
        h = np.einsum("az,zyx,by,cx->abc", wz, self._h_nodes, wy, wx, optimize=True)
        phi = self._local_porosity(h)[:, mask]

        def excess(shift: float) -> float:
            return float(np.mean(special.ndtr(special.ndtri(phi) + shift))) - self.porosity_target

        self._shift = float(optimize.brentq(excess, -3.0, 3.0, xtol=1e-6))

    def _local_porosity(self, h: np.ndarray) -> np.ndarray:
        """φ_local = φ0·(1 + cv·h), kept inside (0, 1)."""
        ms = self.microstructure
        return np.clip(self.porosity_target * (1.0 + ms.heterogeneity_cv * h), 1e-3, 0.95)

    def _threshold_plane(self, j: int) -> np.ndarray:
        """Threshold (ny, nx) at coarse z-node ``j``; identical whichever slab asks for it."""
        plane = self._plane_cache.get(j)
        if plane is None:
            t = (special.ndtri(self._local_porosity(self._h_nodes[j])) + self._shift).astype(
                np.float32
            )
            plane = self._wy @ t @ self._wx.T
            if len(self._plane_cache) > 8:
                self._plane_cache.pop(next(iter(self._plane_cache)))
            self._plane_cache[j] = plane
        return plane

    def local_porosity_field(self, z_m: np.ndarray, y_m: np.ndarray, x_m: np.ndarray) -> np.ndarray:
        """Expected local porosity φ_local at points (metres; z from row 0, y/x from the axis)."""
        return self._local_porosity(self.heterogeneity(z_m, y_m, x_m))

    def _label_electrolyte(self, z0: int, z1: int, out: np.ndarray) -> None:
        """Label electrolyte rows ``z0:z1`` into ``out``: PORE, ELECTROLYTE, OUTSIDE beyond.

        A pore is where the pore field lies below the row's threshold, the threshold planes
        of the two neighbouring coarse z-nodes mixed as ``(1 − w)·t_j + w·t_{j+1}`` in float32.
        One compiled pass a row (:func:`_label_pore_row`) instead of the numpy expression's
        threshold, mask, ``where`` and outside passes: the same labels, ≈ 25 ms a full-size
        row less.
        """
        nz, ny, nx = self.geometry.shape
        buf = self._field_buffer
        if buf is None or buf.shape[0] < z1 - z0 or buf.shape[1:] != (ny, nx):
            buf = self._field_buffer = np.empty((z1 - z0, ny, nx), dtype=np.float32)
        g = pore_field(
            self._entropy,
            z0,
            z1,
            ny,
            nx,
            self._sigma_vox,
            cache=self._noise_cache,
            out=buf[: z1 - z0],
        )
        for i, z in enumerate(range(z0, z1)):
            zc = self._z_m[z] if 0 <= z < nz else (z + 0.5) * self.geometry.voxel_m
            j = int(np.clip(np.searchsorted(self._zn, zc) - 1, 0, self._zn.size - 2))
            w = np.float32((zc - self._zn[j]) / (self._zn[j + 1] - self._zn[j]))
            _label_pore_row(
                g[i],
                np.float32(1) - w,
                w,
                self._threshold_plane(j),
                self._threshold_plane(j + 1),
                self.inside,
                _PORE_LABELS,
                out[i],
            )

    def clear_cache(self) -> None:
        """Drop the noise blocks and the field kept for the next slab (≈1 GB at full size)."""
        self._noise_cache.clear()
        self._field_buffer = None

    # --- state mapping -------------------------------------------------------------------
    def electrode_thicknesses_m(self, state: CellState | None = None) -> tuple[float, float]:
        """Li thickness (working, counter) in this volume: nominal plus the cell's change."""
        g = self.geometry
        if state is None:
            return g.li_thickness_m, g.li_thickness_m
        return tuple(  # type: ignore[return-value]
            max(0.0, g.li_thickness_m + e.li_thickness_m - g.cell_li_thickness_m)
            for e in state.electrodes
        )

    def interfaces_z(self, state: CellState | None = None) -> dict[str, float]:
        """z (rows, continuous, 0 at the top edge of row 0) of the four Li surfaces."""
        top, bot = self.geometry.interfaces_rows
        li_w, li_c = self.electrode_thicknesses_m(state)
        v = self.geometry.voxel_m
        return {
            "working_outer": top - li_w / v,
            "working_electrolyte": top,
            "electrolyte_counter": bot,
            "counter_outer": bot + li_c / v,
        }

    def _crack_path(self, crack: CrackState) -> tuple[np.ndarray, np.ndarray]:
        """In-plane path of a crack in this volume (see :func:`crack_path`)."""
        g = self.geometry
        length = max(crack.length_m * g.lateral_scale, 1e-12)
        step = max(g.voxel_m, min(self.microstructure.heterogeneity_length_m / 4.0, length / 4))
        # Porosity preference through the whole thickness: mean of h over five depths.
        zs = (
            g.interfaces_rows[0] + (np.arange(5) + 0.5) / 5 * g.electrolyte_thickness_m / g.voxel_m
        ) * g.voxel_m

        def field(y: float, x: float) -> float:
            return float(np.mean(self.heterogeneity(zs, y, x)))

        return crack_path(crack, g.pellet_radius_m, length, step, field)

    def _crack_raster(self, crack: CrackState) -> CrackRaster | None:
        """In-plane raster of a crack's path (cached per crack shape)."""
        g = self.geometry
        key = (crack.radius_fraction, crack.angle_rad, crack.direction_rad, crack.length_m)
        if key not in self._raster_cache:
            pts, arc = self._crack_path(crack)
            margin = int(np.ceil(self._mouth_opening_cap_vox())) + 2
            if len(self._raster_cache) > 64:
                self._raster_cache.pop(next(iter(self._raster_cache)))
            self._raster_cache[key] = rasterise_path(pts, arc, g.shape[1:], g.voxel_m, margin)
        return self._raster_cache[key]

    def _mouth_opening_cap_vox(self) -> float:
        """Largest rendered crack half-width (voxels); also the raster margin."""
        return max(2.0, 10.0e-6 / self.geometry.voxel_m)

    def crack_paths(self, state: CellState) -> list[tuple[np.ndarray, np.ndarray]]:
        """In-plane paths (points (y, x) in metres from the axis, arc) of the state's cracks."""
        return [self._crack_path(c) for c in state.cracks]

    # --- volumes -------------------------------------------------------------------------
    def labels(
        self, z0: int | None = None, z1: int | None = None, state: CellState | None = None
    ) -> np.ndarray:
        """Labels of rows ``z0:z1`` (default: all) for a cell state (default: pristine).

        Parameters
        ----------
        z0, z1 : int, optional
            Row range inside ``[0, nz]``; a slab equals the same rows of the whole volume.
        state : CellState, optional
            Electrode thicknesses and cracks; None is the pristine cell.

        Returns
        -------
        ndarray of uint8, shape (z1 - z0, ny, nx)
        """
        return self._labels(z0, z1, state)

    def _labels(
        self,
        z0: int | None,
        z1: int | None,
        state: CellState | None,
        tally: dict[str, np.ndarray] | None = None,
    ) -> np.ndarray:
        """:meth:`labels`, optionally tallying crack voxels per origin electrode."""
        g = self.geometry
        nz, ny, nx = g.shape
        z0 = 0 if z0 is None else int(z0)
        z1 = nz if z1 is None else int(z1)
        if not 0 <= z0 <= z1 <= nz:
            raise ValueError(f"rows must satisfy 0 <= z0 <= z1 <= {nz}, got {z0}:{z1}")
        out = np.full((z1 - z0, ny, nx), Phase.OUTSIDE, dtype=np.uint8)
        if z1 == z0:
            return out
        zc = np.arange(z0, z1) + 0.5  # row centres, continuous rows
        li, se, steel = self._row_layers(zc, state)
        out[li] = np.where(self.inside, Phase.LITHIUM, Phase.OUTSIDE)
        out[steel] = np.where(self.inside, Phase.COLLECTOR, Phase.OUTSIDE)
        if se.any():
            i = np.flatnonzero(se)
            self._label_electrolyte(z0 + int(i[0]), z0 + int(i[-1]) + 1, out[i[0] : i[-1] + 1])
        if state is not None:
            self._render_cracks(out, zc, se, state, tally)
        return out

    def _row_layers(
        self, zc: np.ndarray, state: CellState | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Which rows (centres ``zc``) are Li, electrolyte and steel piston: boolean masks.

        Every row beyond a Li electrode's outer surface is piston, so the pistons follow
        the Li as it is plated and stripped (they are pressed against it).
        """
        f = self.interfaces_z(state)
        li = ((zc >= f["working_outer"]) & (zc < f["working_electrolyte"])) | (
            (zc >= f["electrolyte_counter"]) & (zc < f["counter_outer"])
        )
        se = (zc >= f["working_electrolyte"]) & (zc < f["electrolyte_counter"])
        steel = (zc < f["working_outer"]) | (zc >= f["counter_outer"])
        return li, se, steel

    def _render_cracks(
        self,
        out: np.ndarray,
        zc: np.ndarray,
        se: np.ndarray,
        state: CellState,
        tally: dict[str, np.ndarray] | None = None,
    ) -> None:
        """Overwrite the electrolyte rows of ``out`` with the state's cracks.

        ``tally[origin]`` (if given) accumulates [crack, Li] voxels written per origin
        electrode; where cracks overlap, the later one counts the shared voxels.
        """
        g = self.geometry
        top, bot = g.interfaces_rows
        for c in state.cracks:
            if c.depth_fraction <= 0.0:
                continue
            raster = self._crack_raster(c)
            if raster is None:
                continue
            from_face = (zc - top) if c.origin == "working" else (bot - zc)
            depth_s = np.where(se, from_face * g.voxel_m, np.nan)
            depth = c.depth_fraction * g.electrolyte_thickness_m
            transparent = c.transparent_volume_m3
            # Physical mouth opening of the empty wedge plus the Li that wedges it open:
            # the tapered triangle holds L·D·o/3.
            area = c.length_m * c.depth_m
            mouth = 3.0 * transparent / area if area > 0 else 0.0
            mouth = min(mouth, 2.0 * self._mouth_opening_cap_vox() * g.voxel_m)
            f_li = c.total_li_volume_m3 / transparent if transparent > 0 else 0.0
            n_crack, n_li = render_crack_rows(
                out,
                depth_s,
                raster,
                depth,
                c.length_m * g.lateral_scale,
                mouth,
                f_li,
                g.voxel_m,
                self.inside,
            )
            if tally is not None:
                tally[c.origin] += np.array([n_crack, n_li])

    def ground_truth(self, state: CellState | None = None, *, slab_rows: int = 32) -> dict:
        """Quantities the tomography analysis should recover, counted slab by slab.

        Returns
        -------
        dict
            ``porosity`` (pores / (electrolyte + pores) in the electrolyte rows, cracks
            excluded), ``crack_volume_m3`` (CRACK + CRACK_LITHIUM voxels),
            ``crack_li_volume_m3``, ``crack_volume_by_origin_m3`` and
            ``crack_li_volume_by_origin_m3`` (per origin electrode, ``"working"`` /
            ``"counter"``; a voxel shared by two cracks counts for the later one),
            ``transparent_volume_m3`` (pores + cracks + Li in the electrolyte rows),
            ``electrode_thickness_m`` (working, counter; the model's, also where the grid
            crops it), ``voxel_counts`` (per Phase name, whole grid; ``COLLECTOR`` is the
            steel of the pistons in view),
            ``electrolyte_counts`` (per Phase name, electrolyte rows), ``interfaces_z_rows``
            and ``interfaces_z_m`` (:meth:`interfaces_z`), ``voxel_m``, and the state's own
            ``state_crack_transparent_volume_m3`` and ``state_crack_li_volume_m3`` (cell
            geometry, unscaled).
        """
        nz = self.geometry.shape[0]
        counter = self.truth_counter(state)
        for z0 in range(0, nz, slab_rows):
            counter.labels(z0, min(nz, z0 + slab_rows))
        return counter.result()

    def truth_counter(self, state: CellState | None = None) -> TruthCounter:
        """Labels slab by slab that count the ground truth as they are made.

        A caller that needs every slab anyway (the projector) gets :meth:`ground_truth`
        without generating the volume a second time (the pore field of the full size is
        minutes of CPU).
        """
        return TruthCounter(self, state)

    # --- what lies outside the grid (for the projector) ------------------------------------
    def outside_grid_chord_m(self, u_m: np.ndarray | float, theta_rad: float) -> np.ndarray:
        """Path length through the pellet outside the grid, per ray (see PelletGeometry)."""
        return self.geometry.outside_grid_chord_m(u_m, theta_rad)

    def row_phase_fractions(
        self, z0: int = 0, z1: int | None = None, state: CellState | None = None
    ) -> np.ndarray:
        """Mean volume fraction of each phase per row, for the pellet outside the grid.

        Returns
        -------
        ndarray, shape (z1 - z0, len(Phase))
            Li rows: LITHIUM 1; electrolyte rows: ELECTROLYTE 1 - φ0, PORE φ0 (cracks beyond
            the field of view are not modelled); rows beyond the Li: COLLECTOR 1 (the pistons
            have the pellet's radius). Every row sums to 1.
        """
        z1 = self.geometry.shape[0] if z1 is None else z1
        zc = np.arange(z0, z1) + 0.5
        li, se, steel = self._row_layers(zc, state)
        out = np.zeros((zc.size, len(Phase)))
        out[li, Phase.LITHIUM] = 1.0
        out[se, Phase.ELECTROLYTE] = 1.0 - self.porosity_target
        out[se, Phase.PORE] = self.porosity_target
        out[steel, Phase.COLLECTOR] = 1.0
        return out


class TruthCounter:
    """:meth:`VirtualPellet.labels` of slabs, counted into :meth:`VirtualPellet.ground_truth`.

    Parameters
    ----------
    pellet : VirtualPellet
        The pellet whose labels are made.
    state : CellState, optional
        The cell state imaged (None: pristine).

    Notes
    -----
    Every row must be counted exactly once, in any order and slab size, before
    :meth:`result`; a row counted twice is refused.
    """

    def __init__(self, pellet: VirtualPellet, state: CellState | None = None) -> None:
        self.pellet = pellet
        self.state = state
        n = len(Phase)
        self._total = np.zeros(n, dtype=np.int64)
        self._se_counts = np.zeros(n, dtype=np.int64)
        self._tally = {origin: np.zeros(2, dtype=np.int64) for origin in ("working", "counter")}
        self._counted = np.zeros(pellet.geometry.shape[0], dtype=bool)

    def labels(self, z0: int, z1: int) -> np.ndarray:
        """Labels of rows ``z0:z1`` (as :meth:`VirtualPellet.labels`), counted.

        Raises
        ------
        ValueError
            If a row of ``z0:z1`` was counted before.
        """
        if self._counted[z0:z1].any():
            raise ValueError(f"rows {z0}:{z1} overlap rows already counted")
        lab = self.pellet._labels(z0, z1, self.state, self._tally)
        top, bot = self.pellet.geometry.interfaces_rows
        zc = np.arange(z0, z1) + 0.5
        se = (zc >= top) & (zc < bot)
        n = len(Phase)
        # Per-row counts in one compiled pass (np.bincount widens uint8 to intp first: two
        # bincounts, the electrolyte rows' copy included, were ≈ 55 ms a full-size row).
        per_row = _count_labels(lab)
        self._total += per_row.sum(axis=0)[:n]
        if se.any():
            self._se_counts += per_row[se].sum(axis=0)[:n]
        self._counted[z0:z1] = True
        return lab

    def result(self) -> dict:
        """The ground truth (see :meth:`VirtualPellet.ground_truth`).

        Raises
        ------
        ValueError
            If some rows were not counted.
        """
        if not self._counted.all():
            missing = np.flatnonzero(~self._counted)
            raise ValueError(
                f"{missing.size} row(s) not counted (first {int(missing[0])}): count every "
                "slab through labels() before result()"
            )
        pellet, state = self.pellet, self.state
        g = pellet.geometry
        se_counts, total, tally = self._se_counts, self._total, self._tally
        v3 = g.voxel_m**3
        pores, solid = se_counts[Phase.PORE], se_counts[Phase.ELECTROLYTE]
        crack = se_counts[Phase.CRACK] + se_counts[Phase.CRACK_LITHIUM]
        iz = pellet.interfaces_z(state)
        return {
            "porosity": float(pores / max(1, pores + solid)),
            "crack_volume_m3": float(crack * v3),
            "crack_li_volume_m3": float(se_counts[Phase.CRACK_LITHIUM] * v3),
            "transparent_volume_m3": float((pores + crack) * v3),
            "crack_volume_by_origin_m3": {k: float(v[0] * v3) for k, v in tally.items()},
            "crack_li_volume_by_origin_m3": {k: float(v[1] * v3) for k, v in tally.items()},
            "electrode_thickness_m": pellet.electrode_thicknesses_m(state),
            "voxel_counts": {p.name: int(total[p]) for p in Phase},
            "electrolyte_counts": {p.name: int(se_counts[p]) for p in Phase},
            "interfaces_z_rows": iz,
            "interfaces_z_m": {k: v * g.voxel_m for k, v in iz.items()},
            "voxel_m": g.voxel_m,
            "state_crack_transparent_volume_m3": (
                state.crack_transparent_volume_m3 if state is not None else 0.0
            ),
            "state_crack_li_volume_m3": state.crack_li_volume_m3 if state is not None else 0.0,
        }


#: Labels :func:`_label_pore_row` writes: pore, solid electrolyte, outside the pellet.
_PORE_LABELS = np.array([Phase.PORE, Phase.ELECTROLYTE, Phase.OUTSIDE], dtype=np.uint8)


@numba.njit(parallel=True, nogil=True, cache=True)
def _label_pore_row(
    g: np.ndarray,
    a: np.float32,
    w: np.float32,
    t0: np.ndarray,
    t1: np.ndarray,
    inside: np.ndarray,
    labels: np.ndarray,
    out: np.ndarray,
) -> None:
    """``out = PORE where g < a·t0 + w·t1, else ELECTROLYTE``; ``OUTSIDE`` off the pellet.

    float32 throughout, each product and the sum rounded as numpy rounds them (no fused
    multiply-add), so the labels equal the numpy expression's; ``labels`` = (pore, solid,
    outside). No GIL: slabs can be labelled while another thread projects.
    """
    ny, nx = g.shape
    pore, solid, outside = labels[0], labels[1], labels[2]
    for y in numba.prange(ny):
        for x in range(nx):
            if inside[y, x]:
                t = a * t0[y, x] + w * t1[y, x]
                out[y, x] = pore if g[y, x] < t else solid
            else:
                out[y, x] = outside


@numba.njit(parallel=True, nogil=True, cache=True)
def _count_labels(lab: np.ndarray) -> np.ndarray:
    """Voxels of each label value (0–255) per row of a (rows, ny, nx) uint8 slab."""
    rows = lab.shape[0]
    counts = np.zeros((rows, 256), dtype=np.int64)
    for i in numba.prange(rows):
        c = counts[i]
        plane = lab[i]
        for y in range(plane.shape[0]):
            for x in range(plane.shape[1]):
                c[plane[y, x]] += 1
    return counts
