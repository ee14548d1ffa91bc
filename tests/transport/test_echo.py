"""gRPC alone: the echo processes a benchmark times its mesh's rounds against."""

from __future__ import annotations

import math
import statistics

import pytest

from splitmesh.transport.grpc.echo import echo_rounds


def test_echo_rounds_time_every_node_answering_what_it_was_sent():
    got = echo_rounds(2, 30, payload=4096, repeats=2)
    assert got["nodes"] == 2 and got["payload_bytes"] == 4096 and len(got["repeats"]) == 2
    # each reply is checked against its request (an echo that sent anything else raises)
    assert all(math.isfinite(t) and 0 < t < 1 for t in got["repeats"])
    assert got["seconds_per_round"] == statistics.median(got["repeats"])


def test_the_work_between_rounds_is_not_counted_in_a_round():
    got = echo_rounds(1, 5, gap=0.05, repeats=1)
    assert got["gap_seconds"] == 0.05 and got["seconds_per_round"] < 0.05


@pytest.mark.parametrize(
    "nodes, rounds, payload, gap", [(0, 10, 0, 0), (1, 0, 0, 0), (1, 10, -1, 0), (1, 10, 0, -1)]
)
def test_echo_rounds_refuses_what_it_cannot_time(nodes, rounds, payload, gap):
    with pytest.raises(ValueError, match="echo_rounds needs"):
        echo_rounds(nodes, rounds, payload=payload, gap=gap)
