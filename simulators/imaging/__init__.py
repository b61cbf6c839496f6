"""X-ray imaging of the virtual pellet: attenuation and projector, detector model, and camera frame
sources (a pellet at a point of its history, a live cell, an analytic disc).
"""

from .cell_imaging import (
    CellImagingSource,
    CellStateServer,
    StateProvider,
    remote_cell_frame_source,
)
from .detector import (
    fresnel_intensity,
    wavelength_m,
)
from .disc_phantom import (
    disc_frame_source,
)
from .frame_source import (
    DEFAULT_PROJECTIONS,
    SIZES,
    PelletFrameSource,
    pellet_frame_source,
)
from .xray import (
    Detector,
    FrameChunk,
    PhaseContrast,
    Projector,
    annulus_chord_m,
    attenuation_coefficients,
    beam_profile,
    label_table,
    phase_materials,
    refractive_decrements,
    scan_frames,
    simulate_frames,
)

__all__ = [
    "DEFAULT_PROJECTIONS",
    "SIZES",
    "CellImagingSource",
    "CellStateServer",
    "Detector",
    "FrameChunk",
    "PelletFrameSource",
    "PhaseContrast",
    "Projector",
    "StateProvider",
    "annulus_chord_m",
    "attenuation_coefficients",
    "beam_profile",
    "disc_frame_source",
    "fresnel_intensity",
    "label_table",
    "pellet_frame_source",
    "phase_materials",
    "refractive_decrements",
    "remote_cell_frame_source",
    "scan_frames",
    "simulate_frames",
    "wavelength_m",
]
