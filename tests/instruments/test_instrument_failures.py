"""Dead, hung and wrong peers: one clear error, bounded retries, no logged tracebacks.

The peers are tiny TCP servers on 127.0.0.1: nothing listening (refused), one that accepts
and never answers (hung), one that answers like a web server and closes (not the
instrument's protocol), and the line server of ``conftest.py`` for a dropped link.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator

import pytest

from insitu.instruments.errors import (
    InstrumentConnectionError,
    InstrumentProtocolError,
    InstrumentTimeoutError,
)
from insitu.instruments.keithley2450.driver import Keithley2450
from insitu.instruments.methodscript.driver import MethodScriptPotentiostat
from insitu.instruments.resources import open_potentiostat

pytestmark = pytest.mark.timeout(60)

_HTML = b"<!DOCTYPE HTML>\r\n<html lang='en'>\r\n<body>Bad request</body></html>\r\n"


class Peer:
    """A TCP server on a free port: ``"silent"`` (accepts, never answers), ``"http"`` or
    ``"binary"`` (answers every line with bytes that are not text).

    ``received`` holds every line it got; ``connections`` counts accepted connections.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self.connections = 0
        self._open: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.05)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            self._open.append(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(0.05)
        buffer = b""
        while not self._stop.is_set():
            try:
                data = conn.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            self.received += lines
            if lines and self.kind == "binary":
                conn.sendall(b"\xff\xfe\x00garbage\n" * len(lines))
            if lines and self.kind == "http":
                # A web server answers a line it cannot parse with an error page and hangs up.
                conn.sendall(_HTML)
                conn.shutdown(socket.SHUT_RDWR)
                conn.close()
                return

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for conn in self._open:
            conn.close()
        self.sock.close()


@pytest.fixture
def silent() -> Iterator[Peer]:
    peer = Peer("silent")
    yield peer
    peer.close()


@pytest.fixture
def http() -> Iterator[Peer]:
    peer = Peer("http")
    yield peer
    peer.close()


@pytest.fixture
def binary() -> Iterator[Peer]:
    peer = Peer("binary")
    yield peer
    peer.close()


@pytest.fixture
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens on it once the probe is closed


def _loud_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """Records the user's terminal would show: WARNING and above, or any with a traceback."""
    return [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]


# --- refused ---------------------------------------------------------------------------------
def test_visa_refused_says_connection_refused(free_port) -> None:
    with pytest.raises(InstrumentConnectionError) as info:
        open_potentiostat(f"TCPIP::127.0.0.1::{free_port}::SOCKET", timeout_s=1)
    message = str(info.value)
    assert "connection refused" in message
    assert "closed the connection" not in message
    assert f"TCPIP::127.0.0.1::{free_port}::SOCKET" in message


def test_methodscript_refused_says_connection_refused(free_port) -> None:
    with pytest.raises(InstrumentConnectionError) as info:
        open_potentiostat(f"socket://127.0.0.1:{free_port}", timeout_s=1)
    assert "connection refused" in str(info.value)
    assert f"socket://127.0.0.1:{free_port}" in str(info.value)


# --- hung -------------------------------------------------------------------------------------
def test_keithley_hung_peer_times_out_after_one_retry_and_closes_quietly(silent, caplog):
    caplog.set_level(logging.DEBUG, logger="insitu")
    driver = Keithley2450(f"TCPIP::127.0.0.1::{silent.port}::SOCKET", timeout_s=0.3)
    with pytest.raises(InstrumentTimeoutError) as info:
        driver.identify()
    driver.close()
    message = str(info.value)
    assert "timed out" in message and "0.3 s" in message
    assert "asked 2 times" in message
    assert info.value.last_command == "*IDN?"
    # *IDN? changes nothing: asked once more on a fresh connection, and nothing else is sent
    # to a peer that never answered (no switch-off that would wait for another timeout).
    assert silent.received == [b"*IDN?", b"*IDN?"]
    assert silent.connections == 2
    assert _loud_records(caplog) == []


def test_methodscript_hung_peer_times_out_after_one_retry_and_closes_quietly(silent, caplog):
    caplog.set_level(logging.DEBUG, logger="insitu")
    driver = MethodScriptPotentiostat(f"socket://127.0.0.1:{silent.port}", timeout_s=0.3)
    with pytest.raises(InstrumentTimeoutError) as info:
        driver.identify()
    driver.close()
    assert "timed out" in str(info.value) and "asked twice" in str(info.value)
    assert silent.received == [b"t", b"t"]
    assert silent.connections == 2
    assert _loud_records(caplog) == []


# --- not the instrument's protocol -----------------------------------------------------------
def test_keithley_on_a_web_server_says_it_is_not_the_instrument(http, caplog):
    caplog.set_level(logging.DEBUG, logger="insitu")
    driver = Keithley2450(f"TCPIP::127.0.0.1::{http.port}::SOCKET", timeout_s=1)
    with pytest.raises(InstrumentProtocolError) as info:
        driver.identify()
    driver.close()
    assert "'<!DOCTYPE HTML>'" in str(info.value)
    assert "not an instrument identity" in str(info.value)
    assert http.received == [b"*IDN?"]  # a wrong peer is not asked again, nor switched off
    assert _loud_records(caplog) == []


def test_methodscript_on_a_web_server_says_it_is_not_methodscript(http, caplog):
    caplog.set_level(logging.DEBUG, logger="insitu")
    driver = MethodScriptPotentiostat(f"socket://127.0.0.1:{http.port}", timeout_s=1)
    with pytest.raises(InstrumentProtocolError) as info:
        driver.identify()
    driver.close()
    assert "is not MethodSCRIPT" in str(info.value)
    assert http.received == [b"t"]
    assert _loud_records(caplog) == []


def test_binary_reply_is_a_protocol_error(binary) -> None:
    driver = Keithley2450(f"TCPIP::127.0.0.1::{binary.port}::SOCKET", timeout_s=1)
    try:
        with pytest.raises(InstrumentProtocolError, match="not text"):
            driver.identify()
    finally:
        driver.close()


# --- dropped link -----------------------------------------------------------------------------
def test_query_that_may_be_retried_reconnects_after_a_dropped_link(line_server) -> None:
    line_server.replies["*IDN?"] = "KEITHLEY INSTRUMENTS,MODEL 2450,04096331,1.7.12b"
    driver = Keithley2450(line_server.resource, timeout_s=1)
    try:
        with pytest.raises(InstrumentConnectionError):
            driver.query("BYE")  # the server drops the link
        assert driver.identify().model == "MODEL 2450"
        assert line_server.connections == 2
    finally:
        driver.close()


def test_query_that_may_not_be_retried_is_asked_once(line_server) -> None:
    driver = Keithley2450(line_server.resource, timeout_s=0.2)
    try:
        with pytest.raises(InstrumentTimeoutError) as info:
            driver.query("SILENT?")  # stands for a poll while a technique runs
        assert "asked" not in str(info.value)
        assert line_server.received.count("SILENT?") == 1
        assert line_server.connections == 1
    finally:
        driver.close()
