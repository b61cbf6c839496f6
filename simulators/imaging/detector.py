"""Camera model for simulated tomography: line integrals → uint16 frames, flats and darks.

What a frame holds, pixel by pixel (ADU, ``gain`` ADU per detected photon):

    projection = gain · Poisson(N0 · b(z, u) · g(z, u) · c(u) · T(z, u)) + D(z, u) + o(u) + ε
    flat       = gain · Poisson(N0 · b(z, u) · g(z, u))                   + D(z, u)        + ε
    dark       =                                                            D(z, u)        + ε

- N0 ``flat_photons``: photons per pixel per exposure at the beam's peak.
- b the beam profile: a vertical Gaussian-like envelope (the undulator beam is narrow
  vertically) times a slow horizontal ripple (scintillator and optics), peak 1.
- g a fixed pixel gain non-uniformity (≈1 %), present in flats too, so flat-field correction
  removes it.
- D the dark level (offset + fixed-pattern), ε Gaussian read noise.
- c, o: a few *defective columns* whose gain and offset drift between the flats and the
  projections (c ≠ 1, o ≠ 0 only in projections). Flat-field correction cannot remove them:
  they are the stripes in the sinogram that become ring artefacts.
- T the transmission: exp(−∫μ dl) (Beer–Lambert), or, with phase contrast, the intensity after
  Fresnel propagation of the exit wave (see :func:`fresnel_intensity`).
- Optional zingers: rare bright spikes (scattered high-energy photons hitting the sensor).

Every frame draws from its own generator keyed by (seed, kind, frame index), so the same seed
gives the same frames however a scan is chunked.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np

__all__ = [
    "Detector",
    "PhaseContrast",
    "beam_profile",
    "fresnel_intensity",
    "simulate_frames",
    "wavelength_m",
]

_HC_KEV_M = 1.239841984e-9  # h·c in keV·m

_DARK, _FLAT, _PROJ, _FIXED = 1, 2, 3, 4


def wavelength_m(energy_keV: float) -> float:
    """X-ray wavelength (m) at a photon energy (keV)."""
    return _HC_KEV_M / energy_keV


@dataclass(frozen=True)
class PhaseContrast:
    """Propagation-based phase contrast: sample-to-detector distance, energy, pixel size.

    Attributes
    ----------
    distance_m : float
        Propagation distance from the sample to the scintillator (m).
    energy_keV : float
        Photon energy (keV).
    pixel_m : float
        Effective (magnified) pixel size (m).
    delta_over_mu : float, optional
        δ/μ (m) used when no δ line integrals are given: the homogeneous-object assumption
        under which Paganin's retrieval is exact in the near-field limit.
    """

    distance_m: float
    energy_keV: float
    pixel_m: float
    delta_over_mu: float | None = None

    @classmethod
    def coerce(cls, value: PhaseContrast | Sequence[float] | None) -> PhaseContrast | None:
        """Accept a PhaseContrast, a (distance_m, energy_keV, pixel_m[, δ/μ]) tuple or None."""
        if value is None or isinstance(value, PhaseContrast):
            return value
        values = tuple(float(v) for v in value)
        if len(values) not in (3, 4):
            raise ValueError(
                "phase_contrast must be (distance_m, energy_keV, pixel_m[, delta_over_mu])"
            )
        return cls(*values)


def beam_profile(
    nz: int,
    n_det: int,
    *,
    seed: int = 0,
    vertical_sigma_frac: float = 0.6,
    horizontal_ripple: float = 0.04,
) -> np.ndarray:
    """A smooth flat-field beam profile, peak 1.

    Parameters
    ----------
    nz, n_det : int
        Detector rows and columns.
    seed : int
        Seed of the ripple's phases and the vertical centre's small offset.
    vertical_sigma_frac : float
        Gaussian σ of the vertical envelope, as a fraction of the field's height.
    horizontal_ripple : float
        Relative amplitude of the slow horizontal modulation.

    Returns
    -------
    ndarray, shape (nz, n_det), float64
    """
    rng = np.random.default_rng([seed, _FIXED, 0])
    z = (np.arange(nz) - (nz - 1) / 2.0) / max(nz, 1)
    z0 = rng.uniform(-0.05, 0.05)
    vertical = np.exp(-0.5 * ((z - z0) / vertical_sigma_frac) ** 2)
    u = np.arange(n_det) / max(n_det, 1)
    ripple = np.zeros(n_det)
    # A few low harmonics (periods ≥ 1/4 of the width): smooth, like real flats.
    for harmonic in range(1, 5):
        ripple += rng.normal() / harmonic * np.cos(2 * np.pi * harmonic * u + rng.uniform(0, 6.3))
    ripple *= horizontal_ripple / max(np.abs(ripple).max(), 1e-12)
    profile = vertical[:, None] * (1.0 + ripple)[None, :]
    return profile / profile.max()


# The Detector's ``beam_profile`` parameter shadows the function's name inside __init__.
_default_beam_profile = beam_profile


def fresnel_intensity(
    transmission: np.ndarray,
    phase_path_m: np.ndarray,
    distance_m: float,
    energy_keV: float,
    pixel_m: float,
) -> np.ndarray:
    """Intensity after free-space (Fresnel) propagation of the exit wave, for flat illumination.

    The exit wave is ψ = √T · exp(−i k Φ) with T = exp(−∫μ dl), k = 2π/λ and Φ = ∫δ dl (m).
    It propagates over ``distance_m`` with the paraxial Fresnel propagator, applied in Fourier
    space as exp(−iπλd|f|²); the intensity is |ψ_d|². The propagator is unitary, so the mean
    intensity is conserved (up to what crosses the frame's edges, which are padded by
    continuing T and Φ linearly). In the near-field limit this reduces to the transport-of-intensity
    equation I_d = I_0 + d ∇·(I_0 ∇Φ), and for a homogeneous object (Φ = (δ/μ) ∫μ dl) to
    I_d = (1 − d (δ/μ) ∇²) I_0, which is exactly the forward model that Paganin's single-distance
    retrieval inverts.

    Parameters
    ----------
    transmission : ndarray, shape (..., nz, n_det)
        Absorption-only transmission exp(−∫μ dl).
    phase_path_m : ndarray, same shape
        ∫δ dl (m).
    distance_m, energy_keV, pixel_m : float
        Propagation distance (m), photon energy (keV), pixel size (m).

    Returns
    -------
    ndarray, same shape, float64
        Intensity at the detector relative to the incident beam.
    """
    if distance_m < 0 or pixel_m <= 0:
        raise ValueError("phase contrast needs distance_m ≥ 0 and pixel_m > 0 (metres)")
    transmission = np.asarray(transmission, dtype=np.float64)
    if distance_m == 0:
        return transmission.copy()
    lam = wavelength_m(energy_keV)
    k = 2 * np.pi / lam
    # Pad several Fresnel lengths √(λd) so the periodic FFT does not fold one edge onto the
    # other. The frame is a window onto a wider object (a truncated pellet): continuing T and
    # Φ linearly (odd reflection) keeps their slopes across the border, where a constant
    # (edge) padding would put a kink that propagates into a false fringe.
    pad = math.ceil(4 * math.sqrt(lam * distance_m) / pixel_m) + 4
    widths = [(0, 0)] * (transmission.ndim - 2) + [(pad, pad), (pad, pad)]
    t_pad = np.pad(transmission, widths, mode="reflect", reflect_type="odd")
    phi_pad = np.pad(
        np.asarray(phase_path_m, dtype=np.float64), widths, mode="reflect", reflect_type="odd"
    )
    psi = np.sqrt(np.clip(t_pad, 0.0, None)) * np.exp(-1j * k * phi_pad)
    fz = np.fft.fftfreq(psi.shape[-2], d=pixel_m)
    fx = np.fft.fftfreq(psi.shape[-1], d=pixel_m)
    kernel = np.exp(-1j * np.pi * lam * distance_m * (fz[:, None] ** 2 + fx[None, :] ** 2))
    psi_d = np.fft.ifft2(np.fft.fft2(psi, axes=(-2, -1)) * kernel, axes=(-2, -1))
    intensity = np.abs(psi_d) ** 2
    return intensity[..., pad:-pad, pad:-pad]


class Detector:
    """A scientific CMOS camera behind a scintillator, with its beam, as a frame generator.

    Parameters
    ----------
    shape : tuple of int
        (nz, n_det): detector rows and columns.
    flat_photons : float
        Detected photons per pixel per exposure at the beam's peak (10⁴ ≈ a 100 ms exposure
        at 2-BM with a 2× objective, well inside 16 bits).
    beam_profile : ndarray, optional
        (nz, n_det) relative beam intensity; default :func:`beam_profile` with this seed.
    dark_counts : float
        Mean dark level (ADU): offset plus dark current over the exposure.
    read_noise : float
        Gaussian read noise (ADU rms).
    gain : float
        ADU per detected photon.
    pixel_gain_spread : float
        Relative rms of the fixed pixel gain non-uniformity (removed by flat-field correction).
    ring_defects : int or sequence of int
        How many defective columns (placed at random with the seed), or which.
    ring_gain_error : float
        Largest relative gain drift of a defective column between flats and projections.
    ring_offset_adu : float
        Largest offset drift (ADU) of a defective column.
    zinger_rate : float
        Zingers per pixel per projection frame (0 for none; ≈1e-6 is typical).
    zinger_adu : float
        Typical zinger height (ADU).
    phase_contrast : PhaseContrast or tuple, optional
        Propagation phase contrast (distance_m, energy_keV, pixel_m[, δ/μ]); None for pure
        absorption.
    seed : int
        Seed of every random draw (fixed patterns and per-frame noise).
    """

    def __init__(
        self,
        shape: tuple[int, int],
        *,
        flat_photons: float = 1.0e4,
        beam_profile: np.ndarray | None = None,
        dark_counts: float = 100.0,
        read_noise: float = 2.5,
        gain: float = 1.0,
        pixel_gain_spread: float = 0.01,
        ring_defects: int | Sequence[int] = 4,
        ring_gain_error: float = 0.05,
        ring_offset_adu: float = 20.0,
        zinger_rate: float = 0.0,
        zinger_adu: float = 5000.0,
        phase_contrast: PhaseContrast | Sequence[float] | None = None,
        seed: int = 0,
    ) -> None:
        nz, n_det = (int(s) for s in shape)
        self.shape = (nz, n_det)
        if flat_photons <= 0:
            raise ValueError(f"flat_photons must be > 0, got {flat_photons}")
        self.flat_photons = float(flat_photons)
        self.dark_counts = float(dark_counts)
        self.read_noise = float(read_noise)
        self.gain = float(gain)
        self.zinger_rate = float(zinger_rate)
        self.zinger_adu = float(zinger_adu)
        self.phase_contrast = PhaseContrast.coerce(phase_contrast)
        self.seed = int(seed)
        if beam_profile is None:
            profile = _default_beam_profile(nz, n_det, seed=seed)
        else:
            profile = np.asarray(beam_profile, dtype=np.float64)
            if profile.shape != self.shape:
                raise ValueError(f"beam_profile has shape {profile.shape}, expected {self.shape}")
        rng = np.random.default_rng([self.seed, _FIXED, 1])
        pixel_gain = 1.0 + pixel_gain_spread * rng.standard_normal(self.shape)
        # Expected photons in a flat, per pixel.
        self.flat_expected = self.flat_photons * profile * pixel_gain
        # Fixed-pattern dark level (a few ADU of column/pixel structure).
        self.dark_level = self.dark_counts + 1.0 * rng.standard_normal(self.shape)
        if isinstance(ring_defects, int):
            columns = rng.choice(n_det, size=min(ring_defects, n_det), replace=False)
        else:
            columns = np.asarray(list(ring_defects), dtype=int)
            if columns.size and (columns.min() < 0 or columns.max() >= n_det):
                raise ValueError(f"ring defect columns must lie in 0…{n_det - 1}")
        self.defect_columns = np.sort(columns)
        # Drifts of at least a third of the maximum, either sign: visible, not subtle.
        sign = rng.choice([-1.0, 1.0], size=columns.size)
        self.column_gain = np.ones(n_det)
        self.column_gain[self.defect_columns] += (
            sign * ring_gain_error * rng.uniform(1 / 3, 1.0, columns.size)
        )
        self.column_offset = np.zeros(n_det)
        self.column_offset[self.defect_columns] = ring_offset_adu * rng.uniform(
            -1.0, 1.0, columns.size
        )

    def _readout(self, photons: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """ADU = gain · photons + dark level + read noise, rounded and clipped to uint16."""
        adu = (
            self.gain * photons
            + self.dark_level
            + self.read_noise * rng.standard_normal(photons.shape)
        )
        return np.clip(np.rint(adu), 0, 65535).astype(np.uint16)

    def _fast_readout(
        self,
        counts: np.ndarray,
        rng: np.random.Generator,
        drift: np.ndarray | None = None,
        offset: np.ndarray | None = None,
    ) -> np.ndarray:
        """:meth:`_readout` of ``counts · drift + offset`` (per column) in one compiled pass.

        The same draws and the same float64 arithmetic as the numpy expressions, so the same
        frames, without the nine temporary frames they allocate (≈ 45 ms a full-size frame).
        """
        n_det = self.shape[1]
        drift = np.ones(n_det) if drift is None else drift
        offset = np.zeros(n_det) if offset is None else offset
        out = np.empty(counts.shape, dtype=np.uint16)
        # The read noise drawn inside the kernel, pixel by pixel in the order numpy fills
        # rng.standard_normal(shape) (numba's Generator methods are numpy's algorithms: the
        # same numbers), without the frame of float64 noise; 2.5× faster than numpy's fill.
        _readout_kernel(
            counts, drift, offset, self.gain, self.dark_level, self.read_noise, rng, out
        )
        return out

    def darks(self, n: int, first_index: int = 0) -> np.ndarray:
        """``n`` dark frames (shutter closed), uint16 (n, nz, n_det)."""
        out = np.empty((n, *self.shape), dtype=np.uint16)
        for i in range(n):
            rng = np.random.default_rng([self.seed, _DARK, first_index + i])
            out[i] = self._fast_readout(np.zeros(self.shape, dtype=np.int64), rng)
        return out

    def flats(self, n: int, first_index: int = 0) -> np.ndarray:
        """``n`` flat (white) frames, sample out of the beam, uint16 (n, nz, n_det)."""
        out = np.empty((n, *self.shape), dtype=np.uint16)
        for i in range(n):
            rng = np.random.default_rng([self.seed, _FLAT, first_index + i])
            out[i] = self._fast_readout(rng.poisson(self.flat_expected), rng)
        return out

    def intensity(
        self, line_integrals: np.ndarray, delta_integrals: np.ndarray | None = None
    ) -> np.ndarray:
        """Relative intensity at the detector (flat illumination): Beer–Lambert or propagated.

        Parameters
        ----------
        line_integrals : ndarray, shape (..., nz, n_det)
            ∫μ dl.
        delta_integrals : ndarray, optional
            ∫δ dl (m), for phase contrast; otherwise δ/μ of :class:`PhaseContrast` is used.

        Returns
        -------
        ndarray, float64, same shape
        """
        line_integrals = np.asarray(line_integrals, dtype=np.float64)
        transmission = np.exp(-line_integrals)
        pc = self.phase_contrast
        if pc is None:
            return transmission
        if delta_integrals is None:
            if pc.delta_over_mu is None:
                raise ValueError(
                    "phase contrast needs δ line integrals (delta_integrals) or "
                    "PhaseContrast.delta_over_mu"
                )
            delta_integrals = pc.delta_over_mu * line_integrals
        return fresnel_intensity(
            transmission, delta_integrals, pc.distance_m, pc.energy_keV, pc.pixel_m
        )

    def projections(
        self,
        line_integrals: np.ndarray,
        *,
        first_index: int = 0,
        delta_integrals: np.ndarray | None = None,
    ) -> np.ndarray:
        """Projection frames for line integrals (n, nz, n_det), uint16.

        Parameters
        ----------
        line_integrals : ndarray, shape (n, nz, n_det)
            ∫μ dl per angle.
        first_index : int
            Index of the first angle in the scan (keys the per-frame noise).
        delta_integrals : ndarray, optional
            ∫δ dl (m) per angle, for phase contrast.

        Returns
        -------
        ndarray of uint16, shape (n, nz, n_det)
        """
        line_integrals = np.asarray(line_integrals)
        if line_integrals.ndim != 3 or line_integrals.shape[1:] != self.shape:
            raise ValueError(
                f"line integrals must be (n_angles, {self.shape[0]}, {self.shape[1]}), "
                f"got {line_integrals.shape}"
            )
        n = line_integrals.shape[0]
        out = np.empty(line_integrals.shape, dtype=np.uint16)
        drift = self.column_gain[None, :]
        offset = self.column_offset / max(self.gain, 1e-12)
        for i in range(n):
            rng = np.random.default_rng([self.seed, _PROJ, first_index + i])
            delta = None if delta_integrals is None else delta_integrals[i]
            if delta is None and self.phase_contrast is None:
                # Beer–Lambert in place: the same values as intensity(), fewer temporaries;
                # exp is never negative, so no clip pass.
                expected = np.negative(line_integrals[i], dtype=np.float64)
                np.exp(expected, out=expected)
            else:
                expected = self.intensity(line_integrals[i], delta)
                np.clip(expected, 0.0, None, out=expected)  # Fresnel fringes may dip below 0
            np.multiply(self.flat_expected, expected, out=expected)
            photons = rng.poisson(expected)
            if self.zinger_rate > 0:
                signal = photons * drift + offset[None, :]
                hits = rng.random(self.shape) < self.zinger_rate
                signal[hits] += self.zinger_adu / self.gain * rng.uniform(0.5, 2.0, hits.sum())
                out[i] = self._readout(signal, rng)
            else:
                out[i] = self._fast_readout(photons, rng, self.column_gain, offset)
        return out


@numba.njit(cache=True, nogil=True)
def _readout_kernel(
    counts: np.ndarray,
    drift: np.ndarray,
    offset: np.ndarray,
    gain: float,
    dark: np.ndarray,
    read_noise: float,
    rng: np.random.Generator,
    out: np.ndarray,
) -> None:
    """``out = uint16(clip(rint(gain·(counts·drift + offset) + dark + read_noise·noise)))``.

    ``noise`` is ``rng``'s next standard normals, one per pixel in row-major order (what
    ``rng.standard_normal(counts.shape)`` would return). Evaluated in numpy's order, in
    float64, without contraction into fused multiply-adds, so each pixel equals the numpy
    expression's; no GIL, so frames are made in parallel threads.
    """
    nz, nx = counts.shape
    for z in range(nz):
        for x in range(nx):
            noise = rng.standard_normal()
            signal = np.float64(counts[z, x]) * drift[x] + offset[x]
            adu = (gain * signal + dark[z, x]) + read_noise * noise
            adu = np.rint(adu)
            if adu < 0.0:
                adu = 0.0
            elif adu > 65535.0:
                adu = 65535.0
            out[z, x] = np.uint16(adu)


def simulate_frames(
    line_integrals: np.ndarray,
    *,
    flat_photons: float = 1.0e4,
    beam_profile: np.ndarray | None = None,
    dark_counts: float = 100.0,
    read_noise: float = 2.5,
    seed: int = 0,
    ring_defects: int | Sequence[int] = 4,
    zinger_rate: float = 0.0,
    phase_contrast: PhaseContrast | Sequence[float] | None = None,
    delta_integrals: np.ndarray | None = None,
    n_flats: int = 10,
    n_darks: int = 10,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Camera frames for a set of line integrals: projections, flats and darks.

    A convenience over :class:`Detector` for data that fit in memory; see the module
    docstring for the model.

    Parameters
    ----------
    line_integrals : ndarray, shape (n_angles, nz, n_det)
        ∫μ dl per angle (from :class:`insitu.simulators.imaging.xray.Projector`).
    flat_photons, beam_profile, dark_counts, read_noise, seed, ring_defects, zinger_rate
        See :class:`Detector`.
    phase_contrast : PhaseContrast or (distance_m, energy_keV, pixel_m[, δ/μ]), optional
        Propagation phase contrast (Fresnel); None for absorption only.
    delta_integrals : ndarray, optional
        ∫δ dl (m), same shape as ``line_integrals``, for phase contrast.
    n_flats, n_darks : int
        Numbers of flat and dark frames.

    Returns
    -------
    projections, flats, darks : ndarray of uint16
        Shapes (n_angles, nz, n_det), (n_flats, nz, n_det), (n_darks, nz, n_det).
    """
    line_integrals = np.asarray(line_integrals)
    if line_integrals.ndim != 3:
        raise ValueError(
            f"line_integrals must be (n_angles, nz, n_det), got {line_integrals.shape}"
        )
    detector = Detector(
        line_integrals.shape[1:],
        flat_photons=flat_photons,
        beam_profile=beam_profile,
        dark_counts=dark_counts,
        read_noise=read_noise,
        ring_defects=ring_defects,
        zinger_rate=zinger_rate,
        phase_contrast=phase_contrast,
        seed=seed,
    )
    projections = detector.projections(line_integrals, delta_integrals=delta_integrals)
    return projections, detector.flats(n_flats), detector.darks(n_darks)
