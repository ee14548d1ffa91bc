"""Start one node from its node file: load its data, build its party, serve it.

Everything a node does with files is decided here, from its own node file: where its
checkpoints, models, scores and access log go, which limits it keeps, whom it signs as.
Nothing of that comes from the wire.
"""

from __future__ import annotations

from pathlib import Path

from splitmesh.errors import ConfigError
from splitmesh.node.config import SPLIT_MODES, NodeConfig
from splitmesh.split import protocol as proto
from splitmesh.split.node import Node
from splitmesh.split.party import Party
from splitmesh.transport.grpc import PartyServer, fingerprint
from splitmesh.transport.identity import Identity
from splitmesh.transport.messages import Hello


def _state(cfg: NodeConfig) -> Path:
    if cfg.state_dir is None:
        raise ConfigError(
            f"node {cfg.name!r} has no state_dir: it keeps its checkpoints and access log there"
        )
    return cfg.state_dir


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
    ).start()
    security = "plaintext (loopback)" if cfg.tls is None else "mutual TLS"
    host = cfg.listen.rsplit(":", 1)[0]
    line = f"node {cfg.name} ({cfg.role}, {what}) listening on {host}:{server.port}, {security}"
    return server, line


def build_node(cfg: NodeConfig) -> tuple[Node, str]:
    """A domain of a mesh file: reads only its own block's source (labels too, if it owns
    them); the same node trains (Hello purpose train) and scores (purpose predict)."""
    from splitmesh.mesh.spec import load_mesh
    from splitmesh.split.keyed import KeyedDomain, LabelDomain, label_serves
    from splitmesh.split.peer_alignment import Peers

    spec = load_mesh(cfg.mesh.file)
    name = cfg.mesh.domain
    spec.domain(name)  # a node file naming a domain the mesh lacks fails before any read
    state = _state(cfg)
    identity = _identity(cfg)
    audit = _access_log(cfg, identity)
    peers = Peers(spec.label.domain, tuple(spec.domain_names), identity) if identity else None
    rules = None
    if cfg.policy is not None:  # checked before any data is read
        from splitmesh.mesh.policy import load_policy

        rules = load_policy(cfg.policy)
    if spec.task == "ranking":
        return _star_node(cfg, spec, identity, audit, rules)
    table = spec.read_domain(name, predict=True)  # a scoring-only table may lack labels
    models = cfg.models or state / "models"
    outputs = cfg.outputs or state / "outputs"
    what = f"{len(table)} rows of {table.source} (key {table.key})"
    product = spec.declared_product(name)  # its input contract is checked at every Hello
    if product is not None:
        what += f", product {product.descriptor.id} v{product.descriptor.version}"
    guard = _guard(cfg, rules, table.features, audit)
    if guard is not None:
        what += f", policy {cfg.policy.name}"
    common = {"guard": guard, "audit": audit, "limits": cfg.limits.limits(), "state_dir": state}
    if name == spec.label.domain:

        def make(hello: Hello) -> Party:
            return LabelDomain(
                table,
                hello.mode,
                spec.task,
                purpose=hello.purpose,
                peers=peers,
                state_dir=state,
                model_dir=models,
                product=product,
                scores=outputs / f"scores-{hello.run}.csv",
            )

        serves = label_serves(not table.features)
        node = Node(cfg.name, make, serves=serves, modes=cfg.modes, **common)
        return node, what + ", with labels"

    def make_domain(hello: Hello) -> Party:
        return KeyedDomain(table, peers=peers, state_dir=state, model_dir=models, product=product)

    node = Node(
        cfg.name, make_domain, serves={proto.BOTTOM, proto.KEYS}, modes=SPLIT_MODES, **common
    )
    return node, what


def _guard(cfg: NodeConfig, rules, columns: list[str], audit):
    """The node's own governance check of every Hello and message (None: no policy)."""
    if rules is None:
        return None
    from splitmesh.mesh.policy import PolicyGuard

    wire = "plaintext" if cfg.insecure or cfg.tls is None else "tls"
    own = fingerprint(cfg.tls.cert.read_bytes()) if cfg.tls is not None else None
    return PolicyGuard(rules, cfg.mesh.domain, columns, wire=wire, audit=audit, fingerprint=own)


def _star_node(cfg: NodeConfig, spec, identity: Identity | None, audit, rules) -> tuple[Node, str]:
    """A domain of a ranking mesh (split/star.py): the fact domain, or a dimension; it
    reads only its own table and aligns keys with the fact domain under its identity."""
    from splitmesh.split.star import DimensionDomain, FactDomain, star_peers
    from splitmesh.usecases.star import DIMENSION_SERVES, FACT_SERVES

    name, state, dims = cfg.mesh.domain, _state(cfg), spec.dimensions
    fact = spec.fact.domain
    if identity is None:
        raise ConfigError(f"node {cfg.name!r} has no identity to align keys with (tls:)")
    table = spec.read_fact() if name == fact else spec.read_domain(name)
    columns = spec.plan_columns(fact) if name == fact else table.columns
    guard = _guard(cfg, rules, columns, audit)
    common = {"audit": audit, "limits": cfg.limits.limits(), "state_dir": state, "guard": guard}
    if name == fact:
        peers = star_peers(fact, list(dims), identity)

        def make(hello: Hello) -> Party:
            return FactDomain(table, hello.mode, dims, peers=peers, state_dir=state)

        what = f"{len(table)} interactions of {table.source}"
        return Node(cfg.name, make, serves=FACT_SERVES, modes=cfg.modes, **common), what
    peers = star_peers(fact, [name], identity)[name]
    models = cfg.models or state / "models"

    def make_dimension(hello: Hello) -> Party:
        return DimensionDomain(
            table, dims[name], peers=peers, state_dir=state, model_dir=models / hello.mode
        )

    what = f"{len(table)} {dims[name]} of {table.source} (key {table.key})"
    node = Node(cfg.name, make_dimension, serves=DIMENSION_SERVES, modes=SPLIT_MODES, **common)
    return node, what
