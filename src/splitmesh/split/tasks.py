"""What differs between binary, multiclass and regression tasks: labels, loss, scores,
metrics and the split. Whoever holds the labels (coordinator in label sharing, label owner
in label preserving, the centralized learner) uses the same ``Task``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from splitmesh.data.splitting import check_fractions, holdout, stratified_split
from splitmesh.errors import ConfigError, DataError
from splitmesh.metrics import binary_report
from splitmesh.split.common import binary_loss

TASKS = ("binary", "multiclass", "regression")


def check_task(name: str) -> str:
    if name not in TASKS:
        raise ConfigError(f"The 'task' parameter must be one of {TASKS}. Got {name!r} instead.")
    return name


@dataclasses.dataclass(frozen=True)
class Labels:
    """Labels as the model trains on them, and the original values they stand for."""

    y: np.ndarray  # binary / multiclass: int64 codes; regression: float64
    classes: tuple = ()  # class code -> original value (classification only)
    notes: tuple[str, ...] = ()


def encode_labels(task: str, raw: np.ndarray, *, where: str) -> Labels:
    """Check and encode a label column; ``where`` names it in errors (domain, column)."""
    check_task(task)
    raw = np.asarray(raw)
    import pandas as pd

    missing = pd.isna(raw)
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        raise DataError(f"{where}: missing label at row {i + 1}")
    if task == "regression":
        try:
            y = raw.astype(np.float64)
        except (TypeError, ValueError):
            raise DataError(f"{where}: regression labels must be numbers") from None
        if not np.isfinite(y).all():
            raise DataError(f"{where}: infinite label value")
        return Labels(y)
    values = raw.tolist()
    classes = sorted(set(values), key=lambda v: (str(type(v)), v))
    if len(classes) < 2:
        raise DataError(f"{where}: the labels hold a single class ({classes[0]!r})")
    if task == "binary" and len(classes) != 2:
        raise DataError(
            f"{where}: a binary task needs exactly 2 label values; found {len(classes)} "
            f"({', '.join(map(repr, classes[:5]))}{' ...' if len(classes) > 5 else ''})",
            hint="use task: multiclass",
        )
    code = {v: i for i, v in enumerate(classes)}
    y = np.array([code[v] for v in values], dtype=np.int64)
    notes = ()
    if task == "binary" and not (_numeric(classes) and [float(c) for c in classes] == [0, 1]):
        notes = (f"{where}: {classes[0]!r} is class 0 and {classes[1]!r} class 1",)
    return Labels(y, tuple(classes), notes)


def _numeric(values: list) -> bool:
    return all(isinstance(v, (int, float, np.integer, np.floating, bool)) for v in values)


@dataclasses.dataclass(frozen=True)
class Task:
    name: str = "binary"
    n_classes: int = 2  # multiclass only
    # regression: the training labels' mean and std; the model learns standardised targets
    center: float = 0.0
    scale: float = 1.0

    def __post_init__(self) -> None:
        check_task(self.name)

    @property
    def out_features(self) -> int:
        return self.n_classes if self.name == "multiclass" else 1

    def fit(self, y_train: np.ndarray) -> Task:
        """The task fitted on training labels (regression: target scaling)."""
        if self.name != "regression" or not len(y_train):
            return self
        std = float(np.std(y_train))
        return dataclasses.replace(self, center=float(np.mean(y_train)), scale=std or 1.0)

    def target(self, y: np.ndarray) -> torch.Tensor:
        """Labels as the loss reads them."""
        if self.name == "multiclass":
            return torch.from_numpy(np.asarray(y, dtype=np.int64))
        y = np.asarray(y, dtype=np.float64)
        if self.name == "regression":
            y = (y - self.center) / self.scale
        return torch.from_numpy(y.astype(np.float32))

    def loss(self, logits: torch.Tensor, target: torch.Tensor, pos_weight: float | None = None):
        if self.name == "binary":
            return binary_loss(logits, target, pos_weight)
        if self.name == "multiclass":
            return torch.nn.functional.cross_entropy(logits, target)
        return torch.nn.functional.mse_loss(logits.squeeze(1), target)

    def scores(self, logits: torch.Tensor) -> np.ndarray:
        """binary: P(class 1); multiclass: class probabilities; regression: predictions."""
        with torch.no_grad():
            if self.name == "binary":
                return torch.sigmoid(logits.squeeze(1)).numpy().astype(np.float64)
            if self.name == "multiclass":
                return torch.softmax(logits, dim=1).numpy().astype(np.float64)
            return logits.squeeze(1).numpy().astype(np.float64) * self.scale + self.center

    def score_shape(self, n_rows: int) -> tuple[int, ...]:
        return (n_rows, self.n_classes) if self.name == "multiclass" else (n_rows,)

    def split(self, y: np.ndarray, *, test: float, validation: float, seed: int) -> dict:
        """Train / validation / test positions: stratified for classes, random otherwise."""
        if self.name != "regression":
            return stratified_split(y, test=test, validation=validation, seed=seed)
        check_fractions(test, validation)
        rest, test_idx = holdout(np.arange(len(y)), test, seed)
        train_idx, val_idx = rest, np.array([], dtype=np.int64)
        if validation > 0:
            train_idx, val_idx = holdout(rest, validation / (1 - test), seed)
        parts = {"train": train_idx, "val": val_idx, "test": test_idx}
        return {p: np.sort(v).astype(np.int64) for p, v in parts.items()}

    def report(self, y: np.ndarray, scores: np.ndarray, *, threshold: float | None = None) -> dict:
        """Metrics under fixed names per task (binary: threshold chosen on these rows
        unless given)."""
        if self.name == "binary":  # in numpy (metrics.py): no scikit-learn import
            out = binary_report(y, scores, threshold=threshold)
            out["f1"] = out["f1_1"]
            return out
        from sklearn import metrics as skm  # the label owner's only: feature nodes skip it

        if self.name == "multiclass":
            labels = list(range(self.n_classes))
            pred = scores.argmax(axis=1)
            out = {
                "accuracy": float(skm.accuracy_score(y, pred)),
                "macro_f1": float(
                    skm.f1_score(y, pred, labels=labels, average="macro", zero_division=0)
                ),
                "log_loss": float(skm.log_loss(y, _clip_rows(scores), labels=labels)),
            }
            out["confusion_matrix"] = skm.confusion_matrix(y, pred, labels=labels).tolist()
            if len(np.unique(y)) == self.n_classes:
                out["roc_auc_ovr"] = float(skm.roc_auc_score(y, scores, multi_class="ovr"))
            return out
        err = scores - y
        return {
            "rmse": float(np.sqrt(np.mean(err**2))),
            "mae": float(np.mean(np.abs(err))),
            "r2": float(skm.r2_score(y, scores)) if len(y) > 1 else float("nan"),
        }

    def evaluate(self, labels: dict, scores: dict, select_on: str, partitions: list) -> dict:
        """Metrics per partition; a binary threshold is chosen on ``select_on`` only."""
        threshold = None
        if self.name == "binary":
            threshold = self.report(labels[select_on], scores[select_on])["threshold"]
        return {p: self.report(labels[p], scores[p], threshold=threshold) for p in partitions}

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _clip_rows(p: np.ndarray) -> np.ndarray:
    """Probabilities kept off 0 (a finite log loss), rows still summing to one."""
    p = np.clip(p, 1e-7, 1.0)
    return p / p.sum(axis=1, keepdims=True)
