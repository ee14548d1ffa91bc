"""How many refused calls a node logs one by one.

Every refused call is written to the node's access log and synced, and signs its head
(about a millisecond of disk). A caller that floods a node with calls it refuses would
turn that into a flood of disk writes: past a burst and a rate per caller (its
certificate), refusals are counted, by message type and error, into one record instead,
written when the caller is back under the rate and at least every ``SUMMARY_EVERY_S``
while it floods: a node killed outright (no close) loses at most that much of the count.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Callable

_MAX_CALLERS = 1024  # buckets kept; full ones are dropped first (they hold nothing)
SUMMARY_EVERY_S = 10.0  # a flood's count reaches the log at least this often


@dataclasses.dataclass
class Suppressed:
    """Refused calls of one caller that got no record of their own."""

    count: int = 0
    since: float = 0.0  # the budget's clock, at the first count
    first: float = 0.0  # wall clock
    last: float = 0.0
    by_type: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    sessions: set[str] = dataclasses.field(default_factory=set)

    def summary(self, limit: int = 20) -> dict:
        """Its counts for a log record (the times are the caller's to format)."""
        return {
            "count": self.count,
            "by_type": dict(self.by_type.most_common(limit)),
            "sessions": sorted(self.sessions),  # at most 8 (count)
        }


class RefusalBudget:
    """A token bucket per caller: ``burst`` records, refilled at ``per_s`` a second."""

    def __init__(
        self, burst: int, per_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.burst, self.per_s, self.clock = burst, per_s, clock
        self._buckets: dict[str, tuple[float, float]] = {}  # caller -> (tokens, when)
        self._suppressed: dict[str, Suppressed] = {}

    def admit(self, caller: str) -> bool:
        """Whether this refused call of ``caller`` gets a record of its own."""
        now = self.clock()
        tokens, when = self._buckets.get(caller, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - when) * self.per_s)
        admitted = tokens >= 1.0
        self._buckets[caller] = (tokens - 1.0 if admitted else tokens, now)
        if len(self._buckets) > _MAX_CALLERS:
            self._forget_full(now)
        return admitted

    def count(self, caller: str, what: str, session: str) -> bool:
        """One refused call that got no record: counted for ``caller``'s next summary.
        Whether that summary is due now (its first count is ``SUMMARY_EVERY_S`` old)."""
        now = self.clock()
        entry = self._suppressed.get(caller)
        if entry is None:
            entry = self._suppressed[caller] = Suppressed(since=now, first=time.time())
        entry.count += 1
        entry.last = time.time()
        entry.by_type[what] += 1
        if len(entry.sessions) < 8:
            entry.sessions.add(session[:64])
        return now - entry.since >= SUMMARY_EVERY_S

    def take(self, caller: str) -> Suppressed | None:
        """What was counted for ``caller`` since its last summary (and forget it)."""
        return self._suppressed.pop(caller, None)

    def take_all(self) -> dict[str, Suppressed]:
        out, self._suppressed = self._suppressed, {}
        return out

    def _forget_full(self, now: float) -> None:
        for caller, (tokens, when) in list(self._buckets.items()):
            if tokens + (now - when) * self.per_s >= self.burst:
                del self._buckets[caller]
