"""The EPICS flavour of the simulated 2-BM bench, simulator side: start and stop the IOC.

:func:`beamline_ioc_process` runs :mod:`insitu.simulators.beamline.ioc` as a subprocess serving
on 127.0.0.1; :func:`insitu.protocols.bench.tomo_epics.epics_tomo_bench` connects ordinary
ophyd EPICS devices to it (the device classes live in ``instruments``, which this side of the
wire does not import). The IOC is terminated on exit, errors included.

Channel Access configuration, and why it is fixed per process: pyepics' libca reads
``EPICS_CA_ADDR_LIST`` and friends once, when the first channel is created, and keeps them for
the life of the process (``import ophyd`` already loads libca, so only the environment before
the first channel counts). A bench therefore cannot point the client at a new port each time.
Instead the first bench of a process picks one free port on 127.0.0.1, sets
``EPICS_CA_ADDR_LIST=127.0.0.1:<port>`` and ``EPICS_CA_AUTO_ADDR_LIST=NO`` in the process
environment before any channel exists, and every IOC this process starts serves on that port,
one at a time. Separate processes (parallel CI jobs) get separate ports, so their IOCs never
answer each other's searches. A process that set ``EPICS_CA_ADDR_LIST=127.0.0.1:<port>`` (and
``EPICS_CA_AUTO_ADDR_LIST=NO``) itself before using CA keeps that port. ophyd's caproto control
layer would have the same read-once behaviour and is a process-wide switch, so pyepics stays.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .devices import DEFAULT_METADATA
from .ioc_settings import DEFAULT_PREFIX, LOOPBACK, READY_LINE, server_environment

__all__ = [
    "IOCStartError",
    "RunningIOC",
    "beamline_ioc_process",
    "ca_client_port",
]

_port: int | None = None
_port_lock = threading.Lock()
_bench_running = threading.Lock()


class IOCStartError(RuntimeError):
    """The beamline IOC did not start or its PVs did not connect."""


def _free_port() -> int:
    """A port free for both UDP (CA search) and TCP (CA circuits) on 127.0.0.1."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((LOOPBACK, 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((LOOPBACK, port))
                except OSError:
                    continue
        return port
    raise OSError("no port is free for both UDP and TCP on 127.0.0.1")


def _channels_exist() -> bool:
    """True if pyepics has created a channel (its address list is then fixed)."""
    from epics import ca

    cache = getattr(ca, "_cache", {})
    return any(bool(channels) for channels in cache.values())


def ca_client_port() -> int:
    """The Channel Access port of this process's simulated IOCs; configures CA on first call.

    Returns
    -------
    int
        UDP/TCP port on 127.0.0.1.

    Raises
    ------
    RuntimeError
        If Channel Access was already used in this process with another address list: libca
        would never search 127.0.0.1 on the bench's port.
    """
    global _port
    with _port_lock:
        if _port is not None:
            return _port
        preset = re.fullmatch(
            rf"\s*{re.escape(LOOPBACK)}:(\d+)\s*", os.environ.get("EPICS_CA_ADDR_LIST", "")
        )
        auto = os.environ.get("EPICS_CA_AUTO_ADDR_LIST", "YES").strip().upper()
        if preset and auto == "NO":
            _port = int(preset.group(1))
            return _port
        if _channels_exist():
            raise RuntimeError(
                "Channel Access was used in this process before the simulated EPICS bench "
                "configured it, and libca reads its address list only once: start the bench "
                "before creating any EPICS device, or set EPICS_CA_ADDR_LIST=127.0.0.1:<port> "
                "and EPICS_CA_AUTO_ADDR_LIST=NO before Python starts"
            )
        port = _free_port()
        os.environ["EPICS_CA_ADDR_LIST"] = f"{LOOPBACK}:{port}"
        os.environ["EPICS_CA_AUTO_ADDR_LIST"] = "NO"
        _port = port
        return port


