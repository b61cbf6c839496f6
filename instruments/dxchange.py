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

Every frame dataset is resizable along the angle axis and chunked in bands of
:data:`CHUNK_ROWS` rows of one frame, so frames are appended one at a time as the camera takes
them (a frame's chunks are written once) and a reader of a few rows touches only the chunks of
those rows.

Checksums
---------
The writer stores every frame dataset (and ``theta``) with HDF5's own **Fletcher32** filter:
each chunk carries its checksum, written with the chunk as the frame streams in and checked by
HDF5 whenever the chunk is read, by any reader (h5py, dxchange, TomoPy, tiled), so a slab read
of a few rows is verified without reading the rest of the file. A chunk that fails is reported
as :class:`ScanFileCorruptError` naming the file, the dataset, the frame and its rows. Files
without checksums (written before the writer stored them, or by another program) are still
read; :func:`read_scan_info` warns (:class:`UnverifiedScanWarning`) that they cannot be verified
and lists them in :attr:`ScanInfo.unverified`.

Missing frames
--------------
:func:`read_scan_info` flags projections that are missing although the file looks whole
(:class:`MissingFramesWarning`, :attr:`ScanInfo.notes`): gaps in the sorted angles wider than
1.75 rotation steps (a camera that dropped frames; 1.75 stays above the widest gap of a
golden-angle scan, φ ≈ 1.62 steps), and fewer projections than the ``num_angles`` the file
records. Fewer angles than projections (or more) is refused, as before.

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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np

from .errors import InstrumentError

__all__ = [
    "CHUNK_ROWS",
    "DARK_PATH",
    "DATASETS",
    "DATA_PATH",
    "FLAT_PATH",
    "METADATA_PATHS",
    "THETA_PATH",
    "DataExchangeError",
    "DataExchangeWarning",
    "DataExchangeWriter",
    "MissingFramesWarning",
    "ScanFileCorruptError",
    "ScanFileExistsError",
    "ScanFileNotFoundError",
    "ScanInfo",
    "UnverifiedScanWarning",
    "read_data_exchange",
    "read_metadata",
    "read_references",
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

#: Detector rows per chunk of a frame dataset: one Fletcher32 checksum per band (40 kB to
#: 80 kB for 1224 to 2448 columns of uint16), so a slab read decodes only its own rows.
CHUNK_ROWS = 16

#: A gap in the sorted angles wider than this many median steps means missing projections.
_GAP_STEPS = 1.75

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
    # Frames the camera lost and the scan took again (counted as they happen).
    "frames_retaken": ("/process/acquisition/frames_retaken", None),
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


class ScanFileCorruptError(DataExchangeError):
    """Part of the file fails its checksum or cannot be read: the scan is refused."""


def _short(value: Any) -> str:
    """``value`` for a message, at most 60 characters."""
    text = repr(value.tolist() if isinstance(value, np.ndarray) else value)
    return text if len(text) <= 60 else text[:57] + "..."


class DataExchangeWarning(UserWarning):
    """The file was read, but on an assumption the user should check (angles guessed …)."""


class UnverifiedScanWarning(DataExchangeWarning):
    """The file's frames carry no checksums: they are read but cannot be verified."""


class MissingFramesWarning(DataExchangeWarning):
    """Projections are missing (gaps in the angles, fewer frames than the scan's angles)."""


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
                # Bands of one frame: appends never rewrite a chunk of an earlier frame, and
                # each band's checksum is written with it as the frame streams in.
                chunks=(1, min(rows, CHUNK_ROWS), cols),
                dtype=self.dtype,
                fletcher32=True,
            )
            ds.attrs["axes"] = "theta:y:x"
            ds.attrs["units"] = "counts"
            ds.attrs["frame_kind"] = kind
        theta = f.create_dataset(
            THETA_PATH, shape=(0,), maxshape=(None,), dtype="f8", chunks=True, fletcher32=True
        )
        # Degrees, as tomoScan writes them and as dxchange's readers assume (they convert
        # unconditionally); the attribute lets this module's reader say so explicitly.
        theta.attrs["units"] = "deg"
        # Created now (SWMR forbids new datasets later), counted by note_retake().
        self._write_metadata({**metadata, "frames_retaken": int(metadata.get("frames_retaken", 0))})
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
        if np.issubdtype(self.dtype, np.integer) and not np.can_cast(frame.dtype, self.dtype):
            # Rounded and clipped into the file's range. Frames already of a type the file's
            # holds (a camera's uint16 into uint16) go in as they are: rint, clip and a float
            # copy cost ≈ 5 ms a full-size frame for nothing.
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

    def note_retake(self) -> int:
        """Count one frame the camera lost and the scan took again; returns the count.

        Kept in the file (``/process/acquisition/frames_retaken``), so whoever reads the scan
        knows it is complete only because frames were retaken (:func:`read_scan_info` notes
        it).
        """
        ds = self._file[METADATA_PATHS["frames_retaken"][0]]
        count = int(ds[()]) + 1
        ds[()] = count
        ds.flush()
        return count

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
    unverified : tuple of str
        Frame datasets stored without checksums (none for the writer's files): their frames
        are read but cannot be verified.
    notes : tuple of str
        What the reader flagged and warned about: datasets that cannot be verified, missing
        projections.
    """

    path: str
    n_angles: int
    n_rows: int
    n_cols: int
    n_flats: int
    n_darks: int
    theta_rad: np.ndarray = field(repr=False)
    metadata: Mapping[str, Any] = field(default_factory=dict, repr=False)
    unverified: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def verified(self) -> bool:
        """True when every frame dataset carries checksums (each read is checked)."""
        return not self.unverified

    def _number(self, key: str) -> float | None:
        value = self.metadata.get(key)
        if value is None:
            return None
        # A longer array than tomoScan's one-element ones: its first value, as before.
        try:
            number = float(np.ravel(value)[0])
        except (ValueError, TypeError, IndexError, OverflowError):
            number = math.nan
        if not math.isfinite(number):
            # A size or an energy that is not a number must not scale a measurement.
            raise ScanFileCorruptError(
                f"the scan's {key} ({METADATA_PATHS[key][0]}) is {_short(value)}, not a "
                "number; write the number there, or give the value on the command line"
            )
        return number

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
    try:
        theta = np.asarray(values, dtype=np.float64)
    except (ValueError, TypeError):
        raise ScanFileCorruptError(
            f"the projection angles ({THETA_PATH}) are {_short(values)}, not "
            "numbers; write the angles there"
        ) from None
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


#: Where HDF5 looks for its superblock signature (after a user block of 0, 512, 1024 … bytes).
_SUPERBLOCK_OFFSETS = (0, 512, 1024, 2048, 4096)
_SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: Superblock v2/v3 file consistency flags: opened for write (bit 0), for SWMR write (bit 2).
_WRITE_FLAGS = 0x05


def _open_for_writing(path: Path) -> bool:
    """True when the superblock says a writer has the file open (or died with it open).

    From the HDF5 file format (superblock versions 2 and 3: signature, version, sizes of
    offsets and lengths, then the consistency flags). Only such a file is opened in SWMR
    mode: a SWMR reader retries a metadata block that fails its checksum up to 100 times with
    growing waits, which on a damaged closed file stalls each read for minutes, where a plain
    reader fails at once.
    """
    try:
        with path.open("rb") as fh:
            for offset in _SUPERBLOCK_OFFSETS:
                fh.seek(offset)
                head = fh.read(12)
                if head[:8] == _SIGNATURE:
                    # Flags beyond those two are damage, not a writer: reading such a file
                    # in SWMR mode makes HDF5 retry its metadata reads for minutes.
                    return (
                        len(head) == 12
                        and head[8] >= 2
                        and bool(head[11] & _WRITE_FLAGS)
                        and not head[11] & ~_WRITE_FLAGS
                    )
    except OSError:
        return False
    return False


@contextmanager
def _open(path: str | Path) -> Iterator[h5py.File]:
    """The file for reading; SWMR (only while a writer has it open) lets a reader open a scan
    that the camera is still writing."""
    path = Path(path)
    if not path.is_file():
        raise ScanFileNotFoundError(f"no scan file at {path}; check the path of the .h5 file")
    try:
        f = h5py.File(path, "r", libver="latest", swmr=_open_for_writing(path))
    except (OSError, RuntimeError, IndexError) as exc:  # RuntimeError: HDF5 on a damaged file
        raise DataExchangeError(
            f"{path} cannot be opened as HDF5 ({exc}); give the scan's Data Exchange .h5 file"
        ) from exc
    with f:
        try:
            yield f
        except (OSError, RuntimeError) as exc:
            if isinstance(exc, DataExchangeError):
                raise
            # A read that the frame readers below did not place (metadata, the chunk index;
            # HDF5 raises RuntimeError for some damaged object headers and links).
            raise ScanFileCorruptError(
                f"{path} cannot be read ({exc}): the file is damaged; re-acquire the scan or "
                "restore the file from a copy"
            ) from exc


def _bad_chunks(ds: h5py.Dataset, frames: range, r0: int, r1: int) -> list[str]:
    """``"frame i, rows a–b"`` of every chunk of the selection that cannot be read.

    Only called once a read has failed, so its cost (one read per chunk) is paid only for a
    damaged file.
    """
    band = ds.chunks[1] if ds.chunks is not None else r1 - r0
    bad = []
    for i in frames:
        for a in range(r0 - r0 % band, r1, band):
            lo, hi = max(a, r0), min(a + band, r1)
            try:
                ds[i, lo:hi, :]
            except OSError:
                bad.append(f"frame {i}, rows {lo}–{hi - 1}")
    return bad


def _corrupt(ds: h5py.Dataset, where: list[str], exc: OSError) -> ScanFileCorruptError:
    """The error for a failed read of ``ds``: the file, the dataset and the frames."""
    failure = "fails its Fletcher32 checksum" if ds.fletcher32 else "cannot be read"
    if where:
        more = f" (and {len(where) - 3} more chunk(s))" if len(where) > 3 else ""
        failure += f" at {'; '.join(where[:3])}{more}"
    return ScanFileCorruptError(
        f"{ds.file.filename}: {ds.name} {failure}: the file is corrupted; re-acquire the scan "
        f"or restore the file from a copy (HDF5: {exc})"
    )


def _read_frames(ds: h5py.Dataset, frames: slice, r0: int, r1: int) -> np.ndarray:
    """Frames ``frames`` (a slice of the first axis), rows ``[r0, r1)``, checked by HDF5."""
    try:
        return ds[frames, r0:r1, :]
    except OSError as exc:
        indices = range(*frames.indices(ds.shape[0]))
        raise _corrupt(ds, _bad_chunks(ds, indices, r0, r1), exc) from exc


def _unverified(datasets: tuple[h5py.Dataset, ...]) -> tuple[str, ...]:
    """Names of the frame datasets stored without a Fletcher32 checksum per chunk."""
    return tuple(ds.name for ds in datasets if not ds.fletcher32)


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
    try:
        values = ds[()]
    except OSError as exc:
        raise _corrupt(ds, [], exc) from exc
    # The rule looks at all the angles (a few kB), so a slice of them is judged like the whole.
    return theta_in_radians(values, ds.attrs.get("units"))[angles]


def _angle_gaps(theta: np.ndarray) -> list[str]:
    """``"~k between a° and b°"`` for each gap of the sorted angles wider than 1.75 steps.

    The step is the median spacing, so evenly spaced scans (step or fly) and golden-angle ones
    (gaps of at most φ steps) pass, and a dropped frame (a gap of 2 steps) does not.
    """
    if theta.size < 3:
        return []
    ordered = np.sort(theta)
    steps = np.diff(ordered)
    step = float(np.median(steps))
    if not step > 0:
        return []
    gaps = []
    for k in np.flatnonzero(steps > _GAP_STEPS * step):
        missing = max(1, round(steps[k] / step) - 1)
        a, b = np.degrees(ordered[k]), np.degrees(ordered[k + 1])
        gaps.append(f"~{missing} between {a:.3f}° and {b:.3f}°")
    return gaps


def _scan_notes(path: str | Path, info: ScanInfo) -> tuple[str, ...]:
    """What :func:`read_scan_info` flags, each note also warned with its own category."""
    notes: list[tuple[str, type[Warning]]] = []
    if info.unverified:
        notes.append(
            (
                f"{path}: {', '.join(info.unverified)} carry no checksums (written before "
                "insitu stored them, or by another program): the frames are read but cannot "
                "be verified",
                UnverifiedScanWarning,
            )
        )
    gaps = _angle_gaps(info.theta_rad)
    if gaps:
        notes.append(
            (
                f"{path}: projections missing from {THETA_PATH} ({'; '.join(gaps[:3])}"
                f"{' …' if len(gaps) > 3 else ''}): the camera dropped frames; the slices are "
                "reconstructed from the angles present, with streaks where frames are missing",
                MissingFramesWarning,
            )
        )
    planned = info.metadata.get("n_projections")
    if (
        isinstance(planned, int | float | np.integer)
        and math.isfinite(planned)
        and int(planned) > info.n_angles
    ):
        notes.append(
            (
                f"{path}: {info.n_angles} projections of the {int(planned)} the scan recorded "
                f"in {METADATA_PATHS['n_projections'][0]}: {int(planned) - info.n_angles} "
                "missing (the scan stopped early or the camera dropped frames)",
                MissingFramesWarning,
            )
        )
    for text, category in notes:
        warnings.warn(text, category, stacklevel=3)
    retaken = info.metadata.get("frames_retaken")
    if isinstance(retaken, int | float | np.integer) and math.isfinite(retaken) and retaken > 0:
        # Complete, not missing: a note, not a warning.
        notes.append((f"{path}: {int(retaken)} frame(s) lost by the camera were retaken", Warning))
    return tuple(text for text, _ in notes)


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
    ScanFileCorruptError
        When ``theta`` or the file's structure cannot be read (frames are checked as they
        are read, by :func:`read_rows`).

    Warns
    -----
    UnverifiedScanWarning
        When the frames carry no checksums (a file from before they were written).
    MissingFramesWarning
        When projections are missing (see the module's notes).
    """
    with _open(path) as f:
        data, flat, dark = _frames(f)
        n_angles, n_rows, n_cols = data.shape
        theta = _theta(f, n_angles)
        if theta.shape != (n_angles,):
            missing = "projections are missing" if theta.size > n_angles else "angles are missing"
            raise DataExchangeError(
                f"{path}: {THETA_PATH} has {theta.size} angles for {n_angles} projections "
                f"({missing}); write one angle per projection"
            )
        info = ScanInfo(
            str(path),
            n_angles,
            n_rows,
            n_cols,
            flat.shape[0],
            dark.shape[0],
            theta,
            _metadata(f),
            _unverified((data, flat, dark)),
        )
    return replace(info, notes=_scan_notes(path, info))


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
    ScanFileCorruptError
        When a chunk of those rows fails its checksum or cannot be read (the message names
        the dataset, the frame and its rows).
    """
    data, flats, darks = _read_slab(path, r0, r1, (DATA_PATH, FLAT_PATH, DARK_PATH), dtype)
    return data, flats, darks


def read_references(
    path: str | Path, r0: int, r1: int, *, dtype: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """Flats and darks of detector rows ``[r0, r1)``, without the projections.

    For checking the reference frames before a reconstruction; arguments, checks and errors
    as :func:`read_rows`.

    Returns
    -------
    flats : numpy.ndarray
        ``(n_flats, r1 - r0, cols)``.
    darks : numpy.ndarray
        ``(n_darks, r1 - r0, cols)``.
    """
    flats, darks = _read_slab(path, r0, r1, (FLAT_PATH, DARK_PATH), dtype)
    return flats, darks


def _read_slab(
    path: str | Path, r0: int, r1: int, names: tuple[str, ...], dtype: Any
) -> tuple[np.ndarray, ...]:
    """Rows ``[r0, r1)`` of every frame of the datasets ``names``, checked and cast."""
    with _open(path) as f:
        frames = dict(zip((DATA_PATH, FLAT_PATH, DARK_PATH), _frames(f), strict=True))
        n_rows = frames[DATA_PATH].shape[1]
        if not 0 <= r0 < r1 <= n_rows:
            raise DataExchangeError(
                f"rows [{r0}, {r1}) lie outside the detector's 0 … {n_rows} of {path}"
            )
        out = tuple(_read_frames(frames[name], slice(None), r0, r1) for name in names)
    if dtype is not None:
        out = tuple(a.astype(dtype, copy=False) for a in out)
    return out


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
    ScanFileCorruptError
        As :func:`read_rows`.
    """
    angles = angles if angles is not None else slice(None)
    with _open(path) as f:
        data, flat, dark = _frames(f)
        r0, r1, step = (rows if rows is not None else slice(None)).indices(data.shape[1])
        if step != 1:
            raise DataExchangeError(f"rows must be a contiguous slice, got step {step}")
        # No check that theta matches the projections: while the camera writes, the angle of
        # the newest frame may not be there yet.
        theta = _theta(f, data.shape[0], angles)
        return (
            _read_frames(data, angles, r0, max(r0, r1)),
            _read_frames(flat, slice(None), r0, max(r0, r1)),
            _read_frames(dark, slice(None), r0, max(r0, r1)),
            theta,
        )


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Acquisition metadata of a Data Exchange file, by the friendly keys of :data:`METADATA_PATHS`.

    Missing entries are left out; strings are returned as ``str`` and one-element arrays
    (as tomoScan writes scalars) as their element.
    """
    with _open(path) as f:
        return _metadata(f)
