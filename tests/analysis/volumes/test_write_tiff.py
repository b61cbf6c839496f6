"""write_tiff: one ImageJ hyperstack with the voxel size, 32-bit values unchanged, 8-bit on
the study threshold's bins, written slab by slab."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from insitu.analysis.errors import AnalysisInputError, OutputExistsError
from insitu.analysis.microstructure.segment import StudyThreshold, grey_histogram
from insitu.analysis.volumes import grey_levels, open_volume, write_tiff
from insitu.analysis.volumes import write as write_module


def volume() -> np.ndarray:
    return np.random.default_rng(3).normal(0.002, 0.001, (10, 16, 18)).astype(np.float32)


class Counted:
    """An array that records the largest number of rows read at once."""

    def __init__(self, data: np.ndarray) -> None:
        self.data, self.shape, self.dtype, self.most = data, data.shape, data.dtype, 0

    def __getitem__(self, key):
        out = self.data[key]
        self.most = max(self.most, len(out))
        return out


def test_32_bit_is_one_imagej_hyperstack_with_the_scale(tmp_path) -> None:
    data = volume()
    summary = write_tiff(data, tmp_path / "v.tif", bits=32, voxel_um=0.65)
    assert summary["shape"] == list(data.shape) and summary["grey_range"] is None
    with tifffile.TiffFile(tmp_path / "v.tif") as tif:
        assert tif.is_imagej and len(tif.series) == 1 and len(tif.pages) == data.shape[0]
        meta = tif.imagej_metadata
        assert meta["slices"] == data.shape[0] and meta["images"] == data.shape[0]
        assert meta["spacing"] == 0.65 and meta["unit"] == "micron"
        num, den = tif.pages[0].tags["XResolution"].value
        assert den / num == pytest.approx(0.65)
        assert np.array_equal(tif.asarray(), data)
    back = open_volume(tmp_path / "v.tif")
    assert back.voxel_um == pytest.approx(0.65) and np.array_equal(back[:], data)


def test_8_bit_levels_are_the_study_histogram_bins(tmp_path) -> None:
    data = volume()
    grey_range = (float(data.min()), float(data.max()) * 1.0001)
    threshold = StudyThreshold.from_volumes([data], grey_range=grey_range)
    write_tiff(
        data,
        tmp_path / "v8.tif",
        bits=8,
        grey_range=grey_range,
        voxel_um=3.0,
        threshold_level=threshold.level,
    )
    # Fiji's view: the levels as stored.
    levels = tifffile.imread(tmp_path / "v8.tif")
    assert levels.dtype == np.uint8
    # Fiji's histogram of the file is the study's, so its threshold is the study's.
    histogram = grey_histogram(levels, grey_range=(0, 256))
    assert np.array_equal(histogram, grey_histogram(data, grey_range=grey_range))
    assert StudyThreshold.from_volumes([levels]).level == threshold.level
    # ImageJ's "grey > level" on the file is the analysis's "grey >= value".
    assert np.array_equal(levels > threshold.level, data >= threshold.value)
    # The scaling is recorded: in ImageJ's Info and as keys of the description.
    eight = open_volume(tmp_path / "v8.tif")
    assert eight.voxel_um == 3.0
    assert eight.attrs["grey_min"] == grey_range[0] and eight.attrs["grey_max"] == grey_range[1]
    assert f"level={threshold.level}" in eight.attrs["Info"]
    assert "grey_min=" in eight.attrs["Info"]
    # So the file reads back as grey values: each level's bin centre, within half a bin of
    # the original, and in the same bin of the study histogram.
    width = (grey_range[1] - grey_range[0]) / 256
    assert eight.dtype == np.float32 and "grey_min=" in eight.attrs["grey_levels"]
    assert np.abs(eight[:] - data).max() <= 0.5 * width * (1 + 1e-5)
    assert np.array_equal(grey_histogram(eight, grey_range=grey_range), histogram)


def test_8_bit_files_from_elsewhere_read_as_levels(tmp_path) -> None:
    """Only a recorded, finite range turns levels into grey values: a plain 8-bit stack (or
    one whose range is nonsense) reads as its levels."""
    data = (np.arange(4 * 5 * 6) % 256).astype(np.uint8).reshape(4, 5, 6)
    tifffile.imwrite(tmp_path / "plain.tif", data, imagej=True)
    tifffile.imwrite(
        tmp_path / "odd.tif", data, imagej=True, metadata={"grey_min": 2.0, "grey_max": 1.0}
    )
    for name in ("plain.tif", "odd.tif"):
        vol = open_volume(tmp_path / name)
        assert vol.dtype == np.uint8 and np.array_equal(vol[:], data)


def test_written_slab_by_slab(tmp_path, monkeypatch) -> None:
    data = Counted(volume())
    monkeypatch.setattr(write_module, "_SLAB_BYTES", 3 * 16 * 18 * 8)  # three rows
    rows: list[int] = []
    write_tiff(data, tmp_path / "v.tif", bits=8, voxel_um=1.0, on_rows=rows.append)
    assert data.most == 3 and sum(rows) == 10 and len(rows) == 4
    assert not (tmp_path / "v.tif.partial").exists()


def test_grey_levels_clamp_and_nan() -> None:
    levels = grey_levels(np.array([-1.0, 0.0, 0.5, 0.999, 1.0, 7.0, np.nan]), (0.0, 1.0))
    assert levels.tolist() == [0, 0, 128, 255, 255, 255, 0]


def test_errors(tmp_path) -> None:
    data = volume()
    write_tiff(data, tmp_path / "v.tif", voxel_um=1.0)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        write_tiff(data, tmp_path / "v.tif", voxel_um=1.0)
    with pytest.raises(AnalysisInputError, match="8 or 32"):
        write_tiff(data, tmp_path / "w.tif", bits=16)
    with pytest.raises(AnalysisInputError, match="constant"):
        write_tiff(np.zeros((3, 4, 4)), tmp_path / "w.tif", bits=8)
