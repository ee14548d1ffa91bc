"""Node files (one per domain node) and mesh files (the coordinator's map of the nodes).

Relative paths inside a file are taken from the file's own folder, so a folder of configs
and certificates can move as a whole. Errors name the file, the field and what was expected.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from splitmesh.errors import ConfigError, SplitmeshError
from splitmesh.split.common import MODES
from splitmesh.split.node import Limits
from splitmesh.transport.grpc import Endpoint, GrpcTransport, TlsFiles
from splitmesh.transport.grpc.tls import check_party_name

SPLIT_MODES = [m for m in MODES if m != "centralized"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsConfig(_Strict):
    ca: Path
    cert: Path
    key: Path

    def files(self) -> TlsFiles:
        return TlsFiles(self.ca, self.cert, self.key)


class DataSource(_Strict):
    path: Path = Field(description="a CSV file holding this node's columns")
    columns: list[str] = Field(default_factory=list, description="a domain's feature columns")
    label: str | None = Field(default=None, description="the label owner's label column")


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

    def limits(self) -> Limits:
        return Limits(self.max_message_mb * 2**20, self.idle_timeout_s, self.max_batch)


class NodeConfig(_Strict):
    """One node: who it is, its data, where it listens, whom it trusts."""

    name: str
    role: Literal["domain", "label-owner", "mesh-domain"]
    listen: str = Field(description="host:port, e.g. 0.0.0.0:50051")
    data: DataSource | None = Field(default=None, description="domain and label-owner roles")
    mesh: MeshRef | None = Field(default=None, description="mesh-domain role: its mesh file")
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
        description="label owner: the label placements it agrees to",
    )

    @model_validator(mode="after")
    def _source(self) -> NodeConfig:
        if self.role == "mesh-domain" and self.mesh is None:
            raise ValueError("a mesh-domain node names its mesh file and domain (mesh:)")
        if self.role != "mesh-domain" and self.data is None:
            raise ValueError(f"a {self.role} node names its data (data:)")
        return self

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        try:
            return check_party_name(v)
        except ConfigError as exc:  # pydantic reports ValueErrors with the field's name
            raise ValueError(str(exc)) from None


class NodeAddress(_Strict):
    name: str
    address: str


class MeshNetwork(_Strict):
    """The coordinator's view: its own TLS files and every node's address."""

    tls: TlsConfig | None = None
    insecure: bool = False
    deadline_s: float = Field(default=60.0, gt=0)
    retries: int = Field(default=4, ge=0)
    nodes: list[NodeAddress]

    def endpoints(self) -> list[Endpoint]:
        return [Endpoint(n.name, n.address) for n in self.nodes]

    def connect(self, parties: list[str], where: str) -> GrpcTransport:
        """A transport to these nodes; ``where`` names this network in the error when a
        party has no node in it."""
        missing = [p for p in parties if p not in {n.name for n in self.nodes}]
        if missing:
            raise ConfigError(f"{where} has no node named {', '.join(missing)}")
        return GrpcTransport(
            self.endpoints(),
            tls=self.tls.files() if self.tls else None,
            insecure=self.insecure,
            deadline=self.deadline_s,
            retries=self.retries,
        )


def resolve_paths(raw: Any, base: Path, keys: tuple[str, ...]) -> Any:
    """Make the path-valued fields of a parsed YAML mapping absolute against ``base``."""
    if isinstance(raw, dict):
        return {
            k: (
                str(base / v)
                if k in keys and isinstance(v, str) and not Path(v).is_absolute()
                else resolve_paths(v, base, keys)
            )
            for k, v in raw.items()
        }
    if isinstance(raw, list):
        return [resolve_paths(v, base, keys) for v in raw]
    return raw


def load_yaml_model(
    path: str | Path,
    model: type[BaseModel],
    what: str,
    *,
    path_keys: tuple[str, ...] = (
        "path",
        "state_dir",
        "models",
        "outputs",
        "file",
        "policy",
        "ca",
        "cert",
        "key",
    ),
    extra: dict[str, Any] | None = None,
    error: type[SplitmeshError] = ConfigError,
    overrides: Sequence[str] = (),
) -> Any:
    """A YAML file validated by ``model``; ``path_keys`` fields are made file-relative;
    ``overrides`` (``a.b=value``) are laid over it first, so errors name their field."""
    path = Path(path)
    raw = read_yaml_mapping(path, what, error)
    for setting in overrides:
        raw = override(raw, setting, f"{what} {path}")
    raw = {**resolve_paths(raw, path.parent, path_keys), **(extra or {})}
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(top level)"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise error(f"{what} {path}, field '{field}': {first['msg']}{more}") from None


def override(raw: dict, setting: str, where: str) -> dict:
    """``raw`` with ``a.b.c=value`` set (the value read as YAML: 5, 1e-3, [64, 32], null);
    a list item is addressed by its index or, for lists of named items, by its name."""
    field, sep, text = setting.partition("=")
    keys = [k for k in field.strip().split(".") if k]
    if not sep or not keys:
        raise ConfigError(f"--set {setting!r}: expected field.path=value, e.g. training.epochs=5")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {setting!r}: the value is not valid YAML: {exc}") from None

    def put(node: Any, at: list[str]) -> Any:
        key, rest = at[0], at[1:]
        if isinstance(node, list):
            named = [i for i, v in enumerate(node) if isinstance(v, dict) and v.get("name") == key]
            index = named[0] if named else int(key) if key.isdigit() else None
            if index is None or index >= len(node):
                raise ConfigError(f"--set {setting!r}: {where} has no list item {key!r}")
            return (
                [put(v, rest) if i == index else v for i, v in enumerate(node)]
                if rest
                else [value if i == index else v for i, v in enumerate(node)]
            )
        node = dict(node) if isinstance(node, dict) else {}
        node[key] = put(node.get(key, {}), rest) if rest else value
        return node

    return put(raw, keys)


def read_yaml_mapping(
    path: str | Path, what: str, error: type[SplitmeshError] = ConfigError
) -> dict:
    """A YAML file whose top level is a mapping; else ``error`` naming ``what`` and the file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise error(f"{what} {path} cannot be read: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise error(f"{what} {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise error(f"{what} {path}: expected a mapping at the top level")
    return raw


def load_node_config(path: str | Path) -> NodeConfig:
    cfg = load_yaml_model(path, NodeConfig, "node file")
    if cfg.state_dir is None:
        cfg = cfg.model_copy(update={"state_dir": Path(path).parent / "state" / cfg.name})
    return cfg


def load_mesh_network(path: str | Path) -> MeshNetwork:
    return load_yaml_model(path, MeshNetwork, "network file")


def dump(model: BaseModel, path: str | Path) -> Path:
    from splitmesh.io import atomic_write_text

    data = model.model_dump(mode="json", exclude_none=True)
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))
    return Path(path)
