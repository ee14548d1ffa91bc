"""``splitmesh train`` and ``splitmesh predict``: any mesh of keyed domain tables.

Each domain reads its own source; keys are aligned by PSI; each party keeps and saves its
own model. The centralized reference (``compare``) joins the same tables in the clear, in
this process, on the same rows, split and seed.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

from splitmesh.config import Training
from splitmesh.data.alignment import plain_join_rows
from splitmesh.data.features import missing_notes
from splitmesh.data.sources import DomainTable
from splitmesh.errors import ConfigError
from splitmesh.io import atomic_write_json
from splitmesh.mesh.lineage import dataset, file_dataset
from splitmesh.mesh.policy import Policy
from splitmesh.mesh.spec import MeshSpec
from splitmesh.privacy.protections import noise_secret
from splitmesh.split.centralized import CentralizedLearner
from splitmesh.split.coordinator import Coordinator
from splitmesh.split.domain import mesh_domain
from splitmesh.split.keyed import labeled_rows
from splitmesh.split.node import Node
from splitmesh.split.saved import save_module
from splitmesh.split.tasks import Task
from splitmesh.split.trainer import announce, fit, shown_steps
from splitmesh.transport.base import Transport
from splitmesh.transport.identity import Identity
from splitmesh.transport.local import LocalTransport
from splitmesh.usecases.governance import Governance, governed
from splitmesh.usecases.star import (
    domain_order,
    star_centralized,
)

CENTRALIZED = "centralized"  # the centralized model's folder


def run_id(spec: MeshSpec, mode: str) -> str:
    """Names a run by what changes its result, so --resume finds its own checkpoints."""
    d = spec.model_dump(mode="json", exclude={"transport", "mode"})
    digest = hashlib.sha256(json.dumps([mode, d], sort_keys=True).encode()).hexdigest()
    return f"{spec.name}-{mode}-{digest[:12]}"


def local_domains(
    spec: MeshSpec,
    mode: str,
    *,
    model_dir: Path | None,
    state_dir: Path | None,
    scores: Path | None = None,
) -> dict[str, Node]:
    """The mesh's domains in this process, made as their nodes make them (split/domain.py):
    each reads only its own table, is served by the state machine a node runs and signs its
    PSI messages with a throwaway identity."""
    ids = Identity.ephemeral(spec.domain_names)
    nodes = {}
    for name in spec.domain_names:
        domain = mesh_domain(
            spec,
            name,
            identity=ids[name],
            state_dir=state_dir and state_dir / name,
            model_dir=model_dir and model_dir / name,
            scores=(lambda hello: scores) if scores else None,
            secret=noise_secret(None, name),  # this user's key: one trust domain
        )
        nodes[name] = Node(name, domain.make, serves=domain.serves, modes=[mode])
    return nodes


def _transport(
    spec: MeshSpec,
    mode: str,
    out: Path | None,
    ckpt: bool,
    scores: Path | None = None,
    tap: bool = False,
) -> Transport:
    """The run's transport; ``tap``: wiretapped, for the privacy attacks (in process)."""
    if spec.transport != "local":
        return spec.transport.connect(spec.domain_names, f"mesh {spec.name!r}: transport")
    state = out / "checkpoints" / "parties" if (out and ckpt) else None
    nodes = local_domains(spec, mode, model_dir=out, state_dir=state, scores=scores)
    if tap:
        from splitmesh.privacy.audit import Wiretap

        return Wiretap(nodes)
    return LocalTransport(nodes)


def check_privacy_audit(spec: MeshSpec) -> None:
    """Whether a run can attach the privacy attacks to itself: they are scored against
    every domain's own labels and columns, which only an in-process run can read."""
    if spec.transport != "local":
        raise ConfigError(
            "--privacy-audit scores the attacks against the domains' own labels and columns, "
            "which only an in-process run holds",
            hint="run the mesh file in process (no transport:), or `splitmesh privacy audit`",
        )


def coordinator(
    spec: MeshSpec,
    transport: Transport,
    mode: str,
    ckpt: Path | None,
    train: Training | None = None,
) -> Coordinator:
    ranking = spec.task == "ranking"
    domains = domain_order(spec) if ranking else spec.embedding_domains
    return Coordinator(
        transport,
        domains,
        domains[0] if ranking else spec.label.domain,
        mode=mode,
        task=spec.task,
        spec=spec.model,
        ranking=spec.ranking,
        optim=spec.training,
        seed=spec.training.seed,
        wire_dtype=spec.wire_dtype,
        run=run_id(spec, mode),
        checkpoint_dir=ckpt,
        embedding_contracts=None if ranking else spec.embedding_contracts(),
        train=train or spec.training,
        pipeline=spec.training.pipeline,
        privacy=spec.privacy,
        secret=noise_secret(None, "coordinator"),
    )


