"""Readers for measured files (EC-Lab .mpt/.mpr, CSV, Parquet) and the .mpt writer."""

import sys

import numpy as np
import pandas as pd
import pytest

from insitu.analysis.electrochem.readers import (
    detect_kind,
    read_csv,
    read_measurement,
    read_mpr,
    read_mpt,
    write_mpt,
)

# --- EC-Lab text fixtures, as EC-Lab exports them --------------------------------------------
GCPL_HEADER = """EC-Lab ASCII FILE
Nb header lines : {n}

Galvanostatic Cycling with Potential Limitation

Run on channel : 3 (SN 12345)
User :
Electrode connection : standard
Ewe ctrl range : min = -10,00 V, max = 10,00 V
Acquisition started on : 03/14/2024 10:02:11.000
Saved on :
File : ccd_LiI-AN_C03.mpr
Directory : C:\\Users\\lab\\Documents\\EC-Lab\\Data\\
Device : VMP-300
Cycle Definition : Charge/Discharge alternance
Ns                  0                   1
ctrl_type           CC                  CC
ctrl1_val           100,000             -100,000
ctrl1_val_unit      uA                  uA
"""
GCPL_COLUMNS = (
    "mode\tox/red\terror\tcontrol changes\tNs changes\tcounter inc.\tNs\ttime/s\t"
    "control/mA\tEwe/V\tI/mA\tdQ/C\t(Q-Qo)/C\tcycle number\tP/W"
)


def gcpl_text(decimal: str) -> str:
    rows = []
    for k in range(6):
        ns = k // 3
        sign = 1 if ns == 0 else -1
        t = 10.0 * k
        fields = [
            "1",
            "1" if sign > 0 else "0",
            "0",
            "0",
            "1" if k == 3 else "0",
            "0",
            str(ns),
            f"{t:.7E}",
            f"{0.1 * sign:.7E}",
            f"{0.0123 * sign + 0.0001 * k:.7E}",
            f"{0.1 * sign:.7E}",
            f"{1e-4 * 10 * sign:.7E}",
            f"{1e-3 * k:.7E}",
            f"{0:.15E}",
            f"{1.23e-6:.7E}",
        ]
        rows.append("\t".join(fields).replace(".", decimal) + "\t")
    header = GCPL_HEADER.replace(",", decimal if decimal == "," else ".").splitlines()
    n = len(header) + 1
    lines = [*header, GCPL_COLUMNS + "\t", *rows]
    lines[1] = lines[1].format(n=n)
    return "\r\n".join(lines) + "\r\n"


PEIS_COLUMNS = (
    "freq/Hz", "Re(Z)/Ohm", "-Im(Z)/Ohm", "|Z|/Ohm", "Phase(Z)/deg", "time/s", "<Ewe>/V",
    "<I>/mA", "Cs/\xb5F", "cycle number",
)  # fmt: skip
PEIS_ROWS = (
    (1.0e6, 25.123, 2.1, 25.210616, -4.7781744, 1.2, 1e-4, 1e-4, 1e-3, 1.0),
    (1.0e3, 26.0, 40.0, 47.707442, -57.0, 5.0, 1e-4, 1e-4, 3.9788736, 1.0),
    (0.1, 75.0, 3.0e5, 3.0000001e5, -89.985676, 60.0, 1e-4, 1e-4, 5.3051648, 1.0),
)
PEIS_TEXT = (
    "\r\n".join(
        [
            "EC-Lab ASCII FILE",
            "Nb header lines : 6",
            "",
            "Potentio Electrochemical Impedance Spectroscopy",
            "",
            "\t".join(PEIS_COLUMNS) + "\t",
            *("\t".join(f"{v:.7E}" for v in row) + "\t" for row in PEIS_ROWS),
        ]
    )
    + "\r\n"
)


@pytest.mark.parametrize("decimal", [".", ","])
def test_read_ec_lab_gcpl_export(tmp_path, decimal):
    path = tmp_path / "ccd.mpt"
    path.write_bytes(gcpl_text(decimal).encode("cp1252"))
    data = read_mpt(path)
    assert data.attrs["kind"] == "timeseries"
    assert data.attrs["source"] == str(path)
    assert data.attrs["decimal"] == decimal
    assert list(data.columns[:4]) == ["time_s", "voltage_V", "current_A", "step"]
    assert len(data) == 6
    np.testing.assert_allclose(data["time_s"], 10.0 * np.arange(6))
    np.testing.assert_allclose(data["current_A"], [1e-4] * 3 + [-1e-4] * 3)  # mA → A
    np.testing.assert_allclose(data["control_current_A"], data["current_A"])
    assert data["voltage_V"].iloc[0] == pytest.approx(0.0123)
    assert list(data["step"]) == [0, 0, 0, 1, 1, 1]
    assert data["step"].dtype.kind == "i" and data["cycle"].dtype.kind == "i"
    np.testing.assert_allclose(data["charge_C"], 1e-3 * np.arange(6))
    assert "P/W" in data.attrs["unmapped_columns"]
    assert data.attrs["header"][0] == "EC-Lab ASCII FILE"


