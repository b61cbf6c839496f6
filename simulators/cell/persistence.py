"""Checkpoints of a virtual cell: save it, load it, restore it in place after a crash.

A long in-situ experiment drives one :class:`~insitu.simulators.cell.model.VirtualCell` for hours of
simulated time; if the process is killed, the cell (cracks, Li in them, voids, interphase, the
noise generator's position) must come back as it was. :func:`save_cell` writes it atomically
(a temporary file in the same folder, fsync, ``os.replace``), so a checkpoint is always either
the previous one or the new one, never half of each; :class:`CellCheckpointer` does so
periodically from a thread while the emulator's lock keeps the cell still.

File layout: a magic line, one JSON header line (format version, material, simulated time,
size and SHA-256 of the payload; readable with ``head -2``), then the pickled cell. The file is
unpickled only when the header and the checksum match, so a foreign or damaged file is
refused with :class:`ValueError` before any of it is unpickled. Only load checkpoints you (or
your own experiment) wrote: a pickle can run code.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import pickle
import tempfile
import threading
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from ..materials import MaterialPreset, get_material
from .model import VirtualCell

__all__ = ["FORMAT_VERSION", "CellCheckpointer", "load_cell", "restore_cell", "save_cell"]

log = logging.getLogger(__name__)

#: Version of the checkpoint layout; files of another version are refused.
FORMAT_VERSION = 1
_MAGIC = b"insitu cell checkpoint\n"
_WHAT = "a cell checkpoint written by insitu"


def _serialise(cell: VirtualCell) -> bytes:
    """The checkpoint's bytes (take them while nothing advances the cell)."""
    payload = pickle.dumps(cell, protocol=pickle.HIGHEST_PROTOCOL)
    header = {
        "format_version": FORMAT_VERSION,
        "material": cell.material.name,
        "time_s": cell.time_s,
        "payload_bytes": len(payload),
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
    }
    return _MAGIC + json.dumps(header).encode() + b"\n" + payload


