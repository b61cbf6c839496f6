"""Startup module of bluesky-queueserver: insitu's plans and the devices of one bench.

Start the queue server on it with ``insitu queue-server`` (or
:func:`insitu.protocols.queueserver.service.queue_server`), or by hand::

    start-re-manager --startup-module insitu.protocols.queueserver.startup \\
        --existing-plans-devices STATE/existing_plans_and_devices.yaml \\
        --user-group-permissions STATE/user_group_permissions.yaml \\
        --redis-addr 127.0.0.1:PORT \\
        --zmq-control-addr tcp://127.0.0.1:60615 --zmq-info-addr tcp://127.0.0.1:60625

How the queue server uses it: each time the environment opens, the RE Worker (a fresh
process) imports this module and copies its names into the worker namespace. Generator
functions become the plans it offers, ophyd objects the devices (looked up by these names:
``potentiostat``, ``camera``, ``stage``, ``shutter``, ``ring_current``), and ``RE`` is the
RunEngine that runs the plans. The worker does not make ``RE`` (nor ``db``): startup code must,
and the worker takes ``namespace["RE"]`` once the module is loaded; ``db`` (databroker) is
not used, runs go to the tiled catalog of :class:`~insitu.protocols.storage.catalog.RunStore`. Names
starting with ``_`` are this module's own and the permissions written by
:mod:`insitu.protocols.queueserver.service` hide them.

The bench comes from environment variables, so the same module serves the simulated bench
and real hardware:

``INSITU_QS_POTENTIOSTAT``
    Potentiostat resource (``TCPIP::…::SOCKET``, ``/dev/ttyACM0``…) or ``sim:MATERIAL``
    (default ``sim:A-LPS``), as :class:`insitu.protocols.bench.BenchSpec` takes it.
``INSITU_QS_SPEEDUP``
    Simulated seconds per real second of the simulated bench (default ``1e4``).
``INSITU_QS_SIM_PROTOCOL``
    Which instrument the simulated bench emulates: ``methodscript`` (the default: a PalmSens
    EmStat4, which runs every plan here, EIS included) or ``keithley2450`` (a SourceMeter: no
    EIS).
``INSITU_QS_DATA``
    Folder of the embedded catalog the runs go to (default ``./insitu-data``).
``INSITU_QS_TOMO``
    ``sim``: the in-process simulated 2-BM beamline on the bench's simulation clock, imaging
    the pellet of the very cell the potentiostat emulator drives, in its state at the start
    of each scan (the bench of an in-situ experiment,
    :meth:`insitu.protocols.bench.BenchSpec.from_experiment`, small size); ``none`` (the
    default): no tomography devices.

The bench and the catalog are opened only where the queue server loads this module (its RE
Worker, or ``qserver-list-plans-devices``: both set ``_QSERVER_RE_WORKER_ACTIVE``, see
``bluesky_queueserver.is_re_worker_active``). A plain import (the test suite importing every
module, an editor) defines the plans and leaves ``RE`` and the devices ``None``: it opens no
instrument and writes no file. They are closed when the worker exits: the environment closing
(the queue server's orderly way), or the process ending.
"""

from __future__ import annotations

import atexit
import contextlib as _contextlib
import functools as _functools
import importlib.util as _importlib_util
import inspect as _inspect
import multiprocessing.util as _mp_util
import os as _os
import typing as _typing
from collections.abc import Callable as _Callable
from typing import Any as _Any

from bluesky import RunEngine as _RunEngine
from bluesky_queueserver import is_re_worker_active as _is_re_worker_active

from ..bench import SIM_PREFIX as _SIM_PREFIX
from ..bench import BenchSpec as _BenchSpec
from ..bench import is_sim_resource as _is_sim_resource
from ..bench import open_bench as _open_bench
from ..plans import electrochem as _plans
from ..plans import tomo as _tomo_plans
from ..storage.catalog import DEFAULT_LOCATION as _DEFAULT_LOCATION
from ..storage.catalog import RunStore as _RunStore
from .service import ENV_DATA as _ENV_DATA
from .service import ENV_POTENTIOSTAT as _ENV_POTENTIOSTAT
from .service import ENV_SIM_PROTOCOL as _ENV_SIM_PROTOCOL
from .service import ENV_SPEEDUP as _ENV_SPEEDUP
from .service import ENV_TOMO as _ENV_TOMO

