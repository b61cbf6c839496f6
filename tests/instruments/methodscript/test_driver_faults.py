"""The MethodSCRIPT driver on a damaged wire and against the instrument's own faults (TCP).

The wire's damage is what :class:`~insitu.simulators.faults.FaultyLink` does (characters of a
reply line replaced by noise), or, where a test needs particular lines damaged, the same done
by :class:`Tap`, a recording proxy in front of the emulator.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
import pytest

from insitu.instruments.errors import ComplianceError, InstrumentReportedError
from insitu.instruments.methodscript import codec as ms
from insitu.instruments.methodscript.driver import MethodScriptPotentiostat
from insitu.instruments.potentiostat import (
    CurrentSequence,
    CurrentStep,
    GalvanostaticHold,
    Impedance,
)
from insitu.simulators.cell.model import VirtualCell
from insitu.simulators.clock import SimClock
from insitu.simulators.emulators.methodscript.server import MethodScriptEmulator
from insitu.simulators.faults import FaultyLink, InstrumentFaults, WireFaults

#: The characters FaultyLink garbles with (insitu.simulators.faults).
NOISE = "#@$%&*?~^"
HOLD = GalvanostaticHold(1e-3, 50, interval_s=1, voltage_min_V=-5, voltage_max_V=5)


class Tap:
    """A TCP proxy on 127.0.0.1 in front of a ``socket://`` instrument.

    It records every reply line it forwards (:attr:`lines`, without ``\\n``) and, while
    :attr:`damage` is set, sends each reply line through it: a cable that damages the lines a
    test picks.
    """

    def __init__(self, target: str) -> None:
        host, port = target.removeprefix("socket://").rsplit(":", 1)
        self.target = (host, int(port))
        self.lines: list[bytes] = []
        self.damage: Callable[[bytes], bytes] | None = None
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.resource = f"socket://127.0.0.1:{self.port}"
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._sockets += [client, upstream]
            for src, dst, replies in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(target=self._pump, args=(src, dst, replies), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, replies: bool) -> None:
        pending = b""
        try:
            while data := src.recv(65536):
                if not replies:
                    dst.sendall(data)
                    continue
                *lines, pending = (pending + data).split(b"\n")
                self.lines += lines
                damage = self.damage or (lambda line: line)
                dst.sendall(b"".join(damage(line) + b"\n" for line in lines))
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._server.close()
        for s in self._sockets:
            s.close()


@contextlib.contextmanager
def emulator(faults: InstrumentFaults | None = None, speedup: float = 1e5) -> Iterator:
    emu = MethodScriptEmulator(VirtualCell("A-LPS", seed=3), SimClock(speedup), faults=faults)
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()


@contextlib.contextmanager
def driver(resource: str, timeout_s: float = 2.0) -> Iterator[MethodScriptPotentiostat]:
    pstat = MethodScriptPotentiostat(resource, timeout_s=timeout_s)
    try:
        yield pstat
    finally:
        pstat.close()


def stream_until_error(pstat, technique, error: type[Exception]) -> tuple[pd.DataFrame, Exception]:
    """The points streamed before ``technique`` fails with ``error``, and the error."""
    chunks = []
    with pytest.raises(error) as caught:
        for chunk in pstat.stream(technique):
            chunks.append(chunk)
    data = pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame()
    return data, caught.value


def rows_of(packages: list[bytes]) -> np.ndarray:
    """(time, potential, current) of package lines, by the codec's general parser."""
    out = []
    for line in packages:
        values = {v.type: v.value for v in ms.parse_package(line.decode("ascii"))}
        out.append((values["eb"], values["ab"], values["ba"]))
    return np.array(out)


