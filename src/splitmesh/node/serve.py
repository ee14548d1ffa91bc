"""Start one node from its node file: load its data, build its party, serve it.

Everything a node does with files is decided here, from its own node file: where its
checkpoints, models, scores and access log go, which limits it keeps, whom it signs as.
Nothing of that comes from the wire.
"""

from __future__ import annotations

import os
from pathlib import Path

from splitmesh.errors import ConfigError
from splitmesh.node.config import SPLIT_MODES, NodeConfig
from splitmesh.privacy.protections import noise_secret
from splitmesh.split import protocol as proto
from splitmesh.split.node import Node
from splitmesh.transport.grpc import PartyServer, fingerprint
from splitmesh.transport.identity import Identity


def _state(cfg: NodeConfig) -> Path:
    if cfg.state_dir is None:
        raise ConfigError(
            f"node {cfg.name!r} has no state_dir: it keeps its checkpoints and access log there"
        )
    return cfg.state_dir


# State folders this process holds, with the open lock file that holds each: the lock
# lasts as long as the process (a node's process ends when the node stops).
_HELD: dict[Path, int] = {}


def _hold_state(cfg: NodeConfig) -> Path:
    """Its state folder, for this node alone: a second node on the same folder (a copied
    node file, a node started twice) would interleave records in one access log and
    overwrite the other's checkpoints, so it is refused while the first one runs."""
    import fcntl

    state = _state(cfg)
    key = state.resolve()
    if key in _HELD:
        return state
    state.mkdir(parents=True, exist_ok=True)
    fd = os.open(state / "node.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise ConfigError(
            f"node {cfg.name!r}: its state folder {state} is in use by another running node "
            f"(pid {holder})",
            hint="give each node its own state_dir, or stop the other node first",
        ) from None
    except OSError:  # a file system without locks: nothing to hold the folder with
        os.close(fd)
        return state
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _HELD[key] = fd
    return state


def _identity(cfg: NodeConfig) -> Identity | None:
    files = cfg.identity or cfg.tls
    return Identity.from_files(files.ca, files.cert, files.key) if files else None


def _access_log(cfg: NodeConfig, identity: Identity | None):
    """The node's audit log (policy decisions and every call served), signed with its key
    (this user's local key when the node has no identity)."""
    from splitmesh.mesh.audit import AuditLog

    return AuditLog(_state(cfg) / "audit.jsonl", signer=identity)


def start_node(cfg: NodeConfig) -> tuple[PartyServer, str]:
    """Build and start the node's server; returns it with a line saying what it serves."""
    import torch

    # Several nodes often share a host: one thread each avoids OpenMP workers spinning
    # against each other, which costs far more than it gains on small bottom models.
    torch.set_num_threads(cfg.threads)
    node, what = build_node(cfg)
    server = PartyServer(
        node,
        cfg.listen,
        name=cfg.name,
        tls=cfg.tls.files() if cfg.tls else None,
        allow=cfg.accept,
        insecure=cfg.insecure,
        max_message=node.limits.max_message_bytes,
        health_listen=cfg.health_listen,
    ).start()
    security = "plaintext (loopback)" if cfg.tls is None else "mutual TLS"
    host = cfg.listen.rsplit(":", 1)[0]
    line = f"node {cfg.name} ({cfg.role}, {what}) listening on {host}:{server.port}, {security}"
    if server.health_port is not None:
        probes = cfg.health_listen.rsplit(":", 1)[0]
        line += f"; health probes (plaintext) on {probes}:{server.health_port}"
    return server, line


def build_node(cfg: NodeConfig) -> tuple[Node, str]:
    """A domain of a mesh file (split/domain.py): reads only its own block's source
    (labels too, if it owns them); the same node trains (Hello purpose train) and scores
    (purpose predict)."""
    from splitmesh.mesh.spec import load_mesh
    from splitmesh.split.domain import mesh_domain

    spec = load_mesh(cfg.mesh.file)
    name = cfg.mesh.domain
    spec.domain(name)  # a node file naming a domain the mesh lacks fails before any read
    state = _hold_state(cfg)
    identity = _identity(cfg)
    audit = _access_log(cfg, identity)
    rules = None
    if cfg.policy is not None:  # checked before any data is read
        from splitmesh.mesh.policy import load_policy

        rules = load_policy(cfg.policy)
    if spec.task == "ranking" and identity is None:
        raise ConfigError(f"node {cfg.name!r} has no identity to align keys with (tls:)")
    outputs = cfg.outputs or state / "outputs"
    domain = mesh_domain(
        spec,
        name,
        identity=identity,
        state_dir=state,
        model_dir=cfg.models or state / "models",
        scores=lambda hello: outputs / f"scores-{hello.run}.csv",
        secret=noise_secret(identity, name),
    )
    table = domain.table
    ranking = spec.task == "ranking"
    fact = spec.fact is not None and name == spec.fact.domain
    if ranking and fact:
        what, columns = f"{len(table)} interactions of {table.source}", spec.plan_columns(name)
    elif ranking:
        what = f"{len(table)} {spec.dimensions[name]} of {table.source} (key {table.key})"
        columns = table.columns
    else:
        what, columns = f"{len(table)} rows of {table.source} (key {table.key})", table.features
        product = spec.declared_product(name)  # its input contract is checked at every Hello
        if product is not None:
            what += f", product {product.descriptor.id} v{product.descriptor.version}"
    holds_labels = name == spec.label.domain
    guard = _guard(cfg, rules, columns, audit, spec.privacy, holds_labels)
    if guard is not None:
        what += f", policy {cfg.policy.name}"
    labels = proto.LABELS in domain.serves  # the run's mode is the label owner's to allow
    if labels and not ranking:
        what += ", with labels"
    node = Node(
        cfg.name,
        domain.make,
        serves=domain.serves,
        modes=cfg.modes if labels else SPLIT_MODES,
        guard=guard,
        audit=audit,
        limits=cfg.limits.limits(),
        state_dir=state,
    )
    return node, what


def _guard(cfg: NodeConfig, rules, columns: list[str], audit, privacy, labels: bool):
    """The node's own governance check of every Hello and message (None: no policy)."""
    if rules is None:
        return None
    from splitmesh.mesh.policy import PolicyGuard

    wire = "plaintext" if cfg.insecure or cfg.tls is None else "tls"
    own = fingerprint(cfg.tls.cert.read_bytes()) if cfg.tls is not None else None
    return PolicyGuard(
        rules, cfg.mesh.domain, columns, wire=wire, audit=audit, fingerprint=own,
        privacy=privacy.model_dump(exclude_none=True), labels=labels,
    )  # fmt: skip
