"""Stopping a running plan from outside: Ctrl-C, SIGTERM, SIGHUP and an emergency stop.

A lab run must end the same way whoever stops it: the technique stopped (the cell at open
circuit and switched off, which the plans' ``finalize_wrapper`` does on any exception), every
point measured collected, and the run closed with exit status ``abort`` and a reason.
Bluesky's :meth:`RunEngine.abort` does all of that when it is called while the plan runs, so
every way of stopping here ends in it:

- :func:`emergency_stop` aborts the running plan from Python (another thread, a GUI, a
  watchdog);
- :func:`abort_on_signals` makes Ctrl-C (SIGINT), SIGTERM and SIGHUP do the same while a
  plan runs. The RunEngine must be made with ``context_managers=[]``: bluesky's own SIGINT
  handler pauses at the next checkpoint on the first Ctrl-C (a CCD plan has none, so it ran
  on to the short) and pauses with the cell still on at the second;
- :func:`pause_on_signals` is the in-situ experiment's older contract (SIGTERM and SIGHUP
  pause now, the caller aborts), for a RunEngine that keeps bluesky's SIGINT handler;
- :func:`failures_at_debug` keeps the traceback that bluesky logs when a plan fails or is
  aborted out of the terminal: the error reaches the caller as an exception anyway.

Why not a ``KeyboardInterrupt``: an exception raised into the main thread while the RunEngine
runs panics it (bluesky then skips the cleanup: no stop document, the cell left to the
driver's own guard). Signal handlers here only start a thread that asks the RunEngine.
"""

from __future__ import annotations

import contextlib
import io
import logging
import signal
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from bluesky import RunEngine
from bluesky.utils import TransitionError

__all__ = [
    "ABORT_SIGNALS",
    "RunInterrupted",
    "SignalAbort",
    "abort_on_signals",
    "emergency_stop",
    "failures_at_debug",
    "pause_on_signals",
    "signal_reason",
]

#: The signals that stop a lab run: Ctrl-C, a polite kill, the terminal closing.
ABORT_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

#: How often a stop asked for before the plan started running is tried again (real s).
_RETRY_S = 0.02

#: The potentiostat device's logger: it logs the driver's error, which it also raises.
_DEVICE_LOGGER = "insitu.instruments.devices.potentiostat"

#: The drivers' base: it logs a cell it could not switch off, which the operator must know.
_DRIVER_LOGGER = "insitu.instruments.potentiostat"

#: Loggers that report a failed or aborted plan (with a traceback), besides raising it.
_FAILURE_LOGGERS = ("bluesky", _DEVICE_LOGGER, _DRIVER_LOGGER)


