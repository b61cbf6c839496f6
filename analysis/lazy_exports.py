"""A package whose public API is the union of its modules' ``__all__``, imported on first use.

The rooms' ``__init__`` files export every name their modules list (as TomoPy's packages do).
Importing every module with the package made each command wait for all of them: importing
``insitu.protocols.workflows.runs`` loaded Bluesky, the benches and the whole analysis first,
and ``insitu runs`` took 7.4 s, 3.9 s of it for modules it never used. With
:func:`lazy_union` (PEP 562) a package imports a module when one of its names, or the
module itself, is first asked for.

Written here rather than taken from ``lazy_loader`` (scikit-image's): that package needs every
exported name spelt out again in the ``__init__`` or a stub file, which is how such lists drift
from the modules' own ``__all__``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

__all__ = ["lazy_union"]


def lazy_union(
    package: str, modules: Sequence[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``, exporting its ``modules``' names.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    modules : sequence of str
        Its modules, in the order their names are looked for (the first that lists a name
        exports it).

    Returns
    -------
    (callable, callable)
        Assign them to the package's ``__getattr__`` and ``__dir__``. ``__all__`` is built
        the first time it is asked for (``from package import *`` asks).
    """
    names = tuple(modules)
    namespace = importlib.import_module(package).__dict__

    def module(name: str) -> ModuleType:
        return importlib.import_module(f"{package}.{name}")

    def getattr_(name: str) -> Any:
        if name in names:
            return module(name)
        if name == "__all__":
            exported = list(dict.fromkeys(n for m in names for n in module(m).__all__))
            namespace["__all__"] = exported
            return exported
        for module_name in names:
            found = module(module_name)
            if name in found.__all__:
                value = getattr(found, name)
                namespace[name] = value  # asked once: later lookups skip __getattr__
                return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def dir_() -> list[str]:
        return sorted({*namespace, *names, *getattr_("__all__")})

    return getattr_, dir_
