"""Results as terminal tables, results.json and report.md."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from splitmesh.io import atomic_write_json, atomic_write_text


def _class_rows(m: dict) -> list[list[str]]:
    rows = []
    for key, name in (("precision", "Precision"), ("recall", "Recall"), ("f1", "F1-score")):
        rows.append([name, *(f"{m[f'{key}_{c}']:.3f}" for c in ("0", "1", "macro"))])
    rows.append(["Support", *(str(m[f"support_{c}"]) for c in ("0", "1", "macro"))])
    return rows


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


# the headline metrics of a mesh run (splitmesh train), per task
MESH_METRICS = {
    "binary": {
        "precision_1": "P(1)",
        "recall_1": "R(1)",
        "f1": "F1(1)",
        "roc_auc": "AUC",
        "average_precision": "AUPRC",
    },
    "multiclass": {"accuracy": "Acc", "macro_f1": "macro F1", "log_loss": "log loss"},
    "regression": {"rmse": "RMSE", "mae": "MAE", "r2": "R2"},
}


def _mesh_rows(results: dict) -> tuple[list[str], list[list[str]]]:
    if results["task"] == "ranking":  # HR@K, NDCG@K, Recall@K per K asked for, and MRR
        metrics = {k: k.upper().replace("RECALL", "Recall") for k in results["runs"][0]["metrics"]}
        metrics.pop("users", None)
    else:
        metrics = MESH_METRICS[results["task"]]
    names = list(metrics)
    head = ["run", "transport", *metrics.values(), "aligned", "s/epoch", "wire/ex"]
    rows = []
    for r in [*results["runs"], *results.get("references", [])]:
        m, a = r["metrics"], r.get("alignment") or {}
        wire = _fmt_bytes(r["wire_bytes_per_example"]) if r.get("wire_bytes") else "-"
        spe = f"{r['seconds_per_epoch']:.3f}" if "seconds_per_epoch" in r else "-"
        metrics = (f"{m[k]:.4f}" if k in m else "-" for k in names)
        rows.append(
            [r["mode"], r.get("transport", "-"), *metrics, str(a.get("aligned", "-")), spe, wire]
        )
    return head, rows


def print_mesh_report(results: dict, console: Console | None = None) -> None:
    """One row per run: the task's headline test metrics, alignment, cost."""
    console = console or Console()
    binary = results["task"] == "binary"
    for run in results["runs"] if binary else []:  # the paper's Table 4, one per run
        t = Table(title=f"{run['mode']}: domains {', '.join(run['domains'])}")
        for col in ("Metric", "Class 0", "Class 1", "Macro avg"):
            t.add_column(col, justify="right" if col != "Metric" else "left")
        for row in _class_rows(run["metrics"]):
            t.add_row(*row)
        console.print(t)
    head, rows = _mesh_rows(results)
    title = f"mesh {results['mesh']} ({results['task']}): test rows"
    if binary:
        title += ", class-1 threshold chosen on validation rows"
    t = Table(title=title)
    for i, col in enumerate(head):
        t.add_column(col, justify="left" if i < 2 else "right")
    for row in rows:
        t.add_row(*row)
    console.print(t)
    head, rows = _privacy_rows(results)
    if rows:
        t = Table(title="privacy: what attacks learned from what crossed the boundary")
        for i, col in enumerate(head):
            t.add_column(col, justify="left" if i < 2 else "right")
        for row in rows:
            t.add_row(*row)
        console.print(t)
    for note in dict.fromkeys(n for r in results["runs"] for n in r.get("notes", [])):
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)


def _privacy_rows(results: dict) -> tuple[list[str], list[list[str]]]:
    """``--privacy-audit``: per split run, the protections its parties applied and the best
    label attack, model completion and feature reconstruction R² by domain."""
    head = ["Mode", "Protections", "Label inference AUC", "Model completion AUC",
            "Feature reconstruction R²"]  # fmt: skip
    rows = []
    for r in results["runs"]:
        a = r.get("privacy_attacks")
        if a is None:
            continue
        applied = (r.get("privacy") or {}).get("applied", {})
        kinds = sorted({k for v in applied.values() for k in v}) or ["none"]
        r2 = ", ".join(f"{d} {_num(v)}" for d, v in a["feature_reconstruction_r2"].items())
        rows.append([r["mode"], ", ".join(kinds), _num(a["label_inference_auc"]),
                     _num(a["model_completion_auc"]), r2])  # fmt: skip
    return head, rows