#: Parameters that take a device: the queue server turns a device name given for them into
#: the device of that name.
_DEVICE_PARAMETERS = frozenset(
    {"potentiostat", "oven", "camera", "stage", "shutter", "ring_current"}
)


def _setting(name: str, default: str) -> str:
    return (_os.environ.get(name) or default).strip()


def _speedup() -> float:
    text = _setting(_ENV_SPEEDUP, "1e4")
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise ValueError(f"{_ENV_SPEEDUP} must be a positive number, got {text!r}")
    return value


def _sim_protocol() -> _Any:
    value = _setting(_ENV_SIM_PROTOCOL, "methodscript").lower()
    if value not in ("methodscript", "keithley2450"):
        raise ValueError(
            f"{_ENV_SIM_PROTOCOL} must be 'methodscript' or 'keithley2450', got {value!r}"
        )
    return value


def _tomo() -> str:
    value = _setting(_ENV_TOMO, "none").lower()
    if value not in ("sim", "none"):
        raise ValueError(f"{_ENV_TOMO} must be 'sim' or 'none', got {value!r}")
    return value


def _resolved_annotation(plan: _Callable[..., _Any], annotation: _Any) -> _Any:
    """The annotation as a type object (the plans' modules postpone annotations to strings)."""
    if not isinstance(annotation, str):
        return annotation
    try:
        return eval(annotation, vars(_inspect.getmodule(plan)))  # the plan module's own annotation
    except Exception:
        return _inspect.Parameter.empty  # unvalidated rather than unusable


def _queue_plan(plan: _Callable[..., _Any]) -> _Callable[..., _Any]:
    """``plan`` with a signature the queue server can validate and bind device names to.

    The plan modules use ``from __future__ import annotations``, so their annotations are
    strings ("float", "dict[str, Any] | None") that the queue server cannot rebuild into the
    pydantic model it validates parameters with: every submission would fail. The wrapper
    has the same parameters, defaults and docstring with the annotations evaluated, and no
    annotation on device parameters, which is how the queue server knows to turn a device name
    given there into the device.
    """
    try:
        hints = _typing.get_type_hints(plan)
    except Exception:
        hints = {}
    signature = _inspect.signature(plan)
    parameters = []
    for p in signature.parameters.values():
        if p.name in _DEVICE_PARAMETERS:
            annotation = _inspect.Parameter.empty
        else:
            annotation = hints.get(p.name, _resolved_annotation(plan, p.annotation))
        parameters.append(p.replace(annotation=annotation))

    @_functools.wraps(plan)
    def queue_plan(*args: _Any, **kwargs: _Any) -> _Any:
        return (yield from plan(*args, **kwargs))

    queue_plan.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=parameters, return_annotation=_inspect.Signature.empty
    )
    queue_plan.__annotations__ = {
        p.name: p.annotation for p in parameters if p.annotation is not _inspect.Parameter.empty
    }
    return queue_plan


# -- plans ---------------------------------------------------------------------------------

eis = _queue_plan(_plans.eis)
galvanostatic_hold = _queue_plan(_plans.galvanostatic_hold)
plate_strip = _queue_plan(_plans.plate_strip)
ccd_test = _queue_plan(_plans.ccd_test)
tomo_scan = _queue_plan(_tomo_plans.tomo_scan)

# The whole in-situ experiment as one plan lives in insitu.protocols.plans.experiment, which is
# being written alongside this module. Offer it as soon as that module exists and defines
# `insitu_experiment`; until then the queue server starts without it. Only a missing module
# (or name) is tolerated: a module that exists but fails to import is a bug, and its error
# stops the environment from opening, with the traceback in the queue server's log.
if _importlib_util.find_spec("insitu.protocols.plans.experiment") is not None:
    from ..plans import experiment as _experiment_plan

    if callable(getattr(_experiment_plan, "insitu_experiment", None)):
        insitu_experiment = _queue_plan(_experiment_plan.insitu_experiment)


