"""Transport benchmark: in-process against gRPC on loopback (one process per node, mutual
TLS), for the fraud use case's two split modes, with and without wire compression
(float16, int8 with a per-tensor scale) and pipelining.

Prints a table and writes JSON + Markdown: seconds per epoch (median), the ratio to the
in-process run of the same mode, wire bytes per training example against the raw payload
(sum of cut-layer widths x 4 bytes x 2 directions), and the test metrics, so the cost of
compression or one step of staleness is visible. Two references are trained in the same
run: the same network in a plain PyTorch split loop (``vs plain``), and that loop with each
party's own backward pass and Adam step (``vs floor``: what any split of this network costs,
so what splitmesh adds is the rest). And gRPC alone is timed in the same run: rounds to
echo processes that run no splitmesh code (transport/grpc/echo.py), one round a step to
the domains, and one more to the label owner when it keeps the labels, against what the
mesh's gRPC runs add to each step over in process. All runs happen in one invocation
against the same node processes: compare the ratios, not the seconds, across machines.

    python benchmarks/transport.py --out benchmarks/results                  # 100,000 rows
    python benchmarks/transport.py --rows 20000 --epochs 2 --out /tmp/b      # quick look
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path

MODES = ("label-sharing", "label-preserving")


def variants(wires: list[str], pipeline: bool) -> list[tuple[str, str, bool]]:
    out = [("local", "float32", False)]
    out += [("grpc", w, False) for w in wires]
    if pipeline:
        out += [("local", "float32", True), ("grpc", "float32", True)]
    return out


def plain_split_seconds(spec, train_rows: int, epochs: int, parties: str | None = None) -> float:
    """The reference: the same network (same parts, same initial weights) trained by a
    plain PyTorch split loop in one process, no parties, no messages; seconds per epoch
    (median). Random inputs of each domain's width: the arithmetic does not depend on them.

    ``parties`` (a mode) makes it the split's floor instead: the same loop, but each party
    of that mode runs its own backward pass and its own ``torch.optim.Adam(fused=True)``
    from the gradient at its cut, as splitmesh's parties must (each domain its bottom; the
    coordinator the top, and the head too unless the label owner holds it). What splitmesh
    costs above the floor is its own (codec, checks, dispatch); below it, the design's."""
    import statistics
    import time

    import torch
    from floor import optimizers, step

    from splitmesh.nn import network

    torch.manual_seed(spec.training.seed)
    domains = spec.embedding_domains
    widths = {d: len(spec.read_domain(d).features) for d in domains}
    seed, model, lr = spec.training.seed, spec.model, spec.training.lr
    bottoms = {d: network.build_bottom(model, d, widths[d], seed) for d in domains}
    top = network.build_top(model, len(domains), seed)
    head = network.build_head(network.head_in(model, len(domains)), 1, seed)

    opts = optimizers(parties, {d: [b] for d, b in bottoms.items()}, top, head, lr)
    x = {d: torch.randn(train_rows, widths[d]) for d in domains}
    y = (torch.rand(train_rows) < 0.3).float()
    loss_fn, batch, times = torch.nn.BCEWithLogitsLoss(), spec.training.batch_size, []

    for _ in range(epochs):
        t0 = time.perf_counter()
        for idx in torch.randperm(train_rows).split(batch):
            if parties is None:
                cut = torch.cat([bottoms[d].mlp(x[d][idx]) for d in domains], dim=1)
                step(opts, "all", loss_fn(head(top(cut)).squeeze(1), y[idx]))
                continue
            outs = {d: bottoms[d].mlp(x[d][idx]) for d in domains}
            cut = torch.cat([o.detach() for o in outs.values()], dim=1).requires_grad_()
            act = top(cut)
            if parties == "label-preserving":  # the label owner's head, from the activations
                held = act.detach().requires_grad_()
                step(opts, "head", loss_fn(head(held).squeeze(1), y[idx]))
                step(opts, "top", act, held.grad)
            else:
                step(opts, "top", loss_fn(head(act).squeeze(1), y[idx]))
            sizes = [o.shape[1] for o in outs.values()]
            for (d, o), g in zip(outs.items(), cut.grad.split(sizes, dim=1), strict=True):
                step(opts, d, o, g)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


