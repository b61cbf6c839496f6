"""How ``insitu`` reports errors: the user's in one line (exit 2), a bug as a bug (exit 1).

And the command-line convention itself: one module per command group with ``register``, no
command module importing another, and the old option spellings still accepted.
"""

from __future__ import annotations

import ast
import json
import signal
from pathlib import Path

import pytest

from insitu.protocols.cli import app, main
from insitu.protocols.errors import USER_ERRORS, InvalidInputError
from insitu.protocols.workflows import sim as sim_workflow

CLI = Path(app.__file__).parent


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


def test_a_user_error_is_one_line_and_exit_2(capsys) -> None:
    assert main(["analyze", "ccd", "missing.csv"]) == 2
    assert one_line(capsys) == "insitu: error: no such file: missing.csv"


@pytest.mark.parametrize("bug", [ZeroDivisionError("division by zero"), ValueError("oops")])
def test_a_bug_is_one_line_naming_it_and_exit_1(monkeypatch, capsys, bug) -> None:
    # A plain ValueError is a bug too: only the project's user-error types are the user's.
    def broken() -> None:
        raise bug

    monkeypatch.setattr(sim_workflow, "material_presets", broken)
    assert main(["sim", "materials"]) == 1
    line = one_line(capsys)
    name = type(bug).__name__
    assert line == f"insitu: internal error: {name}: {bug} (run with --debug for the traceback)"


def test_an_unwritable_output_is_the_users_to_fix(monkeypatch, capsys) -> None:
    # Rights, a full or read-only disk: the user fixes those; the path is named. An OS error
    # without a path (or another errno) stays a bug.
    def denied() -> None:
        raise PermissionError(13, "Permission denied", "/data/out.csv")

    monkeypatch.setattr(sim_workflow, "material_presets", denied)
    assert main(["sim", "materials"]) == 2
    assert one_line(capsys) == "insitu: error: cannot use /data/out.csv: Permission denied"

    def no_path() -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(sim_workflow, "material_presets", no_path)
    assert main(["sim", "materials"]) == 1
    assert one_line(capsys).startswith("insitu: internal error: PermissionError")


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_prints_the_traceback(monkeypatch, capsys, where) -> None:
    def broken() -> None:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(sim_workflow, "material_presets", broken)
    argv = ["--debug", "sim", "materials"] if where == "before" else ["sim", "materials", "--debug"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and "in broken" in err
    assert err.rstrip().endswith("insitu: internal error: ZeroDivisionError: division by zero")


def test_a_multi_line_bug_message_stays_one_line(monkeypatch, capsys) -> None:
    def broken() -> None:
        raise RuntimeError("first line\nsecond line")

    monkeypatch.setattr(sim_workflow, "material_presets", broken)
    assert main(["sim", "materials"]) == 1
    assert "RuntimeError: first line … (run with --debug" in one_line(capsys)


def test_ctrl_c_is_exit_130_without_a_traceback(monkeypatch, capsys) -> None:
    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(sim_workflow, "material_presets", interrupted)
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        assert main(["sim", "materials"]) == 130
        assert one_line(capsys) == "insitu: interrupted; the cell was switched off"
        # A second Ctrl-C (or kill) while the process exits is ignored: it used to raise in
        # the interpreter's shutdown hooks and print a traceback under the one line.
        assert all(signal.getsignal(s) is signal.SIG_IGN for s in saved)
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def test_every_part_has_a_user_error_base() -> None:
    from insitu.analysis.errors import AnalysisInputError
    from insitu.instruments.errors import InstrumentError
    from insitu.instruments.resources import UnknownResourceError
    from insitu.protocols.experiment_config import ExperimentError
    from insitu.protocols.storage.catalog import RunNotFoundError
    from insitu.simulators.errors import SimulatorInputError
    from insitu.simulators.materials import UnknownMaterialError

    assert set(USER_ERRORS) >= {InstrumentError, AnalysisInputError, SimulatorInputError}
    for user_error in (
        UnknownResourceError,
        UnknownMaterialError,
        ExperimentError,
        RunNotFoundError,
        InvalidInputError,
    ):
        assert issubclass(user_error, USER_ERRORS), user_error
    # Callers that caught the built-in types before still catch them.
    assert issubclass(UnknownMaterialError, ValueError) and issubclass(RunNotFoundError, KeyError)


@pytest.mark.parametrize("spelling", ["--emulator", "--sim-protocol"])
def test_emulator_option_and_its_old_name(monkeypatch, capsys, spelling) -> None:
    seen = {}

    def run_ccd(instrument, **kwargs):
        seen.update(kwargs)
        return {
            "ccd_mA_cm2": None,
            "charge_to_failure_C_cm2": {},
            "short_time_s": None,
            "run_uid": "0" * 36,
        }

    monkeypatch.setattr("insitu.protocols.workflows.lab.run_ccd", run_ccd)
    monkeypatch.setattr("insitu.protocols.cli.lab.open_store", _no_store)
    argv = ["ccd", "--instrument", "sim:A-LPS", spelling, "methodscript", "--json"]
    assert main(argv) == 0, capsys.readouterr().err
    assert seen["emulator"] == "methodscript"
    assert json.loads(capsys.readouterr().out)["instrument"] == "sim:A-LPS"


def test_the_old_option_names_are_not_in_the_help(capsys) -> None:
    for argv in (["ccd", "--help"], ["demo", "--help"], ["sim", "serve", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        out = capsys.readouterr().out
        assert "--emulator" in out and "--sim-protocol" not in out and "--protocol" not in out


def test_sim_serve_needs_an_emulator(capsys) -> None:
    assert main(["sim", "serve", "--material", "A-LPS"]) == 2
    assert "--emulator keithley2450|methodscript" in one_line(capsys)


def _no_store(args):
    from contextlib import nullcontext

    return nullcontext(None)


def _command_modules() -> list[Path]:
    return [p for p in sorted(CLI.glob("*.py")) if p.stem not in ("__init__", "__main__", "app")]


def test_one_module_per_command_group_and_none_imports_another() -> None:
    registered = {m.__name__.rsplit(".", 1)[-1] for m in app.COMMANDS}
    commands = {p.stem for p in _command_modules()} - {"common"}
    assert commands == registered
    for path in _command_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                imported = {node.module} if node.module else {a.name for a in node.names}
                assert imported <= {"common"}, f"{path.name} imports {imported}"