# --- a garbling cable ------------------------------------------------------------------------
def test_garbled_packages_are_lost_points_and_every_other_point_is_exact():
    """2000 packages through a FaultyLink garbling 2 % of the reply lines: the run completes,
    ``points_lost`` is the number of data packages the link garbled (read off the traffic
    on both sides of it), and every other point is the one the instrument sent, at its own
    time."""
    with emulator() as emu:
        clean = Tap(emu.resource)  # what the instrument sent
        link = FaultyLink(("127.0.0.1", clean.port), WireFaults(garble=0.02, seed=7))
        delivered = Tap(f"socket://127.0.0.1:{link.port}")  # what reached the driver
        try:
            with driver(delivered.resource) as pstat:
                data = pstat.run(
                    GalvanostaticHold(1e-3, 2000, interval_s=1, voltage_min_V=-5, voltage_max_V=5)
                )
                lost = pstat.points_lost
        finally:
            delivered.close()
            link.stop()
            clean.close()
    assert len(clean.lines) == len(delivered.lines)  # garbling keeps every line
    pairs = list(zip(clean.lines, delivered.lines, strict=True))
    garbled = [sent for sent, got in pairs if sent != got]
    garbled_packages = [sent for sent in garbled if sent.startswith(b"P")]
    assert link.injected["garble"] >= len(garbled)
    assert 10 <= len(garbled_packages) <= 100  # tens of packages hit
    assert data.attrs["end_reason"] == "completed"
    assert lost == len(garbled_packages)
    kept = [sent for sent, got in pairs if sent.startswith(b"P") and sent == got]
    assert len(data) == 2000 - lost == len(kept)
    expected = rows_of(kept)
    assert np.array_equal(data[["time_s", "voltage_V", "current_A"]].to_numpy(), expected)
    # Time stays right: a gap where a point was lost, the others at their own times.
    assert set(np.round(data["time_s"])) == set(range(1, 2001)) - {
        round(t) for t in rows_of(garbled_packages)[:, 0]
    }


def test_the_lost_limit_point_still_stops_the_sequence():
    """The package beyond the voltage window (which stops the step) is the one lost: the step
    ended early on a lost package, so it ended at the window, and the sequence stops."""
    seq = CurrentSequence(
        steps=(CurrentStep(1e-3, 5.0), CurrentStep(50e-3, 100.0), CurrentStep(1e-3, 5.0)),
        interval_s=1.0,
        voltage_min_V=-2.0,
        voltage_max_V=2.0,
    )

    def damage_beyond_window(line: bytes) -> bytes:
        if line.startswith(b"P") and rows_of([line])[0, 1] > 2.0:
            return line[:20] + b"#" + line[21:]
        return line

    with emulator() as emu:
        tap = Tap(emu.resource)
        tap.damage = damage_beyond_window
        try:
            with driver(tap.resource) as pstat:
                data = pstat.run(seq)
                lost = pstat.points_lost
        finally:
            tap.close()
    assert data.attrs["end_reason"] == "voltage_limit" and lost == 1
    assert set(data["step"]) == {0} and len(data) == 5
    assert tap.lines.count(b"M000A") == 2  # the third step was never sent


def test_a_lost_last_point_still_gives_the_time_the_step_ended():
    """The last chunk says when the script's last point was taken, lost or not: where the
    next step of a sequence runs on from."""

    def damage_last(line: bytes) -> bytes:
        if line.startswith(b"P") and rows_of([line])[0, 0] >= 49.5:
            return line[:20] + b"?" + line[21:]
        return line

    with emulator() as emu:
        tap = Tap(emu.resource)
        tap.damage = damage_last
        try:
            with driver(tap.resource) as pstat:
                chunks = list(pstat.stream(HOLD))
                lost = pstat.points_lost
        finally:
            tap.close()
    data = pd.concat(chunks, ignore_index=True)
    assert lost == 1 and data["time_s"].iloc[-1] == pytest.approx(49.0)
    assert chunks[-1].attrs["end_reason"] == "completed"
    assert chunks[-1].attrs["end_time_s"] == pytest.approx(50.0)


# --- damaged framing lines -------------------------------------------------------------------
def damage_framing(noise: str, position: int) -> Callable[[bytes], bytes]:
    """Replace one character of every reply line that is not a package (nor empty)."""

    def damage(line: bytes) -> bytes:
        if not line or line.startswith(b"P"):
            return line
        out = bytearray(line)
        out[position % len(out)] = ord(noise)
        return bytes(out)

    return damage


FRAMING_DAMAGE = [("#", 0), ("#", -1), ("*", 0), ("*", -1)]


@pytest.mark.parametrize(("noise", "position"), FRAMING_DAMAGE)
def test_damaged_framing_lines_do_not_stop_a_run(noise, position):
    """``e``, ``M000A``, ``*`` and the cell_off script's ``e`` all damaged: every point
    arrives and nothing waits for a line that never comes (the driver's 1 s timeout would
    raise)."""
    with emulator() as emu:
        tap = Tap(emu.resource)
        tap.damage = damage_framing(noise, position)
        try:
            with driver(tap.resource, timeout_s=1.0) as pstat:
                data = pstat.run(HOLD)
                assert pstat.points_lost == 0
                pstat.cell_off()
        finally:
            tap.close()
        assert not emu.cell_is_on and not emu.running
    assert data.attrs["end_reason"] == "completed"
    np.testing.assert_allclose(data["time_s"], np.arange(1, 51), atol=1e-6)
    assert b"M000A" in tap.lines and b"e" in tap.lines  # these were there, and damaged


