"""The training loop shared by every mode: same batches, same steps, same evaluation."""

from __future__ import annotations

import contextlib
import dataclasses
import numbers
import sys
import time
from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from splitmesh.config import Training
from splitmesh.errors import PartyError, ProtocolError, RunInterrupted, TransportError
from splitmesh.metrics import LOWER_IS_BETTER
from splitmesh.split.common import BatchPlan


class Learner(Protocol):
    """What the loop drives: the Coordinator (split modes) or the CentralizedLearner."""

    mode: str
    default_metric: str  # what model selection watches unless told otherwise

    @property
    def n_train(self) -> int: ...

    def epoch_parts(self, batch_size: int, min_batch: int) -> list[int] | None:
        """Rows per part of every epoch (None: one part), for batches of ``batch_size``."""

    def start_epoch(self, epoch: int, part: int = 0) -> None:
        """Before the first step of each part of an epoch (e.g. a recommender draws fresh
        negatives for the part)."""

    def train_step(
        self, positions: np.ndarray, step: int, upcoming: np.ndarray | None = None
    ) -> float: ...

    def evaluate(self, partitions: list[str], *, select_on: str = "val") -> dict: ...

    def snapshot(self, tag: str) -> None: ...

    def restore(self, tag: str) -> None: ...

    def save_checkpoint(self, trainer: dict[str, Any]) -> None: ...

    def load_checkpoint(self) -> dict[str, Any] | None: ...

    # optional: ``pretraining() -> [(phase, epochs), ...]``, phases before the model's own
    # (NeuMF's GMF then MLP), and ``set_phase(phase)`` before each epoch ("neumf" the last)


@dataclasses.dataclass
class FitResult:
    losses: list[float]  # mean training loss per epoch
    epoch_seconds: list[float]  # training only, evaluation excluded
    steps: int
    best_epoch: int  # 1-based epoch whose weights the learner holds at the end
    validation: list[float]  # validation select_metric per epoch (empty without selection)
    pretrain_epochs: int = 0  # the first epochs, pre-training (never selected)


def announce(text: str) -> None:
    """A progress line: a step about to start, or where no bar can be drawn (CI, container
    logs, a pipe)."""
    print(text, file=sys.stderr, flush=True)


def _bars(progress: bool) -> bool:
    """Progress as bars on a terminal; elsewhere (``progress`` still asked) as lines."""
    return progress and sys.stderr.isatty()


@contextlib.contextmanager
def shown_steps(learner: object, progress: bool, label: str) -> Iterator[None]:
    """While preparing: a spinner naming each step the learner reports (its ``on_step``,
    e.g. the alignment's), with the time spent; one line per step off a terminal."""
    if not progress or not hasattr(learner, "on_step"):
        yield
        return
    if not _bars(progress):
        start = time.monotonic()
        learner.on_step = lambda what: announce(
            f"{label}: {what} ({time.monotonic() - start:.1f} s)"
        )
        try:
            yield
        finally:
            learner.on_step = None
        return
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(f"{label}: preparing")
        learner.on_step = lambda what: bar.update(task, description=f"{label}: {what}")
        try:
            yield
        finally:
            learner.on_step = None