def _num(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def mesh_markdown(results: dict, plots: dict[str, str] | None = None) -> str:
    """The run's report; ``plots``: run mode -> its figure, relative to the report."""
    head, rows = _mesh_rows(results)
    lines = [f"# splitmesh train: mesh {results['mesh']} ({results['task']})", ""]
    lines += ["Test rows; model selection on validation rows only.", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    for r in results["runs"] if results["task"] == "binary" else []:
        lines += ["", f"## {r['mode']} (domains: {', '.join(r['domains'])})", ""]
        lines += ["| Metric | Class 0 | Class 1 | Macro avg |", "|---|---|---|---|"]
        lines += ["| " + " | ".join(row) + " |" for row in _class_rows(r["metrics"])]
        cm, threshold = r["metrics"]["confusion_matrix"], r["metrics"]["threshold"]
        lines += ["", f"Confusion matrix [[TN, FP], [FN, TP]]: {cm}; threshold {threshold:.4f}."]
    for r in results["runs"]:
        a = r.get("alignment") or {}
        if "rows_per_domain" in a:
            per = ", ".join(f"{d} {n}" for d, n in a["rows_per_domain"].items())
            lines += ["", f"Private set intersection: {per} rows -> {a['aligned']} aligned."]
    head, rows = _privacy_rows(results)
    if rows:
        lines += ["", "## Privacy: what attacks learned from what crossed the boundary", ""]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    notes = list(dict.fromkeys(n for r in results["runs"] for n in r.get("notes", [])))
    lines += ["", *(f"- {n}" for n in notes)] if notes else []
    if plots:
        lines += ["", "## Curves", ""]
        lines += [f"![{mode}]({path})" for mode, path in plots.items()]
    return "\n".join(lines) + "\n"


def write_results(results: dict, out: str | Path, *, plot: str | None = None) -> list[Path]:
    out = Path(out)
    paths = [out / "results.json", out / "report.md"]
    atomic_write_json(paths[0], results)
    sweep = "summary" in results  # a domains sweep
    plots = {} if sweep else plot_runs(results, out)
    text = sweep_markdown(results, plot) if sweep else mesh_markdown(results, plots)
    atomic_write_text(paths[1], text + governance_markdown(results))
    return [*paths, *(out / p for p in plots.values())]


def _save(fig, path: Path) -> None:
    """``fig`` as ``path`` whole or not at all."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def plot_runs(results: dict, out: str | Path) -> dict[str, str]:
    """Per run, ``plots/<mode>.png``: training loss and the validation metric per epoch,
    then ROC and precision-recall curves (binary) or the confusion matrix (multiclass).
    Returns mode -> the file, relative to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = {}
    for run in results.get("runs", []):
        if not run.get("losses"):
            continue  # a run resumed as finished, or from before curves were kept
        m = run["metrics"]
        extra = []
        if "roc_curve" in m:
            extra = [_roc, _pr]
        elif len(m.get("confusion_matrix") or []) > 2:
            extra = [_confusion]
        fig, axes = plt.subplots(1, 1 + len(extra), figsize=(4.6 * (1 + len(extra)), 3.8))
        axes = list(axes) if extra else [axes]
        _training(axes[0], run)
        for ax, draw in zip(axes[1:], extra, strict=True):
            draw(ax, m)
        fig.suptitle(f"{results.get('mesh', '')}: {run['mode']}")
        fig.tight_layout()
        rel = f"plots/{run['mode']}.png"
        _save(fig, Path(out) / rel)
        done[run["mode"]] = rel
    return done


def _training(ax, run: dict) -> None:
    epochs = range(1, len(run["losses"]) + 1)
    ax.plot(epochs, run["losses"], marker=".", label="training loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    curve = run.get("validation_curve") or {}
    if curve.get("values"):
        val = ax.twinx()
        val.plot(epochs[: len(curve["values"])], curve["values"], color="tab:orange",
                 marker=".", label=f"validation {curve['metric']}")  # fmt: skip
        val.set_ylabel(f"validation {curve['metric']}")
        val.axvline(run["best_epoch"], color="grey", linestyle=":", label="kept epoch")
        val.legend(loc="upper right", fontsize=8)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("training")
    ax.grid(alpha=0.3)


def _roc(ax, m: dict) -> None:
    ax.plot(m["roc_curve"]["fpr"], m["roc_curve"]["tpr"], label=f"AUC {m['roc_auc']:.3f}")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test)")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)


def _pr(ax, m: dict) -> None:
    curve = m["pr_curve"]
    ax.plot(curve["recall"], curve["precision"], label=f"AUPRC {m['average_precision']:.3f}")
    base = m["support_1"] / max(1, m["support_0"] + m["support_1"])
    ax.axhline(base, color="grey", linestyle=":", label=f"prevalence {base:.3f}")
    ax.set(xlabel="recall", ylabel="precision", title="precision-recall (test)")
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)


def _confusion(ax, m: dict) -> None:
    import numpy as np

    cm = np.asarray(m["confusion_matrix"])
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center",
                color="white" if v > cm.max() / 2 else "black", fontsize=8)  # fmt: skip
    labels = m.get("classes") or list(range(len(cm)))
    ax.set_xticks(range(len(cm)), labels, rotation=45)
    ax.set_yticks(range(len(cm)), labels)
    ax.set(xlabel="predicted", ylabel="true", title="confusion matrix (test)")