# -- the centralized reference: the same tables joined in the clear --------------------------


def centralized_learner(spec: MeshSpec, ckpt: Path | None) -> tuple[CentralizedLearner, dict]:
    tables = {d.name: spec.read_domain(d.name) for d in spec.domains}
    tables[spec.label.domain], labels = labeled_rows(tables[spec.label.domain], spec.task)
    rows = plain_join_rows({d: t.key_items() for d, t in tables.items()})
    if not len(rows[spec.label.domain]):
        raise ConfigError("the domains have no key in common: nothing to train on")
    classes = len(labels.classes) if spec.task == "multiclass" else 2
    info = {"aligned": len(rows[spec.label.domain]), "classes": list(labels.classes)}
    embed = spec.embedding_domains  # a label-only domain brings its labels, no bottom
    learner = CentralizedLearner(
        {d: tables[d].numeric[rows[d]] for d in embed},
        labels.y[rows[spec.label.domain]],
        categorical={d: tables[d].categorical[rows[d]] for d in embed},
        task=Task(spec.task, n_classes=classes),
        spec=spec.model,
        optim=spec.training,
        seed=spec.training.seed,
        run=run_id(spec, "centralized"),
        checkpoint_dir=ckpt,
    )
    return learner, info


# -- one run --------------------------------------------------------------------------------


