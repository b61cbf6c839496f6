"""Image the cell a potentiostat emulator drives: a frame source rebuilt from its live state.

:class:`CellImagingSource` is a :data:`~insitu.simulators.beamline.devices.FrameSource` over a
``state_provider()`` that returns the present :class:`~insitu.simulators.cell.model.CellState` of
one cell (``SimBench.cell_state`` of :mod:`insitu.protocols.bench.emulated`). The simulated camera
calls :meth:`CellImagingSource.prepare_scan` when it is staged, so each scan images the pellet
as the cell is at the start of that scan: its cracks, the Li in them and the electrode
thicknesses follow the current the emulator actually passed.

The EPICS flavour of the beamline runs its camera in an IOC subprocess, away from the cell:
:class:`CellStateServer` serves the state on 127.0.0.1 to authenticated clients
(:mod:`multiprocessing.connection`), and :func:`remote_cell_frame_source`, which the IOC
loads as ``"insitu.simulators.imaging.cell_imaging:remote_cell_frame_source"`` with JSON keyword
arguments, fetches it from there::

    with CellStateServer(sim.cell_state) as server, epics_tomo_bench(
        path,
        frame_source="insitu.simulators.imaging.cell_imaging:remote_cell_frame_source",
        frame_source_kwargs={"address": server.address, "authkey_hex": server.authkey_hex,
                             "material": "A-LPS", "n_projections": 180},
    ) as bench:
        ...
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import secrets
import socket
import threading
from collections.abc import Callable
from multiprocessing.connection import (
    AuthenticationError,
    Client,
    Connection,
    Listener,
    answer_challenge,
    deliver_challenge,
)
from pathlib import Path
from typing import Any

import numpy as np

from ..cell.state import CellState
from ..materials import MaterialPreset, get_material
from .frame_source import PelletFrameSource

__all__ = [
    "CellImagingSource",
    "CellStateServer",
    "StateProvider",
    "remote_cell_frame_source",
]

log = logging.getLogger(__name__)

#: ``state_provider() -> CellState``: the present state of the imaged cell.
StateProvider = Callable[[], CellState]

_LOOPBACK = "127.0.0.1"
_STATE_REQUEST = "state"
#: Real seconds within which the server's threads notice that it stops.
_POLL_S = 0.1


class CellImagingSource:
    """Frame source of the pellet in the present state of one live cell.

    Parameters
    ----------
    state_provider : callable
        ``state_provider()`` returns the cell's present :class:`CellState` (take it under the
        lock of whatever advances the cell, e.g. ``SimBench.cell_state``).
    material : str or MaterialPreset
        Electrolyte preset of that cell, or its name (resolved once, here).
    size : {"small", "full"}
        Pellet geometry (see :class:`~insitu.simulators.imaging.frame_source.PelletFrameSource`).
    n_projections : int, optional
        Nominal projections over 180°.
    seed : int
        Seed of the microstructure and the detector noise (the cracks are the cell's).
    **pellet_source_kwargs
        Further :class:`PelletFrameSource` options (``exposure_s``, ``energy_keV``,
        ``phase_contrast``, ``flat_photons``, ``workdir``, ``ram_limit_bytes``, ``progress``).

    Notes
    -----
    A source is built at construction (so :attr:`shape` is known before the first scan) and
    rebuilt by :meth:`prepare_scan` only when the state differs from the one imaged: a
    rebuild of the full size takes minutes. Frames are keyed by (seed, kind, running
    index), and :meth:`prepare_scan` restarts the indices, so the same state and seed give the
    same frames scan after scan.
    """

    def __init__(
        self,
        state_provider: StateProvider,
        material: str | MaterialPreset,
        *,
        size: str = "small",
        n_projections: int | None = None,
        seed: int = 0,
        **pellet_source_kwargs: Any,
    ) -> None:
        if "state" in pellet_source_kwargs or "charge_mC" in pellet_source_kwargs:
            raise TypeError("the state comes from state_provider; do not pass state or charge_mC")
        self.preset = get_material(material)
        self.material = self.preset.name
        self._provider = state_provider
        self._kwargs: dict[str, Any] = {
            "size": size,
            "n_projections": n_projections,
            "seed": int(seed),
            **pellet_source_kwargs,
        }
        self._lock = threading.Lock()
        self._closed = False
        #: How many pellet sources were built (1 at construction, +1 per changed state).
        self.builds = 0
        self._source = self._build(self._take_state())

    # --- the source of the present scan --------------------------------------------------
    def _take_state(self) -> CellState:
        state = self._provider()
        if not isinstance(state, CellState):
            raise TypeError(f"state_provider must return a CellState, got {type(state).__name__}")
        return state

    def _build(self, state: CellState) -> PelletFrameSource:
        source = PelletFrameSource(self.preset, state=state, **self._kwargs)
        self.builds += 1
        return source

    @property
    def source(self) -> PelletFrameSource:
        """The pellet source of the present scan."""
        if self._closed:
            raise RuntimeError("the cell imaging source is closed")
        return self._source

    @property
    def state(self) -> CellState:
        """The cell state the present source images."""
        return self.source.state

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of a frame."""
        return self.source.shape

    @property
    def n_projections(self) -> int:
        """Nominal projections over 180°."""
        return self.source.n_projections

    @property
    def metadata(self) -> dict[str, Any]:
        """Data Exchange metadata of the present scan (the sample description changes)."""
        return self.source.metadata

    @property
    def ground_truth(self) -> dict[str, Any]:
        """Ground truth of the state the present source images."""
        return self.source.ground_truth

    def prepare_scan(self, data_file: Path | None = None) -> dict[str, Any]:
        """Take the cell's present state and image it from now on; the camera's stage calls it.

        Parameters
        ----------
        data_file : pathlib.Path, optional
            The scan's Data Exchange file; its ground truth is written next to it as
            ``data_file.with_suffix(".truth.json")``.

        Returns
        -------
        dict
            The ground truth of the state this scan images (a copy).
        """
        state = self._take_state()
        with self._lock:
            old = self.source
            if state != old.state:  # frozen dataclasses: equal values, equal state
                # Build before swapping: a failed build leaves the previous source serving.
                self._source = self._build(state)
                old.close()  # its temporary line-integral store
            else:
                self._source.restart_noise()
            truth = copy.deepcopy(self._source.ground_truth)
        if data_file is not None:
            path = Path(data_file).with_suffix(".truth.json")
            # As protocols.workflows.tomo writes the JSON part of a scan's truth.
            path.write_text(json.dumps(truth, indent=2) + "\n")
        return truth

    def __call__(self, angle_rad: float, kind: str) -> np.ndarray:
        """A frame of the present state (see :meth:`PelletFrameSource.__call__`)."""
        return self.source(angle_rad, kind)

    @property
    def exposure_s(self) -> float:
        """Exposure (s) the present source reads its frames out for."""
        return self.source.exposure_s

    def frame_adu(self, angle_rad: float, kind: str) -> np.ndarray:
        """A frame of the present state in ADU (see :meth:`PelletFrameSource.frame_adu`)."""
        return self.source.frame_adu(angle_rad, kind)

    def labels(self, z0: int | None = None, z1: int | None = None) -> np.ndarray:
        """Ground-truth label volume (rows ``z0:z1``) of the imaged state."""
        return self.source.labels(z0, z1)

    def close(self) -> None:
        """Delete the present source's temporary files; no more frames are served."""
        with self._lock:
            if not self._closed:
                self._source.close()
                self._closed = True

    def __enter__(self) -> CellImagingSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# The state across processes
# --------------------------------------------------------------------------------------------


class CellStateServer:
    """Serve a cell's present state on 127.0.0.1 to clients that know the key.

    Each connection authenticates with a random 32-byte key (HMAC challenge of
    :mod:`multiprocessing.connection`); then every request ``"state"`` is answered with the
    pickled :class:`CellState` of ``state_provider()``, anything else with an error string.

    Parameters
    ----------
    state_provider : callable
        ``state_provider() -> CellState``, called once per request from a server thread.
    port : int
        TCP port on 127.0.0.1; 0 picks a free one.

    Attributes
    ----------
    address : str
        ``"127.0.0.1:PORT"`` (once started).
    authkey_hex : str
        The key clients need, in hex (pass both to :func:`remote_cell_frame_source`).

    Notes
    -----
    Use it as a context manager: the server thread stops, and every connection is closed, on
    exit. Each client is served (and authenticated) in a thread of its own, so a client that
    stalls or disconnects mid-request holds up or breaks nobody else.
    """

    def __init__(self, state_provider: StateProvider, *, port: int = 0) -> None:
        self._provider = state_provider
        self._authkey = secrets.token_bytes(32)
        self.authkey_hex = self._authkey.hex()
        self._port = int(port)
        self._listener: Listener | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._clients: set[threading.Thread] = set()
        self._clients_lock = threading.Lock()
        self.address = ""

    def start(self) -> str:
        """Start serving; returns :attr:`address`."""
        if self._listener is not None:
            return self.address
        self._stop.clear()
        # No authkey on the Listener itself: its accept() would run the handshake in the
        # accepting thread, where one silent client would block every other one. The same
        # handshake runs per client instead (_serve_client).
        listener = Listener((_LOOPBACK, self._port), family="AF_INET")
        self._listener = listener
        host, port = listener.address
        self.address = f"{host}:{port}"
        self._thread = threading.Thread(
            target=self._accept_loop, name=f"cell-state-server-{port}", daemon=True
        )
        self._thread.start()
        return self.address

    def stop(self) -> None:
        """Stop the server thread; connections close within :data:`_POLL_S`."""
        listener, self._listener = self._listener, None
        if listener is None:
            return
        self._stop.set()
        # accept() does not return when its socket is closed from another thread: wake it.
        host, _, port = self.address.rpartition(":")
        with contextlib.suppress(OSError):
            socket.create_connection((host, int(port)), timeout=1.0).close()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        listener.close()
        with self._clients_lock:
            clients = list(self._clients)
        for thread in clients:
            thread.join(timeout=2 * _POLL_S)

    def __enter__(self) -> CellStateServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the server thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stop.is_set():
            try:
                conn = listener.accept()
            except OSError:
                # A client that reset its connection before it was accepted; the pause keeps
                # a listener that fails for good from spinning.
                self._stop.wait(_POLL_S)
                continue
            if self._stop.is_set():
                conn.close()
                return
            thread = threading.Thread(
                target=self._serve_client, args=(conn,), name="cell-state-client", daemon=True
            )
            with self._clients_lock:
                self._clients.add(thread)
            thread.start()

    def _serve_client(self, conn: Connection) -> None:
        try:
            # What Listener(authkey=...).accept() does: challenge the client, then answer its
            # challenge, so both ends prove they hold the key.
            deliver_challenge(conn, self._authkey)
            answer_challenge(conn, self._authkey)
            while not self._stop.is_set():
                # Poll rather than block in recv(): the thread notices stop() within _POLL_S
                # (closing a socket does not wake a thread blocked reading it).
                if conn.poll(_POLL_S):
                    conn.send(self._answer(conn.recv()))
        except AuthenticationError as exc:
            log.warning("cell state server %s refused a client: %s", self.address, exc)
        except (EOFError, OSError):
            pass  # the client went away (possibly mid-request): serve the others on
        finally:
            with self._clients_lock:
                self._clients.discard(threading.current_thread())
            with contextlib.suppress(OSError):
                conn.close()

    def _answer(self, request: object) -> CellState | str:
        if request != _STATE_REQUEST:
            return f"error: unknown request {request!r}; the cell state server answers only 'state'"
        try:
            return self._provider()
        except Exception as exc:  # the client gets the reason; the server keeps serving
            log.exception("cell state provider failed")
            return f"error: the cell state provider failed: {type(exc).__name__}: {exc}"


class _RemoteState:
    """``state_provider`` that asks a :class:`CellStateServer` (one connection per call)."""

    def __init__(self, address: str, authkey_hex: str, timeout_s: float) -> None:
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"address must be 'HOST:PORT', got {address!r}")
        try:
            self._authkey = bytes.fromhex(authkey_hex)
        except ValueError as exc:
            raise ValueError("authkey_hex must be the server's key in hex") from exc
        self.address = address
        self._target = (host, int(port))
        self.timeout_s = float(timeout_s)

    def __call__(self) -> CellState:
        where = f"the cell state server at {self.address}"
        try:
            conn = Client(self._target, family="AF_INET", authkey=self._authkey)
        except AuthenticationError as exc:
            raise ConnectionError(f"{where} refused the authentication key: {exc}") from exc
        except (OSError, EOFError) as exc:
            raise ConnectionError(
                f"{where} cannot be reached ({exc}); is the process that drives the cell "
                "(and serves its state) still running?"
            ) from exc
        with conn:
            try:
                conn.send(_STATE_REQUEST)
                if not conn.poll(self.timeout_s):
                    raise TimeoutError(f"{where} did not answer within {self.timeout_s:g} s")
                answer = conn.recv()
            except (OSError, EOFError) as exc:
                raise ConnectionError(f"{where} closed the connection mid-request ({exc})") from exc
        if isinstance(answer, str):
            raise RuntimeError(f"{where}: {answer}")
        if not isinstance(answer, CellState):
            raise TypeError(f"{where} answered a {type(answer).__name__}, not a CellState")
        return answer


