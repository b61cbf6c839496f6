"""Electrochemistry analysis: EIS fits, conductivity and Arrhenius, shorts and the critical current
density, overpotential tables, and measured files in and out (CSV, EC-Lab, JSONL runs).
"""

# The room's public API is the union of its modules' ``__all__`` (as TomoPy's packages do),
# each module imported when first asked for (see insitu.analysis.lazy_exports): reading a
# CSV does not wait for impedance.py.
from ..lazy_exports import lazy_union

__getattr__, __dir__ = lazy_union(
    __name__, ("conductivity", "eis", "overpotential", "readers", "runs", "shorts")
)
