"""Per-experiment report: known answers on a synthetic in-situ experiment, escaping, gaps."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from insitu.analysis.microstructure.electrodes import thickness_to_charge_mC
from insitu.analysis.microstructure.maps import porosity_factor
from insitu.analysis.report.experiment import (
    FIGURE_CAPTIONS,
    LI_MOLAR_VOLUME_CM3_MOL,
    ExperimentData,
    build_experiment_figures,
    experiment_figures,
    experiment_report_json,
    experiment_summary_table,
    faraday_thickness_um,
    porosity_factor_spread,
    write_experiment_report,
)

# Any figure that fails to draw warns (RuntimeWarning): here that is a test failure.
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

AREA = math.pi * 0.15**2  # the 3 mm in-situ pellet, cm²
EVIL = "<script>alert('x')</script>"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DPI = 40  # small PNGs keep the tests fast
HEADINGS = ("Summary", "Tomograms", "Segments", "Figures")

# (kind, label, start_s, end_s, end_reason, current density mA/cm²)
PROTOCOL = [
    ("eis_before", "EIS before", 0, 600, "completed", None),
    ("tomogram", "pristine", 600, 1200, "completed", None),
    ("plate", "plate 0.04 mA/cm²", 1200, 3000, "completed", 0.04),
    ("strip", "strip 0.04 mA/cm²", 3000, 4800, "completed", 0.04),
    ("tomogram", "after strip 0.04", 4800, 5400, "completed", None),
    ("plate", "plate 0.1 mA/cm²", 5400, 6300, "voltage_limit", 0.1),
    ("strip", "strip 0.1 mA/cm²", 6300, 8100, "completed", 0.1),
    ("plate", "plate 0.2 mA/cm²", 8100, 8700, "short", 0.2),
    ("eis_confirm", "EIS at the short", 8700, 9300, "completed", None),
    ("tomogram", "failed", 9300, 9900, "completed", None),
    ("eis_after", "EIS after", 9900, 10500, "completed", None),
]
SHORT_S = 8600.0


def _voltage(kind: str, j: float, tau: np.ndarray, end_reason: str) -> np.ndarray:
    """Polarisation of a low-pressure in-situ cell: 50 V per mA/cm², rising at 0.1."""
    sign = 1.0 if kind == "plate" else -1.0
    v = np.full(tau.shape, 50.0 * j)
    if end_reason == "voltage_limit":
        v = 5.0 + 5.0 * tau / tau[-1]  # reaches the 10 V cut-off at the segment's end
    if end_reason == "short":
        v = np.where(tau < SHORT_S - 8100, 8.0, 0.01)  # polarisation collapses
    return sign * v


def make_protocol(protocol=PROTOCOL, area=AREA):
    """Electrochemistry and segments tables of a protocol, charges integrated exactly."""
    records, rows, charge = [], [], 0.0
    for index, (kind, label, start, end, reason, j) in enumerate(protocol):
        if kind in ("plate", "strip"):
            t = np.arange(start, end, 10.0)
            current = (1.0 if kind == "plate" else -1.0) * j * 1e-3 * area
            charge += abs(current) * (end - start) * 1e3
            records.append(
                pd.DataFrame(
                    {
                        "time_s": t,
                        "voltage_V": _voltage(kind, j, t - start + 10.0, reason),
                        "current_A": current,
                        "segment": index,
                        "kind": kind,
                        "current_density_mA_cm2": j,
                    }
                )
            )
        rows.append(
            {
                "index": index,
                "kind": kind,
                "label": label,
                "step": index,
                "cycle": 0,
                "current_density_mA_cm2": np.nan if j is None else j,
                "start_s": float(start),
                "end_s": float(end),
                "end_reason": reason,
                "charge_mC": charge,
                "run_uid": "uid-1",
            }
        )
    electrochem = pd.concat(records, ignore_index=True) if records else pd.DataFrame()
    return electrochem, pd.DataFrame(rows)


def r_rc(r0: float, r1: float, c: float) -> pd.DataFrame:
    f = np.logspace(6, -1, 50)
    z = r0 + r1 / (1 + 2j * np.pi * f * r1 * c)
    return pd.DataFrame({"frequency_Hz": f, "z_real_ohm": z.real, "z_imag_ohm": z.imag})


STEPS = pd.DataFrame(
    {
        "step": ["pristine", "after strip 0.04", "failed"],
        "charge_mC": [0.0, 144 * AREA, 534 * AREA],
        "porosity": [0.20, 0.21, 0.23],
        "crack_volume_um3": [0.0, 5.0e3, 2.0e4],
        "transparent_volume_um3": [1.0e5, 1.1e5, 1.4e5],
        "top_thickness_um": [150.0, 149.9, 149.5],
        "bottom_thickness_um": [150.0, 150.1, 150.3],
        "d_std_30um": [0.30, 0.32, 0.40],
        "d_std_60um": [0.15, 0.16, 0.22],
        "shift_z": [0.0, 1.0, -1.0],
    }
)


def make_data(**changes) -> ExperimentData:
    rng = np.random.default_rng(0)
    electrochem, segments = make_protocol()
    pristine = rng.normal(100.0, 10.0, (120, 200))
    failed = pristine.copy()
    failed[40:44, 30:170] = 20.0  # a crack through the electrolyte
    factors = {
        name: {30.0: rng.uniform(0.1, 0.3, (3, 4, 6)), 60.0: rng.uniform(0.15, 0.25, (1, 2, 3))}
        for name in STEPS["step"]
    }
    data = ExperimentData(
        experiment_id="exp-001",
        material="LiI-AN",
        area_cm2=AREA,
        electrochem=electrochem,
        segments=segments,
        eis_before=r_rc(300.0, 2000.0, 1e-9),
        eis_after=r_rc(20.0, 50.0, 1e-9),
        steps=STEPS.copy(),
        porosity_factors=factors,
        slices={"pristine": pristine, "failed": failed},
        voxel_um=0.7,
        summary={
            "material": "LiI-AN",
            "charge_to_failure_mC": 534 * AREA,
            "short_time_s": SHORT_S,
            "ccd_mA_cm2": 0.2,
            "stopped_because": "short",
            "n_segments": len(PROTOCOL),
            "voltage_limit_V": 10.0,
            "started": "2024-05-01T10:00:00",
            "wall_s": float("nan"),
        },
    )
    return replace(data, **changes)


class Page(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors, self.imgs, self.h2, self.text = [], [], 0, [], []
        self._in_h2 = False

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.imgs += 1
        elif tag != "meta":
            self.stack.append(tag)
        self._in_h2 = tag == "h2"

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(tag)
        self._in_h2 = False

    def handle_data(self, data):
        self.text.append(data)
        if self._in_h2:
            self.h2.append(data)


def parse(text: str) -> Page:
    page = Page()
    page.feed(text)
    page.close()
    assert page.errors == [] and page.stack == []
    return page


# --------------------------------------------------------------------------------------------


def test_faraday_thickness_known_answer():
    # Δh = Ω·Q/(F·A): 10 mC through the 3 mm pellet moves 0.1906 µm of Li.
    expected_um = 13.0 * 10e-3 / (96485.0 * AREA) * 1e4
    assert faraday_thickness_um(10.0, AREA) == pytest.approx(expected_um, rel=1e-12)
    assert expected_um == pytest.approx(0.19061, rel=1e-4)
    assert faraday_thickness_um(10.0, 0.0707) == pytest.approx(0.19057, rel=1e-4)
    assert LI_MOLAR_VOLUME_CM3_MOL == 13.0
    # The inverse in tomo_electrodes (ρ/M = 0.534/6.94, Ω = 12.996) agrees to 0.03 %.
    back = thickness_to_charge_mC(faraday_thickness_um(10.0, AREA), area_cm2=AREA)
    assert back == pytest.approx(10.0, rel=1e-3)
    np.testing.assert_allclose(
        faraday_thickness_um(np.array([0.0, 5.0]), 1.0), [0, 6.737e-3], rtol=1e-3
    )
    with pytest.raises(ValueError, match="area_cm2"):
        faraday_thickness_um(1.0, 0.0)


def test_thickness_figure_draws_the_faraday_slope():
    figures, skipped = build_experiment_figures(make_data())
    assert "thickness" not in skipped
    per_interval = figures["thickness"].axes[1]
    (plated,) = [ln for ln in per_interval.lines if ln.get_label().startswith("plated")]
    (stripped,) = [ln for ln in per_interval.lines if ln.get_label().startswith("stripped")]
    x, y = plated.get_data()
    slope = faraday_thickness_um(1.0, AREA)
    assert y[-1] / x[-1] == pytest.approx(slope, rel=1e-12)
    assert slope == pytest.approx(1.3474e-3 / AREA, rel=1e-4)  # µm per mC
    xs, ys = stripped.get_data()
    assert ys[-1] / xs[-1] == pytest.approx(-slope, rel=1e-12)


def test_summary_table_joins_protocol_and_microstructure():
    table = experiment_summary_table(make_data())
    assert len(table) == 3
    assert list(table["step"]) == ["pristine", "after strip 0.04", "failed"]
    assert list(table["segment"]) == [1, 4, 9]
    assert list(table["half_cycle"]) == [None, "strip", "plate"]
    np.testing.assert_allclose(table["current_density_mA_cm2"], [np.nan, 0.04, 0.2])
    np.testing.assert_allclose(table["charge_mC"], [0.0, 144 * AREA, 534 * AREA])
    np.testing.assert_allclose(table["interval_charge_mC"], [np.nan, 144 * AREA, 390 * AREA])
    np.testing.assert_allclose(table["start_h"], [600 / 3600, 4800 / 3600, 9300 / 3600])
    np.testing.assert_allclose(table["porosity"], [0.20, 0.21, 0.23])
    np.testing.assert_allclose(table["crack_volume_um3"], [0.0, 5e3, 2e4])
    np.testing.assert_allclose(table["d_std_30um"], [0.30, 0.32, 0.40])
    np.testing.assert_allclose(table["dh_top_um"], [0.0, -0.1, -0.5], atol=1e-12)
    np.testing.assert_allclose(table["dh_bottom_um"], [0.0, 0.1, 0.3], atol=1e-12)
    # Net to the counter (bottom): 0 in the first interval (plate = strip), then
    # +90A − 180A + 120A = 30·A mC: Ω·30 mC·A/(F·A) = 0.04042 µm whatever the area.
    net_um = 13.0 * 30e-3 / 96485.0 * 1e4
    np.testing.assert_allclose(table["faraday_dh_bottom_um"], [0.0, 0.0, net_um], atol=1e-12)
    np.testing.assert_allclose(table["faraday_dh_top_um"], [0.0, 0.0, -net_um], atol=1e-12)
    assert "shift_z" not in table  # bookkeeping of the tomography, not microstructure


def test_summary_table_during_a_run_and_matched_by_segment():
    # Only the first two scans analysed so far: the third tomogram has no microstructure yet.
    live = experiment_summary_table(make_data(steps=STEPS.iloc[:2].copy()))
    assert len(live) == 3
    assert list(live["step"]) == ["pristine", "after strip 0.04", "failed"]
    assert np.isnan(live["porosity"].iloc[2])
    # An explicit segment column wins over the order (the middle scan was not analysed).
    steps = STEPS.iloc[[0, 2]].assign(segment=[1, 9])
    table = experiment_summary_table(make_data(steps=steps))
    assert list(table["segment"]) == [1, 4, 9]
    np.testing.assert_allclose(table["porosity"], [0.20, np.nan, 0.23])
    assert list(table["step"]) == ["pristine", "after strip 0.04", "failed"]


def test_json_has_the_numbers_and_no_nan():
    data = make_data()
    out = experiment_report_json(data)
    assert {
        "experiment_id",
        "material",
        "area_cm2",
        "voxel_um",
        "software_version",
        "summary",
        "tomograms",
        "segments",
        "porosity_factor_spread",
        "eis_before",
        "eis_after",
        "faraday",
    } <= set(out)
    text = json.dumps(out, allow_nan=False)  # raises on any NaN or numpy scalar
    assert json.loads(text) == out
    assert out["summary"]["wall_s"] is None
    assert len(out["tomograms"]) == 3 and len(out["segments"]) == len(PROTOCOL)
    assert out["tomograms"][0]["current_density_mA_cm2"] is None
    assert out["tomograms"][2]["half_cycle"] == "plate"
    assert out["tomograms"][2]["charge_mC"] == pytest.approx(534 * AREA)
    assert out["faraday"]["thickness_um_per_mC"] == pytest.approx(faraday_thickness_um(1, AREA))
    assert len(out["porosity_factor_spread"]) == 6  # 3 steps × 2 cube sizes
    assert len(out["eis_before"]) == 50


def test_report_html_figures_and_escaping(tmp_path):
    data = make_data(material=EVIL, experiment_id="exp <1> & 'b'")
    data.segments.loc[2, "label"] = EVIL
    out = write_experiment_report(data, tmp_path / "reports" / "exp.html", dpi=DPI)
    text = out.read_text(encoding="utf-8")
    assert text.lstrip().startswith("<!DOCTYPE html>")
    page = parse(text)
    assert page.imgs == len(FIGURE_CAPTIONS) == 7
    assert text.count('<img src="data:image/png;base64,') == 7
    for heading in HEADINGS:
        assert heading in page.h2
    assert "Notes" not in page.h2  # nothing skipped
    assert "<script>" not in text
    assert "&lt;script&gt;" in text
    assert "exp <1>" not in text and "exp &lt;1&gt; &amp;" in text
    assert EVIL in "".join(page.text)  # shown, as text
    assert "insitu " in text  # software version in the header
    assert "2024-05-01T10:00:00" in text
    pngs = sorted((tmp_path / "reports" / "figures").glob("*.png"))
    assert len(pngs) == 7
    assert all(p.read_bytes().startswith(PNG_SIGNATURE) for p in pngs)
    assert all(re.fullmatch(r"exp_1_b_[a-z_]+\.png", p.name) for p in pngs)

    # Refreshed on the next call: a figure that cannot be drawn any more disappears.
    folder = tmp_path / "reports" / "figures"
    paths = experiment_figures(replace(data, eis_before=None, eis_after=None), folder, dpi=DPI)
    assert list(paths) == [name for name in FIGURE_CAPTIONS if name != "eis"]
    assert sorted(folder.glob("*.png")) == sorted(paths.values())
    for name, path in paths.items():
        assert path.name == f"exp_1_b_{name}.png"
        assert path.read_bytes().startswith(PNG_SIGNATURE)
    assert not list(folder.glob(".*.tmp"))


def _single_tomogram() -> ExperimentData:
    protocol = [PROTOCOL[1], PROTOCOL[2], PROTOCOL[3]]
    electrochem, segments = make_protocol(protocol)
    return make_data(
        electrochem=electrochem,
        segments=segments,
        steps=STEPS.iloc[:1].copy(),
        porosity_factors={"pristine": make_data().porosity_factors["pristine"]},
        slices={"pristine": make_data().slices["pristine"]},
        summary={"stopped_because": "completed"},
    )


def _no_short() -> ExperimentData:
    data = make_data(summary={"stopped_because": "stopped"})
    data.segments["end_reason"] = data.segments["end_reason"].replace("short", "stopped")
    return data


# name → (data, figures left out, figures to render: "report" writes the whole HTML report)
CASES = {
    "no EIS": (lambda: make_data(eis_before=None, eis_after=pd.DataFrame()), {"eis"}, "report"),
    "one tomogram": (_single_tomogram, {"thickness"}, "report"),
    "no short": (_no_short, set(), "report"),
    "no steps table": (
        lambda: make_data(steps=None, porosity_factors=None),
        {"volumes", "thickness", "porosity_maps", "porosity_stats"},
        "report",
    ),
    "nothing but segments": (
        lambda: make_data(
            electrochem=pd.DataFrame(),
            eis_before=None,
            eis_after=None,
            steps=None,
            porosity_factors=None,
            slices={},
            voxel_um=None,
            summary={},
        ),
        set(FIGURE_CAPTIONS),
        "report",
    ),
    "only EIS before": (lambda: make_data(eis_after=None), set(), ("eis",)),
    "no slices, no voxel": (lambda: make_data(slices={}, voxel_um=None), {"slices"}, ()),
    "slices without voxel": (lambda: make_data(voxel_um=None), set(), ("slices",)),
    "no area, no material": (
        lambda: make_data(area_cm2=float("nan"), material=None),
        {"thickness"},
        ("voltage",),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_missing_pieces_skip_their_figures(case, tmp_path):
    make, missing, render = CASES[case]
    data = make()
    figures, skipped = build_experiment_figures(data)
    assert set(skipped) == missing
    assert all("failed" not in reason for reason in skipped.values())
    assert set(figures) == set(FIGURE_CAPTIONS) - missing
    json.dumps(experiment_report_json(data), allow_nan=False)
    if render != "report":
        for name in render:
            figures[name].canvas.draw()
        return
    out = write_experiment_report(data, tmp_path / "r.html", dpi=DPI)
    page = parse(out.read_text(encoding="utf-8"))
    assert page.imgs == len(FIGURE_CAPTIONS) - len(missing)
    for heading in HEADINGS:
        assert heading in page.h2
    assert ("Notes" in page.h2) == bool(missing)


def test_voltage_figure_marks_cut_off_short_and_tomograms():
    figures, _ = build_experiment_figures(make_data())
    fig = figures["voltage"]
    ax, ax_i = fig.axes[:2]
    labels = {t.get_text() for t in fig.legends[0].get_texts()}
    assert {"voltage", "current", "short", "tomogram", "voltage cut-off"} <= labels
    texts = [t.get_text() for t in ax_i.texts]
    assert any("CCD = 0.2 mA/cm²" in t for t in texts)
    assert any("cut-off" in t and "0.1 mA/cm²" in t for t in texts)
    (short_line,) = [ln for ln in ax.lines if ln.get_label() == "short"]
    assert short_line.get_xdata()[0] == pytest.approx(SHORT_S / 3600)
    (cut,) = [ln for ln in ax.lines if ln.get_label() == "voltage cut-off"]
    assert cut.get_xdata()[0] == pytest.approx(6300 / 3600)
    assert cut.get_ydata()[0] == pytest.approx(10.0)
    # Three tomograms shaded
    assert sum(1 for p in ax.patches if p.get_label() in ("tomogram", "_tomogram")) == 3


def test_porosity_factor_objects_and_arrays():
    rng = np.random.default_rng(1)
    pores = rng.random((40, 60, 60)) < 0.2
    pf30 = porosity_factor(pores, voxel_um=3.0, block_um=30.0)
    pf60 = porosity_factor(pores, voxel_um=3.0, block_um=60.0)
    data = make_data(
        porosity_factors={"pristine": {30.0: pf30, 60.0: pf60}, "failed": {30.0: pf30}}
    )
    spread = porosity_factor_spread(data)
    assert list(spread["step"]) == ["pristine", "pristine", "failed"]
    assert spread["std"].iloc[0] == pytest.approx(float(np.nanstd(pf30.d)))
    assert spread["n_cubes"].iloc[0] == np.isfinite(pf30.d).sum()
    figures, skipped = build_experiment_figures(data)
    assert not {"porosity_maps", "porosity_stats"} & set(skipped)
    assert len([a for a in figures["porosity_maps"].axes if a.get_visible()]) == 3  # 2 + bar

    # Raw arrays are cube porosities Φ: d = Φ/mean(Φ) − 1.
    phi = np.array([[0.1, 0.3], [0.2, np.nan]])
    spread = porosity_factor_spread(make_data(porosity_factors={"s": {30: phi}}))
    d = np.array([0.1, 0.3, 0.2]) / 0.2 - 1
    assert spread["std"].iloc[0] == pytest.approx(d.std())
    assert spread["mean"].iloc[0] == pytest.approx(0.0, abs=1e-12)

    # Without grids the spread comes from the d_std_<size>um columns of the steps table.
    spread = porosity_factor_spread(make_data(porosity_factors=None))
    assert sorted(set(spread["block_um"])) == [30.0, 60.0]
    np.testing.assert_allclose(spread.loc[spread["block_um"] == 30.0, "std"], [0.3, 0.32, 0.4])
