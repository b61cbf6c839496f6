"""X-ray projections of a labelled pellet: attenuation tables, a parallel-beam projector, a scan.

The tomography of the in-situ cell (APS 2-BM: 25 keV, 1500 projections over 180°, 0.7 µm
voxels, a ≈2000 × 1143 px detector) is simulated in three steps:

1. :func:`attenuation_coefficients` and :func:`refractive_decrements` turn each phase's
   composition and density (:mod:`insitu.simulators.pellet.phases`) into a linear attenuation
   coefficient μ (1/m) and a refractive-index decrement δ with xraylib.
2. :class:`Projector` computes the line integrals p(θ, z, u) = ∫ μ dl of a slab of labels for
   parallel-beam geometry (rotation axis along z, the detector rows) with the Fourier-slice
   theorem: one type-2 NUFFT (finufft) per row samples the 2-D Fourier transform of the slice on
   radial lines at every angle, a 1-D inverse FFT along each line gives the projection.
3. :mod:`insitu.simulators.imaging.detector` turns line integrals into camera frames (flat field,
   photon noise, dark current, defective columns, propagation phase contrast), and
   :func:`scan_frames` strings all of it into a memory-bounded scan: darks, flats, then the
   projections in chunks of angles.

Geometry (all lengths in voxels inside the projector, in metres at its interface): slice
coordinates x along the last axis (columns) and y along the second-to-last (rows) of a slab
``labels[z, y, x]``, origin at the centre of the slice, which is where the rotation axis
passes. p(θ, u) = ∫∫ μ(x, y) δ(x cos θ + y sin θ − u) dx dy; detector column j sits at
u = j − ((n_det − 1)/2 + center_offset_px), so a positive offset moves the rotation axis's
image towards higher column numbers.
"""

from __future__ import annotations

import math
import os
import tempfile
import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import finufft
import numba
import numpy as np
import xraylib
from scipy import fft as sfft

from ..materials import MaterialPreset
from ..pellet.phases import PHASE_MATERIALS, Phase, PhaseMaterial, electrolyte_material
from .detector import (
    Detector,
    PhaseContrast,
    beam_profile,
    simulate_frames,
)

__all__ = [
    "Detector",
    "FrameChunk",
    "PhaseContrast",
    "Projector",
    "annulus_chord_m",
    "attenuation_coefficients",
    "beam_profile",
    "label_table",
    "phase_materials",
    "refractive_decrements",
    "scan_frames",
    "simulate_frames",
]


#: finufft's ``fftw`` option values (FFTW's planner flags).
_FFTW_MEASURE = 0
_FFTW_ESTIMATE = 64

# --------------------------------------------------------------------------- materials


def phase_materials(material: str | MaterialPreset) -> dict[Phase, PhaseMaterial]:
    """Composition and density of every phase for an electrolyte preset.

    Parameters
    ----------
    material : str or MaterialPreset
        Electrolyte preset (``"A-LPS"``, ``"LPS:0.5LiI"``, ``"LiI-AT"``, ``"LiI-AN"``) or its
        name.

    Returns
    -------
    dict of Phase to PhaseMaterial
    """
    materials = dict(PHASE_MATERIALS)
    materials[Phase.ELECTROLYTE] = electrolyte_material(material)
    return materials


def attenuation_coefficients(
    material: str | MaterialPreset, energy_keV: float = 25.0
) -> dict[Phase, float]:
    """Linear attenuation coefficient μ of every phase (1/m) at a beam energy.

    μ = σ_total(formula, E) · ρ with xraylib's total cross section (coherent + incoherent +
    photoelectric, ``CS_Total_CP``, cm²/g) and the phase's density (g/cm³).

    Parameters
    ----------
    material : str or MaterialPreset
        Electrolyte preset or its name.
    energy_keV : float
        Photon energy (keV).

    Returns
    -------
    dict of Phase to float
        μ in 1/m.
    """
    _check_energy(energy_keV)
    return _attenuation(phase_materials(material), energy_keV)


