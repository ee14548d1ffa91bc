"""A domain party: its own columns, its own scaler, bottom model and optimizer.

It hands out embeddings of its own rows and partial distances between them, never a
column. Rows are addressed by aligned positions within a partition.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.preprocessing import StandardScaler

from splitmesh.data.resampling import apply_plan, squared_distances
from splitmesh.errors import DataError, NotFittedError, ProtocolError
from splitmesh.nn.network import NetworkSpec
from splitmesh.split.bottom import BottomParty
from splitmesh.split.checkpoint import digest
from splitmesh.split.common import PARTITIONS, OptimConfig
from splitmesh.transport.messages import (
    Ack,
    Augment,
    Distances,
    PartialDistances,
    SetupDomain,
)


class DomainParty(BottomParty):
    """One domain's node logic. ``table`` holds only this domain's columns, aligned rows."""

    setup_message = "SetupDomain"

    def __init__(
        self, name: str, table: np.ndarray, columns: list[str], *, state_dir: str | None = None
    ) -> None:
        super().__init__(name, state_dir=state_dir)
        table = np.asarray(table, dtype=np.float64)
        if table.ndim != 2 or table.shape[1] != len(columns):
            raise DataError(
                f"domain {name!r}: table of shape {table.shape} does not match "
                f"{len(columns)} columns"
            )
        self.table, self.columns = table, list(columns)
        self._x64: dict[str, np.ndarray] = {}  # scaled rows per partition (for distances)
        self._x: dict[str, torch.Tensor] = {}  # float32 copies fed to the model

    # -- setup ---------------------------------------------------------------------------
    def on_setup_domain(self, msg: SetupDomain) -> Ack:
        parts = {p: np.asarray(getattr(msg, p), dtype=np.int64) for p in PARTITIONS}
        for p, pos in parts.items():
            self.check_positions(p, pos, len(self.table))
        # fitted on training rows only: validation and test rows must not leak into scaling
        self.scaler_ = StandardScaler().fit(self.table[parts["train"]])
        for p, pos in parts.items():
            self._set_partition(p, self.scaler_.transform(self.table[pos]))
        spec = NetworkSpec(
            bottom=tuple(msg.model["hidden"]),
            activation=msg.model.get("activation", "relu"),
            dropout=msg.model.get("dropout", 0.0),
        )
        self.bottom_ = spec.build_bottom(self.name, len(self.columns), msg.seed)
        self.optimizer_ = OptimConfig(**msg.optim).build(self.bottom_.parameters())
        self.wire_dtype = msg.wire_dtype
        return Ack(
            info={
                "n_features": len(self.columns),
                "cut_width": spec.bottom[-1],
                "rows": {p: len(v) for p, v in parts.items()},
            }
        )

    def _set_partition(self, partition: str, x64: np.ndarray) -> None:
        self._x64[partition] = x64
        self._x[partition] = torch.from_numpy(x64.astype(np.float32))

    def _rows(self, partition: str) -> np.ndarray:
        if partition not in self._x64:
            raise NotFittedError(
                f"domain {self.name!r} has no partition {partition!r}; set up first"
            )
        return self._x64[partition]

    def fingerprint(self) -> dict:
        return {"rows": len(self.table), "columns": self.columns, "sha256": digest(self.table)}

    # -- resampling across the boundary ----------------------------------------------------
    def on_partial_distances(self, msg: PartialDistances) -> Distances:
        x = self._rows(msg.partition)
        self.check_positions(msg.partition, msg.positions, len(x))
        return Distances(values=squared_distances(x[msg.positions]))

    def on_augment(self, msg: Augment) -> Ack:
        x = self._rows(msg.partition)
        self.check_positions(msg.partition, msg.base, len(x))
        new = apply_plan(x, msg.base, msg.rows, msg.neighbours, msg.gaps, msg.order)
        self._set_partition(msg.partition, new)
        return Ack(info={"rows": len(new)})

    def _inputs(self, partition: str, positions: np.ndarray) -> tuple[torch.Tensor, ...]:
        x = self._x.get(partition)
        if x is None:
            raise ProtocolError(f"domain {self.name!r} has no partition {partition!r}")
        self.check_positions(partition, positions, len(x))
        return (x[torch.from_numpy(positions)],)
