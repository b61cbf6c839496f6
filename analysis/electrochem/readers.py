"""Read measured files into the standard columns, and write EC-Lab-style text exports.

Standard columns (SI units, as :mod:`insitu.instruments.potentiostat` produces them):

- time series: ``time_s``, ``voltage_V``, ``current_A``, ``step`` (optional);
- impedance: ``frequency_Hz``, ``z_real_ohm``, ``z_imag_ohm`` (negative for capacitive);
- extras kept when a file has them: ``cycle``, ``control_current_A``, ``charge_C``,
  ``temperature_C``.

Formats: EC-Lab ``.mpt`` text exports (tab-separated, decimal point or comma, header
"Nb header lines : N"), EC-Lab ``.mpr`` binaries (through the optional, GPL-3.0 ``galvani``
package: ``pip install insitu[eclab]``), CSV/TSV with our column names or common alternatives
(plus a column-mapping argument), and Parquet. :func:`read_measurement` dispatches on the
suffix and records ``attrs["source"]``, ``attrs["format"]`` and ``attrs["kind"]``
(``"eis"`` or ``"timeseries"``).
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import AnalysisInputError, InputFileNotFoundError, MissingDependencyError

__all__ = [
    "EIS_COLUMNS",
    "TIME_SERIES_COLUMNS",
    "detect_kind",
    "read_csv",
    "read_measurement",
    "read_mpr",
    "read_mpt",
    "standardise_columns",
    "write_mpt",
]

TIME_SERIES_COLUMNS = ("time_s", "voltage_V", "current_A", "step")
EIS_COLUMNS = ("frequency_Hz", "z_real_ohm", "z_imag_ohm")
_EXTRA_COLUMNS = ("cycle", "control_current_A", "charge_C", "temperature_C")
_INTEGER_COLUMNS = ("step", "cycle")

# Raw column name (compared case-insensitively, spaces collapsed) → (our column, factor to
# SI). Earlier entries win when a file has several candidates for one of our columns
# (EC-Lab's measured ``I/mA`` over the averaged ``<I>/mA``, ``Ewe/V`` over ``<Ewe>/V``).
_ALIASES: tuple[tuple[str, str, float], ...] = (
    # time
    ("time_s", "time_s", 1.0),
    ("time/s", "time_s", 1.0),
    ("time (s)", "time_s", 1.0),
    ("t/s", "time_s", 1.0),
    ("elapsed time/s", "time_s", 1.0),
    ("time", "time_s", 1.0),
    # voltage
    ("voltage_v", "voltage_V", 1.0),
    ("ewe/v", "voltage_V", 1.0),
    ("<ewe>/v", "voltage_V", 1.0),
    ("ecell/v", "voltage_V", 1.0),
    ("ewe-ece/v", "voltage_V", 1.0),
    ("voltage/v", "voltage_V", 1.0),
    ("voltage (v)", "voltage_V", 1.0),
    ("potential/v", "voltage_V", 1.0),
    ("potential (v)", "voltage_V", 1.0),
    ("e/v", "voltage_V", 1.0),
    ("voltage", "voltage_V", 1.0),
    ("potential", "voltage_V", 1.0),
    # current
    ("current_a", "current_A", 1.0),
    ("i/ma", "current_A", 1e-3),
    ("<i>/ma", "current_A", 1e-3),
    ("i/a", "current_A", 1.0),
    ("current/a", "current_A", 1.0),
    ("current (a)", "current_A", 1.0),
    ("current_ma", "current_A", 1e-3),
    ("current/ma", "current_A", 1e-3),
    ("current (ma)", "current_A", 1e-3),
    ("current", "current_A", 1.0),
    # step and cycle
    ("step", "step", 1.0),
    ("ns", "step", 1.0),
    ("cycle", "cycle", 1.0),
    ("cycle number", "cycle", 1.0),
    # impedance
    ("frequency_hz", "frequency_Hz", 1.0),
    ("freq/hz", "frequency_Hz", 1.0),
    ("frequency/hz", "frequency_Hz", 1.0),
    ("frequency (hz)", "frequency_Hz", 1.0),
    ("f/hz", "frequency_Hz", 1.0),
    ("frequency", "frequency_Hz", 1.0),
    ("z_real_ohm", "z_real_ohm", 1.0),
    ("re(z)/ohm", "z_real_ohm", 1.0),
    ("z'/ohm", "z_real_ohm", 1.0),
    ("z' (ohm)", "z_real_ohm", 1.0),
    ("zreal", "z_real_ohm", 1.0),
    ("z_imag_ohm", "z_imag_ohm", 1.0),
    # EC-Lab stores −Im(Z); the sign flips back to Im(Z) < 0 for capacitive.
    ("-im(z)/ohm", "z_imag_ohm", -1.0),
    ("im(z)/ohm", "z_imag_ohm", 1.0),
    ("-z''/ohm", "z_imag_ohm", -1.0),
    ("-z'' (ohm)", "z_imag_ohm", -1.0),
    ("z''/ohm", "z_imag_ohm", 1.0),
    ("z'' (ohm)", "z_imag_ohm", 1.0),
    # extras
    ("control_current_a", "control_current_A", 1.0),
    ("control/ma", "control_current_A", 1e-3),
    ("charge_c", "charge_C", 1.0),
    ("(q-qo)/c", "charge_C", 1.0),
    ("(q-qo)/ma.h", "charge_C", 3.6),
    ("temperature_c", "temperature_C", 1.0),
    ("temperature/°c", "temperature_C", 1.0),
)

# Our column → (EC-Lab name, factor from SI) for the writer, per kind.
_MPT_NAMES_TIMESERIES = {
    "time_s": ("time/s", 1.0),
    "control_current_A": ("control/mA", 1e3),
    "voltage_V": ("Ewe/V", 1.0),
    "current_A": ("I/mA", 1e3),
    "charge_C": ("(Q-Qo)/C", 1.0),
    "cycle": ("cycle number", 1.0),
    "step": ("Ns", 1.0),
    "temperature_C": ("Temperature/°C", 1.0),
}
_MPT_NAMES_EIS = {
    "frequency_Hz": ("freq/Hz", 1.0),
    "z_real_ohm": ("Re(Z)/Ohm", 1.0),
    "z_imag_ohm": ("-Im(Z)/Ohm", -1.0),
    "time_s": ("time/s", 1.0),
    "voltage_V": ("<Ewe>/V", 1.0),
    "current_A": ("<I>/mA", 1e3),
    "cycle": ("cycle number", 1.0),
    "step": ("Ns", 1.0),
    "temperature_C": ("Temperature/°C", 1.0),
}
_HEADER_RE = re.compile(r"Nb header lines\s*:\s*(\d+)", re.IGNORECASE)


def _key(name: str) -> str:
    return re.sub(r"\s+", " ", str(name).strip().lower())


def standardise_columns(
    raw: pd.DataFrame, columns: Mapping[str, str | tuple[str, float]] | None = None
) -> pd.DataFrame:
    """Rename and rescale a table's columns to the standard names in SI units.

    Parameters
    ----------
    raw : DataFrame
        As read from a file.
    columns : mapping, optional
        Extra mapping from a raw column name to our name, or to ``(our name, factor to SI)``
        (e.g. ``{"Potential [mV]": ("voltage_V", 1e-3)}``); it takes precedence over the
        built-in aliases (EC-Lab names and common spellings, matched case-insensitively).

    Returns
    -------
    DataFrame
        Only the recognised columns, in the order time series, impedance, extras; ``step``
        and ``cycle`` as integers. Unrecognised raw columns are listed in
        ``attrs["unmapped_columns"]``.
    """
    by_key = {}
    for name in raw.columns:
        by_key.setdefault(_key(name), name)
    chosen: dict[str, tuple[str, float]] = {}
    for raw_name, target in (columns or {}).items():
        if raw_name not in raw.columns:
            raise ValueError(
                f"column mapping names {raw_name!r}, which the file lacks; it has "
                f"{', '.join(map(str, raw.columns))}"
            )
        ours, factor = (target, 1.0) if isinstance(target, str) else target
        chosen[ours] = (raw_name, float(factor))
    for alias, ours, factor in _ALIASES:
        if ours not in chosen and alias in by_key:
            chosen[ours] = (by_key[alias], factor)
    order = [*TIME_SERIES_COLUMNS, *EIS_COLUMNS, *_EXTRA_COLUMNS]
    order += [c for c in chosen if c not in order]
    out = {}
    for ours in order:
        if ours not in chosen:
            continue
        raw_name, factor = chosen[ours]
        values = pd.to_numeric(raw[raw_name], errors="coerce").to_numpy(float)
        if ours in _INTEGER_COLUMNS:
            out[ours] = np.rint(values).astype(int) if np.all(np.isfinite(values)) else values
        else:
            out[ours] = values * factor if factor != 1.0 else values
    frame = pd.DataFrame(out, index=pd.RangeIndex(len(raw)))
    used = {raw_name for raw_name, _ in chosen.values()}
    frame.attrs["unmapped_columns"] = [str(c) for c in raw.columns if c not in used]
    return frame


def detect_kind(data: pd.DataFrame) -> str:
    """``"eis"`` if the table has the impedance columns, ``"timeseries"`` if it has
    ``time_s`` and a voltage or current; otherwise a ValueError naming what is missing."""
    if all(c in data.columns for c in EIS_COLUMNS):
        return "eis"
    if "time_s" in data.columns and ({"voltage_V", "current_A"} & set(data.columns)):
        return "timeseries"
    raise AnalysisInputError(
        "cannot tell what the file holds: neither impedance columns (frequency, Re(Z), Im(Z)) "
        f"nor a time series (time and voltage or current); found {', '.join(data.columns)}. "
        "Pass columns={raw_name: our_name} to map them"
    )


def _finish(frame: pd.DataFrame, path: Path, fmt: str, kind: str | None) -> pd.DataFrame:
    detected = detect_kind(frame)
    if kind is not None and kind != detected:
        raise AnalysisInputError(f"{path} holds {detected} data, not {kind}")
    if detected == "eis":
        first = [*EIS_COLUMNS]
        frame = frame[first + [c for c in frame.columns if c not in first]]
    attrs = dict(frame.attrs)
    attrs.update(source=str(path), format=fmt, kind=detected)
    frame.attrs = attrs
    return frame


# --- EC-Lab text ----------------------------------------------------------------------------
def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        # EC-Lab writes Windows-1252 (µ, °).
        return data.decode("cp1252", errors="replace")


def read_mpt(
    path: str | Path,
    *,
    columns: Mapping[str, str | tuple[str, float]] | None = None,
    kind: str | None = None,
) -> pd.DataFrame:
    """Read an EC-Lab ``.mpt`` text export.

    Parameters
    ----------
    path : str or Path
        The file. Its first line is "EC-Lab ASCII FILE", a header line "Nb header lines : N"
        counts the header including the column-name line (files without it are read as a
        single column-name line followed by data); columns are tab-separated with a decimal
        point or comma (detected).
    columns : mapping, optional
        Extra column mapping, see :func:`standardise_columns`.
    kind : {"eis", "timeseries"}, optional
        Require this kind of data.

    Returns
    -------
    DataFrame
        Standard columns in SI (``I/mA`` → ``current_A``, ``-Im(Z)/Ohm`` → ``z_imag_ohm`` with
        the sign flipped, ``Ns`` → ``step``, ``cycle number`` → ``cycle``), with
        ``attrs["source"]``, ``attrs["format"] = "mpt"``, ``attrs["kind"]``,
        ``attrs["header"]`` (the header lines above the column names).
    """
    path = Path(path)
    lines = _read_text(path).splitlines()
    if not lines:
        raise AnalysisInputError(f"{path} is empty")
    n_header = 1
    for line in lines[:5]:
        match = _HEADER_RE.search(line)
        if match:
            n_header = int(match.group(1))
            break
    if n_header < 1 or n_header > len(lines):
        raise AnalysisInputError(
            f"{path}: 'Nb header lines : {n_header}' but the file has {len(lines)}"
        )
    names = lines[n_header - 1].rstrip("\r\n").split("\t")
    body = [line for line in lines[n_header:] if line.strip()]
    # Tabs separate the fields, so a comma inside a field can only be a decimal comma.
    decimal = "," if body and re.search(r"\d,\d", body[0]) else "."
    raw = pd.read_csv(
        io.StringIO("\n".join(body)),
        sep="\t",
        header=None,
        decimal=decimal,
        dtype=float,
        na_values=["", "NaN", "nan"],
        # EC-Lab ends lines with a tab: one more field than names.
        usecols=range(len([n for n in names if n.strip()])),
    )
    raw.columns = [n.strip() for n in names if n.strip()]
    frame = standardise_columns(raw, columns)
    frame.attrs["header"] = lines[: n_header - 1]
    frame.attrs["decimal"] = decimal
    return _finish(frame, path, "mpt", kind)


def write_mpt(
    data: pd.DataFrame,
    path: str | Path,
    *,
    decimal: str = ".",
    kind: str | None = None,
) -> Path:
    """Write an EC-Lab-style ``.mpt`` text export that :func:`read_mpt` reads back.

    Parameters
    ----------
    data : DataFrame
        Standard columns (time series or impedance; extras ``cycle``, ``control_current_A``,
        ``charge_C``, ``temperature_C`` allowed). Values are written with 17 significant
        digits so that the round trip is exact to the last bit but for unit conversions
        (A ↔ mA), which are exact to ~1e-16 relative.
    path : str or Path
        Where to write (cp1252, as EC-Lab does, CRLF line ends).
    decimal : {".", ","}
        Decimal separator (EC-Lab follows the Windows locale).
    kind : {"eis", "timeseries"}, optional
        Defaults to :func:`detect_kind`.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ValueError
        For columns the format has no name for (drop or rename them first).
    """
    if decimal not in (".", ","):
        raise ValueError(f"decimal must be '.' or ',', got {decimal!r}")
    kind = kind or detect_kind(data)
    names = _MPT_NAMES_EIS if kind == "eis" else _MPT_NAMES_TIMESERIES
    unknown = [c for c in data.columns if c not in names]
    if unknown:
        raise ValueError(
            f"write_mpt has no EC-Lab name for column(s) {', '.join(map(str, unknown))}; "
            f"it writes {', '.join(names)}. Drop or rename them first"
        )
    out_cols: list[tuple[str, np.ndarray, bool]] = []
    for ours, (lab_name, factor) in names.items():
        if ours not in data.columns:
            continue
        values = data[ours].to_numpy()
        integer = ours in _INTEGER_COLUMNS
        out_cols.append((lab_name, values if integer else values.astype(float) * factor, integer))
        if kind == "eis" and ours == "z_imag_ohm" and "z_real_ohm" in data.columns:
            # EC-Lab follows Re/−Im with |Z| and the phase; the reader ignores them.
            z = data["z_real_ohm"].to_numpy(float) + 1j * data["z_imag_ohm"].to_numpy(float)
            out_cols.append(("|Z|/Ohm", np.abs(z), False))
            out_cols.append(("Phase(Z)/deg", np.degrees(np.angle(z)), False))
    technique = (
        "Potentio Electrochemical Impedance Spectroscopy"
        if kind == "eis"
        else "Galvanostatic Cycling with Potential Limitation"
    )
    preamble = [
        "EC-Lab ASCII FILE",
        "Nb header lines : {n}",
        "",
        technique,
        "",
        "Run on channel : 1 (SN 0)",
        "Electrode connection : standard",
        "Ewe ctrl range : min = -10.00 V, max = 10.00 V",
        "Saved on :",
        f"File : {Path(path).name}",
        "Exported by insitu (EC-Lab-style text export; SI values converted to EC-Lab units)",
        "",
    ]
    n_header = len(preamble) + 1
    preamble[1] = preamble[1].format(n=n_header)

    def fmt(value: float | int, integer: bool) -> str:
        if integer:
            return str(int(value))
        text = f"{float(value):.16E}"
        return text.replace(".", ",") if decimal == "," else text

    rows = [
        "\t".join(fmt(col[k], integer) for _, col, integer in out_cols) + "\t"
        for k in range(len(data))
    ]
    header = "\t".join(name for name, _, _ in out_cols) + "\t"
    text = "\r\n".join([*preamble, header, *rows]) + "\r\n"
    path = Path(path)
    path.write_bytes(text.encode("cp1252"))
    return path


# --- EC-Lab binary ----------------------------------------------------------------------------
def read_mpr(
    path: str | Path,
    *,
    columns: Mapping[str, str | tuple[str, float]] | None = None,
    kind: str | None = None,
) -> pd.DataFrame:
    """Read an EC-Lab ``.mpr`` binary file through galvani.

    galvani is GPL-3.0 and optional; it is imported only here.

    Parameters
    ----------
    path : str or Path
        The file.
    columns : mapping, optional
        Extra column mapping, see :func:`standardise_columns`.
    kind : {"eis", "timeseries"}, optional
        Require this kind of data.

    Returns
    -------
    DataFrame
        Standard columns in SI with ``attrs["format"] = "mpr"`` and ``attrs["start_date"]``.

    Raises
    ------
    ImportError
        If galvani is not installed (``pip install insitu[eclab]``).
    """
    try:
        from galvani import BioLogic
    except ImportError as exc:
        raise MissingDependencyError(
            "reading EC-Lab .mpr files needs the optional galvani package (GPL-3.0): "
            "pip install insitu[eclab] — or export the data from EC-Lab as .mpt text, which "
            "needs nothing extra"
        ) from exc
    path = Path(path)
    mpr = BioLogic.MPRfile(str(path))
    raw = pd.DataFrame(mpr.data)
    frame = standardise_columns(raw, columns)
    frame.attrs["start_date"] = str(getattr(mpr, "startdate", ""))
    return _finish(frame, path, "mpr", kind)


# --- CSV and Parquet --------------------------------------------------------------------------
def read_csv(
    path: str | Path,
    *,
    columns: Mapping[str, str | tuple[str, float]] | None = None,
    kind: str | None = None,
    sep: str | None = None,
    decimal: str = ".",
) -> pd.DataFrame:
    """Read a CSV (or TSV) file with our column names or common alternatives.

    Parameters
    ----------
    path : str or Path
        The file, one header row of column names.
    columns : mapping, optional
        Mapping from the file's column names to ours, optionally with a factor to SI, see
        :func:`standardise_columns`.
    kind : {"eis", "timeseries"}, optional
        Require this kind of data.
    sep : str, optional
        Field separator; by default a tab for ``.tsv``, otherwise sniffed (comma,
        semicolon, tab).
    decimal : str
        Decimal separator.

    Returns
    -------
    DataFrame
        Standard columns in SI with ``attrs["format"] = "csv"``.
    """
    path = Path(path)
    if sep is None and path.suffix.lower() == ".tsv":
        sep = "\t"
    if sep is None:
        raw = pd.read_csv(path, sep=None, engine="python", decimal=decimal)
    else:
        raw = pd.read_csv(path, sep=sep, decimal=decimal)
    frame = standardise_columns(raw, columns)
    return _finish(frame, path, "csv", kind)


_READERS = {
    ".mpt": ("mpt", read_mpt),
    ".mpr": ("mpr", read_mpr),
    ".csv": ("csv", read_csv),
    ".tsv": ("csv", read_csv),
    ".txt": ("csv", read_csv),
}


def read_measurement(
    path: str | Path,
    *,
    columns: Mapping[str, str | tuple[str, float]] | None = None,
    kind: str | None = None,
) -> pd.DataFrame:
    """Read a measured file, whatever its format, into the standard columns.

    Parameters
    ----------
    path : str or Path
        ``.mpt`` (EC-Lab text), ``.mpr`` (EC-Lab binary, needs galvani), ``.csv``/``.tsv``/
        ``.txt`` (delimited text), ``.parquet``.
    columns : mapping, optional
        Extra column mapping, see :func:`standardise_columns`.
    kind : {"eis", "timeseries"}, optional
        Require this kind of data; by default it is detected.

    Returns
    -------
    DataFrame
        With ``attrs["source"]`` (the path), ``attrs["format"]`` and ``attrs["kind"]``
        (``"eis"`` or ``"timeseries"``).

    Raises
    ------
    FileNotFoundError, ValueError, ImportError
        A missing file, an unsupported suffix or unrecognisable columns, or galvani missing
        for ``.mpr``.
    """
    path = Path(path)
    if not path.exists():
        raise InputFileNotFoundError(f"no such file: {path}")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        frame = standardise_columns(pd.read_parquet(path), columns)
        return _finish(frame, path, "parquet", kind)
    if suffix not in _READERS:
        raise AnalysisInputError(
            f"cannot read {path.name}: unsupported suffix {suffix or '(none)'}; supported: "
            f"{', '.join([*_READERS, '.parquet'])}"
        )
    _, reader = _READERS[suffix]
    return reader(path, columns=columns, kind=kind)
