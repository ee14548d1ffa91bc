"""Metrics as plain functions of (labels, scores). Scores, never hard labels, for AUCs."""

from __future__ import annotations

import numpy as np

from splitmesh.errors import ConfigError

# Metrics where lower is better; model selection minimises these and maximises the rest.
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "rmse", "mae"})

# what model selection watches by default, and may watch, per task (names as the task's
# report gives them; split/tasks.py)
# log-loss for classes: it keeps improving after the ranking metrics (AUPRC) have levelled
# off, so early stopping does not stop a model that is still uncalibrated
DEFAULT_SELECT = {"binary": "log_loss", "multiclass": "log_loss", "regression": "rmse"}
SELECT_METRICS = {
    "binary": ("average_precision", "roc_auc", "log_loss", "brier", "f1", "f1_macro", "accuracy"),
    "multiclass": ("log_loss", "accuracy", "macro_f1"),
    "regression": ("rmse", "mae", "r2"),
}


# The binary metrics below are scikit-learn's definitions computed in numpy (tests compare
# them with scikit-learn's functions): the party that scores a binary task would otherwise
# import scikit-learn for them, about a second of CPU on the path of every run's end.


def _clf_curve(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, ...]:
    """False and true positives at each distinct score, highest first, and those scores."""
    order = np.argsort(scores, kind="mergesort")[::-1]
    scores, y = scores[order], (y_true[order] == 1).astype(np.float64)
    last = np.r_[np.flatnonzero(np.diff(scores)), y.size - 1]
    tps = np.cumsum(y)[last]
    return 1 + last - tps, tps, scores[last]


def precision_recall_curve(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, ...]:
    """(precision, recall, thresholds) as scikit-learn gives them: recall decreasing, the
    curve closed by (precision 1, recall 0)."""
    fps, tps, thresholds = _clf_curve(y_true, scores)
    ps = tps + fps
    precision = np.zeros_like(tps)
    np.divide(tps, ps, out=precision, where=ps != 0)
    recall = np.ones_like(tps) if tps[-1] == 0 else tps / tps[-1]
    return np.r_[precision[::-1], 1], np.r_[recall[::-1], 0], thresholds[::-1]


def roc_curve(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, ...]:
    """(fpr, tpr, thresholds), collinear points dropped, starting at (0, 0)."""
    fps, tps, thresholds = _clf_curve(y_true, scores)
    if len(fps) > 2:
        keep = np.flatnonzero(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])
        fps, tps, thresholds = fps[keep], tps[keep], thresholds[keep]
    fps, tps = np.r_[0, fps], np.r_[0, tps]
    return fps / fps[-1], tps / tps[-1], np.r_[np.inf, thresholds]


