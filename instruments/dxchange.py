"""APS Data Exchange HDF5 files: THE writer and reader of the project (pure h5py).

The detector's file is its wire: the simulated cameras write it through
:class:`DataExchangeWriter`, the reconstruction (:mod:`insitu.analysis.tomo.pipeline`) and the
tests read it through :func:`read_scan_info`, :func:`read_rows`, :func:`read_data_exchange`
and :func:`read_metadata`, so every reader sees the same angles and the same errors.

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

The reader needs only the four ``/exchange`` datasets (``theta`` may be missing too, see
below), so a file written by hand with h5py the way TomoPy users write one is read as well.

Every frame dataset is chunked one frame per chunk and resizable along the angle axis, so frames
are appended one at a time as the camera takes them and a reader of a few rows touches only
those rows of each chunk's frame.

The angle rule
--------------
Every reader returns ``theta`` in **radians**. The ``units`` attribute of ``/exchange/theta``
decides (``str`` or ``bytes``, scalar or one-element array, case and spaces ignored):

- ``"rad"``, ``"radian"``, ``"radians"``: taken as they are;
- ``"deg"``, ``"degree"``, ``"degrees"``: converted;
- **no attribute** (or an empty one): **degrees**, the convention TomoPy users expect:
  ``dxchange.read_aps_32id`` and ``read_aps_tomoscan_hdf5`` convert ``theta`` from degrees
  unconditionally, and tomoScan writes degrees. Unit-less values spanning no more than 2π
  would be a rotation of at most 6.3°, so they are still read as degrees but with a
  :class:`DataExchangeWarning` (they are probably radians: add ``units="rad"``);
- any other unit: :class:`DataExchangeError`.

A file without ``/exchange/theta`` gets evenly spaced angles over [0, π) — a 180° scan
without its closing projection, as ``tomo_scan`` takes it — with a warning.

The writer stores degrees with ``units="deg"``, so its files read correctly in dxchange too.
The file is opened in SWMR mode (all datasets and attributes are created first), so an
analysis process can read a scan while it is being acquired.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np

from .errors import InstrumentError

__all__ = [
    "DARK_PATH",
    "DATASETS",
    "DATA_PATH",
    "FLAT_PATH",
    "METADATA_PATHS",
    "THETA_PATH",
    "DataExchangeError",
    "DataExchangeWarning",
    "DataExchangeWriter",
    "ScanFileExistsError",
    "ScanFileNotFoundError",
    "ScanInfo",
    "read_data_exchange",
    "read_metadata",
    "read_rows",
    "read_scan_info",
    "theta_in_radians",
]

FrameKind = Literal["projection", "flat", "dark"]

#: Projections, flat fields (``data_white``), dark fields and rotation angles.
DATA_PATH = "/exchange/data"
FLAT_PATH = "/exchange/data_white"
DARK_PATH = "/exchange/data_dark"
THETA_PATH = "/exchange/theta"

#: Dataset of each frame kind.
DATASETS: dict[str, str] = {"projection": DATA_PATH, "flat": FLAT_PATH, "dark": DARK_PATH}

#: Values of the ``units`` attribute of ``theta`` (lower case, stripped).
RADIAN_UNITS = frozenset({"rad", "radian", "radians"})
DEGREE_UNITS = frozenset({"deg", "degree", "degrees"})

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


class DataExchangeError(InstrumentError, ValueError):
    """A file or a call that does not fit the Data Exchange layout; the message says the fix.

    The detector's file is the camera's wire, so this is the instruments part's user error
    (the command line reports it in one line); a ``ValueError`` for callers that catch that.
    """


class ScanFileNotFoundError(DataExchangeError, FileNotFoundError):
    """There is no scan file where the user said."""


class ScanFileExistsError(DataExchangeError, FileExistsError):
    """The writer's file exists: a scan is evidence and is never overwritten."""


