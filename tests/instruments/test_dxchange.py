"""The one Data Exchange reader/writer: the angle rule, hand-written TomoPy files, clear errors."""

from __future__ import annotations

import math
import warnings

import h5py
import numpy as np
import pytest

from insitu.instruments.dxchange import (
    DARK_PATH,
    DATA_PATH,
    FLAT_PATH,
    THETA_PATH,
    DataExchangeError,
    DataExchangeWarning,
    DataExchangeWriter,
    ScanFileExistsError,
    ScanFileNotFoundError,
    UnverifiedScanWarning,
    read_data_exchange,
    read_metadata,
    read_rows,
    read_scan_info,
    theta_in_radians,
)
from insitu.instruments.errors import InstrumentError

N, ROWS, COLS = 6, 5, 7
#: 0 … 150°, the angles of a 180° scan of N projections.
DEGREES = np.arange(N) * 180.0 / N
RADIANS = np.deg2rad(DEGREES)


def write_tomopy_style(path, *, theta=DEGREES, units=None, skip: str | None = None) -> None:
    """A scan as TomoPy/dxchange users write one by hand: the four datasets, nothing else."""
    frames = {
        DATA_PATH: np.arange(N * ROWS * COLS, dtype=np.uint16).reshape(N, ROWS, COLS),
        FLAT_PATH: np.full((3, ROWS, COLS), 4000, dtype=np.uint16),
        DARK_PATH: np.full((2, ROWS, COLS), 100, dtype=np.uint16),
        THETA_PATH: np.asarray(theta, dtype=np.float32),
    }
    with h5py.File(path, "w") as f:
        for name, data in frames.items():
            if name != skip:
                f[name] = data
        if units is not None and skip != THETA_PATH:
            f[THETA_PATH].attrs["units"] = units


# -- the angle rule ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("stored", "units"),
    [
        (RADIANS, "rad"),
        (RADIANS, "Radians "),  # case and spaces ignored
        (DEGREES, "deg"),
        (DEGREES, "degrees"),
        (DEGREES, None),  # no units: degrees, as dxchange.read_aps_32id assumes
        (RADIANS, np.bytes_(b"rad")),  # fixed-length bytes, as IDL/C writers leave it
        (DEGREES, np.array([b"deg"])),  # a one-element array of bytes
        (DEGREES, np.array(["deg"], dtype=h5py.string_dtype())),
    ],
    ids=["rad", "Radians", "deg", "degrees", "none", "bytes-rad", "bytes-array", "str-array"],
)
def test_units_attribute_decides(tmp_path, stored, units) -> None:
    path = tmp_path / "scan.h5"
    write_tomopy_style(path, theta=stored, units=units)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # none of these is ambiguous
        # Hand-written files carry no checksums: that note is not about the angles.
        warnings.simplefilter("ignore", UnverifiedScanWarning)
        info = read_scan_info(path)
        theta = read_data_exchange(path)[3]
    np.testing.assert_allclose(info.theta_rad, RADIANS, rtol=1e-6)
    np.testing.assert_array_equal(theta, info.theta_rad)
    assert info.theta_rad.dtype == np.float64


def test_bytes_attribute_is_decoded_by_h5py_attrs(tmp_path) -> None:
    path = tmp_path / "scan.h5"
    write_tomopy_style(path, theta=RADIANS)
    with h5py.File(path, "a") as f:
        f[THETA_PATH].attrs.create("units", b"rad", dtype="S3")
    with h5py.File(path, "r") as f:
        assert isinstance(f[THETA_PATH].attrs["units"], bytes)  # really bytes on reading
    np.testing.assert_allclose(read_scan_info(path).theta_rad, RADIANS, rtol=1e-6)


def test_unitless_small_angles_are_degrees_with_a_warning() -> None:
    # What the old pipeline took for radians (span < 2π) is read as dxchange reads it.
    with pytest.warns(DataExchangeWarning, match=r"units.*'rad'"):
        theta = theta_in_radians(RADIANS)
    np.testing.assert_allclose(theta, np.deg2rad(RADIANS))


