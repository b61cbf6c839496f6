"""open_volume: every format round-trips a known array, voxel sizes from each format's
metadata, slabs read alone, and one clear error for each thing a user can get wrong."""

from __future__ import annotations

import warnings

import h5py
import numpy as np
import pytest
import tifffile
import zarr

from insitu.analysis.errors import AnalysisInputError, InputFileNotFoundError
from insitu.analysis.volumes import VoxelSizeWarning, check_finite, nan_rows, open_volume

SHAPE = (12, 20, 24)


def known(dtype) -> np.ndarray:
    rng = np.random.default_rng(7)
    values = rng.random(SHAPE) * (200 if np.dtype(dtype).kind in "ui" else 1.0)
    return values.astype(dtype)


def imagej(path, data, voxel_um=0.65, spacing=None, unit="micron", **kwargs) -> None:
    metadata = {"unit": unit, "axes": "ZYX"[-data.ndim :]}
    metadata["spacing"] = voxel_um if spacing is None else spacing
    tifffile.imwrite(
        path,
        data,
        imagej=True,
        resolution=(1 / voxel_um, 1 / voxel_um),
        metadata=metadata,
        **kwargs,
    )


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_imagej_tiff_round_trips_with_its_voxel_size(tmp_path, dtype) -> None:
    data = known(dtype)
    imagej(tmp_path / "v.tif", data)
    vol = open_volume(tmp_path / "v.tif")
    assert vol.shape == SHAPE and vol.dtype == data.dtype and vol.ndim == 3
    assert np.array_equal(vol[:], data)
    assert vol.voxel_um == pytest.approx(0.65) and vol.voxel_from == "metadata"
    assert vol.format == "tiff" and vol.attrs["unit"] == "micron"


@pytest.mark.parametrize("compression", [None, "zlib"])
@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.float32, np.float64])
def test_plain_multipage_tiff(tmp_path, dtype, compression) -> None:
    data = known(dtype)
    tifffile.imwrite(tmp_path / "v.tiff", data, compression=compression)
    vol = open_volume(tmp_path / "v.tiff")
    assert np.array_equal(vol[:], data) and vol.voxel_um is None
    assert open_volume(tmp_path / "v.tiff", voxel_um=2.5).voxel_um == 2.5


def test_folder_of_slices_in_natural_order(tmp_path) -> None:
    data = known(np.uint16)
    for z in range(SHAPE[0]):  # slice_2 must come before slice_10
        imagej(tmp_path / f"slice_{z}.tif", data[z], voxel_um=1.3, spacing=1.3)
    vol = open_volume(tmp_path)
    assert vol.format == "tiff-folder" and np.array_equal(vol[:], data)
    assert vol.voxel_um == pytest.approx(1.3)


def test_hdf5_found_named_and_voxel_sizes(tmp_path) -> None:
    data = known(np.float32)
    with h5py.File(tmp_path / "one.h5", "w") as f:
        f["/exchange/data"] = data
        f["/exchange/data"].attrs["voxel_um"] = 1.5
        f["/exchange/mask2d"] = data[0]
    vol = open_volume(tmp_path / "one.h5")
    assert np.array_equal(vol[:], data) and vol.voxel_um == 1.5 and vol.attrs["dataset"]
    with h5py.File(tmp_path / "two.hdf5", "w") as f:
        f["/recon"] = data
        f["/recon"].attrs.update(pixel_size=650.0, pixel_size_units="nm")
        f["/other/stack"] = data + 1
    vol = open_volume(tmp_path / "two.hdf5")  # the conventional name among two volumes
    assert np.array_equal(vol[:], data) and vol.voxel_um == pytest.approx(0.65)
    named = open_volume(tmp_path / "two.hdf5", dataset="other/stack")
    assert np.array_equal(named[:], data + 1)
    with h5py.File(tmp_path / "dx.hdf", "w") as f:
        f["/volume"] = data
        f["/measurement/instrument/detection_system/objective/resolution"] = 0.69
    assert open_volume(tmp_path / "dx.hdf").voxel_um == pytest.approx(0.69)


def test_npy_and_zarr(tmp_path) -> None:
    data = known(np.float32)
    np.save(tmp_path / "v.npy", data)
    vol = open_volume(tmp_path / "v.npy")
    assert np.array_equal(vol[:], data) and vol.voxel_um is None
    for key in ("voxel_um", "voxel_size_um"):  # the recon's attribute, and its old name
        store = zarr.open_array(tmp_path / f"{key}.zarr", mode="w", shape=SHAPE, dtype="f4")
        store[:] = data
        store.attrs[key] = 3.0
        vol = open_volume(tmp_path / f"{key}.zarr")
        assert np.array_equal(vol[:], data) and vol.voxel_um == 3.0


def test_explicit_voxel_size_wins_with_a_warning(tmp_path) -> None:
    imagej(tmp_path / "v.tif", known(np.uint8), voxel_um=0.65)
    with pytest.warns(VoxelSizeWarning, match="differs"):
        assert open_volume(tmp_path / "v.tif", voxel_um=0.7).voxel_um == 0.7
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same size: no warning
        assert open_volume(tmp_path / "v.tif", voxel_um=0.65).voxel_from == "explicit"


