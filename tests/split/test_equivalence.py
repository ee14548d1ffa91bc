"""Split training is the centralized network's training, only cut across parties."""

import numpy as np
import pytest

from splitmesh.config import Model, Optim

from .helpers import central_params, make_pair, split_params, toy_tables


@pytest.mark.parametrize("mode", ["label-sharing", "label-preserving"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("aggregation", ["concat", "sum", "mean"])
def test_one_split_step_equals_one_centralized_step(mode, optimizer, aggregation):
    tables, y = toy_tables()
    spec = Model(bottom=(8, 4), top=(6,), aggregation=aggregation)
    coord, central, transport = make_pair(
        mode, tables, y, spec=spec, optim=Optim(optimizer=optimizer, lr=0.05)
    )
    before = central_params(central)
    split_before = split_params(coord, transport)
    assert split_before.keys() == before.keys()
    for k in before:  # same initial weights, built in different parties
        np.testing.assert_array_equal(split_before[k], before[k])

    positions = np.random.default_rng(1).permutation(coord.n_train)[:32]
    loss_split = coord.train_step(positions, 0)
    loss_central = central.train_step(positions, 0)

    after, split_after = central_params(central), split_params(coord, transport)
    assert loss_split == pytest.approx(loss_central, rel=1e-6)
    moved = 0
    for k in after:
        np.testing.assert_allclose(split_after[k], after[k], rtol=1e-5, atol=1e-7, err_msg=k)
        moved += not np.allclose(after[k], before[k])
    assert moved == len(after), "every parameter should move in one step"


@pytest.mark.parametrize("mode", ["label-sharing", "label-preserving"])
def test_many_steps_track_centralized(mode):
    tables, y = toy_tables()
    coord, central, _ = make_pair(mode, tables, y)
    rng = np.random.default_rng(2)
    for step in range(40):
        pos = rng.choice(coord.n_train, size=16, replace=False)
        assert coord.train_step(pos, step) == pytest.approx(central.train_step(pos, step), rel=1e-4)
    m_split = coord.evaluate(["test"])["test"]
    m_central = central.evaluate(["test"])["test"]
    assert m_split["roc_auc"] == pytest.approx(m_central["roc_auc"], abs=1e-6)
