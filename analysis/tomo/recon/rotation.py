"""Rotation-centre finding for parallel-beam tomography.

:func:`find_center_vo` follows Vo et al. (Opt. Express 22, 19078, 2014), with TomoPy's name
and arguments (``tomopy.recon.rotation.find_center_vo``): a 180° sinogram and its mirror image
about a candidate centre, stacked, form a 360° sinogram. Only at the true centre is that
360° sinogram continuous, and then its 2-D spectrum is confined to the double wedge
``|m| ≤ R·|ω_x|`` (angular harmonic m, detector frequency ω_x, object radius R); a wrong
centre leaves edges at 0° and 180° whose energy spreads outside it. The metric is the mean
spectral magnitude outside the wedge, minimised over candidates: coarse on a binned sinogram
over a wide range, then fine at full resolution with sub-pixel steps and a parabolic vertex.

Off-centre samples: the mirror about a candidate centre ``c`` only covers the columns within
``min(c, cols − 1 − c)`` of it. Rather than padding the missing part (which biases the metric
toward large shifts, where less of the two halves overlaps), each stage compares all its
candidates on one window of a fixed width, centred on each candidate and as wide as the
candidate nearest an edge allows. The default search range is therefore not TomoPy's ±50
pixels but every centre that leaves a window of a quarter of the detector: the middle three
quarters of the field.

:func:`find_center_pc` is the independent check: phase correlation of the 0° projection with
the mirrored 180° one.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft

from ...errors import AnalysisInputError

__all__ = ["find_center_pc", "find_center_vo"]

#: Smallest window, as a fraction of the detector width, that a candidate centre must leave.
_MIN_WINDOW_FRACTION = 0.25
#: A window whose standard deviation is below this many noise σ holds no object.
_MIN_SIGNAL = 3.0
#: Binned size targets: coarse stage columns and rows, fine stage rows.
_COARSE_COLS = 256
_COARSE_ROWS = 256
_FINE_ROWS = 360


def _bin(arr: np.ndarray, factor: int, axis: int) -> np.ndarray:
    """Mean of ``factor`` consecutive samples along ``axis`` (the remainder is dropped)."""
    if factor <= 1:
        return arr
    n = arr.shape[axis] // factor
    arr = np.take(arr, np.arange(n * factor), axis=axis)
    shape = list(arr.shape)
    shape[axis : axis + 1] = [n, factor]
    return arr.reshape(shape).mean(axis=axis + 1)


def _shifted(sino: np.ndarray, fraction: float) -> np.ndarray:
    """``s(x + fraction)`` by a Fourier phase ramp, edges padded so nothing wraps round."""
    if fraction == 0:
        return sino
    pad = 16
    padded = np.pad(sino, ((0, 0), (pad, pad)), mode="edge")
    k = scipy.fft.rfftfreq(padded.shape[1])
    spectrum = scipy.fft.rfft(padded, axis=1) * np.exp(2j * np.pi * k * fraction)
    return scipy.fft.irfft(spectrum, n=padded.shape[1], axis=1)[:, pad:-pad]


def _fast_width(limit: int) -> int:
    """Largest window width ≤ ``limit`` with small prime factors (a fast FFT length)."""
    width = limit
    while width > 8 and scipy.fft.next_fast_len(width, real=True) != width:
        width -= 1
    return width


def _forbidden_mask(n_rows: int, width: int, ratio: float, drop: int) -> np.ndarray:
    """Where a consistent 360° sinogram of an object within ``ratio·width/2`` has no energy."""
    # On the half-spectrum of rfft2 (|F| is symmetric for a real image).
    m = np.abs(scipy.fft.fftfreq(n_rows) * n_rows)[:, np.newaxis]
    kx = (scipy.fft.rfftfreq(width) * width)[np.newaxis, :]
    # |m| ≤ R·ω_x with R = ratio·width/2 and ω_x = 2π·kx/width  →  |m| ≤ π·ratio·kx.
    mask = m > math.pi * ratio * kx
    # Low angular harmonics carry beam drifts and the object's own slow variations: drop them.
    mask &= m > min(drop, math.ceil(0.05 * n_rows))
    mask &= kx >= 1
    return mask.astype(np.float32)


class _Metric:
    """Vo's metric for candidate centres of one sinogram, with a fixed window width."""

    def __init__(self, sino: np.ndarray, width: int, ratio: float, drop: int) -> None:
        self.sino = sino
        self.width = width
        self.mask = _forbidden_mask(2 * sino.shape[0], width, ratio, drop)
        self._cache: dict[float, np.ndarray] = {}
        # Noise from differences between neighbouring angles (the object barely changes from
        # one angle to the next; the noise does), robustly (MAD).
        diff = np.diff(sino, axis=0)
        self.noise = float(1.4826 * np.median(np.abs(diff - np.median(diff))) / math.sqrt(2))

    def __call__(self, center: float) -> float:
        start = center - (self.width - 1) / 2.0
        first = math.floor(start + 1e-9)
        fraction = round(start - first, 6)
        if fraction not in self._cache:
            self._cache[fraction] = _shifted(self.sino, fraction)
        window = self._cache[fraction][:, first : first + self.width]
        # The mirror about the window's centre is the 180°–360° half of the scan.
        if np.std(window) < _MIN_SIGNAL * self.noise:
            # Air and noise only: nothing to mismatch, so the metric would be at its floor
            # without the centre being right. Such a window cannot locate the axis.
            return math.inf
        mirrored = self._forbidden(np.concatenate([window, window[:, ::-1]], axis=0))
        # Baseline: the same window with its second half run backwards in angle instead of
        # mirrored. It has no seams at 0° and 180° whatever the centre, so the ratio measures
        # the seams only, and windows holding more or less object compare fairly (an
        # unnormalised metric prefers windows with little in them).
        baseline = self._forbidden(np.concatenate([window, window[::-1, :]], axis=0))
        return mirrored / max(baseline, 1e-30)

    def _forbidden(self, full: np.ndarray) -> float:
        spectrum = np.abs(scipy.fft.rfft2(full, workers=-1))
        return float(np.mean(spectrum * self.mask))


