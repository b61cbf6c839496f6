"""A cell imaging source hands the camera its present pellet source's ADU frames."""

from __future__ import annotations

import numpy as np

from insitu.simulators.cell.model import CellGeometry, VirtualCell
from insitu.simulators.imaging.cell_imaging import CellImagingSource


def test_frame_adu_is_the_present_sources_readout() -> None:
    cell = VirtualCell("LiI-AN", CellGeometry.insitu(), seed=0)
    kwargs = {"n_projections": 4, "seed": 1, "exposure_s": 0.2}
    adu = CellImagingSource(lambda: cell.state, "LiI-AN", **kwargs)
    counts = CellImagingSource(lambda: cell.state, "LiI-AN", **kwargs)
    try:
        assert adu.exposure_s == 0.2
        for angle, kind, scale in [
            (0.0, "dark", 1.0),
            (0.0, "flat", 0.2),
            (0.5, "projection", 0.2),
        ]:
            got = adu.frame_adu(angle, kind)
            assert got.dtype == np.uint16
            np.testing.assert_array_equal(got, np.rint(counts(angle, kind) * scale))
        # A new scan restarts the noise of both ways of asking.
        adu.prepare_scan()
        counts.prepare_scan()
        np.testing.assert_array_equal(adu.frame_adu(0.0, "dark"), counts(0.0, "dark"))
    finally:
        adu.close()
        counts.close()