# -- RunEngine, catalog, devices -------------------------------------------------------------

_resources = _contextlib.ExitStack()
_closed = False


def _close() -> None:
    """Close the bench (the cell switched off, emulators stopped) and the catalog, once."""
    global _closed
    if _closed:
        return
    _closed = True
    try:
        _resources.close()
    finally:
        print("insitu.protocols.queueserver.startup: bench and catalog closed", flush=True)


def _open_devices(RE: _Any) -> dict[str, _Any]:
    """Open the catalog (subscribed to ``RE``) and the bench; the devices by name."""
    store = _resources.enter_context(_RunStore(_setting(_ENV_DATA, _DEFAULT_LOCATION)))
    store.subscribe(RE)  # opens the catalog now: a bad folder fails here, not mid-run
    instrument = _setting(_ENV_POTENTIOSTAT, f"{_SIM_PREFIX}A-LPS")
    bench = _resources.enter_context(_open_bench(_bench_spec(instrument, store.data_dir / "tomo")))
    if bench.pace is not None:
        # Simulated time fast while current flows, near real time at rest (scans, EIS).
        RE.subscribe(bench.pace)
    return bench.devices()


def _bench_spec(instrument: str, folder: _Any) -> _BenchSpec:
    """The bench the environment variables describe (scans and checkpoint under ``folder``)."""
    if _tomo() != "sim":
        return _BenchSpec(instrument, emulator=_sim_protocol(), speedup=_speedup())
    if not _is_sim_resource(instrument):
        raise ValueError(
            f"{_ENV_TOMO}=sim images the simulated cell: set {_ENV_POTENTIOSTAT} to "
            f"sim:MATERIAL, not {instrument!r}"
        )
    from ..experiment_config import validate_config

    # One virtual cell on both wires, as in an in-situ experiment: the potentiostat emulator
    # drives it, the simulated beamline images it in the state it is in when each scan
    # starts. Small size (64 × 128 × 128 voxels of 3 µm). Scans go under the catalog's data
    # folder, so the catalog can serve the frames.
    cfg = validate_config(
        {
            "material": instrument.strip()[len(_SIM_PREFIX) :],
            "devices": {
                "potentiostat": "sim",
                "tomography": "sim",
                "simulation": {"speedup": _speedup(), "emulator": _sim_protocol()},
            },
        },
        source="the queue server's bench",
    )
    return _BenchSpec.from_experiment(cfg, folder)


RE: _Any = None
potentiostat: _Any = None
camera: _Any = None
stage: _Any = None
shutter: _Any = None
ring_current: _Any = None

# Only in the queue server's worker (or `qserver-list-plans-devices`), which set the flag
# before loading startup code: a plain import (the test suite importing every module, an
# editor, the docs) defines the plans and opens nothing, writes nothing.
if _is_re_worker_active():
    RE = _RunEngine({})
    # Pauses and beam-loss suspensions go into each run's "interruptions" stream.
    RE.record_interruptions = True
    try:
        _devices = _open_devices(RE)
    except BaseException:
        _close()
        raise
    potentiostat = _devices["potentiostat"]
    camera = _devices.get("camera")
    stage = _devices.get("stage")
    shutter = _devices.get("shutter")
    ring_current = _devices.get("ring_current")

    # The worker is a multiprocessing child: with the "fork" start method it leaves through
    # os._exit(), which skips atexit but runs multiprocessing's finalizers; an ordinary process
    # runs atexit. Register both; _close runs once. Registered after the bench opened, so that
    # at exit it runs before the handlers the drivers' libraries registered meanwhile (atexit
    # runs last-in first-out; pyvisa closes its sessions in one of them).
    atexit.register(_close)
    _mp_util.Finalize(None, _close, exitpriority=100)
