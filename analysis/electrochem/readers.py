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

Files that lie are refused with :class:`~insitu.analysis.errors.AnalysisInputError` before
anything is computed from them: an empty file, a header without data rows, and a number whose
exponent no float can hold (``1e2147483648``). The last is refused *before* pandas sees the
text, because pandas 2.x (up to 2.3.3; fixed in 3.0.0, which reads it as ``inf``) overflows
the exponent in its C float parser: it crashes the process (segfault) on some such
exponents and silently wraps others (``1e4294967296`` → 1.0). Values that are present but
not numbers (``abc``) become NaN, and their rows are listed per column in
``attrs["non_numeric_rows"]``, so that the analysis can name them (it decides whether to
refuse or drop them; see :mod:`~insitu.analysis.electrochem.shorts` and
:mod:`~insitu.analysis.electrochem.eis`).
"""

from __future__ import annotations

import csv
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
# A digit (or a decimal point) followed by an exponent of 10000 or more: no double holds it
# (they end near 1e±308), and pandas 2.x's C parser overflows on such exponents (see the
# module docstring). Matching more than the crashing cases keeps the guard simple and safe.
_HUGE_EXPONENT_RE = re.compile(r"[\d.,][eE][+-]?0*[1-9]\d{4,}")
# How many offending places an error message lists before "and N more".
_LISTED = 5


def _key(name: str) -> str:
    return re.sub(r"\s+", " ", str(name).strip().lower())


def _listed(items: list, total: int | None = None) -> str:
    """``a, b, c`` or ``a, b, c, d, e and 7 more``."""
    total = len(items) if total is None else total
    shown = ", ".join(str(x) for x in items[:_LISTED])
    return shown if total <= _LISTED else f"{shown} and {total - _LISTED} more"


def _refuse_huge_exponents(text: str, where: str, first_line: int = 1) -> None:
    """Refuse text holding a number with an exponent beyond any float's, naming its lines.

    Parameters
    ----------
    text : str
        The data lines, as they will be handed to pandas.
    where : str
        The file (for the message).
    first_line : int
        Line number (1-based) of ``text``'s first line in the file.
    """
    matches = list(_HUGE_EXPONENT_RE.finditer(text))
    if not matches:
        return
    places = []
    for match in matches[:_LISTED]:
        line = first_line + text.count("\n", 0, match.start())
        line_start = text.rfind("\n", 0, match.start()) + 1
        # The whole number, mantissa included, for the message.
        mantissa = re.search(r"[+-]?[\d.]*$", text[line_start : match.start() + 1]).group()
        places.append(f"line {line} ({mantissa + text[match.start() + 1 : match.end()]!r})")
    raise AnalysisInputError(
        f"{where}: {len(matches)} number(s) with an exponent beyond any float's range "
        f"(|exponent| >= 10000): {_listed(places, len(matches))}. Correct or delete those "
        "values (a float holds up to about 1.8e308)"
    )


def _refuse_huge_exponents_in_column(values: pd.Series, column: str) -> None:
    """As :func:`_refuse_huge_exponents` for a column of strings (Parquet, .mpr, a table)."""
    if values.dtype.kind in "biufcmM":
        return  # already numbers: nothing for pandas' text parser to overflow on
    text = values.astype(str)
    hits = np.flatnonzero(text.str.contains(_HUGE_EXPONENT_RE).to_numpy(bool))
    if hits.size:
        raise AnalysisInputError(
            f"column {column!r} holds {hits.size} number(s) with an exponent beyond any "
            f"float's range (|exponent| >= 10000) in data row(s) "
            f"{_listed([int(k) + 1 for k in hits], hits.size)} (1 = the first data row). "
            "Correct or delete those values"
        )


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
    non_numeric: dict[str, list[int]] = {}
    for ours in order:
        if ours not in chosen:
            continue
        raw_name, factor = chosen[ours]
        _refuse_huge_exponents_in_column(raw[raw_name], str(raw_name))
        numbers = pd.to_numeric(raw[raw_name], errors="coerce")
        # Present in the file but not a number ("abc"): NaN here, listed so the analysis
        # can name the rows instead of computing from a silently different table.
        garbled = np.flatnonzero((numbers.isna() & raw[raw_name].notna()).to_numpy(bool))
        if garbled.size:
            non_numeric[ours] = [int(k) for k in garbled]
        values = numbers.to_numpy(float)
        if ours in _INTEGER_COLUMNS:
            out[ours] = np.rint(values).astype(int) if np.all(np.isfinite(values)) else values
        else:
            out[ours] = values * factor if factor != 1.0 else values
    frame = pd.DataFrame(out, index=pd.RangeIndex(len(raw)))
    used = {raw_name for raw_name, _ in chosen.values()}
    frame.attrs["unmapped_columns"] = [str(c) for c in raw.columns if c not in used]
    frame.attrs["non_numeric_rows"] = non_numeric
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
    if not body:
        raise AnalysisInputError(
            f"{path} has a header but no data rows below it; export the data again from "
            "EC-Lab (or check that the measurement recorded points)"
        )
    # Blank lines are skipped, so name lines by their position in the file when none are.
    _refuse_huge_exponents("\n".join(lines[n_header:]), str(path), first_line=n_header + 1)
    # Tabs separate the fields, so a comma inside a field can only be a decimal comma.
    decimal = "," if body and re.search(r"\d,\d", body[0]) else "."
    raw = _parse(
        str(path),
        io.StringIO("\n".join(body)),
        sep="\t",
        header=None,
        decimal=decimal,
        # Not dtype=float: a non-numeric value ("abc") would stop the whole file; as text it
        # becomes NaN in standardise_columns, its row recorded for the analysis to name.
        na_values=["", "NaN", "nan"],
        # EC-Lab ends lines with a tab: one more field than names.
        usecols=range(len([n for n in names if n.strip()])),
    )
    raw.columns = _unique([n.strip() for n in names if n.strip()])
    if decimal == ",":
        # A column holding a non-number stays text, decimal commas and all; make its numbers
        # readable to pandas.to_numeric in standardise_columns.
        for name in [c for c in raw.columns if pd.api.types.is_object_dtype(raw[c])]:
            raw[name] = raw[name].str.replace(",", ".", regex=False)
    frame = standardise_columns(raw, columns)
    frame.attrs["header"] = lines[: n_header - 1]
    frame.attrs["decimal"] = decimal
    return _finish(frame, path, "mpt", kind)


def _unique(names: list[str]) -> list[str]:
    """Repeated column names made unique as pandas does for CSV headers (``x``, ``x.1``)."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        out.append(name if count == 0 else f"{name}.{count}")
    return out


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
    MissingDependencyError
        If galvani is not installed (``pip install insitu[eclab]``); an ImportError.
    AnalysisInputError
        If the file cannot be read or galvani cannot parse it (a damaged or unknown file).
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
    try:
        with path.open("rb") as fh:
            mpr = BioLogic.MPRfile(fh)
    except OSError as exc:
        raise AnalysisInputError(f"cannot read {path}: {exc}") from exc
    except Exception as exc:
        # galvani reverse-engineers the format and, on a damaged or unknown file, raises
        # whatever its parsing runs into (ValueError, AssertionError, IndexError,
        # NotImplementedError for an unknown column ...; see benchmarks/bench_fuzz_readers.py).
        raise AnalysisInputError(
            f"{path} is not an EC-Lab .mpr file galvani can read ({type(exc).__name__}: "
            f"{str(exc).strip()[:200]}); export the data from EC-Lab as .mpt text instead"
        ) from exc
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
    text = _read_text(path)
    if not text.strip():
        raise AnalysisInputError(
            f"{path} is empty; it needs a header row of column names and data rows below it"
        )
    _refuse_huge_exponents(text, str(path))
    if sep is None:
        raw = _parse(str(path), io.StringIO(text), sep=None, engine="python", decimal=decimal)
    else:
        raw = _parse(str(path), io.StringIO(text), sep=sep, decimal=decimal)
    if raw.empty:
        raise AnalysisInputError(
            f"{path} has column names ({', '.join(map(str, raw.columns))}) but no data rows; "
            "export the data again, or check that the measurement recorded points"
        )
    frame = standardise_columns(raw, columns)
    return _finish(frame, path, "csv", kind)


