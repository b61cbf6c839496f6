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

Faults:

* A reply garbled on the wire is asked for again when the query changes nothing (the status
  poll, a buffer read by index range, ``:OUTP?``, ``:SYST:ERR:COUN?``; see
  :meth:`~insitu.instruments.base.Instrument.query_parsed`), at most :data:`PARSE_TRIES`
  times in all; buffer
  readings are asked for by index, so a repeated read neither skips nor repeats a reading.
  ``:SYST:ERR?`` empties the error queue and is never asked again: its count is asked first.
* A link that drops while a technique runs is opened again for those same queries (the
  trigger model runs inside the instrument, whatever happens to the connection, and its
  readings wait in the buffer): the technique goes on and no reading is lost. Nothing that
  changes the instrument is sent again.
* Each reading comes with its source status (``SOURSTATus``, read with the data: a few bytes
  per reading, and no extra exchange). A reading whose source was limited (compliance) is the
  cut-off when the voltage window asked for the limit on its side (the voltage limit ``VLIM``
  *is* the window there: the instrument enforces the cut-off itself, ``end_reason``
  ``"voltage_limit"``); anywhere else -- open circuit, or the instrument's own range below the
  window -- the instrument could not source what was asked: the technique ends with the
  readings before it and :class:`~insitu.instruments.errors.ComplianceError`.
