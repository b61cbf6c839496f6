"""Scan files that cannot lie: Fletcher32 per chunk, corrupted chunks named, missing frames."""

from __future__ import annotations

import math
import warnings

import h5py
import numpy as np
import pytest

from insitu.instruments.dxchange import (
    CHUNK_ROWS,
    DARK_PATH,
    DATA_PATH,
    FLAT_PATH,
    THETA_PATH,
    DataExchangeError,
    DataExchangeWriter,
    MissingFramesWarning,
    ScanFileCorruptError,
    UnverifiedScanWarning,
    _open_for_writing,
    read_data_exchange,
    read_references,
    read_rows,
    read_scan_info,
)
from insitu.instruments.errors import InstrumentError

N, ROWS, COLS = 12, 40, 24


def write_scan(path, angles_rad=None, metadata=None) -> None:
    """A small scan written by the camera's writer (noisy frames, so no chunk repeats)."""
    rng = np.random.default_rng(1)
    angles = np.arange(N) * math.pi / N if angles_rad is None else angles_rad
    with DataExchangeWriter(path, shape=(ROWS, COLS), metadata=metadata) as w:
        for _ in range(2):
            w.append("dark", rng.normal(100, 2, (ROWS, COLS)))
            w.append("flat", rng.normal(4000, 60, (ROWS, COLS)))
        for angle in angles:
            w.append("projection", rng.normal(2000, 40, (ROWS, COLS)), theta_rad=float(angle))


def corrupt_chunk(path, dataset: str, coords: tuple[int, int, int]) -> None:
    """Overwrite bytes in the middle of one chunk, as a bad disk or copy would."""
    with h5py.File(path, "r") as f:
        info = f[dataset].id.get_chunk_info_by_coord(coords)
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset + info.size // 2)
        fh.write(b"\xde\xad\xbe\xef")


def test_writer_checksums_every_frame_dataset_in_row_bands(tmp_path) -> None:
    path = tmp_path / "scan.h5"
    write_scan(path)
    with h5py.File(path, "r") as f:
        for name in (DATA_PATH, FLAT_PATH, DARK_PATH):
            assert f[name].fletcher32, name
            assert f[name].chunks == (1, CHUNK_ROWS, COLS)
        assert f[THETA_PATH].fletcher32
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a verified, complete scan: nothing to note
        info = read_scan_info(path)
    assert info.verified and info.unverified == () and info.notes == ()


@pytest.mark.parametrize(
    ("dataset", "coords", "where"),
    [
        (
            DATA_PATH,
            (5, 16, 0),
            "frame 5, rows 16–31",
        ),
        (
            FLAT_PATH,
            (1, 0, 0),
            "frame 1, rows 0–15",
        ),
        (
            DARK_PATH,
            (0, 32, 0),
            "frame 0, rows 32–39",
        ),
    ],
)
def test_a_corrupted_chunk_is_refused_naming_file_dataset_and_frame(
    tmp_path, dataset, coords, where
) -> None:
    path = tmp_path / "scan.h5"
    write_scan(path)
    corrupt_chunk(path, dataset, coords)
    with pytest.raises(ScanFileCorruptError) as err:
        read_rows(path, 0, ROWS)
    message = str(err.value)
    where = f"{dataset} fails its Fletcher32 checksum at {where}:"
    assert message.startswith(f"{path}: {where}")
    assert "re-acquire the scan or restore the file" in message
    assert isinstance(err.value, InstrumentError | DataExchangeError)  # the CLI's exit 2
    with pytest.raises(ScanFileCorruptError, match=where):
        read_data_exchange(path)
    # Rows outside the damaged band are still verified and read.
    other = (0, 16) if coords[1] else (16, 32)
    assert read_rows(path, *other)[0].shape == (N, 16, COLS)
    if dataset != DATA_PATH:
        with pytest.raises(ScanFileCorruptError, match=where):
            read_references(path, 0, ROWS)


def test_a_file_without_checksums_reads_with_a_note(tmp_path) -> None:
    path = tmp_path / "old.h5"
    with h5py.File(path, "w") as f:  # as the writer did before, or TomoPy users do
        f[DATA_PATH] = np.full((N, ROWS, COLS), 2000, dtype=np.uint16)
        f[FLAT_PATH] = np.full((2, ROWS, COLS), 4000, dtype=np.uint16)
        f[DARK_PATH] = np.full((2, ROWS, COLS), 100, dtype=np.uint16)
        f[THETA_PATH] = np.arange(N) * 180.0 / N
    with pytest.warns(UnverifiedScanWarning, match="carry no checksums.*cannot be verified"):
        info = read_scan_info(path)
    assert not info.verified
    assert info.unverified == (DATA_PATH, FLAT_PATH, DARK_PATH)
    assert len(info.notes) == 1 and "cannot be verified" in info.notes[0]
    data, flats, darks = read_rows(path, 0, 8)
    assert data.shape == (N, 8, COLS) and flats.shape == darks.shape == (2, 8, COLS)


