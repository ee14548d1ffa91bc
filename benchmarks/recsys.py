"""Recommender benchmark: centralized against split (both modes), in process.

Per dataset (MovieLens 100K when present; synthetic H&M sampled with the ``large``
preset): seconds per training epoch (median) and the ratio to centralized, wire bytes per
training example, and the time of one evaluation pass, sampled (99 negatives) and full
(every item). Then the peak memory (max RSS) of generating the synthetic data at full
size (31.8M transactions) and of loading it, each in its own process.

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
    report = "import resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\n{report}"], check=True, capture_output=True, text=True
    )
    return time.perf_counter() - t0, int(done.stdout.split()[-1]) / 1024


def bench_dataset(data, args, console) -> list[dict]:
    from splitmesh.split.trainer import TrainConfig, fit
    from splitmesh.usecases.recsys import RecsysConfig, make_learner

    cfg = RecsysConfig(
        train=TrainConfig(epochs=args.epochs, batch_size=args.batch_size, patience=None),
        reference=False,
    )
    rows = []
    for mode in MODES:
        learner, transport = make_learner(mode, data, cfg)
        learner.prepare()
        learner.build()
        if transport:
            transport.stats.reset()
        result = fit(learner, cfg.train, progress=False)
        wire = transport.stats.by_phase["train"] if transport else 0
        examples = learner.n_train * len(result.losses)
        timings = {}
        for kind, negatives in (("sampled", 99), ("full", None)):
            # in process, so reach the planner directly: the centralized learner plans its
            # own passes, in split modes the interactions party does
            planner = transport._handlers["sales"] if transport else learner
            planner.task.set_protocol(negatives)
            t0 = time.perf_counter()
            metrics = learner.evaluate(["test"])["test"]
            timings[kind] = (time.perf_counter() - t0, metrics["hr@10"], metrics["ndcg@10"])
        if transport:
            transport.close()
        sorted_s = sorted(result.epoch_seconds)
        rows.append(
            {
                "dataset": data.name,
                "mode": mode,
                "train_examples_per_epoch": learner.n_train,
                "seconds_per_epoch": sorted_s[len(sorted_s) // 2],
                "wire_bytes_per_example": wire / max(1, examples),
                "eval_sampled_seconds": timings["sampled"][0],
                "eval_full_seconds": timings["full"][0],
                "hr@10_sampled": timings["sampled"][1],
                "ndcg@10_sampled": timings["sampled"][2],
                "hr@10_full": timings["full"][1],
            }
        )
        console.print(f"{data.name} {mode}: {rows[-1]['seconds_per_epoch']:.2f} s/epoch")
    base = rows[0]["seconds_per_epoch"]
    for r in rows:
        r["vs_centralized"] = r["seconds_per_epoch"] / base
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

    from splitmesh.data.datasets.hm import load_hm, sampling
    from splitmesh.data.datasets.hm_synthetic import FULL
    from splitmesh.io import atomic_write_json, atomic_write_text
    from splitmesh.usecases.recsys import ML100K

    console = Console()
    work = args.work or Path(tempfile.mkdtemp(prefix="splitmesh-recsys-"))
    sizes = {k: max(1, round(v * args.scale)) for k, v in FULL.items()}
    gen_code = (
        "from splitmesh.data.datasets.hm_synthetic import SyntheticHM, generate_hm;"
        f"generate_hm({str(work)!r}, SyntheticHM(**{sizes!r}))"
    )
    gen_s, gen_mb = child_peak(gen_code)
    console.print(f"generated {sizes['transactions']:,} transactions in {gen_s:.0f} s")
    how = sampling(args.preset)
    load_code = (
        "from splitmesh.data.datasets.hm import load_hm, sampling;"
        f"d = load_hm({str(work)!r}, sampling({args.preset!r})); print(d.summary())"
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

    rows = []
    if (ML100K / "u.data").is_file():
        from splitmesh.data.datasets.movielens import load_movielens

        rows += bench_dataset(load_movielens(ML100K), args, console)
    else:
        console.print(f"[yellow]{ML100K} not present: MovieLens rows skipped[/yellow]")
    hm = load_hm(work, how, name=f"hm-synthetic-{args.preset}")
    rows += bench_dataset(hm, args, console)

    t = Table(title=f"recsys: {args.epochs} epochs, batch {args.batch_size}, in process")
    cols = [
        "dataset",
        "mode",
        "ex/epoch",
        "s/epoch",
        "vs central",
        "wire B/ex",
        "eval 99 s",
        "eval full s",
        "HR@10 (99)",
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
            f"{r['wire_bytes_per_example']:.0f}" if r["mode"] != "centralized" else "-",
            f"{r['eval_sampled_seconds']:.2f}",
            f"{r['eval_full_seconds']:.2f}",
            f"{r['hr@10_sampled']:.4f}",
        ]
        t.add_row(*cells)
        md.append("| " + " | ".join(cells) + " |")
    console.print(t)
    mem = (
        f"synthetic H&M, {memory['transactions']:,} transactions: generation "
        f"{memory['generate_seconds']:.0f} s, peak {memory['generate_peak_mb']:.0f} MB; "
        f"loading with the {args.preset} preset {memory['load_seconds']:.0f} s, "
        f"peak {memory['load_peak_mb']:.0f} MB"
    )
    console.print(mem)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        args.out / "recsys.json", {"runs": rows, "memory": memory, "args": vars(args)}
    )
    atomic_write_text(
        args.out / "recsys.md", "\n".join(["# recsys benchmark", "", *md, "", mem, ""])
    )
    console.print(f"wrote {args.out / 'recsys.json'} and {args.out / 'recsys.md'}")


if __name__ == "__main__":
    main()
