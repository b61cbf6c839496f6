"""Filtered back-projection written against an array module, for CuPy on a GPU.

**Not measured on a GPU in this project yet.** No GPU was available to the session that wrote
it: the code has run only with ``xp = numpy``, which is how the tests exercise it
(``tests/analysis/tomo/test_gpu_backend.py``); the tests that run it with CuPy on a device are
skipped where CuPy or a device is missing. The numpy path's speed is not the point (it is a
test vehicle; the default backend ``"insitu"`` is the CPU one): on 2 shared, loaded cores it
took 0.21 s a slice for 256² slices with 360 angles, where ``"insitu"`` took 0.010–0.014 s.

Agreement with ``"insitu"`` on a disc phantom (256², 360 angles, axis on or off the detector
centre): 0.06–0.10 % NRMSE with the Shepp–Logan window, under 0.08 % for every window of
:data:`~insitu.analysis.tomo.recon.algorithm.FILTERS`; against the analytic truth both are
within 0.1 % (NRMSE) of each other. Padding along a wide cylinder (``sample_radius``):
0.07 % NRMSE, mean grey within 3·10⁻⁵ of ``"insitu"``'s.

The same code runs with numpy and with CuPy because every array operation goes through the
module ``xp`` given to :class:`CupyFBP`: real FFTs (cuFFT under CuPy), element-wise
arithmetic, and one gather (fancy indexing) per block of angles. No CUDA kernel of our own:
what runs on the device is what the tests check on the host.

Method, matched to :class:`insitu.analysis.tomo.recon.algorithm.GridrecPlan` so that both give
the same slices on the same scale:

- each row is padded to ``n_pad`` samples as GridrecPlan pads it (edge values, or zeros plus
  the cylinder's filtered chord when ``sample_radius`` is given), Fourier transformed and
  multiplied by the same :func:`~insitu.analysis.tomo.recon.algorithm.ramp_filter` (spatial
  band-limited ramp, correct DC; Nyquist dropped as GridrecPlan drops it) and by each angle's
  :func:`~insitu.analysis.tomo.recon.algorithm.angle_weights`;
- the filtered rows are brought back ``upsample`` times finer than the detector (the inverse
  real FFT of the zero-extended spectrum: exact band-limited interpolation onto the finer
  grid), so the linear interpolation of the back-projection costs little accuracy;
- back-projection: each pixel ``(x, y)`` measured from the slice centre ``(n − 1)/2`` adds
  ``q_θ(center + x cos θ + y sin θ)`` for every angle, the filtered row read by linear
  interpolation, periodically over the padded row as the gridding's Fourier sums read it.

Why not cufinufft (the GPU twin of the default backend's finufft)? It is a separate CUDA
build with no numpy path, so none of its code could run in the tests here; it would ship
untested. Filtered back-projection with linear interpolation is the standard GPU method
(ASTRA's FBP_CUDA back-projects with linearly interpolated texture reads), is a few array
operations long, and its cost per slice, ``n_angles × size²`` gathers, is what GPUs do fast.
Its price here: the gathers go through device memory (two values and a blend per pixel and
angle, then a sum over the block), where a fused CUDA kernel would keep them in registers; if
a GPU measurement finds that the bottleneck, a ``cupy.ElementwiseKernel`` for the inner loop
is the next step, tested against this numpy path.

Memory: rows go to the device in batches whose filtered rows, slices and gather temporaries fit
``memory_bytes`` (default 2 GiB), angles in blocks within the same budget, so a full scan
never has to fit on the device.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import numpy as np
import scipy.fft as sfft

from ...errors import AnalysisInputError
from .algorithm import angle_weights, output_slices, ramp_filter
from .backends import BackendUnavailable

__all__ = ["GPU_INSTALL_HINT", "CupyFBP", "probe_cupy"]

#: How to get the GPU backend's libraries (the ``gpu`` extra pins CuPy for CUDA 12).
GPU_INSTALL_HINT = (
    "install it with `pip install insitu[gpu]` (CuPy for CUDA 12: `pip install cupy-cuda12x`) "
    "on a machine with an NVIDIA GPU and driver, or use the default backend 'insitu'"
)

#: Device memory one batch may use, by default (filtered rows, slices, gather temporaries).
DEFAULT_MEMORY_BYTES = 2 * 1024**3

#: Samples of the padded row are as in GridrecPlan: ``oversampling`` × the detector width.
_OVERSAMPLING = 2.0


def probe_cupy() -> tuple[ModuleType | None, str]:
    """CuPy and whether it sees a GPU.

    Returns
    -------
    (module or None, str)
        ``(cupy, "")`` when CuPy imports and ``cupy.cuda.runtime.getDeviceCount() > 0``; else
        ``(None, reason)`` with what is missing, for the user.
    """
    try:
        import cupy
    except ImportError as exc:
        # CuPy's own import errors run over many lines: the CLI prints one.
        return None, f"CuPy is not installed or does not import ({' '.join(str(exc).split())})"
    # CuPy without a driver or a device raises its own CUDARuntimeError (no ImportError): any
    # failure to count devices means that this machine cannot run the backend.
    try:
        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:
        return None, f"CuPy finds no usable CUDA device ({type(exc).__name__}: {exc})"
    if count < 1:
        return None, "CuPy finds no CUDA device"
    return cupy, ""


def _to_host(xp: ModuleType, array: Any) -> np.ndarray:
    """A device array as a numpy array (a no-op for ``xp = numpy``)."""
    return np.asarray(array) if xp is np else xp.asnumpy(array)


class CupyFBP:
    """Filtered back-projection on an array module: CuPy on a GPU, numpy in the tests.

    Parameters
    ----------
    theta : array_like
        Projection angles (radians), any order, any spacing.
    n_det : int
        Detector columns (sinogram width); slices are ``n_det × n_det``.
    center : float
        Detector column (0-based, pixel centres at integers) of the rotation axis.
    filter_name : str
        Window on the ramp (:data:`~insitu.analysis.tomo.recon.algorithm.FILTERS`).
    support : float, optional
        Accepted for the common backend interface; the whole square is back-projected (the
        pipeline masks the slice afterwards).
    sample_radius : float, optional
        Radius (pixels) of a cylindrical sample wider than the field of view: rows are padded
        along its chord as in ``GridrecPlan`` (local tomography).
    rows : int, optional
        Accepted for the common interface (nothing is planned ahead per row count).
    xp : module, optional
        The array module; default CuPy, which must import and see a GPU.
    upsample : int
        Filtered rows are interpolated this many times finer than the detector before the
        linear interpolation of the back-projection.
    memory_bytes : int
        Device memory one batch of rows may use.

    Raises
    ------
    BackendUnavailable
        When ``xp`` is not given and CuPy is missing or sees no GPU.
    AnalysisInputError
        For angles, a detector width, a centre or a filter it cannot use.
    """

    name = "cupy"

    def __init__(
        self,
        theta: np.ndarray,
        n_det: int,
        *,
        center: float,
        filter_name: str = "shepp",
        support: float | None = None,
        sample_radius: float | None = None,
        rows: int | None = None,
        xp: ModuleType | None = None,
        upsample: int = 4,
        memory_bytes: int = DEFAULT_MEMORY_BYTES,
    ) -> None:
        if xp is None:
            xp, reason = probe_cupy()
            if xp is None:
                raise BackendUnavailable(
                    f"the 'cupy' backend cannot run here: {reason}; {GPU_INSTALL_HINT}"
                )
        self.xp = xp
        self.theta = np.asarray(theta, dtype=np.float64).ravel()
        _check_geometry(self.theta, n_det, center, upsample, sample_radius)
        self.n_det = int(n_det)
        self.size = self.n_det
        self.center = float(center)
        self.upsample = int(upsample)
        self.memory_bytes = int(memory_bytes)
        n_pad = sfft.next_fast_len(max(math.ceil(_OVERSAMPLING * self.n_det), self.n_det + 2))
        n_pad += n_pad % 2
        self.n_pad = n_pad
        self.pad_left = (n_pad - self.n_det) // 2
        self.n_fine = self.upsample * n_pad
        try:
            filt = ramp_filter(n_pad, filter_name)
        except ValueError as exc:
            raise AnalysisInputError(str(exc)) from None
        weights = angle_weights(self.theta)
        self._coef = xp.asarray(self._spectral_coefficients(filt, weights))
        self._chords = None
        if sample_radius is not None:
            chords = _filtered_chords(
                float(sample_radius), self.center, self.n_det, self.pad_left, n_pad, filter_name
            )
            # Their spectra on the padded row, Nyquist dropped and rescaled as the rows'.
            spectra = [np.fft.rfft(chord) for chord in chords]
            for spec in spectra:
                spec[-1] = 0.0
            self._chords = tuple(
                xp.asarray((spec * self.upsample).astype(np.complex64)) for spec in spectra
            )
        self._weights = xp.asarray(weights.astype(np.float32))
        half = (self.size - 1) / 2.0
        axis = np.arange(self.size, dtype=np.float64) - half
        self._x = xp.asarray(np.tile(axis, self.size).astype(np.float32))  # columns
        self._y = xp.asarray(np.repeat(axis, self.size).astype(np.float32))  # rows
        # On the device once: a host-to-device copy per angle block would stall the GPU.
        self._cos = xp.asarray(np.cos(self.theta).astype(np.float32))[:, None]
        self._sin = xp.asarray(np.sin(self.theta).astype(np.float32))[:, None]
        # The axis's position on the fine padded row.
        self._origin = self.upsample * (self.pad_left + self.center)
        # Flat indices into a batch's fine rows: 32-bit ones gather faster on a GPU.
        fits = self.theta.size * self.n_fine < 2**31
        self._index_dtype = np.int32 if fits else np.int64

    def _spectral_coefficients(self, filt: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """``(n_angles, n_pad//2 + 1)``: ramp × angle weight × the inverse FFT's rescaling.

        The Nyquist term gets weight 0, as in GridrecPlan (the zero-extended spectrum then has
        no unpaired term, and the fine row interpolates the coarse one exactly).
        """
        half = filt[: self.n_pad // 2 + 1].copy()
        half[-1] = 0.0
        # irfft(n = upsample · n_pad) divides by the longer length: multiply it back.
        return (weights[:, None] * half[None, :] * self.upsample).astype(np.float32)

    def _bytes_per_row(self) -> int:
        """Device bytes one slice's batch share needs: padded rows, spectra, fine rows, slice."""
        n_ang, n_half = self.theta.size, self.n_pad // 2 + 1
        return 4 * n_ang * (self.n_pad + 2 * n_half + self.n_fine) + 8 * self.size**2

    def batch_rows(self) -> int:
        """Rows (slices) per device batch within :attr:`memory_bytes` (half of it: the rest is
        for the back-projection's gathers)."""
        return max(1, (self.memory_bytes // 2) // self._bytes_per_row())

    def reconstruct(
        self, sinograms: np.ndarray, *, batch: int | None = None, out: np.ndarray | None = None
    ) -> np.ndarray:
        """Reconstruct sinograms ``(n_angles, n_rows, n_det)`` → ``(n_rows, size, size)``.

        Parameters
        ----------
        sinograms : ndarray
            Line integrals (TomoPy's layout), or one sinogram ``(n_angles, n_det)``; any float
            dtype, h5py datasets and memory maps read a batch of rows at a time.
        batch : int, optional
            Rows per device batch; default :meth:`batch_rows`.
        out : ndarray of float32, shape (n_rows, size, size), optional
            Host array to write the slices into (reused by the caller); new if None.

        Returns
        -------
        ndarray of float32, in host memory
            Slices in units of the sinogram per pixel, as ``InsituGridrec``'s (``out`` when
            given).
        """
        single = np.ndim(sinograms) == 2
        sino = sinograms[:, None, :] if single else sinograms
        shape = np.shape(sino)
        if len(shape) != 3 or shape[0] != self.theta.size or shape[2] != self.n_det:
            raise AnalysisInputError(
                f"sinograms must be (n_angles={self.theta.size}, rows, n_det={self.n_det}), "
                f"got {np.shape(sinograms)}"
            )
        n_rows = shape[1]
        step = self.batch_rows() if batch is None else max(1, int(batch))
        out = output_slices(out, (n_rows, self.size, self.size))
        for r0 in range(0, n_rows, step):
            r1 = min(r0 + step, n_rows)
            block = np.asarray(sino[:, r0:r1, :], dtype=np.float32)
            fine = self._filtered_rows(self.xp.asarray(block))
            out[r0:r1] = _to_host(self.xp, self._back_project(fine))
        return out[0] if single else out

    def _filtered_rows(self, block: Any) -> Any:
        """``(n_angles, rows, n_det)`` on the device → filtered, weighted fine rows
        ``(rows, n_angles, n_fine)``."""
        xp = self.xp
        rows = block.shape[1]
        a, b = self.pad_left, self.pad_left + self.n_det
        padded = xp.zeros((rows, self.theta.size, self.n_pad), dtype=xp.float32)
        padded[:, :, a:b] = xp.moveaxis(block, 1, 0)
        if self._chords is None:
            # Edge values, as GridrecPlan's default pad_mode.
            padded[:, :, :a] = padded[:, :, a : a + 1]
            padded[:, :, b:] = padded[:, :, b - 1 : b]
        spec = xp.fft.rfft(padded, axis=-1)
        del padded
        spec *= self._coef[None]
        if self._chords is not None:
            # Rows were padded with zeros: add the filtered chord beyond each edge, scaled by
            # that edge's value and the angle's weight (the padding is linear in both). Added
            # to the spectra, not to the fine rows: the edge values are large (line integrals
            # through the whole sample) and the jumps at the window's edges cancel only if
            # both parts are interpolated onto the fine row the same way.
            for edge, chord in zip((block[:, :, 0], block[:, :, -1]), self._chords, strict=True):
                spec += (edge.T * self._weights[None])[:, :, None] * chord[None, None]
        return xp.fft.irfft(spec, n=self.n_fine, axis=-1).astype(xp.float32, copy=False)

    def _angle_block(self, rows: int) -> int:
        """Angles back-projected at once: their gathers (three ``rows × size²`` float32
        arrays per angle) and positions and indices (≈ 32 bytes a pixel per angle) fit in
        half of :attr:`memory_bytes`."""
        per_angle = 3 * 4 * rows * self.size**2 + 32 * self.size**2
        return int(max(1, min(self.theta.size, (self.memory_bytes // 2) // per_angle)))

    def _back_project(self, fine: Any) -> Any:
        """Sum every angle's filtered row over the slice: ``(rows, size, size)`` float32."""
        xp = self.xp
        rows = fine.shape[0]
        n_pix = self.size**2
        acc = xp.zeros((rows, n_pix), dtype=xp.float32)
        flat = fine.reshape(rows, -1)  # angle a's fine row starts at a · n_fine
        step = self._angle_block(rows)
        for a0 in range(0, self.theta.size, step):
            a1 = min(a0 + step, self.theta.size)
            cos, sin = self._cos[a0:a1], self._sin[a0:a1]
            pos = (self._x[None] * cos + self._y[None] * sin) * self.upsample + self._origin
            left = xp.floor(pos)
            frac = (pos - left).astype(xp.float32)
            # Read periodically over the padded row, as the Fourier sums of gridding do.
            i0 = left.astype(self._index_dtype) % self.n_fine
            i1 = (i0 + 1) % self.n_fine
            base = (xp.arange(a0, a1, dtype=self._index_dtype) * self.n_fine)[:, None]
            g0 = flat[:, (i0 + base).ravel()]
            g1 = flat[:, (i1 + base).ravel()]
            g1 -= g0
            g1 *= frac.ravel()[None]
            g1 += g0
            acc += g1.reshape(rows, a1 - a0, n_pix).sum(axis=1)
        return acc.reshape(rows, self.size, self.size)


def _check_geometry(
    theta: np.ndarray, n_det: int, center: float, upsample: int, sample_radius: float | None
) -> None:
    """The checks GridrecPlan makes, as the user's errors."""
    if theta.size == 0:
        raise AnalysisInputError("theta is empty: give the projection angles in radians")
    if not np.all(np.isfinite(theta)):
        raise AnalysisInputError("theta holds NaN or infinite angles")
    if n_det < 2:
        raise AnalysisInputError(f"n_det must be at least 2 detector columns, got {n_det}")
    if not -n_det <= center <= 2 * n_det:
        raise AnalysisInputError(
            f"center={center} is far outside the detector (0 … {n_det - 1}); "
            "give the rotation axis's column in pixels"
        )
    if int(upsample) < 1:
        raise AnalysisInputError(f"upsample must be a positive integer, got {upsample}")
    if sample_radius is not None and not (math.isfinite(sample_radius) and sample_radius > 0):
        raise AnalysisInputError(f"sample_radius must be positive (pixels), got {sample_radius}")


def _filtered_chords(
    radius: float, center: float, n_det: int, pad_left: int, n_pad: int, filter_name: str
) -> tuple[np.ndarray, np.ndarray]:
    """The ramp-filtered chord padding beyond the left and right edges, per unit edge value,
    on the padded row: the construction of ``GridrecPlan._filtered_chords`` (the chords reach
    far past the row, a 3 mm pellet being 64× a 96-column window, so they are filtered once
    on a grid as wide as the sample and only their values on the row are kept)."""
    margin = 64  # GridrecPlan's _WINDOW_MARGIN
    reach = math.ceil(radius + abs(center - (n_det - 1) / 2.0))
    n_big = sfft.next_fast_len(max(2 * reach + 2 * margin, n_pad))
    n_big += n_big % 2
    left_big = (n_big - n_det) // 2
    t = np.arange(n_big) - left_big - center

    def chord(t: np.ndarray) -> np.ndarray:
        return np.sqrt(np.clip(radius**2 - t**2, 0.0, None))

    big_filter = ramp_filter(n_big, filter_name)
    on_row = left_big - pad_left + np.arange(n_pad)
    out = []
    for side, t_edge in ((t < -center, -center), (t > n_det - 1 - center, n_det - 1 - center)):
        edge = float(chord(np.array(t_edge)))
        # A sample edge inside the window: nothing of it lies beyond.
        profile = np.where(side, chord(t) / edge, 0.0) if edge > 0 else np.zeros(n_big)
        out.append(sfft.ifft(sfft.fft(profile) * big_filter).real[on_row])
    return out[0], out[1]
