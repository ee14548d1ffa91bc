"""A recommender's dimension domain (customers or products): its own entity table and a
bottom model over its features. It learns which of its rows each example uses, sealed by
the interactions owner, and nothing about the other side of the example.
"""

from __future__ import annotations

import numpy as np
import torch

from splitmesh.data.interactions import FeatureTable, prepare_features
from splitmesh.errors import ConfigError, NotFittedError, ProtocolError
from splitmesh.nn.neumf import RecsysSpec
from splitmesh.split.bottom import BottomParty
from splitmesh.split.checkpoint import digest
from splitmesh.split.common import OptimConfig, to_wire
from splitmesh.split.sealing import SealBox
from splitmesh.transport.messages import (
    Ack,
    AssignRows,
    EmbedSlots,
    Hello,
    SetupEntity,
    SlotEmbeddings,
)

SIDES = ("users", "items")


class EntityDomain(BottomParty):
    setup_message = "SetupEntity"

    def __init__(
        self, name: str, table: FeatureTable, side: str, *, state_dir: str | None = None
    ) -> None:
        super().__init__(name, state_dir=state_dir)
        if side not in SIDES:
            raise ConfigError(f"domain {name!r}: side must be one of {SIDES}. Got {side!r}.")
        self.table, self.side = table, side
        self.features = prepare_features(table)
        self._num = torch.from_numpy(self.features.numeric)
        self._cat = torch.from_numpy(self.features.categorical)
        self._rows: dict[str, np.ndarray] = {}  # partition -> rows, per example or per slot
        self.run = "run"

    def on_hello(self, msg: Hello) -> Ack:
        self.run, self.seal = msg.run, SealBox(self.name, msg.run)
        reply = super().on_hello(msg)
        return Ack(info={**reply.info, "seal_key": self.seal.public, "side": self.side})

    def fingerprint(self) -> dict:
        t = self.table
        return {
            "rows": len(t),
            "columns": t.columns,
            "sha256": digest(
                np.column_stack([np.nan_to_num(t.numeric, nan=-1e300), t.categorical])
            ),
        }

    def on_setup_entity(self, msg: SetupEntity) -> Ack:
        spec = RecsysSpec(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in msg.model.items()}
        )
        f = self.features
        self.bottom_ = spec.build_features(self.name, f.numeric.shape[1], f.cardinalities, msg.seed)
        self.optimizer_ = OptimConfig(**msg.optim).build(self.bottom_.parameters())
        self.wire_dtype = msg.wire_dtype
        return Ack(
            info={
                "side": self.side,
                "cut_width": self.bottom_.out_features,
                "rows": len(self.table),
                "missing": f.missing,  # counts per column, reported with the run
            }
        )

    def on_assign_rows(self, msg: AssignRows) -> Ack:
        expected = f"{self.run}/{msg.partition}"
        if not msg.context.startswith(expected):
            raise ProtocolError(
                f"domain {self.name!r}: a row plan for {msg.context!r} in run {self.run!r}"
            )
        rows = self.seal.open(msg.sender, msg.sender_key, msg.context, msg.sealed)
        self.check_positions(msg.partition, rows, len(self.table))
        self._rows[msg.partition] = rows
        return Ack(info={"rows": len(rows)})

    def _partition_rows(self, partition: str) -> np.ndarray:
        rows = self._rows.get(partition)
        if rows is None:
            raise NotFittedError(f"domain {self.name!r} holds no rows for {partition!r} yet")
        return rows

    def _inputs(self, partition: str, positions: np.ndarray) -> tuple[torch.Tensor, ...]:
        rows = self._partition_rows(partition)
        self.check_positions(partition, positions, len(rows))
        idx = torch.from_numpy(rows[positions])
        return self._num[idx], self._cat[idx]

    def on_embed_slots(self, msg: EmbedSlots) -> SlotEmbeddings:
        if self.bottom_ is None:
            raise NotFittedError(f"domain {self.name!r} got EmbedSlots before SetupEntity")
        idx = torch.from_numpy(self._partition_rows(msg.partition))
        self.bottom_.eval()
        with torch.no_grad():
            out = to_wire(self.bottom_(self._num[idx], self._cat[idx]), self.wire_dtype)
        return SlotEmbeddings(**{self.side: out})
