"""Serve insitu's plans and a bench's devices to bluesky-queueserver until it is stopped.

What ``insitu queue-server`` runs: :func:`start_queue_server` (Redis and the RE Manager on
127.0.0.1, :func:`insitu.protocols.queueserver.service.queue_server`), then
:func:`open_environment` (the bench is built in the manager's worker) and
:func:`wait_until_stopped`. Leaving the first's context aborts a running plan (the cell
switched off), closes the environment and stops the manager and Redis.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from ..bench.emulated import is_sim_resource
from ..errors import InvalidInputError
from ..queueserver.service import (
    ENV_POTENTIOSTAT,
    ENV_SIM_PROTOCOL,
    ENV_SPEEDUP,
    ENV_TOMO,
    LOOPBACK,
    QueueServer,
    queue_server,
)
from ..secrets import read_zmq_private_key
from ..storage.catalog import DEFAULT_LOCATION, LOCATION_ENV_VAR

__all__ = ["open_environment", "start_queue_server", "wait_until_stopped"]


@contextmanager
def start_queue_server(
    instrument: str = "sim:A-LPS",
    *,
    data: str | Path | None = None,
    tomo: Literal["sim", "none"] | None = None,
    speedup: float = 1e4,
    emulator: Literal["methodscript", "keithley2450"] = "methodscript",
    host: str = LOOPBACK,
    zmq_key_file: str | Path | None = None,
) -> Iterator[QueueServer]:
    """Start Redis and an RE Manager for the bench ``instrument``; stop both on exit.

    Parameters
    ----------
    instrument : str
        Potentiostat resource, or ``sim:MATERIAL`` for the simulated bench.
    data : str or Path, optional
        Catalog folder the runs go to (default ``$INSITU_DATA`` or ``./insitu-data``); the
        queue server's own files go to ``DATA/qserver``.
    tomo : {"sim", "none"}, optional
        The simulated 2-BM beamline, or no tomography devices (default: ``"sim"`` with a
        simulated instrument, ``"none"`` otherwise).
    speedup : float
        Simulated seconds per real second of a simulated bench.
    emulator : {"methodscript", "keithley2450"}
        The instrument a simulated bench emulates (the Keithley 2450 has no EIS).
    host : str
        Where the manager takes requests (127.0.0.1: this machine only); anywhere else
        needs a ZeroMQ key.
    zmq_key_file : str or Path, optional
        File holding the manager's CurveZMQ private key (default:
        ``$QSERVER_ZMQ_PRIVATE_KEY_FOR_SERVER``); with a key, requests are encrypted and
        only clients holding its public half are answered.

    Yields
    ------
    QueueServer
        Not yet with an open environment (:func:`open_environment`).
    """
    if not speedup > 0:
        raise InvalidInputError(f"--speedup must be positive, got {speedup:g}")
    folder = Path(data or os.environ.get(LOCATION_ENV_VAR) or DEFAULT_LOCATION)
    with queue_server(
        folder,
        potentiostat=instrument,
        speedup=speedup,
        tomo=tomo or ("sim" if is_sim_resource(instrument) else "none"),
        sim_protocol=emulator,
        host=host,
        zmq_private_key=read_zmq_private_key(zmq_key_file),
    ) as qs:
        yield qs


def open_environment(qs: QueueServer) -> dict[str, Any]:
    """Open the environment (build the bench) and describe what the queue server serves.

    Returns
    -------
    dict
        ``zmq_control_addr``, ``zmq_info_addr``, ``redis_addr``, ``instrument``, ``tomo``,
        ``speedup``, ``sim_protocol`` (the emulator), ``data``, ``log``, ``plans``,
        ``devices`` and the manager's ``pid``.
    """
    qs.open_environment()
    api = qs.api()
    return {
        "zmq_control_addr": qs.zmq_control_addr,
        "zmq_info_addr": qs.zmq_info_addr,
        "redis_addr": qs.redis.address,
        "instrument": qs.environment[ENV_POTENTIOSTAT],
        "tomo": qs.environment[ENV_TOMO],
        "speedup": float(qs.environment[ENV_SPEEDUP]),
        "sim_protocol": qs.environment[ENV_SIM_PROTOCOL],
        "data": str(qs.data_dir),
        "log": str(qs.log_path),
        "plans": sorted(api.plans_allowed()["plans_allowed"]),
        "devices": sorted(api.devices_allowed()["devices_allowed"]),
        "pid": qs.process.pid,
        "zmq_public_key": qs.zmq_public_key,
    }


def wait_until_stopped(qs: QueueServer, poll_s: float = 0.5) -> None:
    """Return when the manager was stopped on request (``qserver manager stop``).

    Raises
    ------
    QueueServerError
        If the manager died instead (with the tail of its log).
    KeyboardInterrupt
        On Ctrl-C (or SIGTERM, which ``insitu`` turns into one).
    """
    while qs.running:
        time.sleep(poll_s)
    if qs.process.returncode != 0:
        qs.check_running()  # raises, with the log's tail