def run_mode(
    spec: MeshSpec,
    mode: str,
    out: Path,
    *,
    progress: bool = True,
    resume: bool = False,
    checkpoints: bool = True,
    min_batch: int = 1,
    product_meta: dict | None = None,
    privacy_audit: bool = False,
) -> dict:
    """One run of ``spec`` in ``mode``; ``privacy_audit``: attack what crossed the
    boundary (split modes, in process) and record what each attack learned."""
    ckpt_root = out / "checkpoints" if checkpoints else None
    ckpt = ckpt_root / run_id(spec, mode) if ckpt_root else None
    # the policy's minimum batch, if it asks for more than the mesh file
    cfg = spec.training.model_copy(update={"min_batch": max(min_batch, spec.training.min_batch)})
    transport = None
    ranking = spec.task == "ranking"
    if progress:  # reading the tables (in process) or reaching the nodes takes a moment
        where = "reaching the nodes" if spec.transport != "local" else "reading the domains' tables"
        announce(f"{mode}: {where}")
    if mode == "centralized" and ranking:
        run, optim = run_id(spec, mode), spec.training
        learner, alignment = star_centralized(spec, run=run, ckpt=ckpt, optim=optim), {}
    elif mode == "centralized":
        learner, alignment = centralized_learner(spec, ckpt)
    else:
        transport = _transport(spec, mode, out, checkpoints, tap=privacy_audit)
        learner, alignment = coordinator(spec, transport, mode, ckpt, cfg), None
    store = learner.checkpoints
    try:
        finished = store.finished() if (resume and store) else None
        if finished is not None:  # nothing left to train: the parties dropped its checkpoints
            return {**finished, "resumed_from": "finished run"}
        t0 = time.perf_counter()
        with shown_steps(learner, progress, mode):
            if ranking:
                prep = ranking_prep(learner.prepare(resume=resume))
            else:
                prep = learner.prepare(
                    test=spec.split.test,
                    validation=spec.split.validation,
                    resample=spec.resample,
                    resume=resume,
                )
        prep_seconds = time.perf_counter() - t0
        learner.build()
        if privacy_audit and mode != "centralized":
            from splitmesh.privacy.audit import check_one_part

            check_one_part(spec, learner)
        setup_bytes = transport.stats.total() if transport else 0
        if transport:
            transport.stats.reset()
        t0 = time.perf_counter()
        result = fit(learner, cfg, progress=progress, label=mode, resume=resume)
        train_seconds = time.perf_counter() - t0
        train_bytes = transport.stats.by_phase["train"] if transport else 0
        metrics = learner.evaluate(["val", "test"])
        meta = {"mesh": spec.name, "metrics": metrics["test"]}
        products = []
        if mode != "centralized":  # each party saves its part; the products they published
            products = list(learner.save_model(out, {**meta, **(product_meta or {})}).values())
            alignment = prep.get("alignment")
        elif not ranking:
            _save_centralized(learner, out / CENTRALIZED, alignment.pop("classes"), meta)
        n_train = prep["rows"]["train"]
        run = {
            "mode": mode,
            "run_id": getattr(learner, "run_id", None),  # what --resume reopens
            "transport": "in-process" if spec.transport == "local" or not transport else "grpc",
            "domains": spec.domain_names,
            "metrics": metrics["test"],
            "validation_metrics": metrics["val"],
            "alignment": alignment,
            "rows": prep["rows"],
            "notes": [
                *prep.get("notes", []),
                *prep.get("resample_notes", []),
                *_still_learning(result, cfg, mode),
            ],
            "prepare_seconds": prep_seconds,
            "train_seconds": train_seconds,
            "seconds_per_epoch": float(np.median(result.epoch_seconds))
            if result.epoch_seconds
            else 0.0,
            "epoch_seconds": [round(x, 4) for x in result.epoch_seconds],
            "epochs_run": len(result.losses),
            "pretrain_epochs": result.pretrain_epochs,  # the first ones (never kept)
            "best_epoch": result.best_epoch,
            # per epoch: the training loss, and the validation metric model selection watched
            "losses": [round(x, 6) for x in result.losses],
            "validation_curve": {
                "metric": cfg.select_metric or learner.default_metric,
                "values": [round(float(x), 6) for x in result.validation],
            },
            "wire_bytes": train_bytes,
            "wire_bytes_per_example": train_bytes / max(1, n_train * len(result.losses)),
            "wire_bytes_setup": setup_bytes,
            "_products": products,
        }
        if mode != "centralized":
            privacy = privacy_record(learner, spec, len(result.losses))
            if privacy:
                run["privacy"] = privacy
                run["notes"] += privacy["notes"]
        if privacy_audit and mode != "centralized":
            from splitmesh.privacy.audit import attack

            run["privacy_attacks"] = attack(spec, learner, transport)["attacks"]
        if mode == "centralized":  # what the model must beat, on the same rows
            run["references"] = (
                ranking_references(learner) if ranking else references(learner, spec.training.seed)
            )
        if store:
            store.finish(run)
        if transport:  # finished and recorded: the parties may drop its checkpoints
            learner.close(done=True)
        run["peak_rss_mb"] = peak_memory(run["transport"], getattr(learner, "peak_rss_mb_", {}))
        return run
    finally:
        if transport:
            learner.close()
            transport.close()


def peak_memory(transport: str, nodes: dict[str, float]) -> dict[str, float]:
    """Peak RSS in MB by process: this one (every party, in process; the coordinator over
    gRPC) and each node's, as it said when the run closed (its process's peak so far)."""
    from splitmesh.memory import peak_rss_mb

    own = "coordinator" if transport == "grpc" else "process"
    return {own: peak_rss_mb(), **(nodes if transport == "grpc" else {})}


def privacy_record(learner, spec: MeshSpec, epochs: int) -> dict | None:
    """The protections a split run's parties said they applied (each from its own mesh
    file, at Hello) and the privacy spent: randomized response's epsilon, and each
    domain's embeddings accounted over the epochs run. A note where they differ from
    what this mesh file asks for."""
    from splitmesh.config import EmbeddingDP
    from splitmesh.privacy.protections import embedding_epsilon

    applied = {p: info["privacy"] for p, info in learner.nodes_.items() if info.get("privacy")}
    if learner.mode == "label-sharing" and spec.privacy.gradients is not None:
        applied["coordinator"] = {"gradients": spec.privacy.gradients.model_dump()}
    epsilon: dict[str, dict] = {}
    for party, done in applied.items():
        if "labels" in done:
            epsilon.setdefault(party, {})["labels"] = done["labels"]["epsilon"]
        if "embeddings" in done:
            dp = EmbeddingDP(**done["embeddings"])
            epsilon.setdefault(party, {}).update(embeddings=embedding_epsilon(dp, epochs))
    asked = spec.privacy.embeddings
    notes = [
        f"privacy: this mesh file asks for embedding protection {asked.model_dump()}, but "
        f"domain {d!r} applies {applied.get(d, {}).get('embeddings') or 'none'} (its own file)"
        for d in learner.domains
        if asked is not None and applied.get(d, {}).get("embeddings") != asked.model_dump()
    ]
    if not applied and not notes:
        return None
    return {"applied": applied, "epsilon": epsilon, "notes": notes}


