"""The chunked reconstruction driver on an analytic Data Exchange scan (cylinders)."""

from __future__ import annotations

import itertools
import math

import h5py
import numpy as np
import pytest
import zarr

from insitu.analysis.errors import AnalysisInputError
from insitu.analysis.tomo import pipeline
from insitu.analysis.tomo.pipeline import (
    ReconOptions,
    plan_slabs,
    read_scan_info,
    reconstruct_scan,
)
from insitu.instruments.dxchange import DataExchangeError, ScanInfo

N_ANGLES, ROWS, COLS = 120, 40, 96
AXIS_OFFSET = 3.5  # the rotation axis's image, right of the detector centre
MU = 0.02  # 1/pixel


def discs_for_row(row: int) -> list[tuple[float, float, float, float]]:
    """(x0, y0, radius, μ) of the slice at ``row``: a pellet, a pore and a row-dependent rod."""
    return [
        (0.0, 0.0, 36.0, MU),
        (10.0, -8.0, 7.0, -MU),  # a pore (μ back to 0)
        (-15.0, 12.0, 3.0 + row / 10, MU),  # grows with the row: catches mixed-up rows
    ]


def truth_slice(row: int, n: int = COLS, supersample: int = 4) -> np.ndarray:
    c = (n - 1) / 2
    sub = (np.arange(supersample) + 0.5) / supersample - 0.5
    y, x = np.mgrid[:n, :n] - c
    img = np.zeros((n, n))
    for dy in sub:
        for dx in sub:
            for x0, y0, r, mu in discs_for_row(row):
                img += mu * (((x + dx - x0) ** 2 + (y + dy - y0) ** 2) <= r**2)
    return img / supersample**2


def write_scan(path, *, theta_deg: bool = False) -> None:
    theta = np.arange(N_ANGLES) * math.pi / N_ANGLES
    center = (COLS - 1) / 2 + AXIS_OFFSET
    t = np.arange(COLS) - center
    sino = np.zeros((N_ANGLES, ROWS, COLS))
    for row in range(ROWS):
        for x0, y0, r, mu in discs_for_row(row):
            t0 = x0 * np.cos(theta)[:, None] + y0 * np.sin(theta)[:, None]
            sino[:, row] += 2 * mu * np.sqrt(np.clip(r**2 - (t - t0) ** 2, 0, None))
    flat = 4000.0 + 500 * np.cos(np.arange(COLS) / 15.0)[None, :] + 10 * np.arange(ROWS)[:, None]
    dark = np.full((ROWS, COLS), 100.0)
    proj = dark + flat * np.exp(-sino)
    with h5py.File(path, "w") as f:
        f["/exchange/data"] = np.round(proj).astype(np.uint16)
        f["/exchange/data_white"] = np.round(np.repeat(flat[None] + dark, 4, axis=0)).astype(
            np.uint16
        )
        f["/exchange/data_dark"] = np.repeat(dark[None], 3, axis=0).astype(np.uint16)
        if theta_deg:
            f["/exchange/theta"] = np.degrees(theta)  # APS style: degrees, no units
        else:
            f["/exchange/theta"] = theta
            f["/exchange/theta"].attrs["units"] = "rad"
        f["/measurement/instrument/monochromator/energy"] = [25.0]
        f["/measurement/instrument/detector/pixel_size_x"] = [0.69]
        f["/measurement/instrument/camera_motor_stack/setup/camera_distance"] = [50.0]


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    path = tmp_path_factory.mktemp("scan") / "scan.h5"
    write_scan(path)
    return path


CENTER = (COLS - 1) / 2 + AXIS_OFFSET


def test_pipeline_reads_through_the_one_codec() -> None:
    from insitu.analysis.tomo import pipeline

    assert pipeline.ScanInfo is ScanInfo  # one definition, re-exported
    assert pipeline.read_scan_info.__module__ == "insitu.instruments.dxchange"
    assert not hasattr(pipeline, "h5py")  # no reading code of its own


