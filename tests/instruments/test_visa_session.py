"""VisaSession against a tiny line-based TCP server, over pyvisa-py.

The server answers ``<command>`` with ``ok:<command>``; ``SLOW?`` is answered late,
``SILENT?`` never, and ``BYE`` closes the connection without an answer.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from insitu.instruments.errors import InstrumentConnectionError, InstrumentTimeoutError
from insitu.instruments.visa_session import VisaSession

pytestmark = pytest.mark.timeout(30)

NAME = "Test instrument (tcp)"


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        server: _Server = self.server  # type: ignore[assignment]
        with server.lock:
            server.connections += 1
        for raw in self.rfile:
            line = raw.decode().rstrip("\n")
            server.received.append(line)
            if line == "BYE":
                return
            if line == "SILENT?":
                continue
            if line == "SLOW?":
                time.sleep(0.5)
            if line.endswith("?"):
                self.wfile.write(f"ok:{line}\r\n".encode())
                self.wfile.flush()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.connections = 0
        self.received: list[str] = []

    def handle_error(self, request, client_address) -> None:
        pass  # a late reply to a client that has gone: nothing to report

    @property
    def resource(self) -> str:
        return f"TCPIP::127.0.0.1::{self.server_address[1]}::SOCKET"


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def session(server: _Server) -> Iterator[VisaSession]:
    s = VisaSession(
        server.resource, name=NAME, timeout_s=0.2, read_termination="\r\n", write_termination="\n"
    )
    try:
        yield s
    finally:
        s.close()


def test_query_strips_the_terminator_and_records_the_command(session, server):
    assert session.query("*IDN?") == "ok:*IDN?"
    session.write("*CLS")
    assert session.last_command == "*CLS"
    assert session.query("A?") == "ok:A?"
    assert server.received == ["*IDN?", "*CLS", "A?"]
    assert server.connections == 1


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


def test_after_a_timeout_a_late_reply_is_not_read_as_the_next_answer(session, server):
    with pytest.raises(InstrumentTimeoutError):
        session.query("SLOW?")
    time.sleep(0.5)  # the late "ok:SLOW?" arrives on the old connection
    assert session.query("NEXT?") == "ok:NEXT?"
    assert server.connections == 2


def test_timeout_hint_ends_the_message(server):
    s = VisaSession(server.resource, name=NAME, timeout_s=0.2, timeout_hint="ask the oven")
    try:
        with pytest.raises(InstrumentTimeoutError, match="ask the oven"):
            s.query("SILENT?")
    finally:
        s.close()


def test_connection_closed_by_the_instrument(session, server):
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
    assert server.connections == 2


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