def _still_learning(result, cfg: Training, mode: str) -> list[str]:
    """A note when the kept epoch is the last one allowed: more epochs may still help."""
    ran = len(result.losses)
    if (
        cfg.patience is None
        or ran < cfg.epochs + result.pretrain_epochs
        or result.best_epoch != ran
    ):
        return []
    return [
        f"{mode}: the best validation epoch was the last one allowed ({ran}); the model may "
        f"still be learning (more epochs: --set training.epochs={2 * cfg.epochs})"
    ]


def _joined_rows(learner: CentralizedLearner) -> dict[str, np.ndarray]:
    """The centralized run's joined, prepared, resampled rows per partition, categorical
    columns one-hot: what a user would hand a scikit-learn model."""
    from sklearn.preprocessing import OneHotEncoder

    parts = learner.x_  # per partition, per domain: (numeric, codes)
    x = {p: np.hstack([num.numpy() for num, _ in parts[p].values()]) for p in parts}
    codes = {p: np.hstack([c.numpy() for _, c in parts[p].values()]) for p in parts}
    # resampled training rows carry no codes (resampling refuses categorical columns)
    if codes["train"].shape[1] and len(codes["train"]) == len(x["train"]):
        hot = OneHotEncoder(handle_unknown="ignore", sparse_output=False).fit(codes["train"])
        x = {p: np.hstack([x[p], hot.transform(codes[p])]) for p in x}
    return x


def references(learner: CentralizedLearner, seed: int) -> list[dict]:
    """What a user would try first, on the same joined rows as the centralized run: a
    linear model (logistic regression, or least squares) and gradient-boosted trees
    (scikit-learn's histogram GBM, its defaults)."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.linear_model import LinearRegression, LogisticRegression

    task, x, y = learner.task_, _joined_rows(learner), learner.y_
    if task.name == "regression":
        models = {
            "linear": LinearRegression(),
            "boosted trees": HistGradientBoostingRegressor(random_state=seed),
        }
    else:
        models = {
            "linear": LogisticRegression(max_iter=2000, random_state=seed),
            "boosted trees": HistGradientBoostingClassifier(random_state=seed),
        }
    out = []
    for name, model in models.items():
        model.fit(x["train"], y["train"])
        if task.name == "regression":
            predict = model.predict
        elif task.name == "binary":
            predict = lambda a, m=model: m.predict_proba(a)[:, 1]  # noqa: E731
        else:
            predict = model.predict_proba
        scores = {p: predict(x[p]) for p in ("val", "test")}
        metrics = task.evaluate(y, scores, "val", ["val", "test"])
        out.append(
            {
                "mode": f"{name} (reference)",
                "transport": "in-process",
                "domains": list(learner.domains),
                "metrics": metrics["test"],
                "validation_metrics": metrics["val"],
            }
        )
    return out


def ranking_references(learner) -> list[dict]:
    """Model-free rankings of the same test candidates: random, and ItemPop (training
    popularity)."""
    return [
        {
            "mode": name,
            "transport": "in-process",
            "domains": learner.domains[:1],
            "metrics": learner.task.reference(kind, "test"),
        }
        for kind, name in (("random", "random"), ("itempop", "ItemPop"))
    ]


def ranking_prep(prep: dict) -> dict:
    """A ranking run's preparation in the terms of any run: rows are training examples."""
    notes = missing_notes(prep.get("missing", {}), "its whole table's")  # entity rows
    rows = {"train": prep["train_examples"], "interactions": prep.get("interactions", {})}
    return {**prep, "rows": rows, "notes": notes}


def lineage_inputs(spec: MeshSpec) -> list[dict]:
    """The datasets each domain reads, as OpenLineage names them: its file, or every file
    its SQL reads (globs expanded where they match); fields from its declared contract."""
    from splitmesh.data.sources import file_names

    out = []
    for d in spec.domains:
        src = d.source_for(spec.base)
        product = spec.declared_product(d.name)
        fields = []
        if product is not None:
            props = product.input["schema"][0].get("properties", [])
            fields = [(p["name"], p.get("logicalType", "")) for p in props]
        names = [str(src.path)] if src.path else file_names(src.sql)
        found = [_located(n, src.base) for n in names]
        if not found:  # a query that names no file: the domain's table as a whole
            out.append(dataset("duckdb", f"{spec.name}.{d.name}", fields))
        out += [file_dataset(f, fields) for f in dict.fromkeys(x for xs in found for x in xs)]
    return out


