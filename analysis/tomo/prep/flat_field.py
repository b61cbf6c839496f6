"""Flat/dark normalisation, −log and zinger removal for tomography projections.

The first steps of the reconstruction pipeline, with TomoPy's names and argument order
(``tomopy.prep.normalize.normalize``, ``minus_log``, ``tomopy.misc.corr.remove_outlier``) so
that a TomoPy script ports by changing the import. Arrays follow TomoPy's layout: a stack of
projections is ``(n_angles, rows, cols)``; flats and darks are ``(n_frames, rows, cols)`` (a
single ``(rows, cols)`` frame is accepted too).

Differences from TomoPy, all on purpose:

- :func:`minus_log` clips the transmission to a ``floor`` before the logarithm, so that a zero
  or negative value (photon-starved pixels after dark subtraction) gives a large finite number
  rather than ``inf`` or ``NaN``, which would poison every slice the sinogram feeds.
- :func:`remove_outlier` returns exactly TomoPy's result (a pixel brighter than the median of its
  ``size × size`` neighbourhood by more than ``dif`` is replaced by that median), but computes
  the median only where it can matter: since the median of a neighbourhood is never below its
  minimum, a pixel that does not exceed the neighbourhood *minimum* by ``dif`` cannot be an
  outlier. The minimum is separable and cheap; medians are taken on the few candidates only.

Frames that cannot be normalised are refused rather than corrected into plausible numbers
(:func:`check_references`, :func:`check_projections`): a constant (all-zero, saturated) or
non-finite flat, flats not brighter than the darks, a dark that stands out as constant among
real ones, and a projection that is all zero or holds NaN (a frame the camera dropped). Darks
that are all constant are only flagged (:class:`ReferenceWarning`): synthetic scans have them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ...errors import AnalysisInputError

__all__ = [
    "ReferenceStats",
    "ReferenceWarning",
    "attenuation",
    "check_projections",
    "check_references",
    "minus_log",
    "normalize",
    "reference_stats",
    "remove_outlier",
    "remove_zinger",
]

#: Smallest flat − dark difference used as a divisor (counts): keeps dead pixels finite.
_MIN_DENOMINATOR = 1e-6


def _as_stack(arr: np.ndarray, name: str) -> np.ndarray:
    """View a single frame (rows, cols) as a stack of one; reject other shapes."""
    arr = np.asarray(arr)
    if arr.ndim == 2:
        return arr[np.newaxis]
    if arr.ndim != 3:
        raise ValueError(
            f"{name} must be a (n_frames, rows, cols) stack or a (rows, cols) frame, "
            f"got shape {arr.shape}"
        )
    return arr


def _average(frames: np.ndarray, averaging: str, name: str) -> np.ndarray:
    frames = _as_stack(frames, name)
    if frames.shape[0] == 0:
        raise ValueError(f"{name} is empty: pass at least one frame")
    if averaging == "mean":
        return frames.mean(axis=0, dtype=np.float64).astype(np.float32)
    if averaging == "median":
        # The median of the flats rejects a zinger or a beam drop in one of them.
        return np.median(frames.astype(np.float32, copy=False), axis=0)
    raise ValueError(f"averaging must be 'mean' or 'median', got {averaging!r}")


def _float32_out(arr: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    """``out`` checked to be a float32 array of ``arr``'s shape, or a new one."""
    if out is None:
        return np.empty(arr.shape, dtype=np.float32)
    if out.dtype != np.float32 or out.shape != arr.shape:
        raise ValueError(
            f"out must be a float32 array of shape {arr.shape}, got {out.dtype} {out.shape}"
        )
    return out


def _check_floor(floor: float) -> None:
    """The −log's floor must be a positive transmission."""
    if not floor > 0:
        raise ValueError(f"floor must be a positive transmission, got {floor}")


