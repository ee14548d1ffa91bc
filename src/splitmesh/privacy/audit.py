"""``splitmesh privacy audit``: train a mesh with no protection and with each protection at
several strengths, run every attack on what crossed the boundary, and say how much leaks
at what cost in utility.

Runs are in process, each party holding only its own table; a wiretap on the transport
records what the coordinator and each domain receive (gradients, embeddings), which is
exactly what the attacks may use. The true labels and columns the attacks are scored
against are read from the label owner and the domains of this process afterwards.

A ranking mesh (the recommender) is attacked the same way: a training example's label
says whether it is a real interaction or a sampled negative, and each dimension domain's
columns are those of the user or item an example is about. Its examples are drawn anew
every epoch, so the gradients (first epoch) and the embeddings (last epoch) are scored
against the labels and rows of their own epoch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from splitmesh.config import (
    EmbeddingDP,
    GradientNoise,
    LabelDP,
    NoPeek,
    Privacy,
    SecureAggregation,
)
from splitmesh.errors import ConfigError
from splitmesh.io import atomic_write_json, atomic_write_text
from splitmesh.mesh.spec import MeshSpec
from splitmesh.privacy import attacks
from splitmesh.privacy.protections import embedding_epsilon
from splitmesh.privacy.secure_sum import add_up, decode
from splitmesh.split.common import from_wire
from splitmesh.transport.local import LocalTransport
from splitmesh.transport.messages import (
    Backward,
    Embedding,
    Forward,
    Head,
    HeadReply,
    Message,
    PlanEpoch,
)

KINDS = ("labels", "gradients", "embeddings", "nopeek", "secure_aggregation")


class Wiretap(LocalTransport):
    """Records what each party receives during training (first-epoch gradients, last-epoch
    embeddings), by training row position."""

    def __init__(self, handlers) -> None:
        super().__init__(handlers)
        self.steps: dict[tuple[str, int], np.ndarray] = {}  # (party, step) -> positions
        self.grads: dict[str, dict[int, np.ndarray]] = {}  # receiver -> position -> gradient
        self.embeddings: dict[str, dict[int, np.ndarray]] = {}  # domain -> position -> values
        self.first_epoch_labels: np.ndarray | None = None  # a ranking mesh's, as drawn

    def _grad(self, receiver: str, positions: np.ndarray | None, grad: Any) -> None:
        if positions is None or grad is None:
            return
        got = self.grads.setdefault(receiver, {})
        for p, g in zip(positions.tolist(), from_wire(grad).numpy(), strict=True):
            got.setdefault(p, g)  # the first epoch's: what an attacker sees earliest

    def request(self, party: str, msg: Message) -> Message:
        if isinstance(msg, Forward) and msg.grad is not None:
            self._grad(party, self.steps.get((party, msg.grad_step)), msg.grad)
        if isinstance(msg, Backward):
            self._grad(party, self.steps.get((party, msg.step)), msg.grad)
        reply = super().request(party, msg)
        if isinstance(msg, PlanEpoch) and self.first_epoch_labels is None:
            self.first_epoch_labels = _epoch_labels(self._handlers[party].party)
        train = isinstance(msg, Forward | Head) and msg.train and msg.partition == "train"
        if isinstance(msg, Forward) and train:
            self.steps[(party, msg.step)] = msg.positions
            if isinstance(reply, Embedding):
                seen = self.embeddings.setdefault(party, {})
                values = reply.values  # masked fixed point (secure aggregation) kept as sent
                values = values if values.dtype == np.int64 else from_wire(values).numpy()
                for p, e in zip(msg.positions.tolist(), values, strict=True):
                    seen[p] = e
        if isinstance(msg, Head) and train and isinstance(reply, HeadReply):
            self._grad("coordinator", msg.positions, reply.grad)
        return reply


def _epoch_labels(fact) -> np.ndarray:
    """The labels of the examples a ranking mesh's fact domain drew for this epoch."""
    return np.asarray(fact.rows._labels()).copy()