def _attenuation(phases: dict[Phase, PhaseMaterial], energy_keV: float) -> dict[Phase, float]:
    """μ (1/m) of each phase's material; ``energy_keV`` already checked."""
    return {
        phase: xraylib.CS_Total_CP(m.formula, energy_keV) * m.density_g_cm3 * 100.0
        for phase, m in phases.items()
    }


def refractive_decrements(
    material: str | MaterialPreset, energy_keV: float = 25.0
) -> dict[Phase, float]:
    """Refractive-index decrement δ = 1 − Re(n) of every phase at a beam energy (xraylib).

    Parameters
    ----------
    material : str or MaterialPreset
        Electrolyte preset or its name.
    energy_keV : float
        Photon energy (keV).

    Returns
    -------
    dict of Phase to float
        δ (dimensionless, ≈1e-7 for the solids at 25 keV).
    """
    _check_energy(energy_keV)
    return _decrement(phase_materials(material), energy_keV)


def _decrement(phases: dict[Phase, PhaseMaterial], energy_keV: float) -> dict[Phase, float]:
    """δ of each phase's material; ``energy_keV`` already checked."""
    return {
        phase: 1.0 - xraylib.Refractive_Index_Re(m.formula, energy_keV, m.density_g_cm3)
        for phase, m in phases.items()
    }


def label_table(values: dict[Phase, float]) -> np.ndarray:
    """A lookup table ``table[label] -> value`` (float32, 256 entries, NaN for unknown labels).

    256 entries so that any uint8 label indexes it; the NaN marks labels that are not a
    :class:`Phase`, which :meth:`Projector.project_labels` refuses with a clear message.
    """
    table = np.full(256, np.nan, dtype=np.float32)
    for phase, value in values.items():
        table[int(phase)] = value
    return table


def _check_energy(energy_keV: float) -> None:
    if not 1.0 <= energy_keV <= 200.0:
        raise ValueError(
            f"energy_keV={energy_keV} is outside 1–200 keV; give the beam energy in keV"
        )


def annulus_chord_m(u_m: np.ndarray, r_in_m: float, r_out_m: float) -> np.ndarray:
    """Chord length (m) through the annulus r_in ≤ r ≤ r_out along the line at distance u.

    2√(r_out² − u²) − 2√(r_in² − u²), each root taken as 0 where the line misses that circle.
    """
    u2 = np.square(np.asarray(u_m, dtype=np.float64))
    outer = 2.0 * np.sqrt(np.clip(r_out_m**2 - u2, 0.0, None))
    inner = 2.0 * np.sqrt(np.clip(r_in_m**2 - u2, 0.0, None))
    return outer - inner


# --------------------------------------------------------------------------- projector


def _even_fast_length(n: int) -> int:
    """The smallest even length ≥ ``n`` whose factors are 2, 3, 5, 7 and 11 only (``n`` if so).

    An even length that is fast for the inverse real FFT: rounding a 5-smooth length up to
    even can give 2 × a large prime (2025 → 2026 = 2 · 1013 at full size), which pocketfft
    transforms by Bluestein's algorithm at 4× the cost (23 against 5 ms a 1501-angle row).
    """
    m = sfft.next_fast_len(n)
    while m % 2:
        m = sfft.next_fast_len(m + 1)
    return m


