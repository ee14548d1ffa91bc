"""The centralized baseline: every column joined in one place, the same network and loop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.preprocessing import StandardScaler

from splitmesh.data.resampling import ResampleConfig, joined_resample
from splitmesh.data.splitting import stratified_split
from splitmesh.errors import NotFittedError
from splitmesh.nn.network import NetworkSpec, SplitNetwork
from splitmesh.split.checkpoint import (
    RunCheckpoints,
    epoch_tag,
    restore_states,
    snapshot_states,
)
from splitmesh.split.common import PARTITIONS, OptimConfig, binary_loss, eval_batches
from splitmesh.split.head import ScoreBook


class OneProcessLearner:
    """State handling of a learner whose whole network lives in this process (``net_``
    and ``optimizer_``): snapshots in memory, checkpoints through ``checkpoints``."""

    mode = "centralized"
    checkpoints: RunCheckpoints | None
    net_: torch.nn.Module
    optimizer_: torch.optim.Optimizer

    def __init__(self, run: str, checkpoint_dir: str | Path | None) -> None:
        self.checkpoints = (
            RunCheckpoints(checkpoint_dir, run, owner="the centralized learner")
            if checkpoint_dir
            else None
        )
        self._snapshots: dict = {}

    def flush(self) -> None:
        """Nothing is owed in one process."""

    def _own_state(self) -> dict:
        return {"net": self.net_, "optimizer": self.optimizer_}

    def snapshot(self, tag: str) -> None:
        self._snapshots[tag] = snapshot_states(self._own_state())

    def restore(self, tag: str) -> None:
        restore_states(self._own_state(), self._snapshots[tag])

    def save_checkpoint(self, trainer: dict[str, Any]) -> None:
        if self.checkpoints is not None:
            tag = epoch_tag(trainer["epoch"])
            meta = {"mode": self.mode}
            self.checkpoints.save(tag, self._own_state(), self._snapshots, trainer, meta)

    def load_checkpoint(self) -> dict[str, Any] | None:
        manifest = self.checkpoints.committed() if self.checkpoints else None
        if manifest is None:
            return None
        self._snapshots, trainer = self.checkpoints.load(manifest["tag"], self._own_state())
        return trainer


class CentralizedLearner(OneProcessLearner):
    """Same interface as the Coordinator: prepare, build, train_step, evaluate."""

    mode = "centralized"

    def __init__(
        self,
        tables: dict[str, np.ndarray],
        labels: np.ndarray,
        *,
        spec: NetworkSpec,
        optim: OptimConfig,
        seed: int,
        pos_weight: float | None = None,
        run: str = "run",
        checkpoint_dir: str | Path | None = None,
    ) -> None:
        super().__init__(run, checkpoint_dir)
        self.tables = {d: np.asarray(t, dtype=np.float64) for d, t in tables.items()}
        self.domains = list(tables)
        self.labels = np.asarray(labels).astype(np.int64)
        self.spec, self.optim, self.seed, self.pos_weight = spec, optim, seed, pos_weight
        self.x_: dict[str, dict[str, torch.Tensor]] | None = None

    def prepare(
        self, *, test: float, validation: float, resample: ResampleConfig, resume: bool = False
    ) -> dict:
        parts = stratified_split(self.labels, test=test, validation=validation, seed=self.seed)
        widths = [self.tables[d].shape[1] for d in self.domains]
        # per-column standard scaling: the same as each domain scaling its own columns
        joined = {
            p: np.hstack([self.tables[d][pos] for d in self.domains]) for p, pos in parts.items()
        }
        scaler = StandardScaler().fit(joined["train"])
        joined = {p: scaler.transform(x) for p, x in joined.items()}
        y = {p: self.labels[pos] for p, pos in parts.items()}
        joined["train"], y["train"], notes = joined_resample(
            joined["train"], y["train"], resample, self.seed
        )
        cuts = np.cumsum([0, *widths])
        self.x_ = {
            p: {
                d: torch.from_numpy(x[:, cuts[i] : cuts[i + 1]].astype(np.float32))
                for i, d in enumerate(self.domains)
            }
            for p, x in joined.items()
        }
        self.joined_, self.y_ = joined, y
        self.sizes_ = {p: len(y[p]) for p in PARTITIONS}
        return {
            "rows": {"original": {p: len(v) for p, v in parts.items()}, **self.sizes_},
            "resample_notes": list(notes),
        }

    def build(self) -> None:
        if self.x_ is None:
            raise NotFittedError("call prepare() before build()")
        in_features = {d: self.tables[d].shape[1] for d in self.domains}
        self.net_ = SplitNetwork(self.spec, in_features, self.seed)
        self.optimizer_ = self.optim.build(self.net_.parameters())
        self._y_train = torch.from_numpy(self.y_["train"].astype(np.float32))
        self.book = ScoreBook()

    @property
    def n_train(self) -> int:
        return self.sizes_["train"]

    def train_step(
        self, positions: np.ndarray, step: int, upcoming: np.ndarray | None = None
    ) -> float:
        idx = torch.from_numpy(positions)
        self.net_.train()
        logits = self.net_({d: x[idx] for d, x in self.x_["train"].items()})
        loss = binary_loss(logits, self._y_train[idx], self.pos_weight)
        self.optimizer_.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer_.step()
        return loss.item()

    def start_epoch(self, epoch: int) -> None:
        """Every epoch trains on the same rows; nothing to plan."""

    def evaluate(
        self, partitions: list[str], *, batch_size: int = 4096, select_on: str = "val"
    ) -> dict:
        self.net_.eval()
        for p in dict.fromkeys([select_on, *partitions]):
            self.book.start(p, self.sizes_[p])
            for pos in eval_batches(self.sizes_[p], batch_size):
                idx = torch.from_numpy(pos)
                with torch.no_grad():
                    self.book.record(p, pos, self.net_({d: x[idx] for d, x in self.x_[p].items()}))
        return self.book.evaluate(self.y_, select_on, list(partitions))
