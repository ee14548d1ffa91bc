"""What a node process serves: a fresh party for every run, opened by Hello."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from splitmesh.errors import ProtocolError
from splitmesh.split.party import Party
from splitmesh.transport.messages import Hello, Message


class Node:
    """Holds one party at a time; a Hello for a mode it agrees to starts a new one
    (``make_party`` gets the Hello: its mode and purpose).

    A node outlives runs (``splitmesh fraud --mode all`` runs two split modes against the
    same nodes), so each run starts from freshly initialised models, as in-process.
    """

    def __init__(
        self,
        name: str,
        make_party: Callable[[Hello], Party],
        *,
        modes: Sequence[str],
        guard: Callable[[Message], None] | None = None,
    ) -> None:
        self.name, self.make_party, self.modes = name, make_party, list(modes)
        self.guard = guard  # the node's own governance check on every request
        self.party: Party | None = None

    def handle(self, msg: Message) -> Message:
        if self.guard is not None:
            self.guard(msg)
        if isinstance(msg, Hello):
            if msg.mode not in self.modes:
                raise ProtocolError(
                    f"node {self.name!r} does not take part in {msg.mode} runs "
                    f"(it agrees to: {', '.join(self.modes)})"
                )
            self.party = self.make_party(msg)
        elif self.party is None:
            raise ProtocolError(
                f"node {self.name!r} got {type(msg).__name__} before Hello opened a run"
            )
        return self.party.handle(msg)
