"""The import rules of the design map, checked on the source of every module.

``analysis`` and ``instruments`` import nothing else of the project (``analysis`` reads the
Data Exchange files through their one codec, ``insitu.instruments.dxchange``); ``simulators``
imports only wire codecs and asset formats from ``instruments``; ``protocols`` sits on top.
Inside one part, modules import each other relatively; across parts, absolutely. ``analysis``
never imports Bluesky or ophyd: it takes arrays and tables.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("analysis", "instruments", "protocols", "simulators")

#: What each part may import of the other parts (module prefixes).
ALLOWED = {
    "analysis": ("insitu.instruments.dxchange",),
    "instruments": (),
    "simulators": (
        "insitu.instruments.methodscript.codec",
        "insitu.instruments.dxchange",
        "insitu.instruments.devices.tomo_assets",
    ),
    "protocols": ("insitu.",),
}
#: Third-party packages a part must not import.
FORBIDDEN_LIBRARIES = {"analysis": ("bluesky", "ophyd", "caproto", "epics")}


def _imports(path: Path) -> list[tuple[int, str, int]]:
    """``(line, module, level)`` of every import statement (``level`` > 0: relative)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, node.module or "", node.level))
    return found


def _sources() -> list[tuple[str, Path]]:
    return [(part, path) for part in PARTS for path in sorted((ROOT / part).rglob("*.py"))]


@pytest.mark.parametrize(
    ("part", "path"),
    _sources(),
    ids=lambda v: str(v.relative_to(ROOT)) if isinstance(v, Path) else v,
)
def test_imports_follow_the_layers(part: str, path: Path) -> None:
    wrong = _violations(part, path)
    assert not wrong, "\n".join(wrong)


def _violations(part: str, path: Path) -> list[str]:
    wrong = []
    for line, module, level in _imports(path):
        if level:
            continue  # relative: inside the part by construction
        where = f"{path.name}:{line}: {module}"
        if module == f"insitu.{part}" or module.startswith(f"insitu.{part}."):
            wrong.append(f"{where} (inside one part, import relatively)")
        elif module.startswith("insitu.") and not module.startswith(ALLOWED[part]):
            wrong.append(f"{where} ({part} may not import it)")
        elif module.split(".")[0] in FORBIDDEN_LIBRARIES.get(part, ()):
            wrong.append(f"{where} ({part} takes arrays and tables, not {module})")
    return wrong


def test_the_checker_sees_each_kind_of_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import bluesky\n"
        "from insitu.analysis.electrochem import eis\n"
        "from insitu.protocols.storage import RunStore\n"
        "from insitu.instruments.dxchange import read_rows\n"
        "from . import x\n"
    )
    wrong = _violations("analysis", bad)
    assert [w.split(" (")[0] for w in wrong] == [
        "bad.py:1: bluesky",
        "bad.py:2: insitu.analysis.electrochem",
        "bad.py:3: insitu.protocols.storage",
    ]
