"""The GPU backend (CuPy FBP) through its numpy path, against the default backend and phantoms.

:class:`CupyFBP`'s array code runs unchanged with ``xp = numpy``: that is how these tests
exercise it on machines without a GPU. The tests at the end run the real CuPy path against
the numpy one and are skipped unless CuPy imports and sees a device.
"""

from __future__ import annotations

import importlib.abc
import math
import subprocess
import sys
import textwrap
import types

import numpy as np
import pytest
from phantoms import disc_image, disc_sinogram, gaussian_image, gaussian_sinogram, inner

from insitu.analysis.errors import AnalysisInputError
from insitu.analysis.tomo.recon import gpu
from insitu.analysis.tomo.recon.algorithm import FILTERS
from insitu.analysis.tomo.recon.backends import (
    BACKENDS,
    BackendUnavailable,
    InsituGridrec,
    make_backend,
)
from insitu.analysis.tomo.recon.gpu import CupyFBP

N, N_ANGLES = 128, 180
THETA = np.arange(N_ANGLES) * math.pi / N_ANGLES
# A pellet with a pore and an inclusion, off the axis so that mirrored slices differ.
DISCS = [(0.0, 0.0, 50.0, 1.0), (15.0, -10.0, 12.0, -0.4), (-20.0, 18.0, 8.0, 0.5)]
BLOBS = [(0.0, 0.0, 14.0, 1.0), (20.0, -15.0, 4.0, 0.5), (-25.0, 18.0, 3.0, 0.8)]


def nrmse(rec, ref, mask):
    """RMS difference inside the mask (a slice's, for every slice of a stack) over the
    reference's range there."""
    mask = np.broadcast_to(mask, np.shape(ref))
    return float(np.sqrt(np.mean((rec[mask] - ref[mask]) ** 2)) / np.ptp(ref[mask]))


def numpy_fbp(theta=THETA, n=N, **options) -> CupyFBP:
    options.setdefault("center", (n - 1) / 2)
    return CupyFBP(theta, n, xp=np, **options)


@pytest.mark.parametrize("offset", [0.0, 9.25, -8.5])
def test_matches_the_default_backend_with_the_axis_anywhere(offset) -> None:
    """Same slices as InsituGridrec, same scale, same centre convention (the object sits on
    the axis, which the detector sees off-centre, whole)."""
    center = (N - 1) / 2 + offset
    sino = disc_sinogram(THETA, N, center, DISCS)[:, None, :]
    ref = InsituGridrec(THETA, N, center=center).reconstruct(sino)
    rec = numpy_fbp(center=center).reconstruct(sino)
    assert rec.dtype == np.float32 and rec.shape == (1, N, N)
    mask = inner(N)
    # Measured 0.08–0.13 % (linear interpolation on rows 4× finer than the detector).
    assert nrmse(rec, ref, mask) < 2e-3
    # Against the truth as close as the default backend: 1.9–3.4 % for both at 128 px (the
    # disc edges, sampled at the pixel centres, dominate; most at half-pixel axes).
    truth = disc_image(N, DISCS)[None]
    assert nrmse(rec, truth, mask) < min(0.04, nrmse(ref, truth, mask) + 1e-3)


@pytest.mark.parametrize("filter_name", FILTERS)
def test_every_filter_matches_the_default_backend(filter_name) -> None:
    sino = disc_sinogram(THETA, N, (N - 1) / 2, DISCS)
    ref = InsituGridrec(THETA, N, center=(N - 1) / 2, filter_name=filter_name).reconstruct(
        sino[:, None, :]
    )[0]
    rec = numpy_fbp(filter_name=filter_name).reconstruct(sino)
    assert rec.shape == (N, N)  # one sinogram in, one slice out
    assert nrmse(rec, ref, inner(N)) < 3e-3


def test_filters_differ() -> None:
    """The filter name reaches the filtering (a backend that ignored it would pass the test
    above only for 'shepp')."""
    sino = disc_sinogram(THETA, N, (N - 1) / 2, DISCS)
    shepp = numpy_fbp(filter_name="shepp").reconstruct(sino)
    hann = numpy_fbp(filter_name="hann").reconstruct(sino)
    assert nrmse(hann, shepp, inner(N)) > 0.01


def test_uniform_disc_comes_back_at_its_attenuation() -> None:
    """An analytic disc of μ = 0.25 /pixel: the inside reconstructs to μ (no scale factor)."""
    sino = disc_sinogram(THETA, N, (N - 1) / 2, [(0.0, 0.0, 0.45 * N, 0.25)])
    rec = numpy_fbp().reconstruct(sino)
    inside = inner(N, 0.35)
    assert rec[inside].mean() == pytest.approx(0.25, rel=0.01)
    assert np.abs(rec[inside] - 0.25).max() < 0.02 * 0.25


