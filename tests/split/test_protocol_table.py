"""The protocol table is complete and consistent: every message is served or a reply,
every served message has a handler in a party of each capability named, every tensor
field it bounds exists, and a node refuses a message out of phase naming the phases."""

import dataclasses

import numpy as np
import pytest

from splitmesh.errors import ProtocolError
from splitmesh.split import protocol as proto
from splitmesh.split.columns import ColumnsParty
from splitmesh.split.domain import Domain
from splitmesh.split.entity import EntityDomain
from splitmesh.split.interactions import InteractionsParty
from splitmesh.split.keyed import KeyedDomain, Scorer
from splitmesh.split.label_owner import LabelOwner
from splitmesh.split.node import Node
from splitmesh.split.star import DimensionDomain, FactDomain
from splitmesh.transport import messages as m

PARTIES = {
    proto.BOTTOM: [ColumnsParty, KeyedDomain],
    proto.KEYS: [KeyedDomain, FactDomain, DimensionDomain],
    proto.LABELS: [LabelOwner, Scorer, Domain, InteractionsParty],
    proto.FACT: [InteractionsParty, FactDomain],
    proto.ENTITY: [EntityDomain, DimensionDomain],
}
NODE_ONLY = {m.Hello, m.Bye}  # the node itself opens and closes runs


def test_every_message_is_served_by_someone_or_is_a_reply():
    every = set(m._REGISTRY.values())
    assert every == set(proto.TABLE) | proto.REPLIES, every ^ (set(proto.TABLE) | proto.REPLIES)


@pytest.mark.parametrize("msg", sorted(proto.TABLE, key=lambda c: c.__name__))
def test_every_served_message_has_a_handler_and_valid_bounds(msg):
    rule = proto.TABLE[msg]
    assert rule.served_by and rule.train.keys() | rule.predict.keys() <= set(proto.PHASES)
    assert set(rule.train.values()) | set(rule.predict.values()) <= set(proto.PHASES)
    fields = {f.name for f in dataclasses.fields(msg)}
    assert set(rule.tensors) <= set(msg._tensor_fields) <= fields
    if msg in NODE_ONLY:
        return
    for capability in rule.served_by:  # registered explicitly (@handles), by some party
        # a Domain hands what its labels' part serves to that part
        assert any(
            msg in c.handlers or msg.__name__ in getattr(c, "routes", ())
            for c in PARTIES[capability]
        ), (
            msg.__name__,
            capability,
        )


def test_every_handler_serves_a_message_of_the_table_and_every_message_has_a_sender():
    import ast
    import inspect

    from splitmesh.split import coordinator, keyed_steps, relay, star_steps

    for parties in PARTIES.values():
        for party in parties:
            assert set(party.handlers) <= set(proto.TABLE), party
    sent = set()  # the coordinators are the only senders: each message is built there
    for module in (coordinator, keyed_steps, relay, star_steps):
        for node in ast.walk(ast.parse(inspect.getsource(module))):
            if isinstance(node, ast.Name):
                sent.add(node.id)
    assert {c.__name__ for c in proto.TABLE} <= sent, {c.__name__ for c in proto.TABLE} - sent


def test_no_reply_hands_out_weights_or_keys():
    names = {c.__name__ for c in m._REGISTRY.values()}
    assert not names & {"GetState", "State", "Keys", "Rows"}
    for c in proto.REPLIES:  # replies carry tensors of embeddings, gradients, blinded points
        assert not {f.name for f in dataclasses.fields(c)} & {"keys", "weights", "values_raw"}


def test_a_node_names_the_phase_a_message_belongs_to():
    node = Node(
        "d",
        lambda h: ColumnsParty("d", np.zeros((8, 2)), ["a", "b"]),
        serves={proto.BOTTOM},
        modes=["label-sharing"],
    )
    node.handle(m.Hello("a" * 32, "label-sharing"))
    with pytest.raises(ProtocolError, match=r"in phase 'setup' .*Backward belongs to: train"):
        node.handle(m.Backward(0, np.zeros((2, 4), np.float32)))
    with pytest.raises(ProtocolError, match="does not serve WriteScores"):
        node.handle(m.WriteScores("predict"))


def test_a_call_logged_after_the_node_closed_its_log_is_signed_too(tmp_path):
    """A server thread may still finish a call after the node signed its access log at
    stop: that record must not be left outside the signed head."""
    from splitmesh.mesh.audit import AuditLog, verify
    from splitmesh.split.node import Caller

    log = AuditLog(tmp_path / "audit.jsonl")
    node = Node(
        "d",
        lambda h: ColumnsParty("d", np.zeros((8, 2)), ["a", "b"]),
        serves={proto.BOTTOM},
        modes=["label-sharing"],
        audit=log,
    )
    node._log("Forward", Caller("f" * 64, "s"), None, m.Ack())  # hot: not synced at once
    node.close()
    node._log("Forward", Caller("f" * 64, "s"), None, m.Ack())  # a straggler after close
    done = verify(tmp_path / "audit.jsonl")
    assert done["records"] == 2 and done["unsigned"] == 0