def test_scan_info_reads_geometry_and_converts_degrees(scan, tmp_path) -> None:
    info = read_scan_info(scan)
    assert (info.n_angles, info.n_rows, info.n_cols) == (N_ANGLES, ROWS, COLS)
    assert (info.n_flats, info.n_darks) == (4, 3)
    assert info.energy_keV == 25.0 and info.pixel_size_um == 0.69 and info.distance_mm == 50.0
    deg = tmp_path / "deg.h5"
    write_scan(deg, theta_deg=True)
    np.testing.assert_allclose(read_scan_info(deg).theta_rad, info.theta_rad)


def test_reconstructs_the_phantom_on_the_true_scale(scan, tmp_path) -> None:
    opts = ReconOptions(center=CENTER, rings="none", filter_name="shepp")
    summary = reconstruct_scan(scan, tmp_path / "v.zarr", opts, progress=False)
    vol = zarr.open_array(str(tmp_path / "v.zarr"), mode="r")
    assert vol.shape == (ROWS, COLS, COLS) and vol.dtype == np.float32
    assert summary["shape"] == [ROWS, COLS, COLS]
    (codec,) = vol.compressors  # the cheaper codec the background writer was measured with
    assert codec.to_dict()["configuration"]["cname"] == "lz4"
    c = (COLS - 1) / 2
    y, x = np.mgrid[:COLS, :COLS] - c
    inside = x**2 + y**2 < 40**2
    for row in (0, 17, ROWS - 1):
        truth = truth_slice(row)
        rec = vol[row]
        err = np.sqrt(np.mean((rec[inside] - truth[inside]) ** 2)) / MU
        assert err < 0.08, (row, err)  # 96-px slices: partial-volume edges dominate
    # Pellet interior on the true μ scale; the pore back to zero.
    assert np.median(vol[20][(x**2 + y**2 < 15**2) & ((x - 10) ** 2 + (y + 8) ** 2 > 9**2)]) == (
        pytest.approx(MU, rel=0.03)
    )
    assert abs(float(vol[20][int(c - 8), int(c + 10)])) < 0.1 * MU
    assert vol.attrs["center"] == CENTER and vol.attrs["options"]["rings"] == "none"
    assert vol.attrs["voxel_um"] == 0.69 and "software_version" in vol.attrs


def test_chunked_volume_is_identical_to_one_slab(scan, tmp_path) -> None:
    base = ReconOptions(center=CENTER, rings="fw", zinger_dif=0.2)
    reconstruct_scan(scan, tmp_path / "one.zarr", base, progress=False)
    chunked = ReconOptions(center=CENTER, rings="fw", zinger_dif=0.2, slab_rows=8)
    summary = reconstruct_scan(scan, tmp_path / "many.zarr", chunked, progress=False)
    assert summary["slabs"] == 5
    one = zarr.open_array(str(tmp_path / "one.zarr"), mode="r")[:]
    many = zarr.open_array(str(tmp_path / "many.zarr"), mode="r")[:]
    np.testing.assert_array_equal(one, many)


def test_paganin_chunked_matches_unchunked(scan, tmp_path) -> None:
    opts = ReconOptions(center=CENTER, rings="none", paganin=True, delta_beta=50.0)
    reconstruct_scan(scan, tmp_path / "one.zarr", opts, progress=False)
    reconstruct_scan(
        scan,
        tmp_path / "many.zarr",
        ReconOptions(**{**opts.__dict__, "slab_rows": 8}),
        progress=False,
    )
    one = zarr.open_array(str(tmp_path / "one.zarr"), mode="r")[:]
    many = zarr.open_array(str(tmp_path / "many.zarr"), mode="r")[:]
    assert np.abs(one - many).max() < 1e-3 * np.abs(one).max()


def test_automatic_centre_and_row_subset(scan, tmp_path) -> None:
    summary = reconstruct_scan(
        scan, tmp_path / "v.zarr", ReconOptions(rows=(8, 24), rings="none"), progress=False
    )
    assert summary["center"] == pytest.approx(CENTER, abs=0.5)
    vol = zarr.open_array(str(tmp_path / "v.zarr"), mode="r")
    assert vol.shape == (16, COLS, COLS) and vol.attrs["first_row"] == 8


