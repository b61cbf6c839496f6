"""The materials table and the rank correlation, on tables whose answers are known by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from insitu.analysis.materials_compare import (
    ConflictingValuesError,
    failure_correlations,
    materials_table,
    rank_correlation,
)
from insitu.analysis.report.tomo_figures import plot_porosity_vs_failure


def obs(material: str, quantity: str, value: float | None, source: str = "s") -> dict:
    return {"material": material, "quantity": quantity, "value": value, "source": source}


def test_one_row_per_material_sorted_by_porosity_with_sources() -> None:
    table = materials_table(
        [
            obs("B", "porosity", 0.10, "tomo B"),
            obs("A", "porosity", 0.40, "tomo A"),
            obs("A", "charge_to_failure_C_cm2", 7.0, "run a"),
            obs("B", "charge_to_failure_mC", 90.0, "manifest B"),
            obs("C", "charge_to_failure_C_cm2", 20.0, "run c"),  # no porosity: last
            obs("A", "charge_to_failure_mC", None, "manifest A"),  # unknown: no conflict
        ]
    )
    assert table["material"].tolist() == ["A", "B", "C"]
    assert table["porosity"].tolist()[:2] == [0.40, 0.10] and np.isnan(table["porosity"][2])
    assert table["porosity_source"].tolist() == ["tomo A", "tomo B", None]
    assert table["charge_to_failure_C_cm2"].tolist()[0] == 7.0
    assert np.isnan(table["charge_to_failure_mC"][0])
    assert table["charge_to_failure_mC_source"][1] == "manifest B"


def test_conflicts_error_first_or_mean_and_equal_numbers_agree() -> None:
    rows = [obs("A", "porosity", 0.40, "one"), obs("A", "porosity", 0.30, "two")]
    with pytest.raises(ConflictingValuesError, match=r"A: conflicting porosity.*one.*two"):
        materials_table(rows)
    first = materials_table(rows, conflict="first")
    assert first["porosity"][0] == 0.40 and first["porosity_source"][0] == "one"
    mean = materials_table(rows, conflict="mean")
    assert mean["porosity"][0] == pytest.approx(0.35)
    assert mean["porosity_source"][0] == "mean of one; two"
    same = materials_table([obs("A", "porosity", 0.4, "folder"), obs("A", "porosity", 0.4, "m")])
    assert same["porosity_source"][0] == "folder; m"
    with pytest.raises(ValueError, match="conflict must be"):
        materials_table(rows, conflict="last")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="missing value, source"):
        materials_table(pd.DataFrame({"material": ["A"], "quantity": ["porosity"]}))


def test_spearman_known_values_and_sign() -> None:
    table = pd.DataFrame(
        {
            "material": ["A", "B", "C", "D"],
            "porosity": [0.48, 0.25, 0.15, 0.05],
            "charge_to_failure_mC": [25.0, 35.0, 40.0, 90.0],  # the paper's in-situ values
            "charge_to_failure_C_cm2": [6.849, 41.67, 19.62, 135.72],  # the paper's lab values
        }
    )
    insitu = rank_correlation(table, "porosity", "charge_to_failure_mC")
    assert insitu.rho == pytest.approx(-1.0) and insitu.sign == "negative" and insitu.n == 4
    # Lab ranks of B and C are swapped: ρ = 1 − 6·Σd²/(n(n²−1)) = 1 − 6·18/60 = −0.8.
    lab = rank_correlation(table, "porosity", "charge_to_failure_C_cm2")
    assert lab.rho == pytest.approx(-0.8)
    assert lab.to_dict()["materials"] == ["A", "B", "C", "D"]
    rising = rank_correlation(table.assign(y=[1.0, 2.0, 2.0, 3.0]), "y", "porosity")
    # Ties take their mean rank: ranks (1, 2.5, 2.5, 4) against (4, 3, 2, 1); deviations
    # (-1.5, 0, 0, 1.5) and (1.5, 0.5, -0.5, -1.5): ρ = -4.5 / √(4.5·5) = -3/√10.
    assert rising.rho == pytest.approx(-3 / np.sqrt(10))
    assert rank_correlation(table, "porosity", "porosity").sign == "positive"


def test_correlation_errors_and_the_columns_that_have_enough() -> None:
    table = pd.DataFrame(
        {
            "material": ["A", "B", "C"],
            "porosity": [0.4, 0.2, np.nan],
            "charge_to_failure_mC": [np.nan, 30.0, 50.0],
            "charge_to_failure_C_cm2": [5.0, 40.0, 9.0],
        }
    )
    with pytest.raises(ValueError, match=r"at least 2 materials.*got 1 \(B\)"):
        rank_correlation(table, "porosity", "charge_to_failure_mC")
    found = failure_correlations(table)
    assert list(found) == ["charge_to_failure_C_cm2"] and found["charge_to_failure_C_cm2"].n == 2
    with pytest.raises(ValueError, match="porosity for A, B; charge_to_failure_mC for B, C"):
        failure_correlations(table.assign(charge_to_failure_C_cm2=np.nan))
    with pytest.raises(ValueError, match="undefined"):
        failure_correlations(table.assign(charge_to_failure_C_cm2=7.0))
    with pytest.raises(ValueError, match="no column 'x'"):
        rank_correlation(table, "x")


def test_figure_draws_the_chosen_column_without_missing_points() -> None:
    table = pd.DataFrame(
        {
            "material": ["A", "B", "C"],
            "porosity": [0.4, 0.2, 0.1],
            "charge_to_failure_mC": [np.nan, np.nan, np.nan],
            "charge_to_failure_C_cm2": [5.0, np.nan, 9.0],
        }
    )
    # No in-situ number at all: the lab column is drawn, without the material that lacks it.
    fig = plot_porosity_vs_failure(table)
    np.testing.assert_allclose(fig.axes[0].collections[0].get_offsets(), [[0.4, 5.0], [0.1, 9.0]])
    assert "C/cm²" in fig.axes[0].get_ylabel()
    fig = plot_porosity_vs_failure(table.assign(charge_to_failure_mC=[1.0, 2.0, np.nan]))
    assert fig.axes[0].get_ylabel() == "charge to failure (mC)"
    with pytest.raises(ValueError, match="missing 'nope'"):
        plot_porosity_vs_failure(table, column="nope")
