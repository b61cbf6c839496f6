"""``insitu instrument info`` on a dead, hung or wrong peer: one line, exit 2, no traceback."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from insitu.protocols.cli.app import main

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def hung_port() -> Iterator[int]:
    """A port where a server accepts connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0), backlog=8)
    yield server.getsockname()[1]  # the kernel completes the handshakes from the backlog
    server.close()


@pytest.fixture
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    status = main(["instrument", "info", *argv])
    return status, capsys.readouterr().err.splitlines()


@pytest.mark.parametrize("kind", ["TCPIP::127.0.0.1::{port}::SOCKET", "socket://127.0.0.1:{port}"])
def test_refused_is_one_line(capsys, free_port, kind) -> None:
    resource = kind.format(port=free_port)
    status, err = _run(capsys, resource, "--timeout", "1")
    assert status == 2
    assert len(err) == 1, err
    assert err[0].startswith("insitu: error: ") and "connection refused" in err[0]
    assert resource in err[0]


@pytest.mark.parametrize("kind", ["TCPIP::127.0.0.1::{port}::SOCKET", "socket://127.0.0.1:{port}"])
def test_hung_is_one_line(capsys, hung_port, kind) -> None:
    resource = kind.format(port=hung_port)
    status, err = _run(capsys, resource, "--timeout", "0.3")
    assert status == 2
    assert len(err) == 1, err  # before: ~70 lines of logged tracebacks first
    assert "timed out" in err[0] and "0.3 s" in err[0] and resource in err[0]


def test_debug_shows_the_traceback(capsys, hung_port) -> None:
    status, err = _run(
        capsys, f"TCPIP::127.0.0.1::{hung_port}::SOCKET", "--timeout", "0.3", "--debug"
    )
    assert status == 2
    assert any(line.startswith("Traceback") for line in err)
    assert err[-1].startswith("insitu: error: ")