class Projector:
    """Parallel-beam line integrals of slabs of a volume by the Fourier-slice theorem.

    For each z-row the slice μ(y, x) is treated as piecewise constant on its voxels. Its 2-D
    Fourier transform is sampled on radial lines k = ω (cos θ, sin θ) with a type-2 NUFFT
    (finufft, all rows of a batch through the many-vector interface on one set of points);
    the voxel's box shape (sinc in kx and ky) and the detector pixel's box (sinc in ω) are
    applied as factors, and a 1-D inverse real FFT along each line gives the projection sampled
    at the detector pixels. The projection length M is padded beyond the detector and the
    slice's diagonal so the periodic inverse FFT does not wrap the sinogram onto itself.

    Parameters
    ----------
    shape_yx : tuple of int
        (ny, nx) of the slices.
    angles_rad : array_like
        Projection angles θ (radians).
    voxel_size_m : float
        Voxel edge (m); the detector pixel has the same size (magnified pixel = voxel).
    n_det : int, optional
        Detector columns; default nx.
    center_offset_px : float
        Rotation axis's image relative to the detector centre (pixels, may be fractional).
    outer_radius_m : float, optional
        Radius of a homogeneous cylinder around the grid (a pellet wider than the field of
        view). Its annulus outside the grid's inscribed cylinder (radius min(nx, ny)/2 voxels)
        is added analytically; the grid's corners outside the inscribed cylinder are then
        ignored (taken as part of that homogeneous annulus).
    outer_mu : float
        μ (1/m) of that outer cylinder.
    eps : float
        NUFFT tolerance (single precision). 1e-4 keeps the line integrals within 1e-4 of the
        peak, far below the photon noise of any simulated camera.
    upsampfac : float
        finufft's fine-grid oversampling; 1.25 with eps 1e-4 measured 2.7× faster than
        2.0 with 1e-5 on 2000² slices (0.16 vs 0.43 s per row of 1500 angles, 2 cores).
    rows_per_batch : int
        Rows transformed together, two per complex transform (memory ≈ rows · n_angles · M ·
        8 bytes).
    nthreads : int, optional
        finufft threads; default all cores.
    measure_fft : bool
        Plan finufft's fine-grid FFTs with FFTW_MEASURE instead of FFTW_ESTIMATE: ≈ 3 s of
        planning once (2000² slices), then ≈ 0.04 s of CPU less a row (the 2500² FFTs of
        the estimated plan are twice as slow). Worth it for a full-size scan (858 rows), not
        for a few rows; the line integrals differ by float32 rounding only (≈ 1e-7).
    """

    def __init__(
        self,
        shape_yx: tuple[int, int],
        angles_rad: Sequence[float] | np.ndarray,
        *,
        voxel_size_m: float,
        n_det: int | None = None,
        center_offset_px: float = 0.0,
        outer_radius_m: float | None = None,
        outer_mu: float = 0.0,
        eps: float = 1e-4,
        upsampfac: float = 1.25,
        rows_per_batch: int = 8,
        nthreads: int | None = None,
        measure_fft: bool = False,
    ) -> None:
        ny, nx = (int(s) for s in shape_yx)
        if ny < 2 or nx < 2:
            raise ValueError(f"slices must be at least 2 × 2 voxels, got {shape_yx}")
        if voxel_size_m <= 0:
            raise ValueError(f"voxel_size_m must be > 0 (metres), got {voxel_size_m}")
        self.shape_yx = (ny, nx)
        self.angles = np.asarray(angles_rad, dtype=np.float64).ravel()
        if self.angles.size == 0:
            raise ValueError("give at least one projection angle")
        self.voxel_size_m = float(voxel_size_m)
        self.n_det = int(n_det) if n_det is not None else nx
        self.center_offset_px = float(center_offset_px)
        self.rows_per_batch = max(1, int(rows_per_batch))
        self.r_in_px = min(nx, ny) / 2.0
        if outer_radius_m is not None and outer_radius_m < self.r_in_px * self.voxel_size_m:
            raise ValueError(
                f"outer_radius_m={outer_radius_m} is smaller than the grid's inscribed radius "
                f"{self.r_in_px * self.voxel_size_m:.3g} m; "
                "leave it None for a pellet inside the grid"
            )
        self.outer_radius_m = outer_radius_m
        self.outer_mu = float(outer_mu)

        # u of every detector column, in voxels from the rotation axis.
        c_axis = (self.n_det - 1) / 2.0 + self.center_offset_px
        u0 = -c_axis
        self.u_px = u0 + np.arange(self.n_det)
        # No wrap-around: the support |u| ≤ R of the projection, shifted by ±M, must miss the
        # detector's [u0, u0 + n_det). Margin of a few pixels for the pixel sinc's tails.
        # With an outer cylinder the grid's corners beyond the inscribed one are zeroed (and
        # added analytically), so the support is that cylinder: a 17 % shorter window at full
        # size (2000 → fewer radial samples and a shorter inverse FFT).
        if outer_radius_m is not None:
            r_support = self.r_in_px + 1.0
        else:
            r_support = math.hypot(nx / 2.0, ny / 2.0)
        reach = max(abs(u0), abs(u0 + self.n_det))
        # The inverse FFT's window must also hold the whole detector row.
        m = max(math.ceil(r_support + reach), self.n_det) + 8
        m = sfft.next_fast_len(m + (m % 2), real=True)
        # Even, and still fast: 2025 + 1 = 2026 = 2 · 1013 at full size becomes 2048.
        self.m = m = _even_fast_length(m + m % 2)
        omega = 2.0 * np.pi * np.arange(m // 2 + 1) / m  # rad per voxel, 0 … π
        kx = np.cos(self.angles)[:, None] * omega[None, :]
        ky = np.sin(self.angles)[:, None] * omega[None, :]

        # finufft's mode m of an axis of even length n sits at index m + n//2, i.e. at
        # x = m + n//2 − (n−1)/2 from the slice centre: a half-voxel shift for even n.
        sx = nx // 2 - (nx - 1) / 2.0
        sy = ny // 2 - (ny - 1) / 2.0
        factor = (
            np.exp(-1j * (kx * sx + ky * sy))
            * np.sinc(kx / (2 * np.pi))  # voxel box along x
            * np.sinc(ky / (2 * np.pi))  # voxel box along y
            * np.sinc(omega / (2 * np.pi))[None, :]  # detector pixel box
            * np.exp(1j * omega * u0)[None, :]  # sample at the detector columns' u
            * self.voxel_size_m  # ∫ μ dl in metres
        )
        self._factor = factor.astype(np.complex64)
        self._eps = float(eps)
        self._upsampfac = float(upsampfac)
        self._nthreads = nthreads
        self.measure_fft = bool(measure_fft)
        # Points are the same for every row: one plan per batch size, set once.
        # Two real rows a, b go through one complex transform c = a + i·b, sampled at k and
        # at −k: A(k) = (C(k) + C̄(−k))/2, B(k) = (C(k) − C̄(−k))/(2i) (real inputs have
        # Hermitian spectra). Half the fine-grid FFTs, the same interpolation work: ≈ 30 %
        # less per row at full size.
        self._n_points = kx.size
        self._points = (  # finufft axis 0 = slice rows = y
            np.concatenate([ky.ravel(), -ky.ravel()]),
            np.concatenate([kx.ravel(), -kx.ravel()]),
        )
        self._plans: dict[int, Any] = {}
        # Buffers kept from batch to batch: fresh arrays of this size are mapped anew by the
        # allocator each time and every page faults on first touch (≈ 0.4 GB a batch).
        self._buffers: dict[str, np.ndarray] = {}

        if outer_radius_m is not None:
            self._outer_chord_m = annulus_chord_m(
                self.u_px * self.voxel_size_m, self.r_in_px * self.voxel_size_m, outer_radius_m
            ).astype(np.float32)
            yy = np.arange(ny) - (ny - 1) / 2.0
            xx = np.arange(nx) - (nx - 1) / 2.0
            self._inside = (yy[:, None] ** 2 + xx[None, :] ** 2) <= self.r_in_px**2
        else:
            self._outer_chord_m = None
            self._inside = None

    def _plan(self, n_trans: int) -> Any:
        plan = self._plans.get(n_trans)
        if plan is None:
            # Measured for full batches only: the odd partial batch is not worth 3 s.
            measure = self.measure_fft and n_trans == (self.rows_per_batch + 1) // 2
            kwargs: dict[str, Any] = {}
            if self._nthreads is not None:
                kwargs["nthreads"] = self._nthreads
            plan = finufft.Plan(
                2,
                self.shape_yx,
                n_trans,
                eps=self._eps,
                isign=-1,
                dtype="complex64",
                upsampfac=self._upsampfac,
                fftw=_FFTW_MEASURE if measure else _FFTW_ESTIMATE,
                **kwargs,
            )
            plan.setpts(self._points[0].astype(np.float32), self._points[1].astype(np.float32))
            self._plans[n_trans] = plan
        return plan

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """A kept array of ``shape`` (the first axis may shrink: a view of the kept one)."""
        buf = self._buffers.get(name)
        if buf is None or buf.shape[1:] != shape[1:] or buf.shape[0] < shape[0]:
            buf = np.empty(shape, dtype=dtype)
            self._buffers[name] = buf
        return buf[: shape[0]]

    def _lines(self, k: int, fill: Callable[[np.ndarray], None]) -> np.ndarray:
        """Projections (rows, angles, M) of ``k`` rows that ``fill`` pairs into a batch.

        ``fill(batch)`` writes rows 2p + i·(2p + 1) into ``batch[p]`` (zero outside the mask,
        an odd last row paired with zeros). Kept buffers throughout.
        """
        pairs = (k + 1) // 2
        n_ang = self.angles.size
        batch = self._buffer("batch", (pairs, *self.shape_yx), np.complex64)
        fill(batch)
        c = self._buffer("points", (pairs, 2 * self._n_points), np.complex64)
        self._plan(pairs).execute(batch, out=c)
        spectra = self._buffer("spectra", (k, n_ang, self.m // 2 + 1), np.complex64)
        _unpair(c.reshape(pairs, 2, n_ang, -1), spectra)
        # numpy's complex64 product (its SIMD loop rounds differently from a compiled one):
        # the same line integrals, bit for bit, as before the kept buffers.
        spectra *= self._factor[None]
        lines = self._buffer("lines", (k, n_ang, self.m), np.float32)
        # numpy's irfft writes into a kept array (scipy's returns a new one; the same
        # pocketfft, the same numbers), in two threads over the rows.
        halves = [(0, k)] if k < 2 else [(0, k // 2), (k // 2, k)]
        if len(halves) == 1 or self._pool() is None:
            np.fft.irfft(spectra, n=self.m, axis=-1, out=lines)
        else:
            list(
                self._pool().map(  # type: ignore[union-attr]
                    lambda h: np.fft.irfft(
                        spectra[h[0] : h[1]], n=self.m, axis=-1, out=lines[h[0] : h[1]]
                    ),
                    halves,
                )
            )
        return lines

    def _pool(self) -> ThreadPoolExecutor | None:
        """Two threads for the inverse FFTs (None on one core)."""
        if (self._nthreads or os.cpu_count() or 1) < 2:
            return None
        pool = getattr(self, "_fft_pool", None)
        if pool is None:
            pool = self._fft_pool = ThreadPoolExecutor(2, thread_name_prefix="projector-fft")
            weakref.finalize(self, pool.shutdown, wait=False)
        return pool

    def _project_rows(
        self,
        nz: int,
        fill: Callable[[int, int, np.ndarray], None],
        out: np.ndarray | None,
        outer_value: float | None,
    ) -> np.ndarray:
        """Line integrals of ``nz`` rows, batch by batch, ``fill(z0, z1, batch)`` pairing."""
        n_ang = self.angles.size
        if out is None:
            out = np.empty((n_ang, nz, self.n_det), dtype=np.float32)
        elif out.shape != (n_ang, nz, self.n_det):
            raise ValueError(f"out has shape {out.shape}, expected {(n_ang, nz, self.n_det)}")
        for z0 in range(0, nz, self.rows_per_batch):
            z1 = min(nz, z0 + self.rows_per_batch)
            lines = self._lines(z1 - z0, lambda batch, a=z0, b=z1: fill(a, b, batch))
            out[:, z0:z1, :] = lines[..., : self.n_det].transpose(1, 0, 2)
        if self._outer_chord_m is not None:
            value = self.outer_mu if outer_value is None else float(outer_value)
            out += (value * self._outer_chord_m)[None, None, :]
        return out

    def _mask(self) -> np.ndarray:
        """Voxels projected: the inscribed cylinder with an outer cylinder, else all."""
        if self._inside is None:
            self._inside = np.ones(self.shape_yx, bool)
        return self._inside

    def project(
        self, mu: np.ndarray, out: np.ndarray | None = None, outer_value: float | None = None
    ) -> np.ndarray:
        """Line integrals ∫ μ dl of a slab of attenuation coefficients.

        Parameters
        ----------
        mu : ndarray, shape (nz, ny, nx) or (ny, nx)
            Attenuation coefficient (1/m) per voxel.
        out : ndarray, shape (n_angles, nz, n_det), optional
            Where to write (float32), e.g. a slice of a larger sinogram array.
        outer_value : float, optional
            Value per metre of the outer cylinder for this call (default ``outer_mu``), e.g.
            its δ when projecting δ.

        Returns
        -------
        ndarray, shape (n_angles, nz, n_det), float32
            Line integrals (dimensionless: μ times path length).
        """
        mu = np.asarray(mu)
        if mu.ndim == 2:
            mu = mu[None]
        if mu.ndim != 3 or mu.shape[1:] != self.shape_yx:
            raise ValueError(f"expected slices of shape {self.shape_yx}, got {mu.shape}")
        inside = self._mask()

        def fill(z0: int, z1: int, batch: np.ndarray) -> None:
            _pair(np.ascontiguousarray(mu[z0:z1], dtype=np.float32), inside, batch)

        return self._project_rows(mu.shape[0], fill, out, outer_value)

    def project_labels(
        self,
        labels: np.ndarray,
        table: np.ndarray,
        out: np.ndarray | None = None,
        outer_value: float | None = None,
    ) -> np.ndarray:
        """Line integrals of ``table[labels]`` (e.g. μ or δ per phase, see :func:`label_table`).

        Parameters
        ----------
        labels : ndarray of uint8, shape (nz, ny, nx) or (ny, nx)
            Phase labels.
        table : ndarray, shape (256,)
            Value per label.
        out, outer_value : optional
            See :meth:`project`.

        Returns
        -------
        ndarray, shape (n_angles, nz, n_det), float32
        """
        labels = np.asarray(labels)
        if labels.dtype != np.uint8:
            raise ValueError(f"labels must be uint8 phase labels, got {labels.dtype}")
        if labels.ndim == 2:
            labels = labels[None]
        if labels.ndim != 3 or labels.shape[1:] != self.shape_yx:
            raise ValueError(f"expected slices of shape {self.shape_yx}, got {labels.shape}")
        values = np.full(256, np.nan, dtype=np.float32)
        given = np.asarray(table, dtype=np.float32).ravel()[:256]
        values[: given.size] = given
        if _any_label(labels, np.isnan(values)):
            bad = sorted(set(np.unique(labels[np.isnan(values[labels])]).tolist()))
            raise ValueError(f"labels {bad} are not phases; valid: {[int(p) for p in Phase]}")
        inside = self._mask()

        def fill(z0: int, z1: int, batch: np.ndarray) -> None:
            # The table looked up while pairing: no float slab of values in between.
            _pair_labels(np.ascontiguousarray(labels[z0:z1]), values, inside, batch)

        return self._project_rows(labels.shape[0], fill, out, outer_value)


@numba.njit(parallel=True, nogil=True, cache=True)
def _pair(rows: np.ndarray, inside: np.ndarray, batch: np.ndarray) -> None:
    """``batch[p] = rows[2p] + i·rows[2p + 1]`` inside the mask, 0 outside (and no partner)."""
    k, ny, nx = rows.shape
    for p in numba.prange(batch.shape[0]):
        two = 2 * p + 1 < k
        for y in range(ny):
            for x in range(nx):
                if inside[y, x]:
                    im = rows[2 * p + 1, y, x] if two else np.float32(0.0)
                    batch[p, y, x] = complex(rows[2 * p, y, x], im)
                else:
                    batch[p, y, x] = 0.0


@numba.njit(parallel=True, nogil=True, cache=True)
def _pair_labels(labels: np.ndarray, table: np.ndarray, inside: np.ndarray, batch: np.ndarray):
    """:func:`_pair` of ``table[labels]``: the lookup done while pairing, in one pass.

    Parallel over the frame's rows (y), so a batch of one pair uses every core too.
    """
    k, ny, nx = labels.shape
    for y in numba.prange(ny):
        for p in range(batch.shape[0]):
            two = 2 * p + 1 < k
            for x in range(nx):
                if inside[y, x]:
                    re = table[labels[2 * p, y, x]]
                    im = table[labels[2 * p + 1, y, x]] if two else np.float32(0.0)
                    batch[p, y, x] = complex(re, im)
                else:
                    batch[p, y, x] = 0.0


@numba.njit(parallel=True, nogil=True, cache=True)
def _any_label(labels: np.ndarray, flagged: np.ndarray) -> bool:
    """Whether any label of the slab is flagged (``flagged[label]``), e.g. not a phase."""
    k, ny, nx = labels.shape
    hits = 0
    for y in numba.prange(ny):
        for z in range(k):
            for x in range(nx):
                if flagged[labels[z, y, x]]:
                    hits += 1
    return hits > 0


@numba.njit(parallel=True, nogil=True, cache=True)
def _unpair(c: np.ndarray, out: np.ndarray) -> None:
    """Spectra of the paired rows: A = (C(k) + C̄(−k))/2, B = (C(k) − C̄(−k))/(2i).

    ``c``: (pairs, 2, angles, ω) complex64, the transforms at +k and −k; ``out``: (rows,
    angles, ω), rows 2p and 2p + 1 from pair p (an odd last row has no partner). One pass,
    no temporaries; parallel over angles, so a batch of one pair uses every core too.
    """
    pairs, _, n_ang, n = c.shape
    rows = out.shape[0]
    half = np.float32(0.5)
    for a in numba.prange(n_ang):
        for p in range(pairs):
            two = 2 * p + 1 < rows
            for j in range(n):
                plus = c[p, 0, a, j]
                minus = np.conj(c[p, 1, a, j])
                out[2 * p, a, j] = (plus + minus) * half
                if two:
                    d = plus - minus  # B = d / (2i) = (d.imag − i·d.real) / 2
                    out[2 * p + 1, a, j] = np.complex64(complex(d.imag * half, -d.real * half))


# --------------------------------------------------------------------------- scan


@dataclass(frozen=True)
class FrameChunk:
    """A chunk of camera frames from :func:`scan_frames`.

    Attributes
    ----------
    kind : str
        ``"dark"``, ``"flat"`` or ``"projection"``.
    frames : ndarray of uint16, shape (n, nz, n_det)
    theta_rad : ndarray or None
        Angles of projection frames; None for darks and flats.
    first_index : int
        Index of the first frame within its kind.
    """

    kind: str
    frames: np.ndarray
    theta_rad: np.ndarray | None
    first_index: int


SlabSource = np.ndarray | Any | Callable[[int, int], np.ndarray]


def scan_frames(
    source: SlabSource,
    angles_rad: Sequence[float] | np.ndarray,
    *,
    voxel_size_m: float,
    material: str | MaterialPreset,
    energy_keV: float = 25.0,
    n_rows: int | None = None,
    detector: Detector | None = None,
    n_darks: int = 10,
    n_flats: int = 10,
    angles_per_chunk: int = 100,
    rows_per_slab: int = 16,
    n_det: int | None = None,
    center_offset_px: float = 0.0,
    outer_radius_m: float | None = None,
    ram_limit_bytes: int = 1 << 30,
    workdir: str | None = None,
) -> Iterator[FrameChunk]:
    """Simulate a tomography scan: darks, flats, then projections in chunks of angles.

    Line integrals are computed slab by slab of rows (all angles at once, which is what the
    Fourier-slice projector is fast at) into a float32 sinogram store. It stays in memory when
    smaller than ``ram_limit_bytes`` and is otherwise a temporary memory-mapped file (≈14 GB at
    full APS size, deleted afterwards), so the RAM in use is bounded by one slab plus one chunk
    of frames, never all 1500 full-size frames.

    Parameters
    ----------
    source : ndarray, array-like with ``shape`` and slicing, or callable
        The uint8 label volume (nz, ny, nx): an ndarray, a memmap, an h5py/zarr dataset, or a
        callable ``(z0, z1) -> labels[z0:z1]`` (then give ``n_rows``).
    angles_rad : array_like
        Projection angles (radians).
    voxel_size_m : float
        Voxel (and detector pixel) size (m).
    material : str or MaterialPreset
        Electrolyte preset or its name, for the attenuation table (and δ for phase contrast).
    energy_keV : float
        Beam energy (keV).
    n_rows : int, optional
        Number of rows when ``source`` is a callable.
    detector : Detector, optional
        Camera model; default ``Detector((nz, n_det))`` with seed 0.
    n_darks, n_flats : int
        Number of dark and flat frames.
    angles_per_chunk : int
        Projection frames per yielded chunk.
    rows_per_slab : int
        Rows read from ``source`` and projected at a time.
    n_det, center_offset_px, outer_radius_m : optional
        Passed to :class:`Projector`; the outer cylinder gets the electrolyte's μ.
    ram_limit_bytes : int
        Above this size the sinogram store goes to a temporary file.
    workdir : str, optional
        Directory of that temporary file.

    Yields
    ------
    FrameChunk
    """
    if callable(source) and not hasattr(source, "shape"):
        if n_rows is None:
            raise ValueError("give n_rows when source is a callable (z0, z1) -> labels slab")
        read = source
        first = np.asarray(read(0, 1))
        nz, (ny, nx) = int(n_rows), first.shape[-2:]
    else:
        shape = source.shape
        if len(shape) != 3:
            raise ValueError(f"source must be a (nz, ny, nx) label volume, got shape {shape}")
        nz, ny, nx = (int(s) for s in shape)

        def read(z0: int, z1: int) -> np.ndarray:
            return np.asarray(source[z0:z1])

    angles = np.asarray(angles_rad, dtype=np.float64).ravel()
    _check_energy(energy_keV)
    phases = phase_materials(material)  # the material resolved once, for μ and δ
    mu = _attenuation(phases, energy_keV)
    projector = Projector(
        (ny, nx),
        angles,
        voxel_size_m=voxel_size_m,
        n_det=n_det,
        center_offset_px=center_offset_px,
        outer_radius_m=outer_radius_m,
        outer_mu=mu[Phase.ELECTROLYTE],
    )
    n_det = projector.n_det
    if detector is None:
        detector = Detector((nz, n_det))
    if detector.shape != (nz, n_det):
        raise ValueError(
            f"detector shape {detector.shape} does not match (nz, n_det)={(nz, n_det)}"
        )

    want_delta = detector.phase_contrast is not None
    mu_table = label_table(mu)
    delta_table = label_table(_decrement(phases, energy_keV)) if want_delta else None

    yield FrameChunk("dark", detector.darks(n_darks), None, 0)
    yield FrameChunk("flat", detector.flats(n_flats), None, 0)

    shape = (angles.size, nz, n_det)
    nbytes = int(np.prod(shape)) * 4 * (2 if want_delta else 1)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        stores = []
        for name in ["mu", "delta"][: 1 + want_delta]:
            if nbytes <= ram_limit_bytes:
                stores.append(np.empty(shape, dtype=np.float32))
            else:
                path = os.path.join(tmp, f"{name}.f32")
                stores.append(np.lib.format.open_memmap(path, "w+", np.float32, shape))
        for z0 in range(0, nz, rows_per_slab):
            z1 = min(nz, z0 + rows_per_slab)
            slab = read(z0, z1)
            projector.project_labels(slab, mu_table, out=stores[0][:, z0:z1])
            if delta_table is not None:
                # The outer annulus is electrolyte: its δ, not its μ.
                projector.project_labels(
                    slab,
                    delta_table,
                    out=stores[1][:, z0:z1],
                    outer_value=float(delta_table[int(Phase.ELECTROLYTE)]),
                )
        for a0 in range(0, angles.size, angles_per_chunk):
            a1 = min(angles.size, a0 + angles_per_chunk)
            frames = detector.projections(
                np.asarray(stores[0][a0:a1]),
                first_index=a0,
                delta_integrals=np.asarray(stores[1][a0:a1]) if want_delta else None,
            )
            yield FrameChunk("projection", frames, angles[a0:a1], a0)
        del stores
