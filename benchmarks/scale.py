"""Scale benchmark: full-size meshes over gRPC, one node process per domain (mutual TLS).

- ``fraud``: the credit-card fraud mesh at the original's 284,807 rows (synthetic rows of
  its schema), label-sharing, in process and over gRPC: s/epoch of each and their ratio;
- ``hm``: the recommender on synthetic H&M (Kaggle schema) at each ``--hm-fractions`` of
  the full size (31.8M transactions, 1.37M customers, 105.5k articles), over gRPC.

Per run: the time to start the nodes (each loads its own table), key alignment, the whole
preparation, the time from the start to the first training step (nodes up + preparation),
s/epoch, and peak RSS per party (coordinator and every node, as each said at the end).
The memory slope across the H&M sizes is fitted (MB per million transactions, per party).

    python benchmarks/scale.py --hm-batch-size 1024 --out benchmarks/results  # as make bench
    python benchmarks/scale.py --only fraud --out /tmp/b
    python benchmarks/scale.py --only hm --hm-fractions 0.01,0.02,0.05 --out /tmp/b
    python benchmarks/scale.py --only hm --hm-fractions 1.0 --hm-batch-size 4096 --out /tmp/b
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

FRAUD_ROWS = 284_807


def run_over_nodes(path: Path, mode: str, work: Path, sets: list[str], local: bool) -> dict:
    """One run of the mesh file over gRPC (or in process with ``local``), with timings, in
    a fresh process: an earlier run's torch threads and memory would distort this one's."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        return pool.submit(_run, path, mode, work, sets, local).result()


def _run(path: Path, mode: str, work: Path, sets: list[str], local: bool) -> dict:
    from splitmesh.mesh.spec import load_mesh
    from splitmesh.node.config import MeshRef, load_mesh_network
    from splitmesh.node.launcher import LocalMesh
    from splitmesh.usecases.train import run_mode

    spec = load_mesh(path, sets)
    if local:
        t0 = time.perf_counter()
        run = run_mode(spec, mode, work / "out-local", progress=False, checkpoints=False)
        return {**run, "nodes_up_seconds": 0.0, "wall_seconds": time.perf_counter() - t0}
    nodes = {d: MeshRef(file=path, domain=d) for d in spec.domain_names}
    t0 = time.perf_counter()
    with LocalMesh(work / "mesh", nodes, deadline_s=600) as mesh:
        up = time.perf_counter() - t0
        network = spec.model_copy(update={"transport": load_mesh_network(mesh.mesh_file)})
        run = run_mode(network, mode, work / "out-grpc", progress=False, checkpoints=False)
    return {**run, "nodes_up_seconds": up, "wall_seconds": time.perf_counter() - t0}


def record(name: str, size: dict, run: dict) -> dict:
    alignment = run.get("alignment") or {}
    return {
        "mesh": name,
        **size,
        "transport": run["transport"],
        "mode": run["mode"],
        "nodes_up_seconds": run["nodes_up_seconds"],
        "alignment_seconds": alignment.get("seconds"),
        "prepare_seconds": run["prepare_seconds"],
        "first_step_seconds": run["nodes_up_seconds"] + run["prepare_seconds"],
        "seconds_per_epoch": run["seconds_per_epoch"],
        "epoch_seconds": run["epoch_seconds"],
        "wall_seconds": run["wall_seconds"],
        "train_rows": run["rows"].get("train"),
        "peak_rss_mb": run["peak_rss_mb"],
        "metrics": run["metrics"],
    }


def fraud(work: Path, epochs: int, pipeline: bool = False) -> list[dict]:
    from splitmesh.usecases.fraud import fraud_mesh

    path = fraud_mesh(work / "fraud", synthetic_rows=FRAUD_ROWS, seed=0)
    sets = [f"training.epochs={epochs}", "training.patience=null"]
    if pipeline:  # both modes: the same (one step stale) arithmetic
        sets.append("training.pipeline=true")
    out = []
    for local in (True, False):
        run = run_over_nodes(path, "label-sharing", work / "fraud", sets, local)
        out.append(record("fraud", {"rows": FRAUD_ROWS, "pipeline": pipeline}, run))
    return out


