"""One entry point: every flavour of bench from a BenchSpec; an experiment file mapped onto one."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from bluesky import RunEngine

from insitu.instruments.devices.temperature import TemperatureController
from insitu.instruments.dxchange import read_data_exchange
from insitu.protocols.bench import (
    CELL_CHECKPOINT,
    Bench,
    BenchSpec,
    BenchSpecError,
    EpicsBeamline,
    SimPace,
    insitu_geometry,
    open_bench,
)
from insitu.protocols.experiment_config import validate_config
from insitu.protocols.plans.tomo import tomo_scan
from insitu.simulators.cell.model import CellGeometry
from insitu.simulators.imaging.cell_imaging import CellImagingSource
from insitu.simulators.imaging.disc_phantom import disc_frame_source

MODELS = {"keithley2450": "2450", "methodscript": "EmStat"}


def _port_of(resource: str) -> int:
    """The TCP port of a ``TCPIP::HOST::PORT::SOCKET`` or ``socket://HOST:PORT`` resource."""
    if resource.startswith("socket://"):
        return int(resource.rsplit(":", 1)[1])
    return int(resource.split("::")[2])


def _serving(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _small_scan(bench: Bench, n: int = 6) -> Path:
    RunEngine({})(
        tomo_scan(bench.camera, bench.stage, bench.shutter, n_projections=n, n_darks=1, n_flats=1)
    )
    assert bench.scans is not None
    (path,) = bench.scans.glob("*.h5")
    return path


# --- simulated potentiostat, each emulator ----------------------------------------------------
@pytest.mark.parametrize("emulator", ["keithley2450", "methodscript"])
def test_simulated_potentiostat_speaks_the_emulator_asked_for(emulator) -> None:
    spec = BenchSpec("sim:LiI-AN", emulator=emulator, speedup=1e3, seed=3)
    with open_bench(spec) as bench:
        assert bench.simulated and bench.spec is spec
        assert MODELS[emulator] in bench.potentiostat.driver.identify().model
        assert bench.cell is bench.sim.cell and bench.cell.material.name == "LiI-AN"
        assert bench.clock is bench.sim.clock and bench.clock.speedup == 1e3
        assert bench.resources == {"potentiostat": bench.sim.resource}
        assert bench.oven is bench.camera is bench.pace is None
        assert list(bench.devices()) == ["potentiostat"]
        port = _port_of(bench.sim.resource)
        assert _serving(port)
    assert not _serving(port)  # the emulator stopped with the bench


def test_sim_protocol_is_an_alias_of_emulator() -> None:
    assert BenchSpec("sim:A-LPS", sim_protocol="methodscript").emulator == "methodscript"
    with pytest.raises(BenchSpecError, match="give emulator= only"):
        BenchSpec("sim:A-LPS", emulator="methodscript", sim_protocol="keithley2450")


# --- with an oven -----------------------------------------------------------------------------
def test_simulated_cell_in_an_emulated_oven_on_its_clock() -> None:
    spec = BenchSpec(
        "sim:LiI-AN",
        emulator="methodscript",
        oven="sim",
        geometry=CellGeometry.conductivity(),
        temperature_C=40.0,
        speedup=1e4,
    )
    with open_bench(spec) as bench:
        assert isinstance(bench.oven, TemperatureController)
        assert set(bench.resources) == {"potentiostat", "oven"}
        assert bench.cell.temperature_K == pytest.approx(313.15)
        assert bench.oven.poll() == pytest.approx(313.15, abs=0.5)  # over the wire
        assert list(bench.devices()) == ["potentiostat", "oven"]


# --- with in-process tomography -------------------------------------------------------------
def test_in_situ_bench_images_the_cell_it_drives_and_checkpoints_it(tmp_path) -> None:
    spec = BenchSpec(
        "sim:A-LPS",
        emulator="methodscript",
        tomography="sim",
        scans=tmp_path / "scans",
        n_projections=6,
        geometry=CellGeometry.insitu(),
        speedup=2e4,
        rest_speedup=100.0,
        checkpoint=tmp_path / CELL_CHECKPOINT,
    )
    with open_bench(spec) as bench:
        assert isinstance(bench.pace, SimPace) and bench.clock.speedup == 100.0  # at rest
        assert isinstance(bench.imaging, CellImagingSource)
        # One clock drives the cell and the beamline.
        assert bench.tomo.clock is bench.clock is bench.sim.clock
        assert list(bench.devices()) == [
            "potentiostat",
            "camera",
            "stage",
            "shutter",
            "ring_current",
        ]
        assert (tmp_path / CELL_CHECKPOINT).is_file()  # written on entry
        projections, *_ = read_data_exchange(_small_scan(bench))
        assert projections.shape[0] == 6
        bench.beam_dump(outage_s=1.0)
        assert bench.ring_current.get() < 1.0


def test_simulated_beamline_alone_images_the_frame_source_given(tmp_path) -> None:
    source = disc_frame_source(16, 24)
    spec = BenchSpec(tomography="sim", frame_source=source, scans=tmp_path, speedup=100.0)
    with open_bench(spec) as bench:
        assert bench.potentiostat is None and not bench.simulated and bench.cell is None
        assert bench.clock is bench.tomo.clock and bench.clock.speedup == 100.0
        assert bench.imaging is None
        projections, *_ = read_data_exchange(_small_scan(bench, n=4))
        assert projections.shape == (4, 16, 24)


def test_a_bench_without_beamline_has_no_beam_to_dump() -> None:
    with open_bench(BenchSpec("sim:A-LPS", speedup=1e3)) as bench:
        with pytest.raises(RuntimeError, match="no simulated beamline"):
            bench.beam_dump()


# --- over EPICS ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_simulated_cell_imaged_by_the_ioc_over_channel_access(tmp_path) -> None:
    spec = BenchSpec(
        "sim:A-LPS",
        tomography="sim-epics",
        scans=tmp_path / "scans",
        n_projections=6,
        geometry=CellGeometry.insitu(),
        speedup=2e4,
        rest_speedup=100.0,
    )
    with open_bench(spec) as bench:
        process = bench.tomo.process
        assert bench.resources["tomography"] == bench.tomo.prefix
        assert bench.camera.connected and bench.stage.connected
        projections, *_ = read_data_exchange(_small_scan(bench))
        assert projections.shape[0] == 6
    assert process.poll() is not None  # the IOC stopped with the bench


# --- descriptions that cannot be opened -----------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"potentiostat": "sim:A-LPS", "emulator": "gamry"}, "unknown emulator"),
        ({"potentiostat": "sim:A-LPS", "oven": "TCPIP::1.2.3.4::7777::SOCKET"}, "oven='sim'"),
        ({"potentiostat": "TCPIP::1.2.3.4::5025::SOCKET", "oven": "sim"}, "simulated cell"),
        ({"potentiostat": "TCPIP::1.2.3.4::5025::SOCKET", "rest_speedup": 100.0}, "rest_speedup"),
        ({"potentiostat": "sim:A-LPS", "tomography": "sim"}, "scans=FOLDER"),
        ({"potentiostat": "sim:A-LPS", "tomography": "epics"}, "EpicsBeamline"),
        ({"tomography": "sim", "scans": "x"}, "frame_source="),
        (
            {"potentiostat": "TCPIP::1.2.3.4::5025::SOCKET", "tomography": "sim", "scans": "x"},
            "images the simulated cell",
        ),
        ({"potentiostat": "sim:A-LPS", "restore": True}, "checkpoint=PATH"),
        ({"potentiostat": "sim:A-LPS", "speedup": 0}, "positive"),
    ],
)
def test_impossible_benches_say_what_to_change(kwargs, match) -> None:
    with pytest.raises(BenchSpecError, match=match):
        BenchSpec(**kwargs)