@pytest.mark.parametrize(
    "key",
    [
        slice(3, 7),
        5,
        -1,
        (slice(2, 9), slice(4, 11), slice(None, None, 2)),
        (slice(None), 3),
        (Ellipsis, 5),
        slice(None, None, 3),
        [4, 1, 4],
        (slice(1, 3), slice(-5, None), slice(2, 6)),
        slice(8, 2),
    ],
)
def test_slicing_is_numpy_slicing(tmp_path, key) -> None:
    data = known(np.float32)
    np.save(tmp_path / "v.npy", data)
    imagej(tmp_path / "v.tif", data, compression="zlib")
    for name in ("v.npy", "v.tif"):
        got = open_volume(tmp_path / name)[key]
        assert got.shape == data[key].shape and np.array_equal(got, data[key]), name


def test_a_slab_reads_only_its_pages(tmp_path, monkeypatch) -> None:
    data = known(np.float32)
    imagej(tmp_path / "packed.tif", data, compression="zlib")  # no memory map: page by page
    read: list[int] = []
    original = tifffile.TiffFile.asarray

    def spy(self, key=None, **kwargs):
        read.extend(key)
        return original(self, key=key, **kwargs)

    monkeypatch.setattr(tifffile.TiffFile, "asarray", spy)
    vol = open_volume(tmp_path / "packed.tif")
    assert np.array_equal(vol[4:7], data[4:7])
    assert read == [4, 5, 6]
    # Uncompressed and contiguous: a memory map, of which only the slab is copied.
    imagej(tmp_path / "flat.tif", data)
    flat = open_volume(tmp_path / "flat.tif")
    assert isinstance(flat._reader._data, np.memmap)
    slab = flat[4:7]
    assert not isinstance(slab, np.memmap) and slab.flags.writeable


def test_a_slab_of_a_folder_opens_only_its_files(tmp_path, monkeypatch) -> None:
    data = known(np.uint8)
    for z in range(SHAPE[0]):
        tifffile.imwrite(tmp_path / f"{z:04d}.tif", data[z])
    vol = open_volume(tmp_path, voxel_um=1.0)
    opened: list[str] = []
    original = tifffile.imread

    def spy(files, **kwargs):
        opened.append(files.name)
        return original(files, **kwargs)

    monkeypatch.setattr(tifffile, "imread", spy)
    assert np.array_equal(vol[2:4], data[2:4])
    assert opened == ["0002.tif", "0003.tif"]


def test_errors_say_the_fix(tmp_path) -> None:
    data = known(np.float32)
    with pytest.raises(InputFileNotFoundError, match="no volume at"):
        open_volume(tmp_path / "missing.tif")
    (tmp_path / "v.txt").write_text("1 2 3")
    with pytest.raises(AnalysisInputError, match="not a volume format"):
        open_volume(tmp_path / "v.txt")
    with h5py.File(tmp_path / "two.h5", "w") as f:
        f["/data"], f["/volume"] = data, data
    with pytest.raises(AnalysisInputError, match=r"several volumes \(/data, /volume\).*dataset"):
        open_volume(tmp_path / "two.h5")
    with h5py.File(tmp_path / "scan.h5", "w") as f:
        f["/exchange/data"], f["/exchange/data_white"] = data, data
    with pytest.raises(AnalysisInputError, match="insitu recon"):
        open_volume(tmp_path / "scan.h5")
    imagej(tmp_path / "ani.tif", data, voxel_um=0.7, spacing=1.4)
    with pytest.raises(AnalysisInputError, match="anisotropic voxels"):
        open_volume(tmp_path / "ani.tif")
    imagej(tmp_path / "flat.tif", data[0])
    with pytest.raises(AnalysisInputError, match="one slice is not a volume"):
        open_volume(tmp_path / "flat.tif")
    np.save(tmp_path / "flat.npy", data[0])
    with pytest.raises(AnalysisInputError, match="one slice is not a volume"):
        open_volume(tmp_path / "flat.npy")
    with pytest.raises(AnalysisInputError, match="applies to HDF5 and Zarr"):
        open_volume(tmp_path / "ani.tif", dataset="/data")
    folder = tmp_path / "slices"
    folder.mkdir()
    for z in range(4):
        tifffile.imwrite(folder / f"s{z}.tif", data[z] if z != 2 else data[z, :5])
    with pytest.raises(AnalysisInputError, match=r"s2\.tif is \(5, 24\)"):
        open_volume(folder)


def test_nan_rows_are_counted_and_refused(tmp_path) -> None:
    data = known(np.float32)
    data[3:5, :2] = np.nan
    data[9, 0, 0] = np.inf
    np.save(tmp_path / "v.npy", data)
    vol = open_volume(tmp_path / "v.npy")
    assert nan_rows(vol, slab_rows=4) == {3: 2 * SHAPE[2], 4: 2 * SHAPE[2], 9: 1}
    with pytest.raises(AnalysisInputError, match=r"scan: rows 3–4, 9 \(of 12\) hold 97"):
        check_finite(vol, name="scan")
    assert nan_rows(known(np.uint8)) == {}
