"""Rooms that import their modules on first use still export their modules' ``__all__``."""

from __future__ import annotations

import subprocess
import sys

import pytest

import insitu.analysis.electrochem as electrochem
from insitu.analysis.electrochem import eis, shorts


def test_names_resolve_to_the_modules_objects() -> None:
    assert electrochem.CircuitSpec is eis.CircuitSpec
    assert electrochem.CHARGE_CONVENTIONS is shorts.CHARGE_CONVENTIONS
    assert electrochem.shorts is shorts


def test_all_is_the_union_of_the_modules_all_in_order() -> None:
    names = ("conductivity", "eis", "overpotential", "readers", "runs", "shorts")
    modules = [getattr(electrochem, n) for n in names]
    expected = list(dict.fromkeys(name for m in modules for name in m.__all__))
    assert electrochem.__all__ == expected
    assert set(expected) <= set(dir(electrochem))
    namespace: dict = {}
    exec("from insitu.analysis.electrochem import *", namespace)
    assert set(expected) <= set(namespace)


def test_an_unknown_name_is_an_attribute_error_naming_it() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'not_a_function'"):
        electrochem.not_a_function  # noqa: B018
    with pytest.raises(ImportError):
        from insitu.analysis.electrochem import not_a_function  # noqa: F401


def test_one_workflow_imports_without_the_others() -> None:
    """`insitu runs` must not wait for Bluesky and the benches (a fresh interpreter)."""
    code = (
        "import sys, insitu.protocols.workflows.runs;"
        "print(sorted(m for m in ('bluesky', 'insitu.protocols.workflows.experiment',"
        " 'insitu.protocols.bench', 'impedance') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout
