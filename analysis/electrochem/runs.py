"""Helpers that turn the streams of a stored run into analysis inputs.

Pure pandas: a run's streams arrive as DataFrames (from the catalog or a JSONL backup) with a
``time`` column of event timestamps (seconds since the epoch).
"""

from __future__ import annotations

import pandas as pd

__all__ = ["spectra_by_temperature"]


def spectra_by_temperature(
    eis: pd.DataFrame, temperature: pd.DataFrame, column: str | None = None
) -> dict[float, pd.DataFrame]:
    """Split the ``eis`` stream of a temperature series into one spectrum per temperature.

    Each EIS point belongs to the latest ``temperature`` event recorded before it (the plan
    reads the settled oven just before each spectrum).

    Parameters
    ----------
    eis : DataFrame
        The ``eis`` stream: ``time``, ``frequency_Hz``, ``z_real_ohm``, ``z_imag_ohm``.
    temperature : DataFrame
        The ``temperature`` stream: ``time`` and the oven's readback in kelvin.
    column : str, optional
        The readback column; by default the one column whose name ends in ``readback``.

    Returns
    -------
    dict
        Temperature in K → that temperature's spectrum (without the ``time`` column), in the
        order measured.
    """
    if column is None:
        candidates = [c for c in temperature.columns if str(c).endswith("readback")]
        if len(candidates) != 1:
            raise ValueError(
                "cannot tell which column of the temperature stream holds the readback "
                f"(columns: {', '.join(map(str, temperature.columns))}); pass column="
            )
        column = candidates[0]
    for name, frame, needed in (
        ("eis", eis, ("time", "frequency_Hz", "z_real_ohm", "z_imag_ohm")),
        ("temperature", temperature, ("time", column)),
    ):
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise ValueError(f"the {name} stream lacks column(s) {', '.join(missing)}")
    marks = temperature[["time", column]].sort_values("time").reset_index(drop=True)
    marks["spectrum"] = range(len(marks))
    points = pd.merge_asof(eis.sort_values("time"), marks, on="time", direction="backward")
    if points["spectrum"].isna().any():
        raise ValueError("some EIS points were measured before any temperature was recorded")
    spectra: dict[float, pd.DataFrame] = {}
    for _, group in points.groupby("spectrum", sort=True):
        temperature_K = float(group[column].iloc[0])
        spectra[temperature_K] = group.drop(columns=["time", column, "spectrum"]).reset_index(
            drop=True
        )
    return spectra
