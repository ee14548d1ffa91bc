"""The coordinator's view of the network: its own TLS files and every node's address."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from splitmesh.errors import ConfigError
from splitmesh.yaml_files import Strict as _Strict
from splitmesh.yaml_files import load_yaml_model

if TYPE_CHECKING:  # a mesh file names its network without loading grpc (see mesh/spec.py)
    from splitmesh.transport.grpc import Endpoint, GrpcTransport, TlsFiles


# The largest reply the coordinator reads from a node, unless its mesh file says otherwise
DEFAULT_MAX_REPLY_MB = 1024


class TlsConfig(_Strict):
    ca: Path
    cert: Path
    key: Path

    def files(self) -> TlsFiles:
        from splitmesh.transport.grpc import TlsFiles

        return TlsFiles(self.ca, self.cert, self.key)


class NodeAddress(_Strict):
    name: str
    address: str


class MeshNetwork(_Strict):
    """The coordinator's view: its own TLS files and every node's address."""

    tls: TlsConfig | None = None
    insecure: bool = False
    deadline_s: float = Field(default=60.0, gt=0)
    retries: int = Field(default=4, ge=0)
    # the largest reply read from a node: a hostile one cannot make the coordinator hold
    # more (gRPC refuses it before it is whole); full H&M's slot embeddings are ~263 MB
    max_reply_mb: int = Field(default=DEFAULT_MAX_REPLY_MB, ge=1, le=2047)
    nodes: list[NodeAddress]

    def endpoints(self) -> list[Endpoint]:
        from splitmesh.transport.grpc import Endpoint

        return [Endpoint(n.name, n.address) for n in self.nodes]

    def connect(self, parties: list[str], where: str) -> GrpcTransport:
        """A transport to these nodes; ``where`` names this network in the error when a
        party has no node in it."""
        missing = [p for p in parties if p not in {n.name for n in self.nodes}]
        if missing:
            raise ConfigError(f"{where} has no node named {', '.join(missing)}")
        from splitmesh.transport.grpc import GrpcTransport

        return GrpcTransport(
            self.endpoints(),
            tls=self.tls.files() if self.tls else None,
            insecure=self.insecure,
            deadline=self.deadline_s,
            retries=self.retries,
            max_reply=self.max_reply_mb * 2**20,
        )


def load_mesh_network(path: str | Path) -> MeshNetwork:
    return load_yaml_model(path, MeshNetwork, "network file")
