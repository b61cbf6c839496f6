"""HTML reports: self-contained, escaped, well-formed, and carrying every number and figure."""

import base64
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from insitu.analysis.report.electrochem_figures import plot_nyquist
from insitu.analysis.report.html import (
    ccd_report,
    conductivity_report,
    format_value,
    html_report,
    write_report,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IMG_PREFIX = '<img src="data:image/png;base64,'
EVIL = "<script>alert('x')</script>"
VOID = {"meta", "img", "br", "hr", "link", "col", "input", "source", "wbr", "area", "base"}


class StructureChecker(HTMLParser):
    """Fails on unbalanced non-void tags; collects text and tags seen."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def check_structure(text: str) -> StructureChecker:
    parser = StructureChecker()
    parser.feed(text)
    parser.close()
    assert parser.errors == []
    assert parser.stack == []
    assert text.lstrip().startswith("<!DOCTYPE html>")
    for tag in ("html", "head", "title", "style", "body", "main", "h1"):
        assert tag in parser.tags
    return parser


def decode_images(text: str) -> list[bytes]:
    return [
        base64.b64decode(m) for m in re.findall(r'<img src="data:image/png;base64,([^"]+)"', text)
    ]


def cycling(n=3000, area_cm2=1.0):
    t = np.arange(n, dtype=float) * 20.0
    step = (t // 7200).astype(int)
    sign = np.where((t // 3600) % 2 == 0, 1.0, -1.0)
    current = sign * (0.1 + 0.25 * step) * area_cm2 * 1e-3
    v = current * 30.0
    v[t >= 45_000] *= 0.01
    return pd.DataFrame({"time_s": t, "voltage_V": v, "current_A": current, "step": step})


def spectrum(r_bulk=100.0, n=30):
    w = 2 * np.pi * np.logspace(6, -1, n)
    z = r_bulk + 50 / (1 + 1j * w * 50e-9) + 1 / (1j * w * 1e-6)
    return pd.DataFrame(
        {"frequency_Hz": w / (2 * np.pi), "z_real_ohm": z.real, "z_imag_ohm": z.imag}
    )


METADATA = {
    "sample": f"A-LPS {EVIL}",
    "material": "A-LPS",
    "thickness_um": 650.0,
    "temperature_C": 60,
    "stack_pressure_MPa": 29,
    "protocol": {"step_mA_cm2": 0.25, "half_cycle_h": 1.0, "cycles_per_step": 2},
    "instrument": "Keithley 2450 (emulated)",
    "software_version": "insitu 0.1.0",
    "run_uid": "3f1c-…",
}


def test_format_value():
    assert format_value(0.75) == "0.75"
    assert format_value(135.72) == "135.72"
    assert format_value(4.26e-4) == "0.000426"
    assert format_value(np.float32(0.5)) == "0.5"
    assert format_value(3) == "3" and format_value(np.int64(3)) == "3"
    assert format_value(None) == format_value(float("nan")) == "—"
    assert format_value(True) == "True" and format_value("x") == "x"


def test_html_report_contents_escaping_and_structure(tmp_path):
    fig1 = plot_nyquist(spectrum()).figure
    fig2 = plot_nyquist(spectrum(200.0)).figure
    tables = {
        "Steps <1>": pd.DataFrame({"j_mA_cm2": [0.1, 0.25], "v & w": [0.0123456789, 1.5]}),
        "Other": pd.DataFrame({"name": ["<b>bold</b>"], "x": [np.nan]}),
    }
    text = html_report(
        f"Report {EVIL}",
        metadata=METADATA,
        figures={"first <fig>": fig1, "second": fig2},
        tables=tables,
        summary={"CCD (mA/cm²)": 0.75, "Q (C/cm²)": {"per_electrode_plated": 6.849}},
        notes=[f"note {EVIL}", "plain note"],
    )
    parser = check_structure(text)
    # Nothing user-supplied becomes markup.
    assert "<script>" not in text and "script" not in parser.tags
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in text
    assert "<b>" not in text and "&lt;b&gt;bold&lt;/b&gt;" in text
    visible = "".join(parser.text)
    assert f"Report {EVIL}" in visible  # escaped, so it reads back as the original text
    assert f"A-LPS {EVIL}" in visible and f"note {EVIL}" in visible
    # Title, summary numbers, tables (with five significant digits), metadata.
    assert "<title>Report &lt;script&gt;" in text
    assert "0.75" in visible and "6.849" in visible and "per_electrode_plated" in visible
    assert "Steps &lt;1&gt;" in text and "Other" in visible
    assert "0.012346" in visible and "v &amp; w" in text and "—" in visible
    assert len(re.findall(r'<table[^>]*class="dataframe data"', text)) == 2
    for key in ("thickness_um", "stack_pressure_MPa", "software_version", "run_uid"):
        assert key in visible
    assert "step_mA_cm2: 0.25" in visible  # nested metadata listed in its cell
    # One embedded PNG per figure.
    assert text.count(IMG_PREFIX) == 2
    images = decode_images(text)
    assert len(images) == 2 and all(img.startswith(PNG_SIGNATURE) for img in images)
    # Self-contained: no external resources.
    assert not re.search(r'(src|href)="(?!data:)', text)

    path = write_report(tmp_path / "sub" / "report.html", text)
    assert path.read_text(encoding="utf-8") == text


def test_html_report_minimal():
    text = html_report("Empty", metadata={}, figures={}, tables={}, summary={})
    check_structure(text)
    assert IMG_PREFIX not in text and "<h1>Empty</h1>" in text


def test_ccd_report():
    data = cycling()
    overp = pd.DataFrame(
        {
            "current_density_mA_cm2": [0.1, 0.25, 0.1, 0.25],
            "median_abs_voltage_V": [0.003, 0.0075, 0.0031, 0.0076],
            "max_abs_voltage_V": [0.0035, 0.008, 0.0036, 0.0081],
            "direction": ["plate", "plate", "strip", "strip"],
        }
    )
    result = {
        "ccd_mA_cm2": 0.75,
        "charge_to_failure_C_cm2": {"per_electrode_plated": 6.849, "total_abs": 13.698},
        "short_time_s": 45_000.0,
        "stopped_because": "short detected",
    }
    text = ccd_report(
        data, metadata=METADATA, result=result, overpotential_table=overp, area_cm2=1.0
    )
    parser = check_structure(text)
    visible = "".join(parser.text)
    assert "Critical current density — A-LPS" in visible
    assert "<script>" not in text
    for number in ("0.75", "6.849", "13.698", "12.5", "45000", "short detected"):
        assert number in visible
    assert "Overpotential per step" in visible and "Charge-to-failure by convention" in visible
    assert "area_cm2" in visible
    assert text.count(IMG_PREFIX) == 2
    assert all(img.startswith(PNG_SIGNATURE) for img in decode_images(text))


def test_ccd_report_without_short_or_overpotentials():
    result = {"ccd_mA_cm2": None, "short_time_s": None, "stopped_because": "end of protocol"}
    text = ccd_report(cycling(n=500), metadata={"sample": "s1"}, result=result, area_cm2=0.0707)
    parser = check_structure(text)
    assert text.count(IMG_PREFIX) == 1
    assert "end of protocol" in "".join(parser.text)
    with pytest.raises(TypeError, match="mapping"):
        ccd_report(
            cycling(n=50),
            metadata={},
            result={"charge_to_failure_C_cm2": 6.8},
            area_cm2=1.0,
        )


def test_conductivity_report():
    temps = [298.15, 323.15, 348.15]
    kb = 8.617333262e-5
    sigma = {t: 1e3 / t * np.exp(-0.148 / (kb * t)) for t in temps}
    spectra = {t: spectrum(r_bulk=100.0 * 298.15 / t) for t in temps}
    fits = {t: spectrum(r_bulk=100.0 * 298.15 / t, n=100) for t in temps}
    text = conductivity_report(
        spectra,
        metadata={"sample": "LiI-AN", "thickness_cm": 0.065, "area_cm2": 0.785},
        sigma_S_cm=sigma,
        activation_energy_eV={"sigma_T": 0.148, "sigma": 0.1397, "weird": 0.2},
        fits=fits,
        arrhenius_prefactors={"sigma_T": 1e3},
    )
    parser = check_structure(text)
    visible = "".join(parser.text)
    assert "Ionic conductivity — LiI-AN" in visible
    # Nyquist + one Arrhenius per known convention.
    assert text.count(IMG_PREFIX) == 3
    assert all(img.startswith(PNG_SIGNATURE) for img in decode_images(text))
    for t in temps:
        assert format_value(sigma[t]) in visible
        assert f"{t:.2f} K" in visible
    assert "0.148" in visible and "0.1397" in visible and "sigma_T" in visible
    assert "No Arrhenius plot for convention(s) ['weird']" in visible
    assert "Ionic conductivity per temperature" in visible
