"""Figures and HTML reports: electrochemistry figures, tomography figures, the report page, and
the in-situ experiment's report.
"""

from .electrochem_figures import (
    ARRHENIUS_CONVENTIONS,
    BOLTZMANN_EV_K,
    envelope_decimate,
    figure_to_data_uri,
    figure_to_png_bytes,
    plot_arrhenius,
    plot_nyquist,
    plot_overpotentials,
    plot_voltage_time,
    sequential_colors,
)
from .experiment import (
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
from .html import (
    ccd_report,
    conductivity_report,
    format_value,
    html_report,
    write_report,
)
from .tomo_figures import (
    plot_porosity_vs_failure,
    plot_thickness_change,
    plot_volumes_vs_step,
    render_cracks,
)

__all__ = [
    "ARRHENIUS_CONVENTIONS",
    "BOLTZMANN_EV_K",
    "FIGURE_CAPTIONS",
    "LI_MOLAR_VOLUME_CM3_MOL",
    "ExperimentData",
    "build_experiment_figures",
    "ccd_report",
    "conductivity_report",
    "envelope_decimate",
    "experiment_figures",
    "experiment_report_json",
    "experiment_summary_table",
    "faraday_thickness_um",
    "figure_to_data_uri",
    "figure_to_png_bytes",
    "format_value",
    "html_report",
    "plot_arrhenius",
    "plot_nyquist",
    "plot_overpotentials",
    "plot_porosity_vs_failure",
    "plot_thickness_change",
    "plot_voltage_time",
    "plot_volumes_vs_step",
    "porosity_factor_spread",
    "render_cracks",
    "sequential_colors",
    "write_experiment_report",
    "write_report",
]
