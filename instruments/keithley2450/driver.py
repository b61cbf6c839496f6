"""Keithley 2450 SourceMeter driver (SCPI over VISA) implementing :class:`Potentiostat`.

The 2450 is a two-quadrant-plus source-measure unit, not a potentiostat, but as a current
source with a voltage limit it runs the galvanostatic techniques that a symmetric Li|SE|Li
cell needs:

* :class:`~insitu.instruments.potentiostat.GalvanostaticHold` and
  :class:`~insitu.instruments.potentiostat.CurrentSequence`: current source, voltage sense,
  one step (one half-cycle) at a time: the base class
  (:meth:`~insitu.instruments.potentiostat.Potentiostat.stream`) hands this driver a
  sequence step by step, each run as one trigger model that ends with the output off, so
  that a host that dies leaves the cell at rest within one step (the model, and the
  host-side replay that numbers readings, are :mod:`insitu.instruments.keithley2450.trigger`).
  The host streams readings from ``defbuffer1`` (``:TRAC:ACT?``, ``:TRAC:DATA?``), sized to
  the step's reading count (at most 4,000,000 readings; more is refused before anything is
  sent).
* :class:`~insitu.instruments.potentiostat.OpenCircuit`: a 2450 cannot measure with its
  output off in the normal way (the output-off state disconnects or clamps the terminals), so
  open circuit is emulated the standard way: output on, sourcing 0 A, measuring voltage (a
  one-step trigger model as above, without the window). A current source at 0 A draws no
  current, so this is a true open-circuit measurement.
* No EIS: :class:`~insitu.instruments.potentiostat.Impedance` raises
  :class:`~insitu.instruments.errors.UnsupportedTechniqueError` before anything is sent.

Time stamps: ``time_s`` comes from the instrument's own reading time stamps (``SEConds`` and
``FRACtional`` buffer elements), counted from the start of the technique (one interval
before the first reading).

Connection: the :class:`~insitu.instruments.base.Instrument` base (pyvisa with the pyvisa-py
backend by default), raw socket on port 5025 (``TCPIP::<host>::5025::SOCKET``), ``"\\n"`` read
and write termination. Every I/O failure is mapped to the exceptions of
:mod:`insitu.instruments.errors`, naming the instrument and the last command.

Example
-------
::

    with Keithley2450("TCPIP::192.168.0.12::5025::SOCKET") as k:
        print(k.identify())
        data = k.run(GalvanostaticHold(current_A=1e-4, duration_s=600, interval_s=1))
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import ClassVar

import numpy as np
import pandas as pd

from ..base import Instrument
from ..errors import (
    InstrumentConnectionError,
    InstrumentError,
    InstrumentProtocolError,
    InstrumentReportedError,
    LimitError,
)
from ..potentiostat import (
    TIME_SERIES_COLUMNS,
    CurrentSequence,
    GalvanostaticHold,
    Identity,
    Limits,
    OpenCircuit,
    Potentiostat,
    Technique,
    split_steps,
)
from .trigger import (
    CONFIG_LIST,
    MAX_TRIGGER_BLOCKS,
    StepReplay,
    TriggerPlan,
    load_commands,
    plan_technique,
    trigger_model_commands,
)

__all__ = ["Keithley2450"]

log = logging.getLogger(__name__)

#: Largest buffer the 2450 can make (all buffers share the memory).
MAX_BUFFER_POINTS = 4_000_000
#: Readings fetched per ``:TRAC:DATA?`` (bounds the reply to about 500 kB).
FETCH_CHUNK = 10_000
_ELEMENTS = "READ,SOUR,SEC,FRAC"
_RUNNING_STATES = ("RUNNING", "WAITING")


class Keithley2450(Instrument, Potentiostat):
    """Keithley 2450 SourceMeter as a galvanostat for symmetric cells.

    Parameters
    ----------
    resource : str
        VISA resource string, e.g. ``"TCPIP::192.168.0.12::5025::SOCKET"`` or the one an
        emulator returns from ``start()``.
    timeout_s : float
        How long to wait for each reply.
    visa_library : str
        pyvisa backend; ``"@py"`` (pyvisa-py) by default.
    poll_interval_s : float
        Real seconds between two polls of the reading buffer during an acquisition.

    Raises
    ------
    InstrumentConnectionError
        If the resource cannot be opened.

    Notes
    -----
    Nothing is sent when the driver is created; :meth:`identify` asks ``*IDN?``.
    """

    capabilities: ClassVar[frozenset[type[Technique]]] = frozenset(
        {OpenCircuit, GalvanostaticHold, CurrentSequence}
    )
    limits = Limits(max_abs_current_A=1.05, max_abs_voltage_V=210.0, min_interval_s=1e-3)

    def __init__(
        self,
        resource: str,
        *,
        timeout_s: float = 5.0,
        visa_library: str = "@py",
        poll_interval_s: float = 0.02,
    ) -> None:
        # The base's lock (self._io_lock) is around every exchange: cell_off() may come from
        # another thread (a plan's pause/abort handler) while a technique is being polled.
        super().__init__(
            resource,
            name=f"Keithley 2450 ({resource})",
            timeout_s=timeout_s,
            visa_library=visa_library,
            read_termination="\n",
            write_termination="\n",
        )
        self.poll_interval_s = float(poll_interval_s)
        self._closed = False
        # Set once a technique was started: from then on close() must try to switch the
        # output off, however the link looks.
        self._output_used = False

    # --- errors --------------------------------------------------------------------------
    def check_errors(self, after: str | None = None) -> None:
        """Read the error queue; raise :class:`InstrumentReportedError` for the first error.

        The queue is emptied either way so that a later check does not report stale errors.

        Parameters
        ----------
        after : str, optional
            The commands checked (named as the last command in the exception); defaults to
            the last command sent before the check.
        """
        after = after if after is not None else self.last_command
        errors = self._read_errors()
        if errors:
            code, message = errors[0]
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            raise self._error(
                InstrumentReportedError,
                f"the instrument reported error {code}, {message!r}{more}",
                code=code,
                last_command=after,
            )

    def _read_errors(self) -> list[tuple[int, str]]:
        """Empty the error queue; returns its (code, message) entries, oldest first."""
        errors: list[tuple[int, str]] = []
        for _ in range(32):  # bounded: a broken instrument must not loop us forever
            reply = self.query(":SYST:ERR?")
            code_text, _, message = reply.partition(",")
            code = self.parse_number(code_text, int, ":SYST:ERR?")
            if code == 0:
                break
            errors.append((code, message.strip().strip('"')))
        return errors

    # --- Potentiostat API ----------------------------------------------------------------
    def identify(self) -> Identity:
        """Ask ``*IDN?``: ``KEITHLEY INSTRUMENTS,MODEL 2450,<serial>,<firmware>``."""
        manufacturer, model, serial, firmware = self.query_idn()
        if "2450" not in model:
            log.warning("%s: *IDN? says %r, not a Model 2450", self.name, model)
        return Identity(manufacturer, model, serial, firmware, self.resource_name)

    def cell_off(self) -> None:
        """Stop any acquisition and switch the output off (safe to repeat, works mid-run).

        The output state is read back (``:OUTP?``), so when this returns the output is off.
        If the connection is gone, one reconnection is tried so that the output really goes
        off when the instrument is still there.
        """
        with self._io_lock:
            if self._closed:
                return  # close() already switched the output off
            try:
                self._output_off()
                return
            except InstrumentConnectionError as exc:
                log.warning("%s: %s; reconnecting to switch the output off", self.name, exc)
            try:
                self.reopen()
                self._output_off()
            except InstrumentConnectionError as exc:
                raise self._error(
                    InstrumentConnectionError,
                    "could not switch the output off: the instrument is unreachable; switch "
                    "it off at the front panel",
                ) from exc

    def _output_off(self) -> None:
        self.write(":ABOR")
        self.write(":OUTP OFF")
        if self.query_bool(":OUTP?"):
            raise self._error(
                InstrumentReportedError,
                "the output is still on after :OUTP OFF; switch it off at the front panel",
                code=0,
                last_command=":OUTP OFF",
            )

    def close(self) -> None:
        """Switch the output off and release the connection (safe to repeat).

        The output is switched off if this driver started a technique, or if the link works.
        A peer that timed out, dropped the link or is not a 2450 at all (``*IDN?`` answered
        with something else) and was never told to source anything is only disconnected:
        talking to it again would cost another timeout and say nothing new. A failure to
        switch off is logged as one warning line (the traceback at DEBUG level).
        """
        if self._closed:
            return
        if self.is_open and (self._output_used or self.last_failure is None):
            try:
                self.cell_off()
            except InstrumentError as exc:
                log.warning("%s: could not switch the output off while closing: %s", self.name, exc)
                log.debug("%s: switching off while closing failed", self.name, exc_info=True)
            except Exception:
                log.exception("%s: could not switch the output off while closing", self.name)
        self._closed = True
        super().close()

    def check(self, technique: Technique) -> None:
        """Capabilities and limits (see :class:`Potentiostat`), plus what one trigger model
        and the reading buffer can hold.

        A sequence of several steps is sent one step at a time (see
        :meth:`Potentiostat.stream`), so each step must fit on its own.
        """
        super().check(technique)
        loaded = split_steps(technique) if isinstance(technique, CurrentSequence) else (technique,)
        for one in loaded:
            self._check_fits(self._plan(one))

    def _check_fits(self, plan: TriggerPlan) -> None:
        """Raise if one trigger-model run needs more readings or blocks than the 2450 has."""
        total = plan.readings
        if total > MAX_BUFFER_POINTS:
            raise LimitError(
                f"a step needs {total} readings, more than the instrument's buffer of "
                f"{MAX_BUFFER_POINTS}; use a longer sampling interval or shorter steps",
                instrument=self.name,
            )
        blocks = len(trigger_model_commands(plan))
        if blocks > MAX_TRIGGER_BLOCKS:
            raise LimitError(
                f"the technique needs a trigger model of {blocks} blocks, more than the "
                f"instrument's {MAX_TRIGGER_BLOCKS}",
                instrument=self.name,
            )

    # --- techniques ----------------------------------------------------------------------
    def _plan(self, technique: Technique) -> TriggerPlan:
        return plan_technique(technique, self.limits.max_abs_voltage_V)

    def _stream(self, technique: Technique) -> Iterator[pd.DataFrame]:
        plan = self._plan(technique)
        self._output_used = True
        self._load_model(plan)
        self.write(":INIT")
        tracker = StepReplay(plan)
        origin: tuple[int, float] | None = None
        fetched = 0
        while True:
            state, available = self.parse_status(self.query(":TRIG:STAT?;:TRAC:ACT?"))
            running = state in _RUNNING_STATES
            if not running and state != "IDLE":
                self.check_errors()
                raise self._error(
                    InstrumentReportedError,
                    f"the trigger model stopped in state {state} before all readings were made",
                    code=0,
                )
            rows = []
            while fetched < available:
                last = min(available, fetched + FETCH_CHUNK)
                rows.append(self._fetch(fetched + 1, last))
                fetched = last
            raw = pd.concat(rows, ignore_index=True) if rows else _raw_empty()
            if len(raw) and origin is None:
                origin = (int(raw["_sec"].iloc[0]), float(raw["_frac"].iloc[0]))
            raw["step"] = tracker.assign(raw["voltage_V"].to_numpy())
            chunk = (
                self._frame(raw, origin, plan.interval_s) if len(raw) and origin else _empty_frame()
            )
            if not running:
                if not tracker.hit_stop and not tracker.done:
                    raise self._error(
                        InstrumentProtocolError,
                        f"the trigger model ended after {fetched} readings, in step "
                        f"{tracker.step} of {len(plan.steps)}",
                    )
                # Leave the cell at rest once the technique is over (the model's last block
                # already switched the output off; this also reads it back).
                self._output_off()
                chunk.attrs["end_reason"] = "voltage_limit" if tracker.hit_stop else "completed"
                yield chunk
                return
            if len(chunk):
                yield chunk
            time.sleep(self.poll_interval_s)

    def _load_model(self, plan: TriggerPlan) -> None:
        """Source settings, the configuration list of step currents and the trigger model."""
        self._send_block([":ABOR", "*CLS", ':TRIG:LOAD "Empty"'])
        # Start from an empty list; the instrument reports an error if there was none.
        self.write(f':SOUR:CONF:LIST:DEL "{CONFIG_LIST}"')
        self._read_errors()
        self._send_block(load_commands(plan))
        size = self.query_int(f':SOUR:CONF:LIST:SIZE? "{CONFIG_LIST}"')
        if size != len(plan.steps):
            raise self._error(
                InstrumentProtocolError,
                f"the configuration list holds {size} points, expected {len(plan.steps)}",
            )

    def _send_block(self, commands: list[str]) -> None:
        for command in commands:
            self.write(command)
        self.check_errors(after="; ".join(commands[:3]) + ("; ..." if len(commands) > 3 else ""))

    def parse_status(self, reply: str) -> tuple[str, int]:
        """(trigger state, readings in the buffer) from a ``:TRIG:STAT?;:TRAC:ACT?`` reply.

        Raises
        ------
        InstrumentProtocolError
            If the reply is not 3 trigger-state fields and a reading count (≥ 0).
        """
        parts = reply.split(";")
        if len(parts) != 4:
            raise self._error(
                InstrumentProtocolError, f"unexpected reply {reply[:80]!r} to the status poll"
            )
        available = self.parse_number(parts[3], int, ":TRAC:ACT?")
        if not 0 <= available <= MAX_BUFFER_POINTS:
            raise self._error(
                InstrumentProtocolError,
                f"unexpected reading count {parts[3]!r} in the reply to the status poll",
            )
        return parts[0].strip().upper(), available

    def parse_readings(self, reply: str, first: int, last: int) -> pd.DataFrame:
        """Readings ``first..last`` from a ``:TRAC:DATA?`` reply (``READ,SOUR,SEC,FRAC``).

        Returns
        -------
        pandas.DataFrame
            ``voltage_V``, ``current_A``, ``_sec`` (int64) and ``_frac``, one row a reading.

        Raises
        ------
        InstrumentProtocolError
            If the reply is not ``4 × (last - first + 1)`` numbers, or a time stamp is not a
            finite number of seconds.
        """
        command = f':TRAC:DATA? {first}, {last}, "defbuffer1", {_ELEMENTS}'
        try:
            values = np.array(reply.split(","), dtype=float)
        except ValueError as exc:
            raise self._error(
                InstrumentProtocolError,
                f"unparseable buffer data {reply[:80]!r}",
                last_command=command,
            ) from exc
        n = last - first + 1
        if values.size != 4 * n:
            raise self._error(
                InstrumentProtocolError,
                f"expected {4 * n} values for readings {first}..{last}, got {values.size}",
                last_command=command,
            )
        table = values.reshape(n, 4)
        if not (np.abs(table[:, 2:]) < 2.0**53).all():  # also false for nan and inf
            raise self._error(
                InstrumentProtocolError,
                f"readings {first}..{last} carry time stamps that are not finite numbers",
                last_command=command,
            )
        return pd.DataFrame(
            {
                "voltage_V": table[:, 0],
                "current_A": table[:, 1],
                "_sec": table[:, 2].astype(np.int64),
                "_frac": table[:, 3],
            }
        )

    def _fetch(self, first: int, last: int) -> pd.DataFrame:
        reply = self.query(f':TRAC:DATA? {first}, {last}, "defbuffer1", {_ELEMENTS}')
        return self.parse_readings(reply, first, last)

    @staticmethod
    def _frame(raw: pd.DataFrame, origin: tuple[int, float], interval_s: float) -> pd.DataFrame:
        # Seconds and fractions are subtracted separately to keep nanosecond resolution; the
        # first reading comes one interval after the technique starts.
        time_s = (raw["_sec"].to_numpy() - origin[0]) + (raw["_frac"].to_numpy() - origin[1])
        time_s = time_s + interval_s
        return pd.DataFrame(
            {
                "time_s": time_s.astype(float),
                "voltage_V": raw["voltage_V"].to_numpy(),
                "current_A": raw["current_A"].to_numpy(),
                "step": raw["step"].to_numpy().astype(int),
            }
        )


def _raw_empty() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "voltage_V": pd.Series(dtype=float),
            "current_A": pd.Series(dtype=float),
            "_sec": pd.Series(dtype=np.int64),
            "_frac": pd.Series(dtype=float),
        }
    )


def _empty_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {c: pd.Series(dtype=int if c == "step" else float) for c in TIME_SERIES_COLUMNS}
    )
