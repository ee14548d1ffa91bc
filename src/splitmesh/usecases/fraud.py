"""Credit-card fraud detection across three domains (payments, cardholder, security).

``run_fraud`` loads (or generates) the table, gives each domain only its own columns, and
trains the same network in each requested mode on the same split and seed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

import numpy as np

from splitmesh.data.datasets.creditcard import (
    DOMAINS,
    LABEL,
    CreditCardTable,
    domain_names,
    load_creditcard,
    synthetic_creditcard,
)
from splitmesh.data.resampling import ResampleConfig
from splitmesh.data.splitting import check_fractions
from splitmesh.errors import ConfigError
from splitmesh.metrics import binary_report
from splitmesh.nn.network import NetworkSpec
from splitmesh.split import protocol as proto
from splitmesh.split.centralized import CentralizedLearner
from splitmesh.split.common import MODES, OptimConfig, check_mode, check_wire_dtype
from splitmesh.split.coordinator import Coordinator
from splitmesh.split.domain import DomainParty
from splitmesh.split.label_owner import LabelOwner
from splitmesh.split.node import in_process
from splitmesh.split.tasks import check_select_metric
from splitmesh.split.trainer import TrainConfig, fit
from splitmesh.transport.base import Transport
from splitmesh.transport.local import LocalTransport

LABEL_OWNER = "fraud-labels"  # a party apart from every domain (DESIGN.md)
REAL_SUBSET = Path("../shared/data/creditcard/creditcard_1722.csv")


@dataclasses.dataclass(frozen=True)
class FraudConfig:
    data: str | None = None  # a creditcard.csv; None with synthetic_rows=None: the real subset
    synthetic_rows: int | None = None
    domains: int = 3
    modes: tuple[str, ...] = MODES
    train: TrainConfig = dataclasses.field(
        default_factory=lambda: TrainConfig(patience=20, select_metric="log_loss")
    )
    optim: OptimConfig = dataclasses.field(default_factory=lambda: OptimConfig(weight_decay=1e-4))
    spec: NetworkSpec = dataclasses.field(default_factory=lambda: NetworkSpec(bottom=(64, 16)))
    resample: ResampleConfig = dataclasses.field(default_factory=ResampleConfig)
    test: float = 0.3
    validation: float = 0.15
    wire_dtype: str = "float32"
    reference: bool = True  # also fit a logistic regression on the same joined rows
    transport: str = "local"  # local (in-process) | grpc (nodes named in ``mesh``)
    mesh: str | None = None  # the coordinator's mesh file, for grpc
    checkpoint_dir: str | None = None  # per-epoch checkpoints (in-process parties' too)
    pipeline: bool = False  # next batch's Forward overlaps this step (one step stale)
    # publish each domain's trained bottom model as a data product: in-process, under
    # models/<mode>/<domain>; over gRPC any value asks the nodes (each keeps its own)
    models: str | None = None

    def __post_init__(self) -> None:
        for m in self.modes:
            check_mode(m)
        check_wire_dtype(self.wire_dtype)
        if self.transport not in ("local", "grpc"):
            raise ConfigError(
                f"The 'transport' parameter must be 'local' or 'grpc'. Got {self.transport!r}."
            )
        if self.transport == "grpc" and self.mesh is None:
            raise ConfigError(
                "--transport grpc needs --mesh MESH.yaml naming each node's address",
                hint="or let `splitmesh mesh up fraud ...` start local nodes and write one",
            )
        domain_names(self.domains)
        check_fractions(self.test, self.validation)
        if self.train.patience is not None:
            check_select_metric("binary", self.train.select_metric)
        if self.data is not None and self.synthetic_rows is not None:
            raise ConfigError("Give either --data or --synthetic-rows, not both.")


def load_table(cfg: FraudConfig) -> CreditCardTable | None:
    """The joined table, for the centralized baseline. Over gRPC each node reads its own
    columns, so the coordinator needs it only when a centralized run or reference is asked."""
    if cfg.synthetic_rows is not None:
        return synthetic_creditcard(cfg.synthetic_rows, cfg.train.seed)
    if cfg.data is not None:
        return load_creditcard(cfg.data)
    if cfg.transport == "grpc":
        return None
    if REAL_SUBSET.is_file():
        return load_creditcard(REAL_SUBSET)
    raise ConfigError(
        f"no data: {REAL_SUBSET} is not there and neither --data nor --synthetic-rows was given",
        hint="pass --data creditcard.csv or --synthetic-rows 100000",
    )


def fraud_nodes(data: str | Path) -> dict:
    """Node roles and data sources for ``LocalMesh``: each domain reads only its columns."""
    from splitmesh.node.config import DataSource

    data = Path(data).resolve()
    nodes = {d: ("domain", DataSource(path=data, columns=cols)) for d, cols in DOMAINS.items()}
    nodes[LABEL_OWNER] = ("label-owner", DataSource(path=data, label=LABEL))
    return nodes


def run_id(cfg: FraudConfig, mode: str) -> str:
    """Names a run by everything that changes its result, so --resume finds its own."""
    d = _config_dict(cfg)
    for k in ("modes", "reference", "transport", "mesh", "checkpoint_dir"):
        d.pop(k)
    digest = hashlib.sha256(json.dumps([mode, d], sort_keys=True).encode()).hexdigest()
    return f"fraud-{mode}-{digest[:12]}"


def _transport(cfg: FraudConfig, table: CreditCardTable | None, mode: str) -> Transport:
    names = domain_names(cfg.domains)
    if cfg.transport == "grpc":
        from splitmesh.node.config import load_mesh_network

        return load_mesh_network(cfg.mesh).connect([*names, LABEL_OWNER], f"mesh file {cfg.mesh}")
    state = Path(cfg.checkpoint_dir) / "parties" if cfg.checkpoint_dir else None
    models = Path(cfg.models) / mode if cfg.models else None
    parties = {
        d: in_process(
            DomainParty(
                d,
                table.domain(d),
                DOMAINS[d],
                state_dir=state and state / d,
                model_dir=models and models / d,
                source=table.domain_table(d),
            ),
            {proto.BOTTOM},
        )
        for d in names
    }
    owner = LabelOwner(LABEL_OWNER, table.y, mode, state_dir=state and state / LABEL_OWNER)
    parties[LABEL_OWNER] = in_process(owner, {proto.LABELS})
    return LocalTransport(parties)


def make_learner(mode: str, table: CreditCardTable | None, cfg: FraudConfig):
    """The learner for one mode, with each domain holding only its own columns."""
    names = domain_names(cfg.domains)
    run = run_id(cfg, mode)
    # one folder per run id: a sweep or a changed setting never meets another's checkpoints
    ckpt = Path(cfg.checkpoint_dir) / run if cfg.checkpoint_dir else None
    if mode == "centralized":
        if table is None:
            raise ConfigError(
                "the centralized baseline joins every column in one place: give --data "
                "(the coordinator reads the same file the nodes do)"
            )
        return CentralizedLearner(
            {d: table.domain(d) for d in names},
            table.y,
            spec=cfg.spec,
            optim=cfg.optim,
            seed=cfg.train.seed,
            run=run,
            checkpoint_dir=ckpt,
        ), None
    transport = _transport(cfg, table, mode)
    coordinator = Coordinator(
        transport,
        names,
        LABEL_OWNER,
        mode=mode,
        spec=cfg.spec,
        optim=cfg.optim,
        seed=cfg.train.seed,
        wire_dtype=cfg.wire_dtype,
        run=run,
        checkpoint_dir=ckpt,
        pipeline=cfg.pipeline,
        train=cfg.train,
    )
    return coordinator, transport


def run_mode(
    mode: str,
    table: CreditCardTable | None,
    cfg: FraudConfig,
    *,
    progress: bool = True,
    resume: bool = False,
    policy_meta: dict | None = None,
) -> dict:
    learner, transport = make_learner(mode, table, cfg)
    try:
        run = _run(
            learner, transport, mode, cfg, progress=progress, resume=resume, policy_meta=policy_meta
        )
        if transport:  # finished and recorded: the parties may drop its checkpoints
            learner.close(done=True)
        return run
    finally:
        if transport:
            learner.close()
            transport.close()


def _run(
    learner,
    transport,
    mode: str,
    cfg: FraudConfig,
    *,
    progress: bool,
    resume: bool,
    policy_meta: dict | None = None,
):
    store = learner.checkpoints
    finished = store.finished() if (resume and store) else None
    if finished is not None:
        return {**finished, "resumed_from": "finished run"}
    prep = learner.prepare(
        test=cfg.test, validation=cfg.validation, resample=cfg.resample, resume=resume
    )
    learner.build()
    prep_bytes = transport.stats.total() if transport else 0
    if transport:
        transport.stats.reset()
    t0 = time.perf_counter()
    result = fit(learner, cfg.train, progress=progress, label=mode, resume=resume)
    train_seconds = time.perf_counter() - t0
    train_bytes = transport.stats.by_phase["train"] if transport else 0
    metrics = learner.evaluate(["val", "test"])
    run = {
        "mode": mode,
        "run_id": getattr(learner, "run_id", None),  # what --resume reopens
        "transport": "in-process" if mode == "centralized" else cfg.transport,
        "domains": domain_names(cfg.domains),
        "metrics": metrics["test"],
        "validation_metrics": metrics["val"],
        "train_seconds": train_seconds,
        "seconds_per_epoch": float(np.median(result.epoch_seconds)),
        "epoch_seconds": result.epoch_seconds,
        "epochs_run": len(result.losses),
        "best_epoch": result.best_epoch,
        "epoch_losses": result.losses,
        "validation_history": result.validation,
        "wire_bytes": train_bytes,
        "wire_bytes_per_example": train_bytes / max(1, prep["rows"]["train"] * len(result.losses)),
        "wire_bytes_setup": prep_bytes,
        "rows": prep["rows"],
        "resample_notes": prep["resample_notes"],
    }
    if transport:
        run["wire_by_party"] = transport.stats.by_party()
        run["nodes"] = learner.nodes_
        if cfg.models:
            meta = {"mesh": "fraud", "metrics": metrics["test"], **(policy_meta or {})}
            run["_products"] = list(learner.publish_products(meta).values())
    if store:
        store.finish(run)
    run["_learner"] = learner
    return run


def logistic_reference(learner: CentralizedLearner, seed: int) -> dict:
    """What a user would try first: logistic regression on the same joined training rows."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=2000, random_state=seed)
    model.fit(learner.joined_["train"], learner.y_["train"])
    scores = {p: model.predict_proba(learner.joined_[p])[:, 1] for p in ("val", "test")}
    threshold = binary_report(learner.y_["val"], scores["val"])["threshold"]
    return {
        "mode": "logreg (reference)",
        "domains": list(learner.domains),
        "metrics": binary_report(learner.y_["test"], scores["test"], threshold=threshold),
    }


