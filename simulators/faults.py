"""Faults on the wire: a TCP proxy between a driver and an instrument that misbehaves on cue.

A :class:`FaultyLink` listens on 127.0.0.1 and forwards every byte between a client (the
driver) and a target (an emulator, or a real instrument): a cable with faults in it. Lines
(``\\n``-terminated) from the instrument are, each with its own probability,

* **delayed** by ``delay_s`` (later lines wait behind it: a TCP stream keeps its order);
* **garbled**: one to three of their characters replaced by printable noise;
* **dropped**: never delivered (the driver's read times out);
* **split**: the first half written, a pause, then the rest (a partial write);

and the link can be **cut** after a number of reply lines (``disconnect_after``, each entry
once), closing both sockets as a pulled cable would. What the driver sends goes through
untouched: a corrupted command would make the instrument do something else, which is not a
fault this suite can recover from and not what a serial or TCP line does.

A :class:`WireFaults` is the description, parsed from the command line's form
(:meth:`WireFaults.parse`, e.g. ``"delay=1%:0.2,garble=0.5%,drop=0.1%,disconnect=40"``); the
link counts what it did in :attr:`FaultyLink.injected`, so a test or a benchmark can weigh
what survived against what was done to it. Everything is drawn from one seeded generator: the
same seed and the same traffic give the same faults.
"""

from __future__ import annotations

import contextlib
import random
import select
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from .errors import SimulatorInputError

__all__ = ["FaultyLink", "InstrumentFaults", "WireFaults"]

_LOOPBACK = "127.0.0.1"
_POLL_S = 0.05
_SPLIT_PAUSE_S = 0.02
_NOISE = "#@$%&*?~^"  # garbling never makes a line terminator or a valid digit