def _write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` in one step: a reader sees the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    # The rename itself survives a power cut only once the folder is synced too.
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def save_cell(cell: VirtualCell, path: str | Path) -> Path:
    """Write a checkpoint of ``cell`` to ``path`` atomically.

    Hold the lock of whatever advances the cell (the emulator's) while calling it.

    Parameters
    ----------
    cell : VirtualCell
        The cell, with its whole state (noise generator included).
    path : str or pathlib.Path
        Checkpoint file; replaced if it exists.

    Returns
    -------
    pathlib.Path
        The path written.
    """
    path = Path(path)
    _write_atomic(path, _serialise(cell))
    return path


def _parse(path: Path, data: bytes) -> tuple[dict[str, Any], bytes]:
    """Header and payload of a checkpoint; ValueError saying what is wrong otherwise."""
    if not data.startswith(_MAGIC):
        raise ValueError(
            f"{path} is not {_WHAT} (insitu.simulators.cell.persistence.save_cell): it does "
            "not start with the checkpoint header"
        )
    line, newline, payload = data[len(_MAGIC) :].partition(b"\n")
    try:
        header = json.loads(line)
        if not isinstance(header, dict) or not newline:
            raise ValueError("no header line")
    except ValueError as exc:
        raise ValueError(f"{path}: the header of {_WHAT} is damaged or truncated") from exc
    version = header.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{path} is {_WHAT} in format version {version!r}; this insitu reads version "
            f"{FORMAT_VERSION} only"
        )
    expected = header.get("payload_bytes")
    if len(payload) != expected:
        raise ValueError(
            f"{path}: {_WHAT}, truncated or padded: {len(payload)} bytes of cell data where "
            f"the header says {expected}"
        )
    if hashlib.sha256(payload).hexdigest() != header.get("payload_sha256"):
        raise ValueError(f"{path}: {_WHAT}, corrupt: the cell data fail their SHA-256 check")
    return header, payload


def load_cell(path: str | Path, *, material: str | MaterialPreset | None = None) -> VirtualCell:
    """Read a checkpoint written by :func:`save_cell`.

    Parameters
    ----------
    path : str or pathlib.Path
        Checkpoint file.
    material : str or MaterialPreset, optional
        Refuse a checkpoint of any other material (a preset or its name).

    Returns
    -------
    VirtualCell
        A new cell object in the saved state.

    Raises
    ------
    ValueError
        If the file is not such a checkpoint, is truncated or corrupt, is of another format
        version, or holds a cell of another material than ``material``.
    """
    path = Path(path)
    header, payload = _parse(path, path.read_bytes())
    if material is not None:
        _check_material(path, header["material"], get_material(material).name)
    try:
        cell = pickle.loads(payload)
    except Exception as exc:  # e.g. written by a version whose classes have changed
        raise ValueError(f"{path}: {_WHAT}, but its cell cannot be read back: {exc}") from exc
    if not isinstance(cell, VirtualCell) or cell.material.name != header["material"]:
        raise ValueError(f"{path}: {_WHAT}, but it does not hold the cell its header describes")
    return cell


def _check_material(path: Path, saved: str, wanted: str) -> None:
    if saved != wanted:
        raise ValueError(
            f"{path} is {_WHAT} for a {saved} cell, not for this {wanted} cell; restore it "
            "into a cell of the same material"
        )


def restore_cell(cell: VirtualCell, path: str | Path) -> VirtualCell:
    """Put ``cell`` back into the state saved in ``path``, in place.

    In place because the emulator (and the bench, and tests) hold references to this very
    object; hold the emulator's lock while calling it.

    Parameters
    ----------
    cell : VirtualCell
        The cell to restore; keeps its identity.
    path : str or pathlib.Path
        Checkpoint of a cell of the same material.

    Returns
    -------
    VirtualCell
        ``cell``.

    Raises
    ------
    ValueError
        As :func:`load_cell`; also for a checkpoint of another material.
    """
    saved = load_cell(path, material=cell.material)
    # As Keithley2450Source.restore does with its snapshot.
    cell.__dict__.clear()
    cell.__dict__.update(saved.__dict__)
    return cell


class CellCheckpointer:
    """Save a cell every ``every_s`` real seconds from a daemon thread, and once more on exit.

    Parameters
    ----------
    cell : VirtualCell
        The cell to save.
    path : str or pathlib.Path
        Checkpoint file (replaced atomically each time).
    lock : lock
        Held while the cell is serialised, so no hold is half applied: the lock of whatever
        advances the cell (``SimBench.cell_lock``). It is released before the file is written.
    every_s : float
        Real seconds between checkpoints.

    Attributes
    ----------
    saves : int
        Checkpoints written so far.
    last_error : BaseException or None
        Why the latest periodic save failed (the thread keeps trying); ``None`` after a
        success.
    last_save_monotonic : float or None
        ``time.monotonic()`` when the latest checkpoint was written.

    Notes
    -----
    The first checkpoint is written on entry, so a process killed within the first period
    still leaves one.
    """

    def __init__(
        self,
        cell: VirtualCell,
        path: str | Path,
        *,
        lock: AbstractContextManager[Any],
        every_s: float = 0.5,
    ) -> None:
        if not every_s > 0:
            raise ValueError(f"every_s must be positive, got {every_s!r}")
        self.cell = cell
        self.path = Path(path)
        self.every_s = float(every_s)
        self._lock = lock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.saves = 0
        self.last_error: BaseException | None = None
        self.last_save_monotonic: float | None = None

    def save(self) -> Path:
        """Write a checkpoint now."""
        with self._lock:
            data = _serialise(self.cell)
        _write_atomic(self.path, data)
        self.saves += 1
        self.last_save_monotonic = time.monotonic()
        return self.path

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.save()
            except Exception as exc:  # a full disk must not end the checkpoints for good
                self.last_error = exc
                log.warning("checkpoint of the cell to %s failed: %s", self.path, exc)
            else:
                self.last_error = None

    def __enter__(self) -> CellCheckpointer:
        self.save()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="cell-checkpointer", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.save()