* The status poll carries the status byte (``*STB?``): an error in the queue while a technique
  runs (or a model that stopped by itself) ends the technique with the readings made so far
  and :class:`~insitu.instruments.errors.InstrumentReportedError`, the instrument's code and
  message. In both cases the trigger model is aborted and the output switched off first.

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
    ComplianceError,
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
#: Readings fetched per ``:TRAC:DATA?`` (bounds the reply to about 600 kB).
FETCH_CHUNK = 10_000
#: Tries of a query that changes nothing whose reply does not parse (garbled on the wire).
#: Each try fails with the line's garble rate p, so a query fails with p**PARSE_TRIES: with
#: p = 5 % and the ~130 such queries of a simulated CCD, 3 tries fail 1.6 % of runs, 5 tries
#: 4e-5. A try costs one exchange, and only when a reply was garbled.
PARSE_TRIES = 5
_ELEMENTS = "READ,SOUR,SEC,FRAC,SOURSTAT"
_N_ELEMENTS = 5
#: The status poll: trigger state (3 fields), readings in the buffer, status byte.
_POLL = ":TRIG:STAT?;:TRAC:ACT?;*STB?"
_RUNNING_STATES = ("RUNNING", "WAITING")
#: The states ``:TRIGger:STATe?`` answers (Reference Manual 2450-901-01); anything else is a
#: reply garbled on the wire.
TRIGGER_STATES = frozenset(
    {"IDLE", "RUNNING", "WAITING", "EMPTY", "BUILDING", "FAILED", "ABORTING", "ABORTED"}
)
#: Source status bit of a reading (``SOURSTATus``): the source was limited, i.e. in compliance
#: (2450-901-01 Rev. B, bufferVar.sourcestatuses, bit 5, value 32).
STAT_LIMIT = 32
#: Status byte bit 2: an error is in the error queue (EAV).
_STB_EAV = 4


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
        """Empty the error queue; returns its (code, message) entries, oldest first.

        ``:SYST:ERR?`` takes the entry it answers out of the queue, so it is never asked
        again: how many entries there are is asked first (``:SYST:ERR:COUN?``, asked again
        while garbled), then each is read once. An entry whose code came garbled is kept
        with code 0 and its reply as the message: there was an error, and it is reported.
        """
        count = self.query_int(":SYST:ERR:COUN?", tries=PARSE_TRIES, retry=True)
        errors: list[tuple[int, str]] = []
        for _ in range(min(max(count, 0), 32)):  # bounded: a broken instrument must not loop
            reply = self.query(":SYST:ERR?")
            code_text, _, message = reply.partition(",")
            try:
                code = self.parse_number(code_text, int, ":SYST:ERR?")
            except InstrumentProtocolError:
                errors.append((0, f"(code unreadable, reply {reply[:80]!r})"))
                continue
            if code == 0:
                break
            errors.append((code, message.strip().strip('"')))
        return errors

    # --- Potentiostat API ----------------------------------------------------------------
    def identify(self) -> Identity:
        """Ask ``*IDN?``: ``KEITHLEY INSTRUMENTS,MODEL 2450,<serial>,<firmware>``."""
        manufacturer, model, serial, firmware = self.query_idn(tries=PARSE_TRIES)
        if "2450" not in model:
            log.warning("%s: *IDN? says %r, not a Model 2450", self.name, model)
        return Identity(manufacturer, model, serial, firmware, self.resource_name)

    def cell_off(self) -> None:
        """Stop any acquisition and switch the output off (safe to repeat, works mid-run).

        The output state is read back (``:OUTP?``), so when this returns the output is off;
        a read-back garbled on the wire is asked again, with ``:OUTP OFF`` sent again before
        each try. If the connection is gone, one reconnection is tried so that the output
        really goes off when the instrument is still there.
        """
        with self._io_lock:
            if self._closed:
                return  # close() already switched the output off
            try:
                self._output_off()
            except InstrumentConnectionError as exc:
                raise self._error(
                    InstrumentConnectionError,
                    "could not switch the output off: the instrument is unreachable; switch "
                    "it off at the front panel",
                ) from exc

    def _output_off(self) -> None:
        """Abort any trigger model and switch the output off, read back (``:OUTP?``).

        Switching off changes nothing when done twice, so a link that drops on the way is
        opened again once and the whole exchange repeated: the output must go off when the
        instrument is still there.
        """
        try:
            self._output_off_once()
        except InstrumentConnectionError as exc:
            self._reconnect(exc, "to switch the output off")
            self._output_off_once()

    def _output_off_once(self) -> None:
        """:meth:`_output_off` on the link as it is.

        A read-back that comes garbled says nothing: ``:OUTP OFF`` (which changes nothing
        when the output is off) is sent again and the state asked again, up to
        :data:`PARSE_TRIES` times, before the error is raised.
        """
        self.write(":ABOR")
        for attempt in range(1, PARSE_TRIES + 1):
            self.write(":OUTP OFF")
            try:
                on = self.parse_number(self.query(":OUTP?"), bool, ":OUTP?")
                break
            except InstrumentProtocolError as exc:
                if attempt == PARSE_TRIES:
                    raise self._error(
                        InstrumentProtocolError,
                        f"{exc.message} (asked {PARSE_TRIES} times, :OUTP OFF sent before "
                        "each): the output state is unknown; check it at the front panel",
                        last_command=":OUTP?",
                    ) from exc
                log.info("%s: %s; switching off again", self.name, exc.message)
        if on:
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
            state, available, error_queued = self._poll()
            running = state in _RUNNING_STATES
            raw = self._fetch_new(fetched, available)
            fetched = max(fetched, available)
            if len(raw) and origin is None:
                origin = (int(raw["_sec"].iloc[0]), float(raw["_frac"].iloc[0]))
            limited = self._first_compliance(raw, plan)
            kept = raw.iloc[:limited] if limited is not None else raw
            kept = kept.assign(step=tracker.assign(kept["voltage_V"].to_numpy()))
            chunk = self._frame(kept, origin, plan.interval_s) if origin else _empty_frame()
            if limited is not None:
                assert origin is not None  # a limited reading was read, so one was
                yield from _nonempty(chunk)
                raise self._compliance(raw.iloc[[limited]], origin, plan)
            if error_queued or (not running and state != "IDLE"):
                yield from _nonempty(chunk)
                raise self._stopped_by_instrument(state, running)
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
            yield from _nonempty(chunk)
            time.sleep(self.poll_interval_s)

    def _poll(self) -> tuple[str, int, bool]:
        """(trigger state, readings in the buffer, whether an error is queued), asked again
        while the reply comes garbled."""
        return self.query_parsed(_POLL, self.parse_status, tries=PARSE_TRIES, retry=True)

    def _fetch_new(self, fetched: int, available: int) -> pd.DataFrame:
        """Readings ``fetched + 1 .. available``, in chunks of :data:`FETCH_CHUNK`."""
        rows = []
        while fetched < available:
            last = min(available, fetched + FETCH_CHUNK)
            rows.append(self._fetch(fetched + 1, last))
            fetched = last
        return pd.concat(rows, ignore_index=True) if rows else _raw_empty()

    @staticmethod
    def _first_compliance(raw: pd.DataFrame, plan: TriggerPlan) -> int | None:
        """Row of the first reading in compliance that is not the cut-off, or None.

        ``VLIM`` is the voltage window's bound where the window asks for it (see
        :func:`~insitu.instruments.keithley2450.trigger.plan_technique`): a reading limited
        there is the cell reaching the cut-off, which the instrument enforces itself and
        :class:`StepReplay` ends the step at. A limited reading anywhere else (open circuit,
        which has no window; a window beyond the instrument's range) means the instrument
        could not source what was asked.
        """
        limited = (raw["_status"].to_numpy() & STAT_LIMIT) != 0
        for row in np.flatnonzero(limited):
            if not plan.is_cutoff(float(raw["voltage_V"].iloc[row])):
                return int(row)
        return None

    def _compliance(
        self, raw: pd.DataFrame, origin: tuple[int, float], plan: TriggerPlan
    ) -> ComplianceError:
        """The error for the reading in compliance ``raw`` (one row), after aborting the
        model and switching the output off."""
        time_s = float(_times(raw, origin, plan.interval_s)[0])
        self._halt()
        if plan.requested is None:
            what = (
                "holding 0 A (open circuit), the cell's voltage went beyond it: check the cell "
                "and its connections"
            )
        else:
            low, high = plan.requested
            what = (
                f"the voltage window {low:g} .. {high:g} V reaches beyond what the instrument "
                f"can source: keep it within ±{plan.vlim:g} V (the limit is then the cut-off) "
                "or lower the current"
            )
        return self._error(
            ComplianceError,
            f"the source reached its voltage limit of {plan.vlim:g} V at t = {time_s:g} s of "
            f"the step (reading {float(raw['voltage_V'].iloc[0]):g} V); the technique was "
            f"stopped and the output switched off; {what}",
            time_s=time_s,
            last_command=_POLL,
        )

    def _stopped_by_instrument(self, state: str, running: bool) -> InstrumentError:
        """The error when the instrument queued an error or stopped the model by itself.

        The model is aborted and the output switched off first; the instrument's own error,
        if it has one, is raised (:meth:`check_errors`), else the state it stopped in.
        """
        self._halt()
        self.check_errors(after=_POLL)
        if running:
            message = (
                "the instrument signalled an error while the technique ran, but its error "
                "queue was empty when read; the technique was stopped and the output switched "
                "off"
            )
        else:
            message = (
                f"the trigger model stopped in state {state} before all readings were made; "
                "the output was switched off"
            )
        return self._error(InstrumentReportedError, message, code=0, last_command=_POLL)

    def _halt(self) -> None:
        """Abort the trigger model and switch the output off, before an error is raised.

        A failure here must not hide the error that ended the technique: it is logged at
        DEBUG, and :meth:`Potentiostat.stream` switches off once more (and warns) when the
        error propagates.
        """
        try:
            self._output_off()
        except InstrumentError:
            log.debug("%s: switching off before raising failed", self.name, exc_info=True)

    def _load_model(self, plan: TriggerPlan) -> None:
        """Source settings, the configuration list of step currents and the trigger model.

        Nothing runs while a model is loaded, and loading starts from ``:ABOR`` and
        ``*CLS``, so a link that drops on the way is opened again once and the whole load
        repeated. (Only ``:SYST:ERR?`` could not simply be asked again: it takes its entry
        out of the queue.)
        """
        try:
            self._load_model_once(plan)
        except InstrumentConnectionError as exc:
            self._reconnect(exc, "to load the technique again")
            self._load_model_once(plan)

    def _reconnect(self, cause: InstrumentConnectionError, why: str) -> None:
        """Open the dropped link again (logged), or raise with both reasons."""
        log.warning("%s: %s; reconnecting %s", self.name, cause, why)
        self.reconnect(cause, what=f"reconnecting {why}")

    def _load_model_once(self, plan: TriggerPlan) -> None:
        self._send_block([":ABOR", "*CLS", ':TRIG:LOAD "Empty"'])
        # Start from an empty list; the instrument reports an error if there was none.
        self.write(f':SOUR:CONF:LIST:DEL "{CONFIG_LIST}"')
        self._read_errors()
        self._send_block(load_commands(plan))
        size = self.query_int(
            f':SOUR:CONF:LIST:SIZE? "{CONFIG_LIST}"', tries=PARSE_TRIES, retry=True
        )
        if size != len(plan.steps):
            raise self._error(
                InstrumentProtocolError,
                f"the configuration list holds {size} points, expected {len(plan.steps)}",
            )

    def _send_block(self, commands: list[str]) -> None:
        for command in commands:
            self.write(command)
        self.check_errors(after="; ".join(commands[:3]) + ("; ..." if len(commands) > 3 else ""))

    def parse_status(self, reply: str) -> tuple[str, int, bool]:
        """(trigger state, readings in the buffer, whether an error is queued) from a
        ``:TRIG:STAT?;:TRAC:ACT?;*STB?`` reply.

        Every field is checked (a known trigger state twice, the block number, the count, the
        status byte), so that a reply garbled on the wire is refused rather than misread.

        Raises
        ------
        InstrumentProtocolError
            If the reply is not 2 trigger states, a block number, a reading count (≥ 0) and a
            status byte.
        """
        parts = [p.strip() for p in reply.split(";")]
        states = [p.upper() for p in parts[:2]]
        if len(parts) != 5 or not all(state in TRIGGER_STATES for state in states):
            raise self._error(
                InstrumentProtocolError,
                f"unexpected reply {reply[:80]!r} to the status poll",
                last_command=_POLL,
            )
        block = self.parse_number(parts[2], int, ":TRIG:STAT?")
        available = self.parse_number(parts[3], int, ":TRAC:ACT?")
        status_byte = self.parse_number(parts[4], int, "*STB?")
        if not 0 <= available <= MAX_BUFFER_POINTS or block < 0 or not 0 <= status_byte <= 255:
            raise self._error(
                InstrumentProtocolError,
                f"unexpected numbers in the reply {reply[:80]!r} to the status poll",
                last_command=_POLL,
            )
        return states[0], available, bool(status_byte & _STB_EAV)

    def parse_readings(self, reply: str, first: int, last: int) -> pd.DataFrame:
        """Readings ``first..last`` from a ``:TRAC:DATA?`` reply (``READ,SOUR,SEC,FRAC,
        SOURSTAT``).

        Returns
        -------
        pandas.DataFrame
            ``voltage_V``, ``current_A``, ``_sec`` (int64), ``_frac`` and ``_status`` (the
            source status bits, int64), one row a reading.

        Raises
        ------
        InstrumentProtocolError
            If the reply is not ``5 × (last - first + 1)`` numbers, or a time stamp is not a
            finite number of seconds, or a status is not a whole number of 0 to 65535.
        """
        command = _fetch_command(first, last)
        try:
            values = np.array(reply.split(","), dtype=float)
        except ValueError as exc:
            raise self._error(
                InstrumentProtocolError,
                f"unparseable buffer data {reply[:80]!r}",
                last_command=command,
            ) from exc
        n = last - first + 1
        if values.size != _N_ELEMENTS * n:
            raise self._error(
                InstrumentProtocolError,
                f"expected {_N_ELEMENTS * n} values for readings {first}..{last}, "
                f"got {values.size}",
                last_command=command,
            )
        table = values.reshape(n, _N_ELEMENTS)
        if not (np.abs(table[:, 2:4]) < 2.0**53).all():  # also false for nan and inf
            raise self._error(
                InstrumentProtocolError,
                f"readings {first}..{last} carry time stamps that are not finite numbers",
                last_command=command,
            )
        status = table[:, 4]
        if not ((status >= 0) & (status <= 0xFFFF) & (status == np.floor(status))).all():
            raise self._error(
                InstrumentProtocolError,
                f"readings {first}..{last} carry source statuses that are not status bits",
                last_command=command,
            )
        return pd.DataFrame(
            {
                "voltage_V": table[:, 0],
                "current_A": table[:, 1],
                "_sec": table[:, 2].astype(np.int64),
                "_frac": table[:, 3],
                "_status": status.astype(np.int64),
            }
        )

    def _fetch(self, first: int, last: int) -> pd.DataFrame:
        """Readings ``first..last``; the same range is asked again while the reply comes
        garbled, so no reading is skipped or read twice."""
        return self.query_parsed(
            _fetch_command(first, last),
            lambda reply: self.parse_readings(reply, first, last),
            tries=PARSE_TRIES,
            retry=True,
        )

    @staticmethod
    def _frame(raw: pd.DataFrame, origin: tuple[int, float], interval_s: float) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "time_s": _times(raw, origin, interval_s),
                "voltage_V": raw["voltage_V"].to_numpy(),
                "current_A": raw["current_A"].to_numpy(),
                "step": raw["step"].to_numpy().astype(int),
            }
        )


def _times(raw: pd.DataFrame, origin: tuple[int, float], interval_s: float) -> np.ndarray:
    """The technique's time of each reading: from its time stamps, the first one interval
    after the start."""
    # Seconds and fractions are subtracted separately to keep nanosecond resolution.
    time_s = (raw["_sec"].to_numpy() - origin[0]) + (raw["_frac"].to_numpy() - origin[1])
    return (time_s + interval_s).astype(float)


def _fetch_command(first: int, last: int) -> str:
    return f':TRAC:DATA? {first}, {last}, "defbuffer1", {_ELEMENTS}'


def _nonempty(chunk: pd.DataFrame) -> Iterator[pd.DataFrame]:
    """``chunk`` if it holds points (to ``yield from``), else nothing."""
    if len(chunk):
        yield chunk


def _raw_empty() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "voltage_V": pd.Series(dtype=float),
            "current_A": pd.Series(dtype=float),
            "_sec": pd.Series(dtype=np.int64),
            "_frac": pd.Series(dtype=float),
            "_status": pd.Series(dtype=np.int64),
        }
    )


def _empty_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {c: pd.Series(dtype=int if c == "step" else float) for c in TIME_SERIES_COLUMNS}
    )
