"""ophyd devices: the potentiostat flyer, the temperature controller and the EPICS tomography
devices (rotation stage, shutter, camera writing Data Exchange).
"""

# The room's public API is the union of its modules' ``__all__`` (as TomoPy's packages do):
# a name added to a module's ``__all__`` is exported here too.
from . import potentiostat, temperature, tomo, tomo_assets
from .potentiostat import *
from .temperature import *
from .tomo import *
from .tomo_assets import *

__all__ = list(
    dict.fromkeys(
        [*potentiostat.__all__, *temperature.__all__, *tomo.__all__, *tomo_assets.__all__]
    )
)