def governance_markdown(results: dict) -> str:
    """The products each run published and where its audit, lineage and catalog went."""
    rows = [
        f"| {r['mode']} | {p['id']} | {p['version']} | {'@'.join(p['output_contract'])} | "
        f"`{p.get('onnx_sha256', '')[:12]}` | {p['folder']} |"
        for r in results.get("runs", [])
        for p in r.get("products", [])
    ]
    where = [
        f"- {k.replace('_', ' ')}: `{results[k]}`"
        for k in ("audit_log", "lineage", "catalog")
        if results.get(k)
    ]
    if not rows and not where:
        return ""
    lines = ["", "## Data products and records", ""]
    if rows:
        lines += [
            "| run | product | version | embedding contract | ONNX sha256 | folder |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    return "\n".join([*lines, *where, ""])


def _plot_per_mode(results: dict, out: str | Path, draw, *, ylim=None, legend_size=None) -> Path:
    """One panel per mode against the number of domains, saved as OUT/domains.png whole
    or not at all; ``draw(ax, mode)`` plots a panel's lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(out) / "domains.png"
    modes = list(dict.fromkeys(r["mode"] for r in results["runs"]))
    fig, axes = plt.subplots(1, len(modes), figsize=(5 * len(modes), 4), squeeze=False)
    for ax, mode in zip(axes[0], modes, strict=True):
        draw(ax, mode)
        ax.set_title(mode)
        ax.set_xlabel("domains taking part (cumulative)")
        if ylim:
            ax.set_ylim(*ylim)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test metric")
    axes[0][-1].legend(loc="lower right", fontsize=legend_size)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
    return path


def plot_mesh_sweep(results: dict, out: str | Path) -> Path:
    """A mesh's domains sweep: the selection metric per domain set, mean and standard
    deviation over seeds (each seed a grey dot); the axis spans the data, so the
    differences show."""

    def draw(ax, mode: str) -> None:
        sets = results["summary"][mode]["sets"]
        x = list(range(len(sets)))
        for i, s in enumerate(sets):
            ax.scatter([i] * len(s["values"]), s["values"], s=12, color="grey", alpha=0.5)
        spread = [s["std"] or 0.0 for s in sets]
        label = f"{results['metric']} (mean ± sd, {len(results['seeds'])} seeds)"
        ax.errorbar(x, [s["mean"] for s in sets], yerr=spread, marker="o", capsize=4, label=label)
        names = [sets[0]["domains"][0], *(f"+ {s['domains'][-1]}" for s in sets[1:])]
        ax.set_xticks(x, names)

    return _plot_per_mode(results, out, draw, legend_size=8)


def _sweep_rows(results: dict) -> tuple[list[str], list[list[str]]]:
    head = ["mode", "domains", "mean", "sd", "per seed"]
    rows = [
        [
            mode,
            " + ".join(row["domains"]),
            f"{row['mean']:.4f}",
            f"{row['std']:.4f}" if row["std"] is not None else "-",
            ", ".join(f"{v:.4f}" for v in row["values"]),
        ]
        for mode, s in results["summary"].items()
        for row in s["sets"]
    ]
    return head, rows


def sweep_markdown(results: dict, plot: str | None) -> str:
    from splitmesh.usecases.sweep import adds_lines

    metric = results["metric"]
    head, rows = _sweep_rows(results)
    lines = [f"# Domains sweep: mesh {results['mesh']} ({results['task']})", ""]
    lines += [f"Test {metric} per domain set over seeds {results['seeds']}.", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", "## What each domain adds", "", *(f"- {x}" for x in adds_lines(results))]
    if plot:
        lines += ["", f"![{metric} against domains]({plot})"]
    return "\n".join(lines) + "\n"


def print_sweep_report(results: dict, console: Console | None = None) -> None:
    from splitmesh.usecases.sweep import adds_lines

    console = console or Console()
    head, rows = _sweep_rows(results)
    t = Table(title=f"domains sweep: mesh {results['mesh']}, test {results['metric']}")
    for i, col in enumerate(head):
        t.add_column(col, justify="left" if i < 2 else "right")
    for row in rows:
        t.add_row(*row)
    console.print(t)
    for line in adds_lines(results):
        console.print(line, highlight=False, soft_wrap=True)


# --- recommender ------------------------------------------------------------------------------
