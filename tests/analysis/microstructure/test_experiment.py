"""The experiment's inputs: the voxel edge read from a reconstructed volume's attributes."""

from __future__ import annotations

import pytest

from insitu.analysis.microstructure.experiment import voxel_um_from_attrs


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        ({"voxel_um": 0.69}, 0.69),
        # Volumes reconstructed before the rename are still read.
        ({"voxel_size_um": 0.7}, 0.7),
        ({"voxel_um": 3.0, "voxel_size_um": 0.7}, 3.0),
        ({"center": 64.0}, None),
    ],
)
def test_voxel_um_is_read_under_its_name_and_its_old_name(attrs, expected) -> None:
    assert voxel_um_from_attrs(attrs) == expected


def test_zarr_attributes_of_an_old_volume(tmp_path) -> None:
    zarr = pytest.importorskip("zarr")
    volume = zarr.open_array(str(tmp_path / "old.zarr"), mode="w", shape=(2, 2, 2), dtype="f4")
    volume.attrs["voxel_size_um"] = 0.69
    assert voxel_um_from_attrs(zarr.open_array(str(tmp_path / "old.zarr"), mode="r").attrs) == 0.69
