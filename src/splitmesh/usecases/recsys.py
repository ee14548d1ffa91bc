"""The recommender: neural collaborative filtering across sales (interactions),
customers and products, against a centralized baseline of the same network.

``run_recsys`` loads a dataset, gives each domain only its own table, and trains every
requested mode on the same examples, negatives and ranking candidates.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

import numpy as np

from splitmesh.data.interactions import RecsysData
from splitmesh.errors import ConfigError
from splitmesh.nn.neumf import RecsysSpec
from splitmesh.split.centralized_ranker import SIDE, CentralizedRanker, recsys_domains
from splitmesh.split.common import MODES, OptimConfig, check_mode, check_wire_dtype
from splitmesh.split.entity import EntityDomain
from splitmesh.split.interactions import InteractionsParty
from splitmesh.split.ranking import RankingConfig, RankingTask
from splitmesh.split.ranking_coordinator import RankingCoordinator
from splitmesh.split.trainer import TrainConfig, fit
from splitmesh.transport.local import LocalTransport

ML100K = Path("../shared/data/ml-100k")
DATASETS = ("ml-100k", "hm", "hm-synthetic")


@dataclasses.dataclass(frozen=True)
class RecsysConfig:
    dataset: str = "ml-100k"  # ml-100k | hm (a folder of the Kaggle files) | hm-synthetic
    data: str | None = None  # the dataset's folder (ml-100k default: ../shared/data/ml-100k)
    preset: str | None = None  # H&M sampling: small | medium | large
    fraction: float | None = None  # H&M: share of customers (overrides the preset's)
    min_user: int | None = None  # H&M k-core minimums (override the preset's)
    min_item: int | None = None
    synthetic: dict | None = None  # SyntheticHM sizes for hm-synthetic
    domains: int = 3
    modes: tuple[str, ...] = MODES
    ranking: RankingConfig = dataclasses.field(default_factory=RankingConfig)
    train: TrainConfig = dataclasses.field(
        default_factory=lambda: TrainConfig(
            epochs=30, batch_size=256, patience=5, select_metric="ndcg@10"
        )
    )
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    spec: RecsysSpec = dataclasses.field(
        default_factory=lambda: RecsysSpec(gmf=16, mlp=32, top=(64, 32, 16), features=(32, 16))
    )
    wire_dtype: str = "float32"
    pipeline: bool = False
    reference: bool = True  # also train the centralized id-only NeuMF (random, ItemPop: always)
    checkpoint_dir: str | None = None
    # publish the customers / products feature bottoms as data products under
    # models/<domains>-domains/<mode>/<domain> (the sales ids are not a product)
    models: str | None = None

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ConfigError(
                f"The 'dataset' parameter must be one of {DATASETS}. Got {self.dataset!r}."
            )
        for m in self.modes:
            check_mode(m)
        check_wire_dtype(self.wire_dtype)
        recsys_domains(self.domains)
        if self.dataset == "hm" and self.data is None:
            raise ConfigError("--dataset hm needs --data FOLDER holding the Kaggle files")


def load_dataset(cfg: RecsysConfig) -> RecsysData:
    from splitmesh.data.datasets.hm import load_hm, sampling

    how = sampling(cfg.preset, fraction=cfg.fraction, min_user=cfg.min_user, min_item=cfg.min_item)
    if cfg.dataset == "ml-100k":
        from splitmesh.data.datasets.movielens import load_movielens

        folder = Path(cfg.data) if cfg.data else ML100K
        if not folder.exists():
            raise ConfigError(
                f"MovieLens 100K not found at {folder}",
                hint="give --data FOLDER with u.data, u.user, u.item (grouplens.org), "
                "or --dataset hm-synthetic",
            )
        return load_movielens(folder)
    if cfg.dataset == "hm":
        return load_hm(cfg.data, how, name=f"hm-{cfg.preset}" if cfg.preset else "hm")
    from splitmesh.data.datasets.hm_synthetic import SyntheticHM, generate_hm

    syn = SyntheticHM(**(cfg.synthetic or {}))
    folder = (
        Path(cfg.data)
        if cfg.data
        else Path("runs") / "synthetic-hm" / _digest(dataclasses.asdict(syn))
    )
    if not (folder / "transactions_train.parquet").exists():
        generate_hm(folder, syn)
    return load_hm(folder, how, name=f"hm-synthetic-{cfg.preset}" if cfg.preset else "hm-synthetic")


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def run_id(cfg: RecsysConfig, mode: str, data: RecsysData) -> str:
    d = _config_dict(cfg)
    for k in ("modes", "reference", "checkpoint_dir"):
        d.pop(k)
    return f"recsys-{mode}-{_digest([mode, d, data.summary()])}"


def make_learner(mode: str, data: RecsysData, cfg: RecsysConfig):
    """The learner for one mode; in split modes each party holds only its own table."""
    names = recsys_domains(cfg.domains)
    run = run_id(cfg, mode, data)
    ckpt = Path(cfg.checkpoint_dir) / run if cfg.checkpoint_dir else None
    common = dict(spec=cfg.spec, optim=cfg.optim, seed=cfg.train.seed, ranking=cfg.ranking)
    if mode == "centralized":
        return CentralizedRanker(data, names, run=run, checkpoint_dir=ckpt, **common), None
    state = Path(cfg.checkpoint_dir) / "parties" if cfg.checkpoint_dir else None
    parties = {
        names[0]: InteractionsParty(names[0], data, mode, state_dir=state and state / names[0])
    }
    for d in names[1:]:
        table = getattr(data, SIDE[d])
        if table is None:
            raise ConfigError(f"dataset {data.name!r} has no {SIDE[d]} table for domain {d!r}")
        models = Path(cfg.models) / f"{cfg.domains}-domains" / mode / d if cfg.models else None
        parties[d] = EntityDomain(
            d, table, SIDE[d], state_dir=state and state / d, model_dir=models, source=data.name
        )
    transport = LocalTransport(parties)
    learner = RankingCoordinator(
        transport,
        names,
        mode=mode,
        wire_dtype=cfg.wire_dtype,
        run=run,
        checkpoint_dir=ckpt,
        pipeline=cfg.pipeline,
        train=cfg.train,
        **common,
    )
    return learner, transport


def run_mode(
    mode: str,
    data: RecsysData,
    cfg: RecsysConfig,
    *,
    progress: bool = True,
    resume: bool = False,
    meta: dict | None = None,
) -> dict:
    learner, transport = make_learner(mode, data, cfg)
    store = learner.checkpoints
    finished = store.finished() if (resume and store) else None
    if finished is not None:
        return {**finished, "resumed_from": "finished run"}
    try:
        prep = learner.prepare(resume=resume)
        learner.build()
        if transport:
            transport.stats.reset()
        t0 = time.perf_counter()
        result = fit(
            learner, cfg.train, progress=progress, label=f"{data.name} {mode}", resume=resume
        )
        train_seconds = time.perf_counter() - t0
        train_bytes = transport.stats.by_phase["train"] if transport else 0
        t1 = time.perf_counter()
        metrics = learner.evaluate(["val", "test"])
        eval_seconds = time.perf_counter() - t1
        products = []
        if transport and cfg.models and len(learner.domains) > 1:
            facts = {"mesh": f"recsys {data.name}", "metrics": metrics["test"], **(meta or {})}
            products = list(learner.publish_products(facts, learner.domains[1:]).values())
    finally:
        if transport:
            transport.close()
    examples = learner.n_train * len(result.losses)
    run = {
        "mode": mode,
        "dataset": data.name,
        "domains": recsys_domains(cfg.domains),
        "metrics": metrics["test"],
        "validation_metrics": metrics["val"],
        "train_seconds": train_seconds,
        "seconds_per_epoch": float(np.median(result.epoch_seconds)),
        "eval_seconds": eval_seconds,
        "epochs_run": len(result.losses),
        "best_epoch": result.best_epoch,
        "epoch_losses": result.losses,
        "validation_history": result.validation,
        "train_examples_per_epoch": learner.n_train,
        "wire_bytes": train_bytes,
        "wire_bytes_per_example": train_bytes / max(1, examples),
        "missing_values": prep.get("missing", {}),
    }
    if store:
        store.finish(run)
    return {**run, "_products": products}


def references(
    data: RecsysData, cfg: RecsysConfig, runs: list[dict], *, progress: bool = True
) -> list[dict]:
    """Random, ItemPop (training popularity) and the centralized id-only NeuMF (reused
    from ``runs`` when one of them is exactly that)."""
    task = RankingTask(data, cfg.ranking, cfg.train.seed)
    refs = [
        {
            "mode": name,
            "dataset": data.name,
            "domains": ["sales"],
            "metrics": task.reference(kind, "test"),
        }
        for kind, name in (("random", "random"), ("itempop", "ItemPop"))
    ]
    if not cfg.reference:
        return refs
    done = [r for r in runs if r["mode"] == "centralized" and r["domains"] == ["sales"]]
    neumf = (
        done[0]
        if done
        else run_mode("centralized", data, dataclasses.replace(cfg, domains=1), progress=progress)
    )
    neumf = {k: v for k, v in neumf.items() if k != "_products"}
    refs.append({**neumf, "mode": "NeuMF ids-only"})
    return refs


def plan(cfg: RecsysConfig, data: RecsysData, mode: str) -> dict:
    """What a governance policy judges: each domain's columns, mode, wire, limits."""
    domains = {"sales": ["user", "item", "time"]}
    for d in recsys_domains(cfg.domains)[1:]:
        t = getattr(data, SIDE[d])
        domains[d] = [*t.numeric_names, *t.categorical_names] if t is not None else []
    return {
        "mode": mode,
        "domains": domains,
        "transport": "local",
        "batch_size": cfg.train.batch_size,
        "epochs": cfg.train.epochs,
    }


