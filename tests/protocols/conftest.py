"""A new embedded catalog without tiled's ``catalog init`` subprocess in every test.

tiled creates a new SQLite catalog by running ``python -m tiled catalog init`` in a
subprocess (its alembic stamping is synchronous only): ~2.5 s of CPU, paid by every test
that opens a catalog in a fresh folder (about fifty in this suite). The schema it writes is
the same every time, so the session makes one empty catalog through :class:`RunStore` itself
(the product's own path, subprocess included) and every later new catalog starts as a copy
of that file. What a test then reads and writes goes through tiled as before.

``seed_catalog`` does the same for a data folder that a command run as a subprocess (the
``insitu`` command line, which the patch below cannot reach) will open.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from insitu.protocols.storage.catalog import RunStore

#: Where the session's empty catalog is (set by the ``_empty_catalog`` fixture).
_TEMPLATE: dict[str, Path] = {}


def _sqlite_file(uri: str) -> Path | None:
    """The file of a ``sqlite:///`` URI (``None`` for any other database)."""
    for scheme in ("sqlite:///", "sqlite+aiosqlite:///"):
        if uri.startswith(scheme):
            return Path(uri[len(scheme) :])
    return None


def _copying_from_uri(original: Callable[..., Any]) -> Callable[..., Any]:
    """tiled's ``from_uri``, starting a new SQLite catalog from the session's empty one."""

    def from_uri(uri: str, *args: Any, init_if_not_exists: bool = False, **kwargs: Any) -> Any:
        target = _sqlite_file(uri)
        template = _TEMPLATE.get("catalog")
        if init_if_not_exists and template and target is not None and not target.exists():
            try:
                shutil.copyfile(template, target)
                init_if_not_exists = False
            except OSError:
                # An unwritable folder, say: let tiled meet it as a user would.
                target.unlink(missing_ok=True)
        return original(uri, *args, init_if_not_exists=init_if_not_exists, **kwargs)

    return from_uri


@pytest.fixture(scope="session", autouse=True)
def _empty_catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One empty catalog, made the product's way; new catalogs copy it (see above)."""
    import tiled.catalog

    folder = tmp_path_factory.mktemp("empty-catalog")
    with RunStore(folder) as store:
        store.client  # noqa: B018 - opening it creates the catalog
        path = store.catalog_path
    _TEMPLATE["catalog"] = path
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tiled.catalog, "from_uri", _copying_from_uri(tiled.catalog.from_uri))
        yield path
    _TEMPLATE.clear()


@pytest.fixture
def seed_catalog(_empty_catalog: Path) -> Callable[[Path], Path]:
    """Put an empty catalog into a data folder that a subprocess will open as new.

    Returns a function of the data folder; it returns the folder.
    """

    def seed(data: Path) -> Path:
        data.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_empty_catalog, data / "catalog.db")
        return data

    return seed