def _located(name: str, base: Path) -> list[str]:
    """The files a name read by DuckDB stands for: URLs as they are, paths absolute, globs
    expanded (the pattern itself where nothing matches yet)."""
    import glob

    if "://" in name:
        return [name]
    path = Path(name) if Path(name).is_absolute() else base / name
    text = os.path.normpath(path.resolve() if not glob.has_magic(name) else path)
    matches = sorted(glob.glob(text, recursive=True)) if glob.has_magic(name) else []
    return matches or [text]


def train_mesh(
    spec: MeshSpec,
    out: str | Path,
    *,
    compare: bool = False,
    modes: list[str] | None = None,
    progress: bool = True,
    resume: bool = False,
    policy: Policy | None = None,
    audit: str | Path | None = None,
    lineage: str | Path | None = None,
    catalog: str | None = None,
    privacy_audit: bool = False,
) -> dict:
    """The mesh's mode, or each of ``modes`` (and, with ``compare``, the centralized
    reference on the same rows), under ``policy`` when given. Every decision and run event
    goes to the audit log, every run to OpenLineage and the catalog (defaults under
    ``out``: usecases/governance.py); each domain publishes its trained part as a data
    product in ``out/<domain>/``."""
    out = Path(out)
    if privacy_audit:
        check_privacy_audit(spec)
    gov = Governance(
        out,
        policy,
        audit_path=audit and Path(audit),
        lineage_path=lineage and Path(lineage),
        catalog_url=catalog,
    )
    try:
        modes = list(modes or [spec.mode])
        if compare and "centralized" not in modes:
            modes.append("centralized")
        if policy is not None:  # the centralized reference joins the tables: its own placement
            gov.check_modes(spec.plan(), modes, f"mesh {spec.name}")
        min_batch = policy.min_batch_size if policy else 1
        inputs = lineage_inputs(spec)
        config = spec.model_dump(mode="json", exclude={"transport"})
        runs = [
            governed(
                gov,
                f"mesh.{spec.name}",
                run_id(spec, m),
                m,
                inputs=inputs,
                config=config,
                train=lambda m=m: run_mode(
                    spec,
                    m,
                    out,
                    progress=progress,
                    resume=resume,
                    min_batch=min_batch,
                    product_meta=gov.product_meta(),
                    privacy_audit=privacy_audit,
                ),
            )
            for m in modes
        ]
    finally:
        gov.close()
    return {
        "task": spec.task,
        "mesh": spec.name,
        "config": spec.model_dump(mode="json", exclude={"transport"}),
        "policy": policy.facts() if policy else None,
        **gov.locations(),
        "runs": runs,
        "references": [ref for r in runs for ref in r.pop("references", [])],
    }


def predict_mesh(
    spec: MeshSpec, model_dir: str | Path, out: str | Path | None, *, progress: bool = False
) -> dict:
    """Score the rows every domain's (new) table holds; the label domain writes them: in
    process to ``out``, over the network to its node's own outputs folder (the reply names
    the file). ``progress``: each step (loading, aligning, scoring) as it starts."""
    model_dir = Path(model_dir)
    if spec.task == "ranking":
        raise ConfigError(
            f"mesh {spec.name!r} is a ranking mesh: splitmesh predict scores the rows of a "
            "binary, multiclass or regression mesh",
            hint="its trained dimension bottoms are data products under --out (ONNX)",
        )
    if spec.mode == "centralized":
        return _predict_centralized(spec, model_dir, Path(out))
    scores = Path(out).resolve() if out is not None else None
    transport = _transport(spec, spec.mode, model_dir, ckpt=False, scores=scores)
    coord = coordinator(spec, transport, spec.mode, None)
    try:
        with shown_steps(coord, progress, "predict"):
            return coord.predict(model_dir)
    finally:
        coord.close()
        transport.close()