def _correction(
    flat: np.ndarray, dark: np.ndarray, averaging: str, frame_shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """The averaged dark and ``1/(flat − dark)`` (float32) for frames of ``frame_shape``."""
    flat_avg = _average(flat, averaging, "flat")
    dark_avg = _average(dark, "mean", "dark")
    if flat_avg.shape != frame_shape or dark_avg.shape != frame_shape:
        raise ValueError(
            f"flat {flat_avg.shape} and dark {dark_avg.shape} frames must have the "
            f"projections' (rows, cols) = {frame_shape}"
        )
    denominator = flat_avg - dark_avg
    # A dead or saturated-dark pixel has flat ≈ dark: divide by a tiny positive number rather
    # than by zero, so the result stays finite (and ``cutoff`` can then bound it).
    np.maximum(denominator, _MIN_DENOMINATOR, out=denominator)
    return dark_avg, (1.0 / denominator).astype(np.float32)


def normalize(
    arr: np.ndarray,
    flat: np.ndarray,
    dark: np.ndarray,
    cutoff: float | None = None,
    *,
    averaging: Literal["mean", "median"] = "mean",
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Flat-field correction: ``(arr − dark) / (flat − dark)``.

    Parameters
    ----------
    arr : ndarray, shape (n_angles, rows, cols) or (rows, cols)
        Raw projections (any real dtype; uint16 camera frames are typical).
    flat : ndarray, shape (n_flats, rows, cols) or (rows, cols)
        Open-beam frames, averaged over the first axis with ``averaging``.
    dark : ndarray, shape (n_darks, rows, cols) or (rows, cols)
        Dark frames, always averaged with the mean (read noise is Gaussian; the mean is its
        best estimate).
    cutoff : float, optional
        Upper limit on the normalised value (TomoPy's ``cutoff``): values above are set to
        it. Useful to tame pixels whose flat is nearly dark.
    averaging : {'mean', 'median'}
        How the flats are combined. The median rejects zingers and beam drops in single flat
        frames at the cost of a little more noise.
    out : ndarray, optional
        float32 array of the projections' shape to write into (may be ``arr`` itself when it
        is float32), so that a large stack is corrected without a second copy.

    Returns
    -------
    ndarray, float32
        Transmission, same shape as ``arr``.

    Raises
    ------
    ValueError
        If the frame shapes do not agree, ``averaging`` is unknown, or ``cutoff`` is not
        positive.
    """
    arr = np.asarray(arr)
    single = arr.ndim == 2
    stack = _as_stack(arr, "arr")
    dark_avg, inverse = _correction(flat, dark, averaging, stack.shape[1:])
    if cutoff is not None and not cutoff > 0:
        raise ValueError(f"cutoff must be a positive transmission or None, got {cutoff}")
    out = _float32_out(arr, out)
    result = out
    out = out[np.newaxis] if single else out
    # One projection at a time: the float32 temporaries stay one frame in size.
    for i in range(stack.shape[0]):
        np.subtract(stack[i], dark_avg, out=out[i], dtype=np.float32, casting="unsafe")
        out[i] *= inverse
        if cutoff is not None:
            np.minimum(out[i], np.float32(cutoff), out=out[i])
    return result


def minus_log(arr: np.ndarray, *, floor: float = 1e-6, out: np.ndarray | None = None) -> np.ndarray:
    """Projected attenuation ``−log(max(arr, floor))``.

    Parameters
    ----------
    arr : ndarray
        Transmission (normalised projections), any shape.
    floor : float
        Smallest transmission taken into the logarithm. Zero and negative transmissions
        (noise after dark subtraction in opaque regions) give ``−log(floor)`` instead of
        ``inf``/``NaN``. The default caps attenuation at ≈ 13.8; raise it (e.g. ``1e-3``) on
        photon-starved data so that a handful of dead pixels do not streak the slice.
    out : ndarray, optional
        float32 array to write into (may be ``arr`` itself when it is float32).

    Returns
    -------
    ndarray, float32
    """
    _check_floor(floor)
    arr = np.asarray(arr)
    out = _float32_out(arr, out)
    # NaN in the input also becomes the floor: np.maximum would propagate it, fmax does not.
    np.fmax(arr, np.float32(floor), out=out, dtype=np.float32, casting="unsafe")
    np.log(out, out=out)
    np.negative(out, out=out)
    return out


def attenuation(
    arr: np.ndarray,
    flat: np.ndarray,
    dark: np.ndarray,
    *,
    averaging: Literal["mean", "median"] = "mean",
    floor: float = 1e-6,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Projected attenuation of raw frames: ``minus_log(normalize(arr, flat, dark))``.

    The same values as those two calls, bit for bit, computed one projection at a time: the
    frame stays in cache through the five element-wise steps (dark subtracted, scaled,
    floored, log, negated) instead of the whole stack making four trips through memory,
    and uint16 frames are converted as they are read instead of by a copy of the stack. On
    1500 frames of 80 × 2048 (2 cores, busy machine, interleaved), reading and correcting
    took 0.8–1.4 s this way against 1.2–3.4 s as a float32 read then the two calls.

    Parameters
    ----------
    arr, flat, dark, averaging
        As :func:`normalize` (``arr`` as the camera wrote it, uint16 typically).
    floor
        As :func:`minus_log`.
    out : ndarray, optional
        float32 array of ``arr``'s shape to write into (may be ``arr`` itself when it is
        float32).

    Returns
    -------
    ndarray, float32
    """
    _check_floor(floor)
    arr = np.asarray(arr)
    stack = _as_stack(arr, "arr")
    dark_avg, inverse = _correction(flat, dark, averaging, stack.shape[1:])
    out = _float32_out(arr, out)
    frames = out[np.newaxis] if arr.ndim == 2 else out
    low = np.float32(floor)
    # normalize's and minus_log's operations, in their order, on one frame at a time.
    for i in range(stack.shape[0]):
        frame = frames[i]
        np.subtract(stack[i], dark_avg, out=frame, dtype=np.float32, casting="unsafe")
        frame *= inverse
        np.fmax(frame, low, out=frame)
        np.log(frame, out=frame)
        np.negative(frame, out=frame)
    return out


def _min_filter(frame: np.ndarray, size: int) -> np.ndarray:
    """Separable ``size × size`` minimum (cheap: 2·(size−1) elementwise minima).

    Padded like the median below (symmetric), so that the minimum bounds that median.
    """
    half = size // 2
    padded = np.pad(frame, half, mode="symmetric")
    rows = padded[:, : frame.shape[1]].copy()
    for k in range(1, size):
        np.minimum(rows, padded[:, k : k + frame.shape[1]], out=rows)
    result = rows[: frame.shape[0]].copy()
    for k in range(1, size):
        np.minimum(result, rows[k : k + frame.shape[0]], out=result)
    return result


def _remove_outlier_frame(frame: np.ndarray, dif: float, size: int) -> np.ndarray:
    """TomoPy's outlier rule on one 2-D frame, medians only at candidate pixels."""
    candidates = np.nonzero(frame - _min_filter(frame, size) > dif)
    if candidates[0].size == 0:
        return frame
    half = size // 2
    # Reflect like scipy.ndimage.median_filter's default, so results match it (and TomoPy).
    padded = np.pad(frame, half, mode="symmetric")
    windows = sliding_window_view(padded, (size, size))
    medians = np.median(windows[candidates].reshape(-1, size * size), axis=1)
    values = frame[candidates]
    hit = values - medians > dif
    frame[candidates[0][hit], candidates[1][hit]] = medians[hit]
    return frame


def remove_outlier(
    arr: np.ndarray,
    dif: float,
    size: int = 3,
    axis: int = 0,
    *,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Replace bright outliers (zingers) by the median of their neighbourhood.

    A pixel is an outlier when it exceeds the median of the ``size × size`` neighbourhood in
    its 2-D slice (the slices are taken perpendicular to ``axis``) by more than ``dif``; it is
    replaced by that median. This is TomoPy's ``remove_outlier`` rule. Slices are processed
    one at a time, so a stack of any length runs in frame-sized memory and may be passed in
    chunks.

    Parameters
    ----------
    arr : ndarray, shape (n, rows, cols) or (rows, cols)
        Projections (raw or normalised), flats, or darks.
    dif : float
        Threshold above the local median, in the units of ``arr`` (ADU for raw frames,
        transmission for normalised ones). Set it to several times the noise: ≈ 5σ keeps
        false detections below one per million pixels.
    size : int
        Odd neighbourhood size (3 catches single-pixel zingers; 5 catches 2-pixel clusters).
    axis : int
        Axis along which the stack is sliced: 0 for projections (zingers hit one frame).
    out : ndarray, optional
        Array of ``arr``'s shape and float dtype to write into; may be ``arr`` itself for
        in-place correction.

    Returns
    -------
    ndarray
        Same shape as ``arr``; float32 unless ``out`` is given.
    """
    if not dif > 0:
        raise ValueError(f"dif must be a positive threshold in the units of arr, got {dif}")
    if size < 3 or size % 2 == 0:
        raise ValueError(f"size must be an odd integer ≥ 3, got {size}")
    arr = np.asarray(arr)
    if arr.ndim not in (2, 3):
        raise ValueError(f"arr must be a 2-D frame or a 3-D stack, got shape {arr.shape}")
    if out is None:
        out = arr.astype(np.float32, copy=True)
    elif out is not arr:
        if out.shape != arr.shape:
            raise ValueError(f"out must have arr's shape {arr.shape}, got {out.shape}")
        out[...] = arr
    if out.ndim == 2:
        _remove_outlier_frame(out, dif, size)
        return out
    if not -3 <= axis < 3:
        raise ValueError(f"axis must be 0, 1 or 2 for a 3-D stack, got {axis}")
    moved = np.moveaxis(out, axis, 0)
    for i in range(moved.shape[0]):
        frame = moved[i]
        if frame.flags.c_contiguous:
            _remove_outlier_frame(frame, dif, size)
        else:
            moved[i] = _remove_outlier_frame(np.ascontiguousarray(frame), dif, size)
    return out


def remove_zinger(
    arr: np.ndarray, dif: float, size: int = 3, *, out: np.ndarray | None = None
) -> np.ndarray:
    """Zinger removal on a projection stack: :func:`remove_outlier` with ``axis=0``."""
    return remove_outlier(arr, dif, size=size, axis=0, out=out)


# -- frames that cannot be normalised ----------------------------------------------------------
class ReferenceWarning(UserWarning):
    """The flats or darks are usable but suspicious (e.g. constant darks); the text says why."""


@dataclass(frozen=True)
class ReferenceStats:
    """What :func:`check_references` needs of the flats and darks, mergeable over row bands.

    Parameters
    ----------
    flat_min, flat_max, dark_min, dark_max : numpy.ndarray
        Smallest and largest value of each frame.
    flat_nonfinite, dark_nonfinite : numpy.ndarray
        NaN or infinite pixels of each frame.
    not_brighter : int
        Pixels whose mean flat is not above their mean dark.
    pixels : int
        Pixels of one frame looked at.
    """

    flat_min: np.ndarray
    flat_max: np.ndarray
    flat_nonfinite: np.ndarray
    dark_min: np.ndarray
    dark_max: np.ndarray
    dark_nonfinite: np.ndarray
    not_brighter: int
    pixels: int

    def merge(self, other: ReferenceStats) -> ReferenceStats:
        """The statistics of both bands of rows together."""
        return ReferenceStats(
            np.minimum(self.flat_min, other.flat_min),
            np.maximum(self.flat_max, other.flat_max),
            self.flat_nonfinite + other.flat_nonfinite,
            np.minimum(self.dark_min, other.dark_min),
            np.maximum(self.dark_max, other.dark_max),
            self.dark_nonfinite + other.dark_nonfinite,
            self.not_brighter + other.not_brighter,
            self.pixels + other.pixels,
        )


def _frame_extremes(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame minimum, maximum and non-finite count (NaN propagates to min and max)."""
    flat = frames.reshape(frames.shape[0], -1)
    finite = np.isfinite(flat)
    return flat.min(axis=1), flat.max(axis=1), (~finite).sum(axis=1)


def reference_stats(flat: np.ndarray, dark: np.ndarray) -> ReferenceStats:
    """:class:`ReferenceStats` of flats and darks (all frames, any band of rows).

    Parameters
    ----------
    flat, dark : ndarray, shape (n_frames, rows, cols) or (rows, cols)
        The same rows of the flat and dark frames.
    """
    flat = _as_stack(flat, "flat")
    dark = _as_stack(dark, "dark")
    if flat.shape[0] == 0 or dark.shape[0] == 0:
        raise AnalysisInputError(
            f"the scan has {flat.shape[0]} flat and {dark.shape[0]} dark frames: a flat-field "
            "correction needs at least one of each"
        )
    mean_flat = flat.mean(axis=0, dtype=np.float64)
    mean_dark = dark.mean(axis=0, dtype=np.float64)
    return ReferenceStats(
        *_frame_extremes(flat),
        *_frame_extremes(dark),
        not_brighter=int(np.count_nonzero(mean_flat <= mean_dark)),
        pixels=int(mean_flat.size),
    )


def _frames_text(indices: np.ndarray) -> str:
    shown = ", ".join(str(int(i)) for i in indices[:5])
    return shown + (f" and {indices.size - 5} more" if indices.size > 5 else "")


def _value_text(values: np.ndarray) -> str:
    uniq = np.unique(values)
    if uniq.size == 1:
        return "all 0" if uniq[0] == 0 else f"every pixel {uniq[0]:g}"
    return "each a single value"


def check_references(stats: ReferenceStats, *, source: str = "the scan") -> list[str]:
    """Refuse flats and darks that cannot normalise projections; flag suspicious ones.

    Parameters
    ----------
    stats : ReferenceStats
        Of every flat and dark frame (:func:`reference_stats`, merged over row bands).
    source : str
        The scan, for the messages.

    Returns
    -------
    list of str
        Notes on what was flagged (each also warned as :class:`ReferenceWarning`).

    Raises
    ------
    AnalysisInputError
        When a flat or dark frame holds NaN or infinite values, a flat frame is constant
        (all zero, saturated), a dark frame is constant while others are not, or the mean flat
        is not brighter than the mean dark at a quarter of the pixels or more.
    """
    for kind, nonfinite in (("flat", stats.flat_nonfinite), ("dark", stats.dark_nonfinite)):
        bad = np.flatnonzero(nonfinite)
        if bad.size:
            raise AnalysisInputError(
                f"{source}: {kind} frame(s) {_frames_text(bad)} hold NaN or infinite values "
                f"({int(nonfinite.sum())} pixels): the frames are damaged; re-acquire them"
            )
    flat_constant = np.flatnonzero(stats.flat_min == stats.flat_max)
    if flat_constant.size:
        raise AnalysisInputError(
            f"{source}: flat frame(s) {_frames_text(flat_constant)} are constant "
            f"({_value_text(stats.flat_min[flat_constant])}): a flat records the beam's "
            "profile and noise; the camera dropped them, saturated, or the shutter was closed "
            "— re-acquire the flats"
        )
    dark_constant = stats.dark_min == stats.dark_max
    notes = []
    if dark_constant.all():
        notes.append(
            f"{source}: every dark frame is constant "
            f"({_value_text(stats.dark_min)}): a camera's darks carry read noise, so these "
            "were synthesised or not recorded; the correction takes them as they are"
        )
    elif dark_constant.any():
        bad = np.flatnonzero(dark_constant)
        raise AnalysisInputError(
            f"{source}: dark frame(s) {_frames_text(bad)} are constant "
            f"({_value_text(stats.dark_min[bad])}) while the others carry noise: the camera "
            "dropped them; re-acquire the darks"
        )
    # Flats taken with the shutter closed equal the darks, so about half their pixels come out
    # "not brighter" by noise alone; swapped frames give all of them; a good scan only its dead
    # pixels. A quarter separates the cases with room on both sides.
    if stats.pixels and 4 * stats.not_brighter >= stats.pixels:
        raise AnalysisInputError(
            f"{source}: the mean flat is not brighter than the mean dark at "
            f"{100 * stats.not_brighter / stats.pixels:.0f}% of the pixels: the flats and darks "
            "are swapped, or the flats were taken with the shutter closed; check "
            "/exchange/data_white and /exchange/data_dark"
        )
    for note in notes:
        warnings.warn(note, ReferenceWarning, stacklevel=2)
    return notes


def check_projections(arr: np.ndarray, *, first_row: int = 0, source: str = "the scan") -> None:
    """Refuse projections that hold no measurement: all zero, or NaN/infinite anywhere.

    A camera that drops a frame may leave zeros (or a float file NaN) in its place; −log
    would turn either into a plausible-looking attenuation. Checked on the rows read, so a
    slab of rows pays two passes over its own data.

    Parameters
    ----------
    arr : ndarray, shape (n_angles, rows, cols)
        Raw projections of some detector rows.
    first_row : int
        Detector row of ``arr[:, 0]``, for the message.
    source : str
        The scan, for the message.

    Raises
    ------
    AnalysisInputError
        Naming the frames and rows.
    """
    stack = _as_stack(arr, "arr")
    rows = f"rows {first_row}–{first_row + stack.shape[1] - 1}"
    flat = stack.reshape(stack.shape[0], -1)
    nonfinite = np.flatnonzero(~np.isfinite(flat).all(axis=1))
    if nonfinite.size:
        raise AnalysisInputError(
            f"{source}: projection(s) {_frames_text(nonfinite)} hold NaN or infinite values in "
            f"{rows}: the frames are damaged; re-acquire the scan"
        )
    empty = np.flatnonzero(~flat.any(axis=1))
    if empty.size:
        raise AnalysisInputError(
            f"{source}: projection(s) {_frames_text(empty)} are all 0 in {rows}: the camera "
            "dropped them (a camera's frame always carries its dark offset); re-acquire the scan"
        )
