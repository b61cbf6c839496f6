"""Durability of the catalog: a full disk stops the run with its points backed up; a crashed
run's backup is closed and restored; an EIS export carries each point's temperature."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import bluesky.plan_stubs as bps
import numpy as np
import pandas as pd
import pytest
from bluesky import RunEngine
from bluesky.plans import count
from ophyd import Signal
from ophyd.sim import det1

from insitu.protocols.errors import UserError
from insitu.protocols.storage.catalog import (
    RECOVERED_REASON,
    RunStore,
    StorageWriteError,
    close_backup,
    iter_backup,
    load_backup,
)
from insitu.protocols.workflows.runs import export_run

EIS_COLUMNS = ["frequency_Hz", "z_real_ohm", "z_imag_ohm"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    with RunStore(tmp_path_factory.mktemp("durable")) as s:
        yield s


@pytest.fixture()
def RE(store: RunStore):
    engine = RunEngine({})
    tokens = store.subscribe(engine)
    yield engine
    for token in tokens:
        engine.unsubscribe(token)


def test_a_full_disk_stops_the_run_naming_the_path_and_the_backup_keeps_the_points(
    store: RunStore, RE: RunEngine, monkeypatch
) -> None:
    from bluesky_tiled_plugins.writing import tiled_writer

    tables = store.data_dir / "tables.sqlite"
    real = tiled_writer._RunWriter._write_internal_data
    calls = {"n": 0}

    def fills_up(self, rows, desc_node):
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError(errno.ENOSPC, "No space left on device", str(tables))
        return real(self, rows, desc_node)

    monkeypatch.setattr(tiled_writer._RunWriter, "_write_internal_data", fills_up)
    monkeypatch.setattr("insitu.protocols.storage.catalog.CATALOG_FLUSH_S", 0.0)
    with pytest.raises(StorageWriteError) as caught:
        RE(count([det1], 10))
    monkeypatch.undo()
    message = str(caught.value)
    assert isinstance(caught.value, UserError) and "\n" not in message
    assert str(tables) in message and "No space left on device" in message
    (uid,) = {f.run_uid for f in store.errors}
    backup = store.backup_dir / f"{uid}.jsonl"
    assert str(backup) in message and "insitu runs --repair" in message
    # The run stopped at the second point (the one the catalog could not take), and the
    # backup has both, closed as a failure.
    kept = load_backup(backup)
    assert len(kept.stream("primary")) == 2
    assert kept.stop["exit_status"] == "fail"
    # The catalog holds the first point; the repair gives it the backup's run.
    assert len(store._load_node(store.client[uid]).stream("primary")) == 1
    (entry,) = [r for r in store.repair() if r["uid"] == uid]
    assert (entry["action"], entry["points"], entry["catalog_points"]) == ("completed", 2, 1)
    assert store.load(uid).stop["exit_status"] == "fail"
    store.errors.clear()


def test_close_backup_mends_a_torn_line_and_leaves_a_live_run_alone(
    store: RunStore, RE: RunEngine, tmp_path: Path
) -> None:
    (uid,) = RE(count([det1], 3))
    lines = (store.backup_dir / f"{uid}.jsonl").read_text().splitlines()
    crashed = tmp_path / f"{uid}.jsonl"
    # Killed mid-write: no stop document and half a line at the end.
    crashed.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:20])
    stop = close_backup(crashed)
    assert stop is not None and stop["exit_status"] == "abort"
    assert stop["reason"] == RECOVERED_REASON and stop["num_events"] == {"primary": 3}
    docs = list(iter_backup(crashed))
    assert docs[-1] == ("stop", json.loads(json.dumps(stop)))
    assert close_backup(crashed) is None  # already closed: nothing appended

    # A run that is being written (its writer holds the lock) is not closed under it.
    with open(crashed, "a") as writer:
        import fcntl

        fcntl.flock(writer.fileno(), fcntl.LOCK_EX)
        crashed.write_text("\n".join(lines[:-1]) + "\n")
        with pytest.raises(StorageWriteError, match="still being written"):
            close_backup(crashed)


def temperature_series():
    """Two 'spectra' of three points, each after an oven reading (as the conductivity plan)."""
    oven = Signal(name="oven_readback", value=0.0)
    f, zr, zi = (Signal(name=n, value=0.0) for n in ("frequency_Hz", "z_real_ohm", "z_imag_ohm"))
    yield from bps.open_run({"plan_name": "conductivity_vs_temperature"})
    for kelvin in (298.15, 333.15):
        oven.put(kelvin)
        yield from bps.trigger_and_read([oven], name="temperature")
        for hz in (1e5, 1e3, 10.0):
            f.put(hz)
            zr.put(kelvin)
            zi.put(-1.0)
            yield from bps.trigger_and_read([f, zr, zi], name="eis")
    return (yield from bps.close_run())


def test_the_eis_export_of_a_temperature_series_has_each_points_temperature(
    store: RunStore, RE: RunEngine, tmp_path: Path
) -> None:
    (uid,) = RE(temperature_series())
    result = export_run(store, uid, out=tmp_path / "eis.csv")
    assert (result["stream"], result["rows"]) == ("eis", 6)
    data = pd.read_csv(tmp_path / "eis.csv")
    assert list(data.columns) == [
        "time",
        "frequency_Hz",
        "z_real_ohm",
        "z_imag_ohm",
        "temperature_K",
    ]
    np.testing.assert_array_equal(data["temperature_K"], [298.15] * 3 + [333.15] * 3)
    np.testing.assert_array_equal(data["temperature_K"], data["z_real_ohm"])
