"""Cross-material comparison: one row per material, and porosity against charge-to-failure.

The seed paper's Fig. 3b sets the pristine porosity of each material (from XCT) against its
charge-to-failure, and the text reads the trend as "the denser the electrolyte, the more
charge it takes before it shorts". This module turns measurements gathered from several
sources (tomography analyses, lab CCD runs, values a user gives) into that table and measures
the trend with a rank correlation, which needs no assumption about the shape of the relation
and is honest about what four points can say.

- :func:`materials_table`: long observations (material, quantity, value, source) → one row
  per material, with where each number came from and a rule for conflicting numbers;
- :func:`rank_correlation`: Spearman's ρ between two columns of that table;
- :func:`failure_correlations`: ρ of porosity against every charge-to-failure column that has
  enough materials.

Pure functions on DataFrames: no file, catalog or instrument is touched here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from .errors import AnalysisInputError

__all__ = [
    "FAILURE_COLUMNS",
    "ConflictingValuesError",
    "RankCorrelation",
    "failure_correlations",
    "materials_table",
    "rank_correlation",
]

#: Charge-to-failure columns, in the order the comparison prefers them: the in-situ cell's
#: charge (what the paper's Fig. 3b plots against porosity), then the lab cell's per cm².
FAILURE_COLUMNS: tuple[str, ...] = ("charge_to_failure_mC", "charge_to_failure_C_cm2")

#: What to do when two sources give one material different values of one quantity.
Conflict = Literal["error", "first", "mean"]

_OBSERVATION_COLUMNS = ("material", "quantity", "value", "source")


class ConflictingValuesError(AnalysisInputError):
    """Two sources give one material different values of the same quantity."""


@dataclass(frozen=True)
class RankCorrelation:
    """Spearman's rank correlation between two columns of a materials table.

    Attributes
    ----------
    x, y : str
        The columns correlated.
    rho : float
        Spearman's ρ in [-1, 1] (Pearson's correlation of the ranks, ties averaged).
    materials : tuple of str
        The materials that had both numbers, in table order.
    """

    x: str
    y: str
    rho: float
    materials: tuple[str, ...]

    @property
    def n(self) -> int:
        """How many materials entered the correlation."""
        return len(self.materials)

    @property
    def sign(self) -> Literal["negative", "positive", "none"]:
        """``"negative"`` when ``y`` falls as ``x`` rises, ``"positive"``, or ``"none"``."""
        # ρ of ranks is a ratio of integers-ish; a tolerance keeps round-off out of the sign.
        if self.rho < -1e-12:
            return "negative"
        if self.rho > 1e-12:
            return "positive"
        return "none"

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "x": self.x,
            "y": self.y,
            "rho": self.rho,
            "sign": self.sign,
            "n": self.n,
            "materials": list(self.materials),
        }


def _observations(observations: pd.DataFrame | Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    frame = (
        observations.copy()
        if isinstance(observations, pd.DataFrame)
        else pd.DataFrame.from_records(list(observations), columns=list(_OBSERVATION_COLUMNS))
    )
    missing = [c for c in _OBSERVATION_COLUMNS if c not in frame]
    if missing:
        raise ValueError(
            f"observations need columns {', '.join(_OBSERVATION_COLUMNS)}; missing "
            f"{', '.join(missing)}"
        )
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce")
    # A source that does not know a number says nothing about it: no row, no conflict.
    return frame.dropna(subset=["material", "quantity", "value"])


def _merge(group: pd.DataFrame, conflict: Conflict, rtol: float) -> tuple[float, str]:
    """One value (and its sources) from every observation of one material's quantity."""
    values = group["value"].to_numpy(dtype=float)
    sources = [str(s) for s in group["source"]]
    if len(values) == 1 or np.allclose(values, values[0], rtol=rtol, atol=0.0):
        # The same number from several places (a manifest and its results folder) agrees.
        return float(values[0]), "; ".join(dict.fromkeys(sources))
    if conflict == "first":
        return float(values[0]), sources[0]
    if conflict == "mean":
        return float(values.mean()), "mean of " + "; ".join(sources)
    material, quantity = group["material"].iloc[0], group["quantity"].iloc[0]
    given = ", ".join(f"{v:.6g} from {s}" for v, s in zip(values, sources, strict=True))
    raise ConflictingValuesError(
        f"{material}: conflicting {quantity} ({given}); give one source per material, or "
        "choose a rule (--conflict first keeps the first given, --conflict mean averages)"
    )


