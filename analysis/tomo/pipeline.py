"""Chunked, bounded-memory reconstruction of a Data Exchange scan into a Zarr volume.

The scan is read in *sinogram slabs* (all angles, a band of detector rows), each slab runs
the whole pipeline and is written to its rows of the output volume, so no step ever holds
more than one slab (plus the reconstruction buffers) in memory:

    read rows (+ margin) ─► flat/dark normalise ─► zinger removal ─► Paganin (optional)
        ─► −log ─► drop margin ─► ring removal (per sinogram) ─► gridrec ─► Zarr rows

Steps that mix rows (zinger median, Paganin) read a margin of rows above and below the slab;
for the median the result is then identical to the unchunked one, for Paganin (whose kernel
has infinite support) it differs by less than the kernel's tail at 8 Paganin lengths (≈ 1e-4).
Every other step works row by row, so without Paganin the chunked volume is bit-identical to
one slab of the whole height.

Slabs run in this process one after the other (``scheduler=None``), or as tasks on Dask
distributed: ``"local"`` starts a ``LocalCluster`` whose workers share the memory budget,
any other string is a scheduler address. Tasks read their rows from the HDF5 file and write
their rows of the Zarr array themselves (slabs are aligned to the Zarr chunks), so no volume
data passes through the scheduler.

The scan is an APS Data Exchange file, read only through its one codec,
:mod:`insitu.instruments.dxchange` (:func:`~insitu.instruments.dxchange.read_scan_info` for
shapes, angles and metadata, :func:`~insitu.instruments.dxchange.read_rows` for a slab): the
one exception to "``analysis`` imports nothing else of the project", because the detector's
file is a wire format with one reader, whose angle rule (the ``units`` attribute decides, none
means degrees as in dxchange) this module does not repeat. :class:`ScanInfo` and
:func:`read_scan_info` are re-exported from there.

Before any work the scan is checked: its frames are verified by their checksums as they are
read (a corrupted chunk is refused by the codec, naming the frame); the flats and darks are
read once more, in bands of rows, and refused when they cannot normalise the projections
(:func:`~insitu.analysis.tomo.prep.flat_field.check_references`); each slab's projections are
refused when a frame is all zero or NaN. What is only flagged (frames without checksums,
missing projections, constant darks) is warned and recorded as ``scan_checks`` in the summary
and in the volume's attributes.
"""

from __future__ import annotations

import json
import math
import os
import resource
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from insitu.instruments.dxchange import ScanInfo, read_references, read_rows, read_scan_info

from ..errors import AnalysisInputError, OutputExistsError
from ..provenance import software_version
from ..volumes.levels import encode_levels
from .prep.flat_field import (
    attenuation,
    check_projections,
    check_references,
    minus_log,
    normalize,
    reference_stats,
    remove_outlier,
)
from .prep.phase import alpha_from_delta_beta, paganin_length, retrieve_phase
from .prep.stripe import remove_stripe_based_sorting, remove_stripe_fw
from .recon.algorithm import apply_circular_mask
from .recon.backends import Backend, make_backend
from .recon.rotation import find_center_pc, find_center_vo

__all__ = ["ReconOptions", "ScanInfo", "plan_slabs", "read_scan_info", "reconstruct_scan"]

GIB = 2**30
#: Bytes of flats and darks (float32) read at a time when checking them before a recon.
REFERENCE_BAND_BYTES = 64 * 2**20
#: Zarr chunk height (rows); slabs are multiples of it so that Dask tasks never share a chunk.
CHUNK_ROWS = 8

#: What the volume can store (:attr:`ReconOptions.dtype`).
OUTPUT_DTYPES = ("float32", "float16", "uint16", "uint8")


