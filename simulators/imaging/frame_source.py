"""A camera frame source for the virtual pellet at a chosen point of its cycling history.

``pellet_frame_source(material, charge_mC, size, n_projections, seed)`` cycles a
:class:`~insitu.simulators.cell.model.VirtualCell` of the material through the in-situ protocol
until
``charge_mC`` has passed (:func:`~insitu.simulators.cell.history.cycle_to_charge`), builds the
:class:`~insitu.simulators.pellet.model.VirtualPellet` of that state, and precomputes the line
integrals ∫μ dl of the scan's nominal angles θ_k = k·π/N (plus θ = π, so that any angle in
[0, π] lies between two computed ones) slab by slab of detector rows. The result is a
:data:`~insitu.simulators.beamline.devices.FrameSource`: ``source(angle_rad, kind)`` returns the
counts per second of beam of a dark, a flat or a projection, drawn from the
:class:`~insitu.simulators.imaging.detector.Detector` model (beam profile, pixel gain, Poisson
noise, ring defects), which is what the simulated camera (and the EPICS IOC, which loads
``"insitu.simulators.imaging.frame_source:pellet_frame_source"`` with JSON keyword arguments)
expects.

Given a ``state`` (a :class:`~insitu.simulators.cell.model.CellState`, e.g. of the cell a
potentiostat
emulator drives), the source images that state instead of cycling a cell of its own
(:mod:`insitu.simulators.imaging.cell_imaging` builds one per scan from a live cell).

Angles: a nominal angle is served exactly; any other (a fly scan measures the angle at
mid-exposure, a little off the nominal one) is linearly interpolated between the two
neighbouring computed angles; angles outside [0, π] use p(θ + π, u) = p(θ, −u).

Memory: the line-integral store is (N + 1) × rows × cols float32, 6 MB at the small size and
≈14 GB at full size (1501 × 1143 × 2000), where it is a memory-mapped file in a temporary
folder (``workdir``), deleted by :meth:`PelletFrameSource.close` or when the source is
garbage-collected (its pages are file-backed, not anonymous memory); the RAM in use is one
slab of labels and its pore field, one batch of the projector and a few frames made ahead
(≈ 3 GB of anonymous memory at full size).

Speed (full size, 2 cores): the labels are made once, the ground truth counted from the
slabs projected; rows equal to one already projected (every Li row) are copied, not
projected; the next slab is labelled in a thread while this one is projected and the last
one written to the store (the compiled kernels release the GIL); the frames are made by two
worker threads ahead of the camera (see ``frames_ahead``), and a camera exposing for
``exposure_s`` takes them as uint16 ADU (:meth:`PelletFrameSource.frame_adu`).

Noise: every frame is keyed by (seed, kind, running index of that kind), so the same seed and
the same sequence of requests give the same frames, whatever the thread timing.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
import tempfile
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..cell.history import HistoryPoint, cycle_to_charge
from ..cell.model import CellGeometry, CellState, VirtualCell
from ..materials import MaterialPreset, get_material
from ..pellet.model import PelletGeometry, VirtualPellet
from ..pellet.phases import Phase
from .xray import (
    Detector,
    PhaseContrast,
    Projector,
    annulus_chord_m,
    attenuation_coefficients,
    label_table,
    refractive_decrements,
)

__all__ = [
    "DEFAULT_PROJECTIONS",
    "SIZES",
    "PelletFrameSource",
    "pellet_frame_source",
]

#: Pellet geometries by name.
SIZES: dict[str, Callable[[], PelletGeometry]] = {
    "small": PelletGeometry.small,
    "medium": PelletGeometry.medium,
    "full": PelletGeometry.full,
    "region": PelletGeometry.region,
}
#: Projections per scan by size: 1500 at 2-BM; 180 at the small size, where the pellet is
#: 120 voxels across, so 180 angles over 180° already sample its outer edge at about one
#: voxel per angular step (π/2 · 120 ≈ 190 for full sampling); 360 at the medium size (the
#: same pellet, 240 voxels across: twice the small size's sampling); 1500 in the full-size
#: region as at 2-BM, since there the noise per voxel, not the sampling, is what is tested.
DEFAULT_PROJECTIONS: dict[str, int] = {"small": 180, "medium": 360, "full": 1500, "region": 1500}

_REFERENCE_EXPOSURE_S = 0.1
_REFERENCE_PHOTONS = 1.0e4  # photons per 0.7 µm pixel in 100 ms at 2-BM (Detector's default)
_REFERENCE_PIXEL_M = 0.7e-6
_FLAT_PEAK_ADU = 40000.0  # keep flats well inside 16 bits whatever the photon count
_SAMPLE_DETECTOR_M = 0.05  # 50 mm, as DEFAULT_METADATA of the simulated beamline
_ANGLE_MATCH_RAD = 1e-9
#: Rows projected before FFTW_MEASURE planning (≈ 3–7 s) repays itself (≈ 0.03 s a row).
_MEASURE_MIN_ROWS = 400
_DARK, _FLAT, _PROJECTION = "dark", "flat", "projection"


@dataclass(frozen=True)
class _Stores:
    """Line integrals per computed angle: ∫μ dl and (with phase contrast) ∫δ dl (m)."""

    mu: np.ndarray
    delta: np.ndarray | None


class PelletFrameSource:
    """Frame source of a simulated scan of the virtual pellet (see the module docstring).

    Parameters
    ----------
    material : str or MaterialPreset
        Electrolyte preset (``A-LPS``, ``LPS:0.5LiI``, ``LiI-AT``, ``LiI-AN``) or its name.
    charge_mC : float
        Charge passed (∫|I| dt, mC) through the in-situ protocol before the scan; 0 is the
        pristine cell. Cycling stops earlier if the cell shorts. Leave it at 0 with ``state``.
    state : CellState, optional
        Image this state of a cell of ``material`` instead of cycling one: the history is
        derived from it (charge passed, shorted; the current density and half-cycle are
        unknown, ``None``). Its cracks come from the cell that made it, whatever ``seed``.
    size : {"small", "medium", "full", "region"}
        ``"small"``: 64 × 128 × 128 voxels of 3 µm (scaled pellet, seconds);
        ``"medium"``: the same pellet at 128 × 256 × 256 voxels of 1.5 µm (tens of seconds);
        ``"full"``: the 2-BM field of view, 1143 × 2000 × 2000 voxels of 0.7 µm (≈ 7 min
        of CPU for the whole scan, ≈14 GB of scratch disk in ``workdir``);
        ``"region"``: the full size's rows through a 96 × 96-column window around the axis
        (tens of seconds; local tomography of a pellet 64× wider than the window).
    n_projections : int, optional
        Nominal projections over 180° (default :data:`DEFAULT_PROJECTIONS`).
    seed : int
        Seed of the cell's crack positions, the microstructure and the detector noise.
    exposure_s : float
        Exposure the frames are made for; flats and projections are returned per second of
        beam (the camera multiplies by its exposure), darks as they are.
    energy_keV : float
        Beam energy.
    phase_contrast : bool
        Add propagation phase contrast for a 50 mm sample-to-detector distance (doubles the
        precompute); absorption only by default.
    flat_photons : float, optional
        Photons per pixel of a flat at the beam's peak for ``exposure_s``. Default: 10⁴ per
        0.7 µm pixel per 100 ms, scaled by the pixel area and the exposure (a 3 µm pixel of
        the small size collects ≈18× more; the ADU gain is lowered to keep 16 bits).
    workdir : str or Path, optional
        Folder of the memory-mapped line-integral store when it exceeds ``ram_limit_bytes``.
    ram_limit_bytes : int
        Above this the store goes to disk.
    progress : bool, optional
        Progress bar on stderr for the precompute; default: only for the full size.
    frames_ahead : int
        Frames made ahead by worker threads while the camera writes the present one (0:
        none): after a frame of a kind, the next ``frames_ahead`` of that kind, and after a
        projection at a nominal angle, those of the next nominal angles. A frame is keyed by
        its kind, index and angle, so one made ahead is the very frame asked for; a request
        that differs (a fly scan's off-nominal angle) is made on the spot.

    Attributes
    ----------
    preset : MaterialPreset
        The electrolyte, resolved once here and passed on to the cell, the pellet and the
        attenuation tables.
    material : str
        Its name, as the metadata and the ground truth record it.
    """

    def __init__(
        self,
        material: str | MaterialPreset,
        charge_mC: float = 0.0,
        *,
        state: CellState | None = None,
        size: str = "small",
        n_projections: int | None = None,
        seed: int = 0,
        exposure_s: float = _REFERENCE_EXPOSURE_S,
        energy_keV: float = 25.0,
        phase_contrast: bool = False,
        flat_photons: float | None = None,
        workdir: str | Path | None = None,
        ram_limit_bytes: int = 1 << 30,
        progress: bool | None = None,
        frames_ahead: int = 2,
    ) -> None:
        self.preset = get_material(material)
        self.material = self.preset.name
        charge_mC = float(charge_mC)
        if not math.isfinite(charge_mC) or charge_mC < 0:
            raise ValueError(f"charge_mC must be zero or positive, got {charge_mC:g}")
        if state is not None and charge_mC != 0:
            raise ValueError(
                "give either charge_mC (cycle a cell of the source's own) or state (image that "
                f"state), not both; got charge_mC={charge_mC:g} with a state"
            )
        if size not in SIZES:
            raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
        n = DEFAULT_PROJECTIONS[size] if n_projections is None else int(n_projections)
        if n < 2:
            raise ValueError(f"n_projections must be at least 2, got {n}")
        if not exposure_s > 0:
            raise ValueError(f"exposure_s must be positive, got {exposure_s:g}")
        self.size = size
        self.n_projections = n
        self.seed = int(seed)
        self.exposure_s = float(exposure_s)
        self.energy_keV = float(energy_keV)

        if state is None:
            # The history: the in-situ cell cycled to the chosen charge.
            cell = VirtualCell(self.preset, CellGeometry.insitu(), seed=self.seed)
            self.history: HistoryPoint = cycle_to_charge(cell, charge_mC * 1e-3)
            self.state: CellState = cell.state
        else:
            # A state from elsewhere (a cell driven by an emulator): what it went through is
            # known only as far as the state tells; the protocol step is unknown.
            self.history = HistoryPoint(
                charge_passed_C=state.charge_passed_C,
                time_s=state.time_s,
                current_density_mA_cm2=None,  # type: ignore[arg-type]
                half_cycle=None,  # type: ignore[arg-type]
                shorted=state.shorted,
            )
            self.state = state
            charge_mC = state.charge_passed_C * 1e3
        self.charge_mC = charge_mC
        self._imaged_state = state is not None

        self.geometry = SIZES[size]()
        self.pellet = VirtualPellet(self.preset, self.geometry, seed=self.seed)
        nz, _, nx = self.geometry.shape
        self.shape = (nz, nx)  #: (rows, cols) of a frame
        #: Nominal angles θ_k = k·π/N of the scan (what ``tomo_scan`` asks for).
        self.angles_rad = np.arange(n) * (np.pi / n)
        # The rotation axis images onto the grid's centre, (n_det - 1)/2: detector pixels line up
        # with voxel centres, so a reconstruction centred there lies on the phantom's grid.
        self.rotation_axis_column = (nx - 1) / 2.0

        voxel = self.geometry.voxel_m
        if flat_photons is None:
            flat_photons = (
                _REFERENCE_PHOTONS
                * (voxel / _REFERENCE_PIXEL_M) ** 2
                * self.exposure_s
                / _REFERENCE_EXPOSURE_S
            )
        pc = PhaseContrast(_SAMPLE_DETECTOR_M, self.energy_keV, voxel) if phase_contrast else None
        self.detector = Detector(
            self.shape,
            flat_photons=float(flat_photons),
            gain=min(1.0, _FLAT_PEAK_ADU / float(flat_photons)),
            phase_contrast=pc,
            seed=self.seed,
        )
        self._lock = threading.Lock()
        self._served = {_DARK: 0, _FLAT: 0, _PROJECTION: 0}
        self.frames_ahead = max(0, int(frames_ahead))
        self._ahead: ThreadPoolExecutor | None = None
        self._pending: dict[tuple[str, int], tuple[float, Future[np.ndarray]]] = {}
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        show = size == "full" if progress is None else bool(progress)
        self._stores = self._precompute(workdir, ram_limit_bytes, show)
        self._finalizer = weakref.finalize(self, _cleanup, self._tmp)
        self.ground_truth: dict[str, Any] = self._ground_truth()
        passed_mC = self.history.charge_passed_C * 1e3
        if self._imaged_state:
            when = f"at t = {self.state.time_s:.6g} s of its cell, {passed_mC:.3g} mC passed"
        else:
            when = f"after {passed_mC:.3g} mC of the in-situ protocol"
        self.metadata: dict[str, Any] = {
            "energy_keV": self.energy_keV,
            "pixel_size_um": voxel * 1e6,
            "pixel_size_y_um": voxel * 1e6,
            "sample_detector_distance_mm": _SAMPLE_DETECTOR_M * 1e3,
            "sample_name": f"virtual {self.material} pellet",
            "sample_description": (
                f"simulated Li|{self.material}|Li cell {when} ({self.size} size, seed {self.seed})"
            ),
            "rotation_range_deg": 180.0,
            "n_projections": n,
        }

    # --- precompute ----------------------------------------------------------------------
    def _precompute(self, workdir: str | Path | None, ram_limit: int, show: bool) -> _Stores:
        g = self.geometry
        nz, ny, nx = g.shape
        # N + 1 angles: the extra one at π closes the interval for interpolation.
        angles = np.append(self.angles_rad, np.pi)
        mu = attenuation_coefficients(self.preset, self.energy_keV)
        want_delta = self.detector.phase_contrast is not None
        tables = [label_table(mu)]
        per_phase = [np.array([mu[p] for p in Phase])]
        if want_delta:
            delta = refractive_decrements(self.preset, self.energy_keV)
            tables.append(label_table(delta))
            per_phase.append(np.array([delta[p] for p in Phase]))
        # A pellet wider than the grid (full size): the projector takes the grid's inscribed
        # cylinder and the annulus beyond it is added here per row from the row's mean
        # composition (Li rows are Li, electrolyte rows porous electrolyte).
        r_in_m = min(nx, ny) / 2.0 * g.voxel_m
        outer = g.pellet_radius_m > r_in_m
        projector = Projector(
            (ny, nx),
            angles,
            voxel_size_m=g.voxel_m,
            center_offset_px=self.rotation_axis_column - (nx - 1) / 2.0,
            outer_radius_m=g.pellet_radius_m if outer else None,
            outer_mu=0.0,
            # FFTW_MEASURE (seconds of planning) pays where hundreds of big rows follow.
            measure_fft=nx >= 1024 and nz >= _MEASURE_MIN_ROWS,
        )
        chord = None
        if outer:
            chord = annulus_chord_m(projector.u_px * g.voxel_m, r_in_m, g.pellet_radius_m)

        shape = (angles.size, nz, nx)
        nbytes = int(np.prod(shape)) * 4 * len(tables)
        stores: list[np.ndarray] = []
        for name in ("mu", "delta")[: len(tables)]:
            if nbytes <= ram_limit:
                stores.append(np.empty(shape, dtype=np.float32))
                continue
            if self._tmp is None:
                if workdir is not None:
                    Path(workdir).mkdir(parents=True, exist_ok=True)
                self._tmp = tempfile.TemporaryDirectory(prefix="insitu-tomo-", dir=workdir)
            path = Path(self._tmp.name) / f"{name}.npy"
            stores.append(np.lib.format.open_memmap(path, "w+", np.float32, shape))

        rows = 16 if nx > 512 else 64
        slabs = [(z0, min(nz, z0 + rows)) for z0 in range(0, nz, rows)]
        bar = tqdm(
            total=nz, unit="row", desc="projecting", disable=not show, file=sys.stderr, leave=False
        )
        # The labels are made once: the ground truth is counted from the slabs projected.
        counter = self.pellet.truth_counter(self.state)
        repeats = _RepeatedRows()

        def rings(z0: int, z1: int) -> list[np.ndarray | None]:
            """Each store's outer ring of rows z0:z1: the row's mean μ (or δ) × the chord."""
            if not outer or chord is None:
                return [None] * len(stores)
            fractions = self.pellet.row_phase_fractions(z0, z1, self.state)
            return [
                ((fractions @ values)[:, None] * chord[None, :]).astype(np.float32)
                for values in per_phase
            ]

        # A store on disk is filled with pwrite, not through its mapping: the mapping's first
        # touch of each page faults (0.09 s a row at full size, ≈ 100 s in all), a write
        # copies into the page cache, which the mapping then reads.
        files = [
            os.open(store.filename, os.O_RDWR) if isinstance(store, np.memmap) else None
            for store in stores
        ]
        # One output slab per store, kept from slab to slab (a fresh 0.2 GB array a slab
        # costs its page faults). Labelling the next slab in a thread while this one is
        # projected was measured too: no faster on 2 shared cores (the pore field and the
        # projector already use both), so the slabs go one after the other.
        slab_buffers: dict[int, np.ndarray] = {}
        try:
            for z0, z1 in slabs:
                labels = counter.labels(z0, z1)
                for i, (table, ring) in enumerate(zip(tables, rings(z0, z1), strict=True)):
                    buf = slab_buffers.get(i)
                    if buf is None or buf.shape[1] != z1 - z0:
                        buf = slab_buffers[i] = np.empty(
                            (angles.size, z1 - z0, nx), dtype=np.float32
                        )
                    repeats.project(
                        i,
                        labels,
                        ring,
                        lambda lab, out, t=table: projector.project_labels(
                            lab, t, out=out, outer_value=0.0
                        ),
                        buf,
                    )
                    _write_rows(stores[i], z0, buf, files[i])
                bar.update(z1 - z0)
        finally:
            bar.close()
            self.pellet.clear_cache()
            for fd in files:
                if fd is not None:
                    os.close(fd)
        # No flush of the on-disk stores: they were written through the page cache, which
        # the mapping reads, and they are scratch (msync would wait for the disk, seconds).
        self._truth_counts = counter.result()
        #: Rows the projector computed; the others repeat one of them (Li rows) and were copied.
        self.rows_projected = repeats.projected // len(stores)
        return _Stores(stores[0], stores[1] if want_delta else None)

    # --- serving frames ------------------------------------------------------------------
    def __call__(self, angle_rad: float, kind: str) -> np.ndarray:
        """Counts of one frame: darks as ADU, flats and projections as ADU per second of beam.

        Parameters
        ----------
        angle_rad : float
            Rotation angle at mid-exposure (ignored for darks and flats).
        kind : {"dark", "flat", "projection"}
            Frame kind.

        Returns
        -------
        ndarray, shape (rows, cols), float64
        """
        raw = self.frame_adu(angle_rad, kind)
        if kind == _DARK:
            return raw.astype(np.float64)
        # One pass (uint16 → float64 is exact): the same values as astype, then divide.
        return np.divide(raw, self.exposure_s, dtype=np.float64)

    def frame_adu(self, angle_rad: float, kind: str) -> np.ndarray:
        """One frame as the camera reads it out at :attr:`exposure_s`: ADU, uint16.

        The next frame of ``kind``, as :meth:`__call__` (which returns it per second of
        beam); a camera exposing for ``exposure_s`` records exactly these values (its
        per-second counts times the exposure, rounded), without the float64 frames.

        Returns
        -------
        ndarray, shape (rows, cols), uint16
        """
        if kind not in self._served:
            raise ValueError(f"kind must be one of {', '.join(self._served)}, got {kind!r}")
        angle = float(angle_rad)
        with self._lock:
            index = self._served[kind]
            self._served[kind] += 1
            made = self._pending.pop((kind, index), None)
            self._plan_ahead(kind, index, angle)
        if made is not None:
            made_angle, future = made
            if kind != _PROJECTION or abs(made_angle - angle) < _ANGLE_MATCH_RAD:
                return future.result()
            future.cancel()
        return self._frame(kind, index, angle)

    def _frame(self, kind: str, index: int, angle_rad: float) -> np.ndarray:
        """Frame ``index`` of ``kind`` in ADU (see :meth:`frame_adu`); any thread."""
        det = self.detector
        if kind == _DARK:
            return det.darks(1, first_index=index)[0]
        if kind == _FLAT:
            return det.flats(1, first_index=index)[0]
        mu, delta = self.line_integrals(angle_rad)
        return det.projections(
            mu[None], first_index=index, delta_integrals=None if delta is None else delta[None]
        )[0]

    def _plan_ahead(self, kind: str, index: int, angle: float) -> None:
        """Start the next frames of ``kind`` in the workers (under ``self._lock``)."""
        if self.frames_ahead == 0:
            return
        if kind == _PROJECTION:
            step = np.pi / self.n_projections
            k = round(angle / step)
            if abs(k * step - angle) >= _ANGLE_MATCH_RAD:
                return  # not a nominal angle (a fly scan): the next one cannot be guessed
            wanted = [
                (index + j, (k + j) * step)
                for j in range(1, self.frames_ahead + 1)
                if k + j < self.n_projections
            ]
        else:
            wanted = [(index + j, 0.0) for j in range(1, self.frames_ahead + 1)]
        if self._ahead is None:
            self._ahead = ThreadPoolExecutor(self.frames_ahead, thread_name_prefix="frames-ahead")
        for i, a in wanted:
            if (kind, i) not in self._pending:
                self._pending[(kind, i)] = (a, self._ahead.submit(self._frame, kind, i, a))

    def _drop_ahead(self) -> None:
        """Forget the frames made ahead (under ``self._lock``)."""
        for _, future in self._pending.values():
            future.cancel()
        self._pending.clear()

    def line_integrals(self, angle_rad: float) -> tuple[np.ndarray, np.ndarray | None]:
        """Noise-free ∫μ dl (and ∫δ dl) at any angle, from the precomputed ones.

        Returns
        -------
        mu, delta : ndarray, shape (rows, cols), float32; delta is None without phase contrast
        """
        theta = float(angle_rad) % (2 * np.pi)
        flip = theta > np.pi + _ANGLE_MATCH_RAD
        if flip:
            theta -= np.pi
        step = np.pi / self.n_projections
        position = min(max(theta / step, 0.0), float(self.n_projections))
        k0 = int(np.floor(position))
        w = position - k0
        if abs(w - 1.0) * step < _ANGLE_MATCH_RAD:
            k0, w = k0 + 1, 0.0
        out: list[np.ndarray | None] = []
        for store in (self._stores.mu, self._stores.delta):
            if store is None:
                out.append(None)
                continue
            p = np.asarray(store[k0])
            if w * step > _ANGLE_MATCH_RAD:
                p = (1.0 - w) * p + w * np.asarray(store[k0 + 1])
            out.append(self._mirror(p) if flip else p)
        return out[0], out[1]  # type: ignore[return-value]

    def restart_noise(self) -> None:
        """Restart the running frame indices: the next frames repeat the noise from the start.

        A new scan of the same state and seed then gives the same frames as the first one
        (what a source reused across scans needs).
        """
        with self._lock:
            self._served = dict.fromkeys(self._served, 0)
            self._drop_ahead()

    def _mirror(self, p: np.ndarray) -> np.ndarray:
        """p(θ + π, u) = p(θ, −u): mirror the columns about the rotation axis's image."""
        cols = np.arange(p.shape[-1])
        mirrored = np.rint(2 * self.rotation_axis_column - cols).astype(int)
        return p[..., np.clip(mirrored, 0, cols.size - 1)]

    # --- truth ---------------------------------------------------------------------------
    def labels(self, z0: int | None = None, z1: int | None = None) -> np.ndarray:
        """The ground-truth label volume (rows ``z0:z1``) of the imaged state (uint8 Phase)."""
        return self.pellet.labels(z0, z1, self.state)

    def _ground_truth(self) -> dict[str, Any]:
        gt = self._truth_counts
        h, g = self.history, self.geometry
        top, bottom = g.interfaces_rows
        working, counter = gt["electrode_thickness_m"]
        return {
            "material": self.material,
            "size": self.size,
            "seed": self.seed,
            "charge_requested_mC": self.charge_mC,
            "charge_passed_mC": h.charge_passed_C * 1e3,
            "cell_time_s": float(h.time_s),
            "current_density_mA_cm2": h.current_density_mA_cm2,
            "half_cycle": h.half_cycle,
            "shorted": bool(h.shorted),
            "damage": float(self.state.damage),
            "n_cracks": len(self.state.cracks),
            "porosity": gt["porosity"],
            "porosity_preset": float(self.pellet.porosity_target),
            "crack_volume_m3": gt["crack_volume_m3"],
            "crack_li_volume_m3": gt["crack_li_volume_m3"],
            "transparent_volume_m3": gt["transparent_volume_m3"],
            "crack_volume_by_origin_m3": gt["crack_volume_by_origin_m3"],
            "crack_li_volume_by_origin_m3": gt["crack_li_volume_by_origin_m3"],
            "electrode_thickness_m": {"working": float(working), "counter": float(counter)},
            "cell_crack_transparent_volume_m3": gt["state_crack_transparent_volume_m3"],
            "cell_crack_li_volume_m3": gt["state_crack_li_volume_m3"],
            "voxel_m": g.voxel_m,
            "shape_zyx": list(g.shape),
            "electrolyte_rows": [math.ceil(top - 0.5), math.ceil(bottom - 0.5)],
            "interfaces_z_rows": gt["interfaces_z_rows"],
            "pellet_radius_px": g.pellet_radius_m / g.voxel_m,
            "rotation_axis_column": self.rotation_axis_column,
            "electrolyte_counts": gt["electrolyte_counts"],
        }

    def close(self) -> None:
        """Delete the on-disk line-integral store (if any); the source serves no more frames."""
        with self._lock:
            self._drop_ahead()
            ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead.shutdown(wait=True)  # no worker reads the store once it is deleted
        self._stores = _Stores(np.empty((0, 0, 0), np.float32), None)
        self._finalizer()


def _write_rows(store: np.ndarray, z0: int, slab: np.ndarray, fd: int | None) -> None:
    """``store[:, z0:z0 + rows] = slab``; through ``fd`` (the store's file) when given."""
    if fd is None:
        store[:, z0 : z0 + slab.shape[1]] = slab
        return
    n_angles, nz, nx = store.shape
    slab = np.ascontiguousarray(slab, dtype=np.float32)
    row_bytes = nx * store.itemsize
    offset = getattr(store, "offset", 0)
    for a in range(n_angles):
        # Rows z0… of angle a are contiguous in the file.
        os.pwrite(fd, slab[a], offset + (a * nz + z0) * row_bytes)


class _RepeatedRows:
    """Project each distinct row of labels once: a repeated row copies its projection.

    Every Li row of the full size is the same disc of Li (a quarter of the rows), and the
    projector costs ≈ 0.3 s a row; a row is the same when its labels and its outer ring (the
    pellet beyond the grid) are.
    """

    def __init__(self, keep: int = 4) -> None:
        self.keep = keep
        self._seen: dict[tuple[int, bytes], np.ndarray] = {}
        self._buffer: np.ndarray | None = None
        self.projected = 0
        self.copied = 0

    def project(
        self,
        store: int,
        labels: np.ndarray,
        ring: np.ndarray | None,
        project: Callable[[np.ndarray, np.ndarray], np.ndarray],
        out: np.ndarray,
    ) -> np.ndarray:
        """Line integrals (angles, rows, cols) of ``labels`` plus ``ring`` (per row), in ``out``.

        ``project(labels, out)`` projects rows of labels into ``out`` (angles, rows, cols).
        """
        keys = []
        for z in range(labels.shape[0]):
            digest = hashlib.blake2b(labels[z].tobytes(), digest_size=16)
            if ring is not None:
                digest.update(ring[z].tobytes())
            keys.append((store, digest.digest()))
        fresh = [z for z, key in enumerate(keys) if key not in self._seen]
        # Rows repeated inside this slab are projected once too.
        first: dict[tuple[int, bytes], int] = {}
        for z in fresh:
            first.setdefault(keys[z], z)
        todo = sorted(first.values())
        if len(todo) == labels.shape[0]:
            # Every row new (the electrolyte): projected in place, nothing to copy.
            project(labels, out)
            if ring is not None:
                out += ring[None]
        elif todo:
            projected = project(labels[todo], self._scratch(out, len(todo)))
            if ring is not None:
                projected += ring[todo][None]
            for j, z in enumerate(todo):
                out[:, z] = projected[:, j]
        firsts = set(first.values())
        for z, key in enumerate(keys):
            if z in firsts:
                continue
            out[:, z] = out[:, first[key]] if key in first else self._seen[key]
        # Runs of equal rows are contiguous (the Li electrodes): the slab's last rows are
        # what the next slab may repeat.
        for z in todo[-self.keep :]:
            self._remember(keys[z], out[:, z])
        self.projected += len(todo)
        self.copied += labels.shape[0] - len(todo)
        return out

    def _scratch(self, out: np.ndarray, rows: int) -> np.ndarray:
        """A kept (angles, rows, cols) float32 buffer for the few rows of a mixed slab."""
        shape = (out.shape[0], rows, out.shape[2])
        if self._buffer is None or self._buffer.shape != shape:
            self._buffer = np.empty(shape, dtype=np.float32)
        return self._buffer

    def _remember(self, key: tuple[int, bytes], row: np.ndarray) -> None:
        self._seen.pop(key, None)
        self._seen[key] = row.copy()
        while len(self._seen) > self.keep:
            self._seen.pop(next(iter(self._seen)))


def _cleanup(tmp: tempfile.TemporaryDirectory[str] | None) -> None:
    if tmp is not None:
        tmp.cleanup()


def pellet_frame_source(
    material: str | MaterialPreset,
    charge_mC: float = 0.0,
    size: str = "small",
    n_projections: int | None = None,
    seed: int = 0,
    **kwargs: Any,
) -> PelletFrameSource:
    """Factory of :class:`PelletFrameSource` with JSON-friendly arguments.

    Loadable as ``"insitu.simulators.imaging.frame_source:pellet_frame_source"`` (e.g. by the EPICS
    IOC) with keyword arguments from a JSON object.

    Parameters
    ----------
    material : str or MaterialPreset
        Electrolyte preset or its name.
    charge_mC : float
        Charge passed through the in-situ protocol before the scan (mC).
    size : {"small", "medium", "full", "region"}
        Pellet geometry (:data:`SIZES`).
    n_projections : int, optional
        Nominal projections over 180° (default :data:`DEFAULT_PROJECTIONS`).
    seed : int
        Seed of cracks, microstructure and detector noise.
    **kwargs
        Further :class:`PelletFrameSource` options (``exposure_s``, ``energy_keV``,
        ``phase_contrast``, ``flat_photons``, ``workdir``, ``ram_limit_bytes``, ``progress``).

    Returns
    -------
    PelletFrameSource
        ``source(angle_rad, kind)`` plus ``shape``, ``metadata``, ``ground_truth``.
    """
    return PelletFrameSource(
        material, charge_mC, size=size, n_projections=n_projections, seed=seed, **kwargs
    )
