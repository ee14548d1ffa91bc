"""What every party shares: dispatch of messages to ``on_<Type>`` methods, snapshots of
its state under a tag, and checkpoints of that state on its own disk.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from splitmesh.errors import ConfigError, NotFittedError, ProtocolError
from splitmesh.split.checkpoint import (
    check_same_data,
    pack_state,
    prune,
    read_checkpoint,
    restore_states,
    snapshot_states,
    unpack_state,
    write_checkpoint,
)
from splitmesh.transport.messages import (
    Ack,
    Checkpoint,
    Hello,
    LoadCheckpoint,
    Message,
    Restore,
    Snapshot,
)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class Party:
    """A protocol endpoint. Subclasses define ``on_<snake_case message type>(msg) -> reply``.

    ``state_dir``: where this party writes its checkpoints (its own disk; nothing but the
    tag travels). Without one, checkpoint requests are refused.
    """

    role = "party"

    def __init__(self, name: str, *, state_dir: str | Path | None = None) -> None:
        self.name = name
        self.state_dir = Path(state_dir) if state_dir is not None else None
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

    def fingerprint(self) -> dict[str, Any]:
        """What identifies this party's data (rows, columns, content hash); no values."""
        return {}

    def on_hello(self, msg: Hello) -> Ack:
        return Ack(info={"name": self.name, "role": self.role, "data": self.fingerprint()})

    def on_snapshot(self, msg: Snapshot) -> Ack:
        self._snapshots[msg.tag] = snapshot_states(self.stateful())
        return Ack()

    def on_restore(self, msg: Restore) -> Ack:
        saved = self._snapshots.get(msg.tag)
        if saved is None:
            raise NotFittedError(f"{self.role} {self.name!r} has no snapshot {msg.tag!r}")
        restore_states(self.stateful(), saved)
        return Ack()

    # -- checkpoints on this party's own disk ------------------------------------------------
    def _run_dir(self, run: str) -> Path:
        if self.state_dir is None:
            raise ConfigError(
                f"{self.role} {self.name!r} has no state directory, so it cannot checkpoint",
                hint="give the node a state_dir",
            )
        return self.state_dir / run

    def on_checkpoint(self, msg: Checkpoint) -> Ack:
        directory = self._run_dir(msg.run)
        payload = pack_state(
            self.stateful(), self._snapshots, party=self.name, fingerprint=self.fingerprint()
        )
        write_checkpoint(directory / f"{msg.tag}.pt", payload)
        prune(directory, [msg.tag, *msg.keep])
        return Ack(info={"tag": msg.tag})

    def on_load_checkpoint(self, msg: LoadCheckpoint) -> Ack:
        who = f"{self.role} {self.name!r}"
        saved = read_checkpoint(self._run_dir(msg.run) / f"{msg.tag}.pt", who)
        check_same_data(who, saved["fingerprint"], self.fingerprint())
        if not self.stateful():
            raise NotFittedError(f"{who} must be set up before it loads a checkpoint")
        self._snapshots = unpack_state(self.stateful(), saved)
        return Ack(info={"tag": msg.tag})
