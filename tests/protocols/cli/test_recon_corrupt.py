"""``insitu recon`` refuses scans that lie (issue 12): corrupted bytes, dark references.

Before the scan files carried checksums, 200 kB of random bytes written into the middle of a
scan reconstructed silently with status 0, and so did all-zero flats and darks.
"""

from __future__ import annotations

import json
import math

import numpy as np

from insitu.instruments.dxchange import DataExchangeWriter
from insitu.protocols.cli import main

N, ROWS, COLS = 90, 64, 128


def write_scan(path, *, references: str = "real") -> None:
    """A disc through the camera's writer: about 1.5 MB of checksummed frames."""
    rng = np.random.default_rng(3)
    t = np.arange(COLS) - (COLS - 1) / 2
    transmission = np.exp(-2 * 0.02 * np.sqrt(np.clip(40.0**2 - t**2, 0, None)))
    with DataExchangeWriter(path, shape=(ROWS, COLS)) as w:
        for _ in range(3):
            zeros = np.zeros((ROWS, COLS))
            real = references == "real"
            w.append("dark", rng.normal(100, 2, (ROWS, COLS)) if real else zeros)
            w.append("flat", rng.normal(4000, 60, (ROWS, COLS)) if real else zeros)
        for k in range(N):
            frame = 100 + 3900 * transmission[None, :] + rng.normal(0, 20, (ROWS, COLS))
            w.append("projection", frame, theta_rad=k * math.pi / N)


def recon(tmp_path, scan, capsys) -> tuple[int, str, str]:
    argv = ["recon", str(scan), "--out", str(tmp_path / "v.zarr"), "--json", "--rings", "none"]
    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_a_sound_scan_reconstructs_verified(tmp_path, capsys) -> None:
    scan = tmp_path / "scan.h5"
    write_scan(scan)
    status, out, err = recon(tmp_path, scan, capsys)
    assert status == 0, err
    assert json.loads(out)["scan_checks"] == {"checksums": "fletcher32", "notes": []}


def test_200_kB_of_random_bytes_in_the_middle_are_refused(tmp_path, capsys) -> None:
    scan = tmp_path / "scan.h5"
    write_scan(scan)
    size = scan.stat().st_size
    assert size > 1_000_000
    with open(scan, "r+b") as fh:
        fh.seek(size // 2 - 100_000)
        fh.write(np.random.default_rng(12).bytes(200_000))
    status, out, err = recon(tmp_path, scan, capsys)
    assert status == 2 and out == ""
    assert err.count("\n") == 1, err
    assert err.startswith(f"insitu: error: {scan}: /exchange/data fails its Fletcher32 checksum")
    assert " at frame " in err
    assert "re-acquire the scan" in err


def test_all_zero_flats_and_darks_are_refused(tmp_path, capsys) -> None:
    scan = tmp_path / "scan.h5"
    write_scan(scan, references="zero")
    status, out, err = recon(tmp_path, scan, capsys)
    assert status == 2 and out == ""
    assert err.startswith(f"insitu: error: {scan}: flat frame(s) 0, 1, 2 are constant (all 0)")
    assert err.count("\n") == 1
    assert not (tmp_path / "v.zarr").exists()
