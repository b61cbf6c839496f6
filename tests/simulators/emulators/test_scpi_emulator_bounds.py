"""The SCPI emulators cannot be made to fill memory from the wire (issue 12).

The Keithley 2450 and Lake Shore 336 emulators log what they receive for tests; the log keeps
the latest lines, each cut short, whatever a client sends. The 2450's reading buffers and
configuration lists are bounded together: one more is SCPI -225 "Out of memory".
"""

from __future__ import annotations

import socket

import pytest

from insitu.simulators.cell.model import VirtualCell
from insitu.simulators.clock import SimClock
from insitu.simulators.emulators.keithley2450.server import Keithley2450Emulator
from insitu.simulators.emulators.keithley2450.state import (
    MAX_BUFFER_POINTS,
    MAX_BUFFERS,
    MAX_CONFIG_LISTS,
)
from insitu.simulators.emulators.line_server import CommandLog

pytestmark = pytest.mark.timeout(60)


def _query(sock: socket.socket, text: str) -> str:
    sock.sendall(text.encode() + b"\n")
    reply = b""
    while not reply.endswith(b"\n"):
        data = sock.recv(65536)
        assert data, "the emulator closed the connection"
        reply += data
    return reply.decode().strip()


def test_keithley_keeps_a_bounded_log_of_large_lines():
    with Keithley2450Emulator(VirtualCell("A-LPS"), SimClock(speedup=1e4)) as emu:
        with socket.create_connection(("127.0.0.1", emu.port), timeout=10) as sock:
            # Lines just under the 1 MiB input buffer are executed (and rejected), not kept.
            big = ":SYST:BEEP " + "9" * (emu.max_line - 20)
            for _ in range(40):
                sock.sendall(big.encode() + b"\n")
            # More lines than the log keeps.
            sock.sendall(b"*CLS\n" * (emu.commands.max_lines + 500))
            assert _query(sock, "*IDN?").startswith("KEITHLEY INSTRUMENTS,MODEL 2450")
        log = emu.commands
        assert len(log) == log.max_lines
        assert max(len(line) for line in log) <= log.max_chars
        assert log[-1] == "*IDN?" and log[-2] == "*CLS"


def test_command_log_is_a_list_that_keeps_the_latest_lines():
    log = CommandLog(max_lines=3, max_chars=10)
    for line in ["a", "b", "c", "d", "0123456789abc"]:
        log.append(line)
    assert log == ["c", "d", "0123456..."]
    assert log.count("d") == 1


@pytest.fixture
def scpi():
    with Keithley2450Emulator(VirtualCell("A-LPS"), SimClock(speedup=1e4)) as emu:
        with socket.create_connection(("127.0.0.1", emu.port), timeout=10) as sock:
            yield sock


def _error(sock: socket.socket) -> str:
    return _query(sock, ":SYST:ERR?")


def test_reading_buffers_share_a_bounded_memory(scpi):
    # The driver's largest request fits beside the default buffers ...
    scpi.sendall(f':TRAC:POIN {MAX_BUFFER_POINTS}, "defbuffer1"\n'.encode())
    assert _error(scpi).startswith("0,")
    # ... but a further buffer, or a larger default one beside it, does not.
    scpi.sendall(f':TRAC:MAKE "big", {MAX_BUFFER_POINTS}\n'.encode())
    assert _error(scpi).startswith("-225,")
    scpi.sendall(b':TRAC:POIN 300000, "defbuffer2"\n')
    assert _error(scpi).startswith("-225,")
    assert _query(scpi, ':TRAC:POIN? "defbuffer2"') == "100000"
    assert _query(scpi, "*IDN?").startswith("KEITHLEY INSTRUMENTS,MODEL 2450")


def test_number_of_buffers_and_lists_is_bounded(scpi):
    # Two default buffers exist already.
    scpi.sendall(b"".join(b':TRAC:MAKE "b%d", 10\n' % i for i in range(MAX_BUFFERS - 2)))
    assert _error(scpi).startswith("0,")
    scpi.sendall(b':TRAC:MAKE "one_more", 10\n')
    assert _error(scpi).startswith("-225,")
    scpi.sendall(b"".join(b':SOUR:CONF:LIST:CRE "l%d"\n' % i for i in range(MAX_CONFIG_LISTS)))
    assert _error(scpi).startswith("0,")
    scpi.sendall(b':SOUR:CONF:LIST:CRE "one_more"\n')
    assert _error(scpi).startswith("-225,")
    assert _query(scpi, "*IDN?").startswith("KEITHLEY INSTRUMENTS,MODEL 2450")
