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
    from sklearn.model_selection import train_test_split  # the label owner's only

    idx = np.arange(len(labels))
    rest, test_idx = train_test_split(idx, test_size=test, stratify=labels, random_state=seed)
    if validation > 0:
        train_idx, val_idx = train_test_split(
            rest,
            test_size=validation / (1 - test),
            stratify=labels[rest],
            random_state=seed,
        )
    else:
        train_idx, val_idx = rest, np.array([], dtype=int)
    return {
        "train": np.sort(train_idx).astype(np.int64),
        "val": np.sort(val_idx).astype(np.int64),
        "test": np.sort(test_idx).astype(np.int64),
    }
