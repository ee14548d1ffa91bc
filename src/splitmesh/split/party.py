"""What every party shares: dispatch of messages to ``on_<Type>`` methods, snapshots of
its state under a tag, and checkpoints of that state on its own disk.

A party names its own files: checkpoints go to ``state_dir/runs/<run id>/epoch-NNNN.pt``,
the run id being the one its node validated at Hello, the epoch an integer from the wire.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from splitmesh.errors import ConfigError, NotFittedError, ProtocolError
from splitmesh.split.checkpoint import (
    check_same_data,
    epoch_tag,
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

RUN_ID = re.compile(r"^[0-9a-f]{32}$")
MAX_EPOCH = 10**6


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _epoch(value: Any, who: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_EPOCH:
        raise ProtocolError(f"{who}: an epoch is an integer from 0 to {MAX_EPOCH}, got {value!r}")
    return value


SNAPSHOT_TAGS = ("best",)  # the only in-memory snapshot a run keeps: its best epoch


class Party:
    """A protocol endpoint. Subclasses define ``on_<snake_case message type>(msg) -> reply``.

    ``state_dir``: where this party writes its checkpoints (its own disk; nothing but the
    tag travels). Without one, checkpoint requests are refused.
    """

    role = "party"

    def __init__(self, name: str, *, state_dir: str | Path | None = None) -> None:
        self.name = name
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.run_id: str | None = None  # set by Hello
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
        self.run_id = msg.run
        return Ack(info={"name": self.name, "role": self.role, "data": self.fingerprint()})

    def on_snapshot(self, msg: Snapshot) -> Ack:
        if msg.tag not in SNAPSHOT_TAGS:
            raise ProtocolError(f"{self.role} {self.name!r} keeps snapshots {SNAPSHOT_TAGS} only")
        self._snapshots[msg.tag] = snapshot_states(self.stateful())
        return Ack()

    def on_restore(self, msg: Restore) -> Ack:
        saved = self._snapshots.get(msg.tag)
        if saved is None:
            raise NotFittedError(f"{self.role} {self.name!r} has no snapshot {msg.tag[:40]!r}")
        restore_states(self.stateful(), saved)
        return Ack()

    # -- checkpoints on this party's own disk ------------------------------------------------
    def _run_dir(self) -> Path:
        if self.state_dir is None:
            raise ConfigError(
                f"{self.role} {self.name!r} has no state directory, so it cannot checkpoint",
                hint="give the node a state_dir",
            )
        if self.run_id is None or not RUN_ID.match(self.run_id):
            raise ProtocolError(f"{self.role} {self.name!r} has no valid run open")
        return self.state_dir / "runs" / self.run_id

    def on_checkpoint(self, msg: Checkpoint) -> Ack:
        who = f"{self.role} {self.name!r}"
        epoch = _epoch(msg.epoch, who)
        if len(msg.keep) > 8:
            raise ProtocolError(f"{who}: Checkpoint.keep lists at most 8 epochs")
        keep = [epoch_tag(_epoch(e, who)) for e in msg.keep]
        directory = self._run_dir()
        payload = pack_state(
            self.stateful(), self._snapshots, party=self.name, fingerprint=self.fingerprint()
        )
        write_checkpoint(directory / f"{epoch_tag(epoch)}.pt", payload)
        prune(directory, [epoch_tag(epoch), *keep])
        return Ack(info={"epoch": epoch})

    def forget_run(self) -> None:
        """Delete the checkpoints this party wrote for its run (and nothing else)."""
        if self.state_dir is None or self.run_id is None or not RUN_ID.match(self.run_id):
            return
        directory = self._run_dir()
        if directory.is_dir():
            prune(directory, [])
            if not any(directory.iterdir()):
                directory.rmdir()

    def on_load_checkpoint(self, msg: LoadCheckpoint) -> Ack:
        who = f"{self.role} {self.name!r}"
        epoch = _epoch(msg.epoch, who)
        saved = read_checkpoint(self._run_dir() / f"{epoch_tag(epoch)}.pt", who)
        check_same_data(who, saved["fingerprint"], self.fingerprint())
        if not self.stateful():
            raise NotFittedError(f"{who} must be set up before it loads a checkpoint")
        self._snapshots = unpack_state(self.stateful(), saved)
        return Ack(info={"epoch": epoch})
