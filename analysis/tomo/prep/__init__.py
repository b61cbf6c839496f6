"""Projection preprocessing, as in ``tomopy.prep``: flat/dark normalisation, stripe (ring)
removal, phase retrieval and alignment.
"""

from .alignment import (
    Shift,
    align_to,
    apply_shift,
)
from .flat_field import (
    minus_log,
    normalize,
    remove_outlier,
    remove_zinger,
)
from .phase import (
    alpha_from_delta_beta,
    paganin_filter,
    paganin_length,
    retrieve_phase,
)
from .stripe import (
    fw_auto_level,
    remove_stripe_based_sorting,
    remove_stripe_fw,
    ring_amplitude,
)

__all__ = [
    "Shift",
    "align_to",
    "alpha_from_delta_beta",
    "apply_shift",
    "fw_auto_level",
    "minus_log",
    "normalize",
    "paganin_filter",
    "paganin_length",
    "remove_outlier",
    "remove_stripe_based_sorting",
    "remove_stripe_fw",
    "remove_zinger",
    "retrieve_phase",
    "ring_amplitude",
]