def test_dask_local_cluster_gives_the_same_volume(scan, tmp_path) -> None:
    opts = ReconOptions(center=CENTER, rings="fw", slab_rows=8, memory_budget_gib=2.0)
    reconstruct_scan(scan, tmp_path / "serial.zarr", opts, progress=False)
    summary = reconstruct_scan(
        scan, tmp_path / "dask.zarr", opts, scheduler="local", progress=False
    )
    assert summary["slabs"] == 5
    serial = zarr.open_array(str(tmp_path / "serial.zarr"), mode="r")[:]
    dask = zarr.open_array(str(tmp_path / "dask.zarr"), mode="r")[:]
    # The workers grid on their share of the cores, the serial run on all of them: finufft
    # then sums the spread points in another order (float32 rounding, ~1e-7 of μ here).
    np.testing.assert_allclose(dask, serial, rtol=0, atol=1e-4 * MU)


def test_memory_budget_sets_the_slabs() -> None:
    meta = {"energy_keV": 25.0, "pixel_size_um": 0.69, "sample_detector_distance_mm": 50.0}
    full = ScanInfo("x.h5", 1500, 1143, 2000, 20, 20, np.zeros(1500), meta)
    slabs = plan_slabs(full, ReconOptions(memory_budget_gib=8.0))
    rows = slabs[0][1] - slabs[0][0]
    assert rows % 8 == 0 and 8 <= rows < 1143
    assert slabs[-1][1] == 1143 and all(a[1] == b[0] for a, b in itertools.pairwise(slabs))
    assert plan_slabs(full, ReconOptions(memory_budget_gib=4.0))[0][1] < rows
    with pytest.raises(ValueError, match="GiB"):
        plan_slabs(full, ReconOptions(memory_budget_gib=0.5))


def test_a_small_job_is_cut_into_slabs_that_overlap() -> None:
    """A job the budget could hold in one slab is cut into about four slabs of whole chunks,
    so that reading and writing overlap the gridding; never thinner than four margins, and
    never past the budget or the user's slab_rows."""
    meta = {"energy_keV": 25.0, "pixel_size_um": 0.69, "sample_detector_distance_mm": 50.0}
    full = ScanInfo("x.h5", 1500, 1143, 2048, 20, 20, np.zeros(1500), meta)

    def rows_of(budget: float = 8.0, **kw) -> list[int]:
        return [b - a for a, b in plan_slabs(full, ReconOptions(memory_budget_gib=budget, **kw))]

    assert rows_of(rows=(0, 32)) == [8, 8, 8, 8]
    assert rows_of(rows=(0, 2)) == [2]
    assert rows_of(rows=(100, 164)) == [16, 16, 16, 16]
    assert rows_of(rows=(0, 36)) == [8, 8, 8, 8, 4]
    assert rows_of(rows=(0, 32), slab_rows=32) == [32]
    # A zinger median reads one row beyond each side: slabs of at least 8 (4 margins).
    assert rows_of(rows=(0, 32), zinger_dif=0.1) == [8, 8, 8, 8]
    # Paganin's margin of several rows makes the slabs thicker.
    paganin = rows_of(64.0, rows=(0, 256), paganin=True, delta_beta=10.0)
    margin = pipeline._margin_rows(full, ReconOptions(paganin=True, delta_beta=10.0))
    assert margin > 2 and min(paganin[:-1]) >= 4 * margin
    # The whole scan stays as the budget sets it.
    whole = rows_of()
    assert whole[0] < 1143 // 4 and whole[0] == rows_of(slab_rows=whole[0])[0]


def test_clear_errors(scan, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no scan file"):
        read_scan_info(tmp_path / "missing.h5")
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as f:
        f["/exchange/data"] = np.zeros((2, 2, 2))
    with pytest.raises(DataExchangeError, match="no dataset /exchange/data_white"):
        read_scan_info(bad)
    (tmp_path / "exists.zarr").mkdir()
    with pytest.raises(FileExistsError, match="--overwrite"):
        reconstruct_scan(scan, tmp_path / "exists.zarr", progress=False)
    with pytest.raises(ValueError, match="rings"):
        ReconOptions(rings="wavelet")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="slab_rows"):
        ReconOptions(slab_rows=12)