def hm(work: Path, fraction: float, batch_size: int | None, eval_users: int | None) -> dict:
    from splitmesh.data.datasets.hm_synthetic import FULL
    from splitmesh.usecases.recsys import recsys_mesh

    sizes = {k: max(1, round(v * fraction)) for k, v in FULL.items()}
    folder = work / f"hm-{fraction:g}"
    t0 = time.perf_counter()
    path = recsys_mesh(folder, dataset="hm-synthetic", synthetic=sizes, seed=0)
    generated = time.perf_counter() - t0
    sets = ["training.epochs=1", "training.patience=null"]
    if batch_size:
        sets.append(f"training.batch_size={batch_size}")
    if eval_users:
        sets.append(f"ranking.eval_users={eval_users}")
    run = run_over_nodes(path, "label-sharing", folder, sets, local=False)
    return {**record("hm-synthetic", {"fraction": fraction, **sizes}, run),
            "batch_size": batch_size, "eval_users": eval_users,
            "generate_seconds": generated}  # fmt: skip


def slope(rows: list[dict]) -> dict[str, float]:
    """Least-squares MB per million transactions, per party, across the H&M sizes."""
    import numpy as np

    if len(rows) < 2:
        return {}
    x = np.array([r["transactions"] for r in rows]) / 1e6
    out = {}
    for party in rows[0]["peak_rss_mb"]:
        y = np.array([r["peak_rss_mb"].get(party, np.nan) for r in rows])
        out[party] = float(np.polyfit(x, y, 1)[0])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="fraud,hm", help="fraud, hm or both")
    ap.add_argument("--fraud-epochs", type=int, default=3)
    ap.add_argument(
        "--fraud-pipeline",
        action="store_true",
        help="send each step's next Forward during the step (training.pipeline), both modes",
    )
    ap.add_argument(
        "--hm-fractions",
        default="0.02,0.05,0.1",
        help="of the full size (1.0: 31.8M transactions, about 30 min at batch 4096 here)",
    )
    ap.add_argument("--hm-batch-size", type=int, default=None, help="default: the preset's")
    ap.add_argument(
        "--hm-eval-users",
        type=int,
        default=100_000,
        help="users ranked per validation / test pass (0: all; 1.37M at full size)",
    )
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    from rich.console import Console
    from rich.table import Table

    console = Console()
    work = Path(tempfile.mkdtemp(prefix="splitmesh-scale-"))
    parts = args.only.split(",")
    rows: list[dict] = []
    if "fraud" in parts:
        console.print(f"fraud, {FRAUD_ROWS:,} rows, in process and over gRPC ...")
        rows += fraud(work, args.fraud_epochs, args.fraud_pipeline)
    hm_rows = []
    if "hm" in parts:
        for f in (float(x) for x in args.hm_fractions.split(",")):
            console.print(f"synthetic H&M at {f:g} of full size, over gRPC ...")
            hm_rows.append(hm(work, f, args.hm_batch_size, args.hm_eval_users or None))
            console.print(json.dumps(hm_rows[-1]))
    rows += hm_rows
    t = Table(title="scale (this machine, one run each)")
    cols = ("mesh", "size", "transport", "nodes up s", "align s", "prepare s", "first step s",
            "s/epoch", "peak RSS MB (coordinator / nodes)")  # fmt: skip
    for c in cols:
        t.add_column(c, justify="left" if c in ("mesh", "transport") else "right")
    for r in rows:
        size = f"{r['rows']:,} rows" if "rows" in r else f"{r['transactions']:,} tx"
        rss = " / ".join(f"{v:.0f}" for v in r["peak_rss_mb"].values())
        align = "-" if r["alignment_seconds"] is None else f"{r['alignment_seconds']:.1f}"
        t.add_row(r["mesh"], size, r["transport"], f"{r['nodes_up_seconds']:.1f}", align,
                  f"{r['prepare_seconds']:.1f}", f"{r['first_step_seconds']:.1f}",
                  f"{r['seconds_per_epoch']:.1f}", rss)  # fmt: skip
    console.print(t)
    result = {"benchmark": "scale", "rows": rows}
    fr = [r for r in rows if r["mesh"] == "fraud"]
    if len(fr) == 2:
        ratio = fr[1]["seconds_per_epoch"] / fr[0]["seconds_per_epoch"]
        result["fraud_grpc_vs_in_process"] = ratio
        console.print(f"fraud s/epoch, gRPC / in process: {ratio:.2f}x")
    if len(hm_rows) >= 2:
        result["hm_mb_per_million_transactions"] = slope(hm_rows)
        console.print(f"memory slope, MB per million transactions: {slope(hm_rows)}")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / "scale.json"
        path.write_text(json.dumps(result, indent=2) + "\n")
        console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