def _log_text(log_path: Path) -> str:
    try:
        return log_path.read_text(errors="replace").strip()
    except OSError:
        return ""


@dataclass
class RunningIOC:
    """A beamline IOC subprocess serving on 127.0.0.1."""

    process: subprocess.Popen[bytes]
    prefix: str
    port: int
    path: Path
    metadata: dict[str, Any]
    log_path: Path

    def output(self) -> str:
        """What the IOC printed so far (stdout and stderr)."""
        return _log_text(self.log_path)

    def check_alive(self) -> None:
        """Raise :class:`IOCStartError`, with the IOC's output, if the process has exited."""
        if self.process.poll() is not None:
            raise IOCStartError(
                f"the beamline IOC exited with status {self.process.returncode}; its "
                f"output:\n{self.output()}"
            )


def _wait_ready(ioc: RunningIOC, deadline: float) -> None:
    while READY_LINE not in ioc.output():
        ioc.check_alive()
        if time.monotonic() > deadline:
            raise IOCStartError(
                f"the beamline IOC did not start serving in time; its output:\n{ioc.output()}"
            )
        time.sleep(0.02)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)  # lets the IOC close an open file
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def beamline_ioc_process(
    path: str | Path,
    *,
    frame_source: str = "insitu.simulators.imaging.disc_phantom:disc_frame_source",
    frame_source_kwargs: Mapping[str, Any] | None = None,
    prefix: str = DEFAULT_PREFIX,
    speedup: float = 1.0,
    velocity_deg_s: float = 30.0,
    acceleration_s: float = 0.5,
    shutter_time_s: float = 0.5,
    ring_current_mA: float = 130.0,
    metadata: Mapping[str, Any] | None = None,
    timeout_s: float = 60.0,
) -> Iterator[RunningIOC]:
    """Run the beamline IOC as a subprocess on 127.0.0.1 until the context exits.

    Parameters are those of :func:`insitu.protocols.bench.tomo_epics.epics_tomo_bench`. The
    IOC serves on this process's CA port (:func:`ca_client_port`), one IOC at a time; it is
    stopped (SIGTERM, so it closes an open file; SIGKILL after 10 s) however the context exits.

    Yields
    ------
    RunningIOC
        Once the IOC serves (its PVs answer searches).

    Raises
    ------
    IOCStartError
        If the IOC exits or does not serve within ``timeout_s``; with its output.
    """
    port = ca_client_port()
    if not _bench_running.acquire(blocking=False):
        raise RuntimeError(
            "a beamline IOC is already running for this process; its IOCs share one CA port "
            "(see insitu.simulators.beamline.ioc_process), so stop it before starting another"
        )
    log_dir = Path(tempfile.mkdtemp(prefix="insitu-ioc-"))
    try:
        folder = Path(path).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        md = {**DEFAULT_METADATA, **(metadata or {})}
        command = [
            sys.executable,
            "-u",  # unbuffered: the ready line and any error reach the log at once
            "-m",
            "insitu.simulators.beamline.ioc",
            f"--prefix={prefix}",
            f"--port={port}",
            f"--path={folder}",
            f"--speedup={speedup}",
            f"--frame-source={frame_source}",
            f"--frame-source-kwargs={json.dumps(dict(frame_source_kwargs or {}))}",
            f"--metadata={json.dumps(md)}",
            f"--velocity={velocity_deg_s}",
            f"--acceleration={acceleration_s}",
            f"--shutter-time={shutter_time_s}",
            f"--ring-current={ring_current_mA}",
        ]
        env = {**os.environ, **server_environment(port)}
        log_path = log_dir / "ioc.log"
        # A file, not a pipe: nobody reads a pipe while tests run, and a full one would block
        # the IOC.
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        try:
            ioc = RunningIOC(process, prefix, port, folder, md, log_path)
            _wait_ready(ioc, time.monotonic() + timeout_s)
            yield ioc
        finally:
            _stop(process)
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)
        _bench_running.release()