def test_backends_share_one_interface(scan, tmp_path) -> None:
    import importlib.util

    from insitu.analysis.tomo.recon.backends import BackendUnavailable, make_backend

    info = read_scan_info(scan)
    with pytest.raises(ValueError, match="insitu, tomopy"):
        make_backend("astra", info.theta_rad, COLS, center=CENTER)
    if importlib.util.find_spec("tomopy") is None:
        # Not on PyPI: the backend says how to get it, and the default still runs.
        with pytest.raises(BackendUnavailable, match="conda install -c conda-forge tomopy"):
            reconstruct_scan(
                scan,
                tmp_path / "t.zarr",
                ReconOptions(center=CENTER, backend="tomopy"),
                progress=False,
            )
        assert not (tmp_path / "t.zarr").exists()
        return
    # With TomoPy (conda installs): both backends agree on the phantom.
    opts = ReconOptions(center=CENTER, rings="none")
    reconstruct_scan(scan, tmp_path / "a.zarr", opts, progress=False)
    reconstruct_scan(
        scan,
        tmp_path / "b.zarr",
        ReconOptions(**{**opts.__dict__, "backend": "tomopy"}),
        progress=False,
    )
    a = zarr.open_array(str(tmp_path / "a.zarr"), mode="r")[20]
    b = zarr.open_array(str(tmp_path / "b.zarr"), mode="r")[20]
    c = (COLS - 1) / 2
    y, x = np.mgrid[:COLS, :COLS] - c
    inside = x**2 + y**2 < 40**2
    assert np.corrcoef(a[inside], b[inside])[0, 1] > 0.98
    assert np.median(b[inside & (x**2 + y**2 < 15**2)]) == pytest.approx(MU, rel=0.1)


def test_a_backend_is_reused_only_for_a_job_of_the_same_rows(scan) -> None:
    """The job's rows decide the plan (a preview's is made cheaply): a whole scan after a
    preview in the same process gets a plan of its own, a second preview the first's."""
    from insitu.analysis.tomo import pipeline

    info = read_scan_info(scan)
    preview = ReconOptions(rows=(0, 2))
    first = pipeline._backend_for(info, preview, 31.5)
    assert pipeline._backend_for(info, preview, 31.5) is first
    assert pipeline._backend_for(info, ReconOptions(), 31.5) is not first


def test_the_fft_plan_is_made_before_any_slab_is_read(scan, tmp_path, monkeypatch) -> None:
    """finufft's plan (FFTW measures its FFTs for a large job) is made in the plan step,
    before the reading thread starts beside it, and reused by every slab."""
    from insitu.analysis.tomo.recon.algorithm import GridrecPlan

    events: list[str] = []
    real_plan, real_preprocess = GridrecPlan._plan, pipeline.preprocess_rows

    def plan(self, n_trans):
        if n_trans not in self._plans:
            events.append(f"plan {n_trans}")
        return real_plan(self, n_trans)

    def preprocess(info, opts, r0, r1, timings=None):
        events.append(f"read {r0}")
        return real_preprocess(info, opts, r0, r1, timings)

    monkeypatch.setattr(GridrecPlan, "_plan", plan)
    monkeypatch.setattr(pipeline, "preprocess_rows", preprocess)
    pipeline._BACKENDS.clear()
    opts = ReconOptions(center=CENTER, rings="none", slab_rows=8, rows=(0, 24))
    summary = reconstruct_scan(scan, tmp_path / "v.zarr", opts, progress=False)
    assert events == ["plan 4", "read 0", "read 8", "read 16"]
    assert summary["timings_s"]["plan"] > 0


