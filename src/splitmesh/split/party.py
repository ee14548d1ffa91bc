"""What every party shares: explicit handlers for the messages it serves (``@handles``),
snapshots of its state under a tag, and checkpoints of that state on its own disk.

A party names its own files: checkpoints go to ``state_dir/runs/<run id>/epoch-NNNN.pt``,
the run id being the one its node validated at Hello, the epoch an integer from the wire.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import torch

from splitmesh.errors import ConfigError, NotFittedError, ProtocolError
from splitmesh.nn.optim import Optimizer
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


def handles(*types: type[Message]) -> Callable:
    """Register a party method as the handler of these message types (split/protocol.py
    lists who serves each message; a test checks every message has a handler)."""

    def mark(method: Callable) -> Callable:
        method.handles = types
        return method

    return mark


def _register(cls: type) -> dict[type[Message], str]:
    """A party class's handlers: its parents' plus its own (by method name, so an
    override of a registered method handles the same messages)."""
    table: dict[type[Message], str] = {}
    for base in reversed(cls.__mro__):  # mixins' handlers too (e.g. AlignsKeys)
        for name, method in vars(base).items():
            for kind in getattr(method, "handles", ()):
                table[kind] = name
    return table


def _epoch(value: Any, who: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_EPOCH:
        raise ProtocolError(f"{who}: an epoch is an integer from 0 to {MAX_EPOCH}, got {value!r}")
    return value


SNAPSHOT_TAGS = ("best",)  # the only in-memory snapshot a run keeps: its best epoch


class Party:
    """A protocol endpoint. Subclasses register ``@handles(MessageType)`` methods, each
    taking the message and returning the reply.

    ``state_dir``: where this party writes its checkpoints (its own disk; nothing but the
    tag travels). Without one, checkpoint requests are refused.
    """

    role = "party"
    handlers: ClassVar[dict[type[Message], str]] = {}  # message type -> method name

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        cls.handlers = _register(cls)

    def __init__(self, name: str, *, state_dir: str | Path | None = None) -> None:
        self.name = name
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.run_id: str | None = None  # set by Hello
        self._snapshots: dict[str, dict] = {}

    def handle(self, msg: Message) -> Message:
        name = self.handlers.get(type(msg))
        if name is None:
            raise ProtocolError(
                f"{self.role} {self.name!r} does not accept {type(msg).__name__} messages"
            )
        return getattr(self, name)(msg)

    def stateful(self) -> dict[str, torch.nn.Module | Optimizer]:
        """The models and optimizers a snapshot holds; none until set up."""
        return {}

    def fingerprint(self) -> dict[str, Any]:
        """What identifies this party's data (rows, columns, content hash); no values."""
        return {}

    @handles(Hello)
    def on_hello(self, msg: Hello) -> Ack:
        self.run_id = msg.run
        return Ack(info={"name": self.name, "role": self.role, "data": self.fingerprint()})

    @handles(Snapshot)
    def on_snapshot(self, msg: Snapshot) -> Ack:
        if msg.tag not in SNAPSHOT_TAGS:
            raise ProtocolError(f"{self.role} {self.name!r} keeps snapshots {SNAPSHOT_TAGS} only")
        self._snapshots[msg.tag] = snapshot_states(self.stateful())
        return Ack()

    @handles(Restore)
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

    @handles(Checkpoint)
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

    @handles(LoadCheckpoint)
    def on_load_checkpoint(self, msg: LoadCheckpoint) -> Ack:
        who = f"{self.role} {self.name!r}"
        epoch = _epoch(msg.epoch, who)
        saved = read_checkpoint(self._run_dir() / f"{epoch_tag(epoch)}.pt", who)
        check_same_data(who, saved["fingerprint"], self.fingerprint())
        if not self.stateful():
            raise NotFittedError(f"{who} must be set up before it loads a checkpoint")
        self._snapshots = unpack_state(self.stateful(), saved)
        return Ack(info={"epoch": epoch})


Party.handlers = _register(Party)
