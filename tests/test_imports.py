"""Every module of the package imports (a renamed helper breaks its importers at once).

The four parts are walked one by one: ``insitu`` itself is a namespace package that the
editable install serves through a path hook, which ``pkgutil`` cannot list.
"""

from __future__ import annotations

import importlib
import pkgutil

import pytest

PARTS = ("analysis", "instruments", "protocols", "simulators")


def _modules() -> list[str]:
    names = []
    for part in PARTS:
        package = importlib.import_module(f"insitu.{part}")
        modules = pkgutil.walk_packages(package.__path__, f"insitu.{part}.")
        # A __main__ module runs its program when imported (``python -m`` is its only use).
        names += [m.name for m in modules if not m.name.endswith(".__main__")]
    return sorted(names)


MODULES = _modules()


def test_every_part_has_modules() -> None:
    for part in PARTS:
        assert sum(name.startswith(f"insitu.{part}.") for name in MODULES) >= 5, part


@pytest.mark.parametrize("name", MODULES)
def test_module_imports(name: str) -> None:
    importlib.import_module(name)


@pytest.mark.parametrize(
    "name", [m for m in MODULES if hasattr(importlib.import_module(m), "__path__")]
)
def test_no_room_exports_a_name_of_its_own_modules(name: str) -> None:
    # A room's __init__ re-exports its modules' names; one named like a module of the room
    # would replace the module as the package's attribute (``import room.mod as m`` would
    # give the function), so module and public name must differ.
    package = importlib.import_module(name)
    modules = {info.name for info in pkgutil.iter_modules(package.__path__)}
    assert not modules & set(getattr(package, "__all__", ())), name