def test_the_next_slab_is_read_while_this_one_is_gridded(scan, tmp_path, monkeypatch) -> None:
    """Slab k + 1 is pre-processed while slab k is gridded, and slab k written while slab
    k + 1 is gridded: each gridding waits (with a timeout) for the other threads to reach
    those steps. Run one after the other, the waits would time out and the test fail."""
    import threading

    from insitu.analysis.tomo import pipeline

    started_reading: dict[int, threading.Event] = {r0: threading.Event() for r0 in range(0, 40, 8)}
    started_writing: dict[int, threading.Event] = {r: threading.Event() for r in range(0, 40, 8)}
    overlaps: list[str] = []
    real_preprocess, real_write, real_grid = (
        pipeline.preprocess_rows,
        pipeline._write_slab,
        pipeline._grid_slab,
    )

    def preprocess(info, opts, r0, r1, timings=None):
        started_reading[r0].set()
        return real_preprocess(info, opts, r0, r1, timings)

    def write(out_path, rec, row, storage):
        started_writing[row].set()
        return real_write(out_path, rec, row, storage)

    def grid(info, opts, center, sino):
        r0 = grid.next_row
        grid.next_row += 8
        if r0 + 8 < 40 and started_reading[r0 + 8].wait(10):
            overlaps.append(f"read {r0 + 8} during gridding {r0}")
        if r0 >= 8 and started_writing[r0 - 8].wait(10):
            overlaps.append(f"write {r0 - 8} during gridding {r0}")
        return real_grid(info, opts, center, sino)

    grid.next_row = 0
    monkeypatch.setattr(pipeline, "preprocess_rows", preprocess)
    monkeypatch.setattr(pipeline, "_write_slab", write)
    monkeypatch.setattr(pipeline, "_grid_slab", grid)
    opts = ReconOptions(center=CENTER, rings="fw", slab_rows=8)
    summary = reconstruct_scan(scan, tmp_path / "v.zarr", opts, progress=False)
    assert overlaps == [
        "read 8 during gridding 0",
        "read 16 during gridding 8",
        "write 0 during gridding 8",
        "read 24 during gridding 16",
        "write 8 during gridding 16",
        "read 32 during gridding 24",
        "write 16 during gridding 24",
        "write 24 during gridding 32",
    ]
    assert set(summary["timings_s"]) >= {"read", "preprocess", "gridding", "write"}
    monkeypatch.undo()
    reconstruct_scan(scan, tmp_path / "plain.zarr", opts, progress=False)
    np.testing.assert_array_equal(
        zarr.open_array(str(tmp_path / "v.zarr"), mode="r")[:],
        zarr.open_array(str(tmp_path / "plain.zarr"), mode="r")[:],
    )


@pytest.mark.parametrize("failing", ["read", "write"])
def test_a_failing_slab_stops_the_run_with_its_error(scan, tmp_path, monkeypatch, failing):
    """A read (corrupt frame) or a write (full disk) failing in its background thread is
    raised to the caller, no slab is started after it is seen, the slabs before it are
    written and nothing after."""
    from insitu.analysis.tomo import pipeline

    real_preprocess, real_write = pipeline.preprocess_rows, pipeline._write_slab
    read_rows: list[int] = []

    def preprocess(info, opts, r0, r1, timings=None):
        read_rows.append(r0)
        if failing == "read" and r0 == 16:
            raise AnalysisInputError("projection 7 of rows 16-24 is corrupt")
        return real_preprocess(info, opts, r0, r1, timings)

    def write(out_path, rec, row, storage):
        if failing == "write" and row == 16:
            raise OSError(28, "No space left on device")
        return real_write(out_path, rec, row, storage)

    monkeypatch.setattr(pipeline, "preprocess_rows", preprocess)
    monkeypatch.setattr(pipeline, "_write_slab", write)
    opts = ReconOptions(center=CENTER, rings="none", slab_rows=8)
    error = AnalysisInputError if failing == "read" else OSError
    with pytest.raises(error, match="corrupt" if failing == "read" else "No space"):
        reconstruct_scan(scan, tmp_path / "v.zarr", opts, progress=False)
    # A failed read is seen when its slab is due; a failed write when the next slab is
    # gridded, by which time the one after that is queued (and usually being read: a
    # loaded machine may not have started it, and then it is cancelled). Nothing after.
    assert max(read_rows) in ({16} if failing == "read" else {24, 32})
    vol = zarr.open_array(str(tmp_path / "v.zarr"), mode="r")
    assert all(np.abs(vol[r]).max() > 0.5 * MU for r in range(16))  # slabs before: written
    assert not np.any(vol[16:])  # nothing from the failing slab on


@pytest.fixture(scope="module")
def float_volume(scan, tmp_path_factory):
    out = tmp_path_factory.mktemp("f32") / "v.zarr"
    reconstruct_scan(scan, out, ReconOptions(center=CENTER, rings="none"), progress=False)
    return zarr.open_array(str(out), mode="r")[:]