def best_f1_threshold(y_true: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold with the highest class-1 F1 (ties: the highest threshold)."""
    return _best_f1(*precision_recall_curve(y_true, scores))


def _best_f1(precision: np.ndarray, recall: np.ndarray, thresholds: np.ndarray) -> float:
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    # the curve's last point has no threshold
    best = int(np.argmax(f1[:-1][::-1]))
    return float(thresholds[::-1][best])


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts by (true class, predicted class), classes 0..n_classes-1."""
    cells = y_true.astype(np.int64) * n_classes + y_pred.astype(np.int64)
    return np.bincount(cells, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def binary_report(
    y_true: np.ndarray, scores: np.ndarray, *, threshold: float | None = None
) -> dict:
    """Per-class precision / recall / F1 / support, macro averages, ROC-AUC, AUPRC, confusion.

    With no ``threshold``, the max-F1 threshold of these very rows is used: call it on
    validation rows, then pass the returned threshold for test rows.
    """
    y_true = np.asarray(y_true).astype(int)
    scores = np.asarray(scores, dtype=np.float64)
    if y_true.shape != scores.shape:
        raise ConfigError(f"labels {y_true.shape} and scores {scores.shape} differ in shape")
    if len(np.unique(y_true)) < 2:
        raise ConfigError("metrics need both classes among the evaluated rows")
    # each curve once: the threshold, the areas and the plotted curves all come from them
    fpr, tpr, _ = roc_curve(y_true, scores)
    precision, recall, thresholds = precision_recall_curve(y_true, scores)
    if threshold is None:
        threshold = _best_f1(precision, recall, thresholds)
    y_pred = (scores >= threshold).astype(int)
    cm = confusion(y_true, y_pred, 2)
    tp = np.diag(cm).astype(np.float64)
    predicted, support = cm.sum(axis=0), cm.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):  # zero division gives 0
        p = np.where(predicted > 0, tp / predicted, 0.0)
        r = np.where(support > 0, tp / support, 0.0)
        f = np.where(predicted + support > 0, 2 * tp / (predicted + support), 0.0)
    out: dict = {"threshold": float(threshold)}
    for c in (0, 1):
        out[f"precision_{c}"] = float(p[c])
        out[f"recall_{c}"] = float(r[c])
        out[f"f1_{c}"] = float(f[c])
        out[f"support_{c}"] = int(support[c])
    out["precision_macro"] = float(p.mean())
    out["recall_macro"] = float(r.mean())
    out["f1_macro"] = float(f.mean())
    out["support_macro"] = int(support.sum())
    out["accuracy"] = float(tp.sum() / len(y_true))
    out["roc_auc"] = float(np.trapezoid(tpr, fpr))
    # average precision: precision x the recall gained at each threshold (no interpolation)
    out["average_precision"] = float(max(0.0, -np.sum(np.diff(recall) * precision[:-1])))
    prob = np.clip(scores, 1e-7, 1 - 1e-7)
    out["log_loss"] = float(-np.mean(np.where(y_true == 1, np.log(prob), np.log(1 - prob))))
    out["brier"] = float(np.mean((y_true - scores) ** 2))
    out["confusion_matrix"] = cm.tolist()
    # the curves, thinned to at most CURVE_POINTS points: aggregates like the AUC, no
    # threshold and no row (the label owner sends them in label-preserving runs)
    out["roc_curve"] = _thinned({"fpr": fpr, "tpr": tpr})
    out["pr_curve"] = _thinned({"recall": recall[::-1], "precision": precision[::-1]})
    return out


CURVE_POINTS = 101


def _thinned(curve: dict[str, np.ndarray]) -> dict[str, list[float]]:
    """Each of the curve's arrays at the same at most CURVE_POINTS evenly spaced indices
    (both ends kept), rounded to 4 decimals."""
    n = len(next(iter(curve.values())))
    keep = np.unique(np.linspace(0, n - 1, min(n, CURVE_POINTS)).round().astype(int))
    return {k: [round(float(x), 4) for x in v[keep]] for k, v in curve.items()}


# --- ranking ---------------------------------------------------------------------------------


def ranks(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """0-based rank of each held-out item among the user's candidates.

    ``pos`` (n, h): scores of the held-out items; ``neg`` (n, m): scores of the items they
    compete with (-inf for items that do not compete). Ties count against the held-out item,
    so a model that scores everything alike ranks nothing high.
    """
    above_neg = (neg[:, None, :] >= pos[:, :, None]).sum(axis=2)
    above_pos = (pos[:, None, :] > pos[:, :, None]).sum(axis=2)
    return above_neg + above_pos


def ranking_report(rank: np.ndarray, ks: tuple[int, ...] = (10,)) -> dict:
    """HR@K (a held-out item in the top K), NDCG@K and Recall@K (share of the user's held-out
    items in the top K), averaged over users; ``rank`` is (n_users, holdout)."""
    if rank.ndim != 2 or not len(rank):
        raise ConfigError(f"ranks must be (users, holdout) with users > 0. Got {rank.shape}.")
    h = rank.shape[1]
    out: dict = {"users": len(rank)}
    for k in ks:
        if k < 1:
            raise ConfigError(f"K must be >= 1. Got {k} instead.")
        hit = rank < k
        gain = np.where(hit, 1.0 / np.log2(rank + 2.0), 0.0).sum(axis=1)
        ideal = (1.0 / np.log2(np.arange(min(h, k)) + 2.0)).sum()
        out[f"hr@{k}"] = float(hit.any(axis=1).mean())
        out[f"ndcg@{k}"] = float((gain / ideal).mean())
        out[f"recall@{k}"] = float((hit.sum(axis=1) / h).mean())
    out["mrr"] = float((1.0 / (rank.min(axis=1) + 1.0)).mean())
    return out
