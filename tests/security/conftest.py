"""A mesh of real node processes (mutual TLS) and a malicious coordinator that holds
nothing but the coordinator's valid certificate and the nodes' public protocol.

The attacker speaks to the nodes over raw gRPC, so it can send any envelope, well formed
or not: what the nodes must survive is anything that arrives, not what our own
coordinator would send.
"""

from __future__ import annotations

import itertools
import json
import uuid
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
import pytest

from splitmesh.data.datasets.creditcard import DOMAINS, synthetic_creditcard
from splitmesh.data.datasets.vertical import write_vertical_mesh
from splitmesh.node.config import MeshRef, NodeLimits, load_mesh_network
from splitmesh.node.launcher import LocalMesh
from splitmesh.transport.grpc import splitmesh_pb2 as pb
from splitmesh.transport.grpc import splitmesh_pb2_grpc as pb_grpc
from splitmesh.transport.grpc.server import CLIENT_ID, SEQUENCE
from splitmesh.transport.messages import Message
from splitmesh.transport.messages import envelope as to_envelope
from splitmesh.transport.messages import open_envelope as from_envelope
from tests.conftest import CREDITCARD

LIMIT_MB = 16  # each node's cap on one request, small enough to attack cheaply


def credit_frame() -> pd.DataFrame:
    """The real fraud subset when present, else synthetic rows of the same schema."""
    if CREDITCARD.is_file():
        return pd.read_csv(CREDITCARD).iloc[:, 1:]
    t = synthetic_creditcard(2000, 0)
    return pd.DataFrame(t.x, columns=list(t.columns)).assign(Class=t.y)


@pytest.fixture(scope="module")
def credit_mesh(tmp_path_factory) -> Path:
    """The fraud table cut into three domains (string keys, each missing 10% of the rows)."""
    return write_vertical_mesh(
        credit_frame(),
        DOMAINS,
        label="Class",
        label_domain="payments",
        folder=tmp_path_factory.mktemp("credit"),
        name="credit",
        string_keys=True,
        extra={"training": {"epochs": 3, "batch_size": 64, "patience": None}},
    )


@pytest.fixture(scope="module")
def nodes(tmp_path_factory, credit_mesh):
    """One mesh-domain node process per domain on 127.0.0.1, mutual TLS."""
    ref = credit_mesh.resolve()
    roles = {d: MeshRef(file=ref, domain=d) for d in DOMAINS}
    local = LocalMesh(
        tmp_path_factory.mktemp("nodes"),
        roles,
        deadline_s=30,
        limits=NodeLimits(max_message_mb=LIMIT_MB, idle_timeout_s=600),
    )
    with local:
        yield local


class Attacker:
    """The coordinator's certificate and the protocol, used as an attacker would: raw
    envelopes over gRPC to any node, in any order, in its own session."""

    def __init__(self, mesh: LocalMesh) -> None:
        net = load_mesh_network(mesh.mesh_file)
        ca, cert, key = net.tls.files().read()
        creds = grpc.ssl_channel_credentials(ca, key, cert)
        options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
        self.channels = {
            n.name: grpc.secure_channel(
                n.address, creds, options=[*options, ("grpc.ssl_target_name_override", n.name)]
            )
            for n in net.nodes
        }
        self.stubs = {name: pb_grpc.PartyStub(ch) for name, ch in self.channels.items()}
        self.session = uuid.uuid4().hex
        self._seq = itertools.count()

    def envelope(self, node: str, env: pb.Envelope, via: str = "Call") -> Message:
        """One envelope as a unary ``Call``, or as the only request of a ``Session``
        stream (what our own coordinator uses)."""
        seq = next(self._seq)
        if via == "Session":
            env.seq = seq
            stream = self.stubs[node].Session(
                iter([env]), timeout=30, metadata=((CLIENT_ID, self.session),)
            )
            return from_envelope(next(stream))
        meta = ((CLIENT_ID, self.session), (SEQUENCE, str(seq)))
        return from_envelope(self.stubs[node].Call(env, timeout=30, metadata=meta))

    def send(self, node: str, msg: Message) -> Message:
        return self.envelope(node, to_envelope(msg))

    def raw(self, node: str, kind: str, header: dict, tensors: dict | None = None) -> Message:
        """Any type name, any header, any tensors: nothing checks them on this side."""
        env = pb.Envelope(type=kind, header=json.dumps(header).encode())
        for name, arr in (tensors or {}).items():
            arr = np.ascontiguousarray(arr)
            env.tensors.add(name=name, dtype=arr.dtype.str, shape=arr.shape, data=arr.tobytes())
        return self.envelope(node, env)

    def close(self) -> None:
        for ch in self.channels.values():
            ch.close()


@pytest.fixture
def attacker(nodes):
    a = Attacker(nodes)
    yield a
    a.close()


def access_log(mesh: LocalMesh, node: str) -> list[dict]:
    """The node's own record of the calls it served."""
    path = mesh.workdir / "state" / node / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def refused(mesh: LocalMesh, node: str, kind: str) -> list[dict]:
    return [
        r
        for r in access_log(mesh, node)
        if r["event"] == "node.call" and r["input"]["type"] == kind and r["result"] == "refused"
    ]


def peak_rss_mb(mesh: LocalMesh, node: str) -> float:
    """The node process's peak resident memory so far (VmHWM)."""
    status = Path(f"/proc/{mesh.procs[node].pid}/status").read_text()
    line = next(x for x in status.splitlines() if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024