def plan(cfg: FraudConfig) -> dict:
    """What a governance policy judges, for each split mode of this configuration."""
    wire = "local"
    if cfg.transport == "grpc":
        from splitmesh.node.config import load_mesh_network

        net = load_mesh_network(cfg.mesh)
        wire = "plaintext" if net.insecure or net.tls is None else "tls"
    return {
        "domains": {d: DOMAINS[d] for d in domain_names(cfg.domains)},
        "transport": wire,
        "batch_size": cfg.train.batch_size,
        "epochs": cfg.train.epochs,
    }


def lineage_inputs(cfg: FraudConfig, table: CreditCardTable | None) -> list[dict]:
    from splitmesh.mesh.lineage import dataset

    source = table.source if table is not None else "nodes"
    return [
        dataset("file", f"{source}#{d}", [(c, "DOUBLE") for c in DOMAINS[d]])
        for d in domain_names(cfg.domains)
    ]


def run_fraud(
    cfg: FraudConfig, *, progress: bool = True, resume: bool = False, governance=None
) -> dict:
    """Every requested mode on the same table, split and seed; the JSON-ready results.
    ``governance`` (usecases/governance.py): judge each mode by the policy first, and
    record every run in the audit log, lineage and catalog."""
    from splitmesh.usecases.governance import governed

    table = load_table(cfg)
    runs, references = [], []
    gov = governance
    if gov is not None and gov.policy is not None:
        gov.check_modes(plan(cfg), cfg.modes, "fraud")
        # a small last batch joins the one before, as the policy's minimum asks
        train = dataclasses.replace(cfg.train, min_batch=gov.policy.min_batch_size)
        cfg = dataclasses.replace(cfg, train=train)
    policy_meta = gov.product_meta() if gov is not None else None
    inputs = lineage_inputs(cfg, table)
    for mode in cfg.modes:
        run = governed(
            gov,
            "fraud",
            run_id(cfg, mode),
            mode,
            inputs=inputs,
            config=_config_dict(cfg),
            train=lambda mode=mode: run_mode(
                mode, table, cfg, progress=progress, resume=resume, policy_meta=policy_meta
            ),
        )
        learner = run.pop("_learner", None)
        runs.append(run)
        if mode == "centralized" and cfg.reference and learner is not None:
            references.append(logistic_reference(learner, cfg.train.seed))
    if (
        cfg.reference
        and table is not None
        and not any(r["mode"] == "logreg (reference)" for r in references)
    ):
        learner, _ = make_learner(
            "centralized", table, dataclasses.replace(cfg, checkpoint_dir=None)
        )
        learner.prepare(test=cfg.test, validation=cfg.validation, resample=cfg.resample)
        references.append(logistic_reference(learner, cfg.train.seed))
    if table is not None:
        data = {"source": table.source, "rows": len(table.y), "frauds": int(table.y.sum())}
    else:  # only the nodes hold the data: what the label owner told us
        fp = runs[0].get("nodes", {}).get(LABEL_OWNER, {}).get("data", {})
        data = {"source": "nodes", "rows": fp.get("rows"), "frauds": fp.get("positives")}
    return {
        "task": "fraud",
        "data": data,
        "config": _config_dict(cfg),
        "runs": runs,
        "references": references,
    }


def run_domains_sweep(
    cfg: FraudConfig, *, progress: bool = True, resume: bool = False, governance=None
) -> dict:
    """The diversity experiment: the first 1, 2, 3 domains, same split and seed."""
    runs, references, results = [], [], {}
    for n in range(1, len(DOMAINS) + 1):
        models = str(Path(cfg.models) / f"{n}-domains") if cfg.models else None
        sub = dataclasses.replace(cfg, domains=n, models=models)
        results = run_fraud(sub, progress=progress, resume=resume, governance=governance)
        runs += results["runs"]
        references += results["references"]
    return {**results, "experiment": "domains-sweep", "runs": runs, "references": references}


def _config_dict(cfg: FraudConfig) -> dict:
    d = dataclasses.asdict(cfg)
    d["modes"] = list(cfg.modes)
    return d
