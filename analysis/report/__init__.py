"""Figures and HTML reports: electrochemistry figures, tomography figures, the report page, and
the in-situ experiment's report.
"""

# The room's public API is the union of its modules' ``__all__`` (as TomoPy's packages do):
# a name added to a module's ``__all__`` is exported here too.
from . import electrochem_figures, experiment, html, tomo_figures
from .electrochem_figures import *
from .experiment import *
from .html import *
from .tomo_figures import *

__all__ = list(
    dict.fromkeys(
        [*electrochem_figures.__all__, *experiment.__all__, *html.__all__, *tomo_figures.__all__]
    )
)