@pytest.mark.parametrize("offset", [0.0, 13.5])
def test_gaussian_phantom_on_the_true_scale(offset) -> None:
    center = (N - 1) / 2 + offset
    sino = gaussian_sinogram(THETA, N, center, BLOBS)
    rec = numpy_fbp(center=center, filter_name="ramp").reconstruct(sino)
    truth = gaussian_image(N, BLOBS)
    assert nrmse(rec, truth, inner(N, 0.3)) < 2e-3
    assert rec.max() == pytest.approx(truth.max(), rel=5e-3)


def test_matches_the_simulators_projector_conventions() -> None:
    """A slice projected by the simulator's Projector comes back in place (not mirrored)."""
    from insitu.simulators.imaging.xray import Projector

    truth = disc_image(N, [(-20, 10, 30, 1.0), (25, -30, 12, 2.0)])
    offset = 6.5
    proj = Projector((N, N), THETA, voxel_size_m=1.0, center_offset_px=offset)
    sino = proj.project(truth[None])[:, 0, :]
    rec = numpy_fbp(center=(N - 1) / 2 + offset).reconstruct(sino)
    mask = inner(N, 0.4)
    assert nrmse(rec, truth, mask) < 0.03
    assert np.corrcoef(rec[mask], truth[mask])[0, 1] > 0.98


@pytest.mark.parametrize("offset", [0.0, 7.5])
def test_local_tomography_pads_along_the_cylinder_as_the_default_backend(offset) -> None:
    """A 96-column window on a disc of radius 2143 pixels: chord padding, absolute grey."""
    n, radius = 96, 2143.0
    center = (n - 1) / 2 + offset
    discs = [(0, 0, radius, 0.25), (10, -5, 12, -0.25), (-20, 15, 6, 0.2)]
    sino = disc_sinogram(THETA, n, center, discs)
    truth, mask = disc_image(n, discs), inner(n, 0.4)
    rec = numpy_fbp(n=n, center=center, sample_radius=radius).reconstruct(sino)
    ref = InsituGridrec(THETA, n, center=center, sample_radius=radius).reconstruct(
        sino[:, None, :]
    )[0]
    assert rec[mask].mean() == pytest.approx(truth[mask].mean(), rel=1e-3)
    assert nrmse(rec, ref, mask) < 2e-3
    # Edge padding (no sample radius) is far off on this window: the padding is really used.
    edge = numpy_fbp(n=n, center=center).reconstruct(sino)
    assert edge[mask].mean() > 5 * truth[mask].mean()


def test_batches_of_rows_and_blocks_of_angles_give_the_same_slices() -> None:
    rng = np.random.default_rng(1)
    rows = [gaussian_sinogram(THETA, N, 63.5, [(rng.normal(0, 10), 0, 8, 1.0)]) for _ in range(5)]
    stack = np.stack(rows, axis=1)  # (angles, rows, det)
    fbp = numpy_fbp()
    together = fbp.reconstruct(stack, batch=5)
    assert together.dtype == np.float32 and together.shape == (5, N, N)
    scale = np.abs(together).max()
    for batch in (1, 2):
        np.testing.assert_allclose(fbp.reconstruct(stack, batch=batch), together, atol=1e-6 * scale)
    # A small memory budget: batches of one row, a few angles at a time.
    small = numpy_fbp(memory_bytes=2_000_000)
    assert small.batch_rows() == 1 and small._angle_block(1) < N_ANGLES
    np.testing.assert_allclose(small.reconstruct(stack), together, atol=1e-5 * scale)
    np.testing.assert_allclose(fbp.reconstruct(rows[3]), together[3], atol=1e-6 * scale)


def test_batches_fit_the_memory_budget() -> None:
    fbp = CupyFBP(THETA, 2048, center=1023.5, xp=np, memory_bytes=2 * 1024**3)
    rows = fbp.batch_rows()
    assert rows >= 1
    assert rows * fbp._bytes_per_row() <= fbp.memory_bytes // 2
    assert fbp._angle_block(rows) * 12 * rows * 2048**2 <= fbp.memory_bytes // 2


