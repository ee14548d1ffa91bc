"""Recommender benchmark: centralized against split (both modes), in process.

Per dataset (the recsys preset's MovieLens 100K mesh when present; synthetic H&M sampled
with the ``large`` preset): seconds per training epoch (median) and the ratio to
centralized, preparation (key alignment included), wire bytes per training example, test
HR@10 / NDCG@10, and the ratio to a plain PyTorch NeuMF of the same network (ids, the
dimension domains' feature towers, the same widths and examples per epoch) trained in the
same run (``vs plain``), and to that loop arranged as the mode's parties, each with its own
backward pass and Adam (``vs floor``: what any split of this network costs; for the
centralized row, the plain loop itself). Then the peak memory (max RSS) of generating
the synthetic data at full size (31.8M transactions) and of reading its sampled sales
table, each in its own process.

    python benchmarks/recsys.py --out benchmarks/results
    python benchmarks/recsys.py --scale 0.05 --epochs 1 --out /tmp/b   # quick look
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = ("centralized", "label-sharing", "label-preserving")


def child_peak(code: str) -> tuple[float, float]:
    """Run ``code`` in a fresh Python; its wall seconds and its own peak RSS in MB."""
    report = "from splitmesh.memory import peak_rss_mb; print(peak_rss_mb())"
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\n{report}"], check=True, capture_output=True, text=True
    )
    return time.perf_counter() - t0, float(done.stdout.split()[-1])


def plain_neumf_seconds(
    spec, examples: int, epochs: int, batch: int, parties: str | None = None
) -> float:
    """The reference: a plain PyTorch NeuMF of the mesh's network in one module and one
    loop: user and item id embeddings (GMF and MLP parts of the mesh's widths; the user's
    ``model.history`` recent items averaged into the user's, each example's drawn up front), each
    dimension domain's feature tower over its prepared rows (category embeddings by the
    same width rule, the mesh's bottom widths), the tower, the head, fused Adam, over as
    many examples per epoch as the centralized run; seconds per epoch (median).

    ``parties`` (a split mode) makes it the split's floor: the same loop, but each party
    runs its own backward pass from the gradient at its cut and its own Adam (the ids, each
    feature tower, the top; the head apart when the label owner holds it)."""
    import itertools
    import statistics

    import torch
    from floor import optimizers, step
    from torch import nn

    from splitmesh.nn.tabular import embedding_width
    from splitmesh.usecases.star import joined_data

    data, prepared = joined_data(spec)  # each dimension's rows, as the centralized run's
    n_users, n_items = data.n_users, data.n_items
    m = spec.model
    torch.manual_seed(spec.training.seed)

    def mlp(widths: list[int]) -> nn.Sequential:
        pairs = [(nn.Linear(a, b), nn.ReLU()) for a, b in itertools.pairwise(widths)]
        return nn.Sequential(*[layer for pair in pairs for layer in pair])

    class Tower(nn.Module):  # a dimension's features: numeric as is, categories embedded
        def __init__(self, numeric: torch.Tensor, codes: torch.Tensor, cards) -> None:
            super().__init__()
            self.numeric, self.codes = numeric, codes
            self.emb = nn.ModuleList(nn.Embedding(c, embedding_width(c)) for c in cards)
            width = numeric.shape[1] + sum(e.embedding_dim for e in self.emb)
            self.mlp = mlp([width, *m.bottom])

        def forward(self, rows: torch.Tensor) -> torch.Tensor:
            codes = self.codes[rows]
            parts = [self.numeric[rows], *(e(codes[:, j]) for j, e in enumerate(self.emb))]
            return self.mlp(torch.cat(parts, 1))

    towers = {
        d: Tower(torch.from_numpy(f.numeric), torch.from_numpy(f.categorical), f.cardinalities)
        for d, f in prepared.items()
    }
    sides = spec.dimensions  # domain -> "users" | "items"
    users = nn.Embedding(n_users, m.gmf + m.mlp)
    items = nn.Embedding(n_items, m.gmf + m.mlp)
    tower = mlp([2 * m.mlp + len(towers) * m.bottom[-1], *m.top])
    head = nn.Linear(m.gmf + m.top[-1], 1)
    k = m.history
    recent = nn.EmbeddingBag(n_items + 1, m.gmf + m.mlp, mode="mean", padding_idx=n_items)
    ids = [users, items, *([recent] if k else [])]
    parts = {"ids": ids} | {d: [t] for d, t in towers.items()}
    opts = optimizers(parties, parts, tower, head, spec.training.lr)
    u = torch.randint(n_users, (examples,))
    i = torch.randint(n_items, (examples,))
    r = torch.randint(n_items + 1, (examples, max(k, 1)))
    y = (torch.rand(examples) < 0.2).float()
    loss_fn, g, times = nn.BCEWithLogitsLoss(), m.gmf, []

    def top(eu: torch.Tensor, ei: torch.Tensor, feats: list[torch.Tensor]) -> torch.Tensor:
        x = torch.cat([eu[:, g:], ei[:, g:], *feats], 1)
        return torch.cat([eu[:, :g] * ei[:, :g], tower(x)], 1)

    for _ in range(epochs):
        t0 = time.perf_counter()
        for idx in torch.randperm(examples).split(batch):
            bu, bi, by = u[idx], i[idx], y[idx]
            eu, ei = users(bu), items(bi)
            if k:
                eu = eu + recent(r[idx])
            feats = {d: t(bu if sides[d] == "users" else bi) for d, t in towers.items()}
            if parties is None:
                step(opts, "all", loss_fn(head(top(eu, ei, list(feats.values()))).squeeze(1), by))
                continue
            cut = {"ids": torch.cat([eu, ei], 1), **feats}  # what each party sends
            held = {n: o.detach().requires_grad_() for n, o in cut.items()}
            hu, hi = held["ids"].split(eu.shape[1], 1)
            x = top(hu, hi, [held[d] for d in towers])
            if parties == "label-preserving":  # the label owner's head, from the activations
                hx = x.detach().requires_grad_()
                step(opts, "head", loss_fn(head(hx).squeeze(1), by))
                step(opts, "top", x, hx.grad)
            else:
                step(opts, "top", loss_fn(head(x).squeeze(1), by))
            for n, o in cut.items():
                step(opts, n, o, held[n].grad)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_dataset(path: Path, args, console) -> list[dict]:
    """Every mode of the recsys preset's mesh file ``path``, in process."""
    from splitmesh.mesh.spec import load_mesh
    from splitmesh.usecases.train import run_mode

    sets = [f"training.epochs={args.epochs}", f"training.batch_size={args.batch_size}",
            "training.patience=null"]  # fmt: skip
    spec = load_mesh(path, sets)
    rows = []
    for mode in MODES:
        run = run_mode(spec, mode, path.parent / "out", progress=False, checkpoints=False)
        rows.append(
            {
                "dataset": spec.name,
                "mode": mode,
                "train_examples_per_epoch": run["rows"]["train"],
                "seconds_per_epoch": run["seconds_per_epoch"],
                "prepare_seconds": run["prepare_seconds"],  # key alignment included
                "wire_bytes_per_example": run["wire_bytes_per_example"],
                "hr@10": run["metrics"]["hr@10"],
                "ndcg@10": run["metrics"]["ndcg@10"],
            }
        )
        console.print(f"{spec.name} {mode}: {rows[-1]['seconds_per_epoch']:.2f} s/epoch")
    n = rows[0]["train_examples_per_epoch"]
    plain = {
        m: plain_neumf_seconds(spec, n, args.epochs, args.batch_size, parties=m) for m in MODES[1:]
    }
    plain["centralized"] = plain_neumf_seconds(spec, n, args.epochs, args.batch_size)
    console.print(
        f"{spec.name} plain PyTorch NeuMF (same network): {plain['centralized']:.2f} s/epoch; "
        "with each party's own backward and Adam (the split's floor): "
        + ", ".join(f"{m} {plain[m]:.2f}" for m in MODES[1:])
    )
    base = rows[0]["seconds_per_epoch"]
    for r in rows:
        r["vs_centralized"] = r["seconds_per_epoch"] / base
        r["plain_neumf_seconds_per_epoch"] = plain["centralized"]
        r["vs_plain_neumf"] = r["seconds_per_epoch"] / plain["centralized"]
        # the plain loop of the same arrangement: one module centralized, parties split
        r["plain_same_parties_seconds_per_epoch"] = plain[r["mode"]]
        r["vs_plain_same_parties"] = r["seconds_per_epoch"] / plain[r["mode"]]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--scale", type=float, default=1.0, help="share of the full H&M size")
    ap.add_argument("--preset", default="large")
    ap.add_argument("--work", type=Path, default=None, help="where the synthetic data goes")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()

    from rich.console import Console
    from rich.table import Table

    from splitmesh.data.datasets.hm_synthetic import FULL
    from splitmesh.io import atomic_write_json, atomic_write_text
    from splitmesh.usecases.recsys import EXAMPLES, SHIPPED, recsys_mesh

    console = Console()
    work = args.work or Path(tempfile.mkdtemp(prefix="splitmesh-recsys-"))
    sizes = {k: max(1, round(v * args.scale)) for k, v in FULL.items()}
    gen_code = (
        "from splitmesh.usecases.recsys import recsys_mesh;"
        f"recsys_mesh({str(work / 'hm')!r}, dataset='hm-synthetic', synthetic={sizes!r},"
        f" preset={args.preset!r})"
    )
    gen_s, gen_mb = child_peak(gen_code)
    console.print(f"generated {sizes['transactions']:,} transactions in {gen_s:.0f} s")
    hm = work / "hm" / "mesh.yaml"
    load_code = (
        "from splitmesh.mesh.spec import load_mesh;"
        f"s = load_mesh({str(hm)!r}); print(len(s.read_fact()))"
    )
    load_s, load_mb = child_peak(load_code)
    memory = {
        "transactions": sizes["transactions"],
        "generate_seconds": gen_s,
        "generate_peak_mb": gen_mb,
        "load_seconds": load_s,
        "load_peak_mb": load_mb,
        "preset": args.preset,
    }

    from splitmesh.errors import SplitmeshError

    rows = []
    ml = EXAMPLES / "movielens" / SHIPPED["ml-100k"][1] / "u.data"
    if ml.is_file():
        rows += bench_dataset(recsys_mesh(work / "ml"), args, console)
    else:
        console.print(f"[yellow]{ml.parent} not present: MovieLens rows skipped[/yellow]")
    try:
        rows += bench_dataset(hm, args, console)
    except SplitmeshError as exc:  # e.g. a scale too small for 99 evaluation negatives
        sys.exit(
            f"synthetic H&M at --scale {args.scale}: {exc}\n"
            "hint: a larger --scale (0.01 works; 0.001 leaves users with fewer than 99 unseen "
            "articles)"
        )

    t = Table(title=f"recsys: {args.epochs} epochs, batch {args.batch_size}, in process")
    cols = [
        "dataset",
        "mode",
        "ex/epoch",
        "s/epoch",
        "vs central",
        "vs plain",
        "vs floor",
        "wire B/ex",
        "prepare s",
        "HR@10",
        "NDCG@10",
    ]
    for c in cols:
        t.add_column(c, justify="left" if c in ("dataset", "mode") else "right")
    md = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = [
            r["dataset"],
            r["mode"],
            f"{r['train_examples_per_epoch']:,}",
            f"{r['seconds_per_epoch']:.2f}",
            f"{r['vs_centralized']:.2f}x",
            f"{r['vs_plain_neumf']:.2f}x",
            f"{r['vs_plain_same_parties']:.2f}x",
            f"{r['wire_bytes_per_example']:.0f}" if r["mode"] != "centralized" else "-",
            f"{r['prepare_seconds']:.2f}",
            f"{r['hr@10']:.4f}",
            f"{r['ndcg@10']:.4f}",
        ]
        t.add_row(*cells)
        md.append("| " + " | ".join(cells) + " |")
    console.print(t)
    mem = (
        f"synthetic H&M, {memory['transactions']:,} transactions: generation "
        f"{memory['generate_seconds']:.0f} s, peak {memory['generate_peak_mb']:.0f} MB; "
        f"reading its {args.preset} sales table {memory['load_seconds']:.0f} s, "
        f"peak {memory['load_peak_mb']:.0f} MB"
    )
    console.print(mem)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        args.out / "recsys.json",
        {"runs": rows, "memory": memory, "args": {k: str(v) for k, v in vars(args).items()}},
    )
    atomic_write_text(
        args.out / "recsys.md", "\n".join(["# recsys benchmark", "", *md, "", mem, ""])
    )
    console.print(f"wrote {args.out / 'recsys.json'} and {args.out / 'recsys.md'}")


if __name__ == "__main__":
    main()
