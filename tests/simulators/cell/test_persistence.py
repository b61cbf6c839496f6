"""Cell checkpoints: exact round trips, in-place restore, refusals, atomic and periodic saves."""

from __future__ import annotations

import copy
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from insitu.simulators.cell import persistence as cell_persistence
from insitu.simulators.cell.history import cycle_to_charge
from insitu.simulators.cell.model import CellGeometry, VirtualCell
from insitu.simulators.cell.persistence import (
    CellCheckpointer,
    load_cell,
    restore_cell,
    save_cell,
)

WHAT = "cell checkpoint written by insitu"


@pytest.fixture(scope="module")
def cracked() -> VirtualCell:
    """A-LPS in the in-situ cell after 20 mC: cracks, voids, a used noise generator."""
    cell = VirtualCell("A-LPS", CellGeometry.insitu(), seed=4)
    cycle_to_charge(cell, 20e-3)
    cell.impedance(np.logspace(6, -1, 15))  # draws from the noise stream too
    assert cell.state.cracks
    return cell


def plating_A(cell: VirtualCell) -> float:
    return -0.04 * 10.0 * cell.geometry.area_m2


def test_loaded_cell_answers_exactly_as_the_original(cracked, tmp_path) -> None:
    original = copy.deepcopy(cracked)
    path = save_cell(original, tmp_path / "cell.ckpt")
    loaded = load_cell(path)
    assert loaded is not original and loaded.state == original.state
    for current in (plating_A(original), 0.0, -plating_A(original)):
        times = original.time_s + np.arange(1, 31) * 20.0
        # Same currents, same times: same voltages to the bit, noise included.
        np.testing.assert_array_equal(original.hold(current, times), loaded.hold(current, times))
    np.testing.assert_array_equal(original.impedance([1e3, 1.0]), loaded.impedance([1e3, 1.0]))
    assert loaded.state == original.state
    assert loaded.material is not None and loaded.material.name == "A-LPS"


def test_header_is_readable_without_unpickling(cracked, tmp_path) -> None:
    path = save_cell(cracked, tmp_path / "cell.ckpt")
    magic, header = path.read_bytes().split(b"\n")[:2]
    assert magic == b"insitu cell checkpoint"
    assert b'"material": "A-LPS"' in header and b'"format_version": 1' in header


def test_restore_in_place_keeps_the_object(cracked, tmp_path) -> None:
    cell = copy.deepcopy(cracked)
    saved = cell.state
    path = save_cell(cell, tmp_path / "cell.ckpt")
    holder = {"emulator's cell": cell}
    cell.advance_to(cell.time_s + 600.0, plating_A(cell))
    assert cell.state != saved
    assert restore_cell(cell, path) is cell
    assert holder["emulator's cell"] is cell and cell.state == saved
    twin = load_cell(path)
    times = cell.time_s + np.arange(1, 11) * 30.0
    np.testing.assert_array_equal(cell.hold(1e-6, times), twin.hold(1e-6, times))


def test_refuses_foreign_damaged_and_other_material_files(cracked, tmp_path) -> None:
    good = save_cell(cracked, tmp_path / "good.ckpt").read_bytes()
    cases = {
        "foreign": (b"just some bytes\n", "not a " + WHAT),
        "empty": (b"", "not a " + WHAT),
        "truncated": (good[:-100], "truncated"),
        "header cut": (good[:40], "header"),
        "corrupt": (good[:-10] + bytes(10), "SHA-256"),
        "newer": (good.replace(b'"format_version": 1', b'"format_version": 9', 1), "version 9"),
    }
    for name, (data, reason) in cases.items():
        path = tmp_path / f"{name}.ckpt"
        path.write_bytes(data)
        with pytest.raises(ValueError, match=reason) as info:
            load_cell(path)
        assert WHAT in str(info.value) and str(path) in str(info.value), name
    other = save_cell(VirtualCell("LiI-AN", CellGeometry.insitu()), tmp_path / "lii.ckpt")
    cell = copy.deepcopy(cracked)
    before = cell.state
    with pytest.raises(ValueError, match=f"{WHAT} for a LiI-AN cell, not for this A-LPS cell"):
        restore_cell(cell, other)
    assert cell.state == before  # untouched
    with pytest.raises(ValueError, match="LiI-AN"):
        load_cell(other, material="A-LPS")
    assert load_cell(other, material="LiI-AN").material.name == "LiI-AN"


