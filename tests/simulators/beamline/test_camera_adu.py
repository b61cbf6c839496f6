"""The camera records a source's own ADU frames as it records its per-second counts."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from bluesky import RunEngine

from insitu.protocols.plans.tomo import tomo_scan
from insitu.simulators.beamline.devices import sim_tomo_bench
from insitu.simulators.clock import SimClock
from insitu.simulators.imaging.frame_source import PelletFrameSource

N = 8
DATASETS = ("/exchange/data", "/exchange/data_white", "/exchange/data_dark")


def _scan(frame_source, folder, exposure_s: float, shape) -> dict[str, np.ndarray]:
    """A step scan of N projections (2 darks, 2 flats each side); the file's frames."""
    bench = sim_tomo_bench(
        frame_source, clock=SimClock(speedup=1e4), path=folder, shape=shape, shutter_time_s=0.01
    )
    RunEngine({})(
        tomo_scan(
            bench.camera,
            bench.stage,
            bench.shutter,
            n_projections=N,
            exposure_s=exposure_s,
            n_darks=2,
            n_flats=2,
        )
    )
    (path,) = folder.glob("*.h5")
    with h5py.File(path) as f:
        return {name: f[name][()] for name in DATASETS}


class _CountedSource(PelletFrameSource):
    """A pellet source that counts the frames asked for per second of beam."""

    per_second = 0

    def __call__(self, angle_rad: float, kind: str) -> np.ndarray:
        self.per_second += 1
        return super().__call__(angle_rad, kind)


@pytest.mark.parametrize("exposure_s", [0.1, 0.25])
def test_adu_frames_equal_the_per_second_counts_times_the_exposure(tmp_path, exposure_s) -> None:
    kwargs = {"size": "small", "n_projections": N, "seed": 2, "exposure_s": 0.1}
    direct = _CountedSource("LiI-AN", 4.0, **kwargs)
    counts = PelletFrameSource("LiI-AN", 4.0, **kwargs)
    try:
        got = _scan(direct, tmp_path / "adu", exposure_s, direct.shape)
        # A plain function has no frame_adu: the camera scales its per-second counts.
        want = _scan(lambda a, k: counts(a, k), tmp_path / "counts", exposure_s, counts.shape)
    finally:
        direct.close()
        counts.close()
    for name in DATASETS:
        np.testing.assert_array_equal(got[name], want[name])
    assert got["/exchange/data"].dtype == np.uint16
    # ADU read out at the source's own exposure; at another, its counts are scaled.
    assert direct.per_second == (0 if exposure_s == 0.1 else N + 8)


def test_frame_adu_times_nothing_is_the_counts_times_the_exposure() -> None:
    a = PelletFrameSource("A-LPS", size="small", n_projections=4, exposure_s=0.2)
    b = PelletFrameSource("A-LPS", size="small", n_projections=4, exposure_s=0.2)
    try:
        for angle, kind in [(0.0, "dark"), (0.0, "flat"), (0.3, "projection")]:
            adu = a.frame_adu(angle, kind)
            assert adu.dtype == np.uint16
            scale = 1.0 if kind == "dark" else 0.2
            np.testing.assert_array_equal(adu, np.rint(b(angle, kind) * scale))
        with pytest.raises(ValueError, match="kind must be one of"):
            a.frame_adu(0.0, "white")
    finally:
        a.close()
        b.close()
