"""SMOTE plus random undersampling, planned across the domain boundary.

The plan is the algorithm of imbalanced-learn's ``SMOTE`` followed by
``RandomUnderSampler`` (same random draws for the same ``seed``), split in two:

* the *planner* (the label owner) needs only the labels and the squared Euclidean
  distances between minority rows; a squared distance is the sum of per-domain squared
  distances, so the domains each send a partial matrix and never a column;
* each *domain* then synthesises its own columns from the shared (row, neighbour, gap)
  choices and applies the same row order.

``joined_resample`` runs imbalanced-learn itself on a joined table: the centralized mode
uses it, and the tests check that the split plan reproduces it exactly.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from splitmesh.config import Resample
from splitmesh.errors import ConfigError, DataError


def smote_count(y: np.ndarray, ratio: float | None) -> tuple[int, str | None]:
    """How many synthetic minority rows SMOTE makes, or 0 and the reason it does not apply."""
    if ratio is None:
        return 0, None
    n_min, n_maj = int((y == 1).sum()), int((y == 0).sum())
    n_new = int(n_maj * ratio - n_min)
    if n_new <= 0:
        return 0, (
            f"SMOTE to a minority ratio of {ratio} does not apply: the training rows already "
            f"have {n_min} minority to {n_maj} majority (ratio {n_min / n_maj:.3f}); skipped"
        )
    return n_new, None


def under_count(y: np.ndarray, ratio: float | None) -> tuple[int | None, str | None]:
    """How many majority rows undersampling keeps, or None and the reason it does not apply."""
    if ratio is None:
        return None, None
    n_min, n_maj = int((y == 1).sum()), int((y == 0).sum())
    keep = int(n_min / ratio)
    if keep > n_maj:
        return None, (
            f"undersampling to a minority ratio of {ratio} does not apply: it would need "
            f"{keep} majority rows and there are {n_maj}; skipped"
        )
    return keep, None


def _enough_minority(n: int, k: int) -> None:
    if n <= k:
        raise DataError(
            f"SMOTE with k_neighbors={k} needs more than {k} minority training rows; got {n}",
            column="label",
            hint="lower resample.k_neighbors or turn SMOTE off (resample.smote_ratio: null)",
        )


def neighbours_from_distances(distances: np.ndarray, k: int) -> np.ndarray:
    """The k nearest other rows of each row, nearest first, from a full squared-distance matrix."""
    _enough_minority(distances.shape[0], k)
    d = np.array(distances, dtype=np.float64, copy=True)
    np.fill_diagonal(d, -np.inf)  # a row is its own 0-th neighbour, as in NearestNeighbors
    return np.argsort(d, axis=1, kind="stable")[:, 1 : k + 1]


@dataclasses.dataclass(frozen=True)
class ResamplePlan:
    """Everything a domain needs to apply the resampling to its own columns."""

    base: np.ndarray  # positions (in the training partition) of the minority rows
    rows: np.ndarray  # per synthetic row: index into base of its origin
    neighbours: np.ndarray  # per synthetic row: index into base of the neighbour
    gaps: np.ndarray  # per synthetic row: where on the segment, in [0, 1)
    order: np.ndarray  # resampled rows as positions into concat(original, synthetic)
    labels: np.ndarray  # labels of the resampled rows, in that order
    notes: tuple[str, ...] = ()


def minority_positions(y: np.ndarray) -> np.ndarray:
    return np.flatnonzero(y == 1).astype(np.int64)


def plan_resample(
    y: np.ndarray, distances: np.ndarray | None, cfg: Resample, seed: int
) -> ResamplePlan:
    """The resampling plan, given the squared distances between ``minority_positions(y)``."""
    y = np.asarray(y).astype(np.int64)
    notes = []
    base = minority_positions(y)
    n_new, why = smote_count(y, cfg.smote_ratio)
    if why:
        notes.append(why)
    empty_i, empty_f = np.zeros(0, np.int64), np.zeros(0, np.float64)
    rows, nbrs, gaps = empty_i, empty_i, empty_f
    if n_new > 0:
        if distances is None or distances.shape != (len(base), len(base)):
            raise ConfigError("plan_resample needs the distances between all minority rows")
        nn_num = neighbours_from_distances(distances, cfg.k_neighbors)
        # imbalanced-learn's draw order: sample indices first, then the gaps
        rng = np.random.RandomState(seed)
        samples = rng.randint(low=0, high=nn_num.size, size=n_new)
        gaps = rng.uniform(size=n_new)
        rows = np.floor_divide(samples, nn_num.shape[1])
        nbrs = nn_num[rows, np.mod(samples, nn_num.shape[1])]
    y_smote = np.concatenate([y, np.ones(n_new, np.int64)])

    keep, why = under_count(y_smote, cfg.under_ratio)
    if why:
        notes.append(why)
    if keep is None:
        order = np.arange(len(y_smote), dtype=np.int64)
    else:
        rng = np.random.RandomState(seed)
        maj = np.flatnonzero(y_smote == 0)
        chosen = maj[rng.choice(range(len(maj)), size=keep, replace=False)]
        order = np.concatenate([chosen, np.flatnonzero(y_smote == 1)]).astype(np.int64)
    return ResamplePlan(
        base=base,
        rows=rows.astype(np.int64),
        neighbours=nbrs.astype(np.int64),
        gaps=gaps.astype(np.float64),
        order=order,
        labels=y_smote[order],
        notes=tuple(notes),
    )


def apply_plan(x: np.ndarray, plan_base, plan_rows, plan_nbrs, plan_gaps, plan_order) -> np.ndarray:
    """A domain's side: synthesise its own columns, then reorder. ``x`` is its training rows."""
    origin = x[plan_base[plan_rows]]
    synth = origin + plan_gaps[:, None] * (x[plan_base[plan_nbrs]] - origin)
    return np.concatenate([x, synth.astype(x.dtype, copy=False)])[plan_order]


def squared_distances(x: np.ndarray) -> np.ndarray:
    """Pairwise squared Euclidean distances between the rows of ``x`` (float64)."""
    x = np.asarray(x, dtype=np.float64)
    sq = np.einsum("ij,ij->i", x, x)
    d = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
    np.maximum(d, 0.0, out=d)
    np.fill_diagonal(d, 0.0)
    return d


def joined_resample(
    x: np.ndarray, y: np.ndarray, cfg: Resample, seed: int
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """imbalanced-learn on a joined table (the centralized mode), skipping what does not apply."""
    from imblearn.over_sampling import SMOTE
    from imblearn.under_sampling import RandomUnderSampler

    notes = []
    n_new, why = smote_count(y, cfg.smote_ratio)
    if why:
        notes.append(why)
    if n_new > 0:
        _enough_minority(int(min(np.bincount(y, minlength=2))), cfg.k_neighbors)
        x, y = SMOTE(
            sampling_strategy=cfg.smote_ratio, k_neighbors=cfg.k_neighbors, random_state=seed
        ).fit_resample(x, y)
    keep, why = under_count(y, cfg.under_ratio)
    if why:
        notes.append(why)
    if keep is not None:
        x, y = RandomUnderSampler(
            sampling_strategy=cfg.under_ratio, random_state=seed
        ).fit_resample(x, y)
    return x, y, tuple(notes)