def _save_centralized(learner: CentralizedLearner, folder: Path, classes: list, meta) -> None:
    """The whole joined model in one folder (it is a reference, not a mesh product)."""
    save_module(folder / "net.pt", learner.net_)
    threshold = meta["metrics"].get("threshold")
    atomic_write_json(
        folder / "model.json",
        {
            "run": learner.checkpoints.run if learner.checkpoints else None,
            "task": learner.task_.as_dict(),
            "classes": [c.item() if isinstance(c, np.generic) else c for c in classes],
            "threshold": threshold,
            "preps": {d: p.to_dict() for d, p in learner.preps_.items()},
            "in_features": {
                d: [p.numeric.width, list(p.categorical.cardinalities)]
                for d, p in learner.preps_.items()
            },
            **meta,
        },
    )


def _predict_centralized(spec: MeshSpec, model_dir: Path, out: Path) -> dict:
    """The centralized model scores the plain join of the new tables."""
    import torch

    from splitmesh.data.features import FeaturePrep
    from splitmesh.nn.network import SplitNetwork
    from splitmesh.split.keyed import scores_frame
    from splitmesh.split.saved import load_module, read_json

    folder = model_dir / CENTRALIZED
    meta = read_json(folder / "model.json", "the centralized model")
    tables = {d.name: spec.read_domain(d.name, predict=True) for d in spec.domains}
    rows = plain_join_rows({d: t.key_items() for d, t in tables.items()})
    task = Task(**meta["task"])
    preps = {d: FeaturePrep.from_dict(p) for d, p in meta["preps"].items()}
    xs = {}
    for d in spec.embedding_domains:
        t = tables[d]
        num, codes = preps[d].transform(t.numeric[rows[d]], t.categorical[rows[d]])
        xs[d] = (torch.from_numpy(num.astype(np.float32)), torch.from_numpy(codes))
    in_features = {d: (w, tuple(c)) for d, (w, c) in meta["in_features"].items()}
    net = SplitNetwork(spec.model, in_features, 0, out_features=task.out_features)
    net = load_module(folder / "net.pt", net, "centralized")
    with torch.no_grad():
        scores = task.scores(net.eval()(xs))
    lo = tables[spec.label.domain]
    keys = lo.keys[rows[spec.label.domain]]
    frame = scores_frame(lo.key, keys, task, scores, meta["classes"], meta.get("threshold"))
    from splitmesh.io import atomic_write_text

    atomic_write_text(out, frame.to_csv(index=False))
    return {"rows": len(frame), "columns": list(frame.columns)}


def export_domain(model: str | Path, out: str | Path, spec: MeshSpec | None = None) -> dict:
    """Re-publish a trained domain part (``OUT/<domain>`` of splitmesh train) as a product in
    ``out``: its contracts (those beside it, else derived from the domain's table through
    ``spec``), ONNX, model card; checks ONNX against PyTorch on random prepared rows."""
    from splitmesh.mesh.export import max_difference
    from splitmesh.mesh.products import DESCRIPTOR, Product, publish
    from splitmesh.split.saved import load_bottom, read_json

    model = Path(model)
    meta = read_json(model / "model.json", f"domain folder {model}")
    prep = read_json(model / "prep.json", f"domain folder {model}")
    name = meta["domain"]
    declared = Product(model) if (model / DESCRIPTOR).is_file() else None
    if spec is not None:
        table = spec.read_domain(name, predict=True)
    elif declared is not None:
        empty = np.empty((0, len(meta["numeric"])))
        table = DomainTable(
            name,
            "(trained model)",
            meta.get("key", "row"),
            np.empty(0, int),
            meta["numeric"],
            empty,
            meta["categorical"],
            np.empty((0, len(meta["categorical"])), dtype=object),
        )
    else:
        raise ConfigError(
            f"{model} holds no contracts: give --mesh so the domain's table can describe its input"
        )
    cards = tuple(meta["cardinalities"])
    bottom = load_bottom(model, meta, f"domain {name!r}")
    done = publish(
        Path(out),
        table=table,
        bottom=bottom,
        input_width=meta["input_width"],
        n_categorical=len(cards),
        cut_width=meta["cut_width"],
        prep=prep,
        meta=meta,
        declared=declared,
    )
    rng = np.random.default_rng(0)
    numeric = rng.standard_normal((256, meta["input_width"]))
    codes = (
        np.stack([rng.integers(0, c, 256) for c in cards], axis=1)
        if cards
        else (np.zeros((256, 0), dtype=np.int64))
    )
    done["max_difference"] = max_difference(Path(out) / "bottom.onnx", bottom, numeric, codes)
    return done
