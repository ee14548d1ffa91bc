"""Attacks on what crosses the boundary, each from one party's point of view, each a
number that could be better or worse for the defender.

- label inference from gradients (Li et al. 2021, "Label Leakage and Protection in
  Two-party Split Learning"): the norm attack (positives get larger gradients when they
  are the minority), the direction attack (gradients of the two classes point opposite
  ways: cosine with a reference example) and the spectral attack (the sign of the
  projection on the gradients' top singular direction). Scored by AUC against the true
  labels, taken as max(AUC, 1 - AUC): the attacker picks the orientation.
- model completion (Fu et al. 2022, "Label Inference Attacks Against Vertical Federated
  Learning"): a party fits a classifier on the embeddings it sees for a few rows whose
  labels it knows (its auxiliary prior), and labels the rest.
- feature reconstruction: an inversion model (ridge regression and a small MLP, the
  better of the two) trained on an auxiliary share of a domain's rows, mapping what the
  coordinator saw (the domain's released embeddings) back to its columns; R² per column
  on the other rows.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import r2_score, roc_auc_score
from sklearn.neural_network import MLPRegressor

AUX_SHARE = 0.2  # the attacker's prior: this share of rows with labels or columns known


def _auc(y: np.ndarray, score: np.ndarray) -> float | None:
    if len(np.unique(y)) != 2 or not np.isfinite(score).all():
        return None
    a = float(roc_auc_score(y, score))
    return max(a, 1.0 - a)


def label_inference(grads: np.ndarray, y: np.ndarray, seed: int = 0) -> dict[str, float | None]:
    """AUC of each gradient attack on binary labels ``y`` (one gradient row per row)."""
    g = np.asarray(grads, dtype=np.float64).reshape(len(grads), -1)
    if len(g) < 4 or len(np.unique(y)) != 2:
        return {"norm": None, "direction": None, "spectral": None}
    norm = np.linalg.norm(g, axis=1)
    rng = np.random.default_rng(seed)
    ref = g[rng.integers(len(g))]  # one example whose gradient the attacker picks
    cosine = g @ ref / (norm * np.linalg.norm(ref) + 1e-12)
    centred = g - g.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    spectral = centred @ vt[0]
    return {"norm": _auc(y, norm), "direction": _auc(y, cosine), "spectral": _auc(y, spectral)}


def model_completion(
    embeddings: np.ndarray, y: np.ndarray, seed: int = 0, share: float = AUX_SHARE
) -> float | None:
    """AUC of a classifier fitted on an auxiliary share of labeled rows' embeddings."""
    x = np.asarray(embeddings, dtype=np.float64).reshape(len(embeddings), -1)
    aux, rest = _split(len(x), share, seed)
    if len(np.unique(y[aux])) != 2 or len(np.unique(y[rest])) != 2:
        return None
    clf = LogisticRegression(max_iter=2000).fit(x[aux], y[aux])
    return _auc(y[rest], clf.decision_function(x[rest]))


def feature_reconstruction(
    embeddings: np.ndarray,
    features: np.ndarray,
    columns: list[str],
    seed: int = 0,
    share: float = AUX_SHARE,
) -> dict:
    """R² per column of the domain's (prepared) features rebuilt from its embeddings by an
    inversion model fitted on an auxiliary share of its rows; ``mean``: their average."""
    e = np.asarray(embeddings, dtype=np.float64).reshape(len(embeddings), -1)
    x = np.asarray(features, dtype=np.float64)
    aux, rest = _split(len(e), share, seed)
    kept = [j for j in range(x.shape[1]) if np.std(x[rest, j]) > 0 and np.std(x[aux, j]) > 0]
    if not kept or len(aux) < 5:
        return {"mean": None, "columns": {}}
    best = None
    for model in (
        Ridge(alpha=1.0),
        MLPRegressor(hidden_layer_sizes=(64,), max_iter=500, random_state=seed),
    ):
        with warnings.catch_warnings():  # an attacker's model need not converge to learn
            warnings.simplefilter("ignore", ConvergenceWarning)
            target = x[aux][:, kept]
            target = target.ravel() if target.shape[1] == 1 else target  # one column: 1-D
            pred = model.fit(e[aux], target).predict(e[rest])
        r2 = r2_score(x[rest][:, kept], pred.reshape(len(rest), -1), multioutput="raw_values")
        if best is None or r2.mean() > best.mean():
            best = r2
    per = {columns[j]: float(v) for j, v in zip(kept, best, strict=True)}
    return {"mean": float(np.mean(best)), "columns": per}


def _split(n: int, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng([seed, 0xA77AC4]).permutation(n)
    k = max(2, round(share * n))
    return order[:k], order[k:]