def test_clear_errors_for_bad_input() -> None:
    with pytest.raises(AnalysisInputError, match="filter_name"):
        numpy_fbp(filter_name="gauss")
    with pytest.raises(AnalysisInputError, match="n_angles=180"):
        numpy_fbp().reconstruct(np.zeros((179, 2, N)))
    with pytest.raises(AnalysisInputError, match="theta is empty"):
        CupyFBP([], N, center=63.5, xp=np)
    with pytest.raises(AnalysisInputError, match="center"):
        CupyFBP(THETA, N, center=500.0, xp=np)
    with pytest.raises(AnalysisInputError, match="sample_radius"):
        numpy_fbp(sample_radius=-1.0)


def _no_cupy(monkeypatch, reason="CuPy is not installed (No module named 'cupy')") -> None:
    monkeypatch.setattr(gpu, "probe_cupy", lambda: (None, reason))


def test_without_cupy_the_backend_says_what_is_missing_and_how_to_install_it(
    monkeypatch,
) -> None:
    _no_cupy(monkeypatch)
    with pytest.raises(BackendUnavailable) as err:
        make_backend("cupy", THETA, N, center=63.5)
    message = str(err.value)
    assert "CuPy is not installed" in message
    assert "pip install insitu[gpu]" in message and "cupy-cuda12x" in message
    # The command line prints it as the user's to fix, in one line.
    assert isinstance(err.value, AnalysisInputError) and "\n" not in message


def test_the_probe_names_what_is_missing(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "cupy", None)  # `import cupy` raises ImportError
    xp, reason = gpu.probe_cupy()
    assert xp is None and reason.startswith("CuPy is not installed or does not import")

    class BrokenCupy(importlib.abc.MetaPathFinder):
        """CuPy installed without its CUDA libraries: a many-line ImportError."""

        def find_spec(self, name, path=None, target=None):
            if name == "cupy":
                raise ImportError("CuPy failed to load libcudart.so:\n  Original error:\n  ...")
            return None

    monkeypatch.delitem(sys.modules, "cupy")
    monkeypatch.setattr(sys, "meta_path", [BrokenCupy(), *sys.meta_path])
    xp, reason = gpu.probe_cupy()
    assert xp is None and "libcudart" in reason and "\n" not in reason  # one line for the CLI

    def fake_cupy(count):
        runtime = types.SimpleNamespace(getDeviceCount=count)
        return types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=runtime))

    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(lambda: 0))
    assert gpu.probe_cupy() == (None, "CuPy finds no CUDA device")

    def no_driver():
        raise RuntimeError("cudaErrorInsufficientDriver")

    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(no_driver))
    xp, reason = gpu.probe_cupy()
    assert xp is None and "no usable CUDA device" in reason and "InsufficientDriver" in reason
    found = fake_cupy(lambda: 1)
    monkeypatch.setitem(sys.modules, "cupy", found)
    assert gpu.probe_cupy() == (found, "")


def test_auto_chooses_the_gpu_only_where_cupy_sees_one(monkeypatch) -> None:
    assert {"insitu", "cupy", "auto"} <= set(BACKENDS)
    _no_cupy(monkeypatch)
    assert make_backend("auto", THETA, N, center=63.5).name == "insitu"
    # A machine with a GPU, stood in for by numpy as the array module.
    monkeypatch.setattr(gpu, "probe_cupy", lambda: (np, ""))
    chosen = make_backend("auto", THETA, N, center=63.5)
    assert isinstance(chosen, CupyFBP) and chosen.name == "cupy" and chosen.xp is np
    # ... and it reconstructs what the default backend does.
    sino = disc_sinogram(THETA, N, 63.5, DISCS)[:, None, :]
    ref = InsituGridrec(THETA, N, center=63.5).reconstruct(sino)
    assert nrmse(chosen.reconstruct(sino), ref, inner(N)) < 2e-3


