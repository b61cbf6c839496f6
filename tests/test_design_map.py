"""docs/DESIGN.md's "Rooms as built" table lists every room and every module in it."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

DESIGN = Path(__file__).resolve().parents[1] / "docs" / "DESIGN.md"
PARTS = ("instruments", "simulators", "analysis", "protocols")


def _documented() -> dict[str, set[str]]:
    rows = re.findall(
        r"^\| `([a-z0-9_/]+)/` \| .* \| ((?:`\w+`(?:, )?)+) \|$", DESIGN.read_text(), re.M
    )
    return {room: set(re.findall(r"`(\w+)`", modules)) for room, modules in rows}


def _rooms() -> dict[str, set[str]]:
    rooms: dict[str, set[str]] = {}

    def walk(dotted: str) -> None:
        package = importlib.import_module(f"insitu.{dotted}")
        modules, subpackages = set(), []
        for info in pkgutil.iter_modules(package.__path__):
            if info.ispkg:
                subpackages.append(f"{dotted}.{info.name}")
            elif not info.name.startswith("_") or info.name == "__main__":
                modules.add(info.name)
        if modules:
            rooms[dotted.replace(".", "/")] = modules
        for sub in subpackages:
            walk(sub)

    for part in PARTS:
        walk(part)
    return rooms


def test_every_room_and_module_is_on_the_map() -> None:
    documented, built = _documented(), _rooms()
    assert documented, "no room table found in docs/DESIGN.md"
    missing = {room: sorted(mods - documented.get(room, set())) for room, mods in built.items()}
    extra = {room: sorted(mods - built.get(room, set())) for room, mods in documented.items()}
    assert not {r: m for r, m in missing.items() if m}, f"not on the map: {missing}"
    assert not {r: m for r, m in extra.items() if m}, f"on the map, not in the tree: {extra}"
