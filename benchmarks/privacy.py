"""What each privacy protection costs per epoch, measured in one run.

Trains the fraud preset (the real subset in ../shared/data when present, else synthetic
rows of its schema) in label-preserving mode with no protection and with each protection
(randomized response, gradient noise, embedding DP, NoPeek, secure aggregation), in
process and, unless ``--no-grpc``, over gRPC on loopback (one node process per domain,
mutual TLS; each node applies the protections of its own copy of the mesh file). Secure
aggregation sums the embeddings, so it is compared with the same mesh summing them in
the clear. Prints a table and writes ``privacy.json`` and ``privacy.md``: seconds per
epoch, the ratio to the unprotected run on the same transport, wire bytes per training
example, test AUPRC. Compare the ratios, not the seconds, across machines.

For what each protection hides, run ``splitmesh privacy audit`` (README, "Privacy").

    python benchmarks/privacy.py --out benchmarks/results
    python benchmarks/privacy.py --epochs 3 --no-grpc --out /tmp/b
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# name -> (the mesh-file overrides, the run it is compared with)
VARIANTS: dict[str, tuple[list[str], str]] = {
    "none": ([], "none"),
    "labels (epsilon 1)": (["privacy.labels.epsilon=1.0"], "none"),
    "gradients (sigma 1)": (
        ["privacy.gradients.sigma=1.0", "privacy.gradients.max_norm=0.001"],
        "none",
    ),
    "embeddings (noise 1)": (
        ["privacy.embeddings.noise_multiplier=1.0", "privacy.embeddings.clip=3.0"],
        "none",
    ),
    "nopeek (weight 0.1)": (["privacy.nopeek.weight=0.1"], "none"),
    "sum, in the clear": (["model.aggregation=sum"], "sum, in the clear"),
    "secure aggregation": (
        ["model.aggregation=sum", "privacy.secure_aggregation=true"],
        "sum, in the clear",
    ),
}
MODE = "label-preserving"


def _write_mesh(base: Path, sets: list[str], to: Path) -> Path:
    """The preset's mesh file with ``sets`` applied, written where nodes can read it."""
    import yaml

    raw = yaml.safe_load(base.read_text())
    for s in sets:
        path, value = s.split("=", 1)
        *parents, leaf = path.split(".")
        node = raw
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(value)
    to.write_text(yaml.safe_dump(raw, sort_keys=False))
    return to


def _run(mesh: Path, epochs: int, out: Path, network=None) -> dict:
    from splitmesh.mesh.spec import load_mesh
    from splitmesh.usecases.train import run_mode

    spec = load_mesh(mesh, [f"training.epochs={epochs}", "training.patience=null"])
    if network is not None:
        spec = spec.model_copy(update={"transport": network})
    return run_mode(spec, MODE, out, progress=False, checkpoints=False)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--synthetic-rows", type=int, default=None, help="instead of the real subset")
    ap.add_argument("--no-grpc", action="store_true", help="in process only")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()

    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from splitmesh.io import atomic_write_json, atomic_write_text
    from splitmesh.mesh.spec import load_mesh
    from splitmesh.node.config import MeshRef, load_mesh_network
    from splitmesh.node.launcher import LocalMesh
    from splitmesh.usecases.fraud import fraud_mesh

    transports = ["in-process"] + ([] if args.no_grpc else ["grpc"])
    rows = []
    with tempfile.TemporaryDirectory() as tmp, Progress(transient=True) as bar:
        work = Path(tmp)
        base = fraud_mesh(work / "preset", synthetic_rows=args.synthetic_rows)
        data = "synthetic" if args.synthetic_rows else "real subset (or synthetic if absent)"
        task = bar.add_task("protections", total=len(VARIANTS) * len(transports))
        for i, (name, (sets, _)) in enumerate(VARIANTS.items()):
            mesh = _write_mesh(base, sets, base.with_name(f"variant-{i}.yaml"))
            for transport in transports:
                out = work / f"{i}-{transport}"
                if transport == "grpc":
                    nodes = {d: MeshRef(file=mesh, domain=d) for d in load_mesh(mesh).domain_names}
                    with LocalMesh(work / f"nodes-{i}", nodes, deadline_s=60) as local:
                        run = _run(mesh, args.epochs, out, load_mesh_network(local.mesh_file))
                else:
                    run = _run(mesh, args.epochs, out)
                rows.append({
                    "protection": name, "transport": transport,
                    "seconds_per_epoch": run["seconds_per_epoch"],
                    "wire_bytes_per_example": run["wire_bytes_per_example"],
                    "average_precision": run["metrics"]["average_precision"],
                    "applied": (run.get("privacy") or {}).get("applied", {}),
                })  # fmt: skip
                bar.advance(task)
    by = {(r["protection"], r["transport"]): r for r in rows}
    for r in rows:
        ref = by[(VARIANTS[r["protection"]][1], r["transport"])]
        r["compared_with"] = ref["protection"]
        r["ratio"] = r["seconds_per_epoch"] / ref["seconds_per_epoch"]

    head = ["protection", "transport", "s/epoch", "vs", "ratio", "wire B/example", "AUPRC"]
    table = Table(title=f"privacy protections, {MODE}, {args.epochs} epochs, fraud ({data})")
    for i, col in enumerate(head):
        table.add_column(col, justify="left" if i < 2 or i == 3 else "right")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [
            r["protection"], r["transport"], f"{r['seconds_per_epoch']:.3f}", r["compared_with"],
            f"{r['ratio']:.2f}x", f"{r['wire_bytes_per_example']:.0f}",
            f"{r['average_precision']:.4f}",
        ]  # fmt: skip
        table.add_row(*cells)
        lines.append("| " + " | ".join(cells) + " |")
    Console().print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"mode": MODE, "epochs": args.epochs, "data": data}
    atomic_write_json(args.out / "privacy.json", {**meta, "runs": rows})
    atomic_write_text(args.out / "privacy.md", "\n".join(lines) + "\n")
    print(f"wrote {args.out / 'privacy.json'} and {args.out / 'privacy.md'}")


if __name__ == "__main__":
    main()