def test_unknown_material_lists_the_presets() -> None:
    with pytest.raises(ValueError, match=r"unknown material 'NOPE'.*A-LPS"):
        BenchSpec("sim:NOPE")


def test_open_bench_takes_a_description() -> None:
    with pytest.raises(TypeError, match=r"open_bench\(BenchSpec"):
        with open_bench("sim:A-LPS"):  # type: ignore[arg-type]
            pass


def test_restore_without_a_checkpoint_file_says_so(tmp_path) -> None:
    spec = BenchSpec("sim:A-LPS", checkpoint=tmp_path / "cell.pkl", restore=True)
    with pytest.raises(FileNotFoundError, match="no cell checkpoint"):
        with open_bench(spec):
            pass


# --- an experiment file mapped onto a description -------------------------------------------
def _experiment(**devices):
    return validate_config(
        {"material": "LiI-AT", "geometry": {"area_cm2": 0.05}, "devices": devices}
    )


def test_simulated_experiment_maps_onto_an_in_situ_bench(tmp_path) -> None:
    cfg = _experiment(
        simulation={"protocol": "keithley2450", "speedup": 5e3, "rest_speedup": 50, "seed": 7}
    )
    spec = BenchSpec.from_experiment(cfg, tmp_path, restore=True)
    assert spec.potentiostat == "sim:LiI-AT" and spec.simulated and spec.material == "LiI-AT"
    assert spec.emulator == "keithley2450"
    assert (spec.speedup, spec.rest_speedup, spec.seed) == (5e3, 50, 7)
    assert spec.tomography == "sim" and spec.scans == tmp_path / "scans"
    assert spec.checkpoint == tmp_path / CELL_CHECKPOINT and spec.restore
    assert spec.geometry == insitu_geometry(cfg)
    assert spec.geometry.area_m2 == pytest.approx(0.05e-4)
    assert spec.geometry.stack_pressure_Pa == CellGeometry.insitu().stack_pressure_Pa
    assert (spec.size, spec.n_projections, spec.exposure_s) == ("small", 180, 0.1)
    assert spec.timeout_s == cfg.devices.timeout_s


def test_experiment_tomography_flavours_map_onto_the_description(tmp_path) -> None:
    assert BenchSpec.from_experiment(_experiment(tomography="none"), tmp_path).tomography is None
    sim_epics = BenchSpec.from_experiment(_experiment(tomography="sim-epics"), tmp_path)
    assert sim_epics.tomography == "sim-epics"
    real = BenchSpec.from_experiment(
        _experiment(
            potentiostat="TCPIP::10.0.0.5::5025::SOCKET",
            tomography="epics",
            epics_prefix="2bma:",
            timeout_s=2.0,
        ),
        tmp_path,
        restore=True,  # a real cell has nothing to restore: ignored
    )
    assert real.potentiostat == "TCPIP::10.0.0.5::5025::SOCKET" and not real.simulated
    assert real.tomography == EpicsBeamline("2bma:")
    assert real.checkpoint is None and not real.restore and real.rest_speedup is None
    assert real.geometry is None and real.timeout_s == 2.0
    assert real.n_projections == 1500


def test_experiment_bench_opens_from_its_description(tmp_path) -> None:
    cfg = _experiment(tomography="none", simulation={"speedup": 1e3})
    with open_bench(BenchSpec.from_experiment(cfg, tmp_path)) as bench:
        assert bench.pace is not None and bench.clock.speedup == 100.0
        assert bench.cell.geometry == insitu_geometry(cfg)
        assert bench.camera is None and (tmp_path / "scans").is_dir()
    assert (tmp_path / CELL_CHECKPOINT).is_file()