def test_dropped_frames_are_flagged_from_the_angles(tmp_path) -> None:
    path = tmp_path / "dropped.h5"
    angles = np.delete(np.arange(N) * math.pi / N, [4, 5])  # two frames never arrived
    write_scan(path, angles_rad=angles)
    with pytest.warns(MissingFramesWarning, match=r"~2 between 45\.000° and 90\.000°"):
        info = read_scan_info(path)
    assert info.n_angles == N - 2 and len(info.notes) == 1
    assert "dropped frames" in info.notes[0]


def test_fewer_projections_than_the_scan_recorded_are_flagged(tmp_path) -> None:
    path = tmp_path / "short.h5"
    write_scan(path, metadata={"n_projections": N + 3})
    with pytest.warns(MissingFramesWarning, match=f"{N} projections of the {N + 3}.*3 missing"):
        read_scan_info(path)


@pytest.mark.parametrize("kind", ["even", "golden"])
def test_complete_scans_are_not_flagged(tmp_path, kind) -> None:
    path = tmp_path / f"{kind}.h5"
    if kind == "even":
        angles = np.arange(N) * math.pi / N
    else:  # golden-angle: uneven gaps (up to φ steps), no frame missing
        angles = np.mod(np.arange(N) * math.pi * (math.sqrt(5) - 1) / 2, math.pi)
    write_scan(path, angles_rad=angles)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_scan_info(path).notes == ()


def test_more_angles_than_projections_is_refused_as_missing_projections(tmp_path) -> None:
    path = tmp_path / "scan.h5"
    write_scan(path)
    with h5py.File(path, "a") as f:
        del f[DATA_PATH]
        f.create_dataset(DATA_PATH, data=np.full((N - 1, ROWS, COLS), 2000, np.uint16))
    with pytest.raises(
        DataExchangeError,
        match=f"{N} angles for {N - 1} projections "
        r"\(projections are missing\)",
    ):
        read_scan_info(path)


def test_a_scan_being_written_is_read_live_and_a_closed_one_plainly(tmp_path) -> None:
    path = tmp_path / "live.h5"
    with DataExchangeWriter(path, shape=(ROWS, COLS)) as w:
        w.append("dark", np.full((ROWS, COLS), 100))
        w.append("flat", np.full((ROWS, COLS), 4000))
        w.append("projection", np.full((ROWS, COLS), 2000), theta_rad=0.0)
        assert _open_for_writing(path)  # SWMR: the camera is still appending
        assert read_scan_info(path).n_angles == 1
        w.append("projection", np.full((ROWS, COLS), 2100), theta_rad=0.1)
        assert read_rows(path, 0, 4)[0][:, 0, 0].tolist() == [2000, 2100]
    # Closed: read without SWMR, whose retries would stall on a damaged metadata block.
    assert not _open_for_writing(path)
    assert read_scan_info(path).n_angles == 2


# --- metadata that lies (found by benchmarks/bench_fuzz_readers.py) ---------------------------
def _set(path, key_path: str, value) -> None:
    with h5py.File(path, "r+") as f:
        if key_path in f:
            del f[key_path]
        f[key_path] = value


def test_a_size_or_energy_that_is_not_a_number_is_refused_naming_it(tmp_path) -> None:
    path = tmp_path / "scan.h5"
    write_scan(path)
    _set(path, "/measurement/instrument/monochromator/energy", np.bytes_("25 keV"))
    info = read_scan_info(path)
    with pytest.raises(ScanFileCorruptError, match=r"energy_keV.*'25 keV'.*not a number"):
        _ = info.energy_keV
    _set(path, "/measurement/instrument/detector/pixel_size_x", np.array([], dtype=float))
    with pytest.raises(ScanFileCorruptError, match="pixel_size_um"):
        _ = read_scan_info(path).pixel_size_um


@pytest.mark.parametrize("planned", [math.nan, math.inf, 1e300])
def test_a_planned_projection_count_that_is_not_finite_is_no_crash(tmp_path, planned) -> None:
    path = tmp_path / "scan.h5"
    write_scan(path)
    _set(path, "/process/acquisition/rotation/num_angles", planned)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert read_scan_info(path).n_angles == N


def test_angles_that_are_not_numbers_are_refused(tmp_path) -> None:
    path = tmp_path / "scan.h5"
    write_scan(path)
    _set(path, THETA_PATH, np.array([b"a"] * N))
    with pytest.raises(ScanFileCorruptError, match=r"angles.*not numbers"):
        read_data_exchange(path)


def test_a_file_cut_inside_its_superblock_is_not_open_for_writing(tmp_path) -> None:
    path = tmp_path / "cut.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n\x02")  # the signature, then nothing
    assert _open_for_writing(path) is False
    with pytest.raises(DataExchangeError):
        read_scan_info(path)


def test_damaged_consistency_flags_do_not_read_as_a_writer(tmp_path) -> None:
    # Found by benchmarks/bench_fuzz_readers.py: flags 0xff made the reader open the file in
    # SWMR mode, where HDF5 retries its metadata reads for minutes.
    path = tmp_path / "flags.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n\x02\x08\x08\xff" + bytes(64))
    assert _open_for_writing(path) is False
    path.write_bytes(b"\x89HDF\r\n\x1a\n\x02\x08\x08\x05" + bytes(64))
    assert _open_for_writing(path) is True
