"""Damaged files that ``benchmarks/bench_fuzz_readers.py`` found crashing (or hanging) the
readers of measured files and volumes: each is now refused with AnalysisInputError.

Each input here is a valid file written by its own library, damaged the way the fuzzer's
crashing case was (a byte, a count, a pointer), so the test names what is wrong with it.
Before the fixes these raised galvani's, pyarrow's, tifffile's, h5py's, numpy's or Zarr's own
exceptions (or read a TIFF for ever), which the command line reports as internal errors.
"""

from __future__ import annotations

import json
import struct

import h5py
import numpy as np
import pandas as pd
import pytest
import tifffile
import zarr

from insitu.analysis.electrochem.readers import read_measurement
from insitu.analysis.errors import AnalysisInputError
from insitu.analysis.volumes import open_volume
from insitu.analysis.volumes.hdf5 import _DatasetReader


# --- EC-Lab .mpr (galvani) ----------------------------------------------------------------------
def mpr_bytes(*, col_ids=(4, 6, 8), n=3, claimed=None, reserved=0) -> bytes:
    """A minimal .mpr galvani reads (as tests/analysis/electrochem/test_readers.py writes one):
    ``claimed`` points in the header instead of ``n``, ``reserved`` in a header byte that
    must be zero."""
    biologic = pytest.importorskip("galvani.BioLogic")
    dtype = np.dtype([("time/s", "<f8"), ("Ewe/V", "<f4"), ("I/mA", "<f4")])
    records = np.zeros(n, dtype=dtype)
    records["time/s"] = np.arange(n) * 10.0
    head = np.uint32(n if claimed is None else claimed).tobytes() + bytes([len(col_ids)])
    head += np.array(col_ids, dtype="<u2").tobytes()
    head = head.ljust(405, b"\x00")
    head = head[:300] + bytes([reserved]) + head[301:]
    data = head + records.tobytes()

    def module(short: bytes, long: bytes, version: int, payload: bytes) -> bytes:
        hdr = np.zeros(1, dtype=biologic.VMPmodule_hdr_v1)
        hdr["shortname"], hdr["longname"] = short.ljust(10), long.ljust(25)
        hdr["length"], hdr["version"], hdr["date"] = len(payload), version, b"03/14/24"
        return b"MODULE" + hdr.tobytes() + payload

    return (
        biologic.MPR_MAGIC
        + module(b"VMP Set   ", b"VMP settings", 0, bytes(64))
        + module(b"VMP data  ", b"VMP data", 2, data)
    )


def test_the_mpr_builder_makes_a_file_the_reader_reads(tmp_path):
    path = tmp_path / "ok.mpr"
    path.write_bytes(mpr_bytes())
    data = read_measurement(path)
    assert list(data["time_s"]) == [0.0, 10.0, 20.0]


@pytest.mark.parametrize(
    ("damage", "raised_before"),
    [
        (lambda: b"X" + mpr_bytes()[1:], "ValueError: invalid magic"),
        (lambda: mpr_bytes()[:-7], "OSError: unexpected end of file"),
        (lambda: mpr_bytes(reserved=1), "AssertionError: reserved header bytes"),
        (lambda: mpr_bytes(claimed=7), "AssertionError: point count"),
        (lambda: mpr_bytes(col_ids=(4, 6, 9999)), "NotImplementedError: unknown column"),
        (lambda: mpr_bytes()[:200], "OSError: truncated module header"),
    ],
    ids=["magic", "truncated", "reserved", "count", "column", "header"],
)
def test_damaged_mpr_is_refused(tmp_path, damage, raised_before):
    path = tmp_path / "damaged.mpr"
    path.write_bytes(damage())
    with pytest.raises(AnalysisInputError, match=r"damaged\.mpr"):
        read_measurement(path)


# --- Parquet --------------------------------------------------------------------------------------
def parquet_bytes() -> bytes:
    frame = pd.DataFrame({"time_s": [0.0, 1.0], "voltage_V": [0.1, 0.2], "current_A": [1e-4] * 2})
    path_bytes = frame.to_parquet(index=False)
    assert isinstance(path_bytes, bytes)
    return path_bytes


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],  # ArrowInvalid before
        lambda data: b"PAR1" + bytes(64) + b"PAR1",  # OSError before
        lambda data: data[:-12] + b"\xff\xff\x00\x00" + data[-8:],  # footer length: OSError
    ],
    ids=["truncated", "empty-footer", "footer-length"],
)
def test_damaged_parquet_is_refused(tmp_path, damage):
    path = tmp_path / "damaged.parquet"
    path.write_bytes(damage(parquet_bytes()))
    with pytest.raises(AnalysisInputError, match=r"damaged\.parquet"):
        read_measurement(path)


# --- TIFF -----------------------------------------------------------------------------------------
def stack(tmp_path, name="v.tif", **options):
    data = (np.arange(2 * 4 * 5) % 200).astype(np.uint16).reshape(2, 4, 5)
    path = tmp_path / name
    tifffile.imwrite(path, data, **options)
    return path, data