GAP_S = 0.001  # the coordinator's own work between rounds, as echo_rounds' gap


def grpc_alone_per_step(spec, domains: int) -> dict[str, dict]:
    """gRPC's own round trips, as a step makes them: one round to the domains (a Forward
    with its gradient out, an embedding back, ``batch x cut width`` float32 each way) and,
    label-preserving, one to the label owner (activations out, their gradient back); each
    back to back, and after ``GAP_S`` of the client's own work, during which the nodes
    idle as they do while the coordinator computes."""
    from splitmesh.nn.network import head_in
    from splitmesh.transport.grpc.echo import echo_rounds

    batch = spec.training.batch_size
    cut = 4 * batch * spec.model.bottom[-1]
    head = 4 * batch * head_in(spec.model, domains)
    return {
        f"{who}{suffix}": echo_rounds(nodes, 1000, payload=size, gap=gap)
        for who, nodes, size in (("domains", domains, cut), ("label_owner", 1, head))
        for suffix, gap in (("", 0.0), ("_after_work", GAP_S))
    }


def grpc_alone_lines(results: list[dict], alone: dict[str, dict], steps: int) -> list[str]:
    """What gRPC alone costs a step, beside what the runs over gRPC add to one."""
    ms = {k: v["seconds_per_round"] * 1e3 for k, v in alone.items()}
    per_mode = {
        "label-sharing": ms["domains_after_work"],
        "label-preserving": ms["domains_after_work"] + ms["label_owner_after_work"],
    }
    added = []
    for mode, own in per_mode.items():
        runs = {
            r["transport"]: r["seconds_per_epoch"]
            for r in results
            if r["mode"] == mode and r["wire_dtype"] == "float32" and not r["pipeline"]
        }
        if {"local", "grpc"} <= set(runs):
            extra = (runs["grpc"] - runs["local"]) / steps * 1e3
            added.append(
                f"{mode} {own:.2f} ms of gRPC alone a step, against {extra:.2f} ms that its "
                "gRPC run adds to a step over in process"
            )
    return [
        f"gRPC alone (echo processes, mutual TLS, no splitmesh code), a round back to back / "
        f"after {GAP_S * 1e3:g} ms of the client's own work: to {alone['domains']['nodes']} "
        f"nodes {ms['domains']:.2f} / {ms['domains_after_work']:.2f} ms, to 1 node "
        f"{ms['label_owner']:.2f} / {ms['label_owner_after_work']:.2f} ms; "
        + "; ".join(added)
        + f" ({steps} steps an epoch)"
    ]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--wire-dtypes", default="float32,float16,int8")
    ap.add_argument("--no-pipeline", action="store_true", help="skip the pipelined runs")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()

    from rich.console import Console
    from rich.progress import track
    from rich.table import Table

    from splitmesh.mesh.spec import load_mesh
    from splitmesh.node.config import MeshRef, load_mesh_network
    from splitmesh.node.launcher import LocalMesh
    from splitmesh.usecases.fraud import fraud_mesh
    from splitmesh.usecases.train import run_mode

    console = Console()
    work = Path(tempfile.mkdtemp(prefix="splitmesh-bench-"))
    path = fraud_mesh(work, synthetic_rows=args.rows, seed=args.seed)
    sets = [f"training.epochs={args.epochs}", f"training.batch_size={args.batch_size}",
            f"training.seed={args.seed}", "training.patience=null"]  # fmt: skip
    base = load_mesh(path, sets)
    jobs = [
        (m, *v)
        for m in MODES
        for v in variants(args.wire_dtypes.split(","), pipeline=not args.no_pipeline)
    ]
    results = []
    nodes = {d: MeshRef(file=path, domain=d) for d in base.domain_names}
    with LocalMesh(work / "mesh", nodes) as mesh:
        network = load_mesh_network(mesh.mesh_file)
        for mode, transport, wire, pipe in track(jobs, description="benchmarking", transient=True):
            training = base.training.model_copy(update={"pipeline": pipe})
            update = {"wire_dtype": wire, "training": training}
            if transport == "grpc":
                update["transport"] = network
            spec = base.model_copy(update=update)
            run = run_mode(spec, mode, work / "out", progress=False, checkpoints=False)
            cut = 16 * len(spec.embedding_domains)
            results.append(
                {
                    "mode": mode,
                    "transport": transport,
                    "wire_dtype": wire,
                    "pipeline": pipe,
                    "train_rows": run["rows"]["train"],
                    "seconds_per_epoch": run["seconds_per_epoch"],
                    "wire_bytes_per_example": run["wire_bytes_per_example"],
                    "raw_payload_per_example": cut * 4 * 2,
                    "roc_auc": run["metrics"]["roc_auc"],
                    "average_precision": run["metrics"]["average_precision"],
                }
            )
    n_train = results[0]["train_rows"]
    plain = plain_split_seconds(base, n_train, args.epochs)
    floor = {m: plain_split_seconds(base, n_train, args.epochs, parties=m) for m in MODES}
    grpc_alone = grpc_alone_per_step(base, len(base.embedding_domains))
    for r in results:
        r["vs_plain_pytorch"] = r["seconds_per_epoch"] / plain
        r["vs_party_floor"] = r["seconds_per_epoch"] / floor[r["mode"]]
        ref = next(
            x
            for x in results
            if x["mode"] == r["mode"] and x["transport"] == "local" and not x["pipeline"]
        )
        r["vs_in_process"] = r["seconds_per_epoch"] / ref["seconds_per_epoch"]
        r["auprc_change"] = r["average_precision"] - ref["average_precision"]

    title = (
        f"transport: fraud, {args.rows:,} synthetic rows, batch {args.batch_size}, "
        f"{args.epochs} epochs, 4 node processes on loopback"
    )
    cols = ["mode", "transport", "wire", "pipeline", "s/epoch", "vs in-process", "vs plain"]
    cols += ["vs floor"]
    cols += ["wire B/ex", "raw B/ex", "AUC", "AUPRC", "dAUPRC"]
    out = Table(title=title)
    for c in cols:
        out.add_column(c, justify="left" if c in cols[:4] else "right")
    md = [f"**{title}**", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in results:
        row = [
            r["mode"],
            r["transport"],
            r["wire_dtype"],
            "on" if r["pipeline"] else "off",
            f"{r['seconds_per_epoch']:.3f}",
            f"{r['vs_in_process']:.2f}x",
            f"{r['vs_plain_pytorch']:.2f}x",
            f"{r['vs_party_floor']:.2f}x",
            f"{r['wire_bytes_per_example']:.0f}",
            f"{r['raw_payload_per_example']}",
            f"{r['roc_auc']:.4f}",
            f"{r['average_precision']:.4f}",
            f"{r['auprc_change']:+.4f}",
        ]
        out.add_row(*row)
        md.append("| " + " | ".join(row) + " |")
    console.print(out)
    lines = [
        f"plain PyTorch split, one process, same network and rows: {plain:.3f} s/epoch",
        "the same with each party's own backward and Adam (the floor of a split, 'vs floor'): "
        + ", ".join(f"{m} {floor[m]:.3f}" for m in MODES)
        + " s/epoch",
    ]
    steps = math.ceil(n_train / args.batch_size)
    lines += grpc_alone_lines(results, grpc_alone, steps)
    for line in lines:
        console.print(line)
    md += ["", *lines]
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {k: getattr(args, k) for k in ("rows", "epochs", "batch_size", "seed")}
    (args.out / "transport.json").write_text(
        json.dumps(
            {
                "config": meta,
                "results": results,
                "plain_pytorch_seconds_per_epoch": plain,
                "party_floor_seconds_per_epoch": floor,
                "grpc_alone": grpc_alone,
                "steps_per_epoch": steps,
            },
            indent=2,
        )
    )
    (args.out / "transport.md").write_text("\n".join(md) + "\n")
    console.print(f"wrote {args.out / 'transport.json'} and {args.out / 'transport.md'}")


if __name__ == "__main__":
    main()
