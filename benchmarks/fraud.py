"""Fraud benchmark: the three modes on a synthetic set of the original's size.

Prints a table and writes JSON + Markdown: seconds per epoch (median), examples per
second, wire bytes per training example against the raw payload (sum of cut-layer widths
x 4 bytes x 2 directions), peak resident memory. Each mode runs in its own process so
peak memory is its own; ratios are taken within one invocation (machines are noisy).

    python benchmarks/fraud.py --out benchmarks/results            # 284,807 rows
    python benchmarks/fraud.py --rows 50000 --epochs 2 --out /tmp/b  # quick look
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

MODES = ("centralized", "label-sharing", "label-preserving")


def one(mode: str, rows: int, epochs: int, batch_size: int, wire_dtype: str, seed: int) -> dict:
    """Run one mode of the fraud preset in this process and report its figures."""
    import tempfile

    from splitmesh.memory import peak_rss_mb
    from splitmesh.mesh.spec import load_mesh
    from splitmesh.usecases.fraud import fraud_mesh
    from splitmesh.usecases.train import run_mode

    work = Path(tempfile.mkdtemp(prefix="splitmesh-bench-"))
    sets = [f"training.epochs={epochs}", f"training.batch_size={batch_size}",
            f"training.seed={seed}", "training.patience=null",
            f"wire_dtype={wire_dtype}"]  # fmt: skip
    spec = load_mesh(fraud_mesh(work, synthetic_rows=rows, seed=seed), sets)
    t0 = time.perf_counter()
    run = run_mode(spec, mode, work / "out", progress=False, checkpoints=False)
    cut = 16 * len(spec.embedding_domains)  # the example's cut width per domain
    spe = run["seconds_per_epoch"]
    return {
        "mode": mode,
        "wire_dtype": wire_dtype,
        "train_rows": run["rows"]["train"],
        "seconds_per_epoch": spe,
        "prepare_seconds": run["prepare_seconds"],  # key alignment (PSI) included
        "examples_per_second": run["rows"]["train"] / spe,
        "wire_bytes_per_example": run["wire_bytes_per_example"] if run["wire_bytes"] else 0.0,
        "raw_payload_per_example": cut * 4 * 2,
        "peak_rss_mb": peak_rss_mb(),
        "total_seconds": time.perf_counter() - t0,
        "roc_auc": run["metrics"]["roc_auc"],
        "average_precision": run["metrics"]["average_precision"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=284_807)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--wire-dtypes", default="float32,float16")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--wire-dtype", default="float32", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        from splitmesh.errors import SplitmeshError

        try:
            res = one(args.one, args.rows, args.epochs, args.batch_size, args.wire_dtype, args.seed)
        except SplitmeshError as exc:  # the user's settings: said in a line, no traceback
            sys.exit(f"{args.one}: {exc}")
        print(json.dumps(res))
        return

    from rich.console import Console
    from rich.progress import track
    from rich.table import Table

    jobs = [(m, "float32") for m in MODES]
    jobs += [(m, w) for w in args.wire_dtypes.split(",") if w != "float32" for m in MODES[1:]]
    results = []
    for mode, wire in track(jobs, description="benchmarking", transient=True):
        cmd = [sys.executable, __file__, "--one", mode, "--wire-dtype", wire]
        for flag in ("rows", "epochs", "batch_size", "seed"):
            cmd += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode:
            sys.exit(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = next(r["seconds_per_epoch"] for r in results if r["mode"] == "centralized")
    for r in results:
        r["vs_centralized"] = r["seconds_per_epoch"] / base

    table = Table(
        title=f"fraud, {args.rows:,} synthetic rows, batch {args.batch_size}, {args.epochs} epochs"
    )
    cols = ["mode", "wire", "train rows", "s/epoch", "vs central", "examples/s"]
    cols += ["wire B/ex", "raw B/ex", "peak MB", "AUPRC"]
    for c in cols:
        table.add_column(c, justify="left" if c in ("mode", "wire") else "right")
    md = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in results:
        split = r["mode"] != "centralized"
        row = [
            r["mode"],
            r["wire_dtype"] if split else "-",
            f"{r['train_rows']:,}",
            f"{r['seconds_per_epoch']:.3f}",
            f"{r['vs_centralized']:.2f}x",
            f"{r['examples_per_second']:,.0f}",
            f"{r['wire_bytes_per_example']:.0f}" if split else "-",
            f"{r['raw_payload_per_example']}" if split else "-",
            f"{r['peak_rss_mb']:.0f}",
            f"{r['average_precision']:.4f}",
        ]
        table.add_row(*row)
        md.append("| " + " | ".join(row) + " |")
    Console().print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "rows": args.rows,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "seed": args.seed,
    }
    (args.out / "fraud.json").write_text(json.dumps({"config": meta, "results": results}, indent=2))
    (args.out / "fraud.md").write_text("\n".join(md) + "\n")
    print(f"wrote {args.out / 'fraud.json'} and {args.out / 'fraud.md'}")


if __name__ == "__main__":
    main()
