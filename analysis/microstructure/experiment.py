"""One in-situ experiment, analysed step by step: the table and the paper's figure types.

An experiment is the sequence of reconstructed scans of one cell (pristine, after each plating
and stripping step, failed). :func:`analyze_experiment` runs every measurement of
:mod:`insitu.analysis` on each step the same way:

1. each scan is aligned to the first (:mod:`.tomo_align`); the pellet's disc is found on the
   first scan and used for all;
2. the Li|SE interfaces are located per scan (:func:`.tomo_segment.find_interfaces`);
3. **one** global threshold is computed from the pooled electrolyte histograms of all scans
   (ImageJ Default or Otsu, 256 bins) and applied identically to every scan; it is returned
   and stored with the results;
4. per step: porosity and pore sizes (local thickness), cracks under two conventions (see
   "Two crack conventions" below), crack growth against the previous step, the
   X-ray-transparent volume, the electrodes' thickness at 15 locations, porosity-factor
   statistics on 30/60/120 µm cubes and the interfacial intensity at both interfaces;
5. the charge per electrode from the thickness changes (:func:`.tomo_electrodes.charge_balance`).

Two crack conventions
---------------------
Both are measured on every step and reported side by side, each under its own columns and
described in ``result.json`` (``"conventions"``, :func:`crack_conventions`):

* **grown since the first scan** (``crack_*`` columns): components of the voxels that became
  transparent since the first (pristine) scan, ``find_cracks(..., reference=first)``, at least
  ``min_crack_volume_um3``. It separates cracks from pores even where the pores percolate, but
  needs a pristine scan of the same cell: the first scan (and a single volume) has none.
* **per scan, the paper's** (``cracks_per_scan_*`` columns): components of the scan's own
  pore phase of at least ``paper_crack_min_um3`` (and planarity ``paper_crack_planarity_min``),
  ``find_cracks(..., reference=None)``: "pores left after removing components smaller than a
  threshold volume". It works on any single scan. Where the pore phase percolates (A-LPS, and
  at 3 µm voxels every simulated preset, whose pores the partial volume joins) the whole pore
  network is one component above any threshold and is counted as one crack: the paper's
  "over-estimated but consistent". Only its table is kept, not its labels.

Measured on the simulated scans (small size, 3 µm voxels, ``insitu tomo-scan --sim``): the
largest pore component of the pristine scans' truth labels is 1.05·10⁴ µm³ for LiI-AN (the one
preset whose pores do not percolate in the truth), while A-LPS (5.9·10⁶ µm³, 99.98 % of the
pores) and LiI-AT (1.6·10⁶ µm³, 89 %) percolate; in the reconstructed LiI-AT scan the largest
pore apart from the network is 2.7·10³ µm³. The default ``paper_crack_min_um3`` of 2·10⁴ µm³
sits above all of these. In the reconstructed scans the threshold's partial volume joins
pores further (LiI-AN: components up to 2·10⁵ µm³ at 3 µm voxels, and one network at 1.5 µm),
so on simulated scans the per-scan convention counts the pore network, 10²–10³ times the truth's
crack volume (``benchmarks/bench_cracks_truth.py``); the grown convention is the one to read
there. Planarity does not help against a percolating network (its planarity is 0.84–0.85,
above that of most cracks), so its default is 0: the paper's volume-only rule. The per-scan
convention adds one slab-wise labelling per step: 0.017–0.020 s a step at the small size,
about half the grown convention's (``timings["cracks_per_scan"]``).

Volumes are any sliceable ``(z, y, x)`` arrays (numpy, Zarr); grey values as reconstructed,
read slab by slab. Held in memory at a time: the current step's binarised electrolyte (one
byte per voxel), the first step's packed 8 voxels per byte, the current step's crack labels
(one byte per voxel below 255 cracks) and the previous step's as their non-zero voxels only,
and the local-thickness slabs (3 GiB, while the binarised electrolyte is filled);
``crack_labels`` keeps only the last step's. A non-zero alignment shift is applied in memory
(the whole moving volume).

Reads. A uint8 scan is read (and its Zarr chunks decoded) twice: once in the *study pass*,
which keeps its per-row grey-value counts inside the disc (256 integers a row) and the
thickness windows' profiles, from which the interfaces, the threshold, the partial-volume
levels and porosity, the transparent volume and the thickness are all summed; and once for
the pore phase, which the local thickness reads slab by slab and fills in as it goes (the
cracks and the porosity factor use it from memory). The first scan is read once more for its
unmasked profile, which finds the disc. Sums of integers, so every number equals the one of
a pass per measurement, which is still the path for other dtypes (``timings["study_pass"]``
is the pass).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from ..errors import AnalysisInputError
from ..tomo.prep.alignment import Shift, align_to, apply_shift
from ..volumes.checks import check_finite
from .cracks import _flat_nonzero, crack_summary, find_cracks, match_cracks
from .electrodes import (
    WindowProfiles,
    charge_balance,
    electrode_thickness,
    transparent_volume,
    transparent_volume_from_counts,
)
from .interface import interface_intensity_table, interfacial_intensity_maps
from .maps import PorosityFactor, porosity_factor, section_stats
from .partial_volume import PhaseLevels, pv_porosity, pv_porosity_from_counts
from .pores import pore_analysis, psd_sample_blocks
from .segment import (
    Interfaces,
    StudyThreshold,
    electrolyte_rows,
    estimate_pellet_radius,
    find_interfaces,
    pellet_mask,
    uint8_row_value_counts,
)

__all__ = [
    "ExperimentResult",
    "Step",
    "TomoSettings",
    "analyze_experiment",
    "crack_conventions",
    "voxel_um_from_attrs",
]


@dataclass(frozen=True)
class Step:
    """One scan of the experiment and where in the protocol it was taken.

    ``charge_mC`` is the charge passed since the first scan (cumulative ∫|I|dt, mC), so the
    charge of the interval before this scan is its difference from the previous step's.
    """

    name: str
    volume: Any
    charge_mC: float | None = None
    current_density_mA_cm2: float | None = None
    half_cycle: str | None = None


@dataclass(frozen=True)
class TomoSettings:
    """How the experiment is measured (the same for every step).

    Parameters
    ----------
    voxel_um : float
        Voxel edge in µm.
    method : {"default", "otsu"}
        ImageJ threshold method for the study threshold.
    min_crack_volume_um3 : float
        Components grown since the first scan smaller than this are not cracks (the
        "grown since the first scan" convention, ``crack_*`` columns).
    block_um : tuple of float
        Cube sizes of the porosity factor.
    area_cm2 : float or None
        Electrode area, for the charge per electrode from thickness changes.
    psd : bool
        Compute the pore size distribution (local thickness), the slowest measurement.
    align : bool
        Align every scan to the first.
    mask_margin_px : float
        Pixels inside the pellet's edge left out (edge artefacts of the reconstruction).
    interface_margin_rows : float
        Rows next to each interface left out of the electrolyte measurements.
    solid_level, void_level : float or None
        Grey of pure electrolyte and of a pore for the partial-volume porosity
        (``porosity_pv``, :mod:`.partial_volume`); None calibrates each from the study's
        histogram (the void: 0, a pore's μ, unless a distinct pore peak). Give the solid
        level (``μ · voxel`` of the dense electrolyte, ``solid_level_from_composition``)
        when pores are near the voxel size: the histogram's peak then sits below it.
    paper_crack_min_um3 : float
        The paper's per-scan convention (``cracks_per_scan_*`` columns): components of a
        scan's pore phase at least this large (µm³) are cracks. Choose it above the largest
        pore of the pristine scan (``label_pores`` tells); the default, 2·10⁴ µm³, is above
        the largest pore of every simulated preset whose pores do not percolate (see the
        module notes).
    paper_crack_planarity_min : float
        The per-scan convention also requires ``planarity ≥`` this (0 to 1; 0 = volume only,
        the paper's definition; ≈ 0.6 keeps sheets and drops round pores).
    psd_fraction : float or None
        Measure the pore sizes on this random fraction of the electrolyte's 64-row blocks
        only (for speed; :func:`.pores.pore_analysis`); None: every row. Recorded with the
        settings in ``result.to_dict()``.
    psd_seed : int
        Seed of that draw: the same seed measures the same rows.
    """

    voxel_um: float
    method: Literal["default", "otsu"] = "default"
    min_crack_volume_um3: float = 1000.0
    block_um: tuple[float, ...] = (30.0, 60.0, 120.0)
    area_cm2: float | None = None
    psd: bool = True
    align: bool = True
    mask_margin_px: float = 2.0
    interface_margin_rows: float = 1.0
    solid_level: float | None = None
    void_level: float | None = None
    paper_crack_min_um3: float = 2.0e4
    paper_crack_planarity_min: float = 0.0
    psd_fraction: float | None = None
    psd_seed: int = 0

    def __post_init__(self) -> None:
        if self.psd_fraction is not None:
            # The same checks (and messages) as pore_analysis, before any step is read.
            psd_sample_blocks(1, self.psd_fraction, self.psd_seed)
        if not self.voxel_um > 0:
            raise AnalysisInputError(f"voxel_um must be positive (µm), got {self.voxel_um}")
        if not (np.isfinite(self.paper_crack_min_um3) and self.paper_crack_min_um3 >= 0):
            raise AnalysisInputError(
                "paper_crack_min_um3 (--paper-crack-min-um3) must be a volume >= 0 µm³, got "
                f"{self.paper_crack_min_um3!r}: give one above the pristine scan's largest pore"
            )
        if not 0.0 <= self.paper_crack_planarity_min <= 1.0:
            raise AnalysisInputError(
                "paper_crack_planarity_min (--paper-crack-planarity) must be between 0 and 1, "
                f"got {self.paper_crack_planarity_min!r}: 0 keeps every shape (the paper's "
                "rule), ≈ 0.6 keeps sheets only"
            )
        if self.method not in ("default", "otsu"):
            raise ValueError(f"method must be 'default' or 'otsu', got {self.method!r}")


@dataclass
class ExperimentResult:
    """Everything measured on an experiment."""

    table: pd.DataFrame
    threshold: StudyThreshold
    settings: TomoSettings
    interfaces: list[Interfaces]
    shifts: list[Shift]
    porosity_factors: dict[str, dict[float, PorosityFactor]] = field(repr=False)
    section_stats: pd.DataFrame = field(repr=False)
    interface_intensity: pd.DataFrame = field(repr=False)
    crack_tables: dict[str, pd.DataFrame] = field(repr=False)
    crack_growth: dict[str, pd.DataFrame] = field(repr=False)
    crack_labels: dict[str, np.ndarray] = field(repr=False)
    thickness: dict[str, pd.DataFrame] = field(repr=False)
    charge: pd.DataFrame | None = None
    #: Wall seconds per measurement, summed over the steps.
    timings: dict[str, float] = field(default_factory=dict)
    #: Levels of the partial-volume porosity (None when they could not be calibrated).
    pv_levels: PhaseLevels | None = None
    #: Per step, the cracks under the paper's per-scan convention (tables only, no labels).
    crack_tables_per_scan: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary: the per-step table, the threshold, the crack conventions
        and the settings."""
        table = self.table.replace({np.nan: None})
        return {
            "steps": table.to_dict(orient="records"),
            "threshold": self.threshold.to_dict(),
            "conventions": crack_conventions(self.settings),
            "pv_levels": None if self.pv_levels is None else self.pv_levels.to_dict(),
            "settings": {
                k: (list(v) if isinstance(v, tuple) else v)
                for k, v in self.settings.__dict__.items()
            },
            "timings_s": self.timings,
            "charge_per_electrode": (
                None
                if self.charge is None
                else self.charge.replace({np.nan: None}).to_dict("records")
            ),
        }


def crack_conventions(settings: TomoSettings) -> dict[str, dict[str, Any]]:
    """What each crack convention of the step table means, with its thresholds.

    Parameters
    ----------
    settings : TomoSettings

    Returns
    -------
    dict
        ``"grown_since_first_scan"`` (the ``crack_*`` columns) and ``"per_scan"`` (the
        ``cracks_per_scan_*`` columns, the paper's), each with ``name``, ``definition``,
        ``columns`` and its threshold(s).
    """
    return {
        "grown_since_first_scan": {
            "name": "grown since the first scan",
            "definition": (
                "components of the voxels that became transparent since the first (pristine) "
                "scan, pieces joined through the old pores between them; volume corrected for "
                "the old pores a crack runs through; 0 on the first scan and a single volume"
            ),
            "columns": list(_GROWN_COLUMNS),
            "min_volume_um3": settings.min_crack_volume_um3,
        },
        "per_scan": {
            "name": "per scan (the paper's)",
            "definition": (
                "components of the scan's pore phase (26-connected) at least min_volume_um3 "
                "and at least planarity_min planar; where the pores percolate their network "
                "counts as one crack (over-estimated but consistent)"
            ),
            "columns": list(_PER_SCAN_COLUMNS),
            "min_volume_um3": settings.paper_crack_min_um3,
            "planarity_min": settings.paper_crack_planarity_min,
        },
    }


_GROWN_COLUMNS = (
    "crack_count",
    "crack_volume_um3",
    "crack_volume_top_um3",
    "crack_volume_bottom_um3",
)
_PER_SCAN_COLUMNS = (
    "cracks_per_scan_count",
    "cracks_per_scan_volume_um3",
    "cracks_per_scan_volume_top_um3",
    "cracks_per_scan_volume_bottom_um3",
)

_SLAB_ROWS = 64


def _pore_phase(
    volume: Any, value: float, disc: np.ndarray, z0: int, z1: int, out: np.ndarray | None = None
) -> np.ndarray:
    """``grey < value`` inside the disc for rows ``[z0, z1)``, read slab by slab (into
    ``out`` when given).

    Only the boolean result is held (1 byte per voxel), never a float copy of the rows.
    """
    pores = np.empty((z1 - z0, *disc.shape), dtype=bool) if out is None else out
    for a in range(z0, z1, _SLAB_ROWS):
        b = min(a + _SLAB_ROWS, z1)
        np.less(volume[a:b], value, out=pores[a - z0 : b - z0])
        pores[a - z0 : b - z0] &= disc
    return pores


#: Memory for the local-thickness slabs (the rest of the budget holds the pore phase, which
#: the local thickness fills, and later the crack labels of two steps).
_PSD_BUDGET_GIB = 3.0


class _PackedBits:
    """A boolean volume stored 8 voxels per byte, sliced like an array along z (then y, x)."""

    def __init__(self, volume: np.ndarray) -> None:
        self.shape = tuple(volume.shape)
        self.ndim = len(self.shape)
        self.dtype = np.dtype(bool)
        self._packed = np.packbits(volume, axis=-1)

    def __getitem__(self, index: Any) -> np.ndarray:
        index = index if isinstance(index, tuple) else (index,)
        zy = index[:2]
        # unpackbits gives 0/1 bytes: viewed as booleans, without a second pass.
        rows = np.unpackbits(self._packed[zy], axis=-1, count=self.shape[-1]).view(bool)
        return rows[..., index[2]] if len(index) > 2 else rows

    def packed_rows(self, z0: int, z1: int) -> np.ndarray:
        """Rows z0:z1 as stored (``np.packbits`` along x, a view): ``find_cracks`` reads the
        bits directly instead of unpacking them."""
        return self._packed[z0:z1]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)


class _SparseLabels:
    """A label volume stored as its non-zero voxels, sliced like an array along z.

    Cracks are a few per cent of the electrolyte at most, so the previous step's labels,
    kept only to match cracks against, cost ~10 bytes per crack voxel here instead of one
    byte per voxel of the volume (1.7 GB at beamline size).
    """

    def __init__(self, labels: np.ndarray) -> None:
        self.shape = tuple(labels.shape)
        self.ndim = len(self.shape)
        self.dtype = labels.dtype
        plane = int(np.prod(self.shape[1:]))
        # One compiled pass per row: no temporary larger than the non-zero voxels' indices.
        self._index, self._values = _flat_nonzero(np.ascontiguousarray(labels))
        self._plane = plane

    @property
    def nbytes(self) -> int:
        return int(self._index.nbytes + self._values.nbytes)

    def __getitem__(self, index: Any) -> np.ndarray:
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise TypeError("_SparseLabels supports only row slices volume[z0:z1]")
        z0, z1, _ = index.indices(self.shape[0])
        z1 = max(z0, z1)
        out = np.zeros((z1 - z0, *self.shape[1:]), dtype=self.dtype)
        lo, hi = np.searchsorted(self._index, [z0 * self._plane, z1 * self._plane])
        out.ravel()[self._index[lo:hi] - z0 * self._plane] = self._values[lo:hi]
        return out

    def nonzero_voxels(self) -> tuple[np.ndarray, np.ndarray]:
        """Flat indices (ascending) and labels of the non-zero voxels (``match_cracks``
        matches from them without rebuilding the dense slabs)."""
        return self._index, self._values


class _Timer:
    """``with timer("name"):`` adds the block's wall time to ``timings["name"]``."""

    def __init__(self, timings: dict[str, float]) -> None:
        self.timings = timings

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t0


class _Below:
    """A lazily thresholded volume: ``self[index]`` is ``volume[index] < value``.

    Lets the slab-wise measurements read a binarised whole volume without building it.
    """

    def __init__(self, volume: Any, value: float) -> None:
        self.volume = volume
        self.value = value
        self.shape = tuple(volume.shape)
        self.ndim = len(self.shape)
        self.dtype = np.dtype(bool)

    def __getitem__(self, index: Any) -> np.ndarray:
        return np.asarray(self.volume[index]) < self.value

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = np.asarray(self.volume) < self.value
        return out if dtype is None else out.astype(dtype)


def _crack_columns(cracks: pd.DataFrame, columns: Sequence[str]) -> dict[str, Any]:
    """Count, volume and volume per origin of one step's cracks, under ``columns``' names."""
    count, volume, top, bottom = columns
    return {
        count: int(crack_summary(cracks).get("count", 0)),
        volume: _crack_volume(cracks),
        top: _crack_volume(cracks, "top"),
        bottom: _crack_volume(cracks, "bottom"),
    }


def _crack_volume(cracks: pd.DataFrame, origin: str | None = None) -> float:
    """Crack volume (µm³), corrected for the old pores cracks run through when available."""
    if origin is not None:
        cracks = cracks[cracks["origin"] == origin]
    column = "volume_corrected_um3" if "volume_corrected_um3" in cracks else "volume_um3"
    return float(cracks[column].sum()) if len(cracks) else 0.0


def _pellet_disc(volume: Any, interfaces: Interfaces, margin_px: float) -> np.ndarray:
    """The pellet's disc from a few electrolyte rows of the first scan."""
    z0, z1 = electrolyte_rows(interfaces)
    mid = (z0 + z1) // 2
    image = np.asarray(volume[max(z0, mid - 2) : min(z1, mid + 3)], dtype=np.float32).mean(axis=0)
    radius = estimate_pellet_radius(image)
    return pellet_mask(image.shape, radius_px=radius, margin_px=margin_px)


def voxel_um_from_attrs(attrs: Mapping[str, Any]) -> float | None:
    """The voxel edge (µm) recorded in a reconstructed volume's attributes.

    Parameters
    ----------
    attrs : mapping
        The volume's attributes, e.g. ``zarr.open_array(path).attrs``.

    Returns
    -------
    float or None
        ``voxel_um``, as :func:`~insitu.analysis.tomo.pipeline.reconstruct_scan` writes it;
        volumes written before the rename say ``voxel_size_um``, which is read as well. None
        when neither is recorded.
    """
    for key in ("voxel_um", "voxel_size_um"):
        value = attrs.get(key)
        if value is not None:
            return float(value)
    return None


def _check_steps(steps: Sequence[Step]) -> None:
    if not steps:
        raise ValueError("give at least one step (the pristine scan first)")
    shapes = {tuple(s.volume.shape) for s in steps}
    if len(shapes) != 1:
        raise AnalysisInputError(
            f"all scans of an experiment must have one shape, got {sorted(shapes)}; "
            "reconstruct them with the same --rows and detector size"
        )
    # NaN rows (a failed reconstruction) are refused before anything is measured: they would
    # poison the alignment, the row profile and the threshold.
    for step in steps:
        check_finite(step.volume, name=f"step {step.name!r}")


def _aligned_volumes(
    steps: Sequence[Step], align: bool, timed: _Timer
) -> tuple[list[Any], list[Shift]]:
    """Every scan aligned to the first (the first as it is), and the shift of each."""
    reference = steps[0].volume
    shifts: list[Shift] = []
    volumes: list[Any] = []
    for step in steps:
        if align and step is not steps[0]:
            with timed("align"):
                shift = align_to(reference, step.volume)
                volume = apply_shift(step.volume, shift) if any(shift.integer) else step.volume
        else:
            shift = Shift(0.0, 0.0, 0.0, 0.0)
            volume = step.volume
        shifts.append(shift)
        volumes.append(volume)
    return volumes, shifts


@dataclass(frozen=True)
class _GreyCounts:
    """What a uint8 scan's grey values are needed for, gathered in one pass (the study pass).

    ``rows[z, v]``: voxels of row ``z`` inside the disc with grey ``v``; ``profiles``: the
    thickness windows' mean profiles (None when the windows do not fit: the thickness then
    reads the volume and reports why). Every grey measurement of the study and of the steps
    but the pore phase's is a sum over these: sums of integers, so the results are
    bit-identical to the slab-wise passes each used to make over the scan (one read and
    Zarr decode each: six per step at full size).
    """

    rows: np.ndarray
    profiles: np.ndarray | None

    def histogram(self, rows: tuple[int, int]) -> np.ndarray:
        """Counts of each grey value in rows ``[z0, z1)``."""
        return self.rows[rows[0] : rows[1]].sum(axis=0)

    def profile(self, n_disc: int) -> np.ndarray:
        """The row profile inside the disc (:func:`.segment.row_profile`)."""
        sums = self.rows @ np.arange(256, dtype=np.int64)
        return sums.astype(np.float64) / n_disc


def _grey_counts(volume: Any, disc: np.ndarray, windows: WindowProfiles | None) -> _GreyCounts:
    """One read of a uint8 scan: its per-row value counts in the disc and window profiles."""
    nz = volume.shape[0]
    rows = np.empty((nz, 256), dtype=np.int64)
    for a in range(0, nz, _SLAB_ROWS):
        slab = np.asarray(volume[a : min(nz, a + _SLAB_ROWS)])
        rows[a : a + len(slab)] = uint8_row_value_counts(slab, disc)
        if windows is not None:
            windows.add(slab, a)
    return _GreyCounts(rows, None if windows is None else windows.profiles())


@dataclass(frozen=True)
class _Study:
    """What every step is measured with: one pellet disc and one threshold for all scans,
    and each scan's own interfaces and electrolyte rows (and, for uint8 scans, the grey
    counts of each)."""

    disc: np.ndarray
    interfaces: list[Interfaces]
    rows: list[tuple[int, int]]
    threshold: StudyThreshold
    levels: PhaseLevels | None = None
    counts: list[_GreyCounts] | None = None


def _study(volumes: Sequence[Any], settings: TomoSettings, timed: _Timer) -> _Study:
    """Locate the electrolyte in every scan, then choose the study threshold.

    The pellet's disc is found on the first scan and used for all (the scans are aligned);
    the threshold is computed once from the pooled electrolyte histograms of all scans, so
    every step is binarised the same way. uint8 scans are read once each (after the first
    scan's unmasked profile) for everything but the pore phase (:class:`_GreyCounts`).
    """
    reference = volumes[0]
    if not all(np.dtype(v.dtype) == np.uint8 for v in volumes):
        return _study_by_passes(volumes, settings, timed)
    with timed("interfaces"):
        disc = _pellet_disc(reference, find_interfaces(reference), settings.mask_margin_px)
    with timed("study_pass"):
        counts = [_grey_counts(v, disc, _thickness_windows(v, disc, settings)) for v in volumes]
    with timed("interfaces"):
        n_disc = int(disc.sum())
        interfaces = [
            find_interfaces(v, profile=c.profile(n_disc))
            for v, c in zip(volumes, counts, strict=True)
        ]
        rows = [electrolyte_rows(i, margin_rows=settings.interface_margin_rows) for i in interfaces]
    with timed("threshold"):
        # As StudyThreshold.from_volumes: uint8 histograms are binned one value per bin.
        histogram = sum(c.histogram(r) for c, r in zip(counts, rows, strict=True))
        threshold = StudyThreshold.from_histogram(
            histogram, grey_range=(0.0, 256.0), method=settings.method
        )
    with timed("porosity_pv"):
        try:
            levels: PhaseLevels | None = PhaseLevels.from_histogram(
                histogram,
                grey_range=threshold.grey_range,
                solid=settings.solid_level,
                void=settings.void_level,
            )
        except AnalysisInputError:
            levels = None  # no electrolyte peak: porosity_pv is left empty, not an error
    return _Study(
        disc=disc,
        interfaces=interfaces,
        rows=rows,
        threshold=threshold,
        levels=levels,
        counts=counts,
    )


def _thickness_windows(
    volume: Any, disc: np.ndarray, settings: TomoSettings
) -> WindowProfiles | None:
    """The thickness windows to gather in the study pass; None when they do not fit (the
    per-step thickness then raises the reason, as it did before the pass gathered them)."""
    try:
        return WindowProfiles(tuple(volume.shape), voxel_um=settings.voxel_um, mask=disc)
    except ValueError:
        return None


def _study_by_passes(volumes: Sequence[Any], settings: TomoSettings, timed: _Timer) -> _Study:
    """:func:`_study` for scans that are not uint8: one pass over the scans per measurement."""
    reference = volumes[0]
    with timed("interfaces"):
        first_interfaces = find_interfaces(reference)
        disc = _pellet_disc(reference, first_interfaces, settings.mask_margin_px)
        interfaces = [find_interfaces(v, mask=disc) for v in volumes]
        rows = [electrolyte_rows(i, margin_rows=settings.interface_margin_rows) for i in interfaces]
    with timed("threshold"):
        threshold = StudyThreshold.from_volumes(
            volumes, method=settings.method, mask=disc, rows=rows
        )
    with timed("porosity_pv"):
        try:
            levels: PhaseLevels | None = PhaseLevels.from_volumes(
                volumes,
                grey_range=threshold.grey_range,
                mask=disc,
                rows=rows,
                solid=settings.solid_level,
                void=settings.void_level,
            )
        except AnalysisInputError:
            levels = None  # no electrolyte peak: porosity_pv is left empty, not an error
    return _Study(disc=disc, interfaces=interfaces, rows=rows, threshold=threshold, levels=levels)


class _Measurements:
    """The per-step measurements of one experiment, gathered in protocol order.

    Also carries what crack finding needs from earlier steps, kept compact: the first scan's
    pore phase (cracks are what became transparent since) and the previous step's labels
    (to match cracks against).
    """

    def __init__(self, settings: TomoSettings, study: _Study, timed: _Timer) -> None:
        self.settings = settings
        self.study = study
        self.timed = timed
        self.records: list[dict[str, Any]] = []
        self.porosity_factors: dict[str, dict[float, PorosityFactor]] = {}
        self.stats_tables: list[pd.DataFrame] = []
        self.intensity_tables: list[pd.DataFrame] = []
        self.crack_tables: dict[str, pd.DataFrame] = {}
        self.crack_growth: dict[str, pd.DataFrame] = {}
        self.crack_labels: dict[str, np.ndarray] = {}
        self.crack_tables_per_scan: dict[str, pd.DataFrame] = {}
        self.thickness: dict[str, pd.DataFrame] = {}
        self._reference_pores: _PackedBits | None = None
        self._previous_labels: _SparseLabels | None = None

    def add(
        self,
        step: Step,
        volume: Any,
        inter: Interfaces,
        rows: tuple[int, int],
        shift: Shift,
        counts: _GreyCounts | None = None,
    ) -> None:
        """Measure one step (the steps in protocol order) and keep its results.

        ``counts``: the step's grey counts from the study pass (uint8 scans), from which the
        grey measurements are summed instead of read again.
        """
        # The previous step's dense labels go before this step's measurements start (they
        # are kept sparse for the matching; only the last step's are returned).
        self.crack_labels.clear()
        disc, threshold = self.study.disc, self.study.threshold
        z0, z1 = rows
        pores = np.empty((z1 - z0, *disc.shape), dtype=bool)
        # The local thickness reads the pore phase anyway: it fills ``pores`` as it goes,
        # which saves a read (and Zarr decode) of the step.
        mean_pore_diameter = self._mean_pore_diameter(volume, rows, pores)
        if not self.settings.psd:
            with self.timed("binarize"):
                _pore_phase(volume, threshold.value, disc, z0, z1, out=pores)
        porosity = float(pores.sum() / (disc.sum() * (z1 - z0)))
        porosity_pv = None
        if self.study.levels is not None:
            with self.timed("porosity_pv"):
                porosity_pv = (
                    pv_porosity(volume, self.study.levels, mask=disc, rows=rows)
                    if counts is None
                    else pv_porosity_from_counts(counts.histogram(rows), self.study.levels)
                )
        cracks = self._cracks(step.name, pores, (inter.top - z0, inter.bottom - z0))
        per_scan = self._cracks_per_scan(step.name, pores, (inter.top - z0, inter.bottom - z0))
        transparent, thick = self._electrodes(step.name, volume, inter, counts)
        record: dict[str, Any] = {
            "step": step.name,
            "charge_mC": step.charge_mC,
            "current_density_mA_cm2": step.current_density_mA_cm2,
            "half_cycle": step.half_cycle,
            "porosity": porosity,
            "porosity_pv": porosity_pv,
            "mean_pore_diameter_um": mean_pore_diameter,
            **_crack_columns(cracks, _GROWN_COLUMNS),
            **_crack_columns(per_scan, _PER_SCAN_COLUMNS),
            "transparent_volume_um3": float(transparent),
            "top_thickness_um": float(thick["top_um"].mean()),
            "bottom_thickness_um": float(thick["bottom_um"].mean()),
            "interface_top_row": inter.top,
            "interface_bottom_row": inter.bottom,
            "electrolyte_z0": z0,
            "electrolyte_z1": z1,
            "shift_z": shift.dz,
            "shift_y": shift.dy,
            "shift_x": shift.dx,
        }
        record.update(self._porosity_factors(step.name, pores))
        del pores  # before the interface maps and the next step's pore phase
        record.update(self._interface_intensity(step.name, volume, inter))
        self.records.append(record)

    def _mean_pore_diameter(
        self, volume: Any, rows: tuple[int, int], pores: np.ndarray
    ) -> float | None:
        """Mean local thickness of the pores (None unless ``settings.psd``); fills ``pores``
        with the pore phase of ``rows`` when ``settings.psd``."""
        with self.timed("pore_sizes"):  # recorded (as ~0 s) without psd too
            if not self.settings.psd:
                return None
            analysis = pore_analysis(
                volume,
                self.study.threshold,
                voxel_um=self.settings.voxel_um,
                mask=self.study.disc,
                rows=rows,
                memory_budget_gib=_PSD_BUDGET_GIB,
                psd_fraction=self.settings.psd_fraction,
                psd_seed=self.settings.psd_seed,
                pores_out=pores,
            )
        return analysis.psd.mean_um

    def _electrodes(
        self, name: str, volume: Any, inter: Interfaces, counts: _GreyCounts | None
    ) -> tuple[float, pd.DataFrame]:
        """The X-ray-transparent volume and the electrodes' thickness at each location."""
        vox, disc, value = self.settings.voxel_um, self.study.disc, self.study.threshold.value
        with self.timed("transparent_volume"):
            if counts is None:
                transparent = transparent_volume(
                    _Below(volume, value),
                    voxel_um=vox,
                    interfaces=(inter.top, inter.bottom),
                    mask=disc,
                )
            else:
                transparent = transparent_volume_from_counts(
                    counts.rows, value=value, voxel_um=vox, interfaces=(inter.top, inter.bottom)
                )
        with self.timed("electrode_thickness"):
            thick = electrode_thickness(
                volume,
                voxel_um=vox,
                interfaces=(inter.top, inter.bottom),
                # No threshold: the Li's outer surface is its edge to the bright current
                # collector, found per location (Li against gas is invisible at 25 keV).
                mask=disc,
                profiles=None if counts is None else counts.profiles,
            )
        self.thickness[name] = thick
        return float(transparent), thick

    def _cracks(self, name: str, pores: np.ndarray, interfaces: tuple[int, int]) -> pd.DataFrame:
        """Cracks of one step (``interfaces`` in the pore phase's rows), matched to the last."""
        if self._reference_pores is None:
            # Kept for every later step: packed 8 voxels per byte.
            self._reference_pores = _PackedBits(pores)
        vox = self.settings.voxel_um
        # Cracks are what became transparent since the first scan (the first scan, its own
        # reference, has none): with a percolating pore phase, components alone cannot tell
        # cracks from pores.
        with self.timed("cracks"):
            labels, cracks = find_cracks(
                pores,
                voxel_um=vox,
                min_volume_um3=self.settings.min_crack_volume_um3,
                interfaces=interfaces,
                mask=self.study.disc,
                reference=self._reference_pores,
            )
            # Sparse first: the matching reads the non-zero voxels of both steps from it.
            current = _SparseLabels(labels)
            if self._previous_labels is not None:
                self.crack_growth[name] = match_cracks(self._previous_labels, current, voxel_um=vox)
        self.crack_tables[name] = cracks
        self.crack_labels[name] = labels
        self._previous_labels = current
        return cracks

    def _cracks_per_scan(
        self, name: str, pores: np.ndarray, interfaces: tuple[int, int]
    ) -> pd.DataFrame:
        """Cracks of one step under the paper's per-scan convention (the table only)."""
        with self.timed("cracks_per_scan"):
            _, cracks = find_cracks(
                pores,
                voxel_um=self.settings.voxel_um,
                min_volume_um3=self.settings.paper_crack_min_um3,
                planarity_min=self.settings.paper_crack_planarity_min,
                interfaces=interfaces,
                mask=self.study.disc,
                reference=None,
                slab_rows=_SLAB_ROWS,
                # Only the table is kept: no second labelling pass, no label volume.
                labels=False,
            )
        self.crack_tables_per_scan[name] = cracks
        return cracks

    def _porosity_factors(self, name: str, pores: np.ndarray) -> dict[str, float | None]:
        """Porosity factors on every cube size; returns the table's ``d_std_<size>um``."""
        columns: dict[str, float | None] = {}
        self.porosity_factors[name] = {}
        for size in self.settings.block_um:
            column = f"d_std_{size:g}um"
            try:
                with self.timed("porosity_factor"):
                    pf = porosity_factor(
                        pores, voxel_um=self.settings.voxel_um, block_um=size, mask=self.study.disc
                    )
            except ValueError:
                columns[column] = None  # the electrolyte is thinner than a cube
                continue
            self.porosity_factors[name][size] = pf
            st = section_stats(pf, "in-plane")
            st.insert(0, "block_um", size)
            st.insert(0, "step", name)
            self.stats_tables.append(st)
            d = pf.d[np.isfinite(pf.d)]
            columns[column] = float(d.std()) if d.size else None
        return columns

    def _interface_intensity(self, name: str, volume: Any, inter: Interfaces) -> dict[str, float]:
        """Intensity maps at both interfaces; returns the table's mean of each."""
        with self.timed("interface_maps"):
            maps = interfacial_intensity_maps(
                volume,
                (inter.top, inter.bottom),
                voxel_um=self.settings.voxel_um,
                grey_range=self.study.threshold.grey_range,
            )
        table = interface_intensity_table(maps)
        table.insert(0, "step", name)
        self.intensity_tables.append(table)
        return {
            "interface_top": float(maps[0].stats()["mean"]),
            "interface_bottom": float(maps[1].stats()["mean"]),
        }


def _charge_per_electrode(
    table: pd.DataFrame, steps: Sequence[Step], area_cm2: float | None
) -> pd.DataFrame | None:
    """The charge per electrode from the thickness changes (needs the area and two steps)."""
    if area_cm2 is None or len(steps) < 2:
        return None
    return charge_balance(
        table["top_thickness_um"].tolist(),
        table["bottom_thickness_um"].tolist(),
        area_cm2=area_cm2,
        # Steps carry the cumulative charge; the balance compares per interval.
        charge_passed_mC=np.diff(
            [s.charge_mC if s.charge_mC is not None else np.nan for s in steps]
        ),
    )


def analyze_experiment(steps: Sequence[Step], settings: TomoSettings) -> ExperimentResult:
    """Measure every step of an experiment with one threshold and one pellet disc.

    Parameters
    ----------
    steps : sequence of Step
        In protocol order; the first is the reference (pristine) scan.
    settings : TomoSettings

    Returns
    -------
    ExperimentResult
        ``table`` has one row per step: ``step``, ``charge_mC``, ``current_density_mA_cm2``,
        ``half_cycle``, ``porosity`` (the paper's method: the study threshold),
        ``porosity_pv`` (partial-volume estimator, :mod:`.partial_volume`; None when its
        levels could not be calibrated), ``mean_pore_diameter_um``, ``crack_count``,
        ``crack_volume_um3``, ``crack_volume_top_um3``, ``crack_volume_bottom_um3`` (cracks
        grown since the first scan), ``cracks_per_scan_count``, ``cracks_per_scan_volume_um3``,
        ``cracks_per_scan_volume_top_um3``, ``cracks_per_scan_volume_bottom_um3`` (the
        paper's per-scan convention; see the module notes), ``transparent_volume_um3``,
        ``top_thickness_um``, ``bottom_thickness_um``,
        ``d_std_<size>um`` per cube size, ``interface_top``/``interface_bottom`` (mean
        normalised intensity), ``shift_z/y/x``, the interface rows and ``electrolyte_z0``,
        ``electrolyte_z1`` (the rows measured; cube edges of the porosity factor count from
        ``electrolyte_z0``).
    """
    _check_steps(steps)
    timings: dict[str, float] = {}
    timed = _Timer(timings)
    volumes, shifts = _aligned_volumes(steps, settings.align, timed)
    study = _study(volumes, settings, timed)
    measured = _Measurements(settings, study, timed)
    counts = study.counts if study.counts is not None else [None] * len(steps)
    for step, volume, inter, rows, shift, grey in zip(
        steps, volumes, study.interfaces, study.rows, shifts, counts, strict=True
    ):
        measured.add(step, volume, inter, rows, shift, grey)
    table = pd.DataFrame.from_records(measured.records)
    return ExperimentResult(
        table=table,
        threshold=study.threshold,
        settings=settings,
        interfaces=study.interfaces,
        shifts=shifts,
        porosity_factors=measured.porosity_factors,
        section_stats=(
            pd.concat(measured.stats_tables, ignore_index=True)
            if measured.stats_tables
            else pd.DataFrame()
        ),
        interface_intensity=pd.concat(measured.intensity_tables, ignore_index=True),
        crack_tables=measured.crack_tables,
        crack_growth=measured.crack_growth,
        crack_labels=measured.crack_labels,
        thickness=measured.thickness,
        charge=_charge_per_electrode(table, steps, settings.area_cm2),
        timings=timings,
        pv_levels=study.levels,
        crack_tables_per_scan=measured.crack_tables_per_scan,
    )
