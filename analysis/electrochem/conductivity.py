"""Ionic conductivity from resistance and geometry, and Arrhenius activation energies.

Two Arrhenius conventions are in use for ion conductors and give different activation
energies from the same data, so every result names its convention:

``"sigma_T"``
    σ·T = A·exp(−Eₐ/kT): a straight line of ln(σT) against 1/T. This is the form that
    follows from hopping theory, and the one the virtual cell
    (:mod:`insitu.simulators.cell.model`) uses, so it recovers the presets' Eₐ exactly.
``"sigma"``
    σ = A·exp(−Eₐ/kT): a straight line of ln σ against 1/T, the form many papers plot.

Because ln(σT) = ln σ + ln T and ln T changes with 1/T at the rate −T, the ``"sigma_T"``
activation energy exceeds the ``"sigma"`` one by about k·T̄ (≈ 26 meV near room
temperature) on the same data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = [
    "BOLTZMANN_EV_K",
    "CONVENTIONS",
    "ROOM_TEMPERATURE_K",
    "ArrheniusFit",
    "activation_energies",
    "arrhenius_fit",
    "conductivity_S_cm",
    "sigma_at",
]

#: Boltzmann constant in eV/K (CODATA 2018, exact).
BOLTZMANN_EV_K = 8.617333262e-5
#: 25 °C, the temperature at which room-temperature conductivities are quoted.
ROOM_TEMPERATURE_K = 298.15
#: Arrhenius conventions: ``"sigma_T"`` (ln σT vs 1/T) and ``"sigma"`` (ln σ vs 1/T).
CONVENTIONS = ("sigma_T", "sigma")

Convention = Literal["sigma_T", "sigma"]


def conductivity_S_cm(
    resistance_ohm: float | np.ndarray,
    thickness_cm: float | np.ndarray,
    area_cm2: float | np.ndarray,
) -> float | np.ndarray:
    """Ionic conductivity σ = L / (R·A) in S/cm.

    Parameters
    ----------
    resistance_ohm : float or array
        Electrolyte resistance (R_b + R_gb), ohm.
    thickness_cm : float or array
        Pellet thickness L, cm.
    area_cm2 : float or array
        Electrode area A, cm².

    Returns
    -------
    float or ndarray
        σ in S/cm; an array when any input is one (broadcast).

    Raises
    ------
    ValueError
        If any input is not positive and finite.
    """
    r, length, area = (np.asarray(v, dtype=float) for v in (resistance_ohm, thickness_cm, area_cm2))
    for name, value in (("resistance_ohm", r), ("thickness_cm", length), ("area_cm2", area)):
        if not np.all(np.isfinite(value)) or np.any(value <= 0):
            raise ValueError(f"{name} must be positive and finite, got {value!r}")
    sigma = length / (r * area)
    return float(sigma) if sigma.ndim == 0 else sigma


@dataclass(frozen=True)
class ArrheniusFit:
    """A straight-line Arrhenius fit in one named convention.

    Attributes
    ----------
    convention : str
        ``"sigma_T"``: ln(σT) = ln A − Eₐ/(kT), A in S·K/cm; ``"sigma"``: ln σ = ln A − Eₐ/(kT),
        A in S/cm.
    activation_energy_eV : float
        Eₐ.
    activation_energy_stderr_eV : float
        Standard error of Eₐ from the regression (NaN with only two points).
    prefactor : float
        A, in :attr:`prefactor_unit`.
    prefactor_unit : str
        ``"S K/cm"`` or ``"S/cm"``.
    r_squared : float
        Coefficient of determination of the straight line.
    n_points : int
        Number of temperatures fitted.
    temperature_range_K : tuple of float
        Lowest and highest temperature fitted.
    """

    convention: str
    activation_energy_eV: float
    activation_energy_stderr_eV: float
    prefactor: float
    prefactor_unit: str
    r_squared: float
    n_points: int
    temperature_range_K: tuple[float, float]

    def predict(self, temperature_K: float | np.ndarray) -> float | np.ndarray:
        """σ in S/cm at ``temperature_K`` from the fitted line."""
        t = np.asarray(temperature_K, dtype=float)
        if np.any(t <= 0):
            raise ValueError(f"temperature_K must be positive (kelvin), got {temperature_K!r}")
        y = self.prefactor * np.exp(-self.activation_energy_eV / (BOLTZMANN_EV_K * t))
        sigma = y / t if self.convention == "sigma_T" else y
        return float(sigma) if sigma.ndim == 0 else sigma


def arrhenius_fit(
    temperature_K: np.ndarray,
    sigma_S_cm: np.ndarray,
    convention: Convention = "sigma_T",
) -> ArrheniusFit:
    """Fit an Arrhenius line to conductivities measured at several temperatures.

    Parameters
    ----------
    temperature_K : array
        Temperatures in kelvin (convert °C first: T = θ + 273.15).
    sigma_S_cm : array
        Conductivity at each temperature, S/cm.
    convention : {"sigma_T", "sigma"}
        ``"sigma_T"``: ordinary least squares of ln(σT) on 1/T (σ·T = A·exp(−Eₐ/kT), the
        virtual cell's law); ``"sigma"``: ln σ on 1/T (σ = A·exp(−Eₐ/kT)).

    Returns
    -------
    ArrheniusFit

    Raises
    ------
    ValueError
        Unknown convention, fewer than two distinct temperatures, mismatched lengths, or
        non-positive values.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; choose one of {CONVENTIONS}")
    t = np.asarray(temperature_K, dtype=float).ravel()
    sigma = np.asarray(sigma_S_cm, dtype=float).ravel()
    if t.shape != sigma.shape:
        raise ValueError(
            f"temperature_K and sigma_S_cm differ in length ({t.size} vs {sigma.size})"
        )
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(sigma))):
        raise ValueError("temperature_K and sigma_S_cm must be finite")
    if np.any(t <= 0):
        raise ValueError("temperature_K must be positive (kelvin; add 273.15 to °C)")
    if np.any(sigma <= 0):
        raise ValueError("sigma_S_cm must be positive")
    if np.unique(t).size < 2:
        raise ValueError("an Arrhenius fit needs at least two distinct temperatures")
    x = 1.0 / t
    y = np.log(sigma * t) if convention == "sigma_T" else np.log(sigma)
    design = np.column_stack([np.ones_like(x), x])
    (intercept, slope), *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - (intercept + slope * x)
    ss_res = float(resid @ resid)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    n = t.size
    if n > 2:
        s2 = ss_res / (n - 2)
        se_slope = float(np.sqrt(s2 / np.sum((x - x.mean()) ** 2)))
    else:
        se_slope = float("nan")
    return ArrheniusFit(
        convention=convention,
        activation_energy_eV=float(-slope * BOLTZMANN_EV_K),
        activation_energy_stderr_eV=se_slope * BOLTZMANN_EV_K,
        prefactor=float(np.exp(intercept)),
        prefactor_unit="S K/cm" if convention == "sigma_T" else "S/cm",
        r_squared=1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0,
        n_points=n,
        temperature_range_K=(float(t.min()), float(t.max())),
    )


def activation_energies(
    temperature_K: np.ndarray, sigma_S_cm: np.ndarray
) -> dict[str, ArrheniusFit]:
    """Arrhenius fits in both conventions, keyed by convention name.

    Parameters
    ----------
    temperature_K, sigma_S_cm : array
        As for :func:`arrhenius_fit`.

    Returns
    -------
    dict
        ``{"sigma_T": fit of ln(σT) vs 1/T, "sigma": fit of ln σ vs 1/T}``. The first
        Eₐ is larger by about k·T̄.
    """
    return {c: arrhenius_fit(temperature_K, sigma_S_cm, convention=c) for c in CONVENTIONS}


def sigma_at(fit: ArrheniusFit, temperature_K: float = ROOM_TEMPERATURE_K) -> float:
    """σ in S/cm at ``temperature_K`` (default 25 °C) from an Arrhenius fit.

    Parameters
    ----------
    fit : ArrheniusFit
        From :func:`arrhenius_fit`.
    temperature_K : float
        Temperature, kelvin.

    Returns
    -------
    float
    """
    return float(fit.predict(float(temperature_K)))
