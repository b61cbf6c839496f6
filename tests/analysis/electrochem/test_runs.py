"""Splitting a temperature series' EIS stream into spectra."""

import numpy as np
import pandas as pd
import pytest

from insitu.analysis.electrochem.runs import spectra_by_temperature


def test_each_spectrum_belongs_to_the_latest_temperature_before_it():
    temperature = pd.DataFrame(
        {"time": [0.0, 100.0, 200.0], "oven_readback": [298.2, 313.1, 333.0]}
    )
    f = np.logspace(6, -1, 8)
    eis = pd.concat(
        [
            pd.DataFrame(
                {"time": t0 + np.arange(8), "frequency_Hz": f, "z_real_ohm": r, "z_imag_ohm": -r}
            )
            for t0, r in ((10.0, 1.0), (110.0, 2.0), (210.0, 3.0))
        ]
    )
    spectra = spectra_by_temperature(eis, temperature)
    assert list(spectra) == [298.2, 313.1, 333.0]
    for (_, spectrum), r in zip(spectra.items(), (1.0, 2.0, 3.0), strict=True):
        assert list(spectrum.columns) == ["frequency_Hz", "z_real_ohm", "z_imag_ohm"]
        assert np.all(spectrum["z_real_ohm"] == r)
        np.testing.assert_array_equal(spectrum["frequency_Hz"], f)


def test_points_before_any_temperature_are_an_error():
    temperature = pd.DataFrame({"time": [5.0], "oven_readback": [298.0]})
    eis = pd.DataFrame(
        {"time": [1.0, 6.0], "frequency_Hz": [1.0, 2.0], "z_real_ohm": 0.0, "z_imag_ohm": 0.0}
    )
    with pytest.raises(ValueError, match="before any temperature"):
        spectra_by_temperature(eis, temperature)


def test_ambiguous_readback_column_asks_for_it():
    temperature = pd.DataFrame({"time": [0.0], "a": [1.0], "b": [2.0]})
    with pytest.raises(ValueError, match="pass column="):
        spectra_by_temperature(pd.DataFrame(), temperature)