@dataclass(frozen=True)
class ReconOptions:
    """Parameters of the pipeline (JSON-friendly; stored with the volume).

    Parameters
    ----------
    center : float or None
        Rotation axis column; ``None`` finds it with Vo's method on the middle row.
    center_search : (float, float) or None
        Search range (columns) for the automatic centre; default the whole middle half of the
        detector, wide enough for off-centre pellets.
    rings : {"fw", "sort", "none"}
        Stripe removal before reconstruction: Fourier-wavelet (Münch), sorting-based (Vo), or
        none.
    ring_level, ring_sigma, ring_wname : int or None, float, str
        Fourier-wavelet parameters (TomoPy's ``level``, ``sigma``, ``wname``).
    sort_size : int or None
        Median size of the sorting-based method.
    paganin : bool
        Apply Paganin phase retrieval with ``delta_beta``.
    delta_beta : float
        δ/β of the retrieval's single material.
    energy_keV, pixel_size_um, distance_mm : float or None
        Geometry for Paganin; default from the file's metadata.
    zinger_dif : float or None
        Remove zingers: pixels brighter than their 3×3 median by more than this (in
        normalised transmission units); ``None`` skips it.
    flat_averaging : {"mean", "median"}
        How flats are combined (median resists zingers in flats).
    filter_name : str
        Reconstruction window (:data:`insitu.analysis.tomo.recon.algorithm.FILTERS`).
    mask_ratio : float or None
        Circular mask radius as a fraction of half the slice width.
    rows : (int, int) or None
        Reconstruct only detector rows ``[start, stop)``.
    memory_budget_gib : float
        Upper bound on the memory the reconstruction uses (all workers together).
    slab_rows : int or None
        Rows per slab (a multiple of 8); default the most the budget allows.
    backend : str
        ``"insitu"`` (Fourier-gridding FBP, default) or ``"tomopy"`` (TomoPy's Gridrec, when
        TomoPy is installed); see :mod:`insitu.analysis.tomo.recon.backends`.
    sample_diameter_um : float or None
        Diameter of a cylindrical sample centred on the axis and wider than the field of
        view (a 3 mm pellet in a 1.4 mm window): the rows are padded along its chord
        (:class:`~insitu.analysis.tomo.recon.algorithm.GridrecPlan`'s ``sample_radius``),
        which keeps the grey scale absolute (μ per voxel). ``None``: edge padding, right
        when the sample fits in the field of view.
    dtype : {"float32", "float16", "uint16", "uint8"}
        How the volume stores its values. ``float32`` (default) keeps the attenuation as
        reconstructed, what the analysis needs. ``float16`` halves the size (11 significant
        bits: 0.05 % steps). ``uint16``/``uint8`` store the index of each value's bin among
        2¹⁶ or 2⁸ over ``value_range``, and record the range as ``grey_min``/``grey_max``
        (the 8-bit export's convention): :func:`insitu.analysis.volumes.open_volume` reads
        them back as grey values within half a bin.
    value_range : (float, float) or None
        ``(lo, hi)`` of the integer levels, in the volume's units (1/pixel). ``None``: the
        extremes of the job's middle slab, widened by half their span on each side. Values
        outside are stored as the end levels and counted (``clipped_voxels``).
    """

    center: float | None = None
    center_search: tuple[float, float] | None = None
    rings: Literal["fw", "sort", "none"] = "fw"
    ring_level: int | None = None
    ring_sigma: float = 1.0
    ring_wname: str = "db5"
    sort_size: int | None = None
    paganin: bool = False
    delta_beta: float = 1000.0
    energy_keV: float | None = None
    pixel_size_um: float | None = None
    distance_mm: float | None = None
    zinger_dif: float | None = None
    flat_averaging: Literal["mean", "median"] = "mean"
    filter_name: str = "shepp"
    mask_ratio: float | None = 1.0
    rows: tuple[int, int] | None = None
    memory_budget_gib: float = 8.0
    slab_rows: int | None = None
    backend: str = "insitu"
    sample_diameter_um: float | None = None
    dtype: Literal["float32", "float16", "uint16", "uint8"] = "float32"
    value_range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.slab_rows is not None and (
            self.slab_rows < CHUNK_ROWS or self.slab_rows % CHUNK_ROWS
        ):
            raise AnalysisInputError(
                f"slab_rows must be a positive multiple of {CHUNK_ROWS}, got {self.slab_rows}"
            )
        if self.rings not in ("fw", "sort", "none"):
            raise AnalysisInputError(f"rings must be 'fw', 'sort' or 'none', got {self.rings!r}")
        if self.flat_averaging not in ("mean", "median"):
            raise AnalysisInputError(
                f"flat_averaging must be 'mean' or 'median', got {self.flat_averaging!r}"
            )
        if not self.memory_budget_gib > 0:
            raise AnalysisInputError(
                f"memory_budget_gib must be positive, got {self.memory_budget_gib}"
            )
        if self.sample_diameter_um is not None and not (
            math.isfinite(self.sample_diameter_um) and self.sample_diameter_um > 0
        ):
            raise AnalysisInputError(
                f"sample_diameter_um (--sample-diameter-um) must be a positive diameter in µm, "
                f"got {self.sample_diameter_um}"
            )
        if self.dtype not in OUTPUT_DTYPES:
            raise AnalysisInputError(
                f"dtype (--dtype) must be one of {', '.join(OUTPUT_DTYPES)}, got {self.dtype!r}"
            )
        if self.value_range is not None:
            lo, hi = self.value_range
            if self.dtype not in ("uint8", "uint16"):
                raise AnalysisInputError(
                    "value_range (--value-range) sets the levels of an integer volume; give "
                    f"--dtype uint8 or uint16 with it (got {self.dtype})"
                )
            if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
                raise AnalysisInputError(
                    f"value_range (--value-range LO,HI) must be finite with LO < HI, got "
                    f"{lo:g},{hi:g}"
                )
        if self.paganin and not self.delta_beta > 0:
            raise AnalysisInputError(
                f"delta_beta must be positive for Paganin, got {self.delta_beta}"
            )


