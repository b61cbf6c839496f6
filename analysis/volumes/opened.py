"""What a format's opener hands :func:`~.open_volume`: the reader and the file's metadata."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .volume import Reader

__all__ = ["Opened"]


@dataclass
class Opened:
    """A volume file opened by its format's module, before the voxel size is settled.

    Attributes
    ----------
    reader : Reader
        Reads rows (see :class:`~.volume.Volume`).
    format : str
        The format's name.
    attrs : dict
        The file's metadata.
    edges_um : (float, float, float) or None
        The voxel's ``(z, y, x)`` edges in µm from the file's metadata; None when absent.
    edges_from : str
        Where ``edges_um`` was read, for messages (e.g. ``"ImageJ metadata"``).
    closer : callable or None
        Closes the file.
    """

    reader: Reader
    format: str
    attrs: dict[str, Any] = field(default_factory=dict)
    edges_um: tuple[float, float, float] | None = None
    edges_from: str = "metadata"
    closer: Callable[[], None] | None = None
