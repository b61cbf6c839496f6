"""Stopping a running plan from outside: emergency stop, signals, and quiet failures."""

from __future__ import annotations

import logging
import os
import signal
import threading

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import pytest
from bluesky import RunEngine
from bluesky.utils import RunEngineInterrupted

from insitu.protocols.workflows.interrupts import (
    abort_on_signals,
    emergency_stop,
    failures_at_debug,
    pause_on_signals,
)


class Docs:
    def __init__(self) -> None:
        self.stops: list[dict] = []

    def __call__(self, name: str, doc: dict) -> None:
        if name == "stop":
            self.stops.append(doc)


def endless(cleaned: list[str], started: threading.Event):
    """A run that never ends by itself; its finalizer stands for 'switch the cell off'."""

    def body():
        yield from bps.open_run()
        started.set()
        while True:
            yield from bps.sleep(0.01)

    def off():
        cleaned.append("off")
        yield from bps.null()

    return (yield from bpp.finalize_wrapper(body(), off()))


def engine() -> tuple[RunEngine, Docs]:
    RE = RunEngine({}, context_managers=[])
    docs = Docs()
    RE.subscribe(docs)
    return RE, docs


def test_emergency_stop_aborts_the_run_with_its_reason_and_prints_nothing(capsys):
    RE, docs = engine()
    cleaned: list[str] = []
    started = threading.Event()
    accepted: list[bool] = []

    def stop() -> None:
        started.wait(10)
        accepted.append(emergency_stop(RE, "operator pressed the red button"))

    stopper = threading.Thread(target=stop)
    stopper.start()
    with pytest.raises(RunEngineInterrupted):
        RE(endless(cleaned, started))
    # The run may be closed before emergency_stop returns in its thread (caught by CI).
    stopper.join(10)
    assert accepted == [True]
    assert cleaned == ["off"]
    assert docs.stops[-1]["exit_status"] == "abort"
    assert docs.stops[-1]["reason"] == "operator pressed the red button"
    assert RE.state == "idle"
    assert capsys.readouterr().out == ""  # bluesky's "Aborting: ..." is not on stdout


def test_emergency_stop_with_nothing_running_does_nothing():
    RE, _ = engine()
    assert emergency_stop(RE) is False


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_one_signal_aborts_and_a_second_is_ignored(signame):
    RE, docs = engine()
    cleaned: list[str] = []
    started = threading.Event()
    signum = getattr(signal, signame)
    before = signal.getsignal(signum)

    def send() -> None:
        started.wait(10)
        for _ in range(2):  # the second must not interrupt the abort's cleanup
            os.kill(os.getpid(), signum)

    threading.Thread(target=send).start()
    with abort_on_signals(RE) as stop, pytest.raises(RunEngineInterrupted):
        RE(endless(cleaned, started))
    assert stop.signum == signum and f"({signame})" in stop.reason
    assert cleaned == ["off"]
    assert [d["exit_status"] for d in docs.stops] == ["abort"]
    assert docs.stops[0]["reason"] == stop.reason
    assert signal.getsignal(signum) is before  # restored


def test_sigterm_pauses_for_the_caller_to_abort():
    RE = RunEngine({})
    docs = Docs()
    RE.subscribe(docs)
    cleaned: list[str] = []
    started = threading.Event()

    def send() -> None:
        started.wait(10)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=send).start()
    with pause_on_signals(RE), pytest.raises(RunEngineInterrupted):
        RE(endless(cleaned, started))
    assert RE.state == "paused"
    RE.abort("stopped")
    assert cleaned == ["off"] and docs.stops[-1]["exit_status"] == "abort"


def failing():
    yield from bps.open_run()
    raise ValueError("current 5 A exceeds the instrument limit")


def test_a_failed_plan_is_logged_at_debug_only_inside(caplog):
    caplog.set_level(logging.DEBUG, logger="bluesky")
    RE, docs = engine()
    with failures_at_debug(), pytest.raises(ValueError):
        RE(failing())
    aborted = [r for r in caplog.records if r.getMessage() == "Run aborted"]
    assert [r.levelno for r in aborted] == [logging.DEBUG]
    assert docs.stops[-1]["reason"] == "current 5 A exceeds the instrument limit"
    caplog.clear()
    with pytest.raises(ValueError):  # outside, bluesky's own level stands
        RE(failing())
    aborted = [r for r in caplog.records if r.getMessage() == "Run aborted"]
    assert [r.levelno for r in aborted] == [logging.ERROR]