def patch(path, offset: int, new: bytes) -> None:
    data = bytearray(path.read_bytes())
    data[offset : offset + len(new)] = new
    path.write_bytes(bytes(data))


@pytest.mark.timeout(60)
def test_tiff_whose_page_points_to_itself_is_refused_not_read_for_ever(tmp_path):
    # The fuzzer's case: the second page's "next page" offset is its own. tifffile checks
    # for a loop only at the 100th page of a chain walked at once, so reading the pages one
    # by one (its series detection for pages of different shapes and no description) went
    # on for 2**32 pages.
    path = tmp_path / "v.tif"
    tifffile.imwrite(path, np.zeros((4, 5), np.uint8), metadata=None)
    tifffile.imwrite(path, np.zeros((3, 5), np.uint8), metadata=None, append=True)
    with tifffile.TiffFile(path) as tif:
        last = tif.pages[1]
        pointer = last.offset + 2 + 12 * len(last.tags)
    patch(path, pointer, struct.pack("<I", last.offset))
    with pytest.raises(AnalysisInputError, match="loop in the TIFF's chain of pages"):
        open_volume(path)


def test_tiff_with_a_damaged_shape_description_is_refused(tmp_path):
    # tifffile's own description '{"shape": [2, 4, 5]}', one character off: ValueError before.
    path, _ = stack(tmp_path)
    text = path.read_bytes()
    at = text.index(b'{"shape": [2, 4, 5]}')
    patch(path, at + len(b'{"shape": [2, 4, 5]') - 1, b"x")
    with pytest.raises(AnalysisInputError, match="not a readable TIFF file"):
        open_volume(path)


def test_tiff_page_that_does_not_decompress_is_refused_when_read(tmp_path):
    path, data = stack(tmp_path, compression="zlib")
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[1]
        offset, count = page.dataoffsets[0], page.databytecounts[0]
    patch(path, offset, b"\xff" * count)
    volume = open_volume(path)  # the pages are decoded when read
    np.testing.assert_array_equal(volume[0], data[0])
    # zlib.error before
    with pytest.raises(AnalysisInputError, match="has pages 0–1 that cannot be decoded"):
        volume[:]
    volume.close()


def test_imagej_spacing_that_is_not_a_number_is_no_calibration(tmp_path):
    # ImageJ's "spacing=0.65" garbled to "spacing=a.65": ValueError from float() before.
    path, _ = stack(
        tmp_path,
        imagej=True,
        resolution=(1 / 0.65, 1 / 0.65),
        metadata={"unit": "micron", "spacing": 0.65, "axes": "ZYX"},
    )
    patch(path, path.read_bytes().index(b"spacing=0.65") + len(b"spacing="), b"a")
    assert open_volume(path).voxel_um is None
    assert open_volume(path, voxel_um=0.65).voxel_um == 0.65


def test_folder_with_a_slice_that_does_not_decompress_is_refused_when_read(tmp_path):
    folder = tmp_path / "slices"
    folder.mkdir()
    for k in range(3):
        tifffile.imwrite(folder / f"s{k}.tif", np.full((4, 5), k, np.uint8), compression="zlib")
    with tifffile.TiffFile(folder / "s2.tif") as tif:
        offset, count = tif.pages[0].dataoffsets[0], tif.pages[0].databytecounts[0]
    patch(folder / "s2.tif", offset, b"\xff" * count)
    volume = open_volume(folder)
    assert volume[1].max() == 1
    with pytest.raises(AnalysisInputError, match=r"s2\.tif cannot be decoded"):  # zlib.error before
        volume[2]


# --- HDF5 -----------------------------------------------------------------------------------------
def h5_volume(path, **dataset_options):
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=np.arange(24, dtype="f4").reshape(2, 3, 4), **dataset_options)
    return path


def test_hdf5_with_a_damaged_superblock_is_refused(tmp_path):
    # The superblock's group entry damaged (byte 16): the file opens, and walking it raised
    # h5py's RuntimeError before.
    path = h5_volume(tmp_path / "v.h5")
    patch(path, 16, b"\xff")
    with pytest.raises(AnalysisInputError, match="not a readable HDF5 file"):
        open_volume(path)


def test_hdf5_chunk_that_does_not_decompress_is_refused_when_read(tmp_path):
    path = h5_volume(tmp_path / "v.h5", chunks=(1, 3, 4), compression="gzip")
    with h5py.File(path, "r") as f:
        info = f["data"].id.get_chunk_info(1)
    patch(path, info.byte_offset, b"\xff" * info.size)
    volume = open_volume(path)
    np.testing.assert_array_equal(volume[0], np.arange(12, dtype="f4").reshape(3, 4))
    with pytest.raises(AnalysisInputError, match=r"rows 1–1 of .*v\.h5/data"):  # OSError before
        volume[1]
    volume.close()


@pytest.mark.parametrize(
    "resolution",
    [np.array([]), np.array([b"0.65 um"])],
    ids=["empty", "text"],  # IndexError and ValueError before
)
def test_data_exchange_resolution_that_is_not_a_number_is_no_voxel_size(tmp_path, resolution):
    path = h5_volume(tmp_path / "v.h5")
    with h5py.File(path, "a") as f:
        f["/measurement/instrument/detection_system/objective/resolution"] = resolution
    volume = open_volume(path)
    assert volume.voxel_um is None and volume.shape == (2, 3, 4)
    volume.close()