@dataclass(frozen=True)
class WireFaults:
    """What goes wrong on the wire, per reply line (probabilities 0–1).

    Parameters
    ----------
    delay, garble, drop, split : float
        Probability per reply line of each fault.
    delay_s : float
        How long a delayed line waits.
    disconnect_after : tuple of int
        Cut the link after this many reply lines (counted over the link's life), each once.
    seed : int
        Seed of the faults.
    """

    delay: float = 0.0
    delay_s: float = 0.2
    garble: float = 0.0
    drop: float = 0.0
    split: float = 0.0
    disconnect_after: tuple[int, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("delay", "garble", "drop", "split"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise SimulatorInputError(f"fault {name} must be a probability 0–1, got {p:g}")
        if self.delay + self.garble + self.drop + self.split > 1.0:
            raise SimulatorInputError(
                "the fault probabilities add up to more than 1 per line; lower them"
            )
        if not self.delay_s >= 0:
            raise SimulatorInputError(f"delay_s must be ≥ 0 s, got {self.delay_s:g}")
        if any(n < 1 for n in self.disconnect_after):
            raise SimulatorInputError("disconnect_after counts reply lines: give numbers ≥ 1")

    @property
    def any(self) -> bool:
        """Whether any fault can happen."""
        return bool(self.delay or self.garble or self.drop or self.split or self.disconnect_after)

    @classmethod
    def parse(cls, text: str, *, seed: int = 0) -> WireFaults:
        """Read the command line's form: comma-separated ``kind=value`` items.

        ``delay=P[:SECONDS]``, ``garble=P``, ``drop=P``, ``split=P`` (P a fraction, or a
        percentage with ``%``), ``disconnect=N`` (after N reply lines; repeat the item for
        more cuts).

        Raises
        ------
        SimulatorInputError
            An unknown kind or a value that is not a number, naming the item.
        """
        values: dict[str, float] = {}
        cuts: list[int] = []
        delay_s = cls.delay_s
        for raw in filter(None, (item.strip() for item in text.split(","))):
            kind, sep, value = raw.partition("=")
            kind = kind.strip().lower()
            if not sep or kind not in _WIRE_KINDS + _INSTRUMENT_KINDS:
                raise SimulatorInputError(
                    f"fault {raw!r}: give kind=value with kind one of "
                    f"{', '.join(_WIRE_KINDS + _INSTRUMENT_KINDS)} "
                    "(e.g. delay=1%:0.2,garble=0.5%,disconnect=40,error=300)"
                )
            if kind in _INSTRUMENT_KINDS:
                continue  # the instrument's own faults: InstrumentFaults.parse reads them
            try:
                if kind == "disconnect":
                    cuts.append(int(value))
                    continue
                if kind == "delay" and ":" in value:
                    value, seconds = value.split(":", 1)
                    delay_s = float(seconds)
                values[kind] = (
                    float(value[:-1]) / 100.0 if value.strip().endswith("%") else float(value)
                )
            except ValueError:
                raise SimulatorInputError(f"fault {raw!r}: {value!r} is not a number") from None
        return cls(**values, delay_s=delay_s, disconnect_after=tuple(sorted(cuts)), seed=seed)


_WIRE_KINDS = ("delay", "garble", "drop", "split", "disconnect")
_INSTRUMENT_KINDS = ("error", "overload")


@dataclass(frozen=True)
class InstrumentFaults:
    """What goes wrong inside the instrument itself (an emulator's own faults).

    Counted in measured points since the emulator started, so a run meets them at the same
    place whatever the speed-up.

    Parameters
    ----------
    error_after : int, optional
        After this many points the instrument reports one of its own errors and ends the
        technique with the cell off (Keithley 2450: an event in the error queue and the output
        off; EmStat4: a ``!XXXX`` error line and the script aborted).
    overload_after : int, optional
        After this many points (the first ``overload_after`` are clean), readings are
        flagged as the instrument flags a source it cannot hold (Keithley 2450: the voltage
        limit trips, the source is in compliance; EmStat4: the overload bit in each data
        package's status).
    """

    error_after: int | None = None
    overload_after: int | None = None

    def __post_init__(self) -> None:
        for name in ("error_after", "overload_after"):
            n = getattr(self, name)
            if n is not None and n < 1:
                raise SimulatorInputError(f"fault {name} counts points: give a number ≥ 1")

    @property
    def any(self) -> bool:
        """Whether any fault can happen."""
        return self.error_after is not None or self.overload_after is not None

    @classmethod
    def parse(cls, text: str) -> InstrumentFaults:
        """Read the instrument's items of the command line's form: ``error=N``,
        ``overload=N`` (after N points); the wire's items are left to
        :meth:`WireFaults.parse`, which also names unknown kinds.
        """
        WireFaults.parse(text)  # one place that refuses unknown kinds, with the list
        values: dict[str, int] = {}
        for raw in filter(None, (item.strip() for item in text.split(","))):
            kind, _, value = raw.partition("=")
            kind = kind.strip().lower()
            if kind not in _INSTRUMENT_KINDS:
                continue
            try:
                values[f"{kind}_after"] = int(value)
            except ValueError:
                raise SimulatorInputError(
                    f"fault {raw!r}: {value!r} is not a whole number of points"
                ) from None
        return cls(**values)


@dataclass
class _Pair:
    """One client's two sockets and whether the pair is still open."""

    client: socket.socket
    target: socket.socket
    open: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock)

    def close(self) -> None:
        with self.lock:
            if not self.open:
                return
            self.open = False
        for s in (self.client, self.target):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


class FaultyLink:
    """A TCP proxy on 127.0.0.1 that forwards to ``target`` with :class:`WireFaults` applied.

    Parameters
    ----------
    target : (str, int)
        Host and port of the instrument (or emulator).
    faults : WireFaults
        What to do to its replies.

    Attributes
    ----------
    port : int
        The link's own port on 127.0.0.1: point the driver at ``TCPIP::127.0.0.1::PORT::SOCKET``.
    injected : collections.Counter
        Faults done so far by kind (``delay``, ``garble``, ``drop``, ``split``, ``disconnect``),
        and ``lines``, the reply lines seen.
    """

    def __init__(self, target: tuple[str, int], faults: WireFaults) -> None:
        self.target = target
        self.faults = faults
        self.injected: Counter[str] = Counter()
        self._rng = random.Random(faults.seed)
        self._cuts = list(faults.disconnect_after)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._pairs: list[_Pair] = []
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server((_LOOPBACK, 0))
        self._listener.settimeout(_POLL_S)
        self.port: int = self._listener.getsockname()[1]
        self._accept_thread = threading.Thread(
            target=self._accept, name=f"faulty-link-{self.port}", daemon=True
        )
        self._accept_thread.start()

    @property
    def resource(self) -> str:
        """VISA resource string of the link (what a driver opens instead of the target)."""
        return f"TCPIP::{_LOOPBACK}::{self.port}::SOCKET"

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                target = socket.create_connection(self.target, timeout=5.0)
            except OSError:
                client.close()  # the instrument is down: so is the link
                continue
            pair = _Pair(client, target)
            with self._lock:
                self._pairs.append(pair)
            for fn, name in ((self._upstream, "up"), (self._downstream, "down")):
                t = threading.Thread(target=fn, args=(pair,), name=f"link-{name}", daemon=True)
                t.start()
                self._threads.append(t)

    def _upstream(self, pair: _Pair) -> None:
        """Driver → instrument, untouched."""
        while pair.open and not self._stopping.is_set():
            data = self._recv(pair, pair.client)
            if not data:
                break
            if not self._send(pair, pair.target, data):
                break
        pair.close()

    def _downstream(self, pair: _Pair) -> None:
        """Instrument → driver, line by line, with the faults."""
        pending = b""
        while pair.open and not self._stopping.is_set():
            data = self._recv(pair, pair.target)
            if not data:
                break
            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if not self._deliver(pair, line + b"\n"):
                    pair.close()
                    return
        pair.close()

    def _deliver(self, pair: _Pair, line: bytes) -> bool:
        """Apply one line's fault and forward it; False when the link is cut or closed."""
        with self._lock:
            self.injected["lines"] += 1
            n = self.injected["lines"]
            cut = bool(self._cuts) and n >= self._cuts[0]
            if cut:
                self._cuts.pop(0)
                self.injected["disconnect"] += 1
            kind = self._draw()
            if kind:
                self.injected[kind] += 1
            garbled = self._garble(line) if kind == "garble" else line
        if cut:
            return False
        if kind == "drop":
            return True
        if kind == "delay":
            time.sleep(self.faults.delay_s)
        if kind == "split":
            half = max(1, len(garbled) // 2)
            if not self._send(pair, pair.client, garbled[:half]):
                return False
            time.sleep(_SPLIT_PAUSE_S)
            return self._send(pair, pair.client, garbled[half:])
        return self._send(pair, pair.client, garbled)

    def _draw(self) -> str | None:
        """One of the line faults, or None, by their probabilities."""
        u = self._rng.random()
        f = self.faults
        for kind, p in (
            ("delay", f.delay),
            ("garble", f.garble),
            ("drop", f.drop),
            ("split", f.split),
        ):
            if u < p:
                return kind
            u -= p
        return None

    def _garble(self, line: bytes) -> bytes:
        body = bytearray(line.rstrip(b"\r\n"))
        if not body:
            return line
        for _ in range(self._rng.randint(1, min(3, len(body)))):
            body[self._rng.randrange(len(body))] = ord(self._rng.choice(_NOISE))
        return bytes(body) + line[len(line.rstrip(b"\r\n")) :]

    def _recv(self, pair: _Pair, sock: socket.socket) -> bytes:
        while pair.open and not self._stopping.is_set():
            try:
                ready, _, _ = select.select([sock], [], [], _POLL_S)
                if ready:
                    return sock.recv(65536)
            except (OSError, ValueError):
                return b""
        return b""

    @staticmethod
    def _send(pair: _Pair, sock: socket.socket, data: bytes) -> bool:
        if not pair.open:
            return False
        try:
            sock.sendall(data)
        except OSError:
            return False
        return True

    def stop(self) -> None:
        """Close the listener and every link (idempotent)."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            pairs = list(self._pairs)
        for pair in pairs:
            pair.close()
        for t in [self._accept_thread, *self._threads]:
            if t is not threading.current_thread():
                t.join(timeout=2.0)

    def __enter__(self) -> FaultyLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
