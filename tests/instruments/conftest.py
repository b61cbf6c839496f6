"""A tiny line-based TCP server that VISA-level tests talk to over pyvisa-py.

The server answers a query (a line with ``?``) with ``ok:<query>``, or with
``replies[<query>]`` where a test set one; ``SLOW?`` is answered late, ``SILENT?`` never, and
``BYE`` closes the connection without an answer. Commands (no ``?``) get no answer.
"""

from __future__ import annotations

import socketserver
import threading
import time
from collections.abc import Iterator

import pytest


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        server: LineServer = self.server  # type: ignore[assignment]
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
            if "?" in line:
                reply = server.replies.get(line, f"ok:{line}")
                self.wfile.write(f"{reply}\r\n".encode())
                self.wfile.flush()


class LineServer(socketserver.ThreadingTCPServer):
    """The server; ``received`` lists the lines it got, ``replies`` sets answers."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.connections = 0
        self.received: list[str] = []
        self.replies: dict[str, str] = {}

    def handle_error(self, request, client_address) -> None:
        pass  # a late reply to a client that has gone: nothing to report

    @property
    def resource(self) -> str:
        return f"TCPIP::127.0.0.1::{self.server_address[1]}::SOCKET"


@pytest.fixture
def line_server() -> Iterator[LineServer]:
    """A running :class:`LineServer` on 127.0.0.1 (a free port)."""
    srv = LineServer()
    # A short poll interval: shutdown() waits for the next poll.
    thread = threading.Thread(target=srv.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
