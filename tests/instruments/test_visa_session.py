"""VisaSession against the tiny line-based TCP server of ``conftest.py``, over pyvisa-py."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from insitu.instruments.errors import InstrumentConnectionError, InstrumentTimeoutError
from insitu.instruments.visa_session import VisaSession

pytestmark = pytest.mark.timeout(30)

NAME = "Test instrument (tcp)"


@pytest.fixture
def session(line_server) -> Iterator[VisaSession]:
    s = VisaSession(
        line_server.resource,
        name=NAME,
        timeout_s=0.2,
        read_termination="\r\n",
        write_termination="\n",
    )
    try:
        yield s
    finally:
        s.close()


def test_query_strips_the_terminator_and_records_the_command(session, line_server):
    assert session.query("*IDN?") == "ok:*IDN?"
    session.write("*CLS")
    assert session.last_command == "*CLS"
    assert session.query("A?") == "ok:A?"
    assert line_server.received == ["*IDN?", "*CLS", "A?"]
    assert line_server.connections == 1


def test_tcp_nodelay_is_set(session):
    # pyvisa-py refuses VI_ATTR_TCPIP_NODELAY; the session sets it on the socket itself.
    sock = session._socket()
    assert sock is not None
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_timeout_names_the_instrument_and_command(session):
    with pytest.raises(InstrumentTimeoutError) as info:
        session.query("SILENT?")
    assert info.value.instrument == NAME
    assert info.value.last_command == "SILENT?"
    message = str(info.value)
    assert "no answer within 0.2 s" in message and NAME in message
    assert "last command: 'SILENT?'" in message


def test_after_a_timeout_a_late_reply_is_not_read_as_the_next_answer(session, line_server):
    with pytest.raises(InstrumentTimeoutError):
        session.query("SLOW?")
    time.sleep(0.5)  # the late "ok:SLOW?" arrives on the old connection
    assert session.query("NEXT?") == "ok:NEXT?"
    assert line_server.connections == 2


def test_timeout_hint_ends_the_message(line_server):
    s = VisaSession(line_server.resource, name=NAME, timeout_s=0.2, timeout_hint="ask the oven")
    try:
        with pytest.raises(InstrumentTimeoutError, match="ask the oven"):
            s.query("SILENT?")
    finally:
        s.close()


def test_connection_closed_by_the_instrument(session, line_server):
    with pytest.raises(InstrumentConnectionError) as info:
        session.query("BYE")
    assert info.value.last_command == "BYE"
    # The peer is gone: the next exchange says so before sending, naming its command.
    with pytest.raises(InstrumentConnectionError) as info:
        session.write("*CLS")
    assert info.value.last_command == "*CLS"
    assert "closed the connection" in str(info.value) and NAME in str(info.value)
    # A reopen gets a fresh connection.
    session.reopen()
    assert session.query("A?") == "ok:A?"
    assert line_server.connections == 2


def test_refused_connection_raises_on_open():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port now.
    with pytest.raises(InstrumentConnectionError) as info:
        VisaSession(f"TCPIP::127.0.0.1::{port}::SOCKET", name=NAME, timeout_s=0.5)
    assert NAME in str(info.value)


def test_close_is_safe_to_repeat_and_later_exchanges_fail(session):
    session.close()
    session.close()
    assert not session.is_open
    with pytest.raises(InstrumentConnectionError, match="connection is closed") as info:
        session.write("*CLS")
    assert info.value.last_command == "*CLS"


def test_closing_one_session_leaves_the_others_open(session, line_server):
    """pyvisa shares one resource manager per library: a session that closed it cut every
    other instrument's link (an oven closed first left the potentiostat unable to switch its
    cell off)."""
    other = VisaSession(line_server.resource, name="oven", timeout_s=0.2, read_termination="\r\n")
    assert other.query("A?") == "ok:A?"
    other.close()
    assert session.query("B?") == "ok:B?"
