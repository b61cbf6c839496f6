"""Test support: the same tomo_scan run and file checks for every beamline flavour."""

from __future__ import annotations

from bluesky import RunEngine
from run_documents import Documents

from insitu.instruments.dxchange import read_data_exchange
from insitu.protocols.plans.tomo import tomo_scan

#: Detector rows and columns of the test frame sources, and projections per scan.
ROWS, COLS, N = 32, 48, 30


def run_scan(bench, **kw) -> tuple[RunEngine, Documents]:
    """``tomo_scan`` of N projections (3 darks, 4 flats, each before and after) on ``bench``."""
    RE = RunEngine({})
    docs = Documents()
    RE.subscribe(docs)
    RE(
        tomo_scan(
            bench.camera, bench.stage, bench.shutter, n_projections=N, n_darks=3, n_flats=4, **kw
        )
    )
    return RE, docs


def check_file(path, n_flats=8, n_darks=6):
    """Data Exchange shapes, and darks < projections < flats; returns the four arrays."""
    proj, flat, dark, theta = read_data_exchange(path)
    assert proj.shape == (N, ROWS, COLS)
    assert flat.shape == (n_flats, ROWS, COLS)
    assert dark.shape == (n_darks, ROWS, COLS)
    assert dark.mean() < proj.mean() < flat.mean()
    assert proj.min() >= dark.min()
    return proj, flat, dark, theta