@pytest.mark.parametrize(("noise", "position"), FRAMING_DAMAGE)
def test_a_damaged_error_line_still_ends_the_technique(noise, position):
    with emulator(InstrumentFaults(error_after=20)) as emu:
        tap = Tap(emu.resource)
        tap.damage = damage_framing(noise, position)
        try:
            with driver(tap.resource, timeout_s=1.0) as pstat:
                data, err = stream_until_error(pstat, HOLD, InstrumentReportedError)
        finally:
            tap.close()
        assert not emu.cell_is_on and not emu.running
    assert err.code == 0x000E and "damaged on the wire" in str(err)
    assert len(data) == 20
    assert any(line.startswith(b"!000E") for line in tap.lines)


@pytest.mark.parametrize(("noise", "position"), FRAMING_DAMAGE)
def test_an_abort_with_damaged_replies_leaves_the_driver_in_step(noise, position, caplog):
    """The consumer stops early: ``Z``'s acknowledgement, the loop end and the cell_off
    script's ``e`` come damaged. The cell goes off without a complaint and the next
    technique reads clean."""
    with emulator(speedup=1e3) as emu:
        tap = Tap(emu.resource)
        try:
            with driver(tap.resource, timeout_s=1.0) as pstat:
                stream = pstat.stream(
                    GalvanostaticHold(1e-3, 3600, interval_s=1, voltage_min_V=-5, voltage_max_V=5)
                )
                with caplog.at_level(logging.WARNING):
                    assert len(next(stream))
                    tap.damage = damage_framing(noise, position)  # from here on
                    stream.close()
                assert not emu.cell_is_on and not emu.running
                assert not [r for r in caplog.records if "switch the cell off" in r.message]
                tap.damage = None
                emu.clock.speedup = 1e5
                after = pstat.run(HOLD)
        finally:
            tap.close()
    assert len(after) == 50 and after.attrs["end_reason"] == "completed"
    assert b"Z" in tap.lines or b"Z!0006" in tap.lines


# --- the instrument's own faults --------------------------------------------------------------
def test_the_instruments_own_error_ends_the_technique():
    with emulator(InstrumentFaults(error_after=25)) as emu, driver(emu.resource) as pstat:
        data, err = stream_until_error(pstat, HOLD, InstrumentReportedError)
        assert not emu.cell_is_on and not emu.running
        assert pstat.identify().model == "EmStat4 HR"  # the link is in step
    assert err.code == 0x000E
    message = str(err)
    assert "\n" not in message and "0x000E" in message and "overflow" in message
    assert "switched the cell off" in message and "run it again" in message
    assert err.last_command.strip().startswith("meas_loop_cp")
    np.testing.assert_allclose(data["time_s"], np.arange(1, 26), atol=1e-6)


def test_an_overloaded_reading_is_a_compliance_error():
    with emulator(InstrumentFaults(overload_after=30)) as emu, driver(emu.resource) as pstat:
        data, err = stream_until_error(pstat, HOLD, ComplianceError)
        assert not emu.cell_is_on and not emu.running
        assert pstat.identify().model == "EmStat4 HR"
    assert err.time_s == pytest.approx(31.0)  # the first flagged point
    message = str(err)
    assert "\n" not in message and "overload" in message and "t = 31 s" in message
    assert "WE vs RE potential (ab)" in message and "0.001 A" in message
    np.testing.assert_allclose(data["time_s"], np.arange(1, 31), atol=1e-6)


def test_an_overloaded_reading_in_galvanostatic_eis_is_a_compliance_error():
    eis = Impedance(
        frequency_start_Hz=100e3,
        frequency_stop_Hz=10,
        mode="galvanostatic",
        amplitude=10e-6,
        points_per_decade=2,
    )
    with emulator(InstrumentFaults(overload_after=4)) as emu, driver(emu.resource) as pstat:
        data, err = stream_until_error(pstat, eis, ComplianceError)
        assert not emu.cell_is_on and not emu.running
    assert err.time_s is None and len(data) == 4
    assert "Hz" in str(err)
