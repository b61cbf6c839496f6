"""The simulated 2-BM beamline: in-process ophyd devices, and the caproto IOC with its process."""

from .devices import (
    FRAME_KINDS,
    FrameSource,
    SimRingCurrent,
    SimRotationStage,
    SimShutter,
    SimTomoBench,
    SimTomoCamera,
    sim_tomo_bench,
)
from .ioc_process import (
    IOCStartError,
    RunningIOC,
    beamline_ioc_process,
    ca_client_port,
)

__all__ = [
    "FRAME_KINDS",
    "FrameSource",
    "IOCStartError",
    "RunningIOC",
    "SimRingCurrent",
    "SimRotationStage",
    "SimShutter",
    "SimTomoBench",
    "SimTomoCamera",
    "beamline_ioc_process",
    "ca_client_port",
    "sim_tomo_bench",
]
