"""Paganin single-material phase retrieval for propagation-based phase-contrast projections.

For a homogeneous object (δ/β the same everywhere) in the near field, the intensity after a
propagation distance ``d`` is, to first order (transport of intensity),
``I_d = (1 − d·(δ/μ)·∇²) exp(−μT)`` with μ = 4πβ/λ. Paganin's retrieval inverts it with a
Fourier low-pass filter on the normalised projection:

    exp(−μT) = F⁻¹[ F[I_d / I_0] / (1 + π λ d (δ/β) |f|²) ]

with ``f`` the spatial frequency (cycles per length). ``−log`` of the result (see
:func:`insitu.analysis.tomo.prep.flat_field.minus_log`) is the projected attenuation μT, free of
the edge fringes, ready for reconstruction.

Parameters follow ``tomopy.prep.phase.retrieve_phase(tomo, pixel_size, dist, energy, alpha,
pad)``: lengths in **cm**, energy in keV, and ``alpha`` the regularisation in TomoPy's
(released) filter ``1 / (λ d |f|² / (4π) + alpha)`` normalised to 1 at zero frequency. That
filter *is* Paganin's for ``alpha = 1 / (4π² · δ/β)``; pass ``delta_beta`` to give the
material's δ/β directly. Like TomoPy, the output is the filtered *transmission* (apply
``minus_log`` next).

Why it is fast: the filter is computed once per frame shape on the half-spectrum of a real
FFT (``scipy.fft.rfft2``, float32, multithreaded), the frame is padded only as far as the
filter's real-space kernel reaches (a few Paganin lengths, not TomoPy's next power of two) and
then to a size with small prime factors, and the padded buffer is reused across a stack.
"""

from __future__ import annotations

import math
import os

import numpy as np
import scipy.fft

__all__ = ["alpha_from_delta_beta", "paganin_filter", "paganin_length", "retrieve_phase"]

#: h·c in keV·cm: λ[cm] = _HC_KEV_CM / E[keV].
_HC_KEV_CM = 1.239841984e-7

#: Padding, in Paganin lengths, on each side of the frame. The filter's real-space kernel is
#: K₀(r/L)/(2πL²), which has fallen to ≈ 1e-4 of its near-centre value by 8 L, so the
#: periodic FFT no longer folds one edge of the frame onto the other.
_PAD_LENGTHS = 8.0


def _wavelength_cm(energy: float) -> float:
    return _HC_KEV_CM / energy


def alpha_from_delta_beta(delta_beta: float) -> float:
    """TomoPy's ``alpha`` that makes its filter Paganin's for a material's δ/β.

    Parameters
    ----------
    delta_beta : float
        δ/β of the (single) material at the beam energy (e.g. a few hundred for light
        solids at 20–30 keV).

    Returns
    -------
    float
        ``1 / (4π² · δ/β)``.
    """
    if not delta_beta > 0:
        raise ValueError(f"delta_beta must be positive, got {delta_beta}")
    return 1.0 / (4.0 * math.pi**2 * delta_beta)


def _check_geometry(pixel_size: float, dist: float, energy: float, alpha: float) -> None:
    if not pixel_size > 0:
        raise ValueError(
            f"pixel_size must be positive (cm, e.g. 7e-5 for 0.7 µm), got {pixel_size}"
        )
    if not dist >= 0:
        raise ValueError(f"dist must be ≥ 0 (cm), got {dist}")
    if not energy > 0:
        raise ValueError(f"energy must be positive (keV), got {energy}")
    if not alpha > 0:
        raise ValueError(f"alpha must be positive (or pass delta_beta), got {alpha}")


def paganin_length(pixel_size: float, dist: float, energy: float, alpha: float) -> float:
    """Width, in pixels, of the retrieval's real-space kernel (the Paganin length).

    The filter is ``1 / (1 + 4π² L² |f|²)`` with ``L = √(λ d / (4π alpha)) / (2π)`` in
    ``pixel_size`` units — for ``alpha = alpha_from_delta_beta(δ/β)``, ``L = √(λ d δ/β / 4π)``.
    It sets the blur of the retrieved image and how far the frame must be padded.
    """
    _check_geometry(pixel_size, dist, energy, alpha)
    lam = _wavelength_cm(energy)
    return math.sqrt(lam * dist / (4.0 * math.pi * alpha)) / (2.0 * math.pi) / pixel_size


def paganin_filter(
    shape: tuple[int, int],
    pixel_size: float = 1e-4,
    dist: float = 50.0,
    energy: float = 20.0,
    alpha: float = 1e-3,
) -> np.ndarray:
    """Paganin's filter on the half-spectrum grid of ``scipy.fft.rfft2`` for a padded frame.

    Parameters
    ----------
    shape : (int, int)
        Shape of the (padded) frame that will be transformed.
    pixel_size, dist, energy, alpha : float
        As in :func:`retrieve_phase`.

    Returns
    -------
    ndarray, shape (shape[0], shape[1] // 2 + 1), float32
        ``1 / (1 + λ d |f|² / (4π alpha))``: 1 at zero frequency, so the mean is preserved.
    """
    _check_geometry(pixel_size, dist, energy, alpha)
    ny, nx = shape
    lam = _wavelength_cm(energy)
    fy = scipy.fft.fftfreq(ny, d=pixel_size)
    fx = scipy.fft.rfftfreq(nx, d=pixel_size)
    coefficient = lam * dist / (4.0 * math.pi * alpha)
    # float64 for the grid (|f|² spans many decades), float32 for the product with the data.
    return (1.0 / (1.0 + coefficient * np.add.outer(fy**2, fx**2))).astype(np.float32)