def _paganin_geometry(info: ScanInfo, opts: ReconOptions) -> tuple[float, float, float]:
    """(pixel size cm, distance cm, energy keV) for Paganin, options before file metadata."""
    energy = opts.energy_keV if opts.energy_keV is not None else info.energy_keV
    pixel = opts.pixel_size_um if opts.pixel_size_um is not None else info.pixel_size_um
    dist = opts.distance_mm if opts.distance_mm is not None else info.distance_mm
    missing = [
        name
        for name, v in (("energy_keV", energy), ("pixel_size_um", pixel), ("distance_mm", dist))
        if v is None
    ]
    if missing:
        raise AnalysisInputError(
            f"Paganin needs {', '.join(missing)}: the file does not record it; give it "
            "in the options (e.g. --energy-keV 25 --pixel-size-um 0.69 --distance-mm 50)"
        )
    return pixel * 1e-4, dist * 0.1, energy  # type: ignore[operator]


def _margin_rows(info: ScanInfo, opts: ReconOptions) -> int:
    """Rows read beyond each side of a slab so that row-mixing steps see their neighbours."""
    margin = 1 if opts.zinger_dif is not None else 0  # 3 × 3 median
    if opts.paganin:
        pixel, dist, energy = _paganin_geometry(info, opts)
        length = paganin_length(pixel, dist, energy, alpha_from_delta_beta(opts.delta_beta))
        margin = max(margin, math.ceil(8 * length))
    return margin


#: Slabs a job that fits in one is cut into anyway, where it has the rows: one slab is read,
#: gridded and written one step after the other, while from two on the next slab is read and
#: the last written during the gridding (:func:`_run_slabs_overlapped`).
MIN_SLABS = 4