def test_hdf5_claiming_more_voxels_than_an_array_can_hold_is_refused(tmp_path):
    # Unallocated chunks cost nothing on disk; numpy's product of this shape wraps to 0.
    path = tmp_path / "huge.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", shape=(2**31, 2**31, 4), chunks=(1, 1, 4), dtype="u1")
    with pytest.raises(AnalysisInputError, match="more voxels than any array can hold"):
        open_volume(path)


# --- .npy -----------------------------------------------------------------------------------------
def npy_bytes(header: str) -> bytes:
    text = header.encode("latin-1")
    text += b" " * ((64 - (10 + len(text) + 1) % 64) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text + bytes(96)


@pytest.mark.parametrize(
    "content",
    [
        b"",  # EOFError before
        npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4), "),  # TokenError
        npy_bytes("{'descr': '<i8', 'fortran_order': False, 'shape': (4, 8, -1), }"),  # Overflow
    ],
    ids=["empty", "unclosed-header", "negative-shape"],
)
def test_damaged_npy_is_refused(tmp_path, content):
    path = tmp_path / "v.npy"
    path.write_bytes(content)
    with pytest.raises(AnalysisInputError, match=r"v\.npy"):
        open_volume(path)


def test_npy_builder_makes_a_file_numpy_reads(tmp_path):
    path = tmp_path / "v.npy"
    path.write_bytes(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4), }"))
    assert open_volume(path).shape == (2, 3, 4)


# --- Zarr -----------------------------------------------------------------------------------------
def zarr_volume(path, **options):
    array = zarr.create_array(store=str(path), shape=(4, 3, 5), chunks=(2, 3, 5), dtype="f4")
    array[...] = np.arange(60, dtype="f4").reshape(4, 3, 5)
    return path


def test_zarr_chunk_that_does_not_decompress_is_refused_when_read(tmp_path):
    path = zarr_volume(tmp_path / "v.zarr")
    chunk = path / "c" / "1" / "0" / "0"
    chunk.write_bytes(b"\xff" * chunk.stat().st_size)
    volume = open_volume(path)
    assert volume[0].shape == (3, 5)
    with pytest.raises(AnalysisInputError, match=r"rows 2–2 of .*v\.zarr"):  # RuntimeError before
        volume[2]


def test_zarr_chunk_that_claims_a_huge_size_is_refused_not_a_memory_error(tmp_path):
    # The fuzzer's chunk: a zstd frame whose header claims ~1.7e19 decompressed bytes for a
    # 4-byte chunk; the codec allocates them first (MemoryError before).
    path = tmp_path / "v.zarr"
    array = zarr.create_array(
        store=str(path),
        shape=(1, 1, 3),
        chunks=(1, 1, 1),
        dtype="f4",
        compressors=zarr.codecs.ZstdCodec(level=0),
    )
    array[...] = 1.0
    (path / "c" / "0" / "0" / "1").write_bytes(
        bytes.fromhex("28b52ffdd021a4703cc1f2e62004210000b7edad41")
    )
    volume = open_volume(path)
    with pytest.raises(AnalysisInputError, match=r"rows 0–0 of .*v\.zarr cannot be read"):
        volume[:]


class _FailingStore:
    """An array whose every read raises MemoryError, chunked as given."""

    def __init__(self, shape, chunks):
        self.shape, self.chunks, self.dtype = shape, chunks, np.dtype("f4")

    def __getitem__(self, key):
        raise MemoryError


def test_memory_error_decoding_big_chunks_is_not_blamed_on_the_file():
    whole = (slice(None), slice(None))
    small = _DatasetReader(_FailingStore((8, 64, 64), (2, 64, 64)), "small")
    with pytest.raises(AnalysisInputError, match="rows 0–0 of small cannot be read"):
        small.read(0, 1, whole)
    big = _DatasetReader(_FailingStore((8, 4096, 4096), (4, 4096, 4096)), "big")  # 256 MiB
    with pytest.raises(MemoryError):
        big.read(0, 1, whole)


def test_zarr_group_with_a_damaged_member_is_refused(tmp_path):
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    group.create_array("vol", shape=(2, 3, 4), dtype="f4")
    (tmp_path / "g.zarr" / "vol" / "zarr.json").write_text('{"zarr_format": 3, "node_type": ')
    with pytest.raises(AnalysisInputError, match="not a readable Zarr store"):  # JSONDecodeError
        open_volume(tmp_path / "g.zarr")


def test_zarr_claiming_more_rows_than_an_array_can_hold_is_refused(tmp_path):
    # Zarr looked for the chunk of the last of 10**30 rows for ever.
    path = zarr_volume(tmp_path / "v.zarr")
    meta = json.loads((path / "zarr.json").read_text())
    meta["shape"][0] = 10**30
    (path / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(AnalysisInputError, match="more voxels than any array can hold"):
        open_volume(path)
