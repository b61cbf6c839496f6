"""Reconstruction backends behind one interface.

A backend turns pre-processed sinograms ``(n_angles, rows, cols)`` into slices
``(rows, size, size)`` given the angles, the rotation axis column and a filter name (TomoPy's
names). ``"insitu"`` (default) is :class:`insitu.analysis.tomo.recon.algorithm.GridrecPlan`;
``"tomopy"``
is TomoPy's Gridrec when TomoPy is importable (it is not on PyPI: ``conda install -c
conda-forge tomopy``). ``"cupy"`` is filtered back-projection on a GPU
(:class:`insitu.analysis.tomo.recon.gpu.CupyFBP`; ``pip install insitu[gpu]``), not yet
measured on a GPU in this project; ``"auto"`` picks ``"cupy"`` when CuPy imports and sees a
GPU, else ``"insitu"``. CuPy is imported only when one of these two is asked for, so listing
the backends (the command line's start-up) costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from ...errors import AnalysisInputError, MissingDependencyError
from .algorithm import GridrecPlan, output_slices

__all__ = ["BACKENDS", "Backend", "BackendUnavailable", "make_backend"]


class BackendUnavailable(MissingDependencyError):
    """The requested backend's library is not installed."""


class Backend(Protocol):
    """Reconstructs batches of sinograms of one scan geometry."""

    name: str

    def reconstruct(self, sinograms: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
        """``(n_angles, rows, cols)`` line integrals → ``(rows, size, size)`` float32, into
        ``out`` when given (a buffer the caller reuses from slab to slab)."""
        ...


class InsituGridrec:
    """The default: Fourier-gridding FBP on finufft (:mod:`..algorithm`)."""

    name = "insitu"

    def __init__(
        self,
        theta: np.ndarray,
        n_det: int,
        *,
        center: float,
        filter_name: str = "shepp",
        support: float | None = None,
        sample_radius: float | None = None,
        rows: int | None = None,
    ) -> None:
        self._plan = GridrecPlan(
            theta,
            n_det,
            center=center,
            filter_name=filter_name,
            support=support,
            sample_radius=sample_radius,
            rows=rows,
        )

    def reconstruct(self, sinograms: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
        return self._plan.reconstruct(sinograms, out=out)

    def prepare(self) -> None:
        """Plan the FFTs now (see :meth:`GridrecPlan.prepare`)."""
        self._plan.prepare()


class TomopyGridrec:
    """TomoPy's ``recon(..., algorithm="gridrec")`` with the same parameters."""

    name = "tomopy"

    def __init__(
        self,
        theta: np.ndarray,
        n_det: int,
        *,
        center: float,
        filter_name: str = "shepp",
        support: float | None = None,
        sample_radius: float | None = None,
        rows: int | None = None,  # TomoPy plans nothing ahead: unused
    ) -> None:
        if sample_radius is not None:
            raise AnalysisInputError(
                "the 'tomopy' backend cannot pad rows along a sample wider than the field of "
                "view (--sample-diameter-um); use the default backend 'insitu'"
            )
        try:
            import tomopy
        except ImportError as exc:
            raise BackendUnavailable(
                "the 'tomopy' backend needs TomoPy, which is not on PyPI: install it with "
                "`conda install -c conda-forge tomopy`, or use the default backend 'insitu'"
            ) from exc
        self._tomopy = tomopy
        self._theta = np.asarray(theta, dtype=np.float32)
        self._center = float(center)
        self._filter = filter_name

    def reconstruct(self, sinograms: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
        rec = self._tomopy.recon(
            np.asarray(sinograms, dtype=np.float32),
            self._theta,
            center=self._center,
            algorithm="gridrec",
            filter_name=self._filter,
            sinogram_order=False,
        )
        if out is None:
            return np.asarray(rec, dtype=np.float32)
        output_slices(out, tuple(rec.shape))[...] = rec
        return out


def _cupy_fbp(theta: np.ndarray, n_det: int, **options: Any) -> Backend:
    """The GPU backend; :class:`BackendUnavailable` without CuPy or a GPU (imported here, not
    at start-up: importing CuPy initialises CUDA)."""
    from .gpu import CupyFBP

    return CupyFBP(theta, n_det, **options)


def _auto(theta: np.ndarray, n_det: int, **options: Any) -> Backend:
    """``"cupy"`` when CuPy imports and counts at least one GPU, else ``"insitu"``; the
    backend's ``name`` says which was chosen."""
    from . import gpu

    xp, _reason = gpu.probe_cupy()
    if xp is None:
        return InsituGridrec(theta, n_det, **options)
    return gpu.CupyFBP(theta, n_det, xp=xp, **options)


#: Backend name → callable taking ``(theta, n_det, *, center, filter_name, support,
#: sample_radius, rows)``.
BACKENDS: dict[str, Callable[..., Backend]] = {
    "insitu": InsituGridrec,
    "tomopy": TomopyGridrec,
    "cupy": _cupy_fbp,
    "auto": _auto,
}


def make_backend(
    name: str,
    theta: np.ndarray,
    n_det: int,
    *,
    center: float,
    filter_name: str = "shepp",
    support: float | None = None,
    sample_radius: float | None = None,
    rows: int | None = None,
) -> Backend:
    """Build the named backend for one scan geometry (``rows``: how many slices it will
    reconstruct, if known, so that it plans for that many); ``"auto"`` builds ``"cupy"`` where
    CuPy sees a GPU, else ``"insitu"``.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the known ones).
    BackendUnavailable
        When the backend's library is not installed (the message says how to install it).
    """
    try:
        factory = BACKENDS[name]
    except KeyError:
        raise ValueError(
            f"unknown reconstruction backend {name!r}; choose one of {', '.join(BACKENDS)}"
        ) from None
    return factory(
        theta,
        n_det,
        center=center,
        filter_name=filter_name,
        support=support,
        sample_radius=sample_radius,
        rows=rows,
    )