def test_failed_save_leaves_the_previous_checkpoint(cracked, tmp_path, monkeypatch) -> None:
    path = save_cell(cracked, tmp_path / "cell.ckpt")
    previous = path.read_bytes()
    later = copy.deepcopy(cracked)
    later.advance_to(later.time_s + 100.0, 0.0)

    def crash(src, dst):
        raise OSError("disk pulled out")

    monkeypatch.setattr(cell_persistence.os, "replace", crash)
    with pytest.raises(OSError, match="disk pulled out"):
        save_cell(later, path)
    assert path.read_bytes() == previous
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cell.ckpt"]  # no temporary left


class CountingLock:
    """An RLock that counts how often it was taken (the checkpointer must take it)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.taken = 0

    def __enter__(self):
        self._lock.acquire()
        self.taken += 1
        return self

    def __exit__(self, *exc):
        self._lock.release()


def wait_for(predicate, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_checkpointer_saves_periodically_under_the_lock(cracked, tmp_path) -> None:
    cell = copy.deepcopy(cracked)
    path = tmp_path / "cell.ckpt"
    lock = CountingLock()
    with CellCheckpointer(cell, path, lock=lock, every_s=0.05) as checkpointer:
        assert load_cell(path).state == cell.state  # written on entry
        first = path.stat().st_mtime_ns
        wait_for(lambda: path.stat().st_mtime_ns != first)
        with lock:
            cell.advance_to(cell.time_s + 300.0, plating_A(cell))
            target = cell.state
        wait_for(lambda: load_cell(path).state == target)
        assert checkpointer.last_error is None
    # On entry, at least twice in between (seen above), and on exit.
    assert checkpointer.saves >= 4
    assert lock.taken == checkpointer.saves + 1  # every save, and the test's own hold
    assert not [t for t in threading.enumerate() if t.name == "cell-checkpointer"]


def test_checkpointer_saves_on_exit(cracked, tmp_path) -> None:
    cell = copy.deepcopy(cracked)
    path = tmp_path / "cell.ckpt"
    lock = threading.Lock()  # the MethodSCRIPT emulator's kind: not re-entrant
    with CellCheckpointer(cell, path, lock=lock, every_s=3600.0) as checkpointer:
        at_entry = path.stat().st_mtime_ns
        with lock:
            cell.advance_to(cell.time_s + 300.0, plating_A(cell))
    assert checkpointer.saves == 2  # on entry and on exit, no period elapsed
    assert path.stat().st_mtime_ns >= at_entry
    assert load_cell(path).state == cell.state
    with pytest.raises(ValueError, match="every_s"):
        CellCheckpointer(cell, path, lock=lock, every_s=0)


def test_checkpoint_survives_a_killed_process(cracked, tmp_path) -> None:
    # What the checkpointer is for: a process dies, the next one picks the cell up.
    path = tmp_path / "cell.ckpt"
    script = textwrap.dedent(
        f"""
        import os, signal, threading
        from insitu.simulators.cell.model import CellGeometry, VirtualCell
        from insitu.simulators.cell.persistence import CellCheckpointer, load_cell
        from insitu.simulators.cell.history import cycle_to_charge
        cell = VirtualCell("A-LPS", CellGeometry.insitu(), seed=4)
        lock = threading.RLock()
        with CellCheckpointer(cell, {str(path)!r}, lock=lock, every_s=0.01):
            with lock:
                cycle_to_charge(cell, 12e-3)
                target = cell.state
            while load_cell({str(path)!r}).state != target:
                pass
            # Killed while the thread keeps saving: the file must stay whole whenever it hits.
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert done.returncode == -9, done.stderr
    reference = VirtualCell("A-LPS", CellGeometry.insitu(), seed=4)
    cycle_to_charge(reference, 12e-3)
    assert load_cell(path).state == reference.state
