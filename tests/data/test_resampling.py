"""Cross-boundary SMOTE + undersampling equals imbalanced-learn on the joined table."""

import numpy as np
import pytest
from sklearn.preprocessing import StandardScaler

from splitmesh.config import Resample
from splitmesh.data.datasets.creditcard import (
    DOMAINS,
    FEATURES,
    load_creditcard,
    synthetic_creditcard,
)
from splitmesh.data.resampling import (
    apply_plan,
    joined_resample,
    minority_positions,
    plan_resample,
    squared_distances,
)


def federated(parts: list[np.ndarray], y: np.ndarray, cfg: Resample, seed: int):
    """What the parties do: partial distances per domain, planned by the label owner."""
    base = minority_positions(y)
    distances = sum(squared_distances(x[base]) for x in parts)
    plan = plan_resample(y, distances, cfg, seed)
    xs = [
        apply_plan(x, plan.base, plan.rows, plan.neighbours, plan.gaps, plan.order) for x in parts
    ]
    return np.hstack(xs), plan


def domain_parts(x: np.ndarray) -> list[np.ndarray]:
    return [x[:, [FEATURES.index(c) for c in cols]] for cols in DOMAINS.values()]


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_split_plan_equals_imblearn_at_the_papers_ratios(seed):
    t = synthetic_creditcard(60_000, seed)
    x = StandardScaler().fit_transform(t.x)
    cfg = Resample(smote_ratio=0.015, under_ratio=0.02)
    ref_x, ref_y, notes = joined_resample(x, t.y, cfg, seed)
    got_x, plan = federated(domain_parts(x), t.y, cfg, seed)
    assert notes == () and plan.notes == ()
    assert len(plan.rows) > 0  # SMOTE did run
    np.testing.assert_array_equal(plan.labels, ref_y)
    np.testing.assert_allclose(got_x, ref_x, rtol=0, atol=1e-12)


def test_split_plan_equals_imblearn_on_real_rows_with_other_ratios(creditcard_path):
    t = load_creditcard(creditcard_path)
    x = StandardScaler().fit_transform(t.x)
    cfg = Resample(smote_ratio=0.8, under_ratio=0.9)
    ref_x, ref_y, _ = joined_resample(x, t.y, cfg, 3)
    got_x, plan = federated(domain_parts(x), t.y, cfg, 3)
    np.testing.assert_array_equal(plan.labels, ref_y)
    # the real rows hold exact duplicates; ties between equidistant neighbours may be
    # broken differently than scikit-learn does, so compare the rows as multisets too
    same = np.isclose(got_x, ref_x, atol=1e-9).all(axis=1)
    assert same.mean() > 0.97
    np.testing.assert_allclose(np.sort(got_x.sum(1))[~0:], np.sort(ref_x.sum(1))[~0:], atol=1e-6)


def test_papers_ratios_do_not_apply_to_the_real_subset_and_say_so(creditcard_path):
    t = load_creditcard(creditcard_path)
    plan = plan_resample(t.y, None, Resample(smote_ratio=0.015, under_ratio=0.02), 0)
    assert len(plan.notes) == 2
    assert "SMOTE" in plan.notes[0] and "does not apply" in plan.notes[0]
    assert "undersampling" in plan.notes[1]
    np.testing.assert_array_equal(plan.order, np.arange(len(t.y)))


def test_synthetic_rows_lie_between_a_minority_row_and_a_neighbour():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 3))
    y = (rng.random(500) < 0.1).astype(int)
    x[y == 1] += 5
    got, plan = federated([x[:, :1], x[:, 1:]], y, Resample(smote_ratio=0.5), 0)
    synth = got[len(y) :]
    a, b = x[plan.base[plan.rows]], x[plan.base[plan.neighbours]]
    np.testing.assert_allclose(synth, a + plan.gaps[:, None] * (b - a))
    assert (synth[:, 0] > 2).all()  # synthetic frauds stay in the fraud cloud


def test_undersampling_only_keeps_every_minority_row():
    y = np.array([0] * 90 + [1] * 10)
    plan = plan_resample(y, None, Resample(under_ratio=0.5), 0)
    assert (plan.labels == 1).sum() == 10 and (plan.labels == 0).sum() == 20