def materials_table(
    observations: pd.DataFrame | Iterable[Mapping[str, Any]],
    *,
    conflict: Conflict = "error",
    rtol: float = 1e-6,
    quantities: Sequence[str] = ("porosity", *FAILURE_COLUMNS),
) -> pd.DataFrame:
    """One row per material from observations gathered from several sources.

    Parameters
    ----------
    observations : DataFrame or iterable of mappings
        Columns ``material``, ``quantity`` (a column name of the result, e.g. ``porosity``,
        ``charge_to_failure_mC``, ``charge_to_failure_C_cm2``), ``value`` and ``source``
        (where the number came from, kept in ``<quantity>_source``). Missing values (NaN,
        None) are ignored.
    conflict : {"error", "first", "mean"}
        Two sources giving one material different values of a quantity: raise
        :class:`ConflictingValuesError`, keep the first given, or average them.
    rtol : float
        Relative tolerance under which values count as the same number.
    quantities : sequence of str
        Columns that are always present (NaN where no source gave them); other quantities
        in the observations are added after them.

    Returns
    -------
    DataFrame
        ``material``, then per quantity ``<quantity>`` and ``<quantity>_source``; rows sorted
        by decreasing porosity (materials without porosity last, in order of appearance).
    """
    if conflict not in ("error", "first", "mean"):
        raise ValueError(f"conflict must be 'error', 'first' or 'mean', got {conflict!r}")
    frame = _observations(observations)
    order = list(dict.fromkeys(frame["material"]))
    names = list(dict.fromkeys([*quantities, *frame["quantity"]]))
    table = pd.DataFrame({"material": order})
    for quantity in names:
        table[quantity] = np.nan
        table[f"{quantity}_source"] = None
    index = {m: i for i, m in enumerate(order)}
    for (material, quantity), group in frame.groupby(["material", "quantity"], sort=False):
        value, source = _merge(group, conflict, rtol)
        row = index[material]
        table.loc[row, quantity] = value
        table.loc[row, f"{quantity}_source"] = source
    # Stable sort: materials with equal or unknown porosity keep the order they were given.
    return table.sort_values(
        "porosity", ascending=False, na_position="last", kind="stable"
    ).reset_index(drop=True)


def rank_correlation(
    table: pd.DataFrame, x: str = "porosity", y: str = "charge_to_failure_mC"
) -> RankCorrelation:
    """Spearman's rank correlation between two columns over the materials that have both.

    Parameters
    ----------
    table : DataFrame
        A materials table (:func:`materials_table`) or any table with ``material``, ``x``
        and ``y`` columns.
    x, y : str
        The columns.

    Returns
    -------
    RankCorrelation

    Raises
    ------
    ValueError
        If fewer than 2 materials have both numbers, or one of the columns is constant over
        them (ρ is then undefined).
    """
    for column in ("material", x, y):
        if column not in table:
            raise ValueError(f"the table has no column {column!r}")
    both = table.dropna(subset=[x, y])
    if len(both) < 2:
        have = ", ".join(map(str, both["material"])) or "none"
        raise AnalysisInputError(
            f"a rank correlation of {x} and {y} needs at least 2 materials with both numbers; "
            f"got {len(both)} ({have}): add sources for more materials"
        )
    # Spearman's ρ is Pearson's correlation of the ranks, with ties given their mean rank.
    rx = both[x].astype(float).rank(method="average").to_numpy()
    ry = both[y].astype(float).rank(method="average").to_numpy()
    if np.ptp(rx) == 0 or np.ptp(ry) == 0:
        constant = x if np.ptp(rx) == 0 else y
        raise AnalysisInputError(
            f"{constant} is the same for every material ({', '.join(map(str, both['material']))})"
            ": its rank correlation is undefined"
        )
    rho = float(np.corrcoef(rx, ry)[0, 1])
    return RankCorrelation(
        x=x, y=y, rho=float(np.clip(rho, -1.0, 1.0)), materials=tuple(map(str, both["material"]))
    )


def failure_correlations(
    table: pd.DataFrame, columns: Sequence[str] = FAILURE_COLUMNS, x: str = "porosity"
) -> dict[str, RankCorrelation]:
    """ρ of ``x`` against every charge-to-failure column with at least 2 materials.

    Parameters
    ----------
    table : DataFrame
        A materials table.
    columns : sequence of str
        Candidate charge-to-failure columns, in order of preference.
    x : str
        The column they are correlated with.

    Returns
    -------
    dict of str to RankCorrelation
        Keyed by column, in the order of ``columns``; columns with too few materials are
        left out.

    Raises
    ------
    ValueError
        If no column has at least 2 materials with both numbers (the message says which
        materials have what).
    """
    result: dict[str, RankCorrelation] = {}
    reasons: list[str] = []
    for column in columns:
        if column not in table:
            continue
        try:
            result[column] = rank_correlation(table, x, column)
        except ValueError as exc:
            reasons.append(str(exc))
    if not result:

        def known(column: str) -> str:
            if column not in table:
                return "none"
            return ", ".join(map(str, table.dropna(subset=[column])["material"])) or "none"

        have = "; ".join(f"{c} for {known(c)}" for c in (x, *columns))
        # A constant column is a different problem from too few materials: say it too.
        constant = [r for r in reasons if "undefined" in r]
        raise AnalysisInputError(
            f"no correlation can be computed: it needs at least 2 materials with {x} and a "
            f"charge-to-failure; known: {have}"
            + (f"; {'; '.join(constant)}" if constant else "; add sources for more materials")
        )
    return result
