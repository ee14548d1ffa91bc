"""A recommender's dimension domain (customers or products): its own entity table and a
bottom model over its features. It learns which of its rows each example uses, sealed by
the interactions owner, and nothing about the other side of the example.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from splitmesh.config import Model, Optim, from_message
from splitmesh.data.interactions import FeatureTable, prepare_features
from splitmesh.errors import ConfigError, NotFittedError, ProtocolError
from splitmesh.nn import neumf
from splitmesh.split.bottom import BottomParty
from splitmesh.split.checkpoint import digest
from splitmesh.split.common import take, to_wire
from splitmesh.split.party import handles
from splitmesh.split.sealing import SealBox
from splitmesh.transport.messages import (
    Ack,
    AssignRows,
    EmbedSlots,
    Hello,
    SaveModel,
    SetupEntity,
    SlotEmbeddings,
)

SIDES = ("users", "items")


class EntityDomain(BottomParty):
    setup_message = "SetupEntity"

    def __init__(
        self,
        name: str,
        table: FeatureTable,
        side: str,
        *,
        state_dir: str | None = None,
        model_dir: str | Path | None = None,
        source: str = "(in memory)",
    ) -> None:
        super().__init__(name, state_dir=state_dir)
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self.source = source
        if side not in SIDES:
            raise ConfigError(f"domain {name!r}: side must be one of {SIDES}. Got {side!r}.")
        self.table, self.side = table, side
        self.features = prepare_features(table)
        self._num = torch.from_numpy(self.features.numeric)
        self._cat = torch.from_numpy(self.features.categorical)
        self._rows: dict[str, np.ndarray] = {}  # partition -> rows, per example or per slot
        self.run = "run"

    @handles(Hello)
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

    @handles(SetupEntity)
    def on_setup_entity(self, msg: SetupEntity) -> Ack:
        who = f"domain {self.name!r}"
        model, optim = from_message(Model, msg.model, who), from_message(Optim, msg.optim, who)
        f = self.features
        self.bottom_ = neumf.build_features(
            model, self.name, f.numeric.shape[1], f.cardinalities, msg.seed
        )
        self.optimizer_ = optim.build(self.bottom_.parameters())
        self.wire_dtype, self.noise_seed = msg.wire_dtype, msg.seed
        return Ack(
            info={
                "side": self.side,
                "cut_width": self.bottom_.out_features,
                "rows": len(self.table),
                "missing": f.missing,  # counts per column, reported with the run
            }
        )

    @handles(SaveModel)
    def on_save_model(self, msg: SaveModel) -> Ack:
        """Publish the trained feature bottom as this domain's data product."""
        from splitmesh.data.sources import DomainTable
        from splitmesh.mesh.products import publish
        from splitmesh.split.saved import save_module, wire_meta

        if self.bottom_ is None or self.model_dir is None:
            raise NotFittedError(f"domain {self.name!r} has no trained model or no model folder")
        t, f = self.table, self.features
        key = self.side[:-1]  # the entity index the rows describe: user or item
        table = DomainTable(
            self.name,
            self.source,
            key,
            np.arange(len(t)),
            list(t.numeric_names),
            t.numeric,
            list(t.categorical_names),
            t.categorical.astype(object),
        )
        save_module(self.model_dir / "bottom.pt", self.bottom_)
        prep = {"numeric_names": list(f.numeric_names), "cardinalities": list(f.cardinalities)}
        product = publish(
            self.model_dir,
            table=table,
            bottom=self.bottom_,
            input_width=f.numeric.shape[1],
            n_categorical=len(f.cardinalities),
            cut_width=self.bottom_.out_features,
            prep=prep,
            meta={
                **wire_meta(msg.meta, f"domain {self.name!r}"),
                "run": self.run_id,
                "data": self.fingerprint(),
            },
        )
        return Ack(info={"folder": str(self.model_dir), "product": product})

    @handles(AssignRows)
    def on_assign_rows(self, msg: AssignRows) -> Ack:
        expected = f"{self.run}/{msg.partition}"
        if not msg.context.startswith(expected):
            raise ProtocolError(
                f"domain {self.name!r}: a row plan for {msg.context!r} in run {self.run!r}"
            )
        rows = self.seal.open(msg.sender, msg.sender_key, msg.context, msg.sealed)
        self._rows[msg.partition] = self.own_rows(msg.partition, rows)
        return Ack(info={"rows": len(rows)})

    def own_rows(self, partition: str, rows: np.ndarray) -> np.ndarray:
        """The rows of its own table a sealed plan names (here: the same indices)."""
        self.check_positions(partition, rows, len(self.table))
        return rows

    def _partition_rows(self, partition: str) -> np.ndarray:
        rows = self._rows.get(partition)
        if rows is None:
            raise NotFittedError(f"domain {self.name!r} holds no rows for {partition!r} yet")
        return rows

    def _inputs(self, partition: str, positions: np.ndarray) -> tuple[torch.Tensor, ...]:
        rows = self._partition_rows(partition)
        self.check_positions(partition, positions, len(rows))
        rows = rows[positions]
        return take(self._num, rows), take(self._cat, rows)

    @handles(EmbedSlots)
    def on_embed_slots(self, msg: EmbedSlots) -> SlotEmbeddings:
        if self.bottom_ is None:
            raise NotFittedError(f"domain {self.name!r} got EmbedSlots before SetupEntity")
        idx = torch.from_numpy(self._partition_rows(msg.partition))
        self.bottom_.eval()
        with torch.no_grad():
            out = self.release(self.cut(self._num[idx], self._cat[idx]), msg.partition, "slots")
            out = to_wire(out, self.wire_dtype)
        return SlotEmbeddings(**{self.side: out})
