"""The line server every emulator stands on, tested on its own with a tiny echo instrument."""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
import tty
from collections.abc import Iterator

import pytest

from insitu.simulators.emulators.line_server import Connection, LineServer, LineServerError

pytestmark = pytest.mark.timeout(30)


class Echo(LineServer):
    """Answers each line in upper case; ``slow`` makes it wait, ``boom`` makes it fail."""

    name = "echo server"
    terminator = b"\r\n"
    max_line = 16

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.lines: list[str] = []
        self.too_long = 0
        self.closed: list[Connection] = []
        self.release = threading.Event()

    def handle_line(self, line: str) -> str | None:
        self.lines.append(line)
        if line == "slow":
            self.release.wait(5)
        if line == "boom":
            raise RuntimeError("an instrument bug")
        return line.upper() if line else None

    def line_too_long(self, conn: Connection) -> None:
        self.too_long += 1

    def client_closed(self, conn: Connection) -> None:
        self.closed.append(conn)


class OneAtATime(Echo):
    max_clients = 1


class Client:
    def __init__(self, port: int, timeout_s: float = 2.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> str:
        while b"\r\n" not in self.buffer:
            data = self.sock.recv(4096)
            if not data:
                raise ConnectionError("server closed the connection")
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line.decode("ascii")

    def query(self, line: str) -> str:
        self.send(line.encode("ascii") + b"\n")
        return self.reply()

    def at_end(self) -> bool:
        """True when the server has ended the connection (EOF or reset)."""
        try:
            return self.sock.recv(4096) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


def wait_for(condition, timeout_s: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


@pytest.fixture
def server() -> Iterator[Echo]:
    with Echo() as srv:
        yield srv


@pytest.fixture
def client(server: Echo) -> Iterator[Client]:
    c = Client(server.port)
    try:
        yield c
    finally:
        c.close()


# --- where it listens -------------------------------------------------------------------------
@pytest.mark.parametrize("host", ["0.0.0.0", "", "192.168.1.10", "::", "example.org"])
def test_a_non_loopback_host_is_refused(host: str) -> None:
    with pytest.raises(LineServerError, match=r"127\.0\.0\.1 only.*leave host at its default"):
        Echo(host=host)
    assert issubclass(LineServerError, ValueError)


def test_listens_on_loopback_only(server: Echo, client: Client) -> None:
    assert server.resource == f"TCPIP::127.0.0.1::{server.port}::SOCKET"
    assert client.sock.getpeername() == ("127.0.0.1", server.port)
    if sys.platform.startswith("linux"):
        # 127.0.0.2 reaches this machine too; only a server bound to every address answers it.
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.2", server.port), timeout=0.5).close()


def test_localhost_is_the_loopback_address() -> None:
    with Echo(host="localhost") as srv:
        assert srv.resource.startswith("TCPIP::127.0.0.1::")


def test_port_zero_picks_a_free_port_and_a_given_port_is_used() -> None:
    with Echo() as a, Echo() as b:
        assert a.port > 0 and b.port > 0 and a.port != b.port
        port = a.port
        with pytest.raises(OSError, match="pick another port, or 0 for a free one"):
            Echo(port=port).start()
    with Echo(port=port) as srv:
        assert srv.port == port
        c = Client(port)
        assert c.query("hi") == "HI"
        c.close()


@pytest.mark.parametrize("port", [-1, 65536])
def test_a_port_out_of_range_is_refused(port: int) -> None:
    with pytest.raises(LineServerError, match=r"0\.\.65535"):
        Echo(port=port)


def test_unknown_transport_is_refused() -> None:
    with pytest.raises(LineServerError, match="'tcp' or 'pty'"):
        Echo(transport="usb")  # type: ignore[arg-type]


def test_resource_before_start_says_what_to_do() -> None:
    with pytest.raises(RuntimeError, match=r"call start\(\) first"):
        _ = Echo().resource


# --- framing ----------------------------------------------------------------------------------
def test_lines_replies_and_carriage_returns(server: Echo, client: Client) -> None:
    assert client.query("idn?") == "IDN?"
    client.send(b"a\r\nb\n\nc")  # CR LF, LF, an empty line, and a line still open
    assert [client.reply(), client.reply()] == ["A", "B"]
    client.send(b"d\n")
    assert client.reply() == "CD"
    assert server.lines == ["idn?", "a", "b", "", "cd"]


def test_over_long_line_is_discarded_whole_and_reported_once(server: Echo, client: Client) -> None:
    exactly = "x" * Echo.max_line
    assert client.query(exactly) == exactly.upper()
    # Longer than max_line, in one piece and in pieces; its tail is not taken for a line.
    client.send(b"y" * 40 + b"\n")
    for _ in range(5):
        client.send(b"z" * 10)
        time.sleep(0.01)
    client.send(b"tail\nok\n")
    assert client.reply() == "OK"
    assert server.too_long == 2
    assert server.lines == [exactly, "ok"]


def test_a_failing_handler_does_not_end_the_connection(server: Echo, client: Client) -> None:
    client.send(b"boom\n")
    assert client.query("still there") == "STILL THERE"


# --- clients ----------------------------------------------------------------------------------
def test_two_clients_are_served_at_once(server: Echo) -> None:
    a, b = Client(server.port), Client(server.port)
    try:
        assert wait_for(lambda: server.client_count == 2)
        a.send(b"slow\n")  # a's thread waits in the handler ...
        assert b.query("fast") == "FAST"  # ... and b is answered meanwhile
        server.release.set()
        assert a.reply() == "SLOW"
        assert a.query("a") == "A" and b.query("b") == "B"
    finally:
        a.close()
        b.close()
    assert wait_for(lambda: server.client_count == 0)
    assert len(server.closed) == 2


def test_max_clients_keeps_the_next_client_waiting() -> None:
    with OneAtATime() as srv:
        first = Client(srv.port)
        assert first.query("one") == "ONE"
        second = Client(srv.port)  # connects (backlog) but is not served yet
        second.send(b"two\n")
        time.sleep(0.2)
        assert srv.lines == ["one"]
        first.close()
        assert second.reply() == "TWO"
        second.close()


def test_drop_clients_is_a_pulled_cable_and_the_server_keeps_listening(
    server: Echo, client: Client
) -> None:
    assert client.query("x") == "X"
    start = time.monotonic()
    server.drop_clients()
    assert client.at_end()
    assert time.monotonic() - start < 1.0
    assert wait_for(lambda: server.client_count == 0) and len(server.closed) == 1
    again = Client(server.port)
    try:
        assert again.query("back") == "BACK"
    finally:
        again.close()


def test_stop_while_a_client_is_connected() -> None:
    srv = Echo()
    srv.start()
    c = Client(srv.port)
    try:
        assert c.query("x") == "X"
        start = time.monotonic()
        srv.stop()
        assert time.monotonic() - start < 1.0
        assert c.at_end()
        assert srv.client_count == 0 and len(srv.closed) == 1
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", srv.port), timeout=0.5).close()
        srv.stop()  # idempotent
        assert srv.resource.endswith(f"::{srv.port}::SOCKET")  # still says where it was
    finally:
        c.close()


def test_stop_does_not_wait_for_a_client_that_does_not_read() -> None:
    class Flood(Echo):
        def handle_line(self, line: str) -> str | None:
            return "x" * (1 << 22)  # more than the socket buffers hold

    srv = Flood()
    srv.start()
    c = Client(srv.port)
    try:
        c.send(b"go\n")
        time.sleep(0.2)
        start = time.monotonic()
        srv.stop()
        assert time.monotonic() - start < 1.0
    finally:
        c.close()


# --- pseudo-terminal --------------------------------------------------------------------------
@pytest.mark.skipif(not hasattr(os, "openpty"), reason="no pseudo-terminals here")
def test_pty_transport() -> None:
    with Echo(transport="pty") as srv:
        assert srv.resource.startswith("/dev/") and srv.port == 0
        fd = os.open(srv.resource, os.O_RDWR | os.O_NOCTTY)
        try:
            tty.setraw(fd)
            os.write(fd, b"serial\n")
            received = b""
            while not received.endswith(b"\r\n"):
                received += os.read(fd, 100)
            assert received == b"SERIAL\r\n"
            assert srv.client_count == 1
            srv.drop_clients()  # a pulled cable: the client reads the end of the line
            assert wait_for(lambda: srv.client_count == 0)
            try:
                assert os.read(fd, 100) == b""  # hang-up (Linux) ...
            except OSError:
                pass  # ... or EIO (other systems)
        finally:
            os.close(fd)
        assert srv.resource.startswith("/dev/")