def _one_hot(codes: np.ndarray, names: list[str], top: int = 8) -> tuple[np.ndarray, list[str]]:
    """Category codes as indicator columns (each column's ``top`` most frequent values):
    what reconstructing a categorical column means."""
    cols, out = [], []
    for j, name in enumerate(names):
        values, counts = np.unique(codes[:, j], return_counts=True)
        for v in values[np.argsort(-counts)][:top]:
            cols.append((codes[:, j] == v).astype(np.float64))
            out.append(f"{name}={v}")
    x = np.stack(cols, axis=1) if cols else np.zeros((len(codes), 0))
    return x, out


ATTACK_ROWS = 20_000  # rows each attack is fitted and scored on, at most (a fixed sample)


def _stack(rows: dict[int, np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
    """The recorded rows by position (a fixed sample of ``ATTACK_ROWS`` when more: a ranking
    mesh records hundreds of thousands of examples)."""
    pos = np.array(sorted(p for p in rows if p < n), dtype=np.int64)
    if len(pos) > ATTACK_ROWS:  # the same positions give the same sample
        pos = np.sort(np.random.default_rng(0).choice(pos, ATTACK_ROWS, replace=False))
    return pos, np.stack([rows[p] for p in pos]) if len(pos) else np.zeros((0, 1))


def ladder(kind: str, given: Any, scale: dict[str, float]) -> list[Any]:
    """Three strengths of one protection, weakest first: around the mesh file's setting
    when it has one, else from the unprotected run's own scale (median gradient and
    embedding norms), so the noise is sized to what it hides."""
    if kind == "labels":
        eps = [given.epsilon * 2, given.epsilon, given.epsilon / 2] if given else [4.0, 1.0, 0.25]
        return [LabelDP(epsilon=e) for e in eps]
    if kind == "gradients":
        norm = given.max_norm if given else scale["gradient_norm"]
        sig = [given.sigma / 2, given.sigma, given.sigma * 2] if given else [0.5, 1.0, 2.0]
        return [GradientNoise(max_norm=norm, sigma=s) for s in sig]
    if kind == "nopeek":
        w = [given.weight / 2, given.weight, given.weight * 2] if given else [0.02, 0.1, 0.5]
        return [NoPeek(weight=x) for x in w]
    if kind == "secure_aggregation":  # on or off: its strength is exactness, not noise
        return [given or SecureAggregation()]
    clip = given.clip if given else scale["embedding_norm"]
    mult = (
        [given.noise_multiplier / 2, given.noise_multiplier, given.noise_multiplier * 2]
        if given
        else [0.25, 1.0, 4.0]
    )
    delta = given.delta if given else 1e-5
    return [EmbeddingDP(clip=clip, noise_multiplier=m, delta=delta) for m in mult]


def audit_run(spec: MeshSpec, mode: str, work: Path) -> dict:
    """Train ``spec`` once in process, wiretapped; its utility and every attack's result."""
    from splitmesh.split.trainer import fit
    from splitmesh.usecases.train import coordinator, local_domains

    tap = Wiretap(local_domains(spec, mode, model_dir=work, state_dir=None))
    coord = coordinator(spec, tap, mode, None)
    try:
        if spec.task == "ranking":
            coord.prepare()
        else:
            coord.prepare(
                test=spec.split.test, validation=spec.split.validation, resample=spec.resample
            )
        coord.build()
        check_one_part(spec, coord)
        result = fit(coord, spec.training, progress=False)
        metrics = coord.evaluate(["val", "test"])["test"]
        found = attack(spec, coord, tap)
    finally:
        coord.close()
        tap.close()
    return {"utility": metrics, "epochs_run": len(result.losses), **found}


def check_one_part(spec: MeshSpec, coord) -> None:
    """The attacks read what the parties hold of an epoch by position: an epoch planned a
    part at a time (a ranking mesh past ``ranking.part_examples``) reuses positions across
    its parts, so it is refused rather than scored against the wrong rows."""
    parts = coord.epoch_parts(spec.training.batch_size, spec.training.min_batch)
    if parts is not None and len(parts) > 1:
        raise ConfigError(
            f"mesh {spec.name!r}: the privacy audit needs each epoch in one part; this "
            f"one's {sum(parts):,} training examples come in {len(parts)} parts "
            f"(ranking.part_examples={spec.ranking.part_examples:,})",
            hint="raise ranking.part_examples (--set ranking.part_examples=N) if memory "
            "allows, or audit a sample of the fact table",
        )


def attack(spec: MeshSpec, coord, tap: Wiretap) -> dict:
    """Every attack on what ``tap`` recorded of a trained run, scored against the true
    labels and columns of this process's parties; and the scale of what crossed."""
    truth = _truth(spec, tap)
    n = len(truth["labels"])
    report: dict[str, Any] = {"label_inference": {}, "model_completion": None}
    binary = spec.task in ("binary", "ranking")
    for who, rows in tap.grads.items():
        pos, g = _stack(rows, n)
        if binary and len(pos):
            y = truth["gradient_labels"][pos]
            report["label_inference"][who] = attacks.label_inference(g, y)
    seen = {d: _stack(tap.embeddings.get(d, {}), n) for d in coord.domains}
    common = sorted(set.intersection(*(set(p.tolist()) for p, _ in seen.values())))
    idx = np.array(common, dtype=np.int64)
    if coord.secure_bits is not None and common:
        # the coordinator sees one sum of masked parts: every attack gets that sum
        parts = [e[np.searchsorted(p, idx)] for p, e in seen.values()]
        total = decode(add_up(parts), coord.secure_bits)
        seen = {d: (idx, total) for d in seen}
        joined = total
    elif common:
        joined = np.hstack([e[np.searchsorted(p, idx)] for p, e in seen.values()])
    if binary and common:  # the coordinator's view: every domain's embedding of a row
        report["model_completion"] = attacks.model_completion(joined, truth["labels"][idx])
    report["feature_reconstruction"] = {}
    for d, (pos, e) in seen.items():
        feats = truth["features"].get(d)
        if feats is not None and len(pos) and feats[0].shape[1]:
            x, names = feats
            report["feature_reconstruction"][d] = attacks.feature_reconstruction(e, x[pos], names)
    # the gradient attacks: what label protections are for. Model completion is reported
    # apart: it reads labels from what the features predict, which any party holding a few
    # labels can do however the labels are protected (only noised embeddings slow it)
    scores = [v for r in report["label_inference"].values() for v in r.values() if v is not None]
    # the gradients gradient noise is applied to: those the label side returns to the
    # coordinator (label preserving), else those the coordinator returns to the domains
    noised = {"coordinator": tap.grads["coordinator"]} if "coordinator" in tap.grads else tap.grads
    norms = [np.linalg.norm(_stack(r, n)[1], axis=1) for r in noised.values() if r]
    embeds = [np.linalg.norm(e.astype(np.float64), axis=1) for _, e in seen.values() if len(e)]
    return {
        "attacks": {
            "label_inference_auc": max(scores) if scores else None,
            "model_completion_auc": report.pop("model_completion"),
            "feature_reconstruction_r2": {
                d: r["mean"] for d, r in report["feature_reconstruction"].items()
            },
            **report,
        },
        "scale": {
            "gradient_norm": float(np.median(np.concatenate(norms))) if norms else 1.0,
            "embedding_norm": float(np.median(np.concatenate(embeds))) if embeds else 1.0,
        },
    }


def _truth(spec: MeshSpec, tap: Wiretap) -> dict:
    """The true training labels (before any randomized response) and each domain's
    prepared training columns, by training position, from the parties of this process;
    ``gradient_labels``: those of the epoch the gradients were recorded in."""
    parties = {name: node.party for name, node in tap._handlers.items()}
    features = {}
    if spec.task == "ranking":
        labels = _epoch_labels(parties[spec.fact.domain])  # the last epoch's
        first = tap.first_epoch_labels if tap.first_epoch_labels is not None else labels
        for name in spec.dimensions:
            rows = parties[name].rows  # each example's row: the last epoch's sealed plan
            plan = rows._rows.get("train")
            if plan is not None:
                codes, cat_names = rows._cat.numpy()[plan], rows.table.categorical_names
                hot, hot_names = _one_hot(codes, list(cat_names))
                x = np.hstack([rows._num.numpy()[plan], hot])
                features[name] = (x, [*rows.features.numeric_names, *hot_names])
        return {"labels": labels, "gradient_labels": first, "features": features}
    owner = parties[spec.label.domain].side
    for name, party in parties.items():
        rows = party.rows
        if hasattr(rows, "_x64") and "train" in rows._x64 and rows.prep_ is not None:
            names = list(rows.prep_.numeric.names(rows.columns))
            features[name] = (rows._x64["train"], names)
    labels = np.asarray(owner.clear_train_)
    return {"labels": labels, "gradient_labels": labels, "features": features}


def privacy_audit(
    spec: MeshSpec, out: Path, *, kinds: list[str] | None = None, progress: bool = True
) -> dict:
    """Every run of the audit; writes privacy.json, privacy.md and privacy.png in ``out``."""
    from rich.progress import Progress

    out.mkdir(parents=True, exist_ok=True)
    mode = spec.mode if spec.mode != "centralized" else "label-preserving"
    configured = {k: getattr(spec.privacy, k) for k in KINDS}
    wanted = kinds or [k for k in KINDS if configured[k] is not None] or list(KINDS)
    wanted = [k for k in wanted if k in applicable(spec)]
    bare = spec.model_copy(update={"privacy": Privacy(), "transport": "local"})
    runs = []
    with Progress(disable=not progress, transient=True) as bar:
        total = sum(len(ladder(k, configured[k], {"gradient_norm": 1, "embedding_norm": 1}))
                    for k in wanted)  # fmt: skip
        task = bar.add_task("privacy audit", total=1 + total)
        base = audit_run(bare, mode, out / "runs" / "none")
        runs.append({"protection": "none", "strength": None, "epsilon": None, **base})
        bar.advance(task)
        for kind in wanted:
            for i, p in enumerate(ladder(kind, configured[kind], base["scale"])):
                s, settings = _protected(bare, kind, p)
                r = audit_run(s, mode, out / "runs" / f"{kind}-{i}")
                runs.append(
                    {
                        "protection": kind,
                        "strength": getattr(p, _STRENGTH[kind]),
                        "settings": settings,
                        "epsilon": _epsilon(kind, p, r["epochs_run"]),
                        **r,
                    }
                )
                bar.advance(task)
    report = {"mesh": spec.name, "mode": mode, "task": spec.task, "runs": runs}
    atomic_write_json(out / "privacy.json", _jsonable(report))
    atomic_write_text(out / "privacy.md", markdown(report))
    _plot(report, out / "privacy.png")
    return report


_STRENGTH = {
    "labels": "epsilon",
    "gradients": "sigma",
    "embeddings": "noise_multiplier",
    "nopeek": "weight",
    "secure_aggregation": "precision_bits",
}


def _protected(bare: MeshSpec, kind: str, p: Any) -> tuple[MeshSpec, dict]:
    """The mesh with one protection; secure aggregation sums the embeddings, so a mesh
    that concatenates them is audited with ``aggregation: sum`` (said in its settings)."""
    update: dict[str, Any] = {"privacy": Privacy(**{kind: p})}
    settings = p.model_dump()
    if kind == "secure_aggregation" and bare.model.aggregation == "concat":
        update["model"] = bare.model.model_copy(update={"aggregation": "sum"})
        settings["aggregation"] = "sum"
    return bare.model_copy(update=update), settings


def _epsilon(kind: str, p: Any, epochs: int) -> float | None:
    if kind == "labels":
        return p.epsilon
    if kind == "embeddings":
        return embedding_epsilon(p, epochs)
    return None  # gradient noise has no formal guarantee: its effect is measured


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, default=lambda v: v.item() if hasattr(v, "item") else str(v)))