def test_unknown_units_are_an_error() -> None:
    with pytest.raises(DataExchangeError, match=r"'mrad'.*'rad' or 'deg'"):
        theta_in_radians(RADIANS * 1000, "mrad")


def test_missing_theta_gives_evenly_spaced_half_turn_with_a_warning(tmp_path) -> None:
    path = tmp_path / "scan.h5"
    write_tomopy_style(path, skip=THETA_PATH)
    with pytest.warns(DataExchangeWarning, match=r"no /exchange/theta.*\[0, π\)"):
        info = read_scan_info(path)
    np.testing.assert_allclose(info.theta_rad, np.arange(N) * math.pi / N)


# -- a hand-written TomoPy-style file ------------------------------------------------------------
def test_reads_a_file_written_by_hand_as_tomopy_users_do(tmp_path) -> None:
    path = tmp_path / "tomopy.h5"
    write_tomopy_style(path)
    info = read_scan_info(path)
    assert (info.n_angles, info.n_rows, info.n_cols) == (N, ROWS, COLS)
    assert (info.n_flats, info.n_darks) == (3, 2)
    np.testing.assert_allclose(info.theta_rad, RADIANS, rtol=1e-6)
    assert info.metadata == {} and info.energy_keV is None and info.pixel_size_um is None
    data, flats, darks = read_rows(path, 1, 3)
    assert data.dtype == np.uint16 and data.shape == (N, 2, COLS)
    assert flats.shape == (3, 2, COLS) and darks.shape == (2, 2, COLS)
    proj, flat, dark, _ = read_data_exchange(path, rows=slice(1, 3))
    np.testing.assert_array_equal(data, proj)
    np.testing.assert_array_equal(flats, flat)
    np.testing.assert_array_equal(darks, dark)
    as_float = read_rows(path, 1, 3, dtype=np.float32)
    assert all(a.dtype == np.float32 for a in as_float)
    np.testing.assert_array_equal(as_float[0], data.astype(np.float32))
    assert read_metadata(path) == {}


def test_metadata_one_element_arrays_and_bytes(tmp_path) -> None:
    path = tmp_path / "scan.h5"
    write_tomopy_style(path)
    with h5py.File(path, "a") as f:
        f["/measurement/instrument/monochromator/energy"] = [25.0]  # tomoScan's scalars
        f["/measurement/instrument/detector/pixel_size_x"] = 0.69
        f["/measurement/instrument/camera_motor_stack/setup/camera_distance"] = [50.0]
        f["/measurement/sample/name"] = np.array([b"A-LPS"])
    meta = read_metadata(path)
    assert meta["energy_keV"] == 25.0 and isinstance(meta["energy_keV"], float)
    assert meta["sample_name"] == "A-LPS"
    info = read_scan_info(path)
    assert (info.energy_keV, info.pixel_size_um, info.distance_mm) == (25.0, 0.69, 50.0)


# -- errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize("missing", [DATA_PATH, FLAT_PATH, DARK_PATH])
def test_missing_dataset_is_named(tmp_path, missing) -> None:
    path = tmp_path / "scan.h5"
    write_tomopy_style(path, skip=missing)
    for read in (read_scan_info, read_data_exchange, lambda p: read_rows(p, 0, 1)):
        with pytest.raises(DataExchangeError, match=f"no dataset {missing}:"):
            read(path)


