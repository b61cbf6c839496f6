"""ophyd devices: the potentiostat flyer, the temperature controller and the EPICS tomography
devices (rotation stage, shutter, camera writing Data Exchange).
"""

from .potentiostat import (
    EIS_STREAM,
    TECHNIQUES,
    TIME_SERIES_STREAM,
    PotentiostatDevice,
    technique_from_dict,
    technique_to_dict,
)
from .temperature import (
    SettleTimeoutError,
    TemperatureController,
    TemperatureDriver,
)
from .tomo import (
    EpicsShutter,
    EpicsTomoCamera,
    EpicsTomoDevices,
    epics_tomo_devices,
)
from .tomo_assets import (
    FrameAssets,
    image_data_key,
)

__all__ = [
    "EIS_STREAM",
    "TECHNIQUES",
    "TIME_SERIES_STREAM",
    "EpicsShutter",
    "EpicsTomoCamera",
    "EpicsTomoDevices",
    "FrameAssets",
    "PotentiostatDevice",
    "SettleTimeoutError",
    "TemperatureController",
    "TemperatureDriver",
    "epics_tomo_devices",
    "image_data_key",
    "technique_from_dict",
    "technique_to_dict",
]