def applicable(spec: MeshSpec) -> list[str]:
    """The protections a mesh can take: randomized response needs class labels; secure
    aggregation a keyed mesh of two or more domains with features."""
    out = list(KINDS)
    if spec.task not in ("binary", "multiclass"):
        out.remove("labels")
    if spec.task == "ranking" or len(spec.embedding_domains) < 2:
        out.remove("secure_aggregation")
    return out


def headline(run: dict, task: str) -> float | None:
    """The utility figure of a run: AUPRC (binary), accuracy (multiclass), R² (regression),
    NDCG@k (ranking)."""
    if task == "ranking":
        return next((v for k, v in run["utility"].items() if k.startswith("ndcg@")), None)
    key = {"binary": "average_precision", "multiclass": "accuracy", "regression": "r2"}[task]
    return run["utility"].get(key)


UTILITY = {"binary": "AUPRC", "multiclass": "accuracy", "regression": "R²", "ranking": "NDCG@k"}


def markdown(report: dict) -> str:
    task = report["task"]
    lines = [
        f"# Privacy audit: mesh {report['mesh']} ({task}, {report['mode']})",
        "",
        "| protection | strength | epsilon | utility | label inference AUC | "
        "model completion AUC | feature reconstruction R² |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["runs"]:
        r2 = r["attacks"]["feature_reconstruction_r2"]
        lines.append(
            f"| {r['protection']} | {_f(r['strength'])} | {_f(r['epsilon'])} | "
            f"{_f(headline(r, task))} | {_f(r['attacks']['label_inference_auc'])} | "
            f"{_f(r['attacks']['model_completion_auc'])} | "
            + ", ".join(f"{d} {_f(v)}" for d, v in r2.items())
            + " |"
        )
    lines += [
        "",
        "Label inference AUC: the best of the norm, direction and spectral attacks (Li et "
        "al. 2021) on the gradients each party receives (0.5: nothing learned). Model "
        "completion AUC (Fu et al. 2022): the coordinator fits a classifier on the embeddings "
        f"of {attacks.AUX_SHARE:.0%} of the training rows whose labels it is assumed to know; "
        "it is bounded by what the features predict. Feature reconstruction R²: an inversion "
        f"model fitted on {attacks.AUX_SHARE:.0%} of a domain's rows (the attacker's prior), "
        "scored on the rest. Utility: " + UTILITY[task] + " on the test rows.",
    ]
    return "\n".join(lines) + "\n"


def _f(v: Any) -> str:
    return "-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


def _plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    task = report["task"]
    for kind in ("none", *KINDS):
        runs = [r for r in report["runs"] if r["protection"] == kind]
        if not runs:
            continue
        u = [headline(r, task) for r in runs]
        a = [r["attacks"]["label_inference_auc"] for r in runs]
        fr = [
            float(np.mean([v for v in r["attacks"]["feature_reconstruction_r2"].values()
                           if v is not None] or [np.nan]))
            for r in runs
        ]  # fmt: skip
        axes[0].plot(a, u, "o-", label=kind)
        axes[1].plot(fr, u, "o-", label=kind)
    axes[0].set_xlabel("label inference AUC (best attack)")
    axes[1].set_xlabel("feature reconstruction R² (mean over domains)")
    metric = UTILITY[task]
    for ax in axes:
        ax.set_ylabel(f"utility (test {metric})")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"privacy-utility: mesh {report['mesh']}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
