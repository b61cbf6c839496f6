"""Asset documents of a tomography camera that writes APS Data Exchange HDF5.

Shared by the in-process simulated camera and its EPICS flavour, so that both reference their
frames from the run in exactly the same way: one ``stream_resource`` per frame kind (dataset)
per file, composed with the first frame of that kind, and one ``stream_datum`` per frame
(indices ``[i, i+1)``), with mimetype ``application/x-hdf5`` as bluesky-tiled-plugins'
``TiledWriter`` expects for external HDF5 data.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from event_model import ComposeStreamResourceBundle, compose_stream_resource
from event_model.documents.stream_datum import StreamRange

from ..dxchange import DATASETS

__all__ = ["FrameAssets", "image_data_key"]


def image_data_key(source: str, shape: tuple[int, int]) -> dict[str, Any]:
    """Data-key description of the camera's external image.

    Parameters
    ----------
    source : str
        Where the image comes from (``"PV:..."`` or ``"SIM:..."``).
    shape : tuple of int
        ``(rows, cols)``.

    Returns
    -------
    dict
        A descriptor ``data_keys`` entry with ``external="STREAM:"``: the frames stay in the
        file, the events never carry them.
    """
    rows, cols = shape
    return {
        "source": source,
        "dtype": "array",
        "dtype_numpy": np.dtype(np.uint16).str,
        "shape": [int(rows), int(cols)],
        "external": "STREAM:",
    }


class FrameAssets:
    """Compose the ``stream_resource``/``stream_datum`` documents of one Data Exchange file.

    Parameters
    ----------
    uri : str
        ``file://`` URI of the HDF5 file.
    data_key : str
        Data key of the image (``"<camera>_image"``).
    shape : tuple of int
        ``(rows, cols)`` of every frame.
    """

    def __init__(self, uri: str, data_key: str, shape: tuple[int, int]) -> None:
        self.uri = uri
        self.data_key = data_key
        self.shape = (int(shape[0]), int(shape[1]))
        self._resources: dict[str, ComposeStreamResourceBundle] = {}

    def docs(self, kind: str, index: int) -> Iterator[tuple[str, dict[str, Any]]]:
        """Documents that reference frame ``index`` of the dataset of ``kind``.

        Parameters
        ----------
        kind : {"projection", "flat", "dark"}
            Frame kind, hence dataset.
        index : int
            Index of the frame in its dataset.

        Yields
        ------
        tuple of (str, dict)
            ``("stream_resource", doc)`` the first time ``kind`` is seen, then
            ``("stream_datum", doc)``.
        """
        if kind not in DATASETS:
            raise ValueError(f"frame kind must be one of {', '.join(DATASETS)}, got {kind!r}")
        bundle = self._resources.get(kind)
        if bundle is None:
            rows, cols = self.shape
            bundle = compose_stream_resource(
                mimetype="application/x-hdf5",
                uri=self.uri,
                data_key=self.data_key,
                parameters={
                    "dataset": DATASETS[kind],
                    "chunk_shape": [1, rows, cols],
                    # The camera holds the file open for writing during the scan.
                    "swmr": True,
                },
            )
            self._resources[kind] = bundle
            yield "stream_resource", bundle.stream_resource_doc  # type: ignore[misc]
        datum = bundle.compose_stream_datum(indices=StreamRange(start=index, stop=index + 1))
        yield "stream_datum", datum  # type: ignore[misc]
