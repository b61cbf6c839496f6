"""Electrochemistry analysis: EIS fits, conductivity and Arrhenius, shorts and the critical current
density, overpotential tables, and measured files in and out (CSV, EC-Lab, JSONL runs).
"""

# The room's public API is the union of its modules' ``__all__`` (as TomoPy's packages do):
# a name added to a module's ``__all__`` is exported here too.
from . import conductivity, eis, overpotential, readers, runs, shorts
from .conductivity import *
from .eis import *
from .overpotential import *
from .readers import *
from .runs import *
from .shorts import *

__all__ = list(
    dict.fromkeys(
        [
            *conductivity.__all__,
            *eis.__all__,
            *overpotential.__all__,
            *readers.__all__,
            *runs.__all__,
            *shorts.__all__,
        ]
    )
)
