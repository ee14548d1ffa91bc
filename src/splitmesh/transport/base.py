"""The transport interface: parties address each other by name and exchange messages."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

from splitmesh.transport.messages import Message

# Checks a tensor's declared (message type, field, dtype, shape) before it is allocated.
TensorCheck = Callable[[str, str, str, tuple[int, ...]], None]


@dataclasses.dataclass(frozen=True)
class Caller:
    """Who sent a request, as the transport knows it: the SHA-256 of the caller's certificate
    (None in process or in plaintext) and the id of the transport session that sent it."""

    fingerprint: str | None = None
    client: str = "local"


@dataclasses.dataclass(frozen=True)
class Incoming:
    """A request as it arrives, not yet decoded: the type it says it is (unchecked), its size
    on the wire, and how to decode it under a receiver's tensor checks."""

    kind: str
    size: int
    decode: Callable[[TensorCheck | None], Message]


class WireStats:
    """Bytes and messages per party and direction, seen from the caller's side.

    Bytes are also summed per phase ("train" unless a ``phase`` block says otherwise), so
    training traffic can be told from evaluation traffic.
    """

    def __init__(self) -> None:
        self.bytes: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.messages: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.by_phase: defaultdict[str, int] = defaultdict(int)
        self._phase = "train"

    def add(self, party: str, direction: str, n: int) -> None:
        self.bytes[(party, direction)] += n
        self.messages[(party, direction)] += 1
        self.by_phase[self._phase] += n

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        before, self._phase = self._phase, name
        try:
            yield
        finally:
            self._phase = before

    def total(self) -> int:
        return sum(self.bytes.values())

    def by_party(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for (party, direction), n in sorted(self.bytes.items()):
            out.setdefault(party, {"sent": 0, "received": 0})[direction] = n
        return out

    def reset(self) -> None:
        self.bytes.clear()
        self.messages.clear()
        self.by_phase.clear()


class Pending:
    """Replies that may still be on their way."""

    def __init__(self, wait: Callable[[], dict[str, Message]]) -> None:
        self._wait = wait

    def result(self) -> dict[str, Message]:
        return self._wait()


class Transport(ABC):
    """Delivers a request to a named party and returns its reply.

    ``sent`` counts bytes from the caller to the party, ``received`` bytes back. A party's
    failure comes back as :class:`splitmesh.errors.PartyError` naming the party and call.
    """

    def __init__(self) -> None:
        self.stats = WireStats()

    @property
    @abstractmethod
    def parties(self) -> list[str]:
        """Names of the reachable parties."""

    @abstractmethod
    def request(self, party: str, msg: Message) -> Message:
        """Send one request and wait for its reply."""

    def request_many(self, requests: Mapping[str, Message]) -> dict[str, Message]:
        """Send independent requests to several parties; a network transport overlaps them."""
        return {party: self.request(party, msg) for party, msg in requests.items()}

    def submit_many(self, requests: Mapping[str, Message]) -> Pending:
        """Start requests and return at once; ``result()`` waits for the replies.

        A network transport lets the caller compute while the parties work; in one process
        the requests are served on the spot, so the arithmetic is the same either way.
        """
        replies = self.request_many(requests)
        return Pending(lambda: replies)

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release connections; the default has none."""
