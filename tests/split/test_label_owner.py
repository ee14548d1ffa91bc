"""The label owner refuses resampling distances it did not ask for (a hostile relay)."""

from __future__ import annotations

import numpy as np
import pytest

from splitmesh.errors import ProtocolError
from splitmesh.split.label_owner import LabelOwner
from splitmesh.transport.messages import FinishResample, PlanResample, PlanSplit


@pytest.fixture
def owner() -> tuple[LabelOwner, int]:
    """A label owner past PlanResample; and how many minority rows it asked distances of."""
    y = np.r_[np.zeros(80, np.int64), np.ones(20, np.int64)]
    owner = LabelOwner("labels", y, "label-sharing")
    owner.on_plan_split(PlanSplit(test=0.2, validation=0.1, seed=0))
    needs = owner.on_plan_resample(
        PlanResample(smote_ratio=1.0, under_ratio=None, k_neighbors=3, seed=0)
    )
    return owner, len(needs.positions)


@pytest.mark.parametrize(
    "bad",
    [
        lambda k: np.zeros((1, k)),  # would broadcast as if it were the whole matrix
        lambda k: np.zeros((k + 1, k + 1)),
        lambda k: np.zeros(0),  # none sent, though SMOTE needs them
        lambda k: np.full((k, k), np.nan),
        lambda k: np.zeros((k, k), np.int64),
    ],
)
def test_distances_must_be_k_by_k_finite_floats(owner, bad):
    party, k = owner
    with pytest.raises(ProtocolError, match="FinishResample: distances"):
        party.on_finish_resample(FinishResample(distances=bad(k)))


def test_the_distances_it_asked_for_plan_the_resampling(owner):
    party, k = owner
    rng = np.random.default_rng(0)
    points = rng.normal(size=(k, 2))
    distances = ((points[:, None] - points[None]) ** 2).sum(-1)
    augment = party.on_finish_resample(FinishResample(distances=distances))
    assert len(augment.rows) > 0


def test_distances_it_did_not_ask_for_are_refused():
    y = np.r_[np.zeros(80, np.int64), np.ones(20, np.int64)]
    party = LabelOwner("labels", y, "label-sharing")
    party.on_plan_split(PlanSplit(test=0.2, validation=0.1, seed=0))
    needs = party.on_plan_resample(
        PlanResample(smote_ratio=None, under_ratio=None, k_neighbors=3, seed=0)
    )
    assert len(needs.positions) == 0  # no SMOTE: no rows asked about
    with pytest.raises(ProtocolError, match="must be 0 x 0"):
        party.on_finish_resample(FinishResample(distances=np.zeros((14, 14))))
    party.on_finish_resample(FinishResample(distances=np.zeros((0, 0))))
