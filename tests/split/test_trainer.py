"""The training loop's checkpoint cadence: the first and last epochs always, in between
no more often than ``training.checkpoint_interval`` seconds of training."""

from __future__ import annotations

import time

import numpy as np
import pytest

from splitmesh.config import Training
from splitmesh.split import trainer


class Clocked:
    """A learner whose every step takes ``step_s`` seconds of a fake clock; it records
    the epochs it was asked to checkpoint and the validation scores it gives."""

    mode, default_metric = "label-sharing", "roc_auc"

    def __init__(self, clock: list[float], step_s: float, scores: list[float] | None = None):
        self.clock, self.step_s, self.scores = clock, step_s, scores
        self.saved: list[int] = []
        self.epoch = 0

    @property
    def n_train(self) -> int:
        return 40

    def epoch_parts(self, batch_size: int, min_batch: int) -> list[int] | None:
        return None

    def start_epoch(self, epoch: int, part: int = 0) -> None:
        self.epoch = epoch

    def train_step(self, positions: np.ndarray, step: int, upcoming=None) -> float:
        self.clock[0] += self.step_s
        return 0.5

    def evaluate(self, partitions, *, select_on="val") -> dict:
        score = self.scores[self.epoch] if self.scores else 0.5 + self.epoch / 100
        return {"val": {"roc_auc": score}}

    def snapshot(self, tag: str) -> None:
        pass

    def restore(self, tag: str) -> None:
        pass

    def save_checkpoint(self, st: dict) -> None:
        self.saved.append(st["epoch"])

    def load_checkpoint(self):
        return None


@pytest.fixture
def clock(monkeypatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    return now


def cfg(**kw) -> Training:
    return Training(**{"epochs": 8, "batch_size": 10, "patience": None, **kw})


@pytest.mark.parametrize(
    ("step_s", "interval", "saved"),
    [
        (0.1, 0.0, [1, 2, 3, 4, 5, 6, 7, 8]),  # 0: after every epoch
        (0.1, 10.0, [1, 8]),  # 0.4 s epochs: only the first and the last
        (1.0, 10.0, [1, 4, 7, 8]),  # 4 s epochs: the third after each checkpoint
        (5.0, 10.0, [1, 2, 3, 4, 5, 6, 7, 8]),  # epochs longer than the interval
    ],
)
def test_checkpoints_the_first_epoch_the_last_and_at_most_once_per_interval(
    clock, step_s, interval, saved
):
    learner = Clocked(clock, step_s)
    trainer.fit(learner, cfg(checkpoint_interval=interval), progress=False)
    assert learner.saved == saved


def test_an_early_stop_is_checkpointed_where_it_stops(clock):
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]  # best after epoch 1
    learner = Clocked(clock, 0.1, scores)
    result = trainer.fit(learner, cfg(patience=2, checkpoint_interval=60), progress=False)
    assert result.best_epoch == 1 and len(result.losses) == 3
    assert learner.saved == [1, 3]


def test_the_interval_is_a_mesh_file_field_that_refuses_negatives():
    from pydantic import ValidationError

    assert Training().checkpoint_interval == 10.0
    with pytest.raises(ValidationError, match="checkpoint_interval"):
        Training(checkpoint_interval=-1)


class Parted(Clocked):
    """An epoch of 40 rows in parts of 20, 10 and 10: what the trainer asked for, step by
    step."""

    def __init__(self, clock: list[float]) -> None:
        super().__init__(clock, 0.1)
        self.calls: list[tuple] = []

    def epoch_parts(self, batch_size: int, min_batch: int) -> list[int] | None:
        return [20, 10, 10]

    def start_epoch(self, epoch: int, part: int = 0) -> None:
        self.calls.append(("start", epoch, part))

    def train_step(self, positions: np.ndarray, step: int, upcoming=None) -> float:
        ahead = None if upcoming is None else sorted(upcoming.tolist())
        self.calls.append(("step", sorted(positions.tolist()), ahead))
        return 0.5


def test_an_epoch_in_parts_is_started_part_by_part_with_positions_in_the_part(clock):
    learner = Parted(clock)
    trainer.fit(learner, cfg(epochs=2), progress=False)
    starts = [c[1:] for c in learner.calls if c[0] == "start"]
    assert starts == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    epoch = learner.calls[: learner.calls.index(("start", 1, 0))]
    steps = [c for c in epoch if c[0] == "step"]
    assert len(steps) == 4  # batches of 10: two in the first part, one in each other
    assert sorted(steps[0][1] + steps[1][1]) == list(range(20))  # shuffled in the part
    assert steps[2][1] == steps[3][1] == list(range(10))
    # the next batch is sent ahead only within a part: the next part is not planned yet
    assert steps[0][2] == steps[1][1] and steps[1][2] is None and steps[2][2] is None


class Pretrained(Clocked):
    """Two pre-training phases (2 and 1 epochs) before the model's own; records the phase
    each epoch trained in."""

    def __init__(self, clock: list[float], scores: list[float]) -> None:
        super().__init__(clock, 0.1, scores)
        self.phase, self.phases = "neumf", []

    def pretraining(self) -> list[tuple[str, int]]:
        return [("gmf", 2), ("mlp", 1)]

    def set_phase(self, phase: str) -> None:
        self.phase = phase

    def start_epoch(self, epoch: int, part: int = 0) -> None:
        super().start_epoch(epoch, part)
        self.phases.append(self.phase)


def test_pretraining_phases_come_first_and_are_never_the_kept_epoch(clock):
    # the pre-training epochs score best, but only the model's own epochs are kept, and
    # early stopping counts from the first of them
    scores = [0.9, 0.95, 0.99, 0.5, 0.6, 0.55, 0.54, 0.53, 0.52, 0.51]
    learner = Pretrained(clock, scores)
    result = trainer.fit(learner, cfg(epochs=6, patience=2), progress=False)
    assert learner.phases == ["gmf", "gmf", "mlp", "neumf", "neumf", "neumf", "neumf"]
    assert result.best_epoch == 5 and result.pretrain_epochs == 3
    assert len(result.validation) == len(result.losses) == 7  # a curve over every epoch
    assert learner.phase == "neumf"  # what is evaluated and saved after fit


def test_without_patience_pretraining_adds_its_epochs_and_ends_on_the_whole_model(clock):
    learner = Pretrained(clock, [0.5] * 10)
    result = trainer.fit(learner, cfg(epochs=2), progress=False)
    assert learner.phases == ["gmf", "gmf", "mlp", "neumf", "neumf"]
    assert result.best_epoch == 5 and learner.saved == [1, 5]