def _pad_widths(n: int, pad_px: int) -> tuple[int, int]:
    """(before, after) widths taking ``n`` to a fast FFT length ≥ n + 2·pad_px."""
    total = scipy.fft.next_fast_len(n + 2 * pad_px, real=True)
    before = (total - n) // 2
    return before, total - n - before


def retrieve_phase(
    tomo: np.ndarray,
    pixel_size: float = 1e-4,
    dist: float = 50.0,
    energy: float = 20.0,
    alpha: float = 1e-3,
    pad: bool = True,
    *,
    delta_beta: float | None = None,
    workers: int | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Single-distance, single-material (Paganin) phase retrieval of normalised projections.

    Parameters
    ----------
    tomo : ndarray, shape (n_angles, rows, cols) or (rows, cols)
        Flat-field-corrected projections (transmission, ≈ 1 in open beam).
    pixel_size : float
        Effective (magnified) detector pixel size in **cm** (0.7 µm → ``7e-5``).
    dist : float
        Sample-to-detector propagation distance in **cm**.
    energy : float
        Photon energy in keV.
    alpha : float
        TomoPy's regularisation parameter; ignored when ``delta_beta`` is given. Paganin's
        filter for a material is ``alpha = 1 / (4π² δ/β)`` (see
        :func:`alpha_from_delta_beta`); larger ``alpha`` means less smoothing.
    pad : bool
        Pad each frame by replicating its edges, over ``8`` Paganin lengths on each side and
        then to a fast FFT size, so that the periodic FFT does not wrap one edge onto the
        other. Turn off only for frames whose edges are open beam on all sides.
    delta_beta : float, optional
        The material's δ/β; when given, ``alpha = 1 / (4π² δ/β)``.
    workers : int, optional
        FFT threads (``scipy.fft`` ``workers``); default all CPUs.
    out : ndarray, optional
        float32 array of ``tomo``'s shape to write into (may be ``tomo`` itself when float32).

    Returns
    -------
    ndarray, float32, same shape as ``tomo``
        Filtered transmission; ``minus_log`` of it is the projected attenuation μT.

    Raises
    ------
    ValueError
        For non-positive geometry, a non-2/3-D ``tomo`` or a mismatched ``out``.
    """
    if delta_beta is not None:
        alpha = alpha_from_delta_beta(delta_beta)
    _check_geometry(pixel_size, dist, energy, alpha)
    tomo = np.asarray(tomo)
    if tomo.ndim not in (2, 3):
        raise ValueError(
            f"tomo must be (n_angles, rows, cols) or (rows, cols), got shape {tomo.shape}"
        )
    stack = tomo[np.newaxis] if tomo.ndim == 2 else tomo
    if out is None:
        out = np.empty(tomo.shape, dtype=np.float32)
    elif out.dtype != np.float32 or out.shape != tomo.shape:
        raise ValueError(
            f"out must be a float32 array of shape {tomo.shape}, got {out.dtype} {out.shape}"
        )
    out_stack = out[np.newaxis] if out.ndim == 2 else out
    if workers is None:
        workers = os.cpu_count() or 1
    if dist == 0:
        # No propagation, no phase contrast: the filter is the identity.
        out_stack[...] = stack
        return out

    _, rows, cols = stack.shape
    pad_px = math.ceil(_PAD_LENGTHS * paganin_length(pixel_size, dist, energy, alpha)) if pad else 0
    (top, bottom) = _pad_widths(rows, pad_px) if pad else (0, 0)
    (left, right) = _pad_widths(cols, pad_px) if pad else (0, 0)
    shape = (rows + top + bottom, cols + left + right)
    kernel = paganin_filter(shape, pixel_size, dist, energy, alpha)
    buffer = np.empty(shape, dtype=np.float32)
    inner = (slice(top, top + rows), slice(left, left + cols))
    for i in range(stack.shape[0]):
        buffer[inner] = stack[i]
        if pad:
            # Edge replication into the reused buffer (np.pad would allocate each frame).
            buffer[:top, left : left + cols] = buffer[top, left : left + cols]
            buffer[top + rows :, left : left + cols] = buffer[top + rows - 1, left : left + cols]
            buffer[:, :left] = buffer[:, left : left + 1]
            buffer[:, left + cols :] = buffer[:, left + cols - 1 : left + cols]
        spectrum = scipy.fft.rfft2(buffer, workers=workers)
        spectrum *= kernel
        filtered = scipy.fft.irfft2(spectrum, s=shape, workers=workers, overwrite_x=True)
        out_stack[i] = filtered[inner]
    return out
