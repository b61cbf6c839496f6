"""Run storage: real RunEngine, real plans, embedded and remote tiled catalogs, JSONL backup."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import bluesky.plan_stubs as bps
import httpx
import numpy as np
import pandas as pd
import pytest
from bluesky import RunEngine
from bluesky.plans import count
from ophyd import Signal
from ophyd.sim import det1, det2
from ophyd.status import StatusBase

from insitu.protocols.storage.catalog import (
    CatalogUnavailableError,
    RunNotFoundError,
    RunStore,
    load_backup,
)

EC_KEYS = {"time_s": "number", "voltage_V": "number", "current_A": "number", "step": "integer"}
EIS_KEYS = {"frequency_Hz": "number", "z_real_ohm": "number", "z_imag_ohm": "number"}


class ElectrochemFlyer:
    """A flyer in the shape bluesky 1.15 expects of ``bps.collect``.

    ``describe_collect`` returns ``{stream: {key: DataKey}}``; ``collect`` yields partial
    events (``data`` and ``timestamps``), and the RunEngine routes each to the stream whose
    keys it carries and emits one event page per stream.
    """

    parent = None

    def __init__(self, n_points: int, n_eis: int = 0, seed: int = 0, name: str = "ec") -> None:
        self.name = name
        rng = np.random.default_rng(seed)
        t = np.arange(n_points, dtype=float) * 0.5
        step = (np.arange(n_points) // max(1, n_points // 8)).astype(np.int64)
        current = 1e-4 * (1 + step) * np.where(step % 2 == 0, 1.0, -1.0)
        voltage = 0.02 + 50.0 * current + rng.normal(0.0, 1e-4, n_points)
        self.electrochem = pd.DataFrame(
            {"time_s": t, "voltage_V": voltage, "current_A": current, "step": step}
        )
        f = np.logspace(6, -1, n_eis)
        z = 120.0 + 800.0 / (1 + 2j * np.pi * f * 800.0 * 1e-9)
        self.eis = pd.DataFrame({"frequency_Hz": f, "z_real_ohm": z.real, "z_imag_ohm": -z.imag})

    def _done(self) -> StatusBase:
        status = StatusBase()
        status.set_finished()
        return status

    def kickoff(self) -> StatusBase:
        return self._done()

    def complete(self) -> StatusBase:
        return self._done()

    def describe_collect(self) -> dict:
        def keys(spec: dict[str, str]) -> dict:
            return {k: {"source": f"sim:{k}", "dtype": d, "shape": []} for k, d in spec.items()}

        out = {"electrochem": keys(EC_KEYS)}
        if len(self.eis):
            out["eis"] = keys(EIS_KEYS)
        return out

    def collect(self):
        now = time.time()
        for table in (self.electrochem, self.eis):
            for row in table.itertuples(index=False):
                # numpy scalars on purpose: the backup must convert them.
                data = {k: v for k, v in zip(table.columns, row, strict=True)}
                yield {"data": data, "timestamps": dict.fromkeys(data, now)}

    def read_configuration(self) -> dict:
        return {}

    def describe_configuration(self) -> dict:
        return {}


def fly(flyer: ElectrochemFlyer, md: dict | None = None):
    """Open a run, fly, collect every stream, close."""
    yield from bps.open_run(md={"plan_name": "fly", **(md or {})})
    yield from bps.kickoff(flyer, wait=True)
    yield from bps.complete(flyer, wait=True)
    yield from bps.collect(flyer)
    return (yield from bps.close_run())


def data_only(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns="time").reset_index(drop=True)


# One embedded store for the module: creating a catalog costs ~3 s (tiled initialises the
# database in a subprocess), which every test would otherwise pay again.
@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    with RunStore(tmp_path_factory.mktemp("store")) as s:
        yield s


@pytest.fixture(scope="module")
def RE(store: RunStore):
    engine = RunEngine({})
    store.subscribe(engine)
    documents: list[tuple[str, dict]] = []
    engine.subscribe(lambda name, doc: documents.append((name, doc)))
    engine.documents = documents  # type: ignore[attr-defined]
    return engine


@pytest.fixture(scope="module")
def fly_run(RE: RunEngine):
    flyer = ElectrochemFlyer(3000, n_eis=40, seed=1)
    (uid,) = RE(fly(flyer, md={"sample": "Li6PS5Cl", "material": "LPSCl"}))
    return uid, flyer


def event_times(documents: list[tuple[str, dict]], uid: str, stream: str) -> np.ndarray:
    descs = {
        d["uid"]
        for n, d in documents
        if n == "descriptor" and d["run_start"] == uid and d["name"] == stream
    }
    times: list[float] = []
    for name, doc in documents:
        if name == "event_page" and doc["descriptor"] in descs:
            times.extend(doc["time"])
        elif name == "event" and doc["descriptor"] in descs:
            times.append(doc["time"])
    return np.asarray(times)


def test_count_over_simulated_detectors_reads_back(store: RunStore, RE: RunEngine) -> None:
    step = Signal(name="step", value=np.int64(3))
    temp = Signal(name="temperature_C", value=np.float32(60.5))
    (uid,) = RE(count([det1, det2, step, temp], num=5), sample="pellet-7")
    events = [
        d
        for n, d in RE.documents
        if n == "event"
        and d["descriptor"]
        in {dd["uid"] for nn, dd in RE.documents if nn == "descriptor" and dd["run_start"] == uid}
    ]
    expected = pd.DataFrame(
        {
            "time": [e["time"] for e in events],
            **{k: [e["data"][k] for e in events] for k in ("det1", "det2", "step")},
            "temperature_C": [float(e["data"]["temperature_C"]) for e in events],
        }
    )

    run = store.load(uid)
    assert run.uid == uid
    assert run.metadata["start"]["sample"] == "pellet-7"
    assert run.metadata["stop"]["exit_status"] == "success"
    got = run.stream("primary")
    assert list(got.columns) == ["time", "det1", "det2", "step", "temperature_C"]
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    assert got["step"].tolist() == [3] * 5
    # The backup alone gives the very same table.
    pd.testing.assert_frame_equal(store.load_backup(uid).stream("primary"), got)
    # A uid prefix and -1 (latest) find the same run.
    assert store.load(uid[:8]).uid == uid
    assert store.load(-1).uid == uid


def test_flyer_streams_read_back_equal_to_what_was_produced(
    store: RunStore,
    RE: RunEngine,
    fly_run,
) -> None:
    uid, flyer = fly_run
    run = store.load(uid)
    assert set(run.streams) == {"electrochem", "eis"}
    ec = run.stream("electrochem")
    assert list(ec.columns) == ["time", *EC_KEYS]
    pd.testing.assert_frame_equal(data_only(ec), flyer.electrochem)
    pd.testing.assert_frame_equal(data_only(run.stream("eis")), flyer.eis)
    np.testing.assert_array_equal(ec["time"], event_times(RE.documents, uid, "electrochem"))
    assert ec["step"].dtype == np.int64
    assert run.descriptors["electrochem"][0]["data_keys"]["voltage_V"]["source"] == "sim:voltage_V"
    with pytest.raises(KeyError, match="electrochem"):
        run.stream("primary")


def test_only_the_streams_asked_for_are_read(store: RunStore, fly_run) -> None:
    uid, flyer = fly_run
    run = store.load(uid, streams=("eis", "not-there"))
    assert set(run.streams) == set(run.descriptors) == {"eis"}
    pd.testing.assert_frame_equal(data_only(run.stream("eis")), flyer.eis)
    with pytest.raises(KeyError, match="its streams are \\['eis'\\]"):
        run.stream("electrochem")
    bare = store.load(uid, streams=())
    assert bare.streams == {} and bare.stop["exit_status"] == "success"


def test_new_process_reads_identical_points(store: RunStore, fly_run, tmp_path: Path) -> None:
    uid, _ = fly_run
    out = tmp_path / "ec.parquet"
    code = (
        "import sys; from insitu.protocols.storage.catalog import RunStore;"
        "s = RunStore(sys.argv[1]); r = s.load(sys.argv[2]);"
        "r.stream('electrochem').to_parquet(sys.argv[3]); s.close()"
    )
    # The parent keeps its store open: the embedded catalog must allow a second reader.
    proc = subprocess.run(
        [sys.executable, "-c", code, str(store.location), uid[:10], str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    pd.testing.assert_frame_equal(pd.read_parquet(out), store.load(uid).stream("electrochem"))


def test_location_comes_from_environment(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("INSITU_DATA", str(tmp_path / "from-env"))
    s = RunStore()
    assert s.location == (tmp_path / "from-env").resolve()
    assert s.catalog_path.name == "catalog.db"
    assert not s.location.exists()  # created on first use, not on construction


def test_catalog_failure_leaves_complete_backup_then_restore(
    store: RunStore,
    RE: RunEngine,
    monkeypatch,
) -> None:
    from bluesky_tiled_plugins.writing import tiled_writer

    def broken(self, doc):
        raise OSError("simulated catalog failure: disk full")

    monkeypatch.setattr(tiled_writer._RunWriter, "event_page", broken)
    n_errors = len(store.errors)
    flyer = ElectrochemFlyer(2000, n_eis=10, seed=2)
    (uid,) = RE(fly(flyer))  # the run finishes despite the failure
    monkeypatch.undo()

    assert RE.state == "idle"
    stop = [d for n, d in RE.documents if n == "stop" and d["run_start"] == uid]
    assert stop and stop[0]["exit_status"] == "success"
    new = store.errors[n_errors:]
    assert len(new) == 1
    assert (new[0].run_uid, new[0].target, new[0].document) == (uid, "catalog", "event_page")
    assert "disk full" in str(new[0])
    assert new[0].backup_path == store.backup_dir / f"{uid}.jsonl"
    with pytest.raises(RuntimeError, match="restore_backup"):
        store.raise_errors()

    # Nothing is lost: the backup alone holds every point ...
    backed_up = load_backup(new[0].backup_path)
    assert backed_up.metadata["stop"]["exit_status"] == "success"
    pd.testing.assert_frame_equal(data_only(backed_up.stream("electrochem")), flyer.electrochem)
    pd.testing.assert_frame_equal(data_only(backed_up.stream("eis")), flyer.eis)
    # ... while the catalog holds a partial run that does not pass for a complete one ...
    assert store.client[uid].metadata.get("stop") is None
    assert store.runs().set_index("uid").loc[uid, "exit_status"] is None
    # ... and reading the run gives the backup's copy, every point of it.
    pd.testing.assert_frame_equal(
        store.load(uid).stream("electrochem"), backed_up.stream("electrochem")
    )

    # The next run is written to the catalog normally.
    (uid2,) = RE(count([det1], num=2))
    assert len(store.errors) == n_errors + 1
    assert store.load(uid2).stop["exit_status"] == "success"

    # restore_backup replaces the partial run with the complete one.
    assert store.restore_backup(new[0].backup_path) == uid
    restored = store.load(uid)
    assert restored.stop["exit_status"] == "success"
    for name in ("electrochem", "eis"):
        pd.testing.assert_frame_equal(restored.stream(name), backed_up.stream(name))
    with pytest.raises(FileExistsError, match="replace=True"):
        store.restore_backup(uid)
    del store.errors[n_errors:]


@pytest.mark.slow  # a new catalog costs ~4 s to initialise
def test_restore_into_a_fresh_catalog(store: RunStore, fly_run, tmp_path: Path) -> None:
    """The catalog is lost; the backups rebuild it."""
    uid, flyer = fly_run
    with RunStore(tmp_path / "rebuilt") as fresh:
        fresh.restore_backup(store.backup_dir / f"{uid}.jsonl")
        pd.testing.assert_frame_equal(
            data_only(fresh.load(-1).stream("electrochem")), flyer.electrochem
        )
        assert fresh.runs()["uid"].tolist() == [uid]


def test_runs_lists_with_metadata(store: RunStore, fly_run) -> None:
    uid, _ = fly_run
    runs = store.runs()
    assert {"uid", "plan_name", "time", "exit_status", "sample", "material"} <= set(runs.columns)
    row = runs.set_index("uid").loc[uid]
    assert (row["plan_name"], row["sample"], row["material"]) == ("fly", "Li6PS5Cl", "LPSCl")
    assert row["exit_status"] == "success"
    assert runs["time"].is_monotonic_increasing
    assert store.load(-1).uid == runs["uid"].iloc[-1]
    assert store.load(0).uid == runs["uid"].iloc[0]
    assert store.runs(limit=1)["uid"].tolist() == [runs["uid"].iloc[-1]]


def test_unknown_run_is_a_clear_error(store: RunStore) -> None:
    with pytest.raises(RunNotFoundError, match=r"deadbeef.*`insitu runs`"):
        store.load("deadbeef")
    with pytest.raises(KeyError, match="holds"):
        store.load(10_000)


def test_uid_prefix_of_digits_is_not_taken_for_an_index(
    store: RunStore, RE: RunEngine, monkeypatch
) -> None:
    # CI once drew a run uid starting "34852053": `insitu export 34852053` read it as
    # index 34852053 and failed. Digits are an index only when that index exists.
    import uuid

    import bluesky.bundlers

    digits_uid = "34852053" + str(uuid.uuid4())[8:]
    uids = iter([digits_uid])
    monkeypatch.setattr(bluesky.bundlers, "new_uid", lambda: next(uids, str(uuid.uuid4())))
    (uid,) = RE(count([det1]))
    assert uid == digits_uid
    assert store.load("34852053").uid == digits_uid
    assert store.load("-1").uid == digits_uid
    assert store.load("0").uid == store.runs()["uid"].iloc[0]


def test_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    port = _free_port()
    s = RunStore(tmp_path, uri=f"http://127.0.0.1:{port}/api", api_key="secret")
    t0 = time.perf_counter()
    with pytest.raises(CatalogUnavailableError, match=r"cannot reach the tiled server.*running"):
        s.subscribe(RunEngine({}))
    assert time.perf_counter() - t0 < 10


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def tiled_server(tmp_path: Path):
    exe = shutil.which("tiled", path=os.path.dirname(sys.executable)) or shutil.which("tiled")
    if exe is None:
        pytest.skip("the `tiled` command is not installed, so no tiled server can be started")
    port = _free_port()
    folder = tmp_path / "server"
    (folder / "data").mkdir(parents=True)
    cmd = [
        exe, "serve", "catalog", str(folder / "catalog.db"), "--init",
        "-w", str(folder / "data"), "-w", f"sqlite:///{folder / 'tables.sqlite'}",
        "--api-key", "secret", "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    log = open(folder / "server.log", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            if proc.poll() is not None:
                pytest.skip(
                    "the tiled server could not start here: "
                    + (folder / "server.log").read_text(errors="replace")[-500:]
                )
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.skip("the tiled server did not answer within 60 s")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.mark.slow
def test_remote_tiled_server(tiled_server: str, tmp_path: Path) -> None:
    with RunStore(tmp_path / "local", uri=f"{tiled_server}/api", api_key="secret") as store:
        RE = RunEngine({})
        store.subscribe(RE)
        flyer = ElectrochemFlyer(1500, n_eis=20, seed=3)
        (uid,) = RE(fly(flyer, md={"sample": "remote"}))
        assert store.errors == []
        run = store.load(uid[:8])
        pd.testing.assert_frame_equal(data_only(run.stream("electrochem")), flyer.electrochem)
        pd.testing.assert_frame_equal(data_only(run.stream("eis")), flyer.eis)
        assert store.runs()["sample"].tolist() == ["remote"]
        # The backup stays local even when the catalog is remote.
        assert (tmp_path / "local" / "backup" / f"{uid}.jsonl").is_file()
    with pytest.raises(CatalogUnavailableError, match="API key"):
        RunStore(tmp_path / "x", uri=f"{tiled_server}/api", api_key="wrong").client  # noqa: B018
