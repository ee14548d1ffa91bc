"""A hostile *node* over real gRPC with mutual TLS: the coordinator holds what every
party replies to the run's shapes and refuses the rest naming the node, as it does in
process (tests/split/test_replies.py)."""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np
import pytest

from splitmesh.config import Model, Optim
from splitmesh.errors import PartyError
from splitmesh.split.columns import ColumnsParty
from splitmesh.split.coordinator import Coordinator
from splitmesh.split.label_owner import LabelOwner
from splitmesh.transport.grpc import (
    Endpoint,
    GrpcTransport,
    PartyServer,
    TlsFiles,
    create_certificates,
)
from splitmesh.transport.messages import Head, HeadReply
from tests.split.helpers import toy_tables


@contextlib.contextmanager
def served_mesh(tmp_path, mode: str, lie: dict):
    """The toy split mesh with each party behind its own mTLS server; ``lie`` {party:
    change(msg, reply) -> reply} makes that party answer what change returns."""
    tables, y = toy_tables()
    parties = {
        d: ColumnsParty(d, t, [f"{d}_{j}" for j in range(t.shape[1])]) for d, t in tables.items()
    }
    parties["labels"] = LabelOwner("labels", y, mode)
    prints = create_certificates(tmp_path, ["coordinator", *parties])
    servers = {}
    for name, party in parties.items():
        honest = party.handle
        if name in lie:
            party.handle = lambda msg, honest=honest, change=lie[name]: change(msg, honest(msg))
        servers[name] = PartyServer(
            party,
            "127.0.0.1:0",
            name=name,
            tls=TlsFiles.for_party(tmp_path, name),
            allow=[prints["coordinator"]],
        ).start()
    endpoints = [Endpoint(n, f"127.0.0.1:{s.port}") for n, s in servers.items()]
    transport = GrpcTransport(
        endpoints, tls=TlsFiles.for_party(tmp_path, "coordinator"), deadline=20
    )
    coord = Coordinator(
        transport,
        list(tables),
        "labels",
        mode=mode,
        spec=Model(bottom=(8, 4), top=(6,)),
        optim=Optim(),
        seed=0,
    )
    try:
        coord.prepare(test=0.25, validation=0.25)
        coord.build()
        yield coord
    finally:
        transport.close()
        for s in servers.values():
            s.stop()


def _short_embedding(msg, reply):
    if type(reply).__name__ == "Embedding":
        return dataclasses.replace(reply, values=reply.values[:-1])
    return reply


@pytest.mark.parametrize("mode", ["label-sharing", "label-preserving"])
def test_a_node_sending_an_embedding_a_row_short_is_refused_by_name(tmp_path, mode):
    refused = r"party 'd1' failed on Forward: ProtocolError: sent a float32 array of shape"
    with (
        served_mesh(tmp_path, mode, {"d1": _short_embedding}) as coord,
        pytest.raises(PartyError, match=refused),
    ):
        coord.train_step(np.arange(16), 0)


def test_a_label_owner_sending_a_broadcastable_gradient_is_refused_by_name(tmp_path):
    def one_row(msg, reply):  # (1, w) would broadcast over the batch if read as is
        if isinstance(msg, Head) and msg.train:
            return HeadReply(loss=reply.loss, grad=reply.grad[:1].copy())
        return reply

    with served_mesh(tmp_path, "label-preserving", {"labels": one_row}) as coord:
        with pytest.raises(PartyError, match=r"shape \(1, 6\)") as err:
            coord.train_step(np.arange(16), 0)
        assert (err.value.party, err.value.call) == ("labels", "Head")
