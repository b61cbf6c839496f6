"""The virtual pellet: phases, porosity and Li fields, and crack geometry."""

from .cracks import (
    CrackRaster,
    crack_path,
    rasterise_path,
    render_crack_rows,
)
from .fields import (
    BLOCK_ROWS,
    FourierField,
    gaussian_kernel,
    interpolation_matrix,
    pore_field,
)
from .model import (
    MICROSTRUCTURES,
    Microstructure,
    PelletGeometry,
    VirtualPellet,
)
from .phases import (
    PHASE_MATERIALS,
    Phase,
    PhaseMaterial,
    electrolyte_material,
)

__all__ = [
    "BLOCK_ROWS",
    "MICROSTRUCTURES",
    "PHASE_MATERIALS",
    "CrackRaster",
    "FourierField",
    "Microstructure",
    "PelletGeometry",
    "Phase",
    "PhaseMaterial",
    "VirtualPellet",
    "crack_path",
    "electrolyte_material",
    "gaussian_kernel",
    "interpolation_matrix",
    "pore_field",
    "rasterise_path",
    "render_crack_rows",
]
