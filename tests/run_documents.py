"""Test support: collect a Bluesky run's documents and read its streams back."""

from __future__ import annotations

import numpy as np
from event_model import unpack_event_page


class Documents:
    """Every document of a run, in order; subscribe an instance to a RunEngine."""

    def __init__(self) -> None:
        self.docs: list[tuple[str, dict]] = []

    def __call__(self, name: str, doc: dict) -> None:
        self.docs.append((name, doc))

    def of(self, name: str) -> list[dict]:
        """Documents of one kind (``"start"``, ``"descriptor"``, ``"stream_datum"``, …)."""
        return [d for n, d in self.docs if n == name]

    def events(self, stream: str) -> list[dict]:
        """The events of one stream (single events and unpacked event pages), in order."""
        uids = {d["uid"] for d in self.of("descriptor") if d["name"] == stream}
        out: list[dict] = []
        for name, doc in self.docs:
            if name == "event" and doc["descriptor"] in uids:
                out.append(doc)
            elif name == "event_page" and doc["descriptor"] in uids:
                out.extend(unpack_event_page(doc))
        return out

    def stream(self, stream: str) -> dict[str, np.ndarray]:
        """One stream as columns: data key → array over its events."""
        rows: dict[str, list] = {}
        for event in self.events(stream):
            for key, value in event["data"].items():
                rows.setdefault(key, []).append(value)
        return {k: np.asarray(v) for k, v in rows.items()}
