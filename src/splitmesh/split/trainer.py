"""The training loop shared by every mode: same batches, same steps, same evaluation."""

from __future__ import annotations

import dataclasses
import time
from typing import Protocol

import numpy as np
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from splitmesh.errors import ConfigError
from splitmesh.metrics import LOWER_IS_BETTER
from splitmesh.split.common import BatchPlan


class Learner(Protocol):
    """What the loop drives: the Coordinator (split modes) or the CentralizedLearner."""

    mode: str

    @property
    def n_train(self) -> int: ...

    def train_step(self, positions: np.ndarray, step: int) -> float: ...

    def evaluate(self, partitions: list[str], *, select_on: str = "val") -> dict: ...

    def flush(self) -> None: ...

    def snapshot(self, tag: str) -> None: ...

    def restore(self, tag: str) -> None: ...


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    epochs: int = 100  # an upper bound when patience is set
    batch_size: int = 256
    seed: int = 0
    shuffle: bool = True  # one party plans the shuffle; every party follows its positions
    # Model selection on validation rows only: keep the epoch with the best validation
    # ``select_metric`` and stop after ``patience`` epochs without a gain (None: no selection).
    patience: int | None = 10
    select_metric: str = "average_precision"

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"The 'epochs' parameter must be >= 1. Got {self.epochs} instead.")
        if self.batch_size < 1:
            raise ConfigError(
                f"The 'batch_size' parameter must be >= 1. Got {self.batch_size} instead."
            )
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"The 'patience' parameter must be >= 1. Got {self.patience}.")


@dataclasses.dataclass
class FitResult:
    losses: list[float]  # mean training loss per epoch
    epoch_seconds: list[float]  # training only, evaluation excluded
    steps: int
    best_epoch: int  # 1-based epoch whose weights the learner holds at the end
    validation: list[float]  # validation select_metric per epoch (empty without selection)


def fit(learner: Learner, cfg: TrainConfig, *, progress: bool = True, label: str = "") -> FitResult:
    """Train for ``cfg.epochs`` epochs over the same batch plan in every mode."""
    plan = BatchPlan(learner.n_train, cfg.batch_size, cfg.seed, shuffle=cfg.shuffle)
    losses, seconds, step = [], [], 0
    history: list[float] = []
    best, best_epoch = -float("inf"), cfg.epochs
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]} loss {task.fields[loss]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, disable=not progress, transient=True) as bar:
        task = bar.add_task(
            label or learner.mode,
            total=cfg.epochs * len(plan),
            epoch=0,
            epochs=cfg.epochs,
            loss="-",
        )
        for epoch in range(cfg.epochs):
            t0, total, n = time.perf_counter(), 0.0, 0
            for positions in plan.epoch(epoch):
                total += learner.train_step(positions, step) * len(positions)
                n += len(positions)
                step += 1
                bar.advance(task)
            learner.flush()
            seconds.append(time.perf_counter() - t0)
            losses.append(total / max(n, 1))
            bar.update(task, epoch=epoch + 1, loss=f"{losses[-1]:.4f}")
            if cfg.patience is None:
                continue
            history.append(learner.evaluate(["val"])["val"][cfg.select_metric])
            gain = -history[-1] if cfg.select_metric in LOWER_IS_BETTER else history[-1]
            if gain > best:
                best, best_epoch = gain, epoch + 1
                learner.snapshot("best")
            elif epoch + 1 - best_epoch >= cfg.patience:
                break
    if cfg.patience is not None:
        learner.restore("best")
    return FitResult(losses, seconds, step, best_epoch, history)
