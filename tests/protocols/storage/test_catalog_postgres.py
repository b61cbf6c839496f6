"""The catalog for several users: tiled on a private PostgreSQL, both started here on loopback.

A run measured on the simulated bench goes through ``RunStore`` (URI and key) into a tiled
server whose catalog and event tables are PostgreSQL databases, and comes back after both
servers were stopped and started again, from Python and through ``insitu runs`` / ``insitu
export``, equal to what the RunEngine emitted. The servers refuse requests without the key
and listen on loopback only.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from bluesky import RunEngine
from run_documents import Documents

from insitu.protocols.bench import BenchSpec, open_bench
from insitu.protocols.cli import main
from insitu.protocols.plans.electrochem import galvanostatic_hold
from insitu.protocols.storage.catalog import CatalogUnavailableError, RunStore
from insitu.protocols.storage.postgres import (
    CATALOG_DATABASE,
    POSTGRES_BIN_ENV,
    TABLES_DATABASE,
    CatalogServer,
    CatalogServerError,
    PostgresServer,
    postgres_bin_dir,
    serve_catalog,
    start_postgres,
)

EC_KEYS = ("time_s", "voltage_V", "current_A", "step")
N_POINTS = 120
#: The key of the test servers (a test secret, nothing else uses it).
API_KEY = "insitutestkey7f3c"


def need_postgres() -> None:
    """Skip, naming why, where no PostgreSQL binaries are installed."""
    try:
        postgres_bin_dir()
    except CatalogServerError as err:
        pytest.skip(f"no PostgreSQL binaries to start a catalog on: {err}")


def server_folder() -> Path:
    """A fresh folder for a catalog server's files, which PostgreSQL's user can enter.

    Under root PostgreSQL runs as ``nobody``, which cannot enter pytest's temporary folders
    (``/tmp/pytest-of-root`` is 0700), so the folder is made directly in the system's
    temporary folder and opened for traversal (not listing) to other users.
    """
    folder = Path(tempfile.mkdtemp(prefix="insitu-pgcat-"))
    folder.chmod(0o711)
    return folder


def psql(server: PostgresServer, database: str, query: str) -> list[str]:
    """Rows of a query, one string each, asked over the server's socket."""
    out = subprocess.run(
        [str(postgres_bin_dir() / "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1",
         "-h", str(server.socket_dir), "-U", "postgres", "-d", database, "-c", query],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return out.stdout.splitlines()


def rows_in_tables_database(server: PostgresServer) -> int:
    """Rows of every table tiled created in the event-table database."""
    tables = psql(
        server,
        TABLES_DATABASE,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
    )
    return sum(int(psql(server, TABLES_DATABASE, f'SELECT count(*) FROM "{t}"')[0]) for t in tables)


def hold_on_the_bench(store: RunStore, sample: str) -> tuple[str, dict[str, np.ndarray]]:
    """A galvanostatic hold on the emulated potentiostat, stored; its uid and emitted points."""
    docs = Documents()
    RE = RunEngine({})
    RE.subscribe(docs)
    store.subscribe(RE)
    with open_bench(BenchSpec("sim:A-LPS", speedup=1e4)) as bench:
        (uid,) = RE(
            galvanostatic_hold(
                bench.potentiostat,
                current_A=1e-4,
                duration_s=float(N_POINTS),
                interval_s=1.0,
                md={"sample": sample},
            )
        )
    return uid, docs.stream("electrochem")


@dataclass
class WrittenCatalog:
    """A catalog server, restarted after a bench run was written through it."""

    server: CatalogServer
    uid: str
    emitted: dict[str, np.ndarray]
    write_errors: list


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WrittenCatalog]:
    """A run written through one tiled-on-PostgreSQL server, served by the next on its folder.

    Both started here with tiled's host left at its default (what the loopback test checks).
    """
    need_postgres()
    folder = server_folder()
    writer = tmp_path_factory.mktemp("writer")
    try:
        with serve_catalog(folder / "server", api_key=API_KEY) as server:
            with RunStore(writer, uri=server.api_uri, api_key=API_KEY) as store:
                uid, emitted = hold_on_the_bench(store, "pg-shared")
                errors = list(store.errors)
        with serve_catalog(folder / "server", api_key=API_KEY) as server:
            yield WrittenCatalog(server, uid, emitted, errors)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_a_bench_run_is_served_from_postgres_after_a_restart(
    catalog: WrittenCatalog,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A failed catalog write would still read back (from the JSONL backup): none happened.
    assert catalog.write_errors == []
    assert len(catalog.emitted["time_s"]) == N_POINTS
    uid, server = catalog.uid, catalog.server
    # A fresh local folder: no backup of the run to fall back on.
    with RunStore(tmp_path / "reader", uri=server.api_uri, api_key=API_KEY) as store:
        assert not (tmp_path / "reader" / "backup" / f"{uid}.jsonl").exists()
        stored = store.load(uid).stream("electrochem")
    for key in EC_KEYS:
        np.testing.assert_array_equal(stored[key].to_numpy(), catalog.emitted[key], err_msg=key)

    # The points are rows of PostgreSQL (not of a file next to the server), and the run is a
    # node of the catalog database.
    assert rows_in_tables_database(server.postgres) == N_POINTS
    assert psql(server.postgres, CATALOG_DATABASE, f"SELECT 1 FROM nodes WHERE key = '{uid}'")

    # Through the command line, the key from $TILED_API_KEY, as another user would read it.
    monkeypatch.setenv("TILED_API_KEY", API_KEY)
    where = ["--catalog", server.api_uri, "--data", str(tmp_path / "cli")]
    capsys.readouterr()
    assert main(["runs", *where, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(r["uid"], r["sample"]) for r in listed] == [(uid, "pg-shared")]
    out = tmp_path / "hold.csv"
    assert main(["export", uid[:8], "--format", "csv", "--out", str(out), *where]) == 0
    exported = pd.read_csv(out)
    for key in EC_KEYS:
        np.testing.assert_allclose(
            exported[key].to_numpy(), catalog.emitted[key], rtol=1e-15, err_msg=key
        )


@pytest.mark.slow
def test_requests_without_the_key_are_refused(
    catalog: WrittenCatalog, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    metadata = f"{catalog.server.api_uri}/v1/metadata/"
    assert httpx.get(metadata).status_code == 401
    assert httpx.get(metadata, headers={"Authorization": "Apikey wrong"}).status_code == 401
    assert httpx.post(metadata, json={}).status_code == 401
    assert httpx.get(metadata, headers={"Authorization": f"Apikey {API_KEY}"}).status_code == 200
    with pytest.raises(CatalogUnavailableError, match="API key"):
        RunStore(tmp_path / "x", uri=catalog.server.api_uri, api_key="wrong").client  # noqa: B018


@pytest.mark.slow
def test_no_key_at_all_is_a_clear_error(
    catalog: WrittenCatalog, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("TILED_API_KEY", raising=False)
    with pytest.raises(CatalogUnavailableError, match="API key"):
        RunStore(tmp_path / "x", uri=catalog.server.api_uri).client  # noqa: B018


@pytest.mark.slow
def test_servers_listen_on_loopback_only(catalog: WrittenCatalog) -> None:
    psutil = pytest.importorskip("psutil")
    # tiled, started with its default host: one listening socket, on 127.0.0.1.
    tiled = psutil.Process(catalog.server.process.pid)
    listening = [c.laddr for c in tiled.net_connections("inet") if c.status == psutil.CONN_LISTEN]
    assert [(a.ip, a.port) for a in listening] == [("127.0.0.1", catalog.server.port)]
    # A server bound to every address (0.0.0.0) would also answer on 127.0.0.2; this one
    # refuses. (No packet goes to the machine's network addresses: only loopback is a target.)
    if sys.platform.startswith("linux"):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.2", catalog.server.port), timeout=5).close()
    socket.create_connection(("127.0.0.1", catalog.server.port), timeout=5).close()

    # PostgreSQL: no TCP socket at all, only a Unix socket in a folder its owner alone enters.
    pg = catalog.server.postgres
    assert psql(pg, "postgres", "SHOW listen_addresses") == [""]
    postmaster = psutil.Process(pg.process.pid)
    assert postmaster.net_connections("inet") == []
    for child in postmaster.children(recursive=True):
        # A backend may end between the listing and the look (its connection closed).
        with contextlib.suppress(psutil.NoSuchProcess):
            assert child.net_connections("inet") == [], child.cmdline()
    assert pg.socket_dir.stat().st_mode & 0o777 == 0o700
    assert pg.data_dir.stat().st_mode & 0o077 == 0


def test_serving_without_a_usable_key_is_refused_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TILED_API_KEY", raising=False)
    with pytest.raises(CatalogServerError, match=r"needs an API key.*TILED_API_KEY"):
        with serve_catalog(tmp_path / "server"):
            pass
    # tiled accepts letters and digits only; the message must not echo the key.
    with pytest.raises(CatalogServerError, match="letters and digits") as refused:
        with serve_catalog(tmp_path / "server", api_key="my-secret-key"):
            pass
    assert "my-secret-key" not in str(refused.value)
    assert not (tmp_path / "server").exists()


def test_missing_postgres_binaries_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(POSTGRES_BIN_ENV, str(tmp_path))
    with pytest.raises(CatalogServerError, match=r"has no initdb, postgres, psql"):
        postgres_bin_dir()


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="only root runs PostgreSQL as nobody"
)
def test_under_root_a_folder_nobody_cannot_enter_is_named(tmp_path: Path) -> None:
    need_postgres()
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    with pytest.raises(CatalogServerError, match=rf"cannot enter .*{re.escape(str(closed))}: put"):
        with start_postgres(closed / "pg"):
            pass


def test_catalog_server_command_without_a_key_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("TILED_API_KEY", raising=False)
    assert main(["catalog-server", str(tmp_path / "srv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "needs an API key" in err[1], err  # "starting ..." then the error


@pytest.mark.slow
def test_catalog_server_command_serves_until_ctrl_c() -> None:
    need_postgres()
    folder = server_folder()
    env = {**os.environ, "TILED_API_KEY": API_KEY}
    command = [sys.executable, "-m", "insitu.protocols.cli", "catalog-server", str(folder)]
    process = subprocess.Popen(
        [*command, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
    )
    try:
        info = json.loads(process.stdout.readline())
        assert info["host"] == "127.0.0.1" and info["uri"].endswith("/api")
        metadata = f"{info['uri']}/v1/metadata/"
        assert httpx.get(metadata).status_code == 401
        ok = httpx.get(metadata, headers={"Authorization": f"Apikey {API_KEY}"})
        assert ok.status_code == 200
        process.send_signal(2)  # Ctrl-C
        assert process.wait(60) == 0
        assert "catalog server stopped" in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
        shutil.rmtree(folder, ignore_errors=True)