def _overlapping_rows(n_rows: int, margin: int) -> int:
    """Slab rows that cut ``n_rows`` into about :data:`MIN_SLABS` slabs of whole chunks, but
    no thinner than four margins (each slab reads its margin rows on both sides again)."""
    fewest = max(CHUNK_ROWS, -(-4 * margin // CHUNK_ROWS) * CHUNK_ROWS)
    return max(fewest, n_rows // MIN_SLABS // CHUNK_ROWS * CHUNK_ROWS)


def plan_slabs(info: ScanInfo, opts: ReconOptions, workers: int = 1) -> list[tuple[int, int]]:
    """Row ranges of the slabs, sized so that ``workers`` slabs fit in the memory budget.

    Per slab row: the frames as float32 through ~3 working copies while a slab is
    pre-processed, the sinograms of the slab being gridded, and the reconstructed slices of
    that slab and of the one being written (one slab is read ahead and one written behind
    the gridding); per worker, fixed: gridrec's padded spectra and finufft's fine grid.
    """
    r0, r1 = _checked_row_range(info, opts)
    n_pad = 2 * info.n_cols
    size = info.n_cols
    fixed = (
        4 * info.n_angles * n_pad * 8  # 4 complex transforms of padded spectra
        + 4 * (1.25 * size) ** 2 * 8  # finufft fine grids
        + info.n_angles * n_pad * 16  # polar points and coefficients
        + (info.n_flats + info.n_darks) * info.n_cols * 4 * 4
        + 256 * 2**20  # interpreter, libraries
    )
    per_row = (3 + 1) * info.n_angles * info.n_cols * 4 + (2 + 1) * size * size * 4
    budget = opts.memory_budget_gib * GIB / max(1, workers)
    margin = _margin_rows(info, opts)
    rows = int((budget - fixed) // per_row) - 2 * margin
    if rows < CHUNK_ROWS:
        need = (fixed + per_row * (CHUNK_ROWS + 2 * margin)) * workers / GIB
        raise AnalysisInputError(
            f"a memory budget of {opts.memory_budget_gib:g} GiB cannot hold one slab of "
            f"{CHUNK_ROWS} rows of this scan ({info.n_angles} × {info.n_cols}); give at "
            f"least {need:.1f} GiB or fewer workers"
        )
    rows = rows // CHUNK_ROWS * CHUNK_ROWS
    if opts.slab_rows is not None:
        rows = min(rows, opts.slab_rows)
    else:
        rows = min(rows, _overlapping_rows(r1 - r0, margin))
    # Slabs start on chunk boundaries of the output (relative to the first row).
    return [(a, min(a + rows, r1)) for a in range(r0, r1, rows)]


def preprocess_rows(
    info: ScanInfo,
    opts: ReconOptions,
    r0: int,
    r1: int,
    timings: dict[str, float] | None = None,
) -> np.ndarray:
    """Line integrals (−log of the corrected transmission) of rows ``[r0, r1)``.

    Reads a margin of rows beyond the slab for the row-mixing steps and drops it. Seconds
    spent reading are added to ``timings["read"]``, the rest to ``timings["preprocess"]``.

    Returns
    -------
    ndarray of float32, shape (n_angles, r1 − r0, n_cols)
    """
    t0 = time.perf_counter()
    margin = _margin_rows(info, opts)
    a, b = max(0, r0 - margin), min(info.n_rows, r1 + margin)
    # As the file stores them (uint16 from a camera): converted to float32 frame by frame
    # by the correction below, not by a copy of the whole slab.
    proj, flat, dark = read_rows(info.path, a, b)
    t_read = time.perf_counter()
    check_projections(proj, first_row=a, source=info.path)
    into = proj if proj.dtype == np.float32 else None
    # Zinger removal and Paganin work on the transmission, between the correction and −log;
    # without them both run in one pass.
    between = opts.zinger_dif is not None or opts.paganin
    if between:
        data = normalize(proj, flat, dark, averaging=opts.flat_averaging, out=into)
    else:
        data = attenuation(proj, flat, dark, averaging=opts.flat_averaging, out=into)
    del proj, flat, dark
    if opts.zinger_dif is not None:
        data = remove_outlier(data, opts.zinger_dif, size=3, axis=0, out=data)
    if opts.paganin:
        pixel, dist, energy = _paganin_geometry(info, opts)
        data = retrieve_phase(
            data, pixel_size=pixel, dist=dist, energy=energy, delta_beta=opts.delta_beta, out=data
        )
    if between:
        data = minus_log(data, out=data)
    data = np.ascontiguousarray(data[:, r0 - a : r1 - a, :])
    if opts.rings == "fw":
        data = remove_stripe_fw(
            data, level=opts.ring_level, wname=opts.ring_wname, sigma=opts.ring_sigma
        )
    elif opts.rings == "sort":
        data = remove_stripe_based_sorting(data, size=opts.sort_size)
    data = np.asarray(data, dtype=np.float32)
    if timings is not None:
        _add_time(timings, "read", t_read - t0)
        _add_time(timings, "preprocess", time.perf_counter() - t_read)
    return data


def _add_time(timings: dict[str, float], step: str, seconds: float) -> None:
    timings[step] = timings.get(step, 0.0) + seconds


def _add_times(timings: dict[str, float], more: dict[str, float]) -> None:
    for step, seconds in more.items():
        _add_time(timings, step, seconds)


#: Half-width (pixels) of Vo's search around the phase-correlation centre, and how far its
#: answer may lie from that centre to be taken as a refinement of it.
_VO_AROUND_PC_PX = 8.0
_VO_AGREES_PX = 2.0


def find_center(info: ScanInfo, opts: ReconOptions) -> float:
    """Rotation axis (column) of the scan.

    With ``center_search`` given: Vo's method on the pre-processed middle row over that range.
    Otherwise the first projection is matched with the mirrored last one (phase correlation
    over a band of middle rows, :func:`find_center_pc`), and Vo's method refines it within
    ±8 px. Vo alone fails on a pellet wider than the field of view (the in-situ cell: a 3 mm
    pellet in a 1.4 mm field): on a simulated full-size scan it returned columns 660 to
    1297 from row to row for an axis at 999.5, where the correlation found 999.5. Where
    Vo's answer lies more than 2 px from the correlation's, its metric has no clear
    minimum there and the correlation's centre is kept.
    """
    r0, r1 = _row_range(info, opts)
    mid = (r0 + r1) // 2
    plain = replace(opts, rings="none")
    middle = (info.n_cols - 1) / 2.0
    if opts.center_search is not None:
        smin, smax = opts.center_search
        sino = preprocess_rows(info, plain, mid, mid + 1)
        return float(find_center_vo(sino, ind=0, smin=smin, smax=smax))
    half = max(1, min(32, (r1 - r0) // 4))
    a, b = max(r0, mid - half), min(r1, mid + half)
    band = preprocess_rows(info, plain, a, b)
    c_pc = float(find_center_pc(band[0], band[-1], tol=0.25))
    lo = max(-middle + 5, c_pc - middle - _VO_AROUND_PC_PX)
    hi = min(middle - 5, c_pc - middle + _VO_AROUND_PC_PX)
    c_vo = float(find_center_vo(band[:, mid - a : mid - a + 1, :], ind=0, smin=lo, smax=hi))
    # Vo's sub-pixel refinement where it agrees with the correlation; where it wanders off
    # (the field-filling pellet: 993.0 for 999.5), its metric has no minimum there.
    return c_vo if abs(c_vo - c_pc) <= _VO_AGREES_PX else c_pc


def check_scan(info: ScanInfo, opts: ReconOptions) -> dict[str, Any]:
    """Refuse flats and darks that cannot normalise the scan; gather what is flagged.

    The flats and darks of the rows to reconstruct are read in bands of at most
    :data:`REFERENCE_BAND_BYTES` (a few per cent of the scan's reads) and checked as a whole
    by :func:`~insitu.analysis.tomo.prep.flat_field.check_references`.

    Returns
    -------
    dict
        ``checksums`` (``"fletcher32"``, or ``"none"`` for a file that cannot be verified) and
        ``notes``: the codec's (missing projections, no checksums) and the references'.

    Raises
    ------
    AnalysisInputError
        When the flats or darks cannot be used (the message says which and why).
    insitu.instruments.dxchange.ScanFileCorruptError
        When a flat or dark chunk fails its checksum.
    """
    r0, r1 = _checked_row_range(info, opts)
    per_row = max(1, (info.n_flats + info.n_darks) * info.n_cols * 4)
    band = max(1, REFERENCE_BAND_BYTES // per_row)
    stats = None
    for a in range(r0, r1, band):
        flat, dark = read_references(info.path, a, min(a + band, r1), dtype=np.float32)
        found = reference_stats(flat, dark)
        stats = found if stats is None else stats.merge(found)
    # check_references warns its own notes (ReferenceWarning); read_scan_info warned the codec's.
    notes = check_references(stats, source=info.path) if stats is not None else []
    return {
        "checksums": "fletcher32" if info.verified else "none",
        "notes": [*info.notes, *notes],
    }


_BACKENDS: dict[tuple, Backend] = {}


def _sample_radius_px(info: ScanInfo, opts: ReconOptions) -> float | None:
    """The sample's radius in detector pixels, from its diameter and the pixel size."""
    if opts.sample_diameter_um is None:
        return None
    pixel = opts.pixel_size_um if opts.pixel_size_um is not None else info.pixel_size_um
    if pixel is None:
        raise AnalysisInputError(
            "--sample-diameter-um needs the pixel size: the file does not record it; give "
            "--pixel-size-um"
        )
    return opts.sample_diameter_um / 2.0 / pixel


def _row_range(info: ScanInfo, opts: ReconOptions) -> tuple[int, int]:
    """The rows ``[r0, r1)`` the job reconstructs (``opts.rows``, else all)."""
    return opts.rows if opts.rows is not None else (0, info.n_rows)


def _checked_row_range(info: ScanInfo, opts: ReconOptions) -> tuple[int, int]:
    """:func:`_row_range`, refused unless it lies within the scan."""
    r0, r1 = _row_range(info, opts)
    if not 0 <= r0 < r1 <= info.n_rows:
        raise AnalysisInputError(f"rows must lie within 0 … {info.n_rows}, got {opts.rows}")
    return r0, r1


def _backend_for(info: ScanInfo, opts: ReconOptions, center: float) -> Backend:
    """One backend per geometry and job size, per process (Dask workers keep theirs across
    slabs); the job's rows decide how the backend plans (a preview's plan is not reused for
    a whole scan)."""
    r0, r1 = _row_range(info, opts)
    key = (
        r1 - r0,
        opts.backend,
        info.n_cols,
        center,
        opts.filter_name,
        opts.mask_ratio,
        opts.sample_diameter_um,
        info.theta_rad.tobytes(),
    )
    backend = _BACKENDS.get(key)
    if backend is None:
        _BACKENDS.clear()
        backend = make_backend(
            opts.backend,
            info.theta_rad,
            info.n_cols,
            center=center,
            filter_name=opts.filter_name,
            support=None if opts.mask_ratio is None else opts.mask_ratio * info.n_cols / 2,
            sample_radius=_sample_radius_px(info, opts),
            rows=r1 - r0,  # the whole job's: an upper bound for one of several workers
        )
        _BACKENDS[key] = backend
    return backend


def _grid_slab(
    info: ScanInfo, opts: ReconOptions, center: float, sino: np.ndarray
) -> tuple[np.ndarray, float]:
    """Reconstructed slices of one pre-processed slab, masked as asked; and the seconds."""
    t0 = time.perf_counter()
    rec = _backend_for(info, opts, center).reconstruct(sino)
    if opts.mask_ratio is not None:
        apply_circular_mask(rec, opts.mask_ratio)
    return rec, time.perf_counter() - t0


@dataclass(frozen=True)
class _Storage:
    """How the volume stores values: ``dtype``, and for levels the grey range they span."""

    dtype: str
    grey_range: tuple[float, float] | None = None

    def encode(self, rec: np.ndarray) -> tuple[np.ndarray, int]:
        """The slices as stored, and how many values were clipped to the end levels."""
        if self.grey_range is not None:
            return encode_levels(rec, self.grey_range, self.dtype)
        return rec.astype(self.dtype, copy=False), 0


def _storage_for(info: ScanInfo, opts: ReconOptions, center: float) -> _Storage:
    """The volume's storage; for levels without a ``value_range``, the range from the job's
    middle slab: its extremes widened by half their span on each side, so that the other
    slabs' values (a little brighter or darker) rarely clip."""
    if opts.dtype not in ("uint8", "uint16"):
        return _Storage(opts.dtype)
    if opts.value_range is not None:
        return _Storage(opts.dtype, (float(opts.value_range[0]), float(opts.value_range[1])))
    r0, r1 = _row_range(info, opts)
    m0 = max(r0, (r0 + r1) // 2 - CHUNK_ROWS // 2)
    rec, _seconds = _grid_slab(
        info, opts, center, preprocess_rows(info, opts, m0, min(r1, m0 + CHUNK_ROWS))
    )
    finite = rec[np.isfinite(rec)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    if not hi > lo:
        raise AnalysisInputError(
            f"the middle slab of rows {m0}–{min(r1, m0 + CHUNK_ROWS)} is constant ({lo:g}): "
            "no grey range to scale the levels to; give --value-range LO,HI or --dtype float32"
        )
    half = (hi - lo) / 2.0
    return _Storage(opts.dtype, (lo - half, hi + half))


def _write_slab(out_path: str, rec: np.ndarray, row: int, storage: _Storage) -> tuple[float, int]:
    """Write slices into the Zarr volume from its row ``row`` as ``storage`` says; the
    seconds it took (the conversion included) and how many values were clipped."""
    import zarr

    t0 = time.perf_counter()
    stored, clipped = storage.encode(rec)
    volume = zarr.open_array(out_path, mode="r+")
    volume[row : row + len(stored)] = stored
    return time.perf_counter() - t0, clipped


def _run_slab(
    info: ScanInfo,
    opts: ReconOptions,
    center: float,
    out_path: str,
    storage: _Storage,
    r0: int,
    r1: int,
    first: int,
) -> tuple[dict[str, float], int]:
    """Pre-process and reconstruct rows ``[r0, r1)`` into the Zarr volume (rows − first);
    the seconds each step took (``read``, ``preprocess``, ``gridding``, ``write``) and the
    values clipped to the end levels."""
    timings: dict[str, float] = {}
    sino = preprocess_rows(info, opts, r0, r1, timings)
    rec, seconds = _grid_slab(info, opts, center, sino)
    del sino
    _add_time(timings, "gridding", seconds)
    seconds, clipped = _write_slab(out_path, rec, r0 - first, storage)
    _add_time(timings, "write", seconds)
    return timings, clipped


def _peak_rss_bytes() -> int:
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(usage) * (1 if sys.platform == "darwin" else 1024)


@dataclass(frozen=True)
class _SlabPlan:
    """Row ranges of the slabs and the output volume's rows they fill."""

    slabs: list[tuple[int, int]]

    @property
    def first(self) -> int:
        """Detector row of the volume's first slice."""
        return self.slabs[0][0]

    @property
    def n_out(self) -> int:
        """Slices of the volume."""
        return self.slabs[-1][1] - self.first


def _local_workers(scheduler: str) -> int | None:
    """Worker processes of a ``"local"``/``"local:N"`` scheduler; ``None`` for an address."""
    if scheduler == "local":
        return max(1, min(2, os.cpu_count() or 1))
    if not scheduler.startswith("local:"):
        return None
    text = scheduler.removeprefix("local:")
    if not text.isdigit() or int(text) < 1:
        raise AnalysisInputError(
            f"--scheduler {scheduler}: give local:N with N ≥ 1 worker processes (e.g. local:2), "
            "'local', or a Dask scheduler address"
        )
    return int(text)


@contextmanager
def _dask_client(scheduler: str | None, opts: ReconOptions) -> Iterator[tuple[Any, int]]:
    """The Dask client for ``scheduler`` (``None``: none) and how many workers share the budget.

    ``"local"`` starts a ``LocalCluster`` of one worker process per core, at most two;
    ``"local:N"`` of N. Each worker reconstructs one slab at a time on its share of the cores
    and of the memory budget; both the client and the cluster are closed on leaving.
    """
    if scheduler is None:
        yield None, 1
        return
    local_workers = _local_workers(scheduler)
    from dask.distributed import Client, LocalCluster

    cluster = None
    if local_workers is not None:
        workers = local_workers
        threads = max(1, (os.cpu_count() or 1) // workers)
        cluster = LocalCluster(
            n_workers=workers,
            # One slab at a time per worker (the memory budget is shared per worker), its
            # FFTs, finufft and BLAS on the worker's share of the cores, not on all of them:
            # N workers with every core each would oversubscribe the machine N times.
            threads_per_worker=1,
            env={
                "INSITU_THREADS": str(threads),
                "OMP_NUM_THREADS": str(threads),
                "OPENBLAS_NUM_THREADS": str(threads),
            },
            memory_limit=int(opts.memory_budget_gib * GIB / workers),
            processes=True,
            dashboard_address=None,
        )
        client = Client(cluster)
    else:
        client = Client(scheduler)
        workers = max(1, len(client.scheduler_info().get("workers", {})))
    try:
        yield client, workers
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _create_volume(
    out: Path,
    scan: str | Path,
    info: ScanInfo,
    opts: ReconOptions,
    center: float,
    plan: _SlabPlan,
    checks: dict[str, Any],
    storage: _Storage,
) -> None:
    """The empty Zarr volume, chunked in slab-aligned rows, with its provenance attributes."""
    import zarr
    from zarr.codecs import BloscCodec

    volume = zarr.create_array(
        str(out),
        overwrite=True,
        shape=(plan.n_out, info.n_cols, info.n_cols),
        chunks=(CHUNK_ROWS, min(512, info.n_cols), min(512, info.n_cols)),
        dtype=storage.dtype,
        # Blosc's LZ4 on shuffled bytes, not Zarr's default Zstandard: on 16 reconstructed
        # 2048² float32 slices it wrote 160 MB in 0.42–0.89 CPU s where Zstandard wrote
        # 177 MB in 1.02–1.07 s (and no compression 268 MB in 0.62–1.01 s): the background
        # writer takes less from the gridding, and the volume is smaller.
        compressors=BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),
    )
    levels = {}
    if storage.grey_range is not None:
        lo, hi = storage.grey_range
        bits = np.iinfo(storage.dtype).bits
        levels = {
            "grey_min": lo,
            "grey_max": hi,
            "grey_levels": f"level i holds grey_min + i·w ≤ μ < grey_min + (i+1)·w, "
            f"w = (grey_max − grey_min)/{2**bits}",
        }
    volume.attrs.update(
        {
            **levels,
            "software": "insitu",
            "software_version": software_version(),
            "source": str(Path(scan).resolve()),
            "first_row": plan.first,
            "center": center,
            "voxel_um": info.pixel_size_um,
            "n_angles": info.n_angles,
            "units": "1/pixel (attenuation per voxel)",
            "options": json.loads(json.dumps(asdict(opts))),
            "scan_checks": checks,
        }
    )


@contextmanager
def _progress(
    progress: bool | Callable[[int, int], None], total: int
) -> Iterator[Callable[[], None]]:
    """A ``step()`` to call after each slab: a tqdm bar, the user's callback, or nothing."""
    bar = None
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="reconstruct", unit="slab", file=sys.stderr)
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if bar is not None:
            bar.update(1)
        elif callable(progress):
            progress(done, total)

    yield step
    if bar is not None:
        bar.close()


def _preprocess_beside_gridding(
    info: ScanInfo, opts: ReconOptions, r0: int, r1: int, timings: dict[str, float]
) -> np.ndarray:
    """:func:`preprocess_rows` on a thread beside the gridding, its BLAS on one thread.

    The ring filter's matrix products would otherwise start a BLAS thread per core while
    finufft's threads hold every core, and OpenBLAS's threads spin while they wait: on a
    64-row 1500 × 2000 scan with 2 cores (loaded by other work), 21 and 35 s with one BLAS
    thread against 43 and 43 s with two.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):
        return preprocess_rows(info, opts, r0, r1, timings)


def _run_slabs_overlapped(
    info: ScanInfo,
    opts: ReconOptions,
    center: float,
    out_path: str,
    plan: _SlabPlan,
    storage: _Storage,
    step: Callable[[], None],
    timings: dict[str, float],
) -> int:
    """Every slab in this process, with the next slab read and pre-processed, and the
    previous one written, while this one is gridded; the values clipped to the end levels.

    One slab ahead and one behind at most (``plan_slabs`` counts both in the memory
    budget). Reading waits on the disk and writing on the disk and Zarr's codec; the
    gridding keeps both cores busy meanwhile. A failure anywhere is raised here, after the
    step in flight on the other threads has ended (nothing is left writing to the volume).
    """
    slabs = plan.slabs
    with (
        ThreadPoolExecutor(1, thread_name_prefix="insitu-read") as reader,
        ThreadPoolExecutor(1, thread_name_prefix="insitu-write") as writer,
    ):

        def prepare(k: int) -> Future[np.ndarray]:
            return reader.submit(_preprocess_beside_gridding, info, opts, *slabs[k], timings)

        clipped = 0

        def written(future: Future[tuple[float, int]]) -> None:
            nonlocal clipped
            seconds, n = future.result()
            _add_time(timings, "write", seconds)
            clipped += n
            step()

        writing: Future[tuple[float, int]] | None = None
        ahead = prepare(0)
        try:
            for k in range(len(slabs)):
                sino = ahead.result()
                if k + 1 < len(slabs):
                    ahead = prepare(k + 1)
                rec, seconds = _grid_slab(info, opts, center, sino)
                del sino
                _add_time(timings, "gridding", seconds)
                if writing is not None:
                    written(writing)
                row = slabs[k][0] - plan.first
                writing = writer.submit(_write_slab, out_path, rec, row, storage)
                del rec
            if writing is not None:
                written(writing)
        except BaseException:
            ahead.cancel()
            raise
    return clipped


def _run_slabs(
    client: Any,
    info: ScanInfo,
    opts: ReconOptions,
    center: float,
    out: Path,
    plan: _SlabPlan,
    storage: _Storage,
    step: Callable[[], None],
    timings: dict[str, float],
) -> int:
    """Every slab, one after the other here, or as Dask tasks writing their own rows; each
    slab's step times are added to ``timings``; the values clipped to the end levels."""
    if client is None:
        return _run_slabs_overlapped(info, opts, center, str(out), plan, storage, step, timings)
    from dask.distributed import as_completed

    futures = [
        client.submit(
            _run_slab, info, opts, center, str(out), storage, r0, r1, plan.first, pure=False
        )
        for r0, r1 in plan.slabs
    ]
    clipped = 0
    for future in as_completed(futures):
        slab_timings, n = future.result()  # re-raises a failed slab's error here
        _add_times(timings, slab_timings)
        clipped += n
        step()
    return clipped


def _summary(
    out: Path,
    info: ScanInfo,
    opts: ReconOptions,
    center: float,
    plan: _SlabPlan,
    t_start: float,
    checks: dict[str, Any],
    timings: dict[str, float],
    storage: _Storage,
    clipped: int,
    backend_name: str,
) -> dict[str, Any]:
    """What :func:`reconstruct_scan` returns (JSON-friendly)."""
    return {
        "volume": str(out),
        "shape": [plan.n_out, info.n_cols, info.n_cols],
        "backend": backend_name,
        "dtype": storage.dtype,
        "value_range": None if storage.grey_range is None else list(storage.grey_range),
        "clipped_voxels": clipped,
        "center": center,
        "slabs": len(plan.slabs),
        "rows_per_slab": plan.slabs[0][1] - plan.slabs[0][0],
        "wall_s": time.perf_counter() - t_start,
        "timings_s": {name: round(seconds, 3) for name, seconds in timings.items()},
        "peak_rss_bytes": _peak_rss_bytes(),
        "options": json.loads(json.dumps(asdict(opts))),
        "scan_checks": checks,
    }


def reconstruct_scan(
    scan: str | Path,
    out: str | Path,
    options: ReconOptions | None = None,
    *,
    scheduler: str | None = None,
    overwrite: bool = False,
    progress: bool | Callable[[int, int], None] = True,
) -> dict[str, Any]:
    """Reconstruct a Data Exchange scan into a chunked Zarr volume, slab by slab.

    Parameters
    ----------
    scan : str or pathlib.Path
        The Data Exchange HDF5 file.
    out : str or pathlib.Path
        Zarr store to create (a folder); its attributes record the options, the centre,
        the voxel size, the source file and the software version.
    options : ReconOptions, optional
        Pipeline parameters; defaults as documented there.
    scheduler : str, optional
        ``None``: slabs one after the other in this process; ``"local"``: a Dask
        ``LocalCluster`` of one worker per core (at most two), ``"local:N"`` of N workers,
        sharing the cores and the memory budget; else a Dask scheduler address.
    overwrite : bool
        Replace an existing volume at ``out``.
    progress : bool or callable
        A progress bar on stderr (``True``), none (``False``), or ``progress(done, total)``.

    Returns
    -------
    dict
        Summary: ``volume``, ``shape``, ``center``, ``slabs``, ``rows_per_slab``,
        ``wall_s``, ``timings_s`` (where the time went: ``checks``, ``center``, ``plan``
        (the backend's set-up; the FFT plan itself is made with the first slab, in
        ``gridding``), ``read``, ``preprocess``, ``gridding``, ``write``; the slab
        steps summed over slabs, so over several Dask workers they add up to more than the
        wall time; ``range`` when the levels' range was found from the middle slab),
        ``peak_rss_bytes`` (this process), ``backend`` (the one that ran: what ``"auto"``
        chose), ``dtype``, ``value_range`` (the levels' grey
        range, else ``None``), ``clipped_voxels`` (values stored as the end levels), the
        options and ``scan_checks`` (:func:`check_scan`).

    Raises
    ------
    AnalysisInputError
        When the options, the flats and darks or a projection cannot be used.
    insitu.instruments.dxchange.DataExchangeError
        When the file is missing, not a Data Exchange scan, or corrupted
        (``ScanFileCorruptError`` names the dataset, the frame and its rows).
    """
    opts = options or ReconOptions()
    info = read_scan_info(scan)
    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out} exists; choose another --out or pass --overwrite")
    t_start = time.perf_counter()
    checks = check_scan(info, opts)
    t_checked = time.perf_counter()
    center = opts.center if opts.center is not None else find_center(info, opts)
    t_centred = time.perf_counter()
    # An unknown or missing backend fails before any work; "auto" says here what it chose.
    backend = _backend_for(info, opts, center)
    backend_name = getattr(backend, "name", opts.backend)
    if scheduler is None and hasattr(backend, "prepare"):
        # Here, before the reading thread starts: FFTW measures its plans on a quiet
        # process. (Dask workers plan their own.)
        backend.prepare()
    t_planned = time.perf_counter()
    storage = _storage_for(info, opts, center)
    timings = {
        "checks": t_checked - t_start,
        "center": t_centred - t_checked,
        "plan": t_planned - t_centred,
    }
    if storage.grey_range is not None and opts.value_range is None:
        timings["range"] = time.perf_counter() - t_planned
    with _dask_client(scheduler, opts) as (client, workers):
        plan = _SlabPlan(plan_slabs(info, opts, workers))
        _create_volume(out, scan, info, opts, center, plan, checks, storage)
        with _progress(progress, len(plan.slabs)) as step:
            clipped = _run_slabs(client, info, opts, center, out, plan, storage, step, timings)
        if storage.grey_range is not None:
            import zarr

            zarr.open_array(str(out), mode="r+").attrs["clipped_voxels"] = clipped
    return _summary(
        out, info, opts, center, plan, t_start, checks, timings, storage, clipped, backend_name
    )
