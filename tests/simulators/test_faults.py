"""The faulty link: a TCP proxy that delays, garbles, drops, splits and cuts reply lines."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest

from insitu.simulators.errors import SimulatorInputError
from insitu.simulators.faults import FaultyLink, WireFaults


@pytest.fixture
def counter() -> Iterator[tuple[str, int]]:
    """An instrument that answers every line 'n' with 'REPLY n' (one thread per client)."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn, conn.makefile("rwb") as f, contextlib.suppress(OSError):  # a cut cable
            for line in f:
                f.write(b"REPLY " + line.strip() + b"\n")
                f.flush()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield server.getsockname()
    stop.set()
    server.close()
    t.join(2)


def exchange(link: FaultyLink, n: int, timeout: float = 1.0) -> list[bytes]:
    """Send n lines through the link; the replies received until EOF or a quiet timeout."""
    with socket.create_connection(("127.0.0.1", link.port), timeout=timeout) as s:
        s.sendall(b"".join(b"%d\n" % i for i in range(n)))
        got = b""
        try:
            while chunk := s.recv(65536):
                got += chunk
                if got.count(b"\n") >= n:
                    break
        except (TimeoutError, ConnectionResetError):  # quiet, or cut with data unread
            pass
    return got.splitlines()


def test_parse_the_command_line_form() -> None:
    f = WireFaults.parse(
        "delay=1%:0.05, garble=0.5%,drop=0.001,split=2%,disconnect=80,disconnect=40"
    )
    assert (f.delay, f.delay_s, f.garble, f.drop, f.split) == (0.01, 0.05, 0.005, 0.001, 0.02)
    assert f.disconnect_after == (40, 80) and f.any
    assert not WireFaults.parse("").any
    for bad, match in (
        ("jitter=1%", "kind=value"),
        ("garble", "kind=value"),
        ("drop=lots", "not a number"),
        ("drop=150%", "probability"),
        ("drop=0.6,garble=0.6", "more than 1"),
        ("disconnect=0", "≥ 1"),
    ):
        with pytest.raises(SimulatorInputError, match=match):
            WireFaults.parse(bad)


def test_no_faults_is_a_plain_cable(counter) -> None:
    with FaultyLink(counter, WireFaults()) as link:
        assert exchange(link, 200) == [b"REPLY %d" % i for i in range(200)]
        assert link.injected["lines"] == 200 and sum(link.injected.values()) == 200


def test_garbled_lines_keep_their_length_and_terminator(counter) -> None:
    with FaultyLink(counter, WireFaults(garble=1.0)) as link:
        got = exchange(link, 50)
    sent = [b"REPLY %d" % i for i in range(50)]
    assert len(got) == 50 and link.injected["garble"] == 50
    assert all(g != s and len(g) == len(s) for g, s in zip(got, sent, strict=True))


def test_dropped_lines_are_counted_and_seeded(counter) -> None:
    def run(seed: int) -> tuple[list[bytes], int]:
        with FaultyLink(counter, WireFaults(drop=0.3, seed=seed)) as link:
            got = exchange(link, 100, timeout=0.5)
            return got, link.injected["drop"]

    got, dropped = run(1)
    assert 10 < dropped < 50 and len(got) + dropped == 100
    assert set(got) <= {b"REPLY %d" % i for i in range(100)}
    assert run(1) == (got, dropped)  # the same seed, the same faults


def test_split_and_delayed_lines_arrive_whole(counter) -> None:
    with FaultyLink(counter, WireFaults(split=0.5, delay=0.5, delay_s=0.001)) as link:
        got = exchange(link, 40)
        assert got == [b"REPLY %d" % i for i in range(40)]
        assert link.injected["split"] + link.injected["delay"] == 40
        assert link.injected["split"] > 5 and link.injected["delay"] > 5


def test_disconnect_cuts_once_then_the_cable_works(counter) -> None:
    with FaultyLink(counter, WireFaults(disconnect_after=(5,))) as link:
        assert exchange(link, 20) == [b"REPLY %d" % i for i in range(4)]  # then EOF
        assert link.injected["disconnect"] == 1
        assert exchange(link, 3) == [b"REPLY %d" % i for i in range(3)]


def test_a_dead_instrument_closes_the_link() -> None:
    with socket.create_server(("127.0.0.1", 0)) as s:
        target = s.getsockname()
    with FaultyLink(target, WireFaults()) as link:  # nothing listens at target any more
        assert exchange(link, 3) == []
