"""A node's own limits, in a module of their own: node files read them without torch."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Limits:
    """What a node accepts, whoever asks: set by the node's own file, never by the wire."""

    max_message_bytes: int = 128 * 2**20
    idle_timeout_s: float = 600.0  # an abandoned run stops blocking new ones after this
    max_batch: int = 65536  # the largest training or evaluation batch a Hello may declare
    # refused calls one caller gets logged one by one (each synced and signing the head):
    # a burst, then so many a second; beyond that they are counted into one record
    refusals_burst: int = 50
    refusals_per_s: float = 5.0