def governed_modes(
    data: RecsysData, cfg: RecsysConfig, *, governance=None, progress: bool, resume: bool
) -> list[dict]:
    """Every mode of ``cfg``, each judged by the policy first and recorded (audit log,
    lineage, catalog) when ``governance`` is given."""
    from splitmesh.mesh.lineage import dataset
    from splitmesh.usecases.governance import governed

    gov = governance
    if gov is not None and gov.policy is not None:
        gov.check_modes(plan(cfg, data, "-"), cfg.modes, f"recsys {data.name}")
    meta = gov.product_meta() if gov is not None else {}
    inputs = [
        dataset("splitmesh.recsys", f"{data.name}/{d}", [(c, "") for c in cols])
        for d, cols in plan(cfg, data, "-")["domains"].items()
    ]
    return [
        governed(
            gov,
            "recsys",
            run_id(cfg, m, data),
            m,
            inputs=inputs,
            config=_config_dict(cfg),
            train=lambda m=m: run_mode(m, data, cfg, progress=progress, resume=resume, meta=meta),
        )
        for m in cfg.modes
    ]


def run_recsys(
    cfg: RecsysConfig, *, progress: bool = True, resume: bool = False, governance=None
) -> dict:
    data = load_dataset(cfg)
    runs = governed_modes(data, cfg, governance=governance, progress=progress, resume=resume)
    refs = references(data, cfg, runs, progress=progress)
    return {
        "task": "recsys",
        "data": [data.summary()],
        "config": _config_dict(cfg),
        "runs": runs,
        "references": refs,
    }


