import numpy as np
import pytest

from splitmesh.data.splitting import holdout, stratified_split
from splitmesh.errors import DataError


@pytest.mark.parametrize("seed", range(10))
def test_holdout_draws_what_scikit_learns_train_test_split_draws(seed):
    """Reproduced without importing scikit-learn (a second on the label owner's path):
    every split a mesh made before stays the same."""
    from sklearn.model_selection import train_test_split

    rng = np.random.default_rng(seed)
    n = int(rng.integers(12, 5000))
    k = int(rng.integers(2, 6))
    y = rng.choice(k, size=n, p=rng.dirichlet(np.ones(k) * 0.7))
    y[: 2 * k] = np.repeat(np.arange(k), 2)  # at least two of each class
    items = rng.permutation(n) + 1000
    fraction = float(rng.choice([0.1, 0.15, 0.2, 0.25, 1 / 3]))
    kept, held = holdout(items, fraction, seed, stratify=y)
    theirs = train_test_split(items, test_size=fraction, stratify=y, random_state=seed)
    assert np.array_equal(kept, theirs[0]) and np.array_equal(held, theirs[1])
    kept, held = holdout(items, fraction, seed)
    theirs = train_test_split(items, test_size=fraction, random_state=seed)
    assert np.array_equal(kept, theirs[0]) and np.array_equal(held, theirs[1])


def test_stratified_split_keeps_class_shares_and_covers_every_row():
    y = np.r_[np.zeros(900, int), np.ones(100, int)]
    parts = stratified_split(y, test=0.2, validation=0.1, seed=3)
    every = np.sort(np.concatenate(list(parts.values())))
    assert np.array_equal(every, np.arange(1000))
    assert [len(parts[p]) for p in ("train", "val", "test")] == [700, 100, 200]
    assert [int(y[parts[p]].sum()) for p in ("train", "val", "test")] == [70, 10, 20]


def test_a_class_too_small_to_split_is_named():
    with pytest.raises(DataError, match="at least 2 rows of each class"):
        holdout(np.arange(10), 0.2, 0, stratify=np.r_[np.zeros(9, int), 1])
