"""Stratified train / validation / test split by seed."""

from __future__ import annotations

import numpy as np

from splitmesh.errors import ConfigError, DataError


def check_fractions(test: float, validation: float) -> None:
    if not (0 < test < 1 and 0 < validation < 1 and test + validation < 1):
        raise ConfigError(
            "The 'test' and 'validation' fractions must be in (0, 1) and sum below 1 "
            "(validation rows pick the kept epoch and the decision threshold). "
            f"Got test={test}, validation={validation} instead."
        )


def stratified_split(
    labels: np.ndarray, *, test: float, validation: float, seed: int
) -> dict[str, np.ndarray]:
    """Sorted positions of each partition; class shares kept in every partition."""
    check_fractions(test, validation)
    labels = np.asarray(labels)
    counts = np.bincount(labels.astype(int))
    if (counts[counts > 0] < 3).any() or len(counts[counts > 0]) < 2:
        raise DataError(
            f"a stratified split needs at least 3 rows of each of 2 classes; counts: "
            f"{dict(enumerate(counts.tolist()))}",
            column="label",
        )
    idx = np.arange(len(labels))
    rest, test_idx = holdout(idx, test, seed, stratify=labels)
    if validation > 0:
        train_idx, val_idx = holdout(rest, validation / (1 - test), seed, stratify=labels[rest])
    else:
        train_idx, val_idx = rest, np.array([], dtype=int)
    return {
        "train": np.sort(train_idx).astype(np.int64),
        "val": np.sort(val_idx).astype(np.int64),
        "test": np.sort(test_idx).astype(np.int64),
    }


# scikit-learn's train_test_split draws, reproduced (tests compare them) so that the label
# owner's preparation imports no scikit-learn (about a second on every run's path) and
# every split stays what it was.


def holdout(
    items: np.ndarray, fraction: float, seed: int, *, stratify: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out) of ``items``: ``ceil(fraction x n)`` held out, class shares kept
    when ``stratify`` gives each item's class; as ``train_test_split(items,
    test_size=fraction, stratify=stratify, random_state=seed)``."""
    n = len(items)
    n_out = int(np.ceil(fraction * n))
    n_in = n - n_out
    if not 0 < n_out < n:
        raise ConfigError(f"holding out {fraction} of {n} rows leaves an empty part")
    rng = np.random.RandomState(seed)
    if stratify is None:
        order = rng.permutation(n)
        return items[order[n_out:]], items[order[:n_out]]
    _, cls = np.unique(stratify, return_inverse=True)
    counts = np.bincount(cls)
    if counts.min() < 2 or min(n_in, n_out) < len(counts):
        raise DataError(
            f"a stratified split of {n} rows into {n_in} and {n_out} needs at least 2 rows "
            f"of each class and a row of each in both parts; counts: {counts.tolist()}",
            column="label",
        )
    by_class = np.split(np.argsort(cls, kind="mergesort"), np.cumsum(counts)[:-1])
    n_kept = _shares(counts, n_in, rng)
    n_held = _shares(counts - n_kept, n_out, rng)
    kept, held = [], []
    for c, members in enumerate(by_class):
        drawn = members.take(rng.permutation(counts[c]), mode="clip")
        kept.extend(drawn[: n_kept[c]])
        held.extend(drawn[n_kept[c] : n_kept[c] + n_held[c]])
    return items[rng.permutation(kept)], items[rng.permutation(held)]


def _shares(counts: np.ndarray, draws: int, rng: np.random.RandomState) -> np.ndarray:
    """``draws`` split across classes in proportion to ``counts``: the floors, then one
    more for the largest remainders (ties broken at random)."""
    exact = counts / counts.sum() * draws
    out = np.floor(exact)
    missing = int(draws - out.sum())
    remainder = exact - out
    for value in np.sort(np.unique(remainder))[::-1]:
        if missing <= 0:
            break
        (tied,) = np.where(remainder == value)
        now = min(len(tied), missing)
        out[rng.choice(tied, size=now, replace=False)] += 1
        missing -= now
    return out.astype(int)