def remote_cell_frame_source(
    address: str,
    authkey_hex: str,
    material: str | MaterialPreset,
    size: str = "small",
    n_projections: int | None = None,
    seed: int = 0,
    *,
    timeout_s: float = 30.0,
    **kwargs: Any,
) -> CellImagingSource:
    """A :class:`CellImagingSource` whose state comes from a :class:`CellStateServer`.

    Loadable as ``"insitu.simulators.imaging.cell_imaging:remote_cell_frame_source"`` (e.g. by the
    EPICS IOC) with keyword arguments from a JSON object.

    Parameters
    ----------
    address : str
        ``CellStateServer.address`` (``"127.0.0.1:PORT"``).
    authkey_hex : str
        ``CellStateServer.authkey_hex``.
    material : str or MaterialPreset
        Electrolyte preset of the served cell, or its name.
    size : {"small", "full"}
        Pellet geometry.
    n_projections : int, optional
        Nominal projections over 180°.
    seed : int
        Seed of the microstructure and the detector noise.
    timeout_s : float
        Longest wait for the server's answer, real seconds.
    **kwargs
        Further :class:`PelletFrameSource` options.

    Returns
    -------
    CellImagingSource
        Built from the state served now; each :meth:`~CellImagingSource.prepare_scan` asks
        again.

    Raises
    ------
    ConnectionError
        If the server cannot be reached or refuses the key (the message names the address).
    """
    provider = _RemoteState(address, authkey_hex, timeout_s)
    return CellImagingSource(
        provider, material, size=size, n_projections=n_projections, seed=seed, **kwargs
    )