class RunInterrupted(KeyboardInterrupt):
    """A plan was stopped from outside: the cell switched off, the run closed as ``abort``.

    A :class:`KeyboardInterrupt`, so that callers that stop on Ctrl-C stop here too.

    Parameters
    ----------
    reason : str
        Why, as recorded in the run's stop document (``"interrupted by Ctrl-C (SIGINT)"``).
    uid : str, optional
        The run that was closed; ``None`` when the plan was stopped before opening one.
    points : int
        How many points (events) the closed run holds in the catalog.
    """

    def __init__(self, reason: str, uid: str | None = None, points: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.uid = uid
        self.points = points


def signal_reason(signum: int) -> str:
    """The stop reason recorded for a signal (``"interrupted by Ctrl-C (SIGINT)"``)."""
    name = signal.Signals(signum).name
    what = {
        "SIGINT": "interrupted by Ctrl-C",
        "SIGTERM": "stopped by a kill",
        "SIGHUP": "stopped: the terminal was closed",
    }.get(name, "stopped by a signal")
    return f"{what} ({name})"


def emergency_stop(RE: RunEngine, reason: str = "emergency stop") -> bool:
    """Abort the plan ``RE`` is running, as one Ctrl-C does in ``insitu ccd``.

    Call it from any thread but the one blocked in ``RE(plan)`` (a GUI, a watchdog, another
    script's thread). The plan gets an exception at its next message: the potentiostat plans
    stop the technique (open circuit, cell off), bluesky collects every point that arrived and
    closes the run with exit status ``abort`` and ``reason``; ``RE(plan)`` then raises
    :class:`bluesky.utils.RunEngineInterrupted` in its thread.

    Parameters
    ----------
    RE : RunEngine
        The RunEngine running the plan.
    reason : str
        Recorded as the run's stop reason.

    Returns
    -------
    bool
        ``True`` if the abort was accepted; ``False`` if ``RE`` runs nothing (idle) or is
        paused (then the thread that called ``RE(plan)`` got control back and decides).

    Examples
    --------
    >>> threading.Timer(60, emergency_stop, (RE,)).start()  # doctest: +SKIP
    >>> RE(ccd_test(bench.potentiostat))  # doctest: +SKIP
    """
    if RE.state not in ("running", "pausing", "suspending"):
        return False
    # bluesky prints "Aborting: running cleanup..." on stdout, which carries a command's
    # results (--json): the abort call returns as soon as the abort is accepted, so the
    # redirection lasts milliseconds.
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            RE.abort(reason)
        except TransitionError:  # it went idle (or is aborting already) meanwhile
            return False
    return True


class SignalAbort:
    """What :func:`abort_on_signals` saw: the first signal and the reason recorded.

    Attributes
    ----------
    signum : int or None
        The first signal received (later ones are ignored: the abort is under way).
    reason : str or None
        The stop reason given to the RunEngine.
    """

    def __init__(self, RE: RunEngine) -> None:
        self.RE = RE
        self.signum: int | None = None
        self.reason: str | None = None
        self._closed = threading.Event()

    @property
    def requested(self) -> bool:
        """Whether a signal asked for the run to stop."""
        return self.signum is not None

    def handle(self, signum: int, frame: Any) -> None:
        """The signal handler: note the first signal and abort from a thread.

        A handler must not block (the main thread is inside ``RE(plan)``), and a second
        Ctrl-C must not interrupt the abort's cleanup: only the first signal counts.
        """
        if self.signum is not None:
            return
        self.signum = signum
        self.reason = signal_reason(signum)
        threading.Thread(target=self._abort, name="insitu-signal-abort", daemon=True).start()

    def _abort(self) -> None:
        # A signal between entering the context and the RunEngine's start finds it idle:
        # try again until it runs, or until the plan has returned (the context is left).
        assert self.reason is not None
        while not self._closed.is_set():
            if emergency_stop(self.RE, self.reason) or self.RE.state == "paused":
                return
            self._closed.wait(_RETRY_S)

    def close(self) -> None:
        """Stop retrying: the plan has returned."""
        self._closed.set()


@contextlib.contextmanager
def abort_on_signals(
    RE: RunEngine, signals: Sequence[int] = ABORT_SIGNALS
) -> Iterator[SignalAbort]:
    """While inside, each of ``signals`` aborts the running plan (see :func:`emergency_stop`).

    Make ``RE`` with ``context_managers=[]`` so that bluesky's SIGINT handler does not
    replace this one during ``RE(plan)``. Off the main thread (where Python cannot install
    signal handlers) nothing is installed.

    Parameters
    ----------
    RE : RunEngine
        The RunEngine that runs the plan inside the block.
    signals : sequence of int
        Default: SIGINT (Ctrl-C), SIGTERM and SIGHUP.

    Yields
    ------
    SignalAbort
        Whether a signal came, which, and the reason recorded in the run.

    Examples
    --------
    >>> RE = RunEngine({}, context_managers=[])  # doctest: +SKIP
    >>> with abort_on_signals(RE) as stop:  # doctest: +SKIP
    ...     try:
    ...         RE(plan)
    ...     except RunEngineInterrupted:
    ...         print("stopped:", stop.reason)
    """
    state = SignalAbort(RE)
    if threading.current_thread() is not threading.main_thread():
        yield state
        return
    previous = {s: signal.signal(s, state.handle) for s in signals}
    try:
        yield state
    finally:
        state.close()
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def pause_on_signals(
    RE: RunEngine, signals: Sequence[int] = (signal.SIGTERM, signal.SIGHUP)
) -> Iterator[None]:
    """While inside, each of ``signals`` pauses the running plan now; the caller aborts it.

    For a RunEngine that keeps bluesky's SIGINT handler (two Ctrl-C: pause now), so that a
    polite kill (SIGTERM) or a closed terminal (SIGHUP) ends as two Ctrl-C do:
    ``RE(plan)`` raises :class:`~bluesky.utils.RunEngineInterrupted` and the caller calls
    ``RE.abort(reason)``, which switches the cell off. The request is made from a thread: a
    signal handler must not block.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def pause(signum: int, frame: Any) -> None:
        threading.Thread(
            target=RE.request_pause, kwargs={"defer": False}, name="signal-pause", daemon=True
        ).start()

    previous = {s: signal.signal(s, pause) for s in signals}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


class _AtDebug(logging.Filter):
    """Demotes the failure reports to DEBUG (a DEBUG handler still sees them).

    Those are errors with a traceback (bluesky's "Run aborted") and the device's errors (the
    driver's exception, raised to the caller too). A driver that could not switch the cell
    off is not demoted: that is the operator's to act on, so it becomes one line (the
    message and its error's) without the traceback. Warnings, and errors without a traceback
    such as bluesky's "Failed to close run", pass as they are.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR:
            return True
        if record.name == _DRIVER_LOGGER:
            if record.exc_info and record.exc_info[1] is not None:
                record.msg = f"{record.getMessage()}: {record.exc_info[1]}"
                record.args = ()
                record.exc_info = None
                record.exc_text = None
        elif record.exc_info or record.name == _DEVICE_LOGGER:
            record.levelno = logging.DEBUG
            record.levelname = "DEBUG"
        return True


@contextlib.contextmanager
def failures_at_debug(loggers: Sequence[str] = _FAILURE_LOGGERS) -> Iterator[None]:
    """While inside, a failing plan's logged tracebacks go to DEBUG, not to the terminal.

    When a plan fails or is aborted, bluesky logs "Run aborted" with the traceback at ERROR
    and the potentiostat device logs the driver's error; the same exception then reaches the
    caller, which reports it (the command line: one line, the traceback with ``--debug``).
    Without a handler Python prints ERROR records to stderr: 36 lines before the one line a
    limit error deserves. A handler set up for DEBUG (``logging.basicConfig(level=DEBUG)``)
    still gets them. A driver's report that it could not switch the cell off stays at its
    level, as one line.
    """
    at_debug = _AtDebug()
    targets = [logging.getLogger(name) for name in loggers]
    for logger in targets:
        logger.addFilter(at_debug)
    try:
        yield
    finally:
        for logger in targets:
            logger.removeFilter(at_debug)
