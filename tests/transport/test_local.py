import numpy as np
import pytest

from splitmesh.errors import PartyError, SplitmeshError, TransportError
from splitmesh.transport.local import LocalTransport
from splitmesh.transport.messages import Ack, Embedding, Forward, Head, HeadReply, encode


class Echo:
    def __init__(self):
        self.seen = []

    def handle(self, msg):
        self.seen.append(msg)
        if msg.step < 0:
            raise SplitmeshError("negative step")
        return Embedding(msg.step, np.ones((len(msg.positions), 4), np.float32))


def test_counts_bytes_per_party_and_direction():
    t = LocalTransport({"a": Echo(), "b": Echo()})
    msg = Forward("train", np.arange(5), 1, True)
    t.request_many({"a": msg, "b": msg})
    t.request("a", msg)
    reply_len = len(encode(Embedding(1, np.ones((5, 4), np.float32))))
    assert t.stats.bytes[("a", "sent")] == 2 * len(encode(msg))
    assert t.stats.bytes[("a", "received")] == 2 * reply_len
    assert t.stats.by_party()["b"] == {"sent": len(encode(msg)), "received": reply_len}
    assert t.stats.total() == 3 * (len(encode(msg)) + reply_len)


def test_party_gets_a_decoded_copy_not_the_callers_object():
    echo = Echo()
    positions = np.arange(3)
    LocalTransport({"a": echo}).request("a", Forward("train", positions, 0, True))
    assert echo.seen[0].positions is not positions


def test_party_failure_names_party_and_call():
    t = LocalTransport({"payments": Echo()})
    with pytest.raises(PartyError, match=r"party 'payments' failed on Forward.*negative step"):
        t.request("payments", Forward("train", np.arange(2), -1, True))


def test_unknown_party():
    with pytest.raises(TransportError, match="no party named 'x'"):
        LocalTransport({"a": Echo()}).request("x", Ack())


class Diverged:
    """A party whose model diverged: its loss is NaN, which JSON cannot carry."""

    def handle(self, msg):
        return HeadReply(loss=float("nan"), grad=np.zeros((len(msg.positions), 4), np.float32))


def test_a_reply_that_cannot_travel_comes_back_as_an_error_naming_the_party():
    t = LocalTransport({"labels": Diverged()})
    with pytest.raises(PartyError, match=r"'labels' failed on Head: .*HeadReply cannot be sent"):
        t.request("labels", Head("train", np.arange(3), 0, True, np.ones((3, 4), np.float32)))
