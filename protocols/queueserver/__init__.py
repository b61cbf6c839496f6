"""bluesky-queueserver for insitu's plans: the RE Manager with Redis on loopback, and the startup
module that opens one bench.
"""

# The room's public API is the union of its modules' ``__all__`` (as TomoPy's packages do):
# a name added to a module's ``__all__`` is exported here too.
from . import service
from .service import *

__all__ = list(dict.fromkeys([*service.__all__]))
