"""The centralized baseline: every column joined in one place, the same network and loop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from splitmesh.config import Model, Optim, Resample
from splitmesh.data.features import FeaturePrep
from splitmesh.data.resampling import joined_resample
from splitmesh.errors import ConfigError, NotFittedError
from splitmesh.metrics import DEFAULT_SELECT
from splitmesh.nn.network import SplitNetwork
from splitmesh.nn.optim import Optimizer
from splitmesh.split.checkpoint import (
    RunCheckpoints,
    epoch_tag,
    restore_states,
    snapshot_states,
)
from splitmesh.split.common import PARTITIONS, eval_batches, set_mode
from splitmesh.split.head import ScoreBook
from splitmesh.split.tasks import Task


class OneProcessLearner:
    """State handling of a learner whose whole network lives in this process (``net_``
    and ``optimizer_``): snapshots in memory, checkpoints through ``checkpoints``."""

    mode = "centralized"
    checkpoints: RunCheckpoints | None
    net_: torch.nn.Module
    optimizer_: Optimizer

    def __init__(self, run: str, checkpoint_dir: str | Path | None) -> None:
        self.checkpoints = (
            RunCheckpoints(checkpoint_dir, run, owner="the centralized learner")
            if checkpoint_dir
            else None
        )
        self._snapshots: dict = {}

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
    """Same interface as the Coordinator: prepare, build, train_step, evaluate.

    ``tables``: each domain's numeric columns (NaN where missing); ``categorical``: each
    domain's categorical columns, raw. Each domain's preparation is fitted on its own
    columns exactly as its ColumnsParty does, so both modes train the same network.
    """

    mode = "centralized"

    def __init__(
        self,
        tables: dict[str, np.ndarray],
        labels: np.ndarray,
        *,
        spec: Model,
        optim: Optim,
        seed: int,
        pos_weight: float | None = None,
        run: str = "run",
        checkpoint_dir: str | Path | None = None,
        categorical: dict[str, np.ndarray] | None = None,
        task: Task | None = None,
    ) -> None:
        super().__init__(run, checkpoint_dir)
        self.tables = {d: np.asarray(t, dtype=np.float64) for d, t in tables.items()}
        self.domains = list(tables)
        categorical = categorical or {}
        self.categorical = {
            d: categorical.get(d, np.empty((len(t), 0), dtype=object))
            for d, t in self.tables.items()
        }
        self.task = task or Task()
        self.labels = np.asarray(labels)
        self.spec, self.optim, self.seed, self.pos_weight = spec, optim, seed, pos_weight
        self.x_: dict[str, dict[str, tuple[torch.Tensor, torch.Tensor]]] | None = None

    @property
    def default_metric(self) -> str:
        return DEFAULT_SELECT[self.task.name]

    def prepare(
        self,
        *,
        test: float,
        validation: float,
        resample: Resample | None = None,
        resume: bool = False,
    ) -> dict:
        parts = self.task.split(self.labels, test=test, validation=validation, seed=self.seed)
        train = parts["train"]
        self.preps_ = {
            d: FeaturePrep.fit(self.tables[d][train], self.categorical[d][train])
            for d in self.domains
        }
        numeric, codes = {}, {}
        for p, pos in parts.items():
            prepared = {
                d: self.preps_[d].transform(self.tables[d][pos], self.categorical[d][pos])
                for d in self.domains
            }
            numeric[p] = np.hstack([prepared[d][0] for d in self.domains])
            codes[p] = {d: prepared[d][1] for d in self.domains}
        y = {p: self.labels[pos] for p, pos in parts.items()}
        notes: tuple[str, ...] = ()
        if self.task.name == "binary":
            n_train = len(y["train"])
            numeric["train"], y["train"], notes = joined_resample(
                numeric["train"], y["train"].astype(np.int64), resample or Resample(), self.seed
            )
            if len(y["train"]) != n_train and any(c.shape[1] for c in codes["train"].values()):
                raise ConfigError(
                    "resampling interpolates numbers; categorical columns cannot take part",
                    hint="turn resampling off for meshes with categorical columns",
                )
        widths = [self.preps_[d].numeric.width for d in self.domains]
        cuts = np.cumsum([0, *widths])
        self.x_ = {}
        for p, x in numeric.items():
            self.x_[p] = {}
            for i, d in enumerate(self.domains):
                c = codes[p][d]
                if len(c) != len(x):  # resampled numeric-only rows: no codes to carry
                    c = np.zeros((len(x), 0), np.int64)
                num = torch.from_numpy(x[:, cuts[i] : cuts[i + 1]].astype(np.float32))
                self.x_[p][d] = (num, torch.from_numpy(c))
        self.joined_, self.y_ = numeric, y
        self.sizes_ = {p: len(y[p]) for p in PARTITIONS}
        return {
            "rows": {"original": {p: len(v) for p, v in parts.items()}, **self.sizes_},
            "resample_notes": list(notes),
        }

    def build(self) -> None:
        if self.x_ is None:
            raise NotFittedError("call prepare() before build()")
        in_features = {
            d: (self.preps_[d].numeric.width, self.preps_[d].categorical.cardinalities)
            for d in self.domains
        }
        self.task_ = self.task.fit(self.y_["train"])
        out = self.task_.out_features
        self.net_ = SplitNetwork(self.spec, in_features, self.seed, out_features=out)
        self.optimizer_ = self.optim.build(self.net_.parameters())
        self._y_train = self.task_.target(self.y_["train"])
        self.book = ScoreBook(self.task_)

    @property
    def n_train(self) -> int:
        return self.sizes_["train"]

    def _inputs(self, partition: str, idx: torch.Tensor) -> dict:
        return {
            d: (x.index_select(0, idx), c.index_select(0, idx))
            for d, (x, c) in self.x_[partition].items()
        }

    def train_step(
        self, positions: np.ndarray, step: int, upcoming: np.ndarray | None = None
    ) -> float:
        idx = torch.from_numpy(positions)
        set_mode(self.net_, True)
        logits = self.net_(self._inputs("train", idx))
        loss = self.task_.loss(logits, self._y_train.index_select(0, idx), self.pos_weight)
        self.optimizer_.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer_.step()
        return loss.item()

    def epoch_parts(self, batch_size: int, min_batch: int) -> list[int] | None:
        return None  # every epoch trains on the same rows, held all along

    def start_epoch(self, epoch: int, part: int = 0) -> None:
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
                    self.book.record(p, pos, self.net_(self._inputs(p, idx)))
        return self.book.evaluate(self.y_, select_on, list(partitions))
