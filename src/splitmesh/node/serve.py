"""Start one node from its node file: load its data, build its party, serve it."""

from __future__ import annotations

from splitmesh.data.tables import check_binary_labels, read_numeric_csv
from splitmesh.errors import ConfigError
from splitmesh.node.config import SPLIT_MODES, NodeConfig
from splitmesh.split.domain import DomainParty
from splitmesh.split.label_owner import LabelOwner
from splitmesh.split.node import Node
from splitmesh.split.party import Party
from splitmesh.transport.grpc import PartyServer, fingerprint
from splitmesh.transport.messages import Hello


def build_node(cfg: NodeConfig) -> tuple[Node, str]:
    """The node's handler and a one-line description of what it holds."""
    src, state = cfg.data, cfg.state_dir
    if cfg.role == "mesh-domain":
        return _mesh_node(cfg)
    if cfg.role == "domain":
        if not src.columns:
            raise ConfigError(f"node {cfg.name!r}: a domain node lists its data.columns")
        table = read_numeric_csv(src.path, src.columns).to_numpy()
        columns = list(src.columns)

        models = cfg.models or (state / "models" if state else None)

        def make(hello: Hello) -> DomainParty:
            # one product folder per mode: each mode's run trains its own bottom model
            folder = models / hello.mode if models else None
            return DomainParty(cfg.name, table, columns, state_dir=state, model_dir=folder)

        what = f"{len(table)} rows x {len(columns)} columns of {src.path.name}"
        return Node(cfg.name, make, modes=SPLIT_MODES), what
    if src.label is None:
        raise ConfigError(f"node {cfg.name!r}: a label-owner node names its data.label column")
    df = read_numeric_csv(src.path, [], src.label)
    y = check_binary_labels(df[src.label].to_numpy(), path=str(src.path), column=src.label)

    def make(hello: Hello) -> LabelOwner:
        return LabelOwner(cfg.name, y, hello.mode, state_dir=state)

    return Node(cfg.name, make, modes=cfg.modes), f"{len(y)} labels ({int(y.sum())} positive)"


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
    ).start()
    security = "plaintext (loopback)" if cfg.tls is None else "mutual TLS"
    host = cfg.listen.rsplit(":", 1)[0]
    line = f"node {cfg.name} ({cfg.role}, {what}) listening on {host}:{server.port}, {security}"
    return server, line


def _mesh_node(cfg: NodeConfig) -> tuple[Node, str]:
    """A domain of a mesh file: reads only its own block's source (labels too, if it owns
    them); the same node trains (Hello purpose train) and scores (purpose predict)."""
    from splitmesh.mesh.spec import load_mesh
    from splitmesh.split.keyed import KeyedDomain, LabelDomain

    spec = load_mesh(cfg.mesh.file)
    name = cfg.mesh.domain
    table = spec.read_domain(name, predict=True)  # a scoring-only table may lack labels
    state = cfg.state_dir
    models = cfg.models or (state / "models" if state else None)
    what = f"{len(table)} rows of {table.source} (key {table.key})"
    product = spec.declared_product(name)  # its input contract is checked at every Hello
    if product is not None:
        what += f", product {product.descriptor.id} v{product.descriptor.version}"
    guard = None
    if cfg.policy is not None:
        from splitmesh.mesh.audit import AuditLog
        from splitmesh.mesh.policy import PolicyGuard, load_policy

        audit = AuditLog(state / "audit.jsonl") if state else None
        wire = "plaintext" if cfg.insecure or cfg.tls is None else "tls"
        columns = [*table.numeric_names, *table.categorical_names]
        own = None
        if cfg.tls is not None:
            own = fingerprint(cfg.tls.cert.read_bytes())
        guard = PolicyGuard(
            load_policy(cfg.policy), name, columns, wire=wire, audit=audit, fingerprint=own
        )
        what += f", policy {cfg.policy.name}"
    if name == spec.label.domain:

        def make(hello: Hello) -> Party:
            return LabelDomain(
                table,
                hello.mode,
                spec.task,
                purpose=hello.purpose,
                state_dir=state,
                model_dir=models,
                product=product,
            )

        return Node(cfg.name, make, modes=cfg.modes, guard=guard), what + ", with labels"

    def make_domain(hello: Hello) -> Party:
        return KeyedDomain(table, state_dir=state, model_dir=models, product=product)

    return Node(cfg.name, make_domain, modes=SPLIT_MODES, guard=guard), what
