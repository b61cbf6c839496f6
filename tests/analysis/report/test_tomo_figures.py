"""Experiment figures: they draw what the table holds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from insitu.analysis.report.tomo_figures import (
    plot_porosity_vs_failure,
    plot_thickness_change,
    plot_volumes_vs_step,
    render_cracks,
)

TABLE = pd.DataFrame(
    {
        "step": ["pristine", "plate 1", "strip 1"],
        "crack_volume_um3": [0.0, 5e3, 9e4],
        "transparent_volume_um3": [5.50e6, 5.51e6, 5.55e6],
        "top_thickness_um": [24.0, 23.9, 23.8],
        "bottom_thickness_um": [24.0, 24.1, 24.2],
    }
)


def test_step_figures_plot_the_table() -> None:
    fig = plot_volumes_vs_step(TABLE)
    crack_line = fig.axes[0].lines[0]
    np.testing.assert_allclose(crack_line.get_ydata(), [0.0, 5.0, 90.0])
    fig = plot_thickness_change(TABLE)
    top, bottom = fig.axes[0].lines[:2]
    np.testing.assert_allclose(top.get_ydata(), [0.0, -0.1, -0.2], atol=1e-12)
    np.testing.assert_allclose(bottom.get_ydata(), [0.0, 0.1, 0.2], atol=1e-12)


def test_porosity_vs_failure_and_crack_rendering() -> None:
    materials = pd.DataFrame(
        {
            "material": ["A-LPS", "LiI-AN"],
            "porosity": [0.48, 0.05],
            "charge_to_failure_mC": [20, 200],
        }
    )
    fig = plot_porosity_vs_failure(materials)
    np.testing.assert_allclose(fig.axes[0].collections[0].get_offsets(), [[0.48, 20], [0.05, 200]])
    with pytest.raises(ValueError, match="porosity"):
        plot_porosity_vs_failure(pd.DataFrame({"material": ["x"]}))
    labels = np.zeros((4, 5, 6), dtype=np.uint8)
    labels[1:3, 2, 1:4] = 1
    fig = render_cracks(labels, voxel_um=2.0)
    top_view = fig.axes[0].images[0].get_array()
    assert top_view[2, 1:4].tolist() == [1, 1, 1] and (top_view[0] == -1).all()
    with pytest.raises(ValueError, match="3-D"):
        render_cracks(labels[0], voxel_um=2.0)


def test_render_cracks_of_a_volume_without_cracks_draws(tmp_path):
    # A single scan, or a pristine one, has no crack labels: the figure must still be drawn
    # (the automatic colour range fell below vmin and matplotlib refused to save it).
    fig = render_cracks(np.zeros((4, 5, 6), dtype=np.uint32), voxel_um=3.0)
    fig.savefig(tmp_path / "cracks.png")
    assert (tmp_path / "cracks.png").stat().st_size > 0
    assert (fig.axes[0].images[0].get_array() == -1).all()
