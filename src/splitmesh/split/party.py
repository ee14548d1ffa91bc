"""What every party shares: dispatch of messages to ``on_<Type>`` methods."""

from __future__ import annotations

import copy
import re

import torch

from splitmesh.errors import NotFittedError, ProtocolError
from splitmesh.transport.messages import Ack, Message, Restore, Snapshot


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class Party:
    """A protocol endpoint. Subclasses define ``on_<snake_case message type>(msg) -> reply``."""

    role = "party"

    def __init__(self, name: str) -> None:
        self.name = name
        self._snapshots: dict[str, dict] = {}

    def handle(self, msg: Message) -> Message:
        method = getattr(self, f"on_{_snake(type(msg).__name__)}", None)
        if method is None:
            raise ProtocolError(
                f"{self.role} {self.name!r} does not accept {type(msg).__name__} messages"
            )
        return method(msg)

    def stateful(self) -> dict[str, torch.nn.Module | torch.optim.Optimizer]:
        """The models and optimizers a snapshot holds; none until set up."""
        return {}

    def on_snapshot(self, msg: Snapshot) -> Ack:
        self._snapshots[msg.tag] = {
            k: copy.deepcopy(v.state_dict()) for k, v in self.stateful().items()
        }
        return Ack()

    def on_restore(self, msg: Restore) -> Ack:
        saved = self._snapshots.get(msg.tag)
        if saved is None:
            raise NotFittedError(f"{self.role} {self.name!r} has no snapshot {msg.tag!r}")
        for k, v in self.stateful().items():
            v.load_state_dict(saved[k])
        return Ack()
