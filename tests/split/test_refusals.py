import json

import numpy as np

from splitmesh.mesh.audit import AuditLog, verify
from splitmesh.split import protocol as proto
from splitmesh.split.columns import ColumnsParty
from splitmesh.split.limits import Limits
from splitmesh.split.node import Node
from splitmesh.split.refusals import RefusalBudget
from splitmesh.transport import messages as m
from splitmesh.transport.base import Caller, Incoming


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_a_rate_per_caller():
    clock = Clock()
    budget = RefusalBudget(burst=3, per_s=2.0, clock=clock)
    assert [budget.admit("a") for _ in range(5)] == [True, True, True, False, False]
    assert budget.admit("b")  # another caller has a bucket of its own
    clock.now = 0.5  # one token back
    assert budget.admit("a") and not budget.admit("a")
    clock.now = 100.0  # never more than the burst
    assert [budget.admit("a") for _ in range(4)] == [True, True, True, False]


def test_counted_calls_are_summed_by_type_and_taken_once():
    budget = RefusalBudget(burst=1, per_s=1.0)
    for kind in ("Forward: ProtocolError", "Forward: ProtocolError", "Bye: ProtocolError"):
        budget.count("a", kind, "s1")
    entry = budget.take("a")
    assert entry.count == 3 and entry.by_type == {
        "Forward: ProtocolError": 2,
        "Bye: ProtocolError": 1,
    }
    assert entry.sessions == {"s1"} and budget.take("a") is None


def _records(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _flooded_node(log_path) -> Node:
    """A domain node whose access log is ``log_path``: 20 refused calls of a caller logged
    one by one, then (almost) none."""
    return Node(
        "d",
        lambda h: ColumnsParty("d", np.zeros((8, 2)), ["a", "b"]),
        serves={proto.BOTTOM},
        modes=["label-sharing"],
        audit=AuditLog(log_path),
        limits=Limits(refusals_burst=20, refusals_per_s=0.001),
    )


def test_a_flood_of_refused_calls_is_logged_in_full_without_a_record_each(tmp_path):
    """A caller sending 500 calls the node refuses: the first 20 get records of their own,
    the rest one record counting them, and a legitimate caller's calls are still logged
    one by one; the log verifies."""
    log_path = tmp_path / "audit.jsonl"
    node = _flooded_node(log_path)
    hostile, friend = Caller("e" * 64, "flood"), Caller("f" * 64, "coordinator")
    unserved = Incoming("WriteScores", 16, lambda check: m.WriteScores("predict"))
    for _ in range(500):
        assert isinstance(node.serve(unserved, hostile), m.ErrorReply)  # still refused
    for _ in range(3):
        node.serve(unserved, friend)
    node.close()
    records = _records(log_path)
    own = [r for r in records if r["event"] == "node.call" and r["input"]["caller"] == "e" * 64]
    assert len(own) == 20 and all(r["result"] == "refused" for r in own)
    assert sum(r["input"]["caller"] == "f" * 64 for r in records) == 3
    (summary,) = [r for r in records if r["event"] == "node.calls_suppressed"]
    assert summary["input"]["caller"] == "e" * 64 and summary["input"]["count"] == 480
    assert summary["input"]["by_type"] == {"WriteScores: ProtocolError": 480}
    assert summary["input"]["sessions"] == ["flood"]
    assert verify(log_path)["unsigned"] == 0


def test_a_long_flood_reaches_the_log_while_it_lasts(tmp_path):
    """A node killed outright (no close) must not lose a flood's count: while a caller
    keeps flooding, its count so far is written every SUMMARY_EVERY_S seconds."""
    from splitmesh.split.refusals import SUMMARY_EVERY_S

    log_path = tmp_path / "audit.jsonl"
    node = _flooded_node(log_path)
    clock = Clock()
    node.refusals = RefusalBudget(20, 0.001, clock=clock)
    hostile = Caller("e" * 64, "flood")
    unserved = Incoming("WriteScores", 16, lambda check: m.WriteScores("predict"))
    for _ in range(500):  # 50 s of flood, a call every 0.1 s
        assert isinstance(node.serve(unserved, hostile), m.ErrorReply)
        clock.now += 0.1
    # no close: what a SIGKILL leaves
    summaries = [r for r in _records(log_path) if r["event"] == "node.calls_suppressed"]
    assert len(summaries) == int(480 * 0.1 // SUMMARY_EVERY_S)
    written = sum(r["input"]["count"] for r in summaries)
    assert 480 - SUMMARY_EVERY_S / 0.1 <= written < 480
    node.close()  # a node that stops writes the rest
    summaries = [r for r in _records(log_path) if r["event"] == "node.calls_suppressed"]
    assert sum(r["input"]["count"] for r in summaries) == 480
    assert verify(log_path)["unsigned"] == 0
