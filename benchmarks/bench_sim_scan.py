"""Benchmark: the parts of a full-size simulated scan (``insitu tomo-scan --size full``).

Each part runs on a fraction of the full scan (1143 × 2000 × 2000 voxels of 0.7 µm, 1500
projections, 10 + 10 darks and flats before and after), next to a reference measured in the
same run, and is extrapolated to the whole scan by its count (rows or frames):

- **pellet**: the labels of electrolyte rows (the pore field, what the rows cost); now made
  once (the ground truth counted from the projected slabs), the reference twice (projection,
  then ground truth), with the old numpy/ndimage pore filter;
- **line integrals**: the Fourier-slice projector with 1501 angles on those rows; now two
  rows per complex transform, a window sized to the inscribed cylinder (2048 samples, an
  even fast length), FFTW_MEASURE plans (their planning added once), kept buffers and the
  distinct rows only (the 286 Li rows are one row); the reference (the projector as it was,
  copied here) one transform per row with the window of the grid's diagonal, every row;
- **precompute**: what the scan runs before its first frame, pellet and line integrals
  together: the slabs of a :class:`PelletFrameSource` of these electrolyte rows (and 16 Li
  rows) at full width, its store written to disk (truth counts, repeated rows, writes
  included), against the sum of the two parts above (the reference);
- **frames**: the detector model (Beer–Lambert, Poisson, read noise); now the compiled
  readout (the read noise drawn inside it) in two worker threads ahead of the camera, uint16
  as the camera records them, the reference the numpy float64 path (copied here), one frame
  after another; the frames are checked equal;
- **writing**: frames through the Data Exchange writer the camera uses (checksummed chunks),
  uint16 as the pellet source hands them to the camera, the reference h5py alone (same
  chunks, no checksum).

Wall seconds and CPU seconds (user + system, all threads) of each part are printed: the
machine is shared, and CPU seconds show what a part costs whatever the other jobs take.
Peak anonymous RSS (``RssAnon`` of /proc/self/status, sampled every 50 ms) is printed.
Nothing is asserted (machines are shared and noisy).

Usage: ``.venv/bin/python benchmarks/bench_sim_scan.py [--fraction 0.04] [--workdir /tmp]``
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import finufft
import h5py
import numpy as np
from scipy import fft as sfft
from scipy import ndimage

from insitu.instruments.dxchange import DataExchangeWriter
from insitu.simulators.imaging import frame_source
from insitu.simulators.imaging.detector import Detector
from insitu.simulators.imaging.frame_source import PelletFrameSource
from insitu.simulators.imaging.xray import Projector, attenuation_coefficients, label_table
from insitu.simulators.materials import get_material
from insitu.simulators.pellet import fields
from insitu.simulators.pellet.model import PelletGeometry, VirtualPellet

N_PROJECTIONS = 1500
N_OTHER_FRAMES = 40  # 10 darks and 10 flats, before and after


class RssSampler:
    """Peak ``RssAnon`` (anonymous resident memory) of this process, sampled in a thread."""

    def __init__(self, period_s: float = 0.05) -> None:
        self.period_s = period_s
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    self.peak_kb = max(self.peak_kb, int(line.split()[1]))
            self._stop.wait(self.period_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


#: CPU seconds (user + system, every thread) of the calls :func:`timed` made, by label.
CPU_S: dict[str, float] = {}


def timed(fn: Callable[[], object], label: str | None = None) -> float:
    """Wall seconds of one call; its CPU seconds are added to ``CPU_S[label]``."""
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    fn()
    wall = time.perf_counter() - t0
    if label is not None:
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
        CPU_S[label] = CPU_S.get(label, 0.0) + cpu
    return wall


def old_pore_field(pellet: VirtualPellet, z0: int, z1: int) -> np.ndarray:
    """The pore field as it was computed before: the halo redrawn, numpy z-sum, ndimage."""
    _, ny, nx = pellet.geometry.shape
    w = fields.gaussian_kernel(float(pellet._sigma_vox))
    r = (w.size - 1) // 2
    b0, b1 = (z0 - r) // fields.BLOCK_ROWS, (z1 + r - 1) // fields.BLOCK_ROWS
    start, n = z0 - r - b0 * fields.BLOCK_ROWS, z1 - z0
    noise = np.concatenate(
        [fields._noise_block(pellet._entropy, b, ny, nx) for b in range(b0, b1 + 1)]
    )
    rows = np.zeros((n, ny, nx), dtype=np.float32)
    for k, wk in enumerate(w):
        rows += wk * noise[start + k : start + k + n]
    rows = ndimage.correlate1d(rows, w, axis=1, mode="reflect")
    rows = ndimage.correlate1d(rows, w, axis=2, mode="reflect")
    return rows / np.float32(np.sqrt(np.sum(w.astype(float) ** 2)) ** 3)


def pellet_part(pellet: VirtualPellet, rows: int) -> tuple[dict[str, float], np.ndarray]:
    """Seconds per electrolyte row: labels now, the old pore field (the reference)."""
    top, _ = pellet.geometry.interfaces_rows
    z0 = int(top) + 200
    slab = 16
    pellet.labels(z0 - slab, z0)  # compiled kernels loaded, the previous slab's noise kept
    labels = []
    t_new = timed(
        lambda: labels.extend(
            pellet.labels(z, min(z0 + rows, z + slab)) for z in range(z0, z0 + rows, slab)
        ),
        "pellet now",
    )
    pellet.clear_cache()
    t_old = timed(
        lambda: [
            old_pore_field(pellet, z, min(z0 + rows, z + slab)) for z in range(z0, z0 + rows, slab)
        ],
        "pellet before",
    )
    return {"new_s_per_row": t_new / rows, "old_s_per_row": t_old / rows}, np.concatenate(labels)


def old_projection(labels: np.ndarray, table: np.ndarray, projector: Projector) -> np.ndarray:
    """The projector as it was: one complex transform per row, the grid diagonal's window."""
    ny, nx = projector.shape_yx
    r_support = math.hypot(nx / 2.0, ny / 2.0)
    reach = max(abs(projector.u_px[0]), abs(projector.u_px[-1] + 1))
    m = max(math.ceil(r_support + reach), projector.n_det) + 8
    m = sfft.next_fast_len(m + (m % 2), real=True)
    m += m % 2
    omega = 2.0 * np.pi * np.arange(m // 2 + 1) / m
    kx = (np.cos(projector.angles)[:, None] * omega[None, :]).ravel().astype(np.float32)
    ky = (np.sin(projector.angles)[:, None] * omega[None, :]).ravel().astype(np.float32)
    rows = 8
    plan = finufft.Plan(2, (ny, nx), rows, eps=1e-4, isign=-1, dtype="complex64", upsampfac=1.25)
    plan.setpts(ky, kx)
    n_ang = projector.angles.size
    out = np.empty((n_ang, labels.shape[0], projector.n_det), dtype=np.float32)
    for z0 in range(0, labels.shape[0], rows):
        batch = np.array(table[labels[z0 : z0 + rows]], dtype=np.complex64)
        if batch.shape[0] < rows:
            batch = np.concatenate([batch, np.zeros((rows - batch.shape[0], ny, nx), np.complex64)])
        spectra = plan.execute(batch).reshape(rows, n_ang, -1)  # (the factor: same cost)
        proj = sfft.irfft(spectra, n=m, axis=-1, workers=os.cpu_count())
        z1 = min(labels.shape[0], z0 + rows)
        out[:, z0:z1] = proj[: z1 - z0, :, : projector.n_det].transpose(1, 0, 2)
    return out


def projector_part(labels: np.ndarray, geometry: PelletGeometry) -> dict[str, float]:
    """Seconds per row of the projector, 1501 angles: now and as it was (the reference)."""
    _, ny, nx = geometry.shape
    angles = np.append(np.arange(N_PROJECTIONS) * np.pi / N_PROJECTIONS, np.pi)
    table = label_table(attenuation_coefficients("A-LPS"))
    projector = Projector(
        (ny, nx),
        angles,
        voxel_size_m=geometry.voxel_m,
        outer_radius_m=geometry.pellet_radius_m,
        measure_fft=True,  # as the full scan plans it
    )
    # The plans, once per scan (FFTW_MEASURE: seconds, paid once in the scan).
    t_plan = timed(lambda: projector.project_labels(labels[:8], table), "plan now")
    t_new = timed(lambda: projector.project_labels(labels, table), "line integrals now")
    old_projection(labels[:8], table, projector)  # its plan too
    t_old = timed(lambda: old_projection(labels, table, projector), "line integrals before")
    return {
        "new_s_per_row": t_new / labels.shape[0],
        "old_s_per_row": t_old / labels.shape[0],
        "plan_s": t_plan,
        "new_window": projector.m,
    }


def precompute_part(rows: int, workdir: Path) -> dict[str, float]:
    """Seconds per electrolyte row of a full-width source's precompute (its store on disk)."""
    full = PelletGeometry.full()
    li_rows = 8  # each side: the Li rows, projected once and copied
    geometry = PelletGeometry(
        shape=(rows + 2 * li_rows, *full.shape[1:]),
        voxel_m=full.voxel_m,
        pellet_radius_m=full.pellet_radius_m,
        electrolyte_thickness_m=rows * full.voxel_m,
        li_thickness_m=full.li_thickness_m,
    )
    frame_source.SIZES["bench"] = lambda: geometry
    min_rows = frame_source._MEASURE_MIN_ROWS
    frame_source._MEASURE_MIN_ROWS = 0  # planned as the full size (1143 rows) plans
    precompute = PelletFrameSource._precompute
    seconds: list[float] = []

    def timed_precompute(self: PelletFrameSource, *args: object) -> object:
        # Only the slabs: the cell, pellet and detector set-up are not per row.
        out: list[object] = []
        seconds.append(timed(lambda: out.append(precompute(self, *args)), "precompute now"))
        return out[0]

    PelletFrameSource._precompute = timed_precompute  # type: ignore[method-assign]
    try:
        PelletFrameSource(
            "A-LPS", size="bench", n_projections=N_PROJECTIONS, workdir=workdir, progress=False
        ).close()
    finally:
        PelletFrameSource._precompute = precompute  # type: ignore[method-assign]
        frame_source._MEASURE_MIN_ROWS = min_rows
        del frame_source.SIZES["bench"]
    t = seconds[0]
    return {"s": t}


def old_detector_frame(det: Detector, line: np.ndarray, index: int) -> np.ndarray:
    """A projection as the detector made it before (numpy, float64 temporaries), in ADU/s."""
    rng = np.random.default_rng([det.seed, 3, index])
    intensity = np.exp(-np.asarray(line, dtype=np.float64))
    photons = rng.poisson(det.flat_expected * np.clip(intensity, 0.0, None))
    signal = photons * det.column_gain[None, :] + det.column_offset[None, :] / max(det.gain, 1e-12)
    adu = det.gain * signal + det.dark_level + det.read_noise * rng.standard_normal(signal.shape)
    return np.clip(np.rint(adu), 0, 65535).astype(np.uint16).astype(np.float64) / 0.1


def frames_part(shape: tuple[int, int], n: int) -> tuple[dict[str, float], list[np.ndarray]]:
    """Seconds per frame: as before (numpy, one after another) and now (two workers ahead)."""
    rng = np.random.default_rng(1)
    line = (rng.random(shape, dtype=np.float32) * 2.5).astype(np.float32)
    det = Detector(shape, flat_photons=1e4, gain=1.0, seed=0)

    def frame(i: int) -> np.ndarray:
        # uint16 ADU, as the pellet source hands frames to the camera (frame_adu).
        return det.projections(line[None], first_index=i)[0]

    frames: list[np.ndarray] = []
    t_old = timed(lambda: [old_detector_frame(det, line, i) for i in range(n)], "frames before")
    frame(0)  # the compiled readout loaded
    with ThreadPoolExecutor(2) as pool:
        t_new = timed(lambda: frames.extend(pool.map(frame, range(n))), "frames now")
    # The same frames: the random streams and the arithmetic are unchanged.
    same = np.array_equal(frames[1], np.rint(old_detector_frame(det, line, 1) * 0.1))
    return {"new_s_per_frame": t_new / n, "old_s_per_frame": t_old / n, "same": same}, frames


def writing_part(frames: list[np.ndarray], folder: Path) -> dict[str, float]:
    """Seconds per frame: the camera's writer (uint16 frames, checksums) vs h5py alone."""
    shape = frames[0].shape

    def writer() -> None:
        with DataExchangeWriter(folder / "writer.h5", shape=shape) as w:
            for i, f in enumerate(frames):
                w.append("projection", f, theta_rad=0.001 * i)

    def plain() -> None:
        with h5py.File(folder / "plain.h5", "w") as h:
            ds = h.create_dataset(
                "data", shape=(len(frames), *shape), dtype=np.uint16, chunks=(1, 16, shape[1])
            )
            for i, f in enumerate(frames):
                ds[i] = f

    return {
        "writer_s_per_frame": timed(writer, "writing now") / len(frames),
        "h5py_s_per_frame": timed(plain, "writing before") / len(frames),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fraction", type=float, default=0.02, help="of the full scan (0.02)")
    parser.add_argument("--workdir", default=None, help="folder of the written test files")
    args = parser.parse_args()
    geometry = PelletGeometry.full()
    nz, _, nx = geometry.shape
    pellet = VirtualPellet(get_material("A-LPS"), geometry, seed=0)
    top, bot = geometry.interfaces_rows
    se_rows = int(np.ceil(bot - 0.5)) - int(np.ceil(top - 0.5))
    rows = max(16, round(args.fraction * se_rows / 16) * 16)
    n_frames = max(8, round(args.fraction * (N_PROJECTIONS + N_OTHER_FRAMES)))
    total_frames = N_PROJECTIONS + N_OTHER_FRAMES
    with RssSampler() as rss, tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        pel, labels = pellet_part(pellet, rows)
        proj = projector_part(labels, geometry)
        del labels
        pre = precompute_part(rows, Path(tmp))
        frm, frames = frames_part((nz, nx), n_frames)
        wrt = writing_part(frames, Path(tmp))
    # Now: each electrolyte row once, the Li rows as one; before: every row twice (the
    # ground truth made the labels again) and projected. FFTW_MEASURE planning is paid
    # once a scan (the precompute's source reuses this process's plans: added to it too).
    per_se_row, per_frame = se_rows / rows, total_frames / n_frames
    plan, plan_cpu = proj["plan_s"], CPU_S["plan now"]
    pellet_now = pel["new_s_per_row"] * se_rows
    lines_now = proj["new_s_per_row"] * (se_rows + 1) + plan
    parts = {  # (reference s, now s, reference CPU-s, now CPU-s), extrapolated
        "pellet": (
            pel["old_s_per_row"] * se_rows * 2,
            pellet_now,
            CPU_S["pellet before"] * 2 * per_se_row,
            CPU_S["pellet now"] * per_se_row,
        ),
        "line integrals": (
            proj["old_s_per_row"] * nz,
            lines_now,
            CPU_S["line integrals before"] * nz / rows,
            CPU_S["line integrals now"] * (se_rows + 1) / rows + plan_cpu,
        ),
        "precompute": (
            pellet_now + lines_now,
            pre["s"] * per_se_row + plan,
            (CPU_S["pellet now"] + CPU_S["line integrals now"]) * per_se_row + plan_cpu,
            CPU_S["precompute now"] * per_se_row + plan_cpu,
        ),
        "frames": (
            frm["old_s_per_frame"] * total_frames,
            frm["new_s_per_frame"] * total_frames,
            CPU_S["frames before"] * per_frame,
            CPU_S["frames now"] * per_frame,
        ),
        "writing": (
            wrt["h5py_s_per_frame"] * total_frames,
            wrt["writer_s_per_frame"] * total_frames,
            CPU_S["writing before"] * per_frame,
            CPU_S["writing now"] * per_frame,
        ),
    }
    references = {
        "pellet": "before",
        "line integrals": "before",
        "precompute": "pellet + line integrals now, one after the other",
        "frames": "before",
        "writing": "h5py alone",
    }
    print(
        f"full scan {nz} × {nx} × {nx}, {N_PROJECTIONS} projections; measured on {rows} "
        f"electrolyte rows of {se_rows} and {n_frames} frames of {total_frames}"
    )
    print(
        f"projector window now: {proj['new_window']} samples (2430 before); FFTW_MEASURE "
        f"planning {proj['plan_s']:.1f} s (in the line integrals, once)"
    )
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (2 cores)")
    print(
        f"{'part':15s} {'reference s':>11s} {'now s':>7s} {'ref CPU-s':>9s} {'now CPU-s':>9s}"
        "  (extrapolated to the full scan)"
    )
    for name, (ref, now, ref_cpu, now_cpu) in parts.items():
        print(
            f"{name:15s} {ref:11.1f} {now:7.1f} {ref_cpu:9.1f} {now_cpu:9.1f}"
            f"  reference: {references[name]}"
        )
    serial = parts["precompute"][1] + parts["frames"][1] + parts["writing"][1]
    print(f"precompute + frames + writing now: {serial:.0f} s (frames and writing overlap)")
    print(f"frames now equal the frames before (same seed): {frm['same']}")
    print(f"peak RssAnon: {rss.peak_kb / 2**20:.2f} GiB")


if __name__ == "__main__":
    main()