def _parse(where: str, source: io.StringIO, **options: object) -> pd.DataFrame:
    """``pandas.read_csv`` with its complaints about a malformed file as AnalysisInputError.

    The text must already have passed :func:`_refuse_huge_exponents`.
    """
    try:
        return pd.read_csv(source, **options)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error, ValueError) as exc:
        # The csv module's sniffer (sep=None) raises csv.Error for text with no delimiter;
        # pandas a ValueError for rows with fewer fields than the header names (usecols).
        raise AnalysisInputError(
            f"cannot read {where} as delimited text ({str(exc).strip()}); check that it is a "
            "CSV/TSV (or EC-Lab .mpt) with one header row and the same number of fields "
            "on every line"
        ) from exc


def _read_parquet(path: Path) -> pd.DataFrame:
    """``pandas.read_parquet``, a damaged file refused with AnalysisInputError."""
    try:
        return pd.read_parquet(path)
    except Exception as exc:
        # pyarrow raises ArrowInvalid, OSError, and from a damaged pandas schema in the footer
        # KeyError, UnicodeDecodeError or JSONDecodeError (benchmarks/bench_fuzz_readers.py).
        raise AnalysisInputError(
            f"cannot read {path} as Parquet ({type(exc).__name__}: {str(exc).strip()[:200]}); "
            "the file is damaged or not Parquet: write it again"
        ) from exc


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
    AnalysisInputError
        For anything wrong with the file, always a subclass of this: a missing file
        (:class:`InputFileNotFoundError`, a FileNotFoundError), galvani missing for ``.mpr``
        (:class:`MissingDependencyError`, an ImportError), an unsupported suffix,
        unrecognisable columns, a damaged or malformed file.
    """
    path = Path(path)
    if not path.exists():
        raise InputFileNotFoundError(f"no such file: {path}")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        frame = standardise_columns(_read_parquet(path), columns)
        return _finish(frame, path, "parquet", kind)
    if suffix not in _READERS:
        raise AnalysisInputError(
            f"cannot read {path.name}: unsupported suffix {suffix or '(none)'}; supported: "
            f"{', '.join([*_READERS, '.parquet'])}"
        )
    _, reader = _READERS[suffix]
    return reader(path, columns=columns, kind=kind)