def _scan(metric: _Metric, centers: np.ndarray) -> np.ndarray:
    return np.array([metric(float(c)) for c in centers])


def _sinogram(tomo: np.ndarray, ind: int | None) -> np.ndarray:
    tomo = np.asarray(tomo)
    if tomo.ndim == 2:
        return tomo.astype(np.float64)
    if tomo.ndim != 3:
        raise ValueError(
            f"tomo must be projections (n_angles, rows, cols) or a sinogram (n_angles, cols), "
            f"got shape {tomo.shape}"
        )
    if ind is None:
        ind = tomo.shape[1] // 2
    if not 0 <= ind < tomo.shape[1]:
        raise ValueError(f"ind must be a detector row in [0, {tomo.shape[1] - 1}], got {ind}")
    return tomo[:, ind, :].astype(np.float64)


def find_center_vo(
    tomo: np.ndarray,
    ind: int | None = None,
    smin: float | None = None,
    smax: float | None = None,
    srad: float = 6.0,
    step: float = 0.25,
    ratio: float = 0.5,
    drop: int = 20,
) -> float:
    """Rotation centre (column, in pixels) of a 180° parallel-beam scan, by Vo's method.

    Parameters
    ----------
    tomo : ndarray, shape (n_angles, rows, cols) or (n_angles, cols)
        Projections (after ``minus_log``; normalised transmission works too) or one sinogram,
        angles evenly spaced over [0°, 180°).
    ind : int, optional
        Detector row whose sinogram is used (default the middle one).
    smin, smax : float, optional
        Search range of the centre's shift from the detector's middle, ``(cols − 1) / 2``,
        in pixels (TomoPy's meaning). Default: the middle three quarters of the detector,
        ``±(3/8)·cols`` — wide enough for a pellet mounted well off the axis.
    srad : float
        Half-width (pixels) of the whole-pixel search at full resolution around the coarse
        minimum (widened to one coarse bin if that is larger).
    step : float
        Sub-pixel step of the final search, within ±1 pixel of the best whole pixel; the
        minimum is refined further by a parabola through it and its neighbours.
    ratio : float
        Radius of the object as a fraction of the compared window's half-width: sets the
        wedge outside which a consistent sinogram has no energy. 0.5 suits most samples;
        raise it toward 1 for samples that fill the field.
    drop : int
        Angular harmonics ``|m| ≤ drop`` (at most 5 % of them) left out of the metric.

    Returns
    -------
    float
        Column of the rotation axis (0 = centre of the first pixel).

    Raises
    ------
    ValueError
        For a search range that leaves no overlap between the scan and its mirror, or bad
        shapes/parameters.
    """
    sino = _sinogram(tomo, ind)
    n_angles, cols = sino.shape
    if n_angles < 8 or cols < 16:
        raise ValueError(f"sinogram too small for a centre search: {sino.shape}")
    if not 0 < ratio <= 1.5:
        raise ValueError(f"ratio must be in (0, 1.5], got {ratio}")
    if not (step > 0 and srad >= step):
        raise ValueError(f"need step > 0 and srad ≥ step, got step={step}, srad={srad}")
    middle = (cols - 1) / 2.0
    reach = (0.5 - _MIN_WINDOW_FRACTION / 2.0) * cols
    smin = -reach if smin is None else float(smin)
    smax = reach if smax is None else float(smax)
    # The range is the user's (--center-search): a bad one is their error, named as such.
    if smin > smax:
        raise AnalysisInputError(f"centre search: smin ({smin:g}) must not exceed smax ({smax:g})")
    lo, hi = middle + smin, middle + smax
    if lo < 4 or hi > cols - 5:
        raise AnalysisInputError(
            f"centre search range {smin:g},{smax:g} puts the centre within 4 px of the detector "
            f"edge: the range is in columns from the detector centre (column {middle:g} of "
            f"{cols}), so it must lie within {4 - middle:g},{cols - 5 - middle:g}"
        )

    # Coarse: bin columns and rows, step one binned pixel over the whole range.
    col_bin = max(1, cols // _COARSE_COLS)
    row_bin = max(1, n_angles // _COARSE_ROWS)
    coarse = _bin(_bin(sino, col_bin, 1), row_bin, 0)
    # Binned column j covers full columns j·b … j·b + b − 1: centre c ↔ (c − (b − 1)/2) / b.
    lo_b = (lo - (col_bin - 1) / 2.0) / col_bin
    hi_b = (hi - (col_bin - 1) / 2.0) / col_bin
    n_b = coarse.shape[1]
    centers_b = np.arange(math.ceil(lo_b * 2) / 2, hi_b + 1e-9, 1.0)
    if centers_b.size == 0:
        centers_b = np.array([round((lo_b + hi_b) / 2 * 2) / 2])
    half_b = min(np.min(centers_b), n_b - 1 - np.max(centers_b))
    width_b = _fast_width(int(2 * math.floor(half_b) + 1))
    if width_b < 8:
        raise ValueError("the search range leaves fewer than 8 binned columns to compare")
    coarse_scores = _scan(_Metric(coarse, width_b, ratio, drop), centers_b)
    best_b = float(centers_b[int(np.argmin(coarse_scores))])
    coarse_center = best_b * col_bin + (col_bin - 1) / 2.0

    # Then full columns (rows binned to keep the FFTs small): whole pixels within ``srad``
    # (at least one coarse bin) of the coarse minimum, then ``step`` within ±1 pixel.
    fine = _bin(sino, max(1, n_angles // _FINE_ROWS), 0)
    radius = max(srad, col_bin)
    f_lo = max(lo, coarse_center - radius)
    f_hi = min(hi, coarse_center + radius)
    whole = np.arange(math.ceil(f_lo), math.floor(f_hi) + 1, 1.0)
    if whole.size == 0:
        whole = np.array([round(coarse_center)], dtype=float)
    # One window width for both stages, so that their scores compare.
    half = min(np.min(whole), cols - 1 - np.max(whole)) - 1
    width = _fast_width(int(2 * math.floor(half) + 1))
    metric = _Metric(fine, width, ratio, drop)
    whole_scores = _scan(metric, whole)
    center = float(whole[int(np.argmin(whole_scores))])
    centers = np.arange(center - 1.0, center + 1.0 + 1e-9, step)
    centers = centers[(centers >= lo) & (centers <= hi)]
    scores = _scan(metric, centers)
    i = int(np.argmin(scores))
    best = float(centers[i])
    if 0 < i < len(centers) - 1:
        # Parabolic vertex through the minimum and its neighbours: sub-step accuracy.
        left, mid, right = scores[i - 1], scores[i], scores[i + 1]
        curvature = left - 2 * mid + right
        if curvature > 0:
            best += float(np.clip(0.5 * (left - right) / curvature, -0.5, 0.5)) * step
    return best


def find_center_pc(
    proj1: np.ndarray, proj2: np.ndarray, tol: float = 0.5, rotc_guess: float | None = None
) -> float:
    """Rotation centre from the projections at 0° and 180°, by phase correlation.

    The 180° projection mirrored left–right is the 0° one shifted by ``2c − (cols − 1)``;
    the shift is measured by phase correlation, to ``tol`` pixels.

    Parameters
    ----------
    proj1, proj2 : ndarray, shape (rows, cols) or (cols,)
        Projections at θ and θ + 180° (after ``minus_log``).
    tol : float
        Sub-pixel precision of the shift (the centre is good to ``tol / 2``).
    rotc_guess : float, optional
        Expected centre; the correlation peak is searched near it (default: anywhere).

    Returns
    -------
    float
        Column of the rotation axis.
    """
    from skimage.registration import phase_cross_correlation

    a = np.atleast_2d(np.asarray(proj1, dtype=np.float64))
    b = np.atleast_2d(np.asarray(proj2, dtype=np.float64))
    if a.shape != b.shape:
        raise ValueError(f"proj1 {a.shape} and proj2 {b.shape} must have one shape")
    if not tol > 0:
        raise ValueError(f"tol must be positive (pixels), got {tol}")
    cols = a.shape[1]
    mirrored = b[:, ::-1]
    if rotc_guess is not None:
        # Pre-shift by the guess so the peak sits near zero shift, away from wrap-around.
        guess_shift = 2 * rotc_guess - (cols - 1)
        mirrored = _shifted(mirrored, -guess_shift)
    else:
        guess_shift = 0.0
    upsample = max(1, math.ceil(1.0 / tol))
    shift, _, _ = phase_cross_correlation(a, mirrored, upsample_factor=upsample)
    total = float(shift[-1]) + guess_shift
    return ((cols - 1) + total) / 2.0
