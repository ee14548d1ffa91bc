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
from splitmesh.split.checkpoint import digest
from splitmesh.split.common import PARTITIONS, OptimConfig, flat_state, from_wire, to_wire
from splitmesh.split.party import Party
from splitmesh.transport.messages import (
    Ack,
    Augment,
    Backward,
    Distances,
    Embedding,
    Forward,
    GetState,
    PartialDistances,
    SetupDomain,
    State,
)


class DomainParty(Party):
    """One domain's node logic. ``table`` holds only this domain's columns, aligned rows."""

    role = "domain"

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
        self.bottom_: torch.nn.Module | None = None
        self._x64: dict[str, np.ndarray] = {}  # scaled rows per partition (for distances)
        self._x: dict[str, torch.Tensor] = {}  # float32 copies fed to the model
        # training forwards awaiting their gradient: step -> (inputs, output, update count).
        # One at a time normally; two when the coordinator pipelines.
        self._pending: dict[int, tuple[torch.Tensor, torch.Tensor, int]] = {}
        self._updates = 0

    # -- setup ---------------------------------------------------------------------------
    def on_setup_domain(self, msg: SetupDomain) -> Ack:
        parts = {p: np.asarray(getattr(msg, p), dtype=np.int64) for p in PARTITIONS}
        for p, pos in parts.items():
            self._check_positions(p, pos, len(self.table))
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

    def _check_positions(self, partition: str, positions: np.ndarray, n: int) -> None:
        if positions.ndim != 1 or (
            len(positions) and (positions.min() < 0 or positions.max() >= n)
        ):
            raise ProtocolError(
                f"domain {self.name!r}: positions for {partition!r} fall outside its {n} rows"
            )

    def _rows(self, partition: str) -> np.ndarray:
        if partition not in self._x64:
            raise NotFittedError(
                f"domain {self.name!r} has no partition {partition!r}; set up first"
            )
        return self._x64[partition]

    def fingerprint(self) -> dict:
        return {"rows": len(self.table), "columns": self.columns, "sha256": digest(self.table)}

    def stateful(self) -> dict:
        if self.bottom_ is None:
            return {}
        return {"bottom": self.bottom_, "optimizer": self.optimizer_}

    # -- resampling across the boundary ----------------------------------------------------
    def on_partial_distances(self, msg: PartialDistances) -> Distances:
        x = self._rows(msg.partition)
        self._check_positions(msg.partition, msg.positions, len(x))
        return Distances(values=squared_distances(x[msg.positions]))

    def on_augment(self, msg: Augment) -> Ack:
        x = self._rows(msg.partition)
        self._check_positions(msg.partition, msg.base, len(x))
        new = apply_plan(x, msg.base, msg.rows, msg.neighbours, msg.gaps, msg.order)
        self._set_partition(msg.partition, new)
        return Ack(info={"rows": len(new)})

    # -- training --------------------------------------------------------------------------
    def on_forward(self, msg: Forward) -> Embedding:
        if self.bottom_ is None:
            raise NotFittedError(f"domain {self.name!r} got Forward before SetupDomain")
        if msg.grad is not None:
            self._apply_grad(msg.grad_step, msg.grad)
        x = self._x.get(msg.partition)
        if x is None:
            raise ProtocolError(f"domain {self.name!r} has no partition {msg.partition!r}")
        self._check_positions(msg.partition, msg.positions, len(x))
        batch = x[torch.from_numpy(msg.positions)]
        if msg.train:
            self.bottom_.train()
            out = self.bottom_(batch)
            self._pending[msg.step] = (batch, out, self._updates)
        else:
            self.bottom_.eval()
            with torch.no_grad():
                out = self.bottom_(batch)
        return Embedding(step=msg.step, values=to_wire(out, self.wire_dtype))

    def on_backward(self, msg: Backward) -> Ack:
        self._apply_grad(msg.step, msg.grad)
        return Ack()

    def _apply_grad(self, step: int, wire_grad: np.ndarray) -> None:
        entry = self._pending.pop(step, None)
        if entry is None:
            pending = ", ".join(f"step {s}" for s in sorted(self._pending)) or "none"
            raise ProtocolError(
                f"domain {self.name!r} got a gradient for step {step}, but has no training "
                f"forward of that step awaiting one (pending: {pending})"
            )
        # forwards older than this step will never get their gradient (a restore dropped them)
        self._pending = {s: e for s, e in self._pending.items() if s > step}
        batch, out, updates = entry
        grad = from_wire(wire_grad)
        if tuple(grad.shape) != tuple(out.shape):
            raise ProtocolError(
                f"domain {self.name!r}: gradient shape {tuple(grad.shape)} does not match its "
                f"embedding {tuple(out.shape)}"
            )
        if updates != self._updates:
            # Pipelined: the weights moved since this forward. Its graph saved the old ones,
            # so recompute it with the current weights (one step of staleness, by design).
            out = self.bottom_(batch)
        self.optimizer_.zero_grad(set_to_none=True)
        out.backward(grad)
        self.optimizer_.step()
        self._updates += 1

    def on_get_state(self, msg: GetState) -> State:
        if self.bottom_ is None:
            raise NotFittedError(f"domain {self.name!r} has no model yet")
        names, flat, shapes = flat_state(self.bottom_)
        return State(names=names, values=flat, shapes=shapes)