def test_read_ec_lab_peis_export_in_cp1252(tmp_path):
    path = tmp_path / "eis.mpt"
    path.write_bytes(PEIS_TEXT.encode("cp1252"))  # the µ of Cs/µF is not UTF-8
    data = read_measurement(path)
    assert data.attrs["kind"] == "eis" and data.attrs["format"] == "mpt"
    assert list(data.columns[:3]) == ["frequency_Hz", "z_real_ohm", "z_imag_ohm"]
    np.testing.assert_allclose(data["frequency_Hz"], [1e6, 1e3, 0.1])
    np.testing.assert_allclose(data["z_imag_ohm"], [-2.1, -40.0, -3e5])  # −Im(Z) flipped
    np.testing.assert_allclose(data["current_A"], 1e-7)


def timeseries_frame(n=50):
    rng = np.random.default_rng(3)
    t = np.arange(n) * 10.0
    i = np.where(np.arange(n) < n // 2, 1e-4, -1e-4) * (1 + rng.normal(0, 1e-3, n))
    return pd.DataFrame(
        {
            "time_s": t,
            "voltage_V": 0.05 * np.sign(i) + rng.normal(0, 1e-5, n),
            "current_A": i,
            "step": (np.arange(n) >= n // 2).astype(int),
            "cycle": np.zeros(n, dtype=int),
        }
    )


def eis_frame():
    f = np.logspace(6, -1, 36)
    z = 25.0 + 1.0 / (5e-6 * (2j * np.pi * f) ** 0.9)
    return pd.DataFrame({"frequency_Hz": f, "z_real_ohm": z.real, "z_imag_ohm": z.imag})


@pytest.mark.parametrize("decimal", [".", ","])
@pytest.mark.parametrize("make", [timeseries_frame, eis_frame])
def test_write_mpt_round_trip(tmp_path, decimal, make):
    original = make()
    path = write_mpt(original, tmp_path / "export.mpt", decimal=decimal)
    text = path.read_bytes().decode("cp1252")
    assert text.startswith("EC-Lab ASCII FILE\r\nNb header lines : ")
    n_header = int(text.splitlines()[1].split(":")[1])
    assert text.splitlines()[n_header - 1].startswith(("time/s", "freq/Hz"))
    back = read_mpt(path)
    assert back.attrs["kind"] == detect_kind(original)
    # Exact but for the A ↔ mA conversion (one rounding each way).
    pd.testing.assert_frame_equal(back, original, check_exact=False, rtol=1e-15, atol=0)


def test_write_mpt_refuses_columns_it_cannot_name(tmp_path):
    data = timeseries_frame().assign(comment=1.0)
    with pytest.raises(ValueError, match="comment"):
        write_mpt(data, tmp_path / "x.mpt")


def test_csv_with_our_names_and_with_common_alternatives(tmp_path):
    ours = timeseries_frame()
    ours.to_csv(tmp_path / "ours.csv", index=False)
    back = read_measurement(tmp_path / "ours.csv")
    assert back.attrs["format"] == "csv"
    pd.testing.assert_frame_equal(back, ours, check_exact=False, rtol=1e-12)

    theirs = pd.DataFrame(
        {
            "Time (s)": ours["time_s"],
            "Voltage (V)": ours["voltage_V"],
            "Current (mA)": ours["current_A"] * 1e3,
        }
    )
    theirs.to_csv(tmp_path / "theirs.csv", index=False, sep=";")
    back = read_csv(tmp_path / "theirs.csv")
    np.testing.assert_allclose(back["current_A"], ours["current_A"], rtol=1e-12)
    assert back.attrs["kind"] == "timeseries"


def test_csv_with_a_column_mapping(tmp_path):
    raw = pd.DataFrame({"t": [0.0, 1.0, 2.0], "Potential [mV]": [10.0, 20.0, 30.0]})
    raw.to_csv(tmp_path / "odd.csv", index=False)
    data = read_measurement(
        tmp_path / "odd.csv", columns={"t": "time_s", "Potential [mV]": ("voltage_V", 1e-3)}
    )
    np.testing.assert_allclose(data["voltage_V"], [0.01, 0.02, 0.03])
    with pytest.raises(ValueError, match="lacks"):
        read_measurement(tmp_path / "odd.csv", columns={"E": "voltage_V"})


def test_eis_csv_and_parquet(tmp_path):
    eis = eis_frame()
    eis.rename(columns={"z_imag_ohm": "-Im(Z)/Ohm"}).assign(
        **{"-Im(Z)/Ohm": -eis["z_imag_ohm"]}
    ).to_csv(tmp_path / "eis.csv", index=False)
    back = read_measurement(tmp_path / "eis.csv")
    assert back.attrs["kind"] == "eis"
    np.testing.assert_allclose(back["z_imag_ohm"], eis["z_imag_ohm"])
    eis.to_parquet(tmp_path / "eis.parquet")
    back = read_measurement(tmp_path / "eis.parquet")
    assert back.attrs["format"] == "parquet"
    pd.testing.assert_frame_equal(back, eis)


def test_dispatch_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_measurement(tmp_path / "missing.mpt")
    (tmp_path / "data.xlsx").write_bytes(b"")
    with pytest.raises(ValueError, match="unsupported suffix"):
        read_measurement(tmp_path / "data.xlsx")
    pd.DataFrame({"a": [1.0], "b": [2.0]}).to_csv(tmp_path / "ab.csv", index=False)
    with pytest.raises(ValueError, match="cannot tell"):
        read_measurement(tmp_path / "ab.csv")
    eis_frame().to_csv(tmp_path / "eis.csv", index=False)
    with pytest.raises(ValueError, match="not timeseries"):
        read_measurement(tmp_path / "eis.csv", kind="timeseries")


# --- EC-Lab binary ------------------------------------------------------------------------------
def write_mpr(path, columns):
    """A minimal .mpr that galvani parses: magic, a settings module and a version-2 data
    module, laid out as galvani's reader expects. There is no public sample small enough to
    vendor (galvani's test files are Git-LFS objects), so this is synthetic: it checks our
    mapping of galvani's column names, not galvani against EC-Lab."""
    biologic = pytest.importorskip("galvani.BioLogic")
    col_ids = list(columns)
    dtype, _ = biologic.VMPdata_dtype_from_colIDs(col_ids)
    n = len(next(iter(columns.values())))
    records = np.zeros(n, dtype=dtype)
    for col_id, values in columns.items():
        records[biologic.VMPdata_colID_dtype_map[col_id][0]] = values
    head = np.uint32(n).tobytes() + np.uint8(len(col_ids)).tobytes()
    head += np.array(col_ids, dtype="<u2").tobytes()
    data = head.ljust(405, b"\x00") + records.tobytes()

    def module(short, long, version, payload):
        hdr = np.zeros(1, dtype=biologic.VMPmodule_hdr_v1)
        hdr["shortname"], hdr["longname"] = short.ljust(10), long.ljust(25)
        hdr["length"], hdr["version"], hdr["date"] = len(payload), version, b"03/14/24"
        return b"MODULE" + hdr.tobytes() + payload

    path.write_bytes(
        biologic.MPR_MAGIC
        + module(b"VMP Set   ", b"VMP settings", 0, bytes(64))
        + module(b"VMP data  ", b"VMP data", 2, data)
    )
    return path


def test_read_mpr_time_series(tmp_path):
    t = np.arange(5) * 10.0
    path = write_mpr(
        tmp_path / "ccd.mpr",
        {
            4: t,  # time/s
            6: [0.01, 0.011, 0.012, -0.01, -0.011],  # Ewe/V
            8: [0.1, 0.1, 0.1, -0.1, -0.1],  # I/mA
            24: [0.0] * 5,  # cycle number
            131: [0, 0, 0, 1, 1],  # Ns
        },
    )
    data = read_measurement(path)
    assert data.attrs["format"] == "mpr" and data.attrs["kind"] == "timeseries"
    assert data.attrs["start_date"] == "2024-03-14"
    np.testing.assert_allclose(data["time_s"], t)
    np.testing.assert_allclose(data["current_A"], [1e-4] * 3 + [-1e-4] * 2, rtol=1e-6)
    np.testing.assert_allclose(data["voltage_V"][:2], [0.01, 0.011], rtol=1e-6)
    assert list(data["step"]) == [0, 0, 0, 1, 1]


def test_read_mpr_impedance(tmp_path):
    eis = eis_frame()
    path = write_mpr(
        tmp_path / "peis.mpr",
        {32: eis["frequency_Hz"], 37: eis["z_real_ohm"], 38: -eis["z_imag_ohm"], 4: 0.0},
    )
    data = read_mpr(path)
    assert data.attrs["kind"] == "eis"
    np.testing.assert_allclose(data["z_imag_ohm"], eis["z_imag_ohm"], rtol=1e-6)


def test_mpr_without_galvani_says_how_to_install_it(tmp_path, monkeypatch):
    # A None entry in sys.modules makes ``import galvani`` raise ImportError.
    monkeypatch.setitem(sys.modules, "galvani", None)
    (tmp_path / "x.mpr").write_bytes(b"BIO-LOGIC MODULAR FILE")
    with pytest.raises(ImportError, match=r"pip install insitu\[eclab\]"):
        read_measurement(tmp_path / "x.mpr")
