"""Benches: the devices of an experiment, real or simulated, from one description.

One way in: describe the bench with a :class:`BenchSpec`, open it with :func:`open_bench`
(a context manager), use the devices of the :class:`Bench` it yields. Whatever opened is
closed on exit: the cell switched off, emulators and IOCs stopped. ``sim:MATERIAL`` starts a
virtual cell behind an instrument emulator on 127.0.0.1, reached through the ordinary driver
over a real socket; every simulated device runs on that cell's one clock.

A simulated potentiostat, with each emulator (a Keithley 2450 over SCPI; an EmStat4 over
MethodSCRIPT, which also measures EIS)::

    from bluesky import RunEngine
    from insitu.protocols.bench import BenchSpec, open_bench
    from insitu.protocols.plans.electrochem import ccd_test, eis

    RE = RunEngine({})
    with open_bench(BenchSpec("sim:A-LPS", speedup=2e4)) as bench:
        RE(ccd_test(bench.potentiostat))
    with open_bench(BenchSpec("sim:LiI-AN", emulator="methodscript")) as bench:
        RE(eis(bench.potentiostat))

A real potentiostat (and a real Lake Shore 336 oven)::

    BenchSpec("TCPIP::10.0.0.5::5025::SOCKET", oven="TCPIP::10.0.0.6::7777::SOCKET")

A simulated cell in an emulated oven (conductivity over temperature)::

    spec = BenchSpec("sim:LiI-AN", emulator="methodscript", oven="sim",
                     geometry=CellGeometry.conductivity())
    with open_bench(spec) as bench:
        RE(conductivity_vs_temperature(bench.potentiostat, bench.oven, temperatures_C=[25, 60]))

The in-situ bench: one simulated cell on both wires, the simulated 2-BM beamline imaging it
in process (``tomography="sim"``) or as a caproto IOC over Channel Access
(``"sim-epics"``); the clock fast while current flows, near real time at rest::

    spec = BenchSpec("sim:A-LPS", emulator="methodscript", tomography="sim",
                     scans="exp/scans", geometry=CellGeometry.insitu(),
                     speedup=2e4, rest_speedup=100.0, checkpoint="exp/cell.pkl")
    with open_bench(spec) as bench:
        RE.subscribe(bench.pace)
        RE(tomo_scan(bench.camera, bench.stage, bench.shutter, n_projections=180))

The same from an experiment file (``devices`` section), as ``insitu experiment`` does::

    spec = BenchSpec.from_experiment(load_config("experiment.yaml"), "experiments/try-1")

A real beamline::

    BenchSpec("TCPIP::10.0.0.5::5025::SOCKET", tomography=EpicsBeamline("2bma:"))

A simulated beamline alone, imaging a frame source (``insitu tomo-scan --sim``)::

    BenchSpec(tomography="sim", frame_source=pellet_frame_source("A-LPS"), scans="scans")

The pieces it composes stay available for what is not a bench: an emulator serving a cell
on its own (:func:`insitu.protocols.bench.emulated.start_emulator`, ``insitu sim serve``) and
the beamline IOC with any frame source
(:func:`insitu.protocols.bench.tomo_epics.epics_tomo_bench`).
"""

# The room's public API is the union of its modules' ``__all__`` (as TomoPy's packages do):
# a name added to a module's ``__all__`` is exported here too.
from . import compose, emulated, pace, spec, tomo_epics
from .compose import *
from .emulated import *
from .pace import *
from .spec import *
from .tomo_epics import *

__all__ = list(
    dict.fromkeys(
        [*compose.__all__, *emulated.__all__, *pace.__all__, *spec.__all__, *tomo_epics.__all__]
    )
)
