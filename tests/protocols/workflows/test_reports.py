"""Report tables of stored runs."""

import numpy as np
import pandas as pd
import pytest

from insitu.protocols.workflows.reports import ccd_tables


def test_overpotential_table_stops_at_the_short():
    # 1 mA for 1 h, then 2 mA for 1 h that shorts after 20 min: the 2 mA row must show the
    # polarisation before the short (0.2 V), not the shorted cell's few mV.
    t = np.arange(0.0, 7200.0, 10.0)
    i = np.where(t < 3600, 1e-3, 2e-3)
    v = i * 100.0
    v[t >= 3600 + 1200] = 0.002
    table = ccd_tables(pd.DataFrame({"time_s": t, "voltage_V": v, "current_A": i}), 1.0)[1]
    last = table.iloc[-1]
    assert last["current_density_mA_cm2"] == pytest.approx(2.0)
    assert last["median_abs_voltage_V"] == pytest.approx(0.2)
