"""Benchmark: the parts of a full-size simulated scan (``insitu tomo-scan --size full``).

Each part runs on a fraction of the full scan (1143 × 2000 × 2000 voxels of 0.7 µm, 1500
projections, 10 + 10 darks and flats before and after), next to a reference measured in the
same run, and is extrapolated to the whole scan by its count (rows or frames):

- **pellet**: the labels of electrolyte rows (the pore field, what the rows cost); now made
  once (the ground truth counted from the projected slabs), the reference twice (projection,
  then ground truth), with the old numpy/ndimage pore filter;
- **line integrals**: the Fourier-slice projector with 1501 angles on those rows; now two
  rows per complex transform, a window sized to the inscribed cylinder and the distinct rows
  only (the 286 Li rows are one row); the reference (the projector as it was, copied here)
  one transform per row with the window of the grid's diagonal, every row;
- **frames**: the detector model (Beer–Lambert, Poisson, read noise); now the compiled
  readout in two worker threads ahead of the camera, the reference the numpy float64 path it
  replaced (copied here), one frame after another; the frames are checked equal;
- **writing**: frames through the Data Exchange writer the camera uses (checksummed chunks),
  the reference h5py alone (same chunks, no checksum).

Peak anonymous RSS (``RssAnon`` of /proc/self/status, sampled every 50 ms) is printed.
Nothing is asserted (machines are shared and noisy).

Usage: ``.venv/bin/python benchmarks/bench_sim_scan.py [--fraction 0.02] [--workdir /tmp]``
"""

from __future__ import annotations

import argparse
import math
import os
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
from insitu.simulators.imaging.detector import Detector
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


def timed(fn: Callable[[], object]) -> float:
    """Wall seconds of one call."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


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
        )
    )
    pellet.clear_cache()
    t_old = timed(
        lambda: [
            old_pore_field(pellet, z, min(z0 + rows, z + slab)) for z in range(z0, z0 + rows, slab)
        ]
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
        (ny, nx), angles, voxel_size_m=geometry.voxel_m, outer_radius_m=geometry.pellet_radius_m
    )
    projector.project_labels(labels[:8], table)  # the plans, once per scan
    t_new = timed(lambda: projector.project_labels(labels, table))
    old_projection(labels[:8], table, projector)  # its plan too
    t_old = timed(lambda: old_projection(labels, table, projector))
    return {
        "new_s_per_row": t_new / labels.shape[0],
        "old_s_per_row": t_old / labels.shape[0],
        "new_window": projector.m,
    }


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
        return np.divide(det.projections(line[None], first_index=i)[0], 0.1, dtype=np.float64)

    frames: list[np.ndarray] = []
    t_old = timed(lambda: [old_detector_frame(det, line, i) for i in range(n)])
    frame(0)  # the compiled readout loaded
    with ThreadPoolExecutor(2) as pool:
        t_new = timed(lambda: frames.extend(pool.map(frame, range(n))))
    # The same frames: the random streams and the arithmetic are unchanged.
    same = np.array_equal(frames[1], old_detector_frame(det, line, 1))
    return {"new_s_per_frame": t_new / n, "old_s_per_frame": t_old / n, "same": same}, frames


def writing_part(frames: list[np.ndarray], folder: Path) -> dict[str, float]:
    """Seconds per frame: the camera's writer (float frames, checksums) vs h5py alone."""
    shape = frames[0].shape

    def writer() -> None:
        with DataExchangeWriter(folder / "writer.h5", shape=shape) as w:
            for i, f in enumerate(frames):
                w.append("projection", f * 0.1, theta_rad=0.001 * i)

    def plain() -> None:
        with h5py.File(folder / "plain.h5", "w") as h:
            ds = h.create_dataset(
                "data", shape=(len(frames), *shape), dtype=np.uint16, chunks=(1, 16, shape[1])
            )
            for i, f in enumerate(frames):
                ds[i] = np.rint(f * 0.1).astype(np.uint16)

    return {
        "writer_s_per_frame": timed(writer) / len(frames),
        "h5py_s_per_frame": timed(plain) / len(frames),
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
        frm, frames = frames_part((nz, nx), n_frames)
        wrt = writing_part(frames, Path(tmp))
    # Now: each electrolyte row once, the Li rows as one; before: every row twice (the
    # ground truth made the labels again) and projected.
    parts = {
        "pellet": (pel["old_s_per_row"] * se_rows * 2, pel["new_s_per_row"] * se_rows),
        "line integrals": (proj["old_s_per_row"] * nz, proj["new_s_per_row"] * (se_rows + 1)),
        "frames": (frm["old_s_per_frame"] * total_frames, frm["new_s_per_frame"] * total_frames),
        "writing": (
            wrt["h5py_s_per_frame"] * total_frames,
            wrt["writer_s_per_frame"] * total_frames,
        ),
    }
    print(
        f"full scan {nz} × {nx} × {nx}, {N_PROJECTIONS} projections; measured on {rows} "
        f"electrolyte rows of {se_rows} and {n_frames} frames of {total_frames}"
    )
    print(f"projector window now: {proj['new_window']} samples (2430 before)")
    print(f"{'part':16s} {'reference s':>12s} {'now s':>10s}  (extrapolated to the full scan)")
    for name, (ref, now) in parts.items():
        label = "h5py alone" if name == "writing" else "before"
        print(f"{name:16s} {ref:12.1f} {now:10.1f}  reference: {label}")
    serial = sum(now for _, now in parts.values())
    print(f"sum of the parts now: {serial:.0f} s (frames and writing overlap in the scan)")
    print(f"frames now equal the frames before (same seed): {frm['same']}")
    print(f"peak RssAnon: {rss.peak_kb / 2**20:.2f} GiB")


if __name__ == "__main__":
    main()