def fit(
    learner: Learner,
    cfg: Training,
    *,
    progress: bool = True,
    label: str = "",
    resume: bool = False,
) -> FitResult:
    """Train for ``cfg.epochs`` epochs over the same batch plan in every mode, keeping the
    epoch with the best validation ``cfg.select_metric`` (the task's default when unset).

    The learner checkpoints (each party on its own disk, when it has a checkpoint
    directory) after the first epoch, then after any epoch that ends ``cfg.checkpoint_interval``
    seconds or more after the last checkpoint, and after the last epoch: a checkpoint stalls
    every party (tens of ms over gRPC, as long as a small epoch), so short epochs are not
    each paid for. ``resume`` continues from the last checkpoint, which gives the same result
    as a run that was never interrupted.

    A learner with pre-training phases (``pretraining()``) runs them first, for their own
    epochs on top of ``cfg.epochs``; validation is recorded for every epoch, but only the
    last phase's epochs are kept or count toward early stopping.
    """
    pre = learner.pretraining() if hasattr(learner, "pretraining") else []
    first = sum(n for _, n in pre)
    epochs = first + cfg.epochs
    parts = learner.epoch_parts(cfg.batch_size, cfg.min_batch)
    plan = BatchPlan(
        learner.n_train, cfg.batch_size, cfg.seed, min_batch=cfg.min_batch, parts=parts
    )
    metric = cfg.select_metric or learner.default_metric
    st = {"epoch": 0, "step": 0, "losses": [], "seconds": [], "history": []}
    st.update(best=-float("inf"), best_epoch=epochs, stopped=False)
    if resume:
        st = learner.load_checkpoint() or st
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]} loss {task.fields[loss]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    lines = progress and not _bars(progress)
    with Progress(*columns, disable=not _bars(progress), transient=True) as bar:
        task = bar.add_task(
            label or learner.mode,
            total=epochs * len(plan),
            completed=st["epoch"] * len(plan),
            epoch=st["epoch"],
            epochs=epochs,
            loss="-",
        )
        last = None  # when this process last checkpointed
        try:
            while st["epoch"] < epochs and not st["stopped"]:
                if pre:
                    learner.set_phase(_phase(pre, st["epoch"]))
                _epoch(learner, cfg, metric, plan, st, lambda: bar.advance(task), first)
                bar.update(task, epoch=st["epoch"], loss=f"{st['losses'][-1]:.4f}")
                if lines:
                    announce(_epochannounce(label or learner.mode, epochs, metric, st))
                done = st["epoch"] >= epochs or st["stopped"]
                if done or last is None or time.monotonic() - last >= cfg.checkpoint_interval:
                    learner.save_checkpoint(st)
                    last = time.monotonic()
        except (TransportError, PartyError) as exc:
            raise RunInterrupted(str(exc), _committed(learner)) from exc
    if pre:  # also when a resumed run had nothing left to train
        learner.set_phase(_phase(pre, epochs))
    if cfg.patience is not None:
        learner.restore("best")
    return FitResult(
        st["losses"], st["seconds"], st["step"], st["best_epoch"], st["history"], first
    )


def _phase(pre: list[tuple[str, int]], epoch: int) -> str:
    """The phase of 0-based ``epoch``: a pre-training phase's name, or "neumf" after."""
    for name, n in pre:
        if epoch < n:
            return name
        epoch -= n
    return "neumf"


def _epochannounce(label: str, epochs: int, metric: str, st: dict) -> str:
    """``label: epoch 3/20 loss 0.2412 val log_loss 0.2201 (best) 0.05 s``."""
    text = f"{label}: epoch {st['epoch']}/{epochs} loss {st['losses'][-1]:.4f}"
    if st["history"]:
        best = " (best)" if st["best_epoch"] == st["epoch"] else ""
        text += f" val {metric} {st['history'][-1]:.4f}{best}"
    text += f" {st['seconds'][-1]:.2f} s"
    return text + (" - stopping early" if st["stopped"] else "")


def _committed(learner: Learner) -> dict[str, Any] | None:
    """The checkpoint a resumed run would start from (None: nothing to resume)."""
    store = getattr(learner, "checkpoints", None)
    return store.committed() if store is not None else None


def _epoch(
    learner: Learner, cfg: Training, metric: str, plan: BatchPlan, st: dict, advance, first: int
) -> None:
    """One epoch, then validation and the keep-or-stop decision (none in the ``first``
    epochs, pre-training); updates ``st`` in place."""
    t0, total, n = time.perf_counter(), 0.0, 0
    batches = plan.epoch(st["epoch"])
    part, following = None, next(batches, None)
    while following is not None:
        (k, positions), following = following, next(batches, None)
        if k != part:  # the learner holds one part of the epoch at a time
            learner.start_epoch(st["epoch"], k)
            part = k
        upcoming = following[1] if following is not None and following[0] == k else None
        total += learner.train_step(positions, st["step"], upcoming) * len(positions)
        n += len(positions)
        st["step"] += 1
        advance()
    st["seconds"].append(time.perf_counter() - t0)
    st["losses"].append(total / max(n, 1))
    st["epoch"] += 1
    if cfg.patience is None:
        return
    value = learner.evaluate(["val"])["val"].get(metric)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ProtocolError(
            f"the validation metrics hold {str(value)[:40]} for {metric!r}, not a number to "
            "select the best epoch on",
            hint="set training.select_metric to a metric the task reports",
        )
    st["history"].append(value)
    if st["epoch"] <= first:
        return
    gain = -st["history"][-1] if metric in LOWER_IS_BETTER else st["history"][-1]
    if gain > st["best"]:
        st["best"], st["best_epoch"] = gain, st["epoch"]
        learner.snapshot("best")
    elif st["epoch"] - st["best_epoch"] >= cfg.patience:
        st["stopped"] = True