def run_diversity(
    cfg: RecsysConfig, *, progress: bool = True, resume: bool = False, governance=None
) -> dict:
    """The domains experiment: sales alone, + customers, + products; same examples and seed."""
    data = load_dataset(cfg)
    runs = []
    for n in range(1, 4):
        sub = dataclasses.replace(cfg, domains=n)
        runs += governed_modes(data, sub, governance=governance, progress=progress, resume=resume)
    refs = references(data, cfg, runs, progress=progress)
    return {
        "task": "recsys",
        "experiment": "domains-sweep",
        "data": [data.summary()],
        "config": _config_dict(cfg),
        "runs": runs,
        "references": refs,
    }


def run_presets(cfg: RecsysConfig, presets: list[str], *, diversity: bool = False, **kw) -> dict:
    """One results document over several H&M sizes (the paper's Table 3 columns)."""
    parts = [
        (run_diversity if diversity else run_recsys)(dataclasses.replace(cfg, preset=p), **kw)
        for p in presets
    ]
    merged = {**parts[0], "data": [], "runs": [], "references": []}
    for part in parts:
        for key in ("data", "runs", "references"):
            merged[key] += part[key]
    merged["config"]["preset"] = list(presets)
    return merged


def _config_dict(cfg: RecsysConfig) -> dict:
    d = dataclasses.asdict(cfg)
    d["modes"] = list(cfg.modes)
    return d
