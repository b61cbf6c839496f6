"""Volumes from anywhere, volumes to anywhere: read any 3-D volume lazily, write ImageJ TIFF.

:func:`open_volume` opens a TIFF stack (one file or a folder of slices), an HDF5 volume
(dataset named or found), a ``.npy`` array or a Zarr store as a :class:`Volume`: read-only,
sliced like numpy, read from disk only for the rows asked for, with its voxel size from the
file's metadata or the caller. :func:`write_tiff` writes any volume as one ImageJ hyperstack
(8-bit on the study's grey scale, or 32-bit float) that Fiji opens with the right scale.

Pure functions on files and arrays: no Bluesky, nothing else of the project.
"""

from .checks import *
from .open import *
from .volume import *
from .write import *
