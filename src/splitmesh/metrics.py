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


def best_f1_threshold(y_true: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold with the highest class-1 F1 (ties: the highest threshold)."""
    from sklearn import metrics as skm  # here, not at the top: feature nodes never need it

    precision, recall, thresholds = skm.precision_recall_curve(y_true, scores)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    # the curve's last point has no threshold
    best = int(np.argmax(f1[:-1][::-1]))
    return float(thresholds[::-1][best])


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
    if threshold is None:
        threshold = best_f1_threshold(y_true, scores)
    y_pred = (scores >= threshold).astype(int)
    from sklearn import metrics as skm

    p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=[0, 1], zero_division=0)
    out: dict = {"threshold": float(threshold)}
    for c in (0, 1):
        out[f"precision_{c}"] = float(p[c])
        out[f"recall_{c}"] = float(r[c])
        out[f"f1_{c}"] = float(f[c])
        out[f"support_{c}"] = int(s[c])
    out["precision_macro"] = float(p.mean())
    out["recall_macro"] = float(r.mean())
    out["f1_macro"] = float(f.mean())
    out["support_macro"] = int(s.sum())
    out["accuracy"] = float(skm.accuracy_score(y_true, y_pred))
    out["roc_auc"] = float(skm.roc_auc_score(y_true, scores))
    out["average_precision"] = float(skm.average_precision_score(y_true, scores))
    out["log_loss"] = float(skm.log_loss(y_true, np.clip(scores, 1e-7, 1 - 1e-7), labels=[0, 1]))
    out["brier"] = float(skm.brier_score_loss(y_true, scores))
    out["confusion_matrix"] = skm.confusion_matrix(y_true, y_pred, labels=[0, 1]).tolist()
    # the curves, thinned to at most CURVE_POINTS points: aggregates like the AUC, no
    # threshold and no row (the label owner sends them in label-preserving runs)
    fpr, tpr, _ = skm.roc_curve(y_true, scores)
    precision, recall, _ = skm.precision_recall_curve(y_true, scores)
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
