"""The IOC's FilePath and FileName over Channel Access: files stay inside its data folder.

Any Channel Access client on the host can write the camera's PVs, so a put that would make the
IOC create or write a folder outside its data folder (``--path``) must fail at the client and
leave nothing behind.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from caproto import ChannelType
from caproto.sync.client import ErrorResponseReceived, read, write

from insitu.protocols.bench.tomo_epics import epics_tomo_bench

SOURCE = "insitu.simulators.imaging.disc_phantom:disc_frame_source"


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    path = tmp_path_factory.mktemp("ioc_data")
    with epics_tomo_bench(
        path, frame_source=SOURCE, frame_source_kwargs={"rows": 8, "cols": 8}, speedup=100
    ) as bench:
        yield bench


@pytest.fixture(scope="module")
def outside(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("outside")


def _put_text(pvname: str, text: str) -> None:
    # A char waveform (areaDetector's long strings): the text as bytes, NUL-terminated.
    data = [*text.encode(), 0]
    write(pvname, data, notify=True, data_type=ChannelType.CHAR, timeout=10)


def _get_text(pvname: str) -> str:
    return bytes(read(pvname, timeout=10).data).split(b"\0")[0].decode()


def _capture(bench) -> str:
    """Open and close one file; returns its full name."""
    cam = bench.camera
    write(cam.capture.pvname, 1, notify=True, timeout=10)
    name = _get_text(cam.full_file_name.pvname)
    write(cam.capture.pvname, 0, notify=True, timeout=10)
    return name


def _outside_targets(root: Path, outside: Path) -> dict[str, str]:
    link = root / "link_out"
    if not link.exists():
        link.symlink_to(outside, target_is_directory=True)
    return {
        "absolute": str(outside / "new_folder"),
        "dotdot": f"{root}/../escaped",
        "relative_dotdot": "../escaped_too",
        "symlink": str(link / "through_link"),
        "empty": "",
    }


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "relative_dotdot", "symlink", "empty"])
def test_file_path_outside_the_data_folder_is_refused(bench, outside, kind) -> None:
    root = bench.path.resolve()
    target = _outside_targets(root, outside)[kind]
    pv = bench.camera.file_path.pvname
    before = _get_text(pv)
    with pytest.raises(ErrorResponseReceived):
        _put_text(pv, target)
    assert _get_text(pv) == before == str(root)
    if kind != "empty":  # an empty put may be refused by caproto before the putter runs
        assert str(root) in _get_text(bench.camera.status_message.pvname)
    # The next file still goes into the data folder, and nothing was made outside it.
    assert Path(_capture(bench)).parent == root
    assert sorted(p.name for p in outside.iterdir()) == []
    assert not (root.parent / "escaped").exists()
    assert not (root.parent / "escaped_too").exists()


def test_a_folder_inside_the_data_folder_is_used(bench) -> None:
    root = bench.path.resolve()
    pv = bench.camera.file_path.pvname
    try:
        _put_text(pv, "scans/today")  # relative: inside the data folder
        assert _get_text(pv) == str(root / "scans" / "today")
        assert Path(_capture(bench)).parent == root / "scans" / "today"
    finally:
        _put_text(pv, str(root))
    assert _get_text(pv) == str(root)


@pytest.mark.parametrize("name", ["../escaped.h5", "/tmp/escaped.h5", ".."])
def test_file_name_with_a_folder_is_refused(bench, name) -> None:
    pv = bench.camera.file_name.pvname
    with pytest.raises(ErrorResponseReceived):
        _put_text(pv, name)
    assert _get_text(pv) == ""
    assert "bare file name" in _get_text(bench.camera.status_message.pvname)
