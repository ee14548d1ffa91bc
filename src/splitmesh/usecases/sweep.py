"""The paper's domains experiment (its Figures 7 and 8) on any mesh: start from the domain
that owns the labels, add the other domains one by one in mesh-file order, train each
set over several seeds, and say what each added domain brings and whether that is more
than the seeds' spread.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from splitmesh.mesh.spec import MeshSpec
from splitmesh.usecases.train import train_mesh


def domain_sets(spec: MeshSpec) -> list[MeshSpec]:
    """The mesh cut to its first 1, 2, ... domains, the label (or fact) domain first."""
    owner = spec.label.domain
    order = [owner, *(d.name for d in spec.domains if d.name != owner)]
    out = []
    for k in range(2 if spec.label_only else 1, len(order) + 1):  # labels alone train nothing
        keep = set(order[:k])
        update: dict = {"domains": [d for d in spec.domains if d.name in keep]}
        if spec.fact is not None:  # a dimension left out: the fact's key into it stays ids
            f = spec.fact
            user, item = f.user, f.item
            if user.domain not in keep:
                user = user.model_copy(update={"domain": None})
            if item.domain not in keep:
                item = item.model_copy(update={"domain": None})
            update["fact"] = f.model_copy(update={"user": user, "item": item})
        out.append(spec.model_copy(update=update))
    return out


def domains_sweep(
    spec: MeshSpec,
    out: str | Path,
    *,
    seeds: int = 3,
    compare: bool = False,
    modes: list[str] | None = None,
    progress: bool = True,
    **governance,
) -> dict:
    """Every domain set over ``seeds`` seeds (the mesh's seed, +1, ...); each run is a
    ``splitmesh train`` of its own under ``out/<k>-domains/seed-<s>/``."""
    out = Path(out)
    runs = []
    base = spec.training.seed
    for sub in domain_sets(spec):
        k = len(sub.domains)
        for seed in range(base, base + seeds):
            training = sub.training.model_copy(update={"seed": seed})
            res = train_mesh(
                sub.model_copy(update={"training": training}),
                out / f"{k}-domains" / f"seed-{seed}",
                compare=compare,
                modes=modes,
                progress=progress,
                **governance,
            )
            runs += [{**r, "seed": seed} for r in res["runs"]]
    return {
        "task": spec.task,
        "mesh": spec.name,
        "experiment": "domains-sweep",
        "metric": spec.select_metric(),
        "seeds": list(range(base, base + seeds)),
        "config": spec.model_dump(mode="json", exclude={"transport"}),
        "runs": runs,
        "summary": summarise(runs, spec.select_metric()),
    }


def summarise(runs: list[dict], metric: str) -> dict:
    """Per mode: each domain set's test ``metric`` over seeds (mean, standard deviation)
    and what each added domain changes, paired by seed (the same seed gives the same
    split and initial weights of the parts both sets share)."""
    out: dict = {}
    for mode in dict.fromkeys(r["mode"] for r in runs):
        sets: dict[tuple, dict[int, float]] = {}
        for r in runs:
            if r["mode"] == mode:
                sets.setdefault(tuple(r["domains"]), {})[r["seed"]] = r["metrics"][metric]
        ordered = sorted(sets.items(), key=lambda kv: len(kv[0]))
        rows = [
            {
                "domains": list(names),
                "mean": float(np.mean(list(v.values()))),
                "std": float(np.std(list(v.values()), ddof=1)) if len(v) > 1 else None,
                "values": [v[s] for s in sorted(v)],
            }
            for names, v in ordered
        ]
        adds = []
        for (_, a), (after, b) in itertools.pairwise(ordered):
            paired = [b[s] - a[s] for s in sorted(set(a) & set(b))]
            mean = float(np.mean(paired))
            spread = float(np.std(paired, ddof=1)) if len(paired) > 1 else None
            # within noise: the paired differences' 95% interval (2 standard errors) holds 0
            noise = None if spread is None else bool(abs(mean) <= 2 * spread / np.sqrt(len(paired)))
            adds.append(
                {
                    "domain": after[-1],
                    "delta": mean,
                    "std": spread,
                    "seeds": len(paired),
                    "within_noise": noise,
                }
            )
        out[mode] = {"sets": rows, "adds": adds}
    return out


def adds_lines(results: dict) -> list[str]:
    """'What each domain adds', one line per mode and added domain."""
    metric, lines = results["metric"], []
    for mode, s in results["summary"].items():
        for a in s["adds"]:
            if a["std"] is None:
                verdict = "one seed: its noise is unknown (use --seeds 3 or more)"
            elif a["within_noise"]:
                verdict = f"within the seeds' noise (paired sd {a['std']:.4f})"
            else:
                verdict = f"beyond the seeds' noise (paired sd {a['std']:.4f})"
            lines.append(
                f"{mode}: + {a['domain']}: {metric} {a['delta']:+.4f} over {a['seeds']} "
                f"seed(s), {verdict}"
            )
    return lines
