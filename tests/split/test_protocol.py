"""Each boundary is enforced by the protocol: parties refuse what their role forbids."""

import numpy as np
import pytest

from splitmesh.errors import NotFittedError, PartyError
from splitmesh.split.columns import ColumnsParty
from splitmesh.transport.local import LocalTransport
from splitmesh.transport.messages import Backward, Forward, GetLabels

from .helpers import make_pair, toy_tables


def test_label_owner_refuses_labels_in_label_preserving_mode():
    tables, y = toy_tables()
    coord, _, transport = make_pair("label-preserving", tables, y)
    with pytest.raises(PartyError, match="keeps its labels"):
        transport.request("labels", GetLabels("train"))
    assert not hasattr(coord, "labels_")


def test_label_preserving_coordinator_never_receives_labels():
    tables, y = toy_tables()
    coord, _, transport = make_pair("label-preserving", tables, y)
    coord.train_step(np.arange(16), 0)
    # the coordinator received embeddings, head gradients and acks; nothing label-sized
    assert transport.stats.messages[("labels", "received")] >= 1
    assert not hasattr(coord, "_y_train")


def test_domain_refuses_a_gradient_for_the_wrong_step():
    tables, y = toy_tables()
    _, _, transport = make_pair("label-sharing", tables, y)
    transport.request("d0", Forward("train", np.arange(4), 5, True))
    with pytest.raises(PartyError, match=r"step 6.*step 5"):
        transport.request("d0", Backward(6, np.zeros((4, 4), np.float32)))


def test_domain_refuses_positions_outside_its_rows():
    tables, y = toy_tables()
    _, _, transport = make_pair("label-sharing", tables, y)
    with pytest.raises(PartyError, match="outside"):
        transport.request("d1", Forward("test", np.array([10_000]), 0, False))


def test_forward_before_setup_is_a_clear_error():
    t = LocalTransport({"d": ColumnsParty("d", np.zeros((3, 2)), ["a", "b"])})
    with pytest.raises(PartyError, match="before SetupDomain") as info:
        t.request("d", Forward("train", np.arange(2), 0, True))
    assert info.value.kind == NotFittedError.__name__