def test_float16_volume_holds_the_float32_values_to_its_precision(scan, tmp_path, float_volume):
    opts = ReconOptions(center=CENTER, rings="none", dtype="float16")
    summary = reconstruct_scan(scan, tmp_path / "h.zarr", opts, progress=False)
    half = zarr.open_array(str(tmp_path / "h.zarr"), mode="r")
    assert half.dtype == np.float16 and summary["dtype"] == "float16"
    assert summary["clipped_voxels"] == 0 and summary["value_range"] is None
    # 11 significant bits: within 2⁻¹¹ of each value (and float16's smallest normal step)
    np.testing.assert_allclose(half[:], float_volume, rtol=2**-11, atol=2**-24)


@pytest.mark.parametrize(("dtype", "bits"), [("uint16", 16), ("uint8", 8)])
def test_integer_volumes_read_back_within_half_a_level(scan, tmp_path, float_volume, dtype, bits):
    from insitu.analysis.volumes import open_volume

    lo, hi = -0.01, 0.05
    opts = ReconOptions(center=CENTER, rings="none", dtype=dtype, value_range=(lo, hi))
    summary = reconstruct_scan(scan, tmp_path / "l.zarr", opts, progress=False)
    stored = zarr.open_array(str(tmp_path / "l.zarr"), mode="r")
    assert stored.dtype == np.dtype(dtype) and stored.attrs["grey_min"] == lo
    step = (hi - lo) / 2**bits
    # the levels as the 8-bit export defines them: floor((μ − lo) / step), clipped
    expected = np.clip(np.floor((float_volume.astype(np.float64) - lo) / step), 0, 2**bits - 1)
    assert np.abs(stored[:].astype(np.float64) - expected).max() <= 1  # float32 rounding
    outside = (float_volume < lo) | (float_volume >= hi)
    assert summary["clipped_voxels"] == stored.attrs["clipped_voxels"]
    assert abs(summary["clipped_voxels"] - int(outside.sum())) <= 0.001 * outside.size
    with open_volume(tmp_path / "l.zarr", voxel_um=0.69) as volume:
        read = volume[:]
    inside = ~outside
    assert np.abs(read[inside] - float_volume[inside]).max() <= 0.5 * step * 1.01 + 1e-6


def test_integer_levels_without_a_range_take_the_middle_slab_widened(scan, tmp_path, float_volume):
    opts = ReconOptions(center=CENTER, rings="none", dtype="uint16")
    summary = reconstruct_scan(scan, tmp_path / "a.zarr", opts, progress=False)
    middle = float_volume[16:24]
    span = float(middle.max() - middle.min())
    lo, hi = summary["value_range"]
    assert lo == pytest.approx(float(middle.min()) - span / 2, abs=1e-6)
    assert hi == pytest.approx(float(middle.max()) + span / 2, abs=1e-6)
    assert summary["clipped_voxels"] == 0 and "range" in summary["timings_s"]


def test_output_dtype_errors_are_clear() -> None:
    with pytest.raises(AnalysisInputError, match=r"dtype .*float32, float16, uint16, uint8"):
        ReconOptions(dtype="int8")  # type: ignore[arg-type]
    with pytest.raises(AnalysisInputError, match="--dtype uint8 or uint16"):
        ReconOptions(value_range=(0.0, 1.0))
    with pytest.raises(AnalysisInputError, match="LO < HI"):
        ReconOptions(dtype="uint8", value_range=(1.0, 1.0))


def test_local_cluster_workers_share_the_cores(tmp_path) -> None:
    """``local:N`` starts N workers, one slab at a time each, whose reconstruction threads
    are their share of the cores (``INSITU_THREADS``); a bad N is a clear error."""
    import os

    from insitu.analysis.tomo import pipeline
    from insitu.analysis.tomo.recon.algorithm import default_threads

    assert pipeline._local_workers("local:3") == 3
    assert pipeline._local_workers("tcp://10.0.0.5:8786") is None
    for bad in ("local:0", "local:two", "local:"):
        with pytest.raises(AnalysisInputError, match="local:N with N ≥ 1"):
            pipeline._local_workers(bad)
    with pipeline._dask_client("local:2", ReconOptions()) as (client, workers):
        assert workers == 2
        seen = client.run(lambda: (os.environ.get("INSITU_THREADS"), default_threads()))
        info = client.scheduler_info()["workers"].values()
    share = max(1, (os.cpu_count() or 1) // 2)
    assert sorted(seen.values()) == [(str(share), share)] * 2
    assert [w["nthreads"] for w in info] == [1, 1]
