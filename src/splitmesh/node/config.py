"""Node files, one per domain node (the coordinator's map of the nodes is
transport/network.py; reading any YAML file, yaml_files.py).

Relative paths inside a file are taken from the file's own folder, so a folder of configs
and certificates can move as a whole. Errors name the file, the field and what was expected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from splitmesh.errors import ConfigError
from splitmesh.split.limits import Limits
from splitmesh.split.protocol import SPLIT_MODES
from splitmesh.transport.grpc.tls import check_party_name
from splitmesh.transport.network import MeshNetwork, NodeAddress, TlsConfig, load_mesh_network
from splitmesh.yaml_files import Strict as _Strict
from splitmesh.yaml_files import dump, load_yaml_model

__all__ = [  # the network and file helpers live elsewhere; node files name them here too
    "MeshNetwork", "MeshRef", "NodeAddress", "NodeConfig", "NodeLimits",
    "TlsConfig", "dump", "load_mesh_network", "load_node_config",
]  # fmt: skip


class MeshRef(_Strict):
    """A mesh-domain node reads its own domain's block (source, key, columns) of a mesh file."""

    file: Path
    domain: str


class NodeLimits(_Strict):
    """What the node accepts from any caller: the wire never changes these (the node's
    ``Limits``, split/node.py, in the units of a node file)."""

    max_message_mb: int = Field(
        default=Limits.max_message_bytes // 2**20, ge=1, le=4096, description="largest request"
    )
    idle_timeout_s: float = Field(
        default=Limits.idle_timeout_s,
        gt=0,
        description="an open run with no call for this long may be replaced",
    )
    max_batch: int = Field(
        default=Limits.max_batch, ge=1, description="largest batch a run may declare"
    )
    refusals_burst: int = Field(
        default=Limits.refusals_burst,
        ge=1,
        description="refused calls of one caller logged one by one before the rate applies",
    )
    refusals_per_s: float = Field(
        default=Limits.refusals_per_s,
        gt=0,
        description="refused calls of one caller logged one by one per second, past the burst",
    )

    def limits(self) -> Limits:
        return Limits(
            self.max_message_mb * 2**20,
            self.idle_timeout_s,
            self.max_batch,
            self.refusals_burst,
            self.refusals_per_s,
        )


class NodeConfig(_Strict):
    """One node: who it is, its data, where it listens, whom it trusts."""

    name: str
    role: Literal["mesh-domain"] = "mesh-domain"  # the one role: a domain of a mesh file
    listen: str = Field(description="host:port, e.g. 0.0.0.0:50051")
    health_listen: str | None = Field(
        default=None,
        description="host:port of a plaintext port serving only the gRPC health service "
        "(for kubelet gRPC probes, which speak no TLS); the health service also answers "
        "on listen",
    )
    mesh: MeshRef = Field(description="its mesh file and which of its domains it is")
    state_dir: Path | None = Field(
        default=None,
        description="its checkpoints and access log (its own disk; default: state/<name> "
        "beside the node file)",
    )
    models: Path | None = Field(
        default=None, description="where it saves its trained part (default: state_dir/models)"
    )
    outputs: Path | None = Field(
        default=None, description="where it writes scores (default: state_dir/outputs)"
    )
    policy: Path | None = Field(
        default=None, description="mesh-domain: its own copy of the governance policy"
    )
    tls: TlsConfig | None = None
    identity: TlsConfig | None = Field(
        default=None,
        description="certificate and key it signs PSI and its audit log with (default: tls)",
    )
    limits: NodeLimits = NodeLimits()
    accept: list[str] = Field(
        default_factory=list, description="SHA-256 fingerprints of callers it serves"
    )
    insecure: bool = Field(default=False, description="plaintext; loopback only")
    threads: int = Field(
        default=1, ge=1, description="torch threads; >1 only pays for wide bottom models"
    )
    modes: list[Literal["label-sharing", "label-preserving"]] = Field(
        default_factory=lambda: list(SPLIT_MODES),
        description="label domain: the label placements it agrees to",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        try:
            return check_party_name(v)
        except ConfigError as exc:  # pydantic reports ValueErrors with the field's name
            raise ValueError(str(exc)) from None


def load_node_config(path: str | Path) -> NodeConfig:
    cfg = load_yaml_model(path, NodeConfig, "node file")
    if cfg.state_dir is None:
        cfg = cfg.model_copy(update={"state_dir": Path(path).parent / "state" / cfg.name})
    return cfg