class DataExchangeWarning(UserWarning):
    """The file was read, but on an assumption the user should check (angles guessed …)."""


def _check_metadata(metadata: Mapping[str, Any]) -> None:
    unknown = sorted(k for k in metadata if k not in METADATA_PATHS and not k.startswith("/"))
    if unknown:
        raise DataExchangeError(
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
            raise ScanFileExistsError(
                f"{self.path} exists; a Data Exchange file is never overwritten — choose a new "
                "file name (or delete the old scan deliberately)"
            )
        rows, cols = (int(n) for n in shape)
        if rows <= 0 or cols <= 0:
            raise DataExchangeError(f"frame shape must be positive (rows, cols), got {shape!r}")
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
        # Degrees, as tomoScan writes them and as dxchange's readers assume (they convert
        # unconditionally); the attribute lets this module's reader say so explicitly.
        theta.attrs["units"] = "deg"
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
            Rotation angle in radians; required for projections (stored in degrees).
        pending : bool, optional
            Provisional frame, overwritten by the next one of its kind unless committed.
        """
        if kind not in DATASETS:
            raise DataExchangeError(
                f"frame kind must be one of {', '.join(DATASETS)}, got {kind!r}"
            )
        if kind == "projection" and theta_rad is None:
            raise DataExchangeError("a projection needs its rotation angle theta_rad")
        frame = np.asarray(frame)
        if frame.shape != self.shape:
            raise DataExchangeError(
                f"frame shape {frame.shape} differs from the file's {self.shape}"
            )
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
            theta[index] = math.degrees(theta_rad)  # type: ignore[arg-type]
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


# -- reading ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScanInfo:
    """Shape, angles and acquisition metadata of a Data Exchange scan (no frames).

    Parameters
    ----------
    path : str
        The HDF5 file.
    n_angles, n_rows, n_cols : int
        Projections, detector rows and columns.
    n_flats, n_darks : int
        Flat and dark fields.
    theta_rad : numpy.ndarray
        Rotation angle of each projection, radians (see the module's angle rule).
    metadata : mapping
        :func:`read_metadata` of the file: the friendly keys present in it.
    """

    path: str
    n_angles: int
    n_rows: int
    n_cols: int
    n_flats: int
    n_darks: int
    theta_rad: np.ndarray = field(repr=False)
    metadata: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def _number(self, key: str) -> float | None:
        value = self.metadata.get(key)
        # A longer array than tomoScan's one-element ones: its first value, as before.
        return None if value is None else float(np.ravel(value)[0])

    @property
    def energy_keV(self) -> float | None:
        """Beam energy, keV (``None`` if the file does not record it)."""
        return self._number("energy_keV")

    @property
    def pixel_size_um(self) -> float | None:
        """Detector pixel size (x) at the sample, µm."""
        return self._number("pixel_size_um")

    @property
    def distance_mm(self) -> float | None:
        """Sample–detector distance, mm."""
        return self._number("sample_detector_distance_mm")


def _text(value: Any) -> str:
    """An HDF5 string attribute as ``str``: bytes or str, scalar or a one-element array."""
    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise DataExchangeError(f"expected one string, got an array of shape {value.shape}")
        value = value.reshape(-1)[0]
    if isinstance(value, bytes):  # includes numpy.bytes_ (fixed-length HDF5 strings)
        value = value.decode("utf-8", errors="replace")
    return str(value).strip()


def theta_in_radians(values: Any, units: Any = None) -> np.ndarray:
    """Rotation angles in radians, by the module's angle rule.

    Parameters
    ----------
    values : array_like
        The angles as stored.
    units : str, bytes, numpy.ndarray or None
        The ``units`` attribute of ``/exchange/theta`` as h5py returns it; ``None`` (or an
        empty string) when the file has none.

    Returns
    -------
    numpy.ndarray
        float64 radians.

    Raises
    ------
    DataExchangeError
        When ``units`` names neither radians nor degrees.

    Warns
    -----
    DataExchangeWarning
        When there are no units and the angles span no more than 2π: read as degrees, as
        dxchange does, but they are probably radians.
    """
    theta = np.asarray(values, dtype=np.float64)
    unit = "" if units is None else _text(units).lower()
    if unit in RADIAN_UNITS:
        return theta
    if unit in DEGREE_UNITS:
        return np.deg2rad(theta)
    if unit:
        raise DataExchangeError(
            f"{THETA_PATH} has units {unit!r}; use 'rad' or 'deg' (the attribute 'units' of "
            "the dataset), or remove it for degrees"
        )
    if theta.size > 1 and 0 < np.ptp(theta) <= 2 * math.pi:
        warnings.warn(
            f"{THETA_PATH} has no units attribute and spans only {np.ptp(theta):.3g}: read as "
            "degrees (the dxchange convention); if these are radians, set "
            "f['/exchange/theta'].attrs['units'] = 'rad'",
            DataExchangeWarning,
            stacklevel=2,
        )
    return np.deg2rad(theta)


@contextmanager
def _open(path: str | Path) -> Iterator[h5py.File]:
    """The file for reading; SWMR lets a reader open a scan that the camera is still writing."""
    path = Path(path)
    if not path.is_file():
        raise ScanFileNotFoundError(f"no scan file at {path}; check the path of the .h5 file")
    try:
        f = h5py.File(path, "r", libver="latest", swmr=True)
    except OSError as exc:
        raise DataExchangeError(
            f"{path} cannot be opened as HDF5 ({exc}); give the scan's Data Exchange .h5 file"
        ) from exc
    with f:
        yield f


def _dataset(f: h5py.File, name: str) -> h5py.Dataset:
    """The dataset ``name``, or an error naming it and the layout expected."""
    obj = f.get(name)
    if not isinstance(obj, h5py.Dataset):
        raise DataExchangeError(
            f"{f.filename} has no dataset {name}: it is not an APS Data Exchange scan "
            f"(projections in {DATA_PATH}, flats in {FLAT_PATH}, darks in {DARK_PATH}, "
            f"angles in {THETA_PATH})"
        )
    return obj


def _frames(f: h5py.File) -> tuple[h5py.Dataset, h5py.Dataset, h5py.Dataset]:
    """Projections, flats and darks, checked to be stacks of frames of one shape."""
    data, flat, dark = (_dataset(f, name) for name in (DATA_PATH, FLAT_PATH, DARK_PATH))
    if data.ndim != 3:
        raise DataExchangeError(
            f"{f.filename}: {DATA_PATH} must be 3-D (angles, rows, cols), got shape {data.shape}"
        )
    for ds in (flat, dark):
        if ds.ndim != 3 or ds.shape[1:] != data.shape[1:]:
            raise DataExchangeError(
                f"{f.filename}: {ds.name} has shape {ds.shape}; its frames must be "
                f"{data.shape[1:]} like those of {DATA_PATH}"
            )
    return data, flat, dark


def _theta(f: h5py.File, n_angles: int, angles: slice = slice(None)) -> np.ndarray:
    """Angles of projections ``angles``, radians (the module's angle rule)."""
    if THETA_PATH not in f:
        warnings.warn(
            f"{f.filename} has no {THETA_PATH}: assuming {n_angles} angles evenly spaced over "
            "[0, π); write the real angles there if the scan was different",
            DataExchangeWarning,
            stacklevel=3,
        )
        return (np.arange(n_angles) * math.pi / n_angles)[angles]
    ds = _dataset(f, THETA_PATH)
    # The rule looks at all the angles (a few kB), so a slice of them is judged like the whole.
    return theta_in_radians(ds[()], ds.attrs.get("units"))[angles]


def _value(ds: h5py.Dataset) -> Any:
    """A metadata dataset as a Python value: strings decoded, one-element arrays unwrapped.

    tomoScan and hand-written files store scalars as one-element arrays (``[25.0]``).
    """
    value = ds[()]
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(-1)[0]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        return value.item()
    return value


def _metadata(f: h5py.File) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, (hpath, _units) in METADATA_PATHS.items():
        obj = f.get(hpath)
        if isinstance(obj, h5py.Dataset):
            out[key] = _value(obj)
    return out


def read_scan_info(path: str | Path) -> ScanInfo:
    """Shapes, angles (radians), flat/dark counts and metadata of a scan, without its frames.

    Parameters
    ----------
    path : str or pathlib.Path
        The Data Exchange HDF5 file.

    Returns
    -------
    ScanInfo

    Raises
    ------
    ScanFileNotFoundError
        When there is no file at ``path`` (a ``FileNotFoundError``).
    DataExchangeError
        When a dataset is missing or misshapen (the message names it), or when ``theta``
        does not give one angle per projection.
    """
    with _open(path) as f:
        data, flat, dark = _frames(f)
        n_angles, n_rows, n_cols = data.shape
        theta = _theta(f, n_angles)
        if theta.shape != (n_angles,):
            raise DataExchangeError(
                f"{path}: {THETA_PATH} has {theta.size} angles for {n_angles} projections; "
                "write one angle per projection"
            )
        return ScanInfo(
            str(path),
            n_angles,
            n_rows,
            n_cols,
            flat.shape[0],
            dark.shape[0],
            theta,
            _metadata(f),
        )


def read_rows(
    path: str | Path, r0: int, r1: int, *, dtype: Any = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Projections, flats and darks of detector rows ``[r0, r1)`` (a sinogram slab).

    Only those rows are read from disk (one chunk per frame, so each frame's chunk is read
    once); the reconstruction's workers call this for their slab.

    Parameters
    ----------
    path : str or pathlib.Path
        The Data Exchange HDF5 file.
    r0, r1 : int
        First and one-past-last detector row.
    dtype : numpy dtype, optional
        Cast to this type (the pipeline takes ``float32``); default the file's.

    Returns
    -------
    data : numpy.ndarray
        ``(n_angles, r1 - r0, cols)`` projections.
    flats : numpy.ndarray
        ``(n_flats, r1 - r0, cols)``.
    darks : numpy.ndarray
        ``(n_darks, r1 - r0, cols)``.

    Raises
    ------
    DataExchangeError
        When a dataset is missing, or the rows lie outside the detector.
    """
    with _open(path) as f:
        frames = _frames(f)
        n_rows = frames[0].shape[1]
        if not 0 <= r0 < r1 <= n_rows:
            raise DataExchangeError(
                f"rows [{r0}, {r1}) lie outside the detector's 0 … {n_rows} of {path}"
            )
        out = tuple(ds[:, r0:r1, :] for ds in frames)
    if dtype is not None:
        out = tuple(a.astype(dtype, copy=False) for a in out)
    return out  # type: ignore[return-value]


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
        Rotation angles in radians (the module's angle rule).

    Raises
    ------
    ScanFileNotFoundError, DataExchangeError
        As :func:`read_scan_info`.
    """
    rows = rows if rows is not None else slice(None)
    angles = angles if angles is not None else slice(None)
    with _open(path) as f:
        data, flat, dark = _frames(f)
        # No check that theta matches the projections: while the camera writes, the angle of
        # the newest frame may not be there yet.
        theta = _theta(f, data.shape[0], angles)
        return data[angles, rows, :], flat[:, rows, :], dark[:, rows, :], theta


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Acquisition metadata of a Data Exchange file, by the friendly keys of :data:`METADATA_PATHS`.

    Missing entries are left out; strings are returned as ``str`` and one-element arrays
    (as tomoScan writes scalars) as their element.
    """
    with _open(path) as f:
        return _metadata(f)
