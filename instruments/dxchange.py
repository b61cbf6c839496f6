"""APS Data Exchange HDF5 files: a frame-by-frame writer and a slicing reader (pure h5py).

Layout (as written by tomoScan at APS 2-BM and read by ``dxchange.read_aps_tomoscan_hdf5``)::

    /implements                         "exchange:measurement:process"
    /exchange/data                      (n_projections, rows, cols)  projections
    /exchange/data_white                (n_flats, rows, cols)        flat fields (sample out)
    /exchange/data_dark                 (n_darks, rows, cols)        dark fields (shutter closed)
    /exchange/theta                     (n_projections,)             rotation angle per projection
    /measurement/instrument/monochromator/energy                     keV
    /measurement/instrument/detector/{exposure_time, pixel_size_x, pixel_size_y,
                                      dimension_x, dimension_y, manufacturer, model}
    /measurement/instrument/detection_system/objective/{magnification, resolution}
    /measurement/instrument/camera_motor_stack/setup/camera_distance  mm
    /measurement/instrument/source/{beamline, name, current}
    /measurement/sample/{name, description}
    /process/acquisition/rotation/{range, num_angles}

Every frame dataset is chunked one frame per chunk and resizable along the angle axis, so frames
are appended one at a time as the camera takes them and a reader of a few rows touches only
those rows of each chunk's frame.

``/exchange/theta`` is written in **radians** with a ``units`` attribute (``"rad"``); APS files
store degrees, so :func:`read_data_exchange` honours the attribute (``"deg"``/``"degrees"`` are
converted) and always returns radians.

The file is opened in SWMR mode (all datasets and attributes are created first), so an
analysis process can read a scan while it is being acquired.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np

__all__ = [
    "DATASETS",
    "METADATA_PATHS",
    "DataExchangeWriter",
    "read_data_exchange",
    "read_metadata",
]

FrameKind = Literal["projection", "flat", "dark"]

#: Dataset of each frame kind.
DATASETS: dict[str, str] = {
    "projection": "/exchange/data",
    "flat": "/exchange/data_white",
    "dark": "/exchange/data_dark",
}
THETA_PATH = "/exchange/theta"

#: Friendly metadata keys → (Data Exchange path, units or None).
METADATA_PATHS: dict[str, tuple[str, str | None]] = {
    "energy_keV": ("/measurement/instrument/monochromator/energy", "keV"),
    "exposure_s": ("/measurement/instrument/detector/exposure_time", "s"),
    "pixel_size_um": ("/measurement/instrument/detector/pixel_size_x", "um"),
    "pixel_size_y_um": ("/measurement/instrument/detector/pixel_size_y", "um"),
    "detector_manufacturer": ("/measurement/instrument/detector/manufacturer", None),
    "detector_model": ("/measurement/instrument/detector/model", None),
    "magnification": (
        "/measurement/instrument/detection_system/objective/magnification",
        None,
    ),
    "resolution_um": ("/measurement/instrument/detection_system/objective/resolution", "um"),
    "sample_detector_distance_mm": (
        "/measurement/instrument/camera_motor_stack/setup/camera_distance",
        "mm",
    ),
    "beamline": ("/measurement/instrument/source/beamline", None),
    "source_name": ("/measurement/instrument/source/name", None),
    "ring_current_mA": ("/measurement/instrument/source/current", "mA"),
    "sample_name": ("/measurement/sample/name", None),
    "sample_description": ("/measurement/sample/description", None),
    "rotation_range_deg": ("/process/acquisition/rotation/range", "deg"),
    "n_projections": ("/process/acquisition/rotation/num_angles", None),
}


def _check_metadata(metadata: Mapping[str, Any]) -> None:
    unknown = sorted(k for k in metadata if k not in METADATA_PATHS and not k.startswith("/"))
    if unknown:
        raise ValueError(
            f"unknown Data Exchange metadata key(s) {', '.join(unknown)}; use one of "
            f"{', '.join(METADATA_PATHS)} or an absolute HDF5 path such as "
            "'/measurement/instrument/detector/binning_x'"
        )


class DataExchangeWriter:
    """Write one tomography scan to an APS Data Exchange HDF5 file, one frame at a time.

    Parameters
    ----------
    path : str or pathlib.Path
        File to create; an existing file is never overwritten (a scan is evidence).
    shape : tuple of int
        ``(rows, cols)`` of every frame.
    dtype : numpy dtype, optional
        Pixel type (``uint16`` as the camera delivers it).
    metadata : mapping, optional
        Friendly keys of :data:`METADATA_PATHS` (``energy_keV``, ``pixel_size_um``,
        ``exposure_s``, ``sample_detector_distance_mm`` …) or absolute HDF5 paths; ``None``
        values are skipped.
    swmr : bool, optional
        Open for single-writer/multiple-readers so the file can be read during the scan.

    Notes
    -----
    :meth:`append` returns the index of the frame in its dataset. With ``pending=True`` the
    frame is *provisional*: the next frame of the same kind overwrites it unless
    :meth:`commit` was called. The simulated camera uses this so that a frame retaken after a
    suspension (the RunEngine replays the trigger) replaces the frame that was never recorded
    in the run, keeping the file and the run's documents in step.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        shape: tuple[int, int],
        dtype: Any = np.uint16,
        metadata: Mapping[str, Any] | None = None,
        swmr: bool = True,
    ) -> None:
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(
                f"{self.path} exists; a Data Exchange file is never overwritten — choose a new "
                "file name (or delete the old scan deliberately)"
            )
        rows, cols = (int(n) for n in shape)
        if rows <= 0 or cols <= 0:
            raise ValueError(f"frame shape must be positive (rows, cols), got {shape!r}")
        self.shape = (rows, cols)
        self.dtype = np.dtype(dtype)
        metadata = dict(metadata or {})
        _check_metadata(metadata)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # libver="latest" is required by SWMR; every dataset and attribute must exist before
        # SWMR mode starts, so the whole layout is created here.
        self._file = h5py.File(self.path, "w", libver="latest")
        f = self._file
        f.create_dataset("/implements", data="exchange:measurement:process")
        for kind, name in DATASETS.items():
            ds = f.create_dataset(
                name,
                shape=(0, rows, cols),
                maxshape=(None, rows, cols),
                chunks=(1, rows, cols),  # one frame per chunk: appends never rewrite a chunk
                dtype=self.dtype,
            )
            ds.attrs["axes"] = "theta:y:x"
            ds.attrs["units"] = "counts"
            ds.attrs["frame_kind"] = kind
        theta = f.create_dataset(THETA_PATH, shape=(0,), maxshape=(None,), dtype="f8", chunks=True)
        theta.attrs["units"] = "rad"
        self._write_metadata(metadata)
        if swmr:
            f.swmr_mode = True
        self._committed = {kind: 0 for kind in DATASETS}
        self._pending = {kind: False for kind in DATASETS}

    def _write_metadata(self, metadata: Mapping[str, Any]) -> None:
        for key, value in metadata.items():
            if value is None:
                continue
            path, units = METADATA_PATHS.get(key, (key, None))
            if isinstance(value, str):
                ds = self._file.create_dataset(path, data=value)
            else:
                ds = self._file.create_dataset(path, data=np.asarray(value))
            if units:
                ds.attrs["units"] = units

    # -- writing ----------------------------------------------------------------------------
    def append(
        self,
        kind: FrameKind,
        frame: np.ndarray,
        *,
        theta_rad: float | None = None,
        pending: bool = False,
    ) -> int:
        """Append one frame; return its index in the dataset of ``kind``.

        Parameters
        ----------
        kind : {"projection", "flat", "dark"}
            Which dataset the frame goes to.
        frame : numpy.ndarray
            ``(rows, cols)`` pixels; cast (with clipping for integer types) to the file dtype.
        theta_rad : float, optional
            Rotation angle; required for projections.
        pending : bool, optional
            Provisional frame, overwritten by the next one of its kind unless committed.
        """
        if kind not in DATASETS:
            raise ValueError(f"frame kind must be one of {', '.join(DATASETS)}, got {kind!r}")
        if kind == "projection" and theta_rad is None:
            raise ValueError("a projection needs its rotation angle theta_rad")
        frame = np.asarray(frame)
        if frame.shape != self.shape:
            raise ValueError(f"frame shape {frame.shape} differs from the file's {self.shape}")
        if np.issubdtype(self.dtype, np.integer):
            info = np.iinfo(self.dtype)
            frame = np.clip(np.rint(frame), info.min, info.max)
        ds = self._file[DATASETS[kind]]
        index = self._committed[kind]
        if ds.shape[0] < index + 1:
            ds.resize(index + 1, axis=0)
        ds[index] = frame.astype(self.dtype, copy=False)
        ds.flush()
        if kind == "projection":
            theta = self._file[THETA_PATH]
            if theta.shape[0] < index + 1:
                theta.resize(index + 1, axis=0)
            theta[index] = float(theta_rad)  # type: ignore[arg-type]
            theta.flush()
        self._pending[kind] = pending
        if not pending:
            self._committed[kind] += 1
        return index

    def commit(self, kind: FrameKind) -> None:
        """Make the pending frame of ``kind`` permanent (no-op if none is pending)."""
        if self._pending[kind]:
            self._committed[kind] += 1
            self._pending[kind] = False

    def counts(self) -> dict[str, int]:
        """Committed frames per kind."""
        return dict(self._committed)

    def close(self) -> None:
        """Trim uncommitted frames and close the file (idempotent)."""
        if not self._file:
            return
        for kind, name in DATASETS.items():
            if self._pending[kind]:
                # A frame nobody recorded in the run: drop it so the file and the run agree.
                # (Shrinking is allowed in SWMR mode for chunked datasets.)
                self._file[name].resize(self._committed[kind], axis=0)
                if kind == "projection":
                    self._file[THETA_PATH].resize(self._committed[kind], axis=0)
                self._pending[kind] = False
        self._file.close()

    def __enter__(self) -> DataExchangeWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_data_exchange(
    path: str | Path,
    *,
    rows: slice | None = None,
    angles: slice | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read projections, flats, darks and angles from a Data Exchange file.

    Parameters
    ----------
    path : str or pathlib.Path
        The HDF5 file.
    rows : slice, optional
        Detector rows (sinogram slices) to read; only those rows are read from disk.
    angles : slice, optional
        Projections to read (applies to ``proj`` and ``theta``, not to flats and darks).

    Returns
    -------
    proj : numpy.ndarray
        ``(n_angles, n_rows, cols)``.
    flat : numpy.ndarray
        ``(n_flats, n_rows, cols)``.
    dark : numpy.ndarray
        ``(n_darks, n_rows, cols)``.
    theta : numpy.ndarray
        Rotation angles in radians (converted if the file stores degrees, as APS files do).
    """
    rows = rows if rows is not None else slice(None)
    angles = angles if angles is not None else slice(None)
    # swmr=True lets a reader open a file that the camera is still writing.
    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        proj = f[DATASETS["projection"]][angles, rows, :]
        flat = f[DATASETS["flat"]][:, rows, :]
        dark = f[DATASETS["dark"]][:, rows, :]
        theta_ds = f[THETA_PATH]
        theta = np.asarray(theta_ds[angles], dtype=float)
        units = theta_ds.attrs.get("units", "deg")
        if isinstance(units, bytes):
            units = units.decode()
        if str(units).lower() in ("deg", "degree", "degrees"):
            theta = np.deg2rad(theta)
    return proj, flat, dark, theta


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Acquisition metadata of a Data Exchange file, by the friendly keys of :data:`METADATA_PATHS`.

    Missing entries are left out; strings are returned as ``str``.
    """
    out: dict[str, Any] = {}
    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        for key, (hpath, _units) in METADATA_PATHS.items():
            if hpath not in f:
                continue
            value = f[hpath][()]
            if isinstance(value, bytes):
                value = value.decode()
            elif isinstance(value, np.generic):
                value = value.item()
            out[key] = value
    return out