def test_other_user_errors(tmp_path) -> None:
    # The instruments part's user error (one line from the command line), and the built-in
    # types that callers caught before.
    assert issubclass(DataExchangeError, InstrumentError | ValueError)
    with pytest.raises(ScanFileNotFoundError, match="no scan file") as info:
        read_scan_info(tmp_path / "missing.h5")
    assert isinstance(info.value, FileNotFoundError | InstrumentError)
    text = tmp_path / "notes.h5"
    text.write_text("not HDF5")
    with pytest.raises(DataExchangeError, match="cannot be opened as HDF5"):
        read_scan_info(text)
    path = tmp_path / "scan.h5"
    write_tomopy_style(path, theta=DEGREES[:-1])
    with pytest.raises(DataExchangeError, match=f"{N - 1} angles for {N} projections"):
        read_scan_info(path)
    path = tmp_path / "ok.h5"
    write_tomopy_style(path)
    with pytest.raises(DataExchangeError, match="outside the detector"):
        read_rows(path, 3, ROWS + 1)
    with h5py.File(path, "a") as f:
        del f[FLAT_PATH]
        f[FLAT_PATH] = np.zeros((2, ROWS + 1, COLS))
    with pytest.raises(DataExchangeError, match="data_white has shape"):
        read_scan_info(path)


# -- the writer ---------------------------------------------------------------------------------
def test_writer_stores_degrees_that_dxchange_reads_right(tmp_path) -> None:
    path = tmp_path / "w.h5"
    with DataExchangeWriter(path, shape=(ROWS, COLS), metadata={"energy_keV": 25.0}) as w:
        w.append("dark", np.zeros((ROWS, COLS)))
        w.append("flat", np.full((ROWS, COLS), 1000))
        for angle in RADIANS:
            w.append("projection", np.full((ROWS, COLS), 500), theta_rad=float(angle))
    with h5py.File(path, "r") as f:
        assert f[THETA_PATH].attrs["units"] == "deg"
        # dxchange.read_aps_32id: theta * π / 180, whatever the attribute says.
        np.testing.assert_allclose(f[THETA_PATH][()] * np.pi / 180.0, RADIANS)
    info = read_scan_info(path)
    np.testing.assert_allclose(info.theta_rad, RADIANS, rtol=0, atol=1e-12)
    assert info.theta_rad[0] == 0.0 and info.energy_keV == 25.0


def test_writer_rounds_and_clips_what_the_file_type_cannot_hold(tmp_path) -> None:
    """uint16 file: a camera's uint16 (or uint8) frame goes in as it is; float frames are
    rounded and int32 or float values beyond 0 … 65535 clipped, as before."""
    path = tmp_path / "w.h5"
    camera = np.arange(4, dtype=np.uint16).reshape(2, 2) * 21845  # 0 … 65535
    with DataExchangeWriter(path, shape=(2, 2)) as w:
        w.append("dark", camera)
        w.append("dark", np.array([[1, 2], [3, 255]], dtype=np.uint8))
        w.append("flat", np.array([[-3.0, 2.4], [2.6, 70000.0]]))
        w.append("flat", np.array([[-1, 5], [65535, 65536]], dtype=np.int32))
    with h5py.File(path, "r") as f:
        darks, flats = f["/exchange/data_dark"][()], f["/exchange/data_white"][()]
    assert darks.dtype == np.uint16
    np.testing.assert_array_equal(darks[0], camera)
    np.testing.assert_array_equal(darks[1], [[1, 2], [3, 255]])
    np.testing.assert_array_equal(flats[0], [[0, 2], [3, 65535]])
    np.testing.assert_array_equal(flats[1], [[0, 5], [65535, 65535]])


def test_writer_errors_are_data_exchange_errors(tmp_path) -> None:
    with pytest.raises(DataExchangeError, match="unknown Data Exchange metadata"):
        DataExchangeWriter(tmp_path / "a.h5", shape=(2, 2), metadata={"energy": 25})
    with DataExchangeWriter(tmp_path / "b.h5", shape=(2, 2)) as w:
        with pytest.raises(DataExchangeError, match="theta_rad"):
            w.append("projection", np.zeros((2, 2)))
    with pytest.raises(ScanFileExistsError, match="never overwritten"):
        DataExchangeWriter(tmp_path / "b.h5", shape=(2, 2))