def test_the_command_lines_start_up_does_not_import_cupy() -> None:
    """Importing CuPy initialises CUDA: the CLI lists the backends without it, and only a
    backend that needs it tries to import it (which the finder sees, so it can fail)."""
    code = textwrap.dedent(
        """
        import importlib.abc, sys

        tried = []

        class Spy(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "cupy":
                    tried.append(name)
                return None

        sys.meta_path.insert(0, Spy())
        sys.modules.pop("cupy", None)
        from insitu.protocols.cli import main
        from insitu.protocols.cli.recon import BACKENDS
        try:
            main(["recon", "--help"])
        except SystemExit:
            pass
        assert "cupy" in BACKENDS and "auto" in BACKENDS
        before = list(tried)
        from insitu.analysis.tomo.recon import gpu
        gpu.probe_cupy()
        print(before, bool(tried))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[] True", out.stdout


def _write_scan(path, n_angles=90, rows=4, cols=64, center=33.5, mu=0.02) -> None:
    """A small Data Exchange scan of a disc with a pore (the pipeline's input)."""
    import h5py

    theta = np.arange(n_angles) * math.pi / n_angles
    sino = disc_sinogram(theta, cols, center, [(0, 0, 24, mu), (6, -5, 5, -mu)])
    # A beam profile (a constant flat reads as a dropped frame and is refused).
    flat = 4000.0 + 300 * np.cos(np.arange(cols) / 9.0)[None, :] + 10 * np.arange(rows)[:, None]
    proj = flat[None] * np.exp(-np.repeat(sino[:, None, :], rows, axis=1))
    with h5py.File(path, "w") as f:
        f["/exchange/data"] = np.round(proj).astype(np.uint16)
        f["/exchange/data_white"] = np.round(np.repeat(flat[None], 2, axis=0)).astype(np.uint16)
        f["/exchange/data_dark"] = np.zeros((2, rows, cols), dtype=np.uint16)
        f["/exchange/theta"] = theta
        f["/exchange/theta"].attrs["units"] = "rad"


def test_the_pipeline_runs_the_gpu_backend_and_auto(tmp_path, monkeypatch) -> None:
    """Through ``reconstruct_scan``: "cupy" (numpy standing in for CuPy) writes the volume
    "insitu" writes; "auto" on a machine without a GPU is "insitu"."""
    import zarr

    from insitu.analysis.tomo.pipeline import ReconOptions, reconstruct_scan

    scan = tmp_path / "scan.h5"
    _write_scan(scan)
    volumes, ran = {}, {}
    for backend, probe in (("insitu", None), ("cupy", (np, "")), ("auto", (None, "no GPU"))):
        if probe is not None:
            monkeypatch.setattr(gpu, "probe_cupy", lambda probe=probe: probe)
        out = tmp_path / f"{backend}.zarr"
        opts = ReconOptions(center=33.5, rings="none", backend=backend)
        ran[backend] = reconstruct_scan(scan, out, opts, progress=False)["backend"]
        volumes[backend] = zarr.open_array(str(out), mode="r")[:]
    # The summary names the backend that ran: what "auto" chose.
    assert ran == {"insitu": "insitu", "cupy": "cupy", "auto": "insitu"}
    mask = inner(64, 0.45)
    assert nrmse(volumes["cupy"], volumes["insitu"], mask) < 2e-3
    np.testing.assert_array_equal(volumes["auto"], volumes["insitu"])


# --- The real CuPy path: only where CuPy imports and sees a GPU (skipped on CPU machines). ---


@pytest.fixture
def cupy():
    cupy = pytest.importorskip("cupy")
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # no driver: CuPy's own CUDARuntimeError
        pytest.skip(f"CuPy sees no GPU: {exc}")
    if count < 1:
        pytest.skip("CuPy sees no GPU")
    return cupy


@pytest.mark.parametrize("offset", [0.0, 9.25])
def test_on_a_gpu_cupy_gives_the_numpy_paths_slices(cupy, offset) -> None:
    center = (N - 1) / 2 + offset
    rng = np.random.default_rng(2)
    stack = np.stack(
        [disc_sinogram(THETA, N, center, DISCS) * rng.uniform(0.5, 1.5) for _ in range(3)],
        axis=1,
    )
    on_gpu = CupyFBP(THETA, N, center=center, xp=cupy).reconstruct(stack)
    on_cpu = numpy_fbp(center=center).reconstruct(stack)
    assert isinstance(on_gpu, np.ndarray) and on_gpu.dtype == np.float32
    np.testing.assert_allclose(on_gpu, on_cpu, atol=1e-4 * np.abs(on_cpu).max())
    ref = InsituGridrec(THETA, N, center=center).reconstruct(stack)
    assert nrmse(on_gpu, ref, inner(N)) < 2e-3


def test_on_a_gpu_auto_and_cupy_build_the_gpu_backend(cupy) -> None:
    assert make_backend("cupy", THETA, N, center=63.5).xp is cupy
    assert make_backend("auto", THETA, N, center=63.5).name == "cupy"
    n, radius = 96, 2143.0
    discs = [(0, 0, radius, 0.25), (10, -5, 12, -0.25)]
    sino = disc_sinogram(THETA, n, 47.5, discs)
    rec = make_backend("cupy", THETA, n, center=47.5, sample_radius=radius).reconstruct(sino)
    mask = inner(n, 0.4)
    assert rec[mask].mean() == pytest.approx(disc_image(n, discs)[mask].mean(), rel=1e-3)
