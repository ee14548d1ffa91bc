"""Ranking-mesh benchmark: a star schema (fact + dimension domains) trained in process and
over gRPC on loopback (one node process per domain, mutual TLS), both split modes.

Uses examples/movielens/mesh.yaml on ../shared/data/ml-100k when it is there, else a
synthetic H&M star written by examples/make_synthetic_hm_mesh.py. Prints a table and
writes JSON + Markdown: seconds per epoch, the gRPC / in-process ratio of each mode, wire
bytes per training example, the metrics and whether they are equal across transports.
All runs in one invocation: compare the ratios, not the seconds, across machines.

    python benchmarks/star.py --out benchmarks/results
    python benchmarks/star.py --epochs 1 --out /tmp/b
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ML100K = ROOT.parent / "shared" / "data" / "ml-100k"
MODES = ("label-sharing", "label-preserving")


def mesh_file(work: Path) -> tuple[Path, str]:
    """The MovieLens star on the real data, else a synthetic H&M star."""
    if (ML100K / "u.data").is_file():
        text = (ROOT / "examples" / "movielens" / "mesh.yaml").read_text()
        path = work / "mesh.yaml"
        path.write_text(text.replace("../../../shared/data/ml-100k", str(ML100K)))
        return path, "MovieLens 100K"
    out = work / "synthetic-hm"
    script = ROOT / "examples" / "make_synthetic_hm_mesh.py"
    args = ["--out", str(out), "--transactions", "200000", "--customers", "20000"]
    subprocess.run([sys.executable, str(script), *args], check=True, capture_output=True)
    return out / "mesh.yaml", "synthetic H&M (200,000 transactions)"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()

    from rich.console import Console
    from rich.table import Table

    from splitmesh.io import atomic_write_json, atomic_write_text
    from splitmesh.mesh.spec import load_mesh
    from splitmesh.node.config import MeshRef, load_mesh_network
    from splitmesh.node.launcher import LocalMesh
    from splitmesh.usecases.train import train_mesh

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        path, data = mesh_file(work)
        sets = [f"training.epochs={args.epochs}", "training.patience=null"]
        spec = load_mesh(path, sets)
        roles = {d: MeshRef(file=path, domain=d) for d in spec.domain_names}
        with LocalMesh(work / "nodes", roles) as local:
            net = load_mesh_network(local.mesh_file)
            for mode in MODES:
                runs = {}
                for transport in ("local", "grpc"):
                    update = {"mode": mode}
                    if transport == "grpc":
                        update["transport"] = net
                    run_spec = spec.model_copy(update=update)
                    out = work / f"{mode}-{transport}"
                    runs[transport] = train_mesh(run_spec, out, progress=False)["runs"][0]
                local_run, grpc_run = runs["local"], runs["grpc"]
                for transport, r in runs.items():
                    rows.append(
                        {
                            "mode": mode,
                            "transport": transport,
                            "seconds_per_epoch": r["seconds_per_epoch"],
                            "ratio": r["seconds_per_epoch"] / local_run["seconds_per_epoch"],
                            "wire_bytes_per_example": r["wire_bytes_per_example"],
                            "metrics": r["metrics"],
                            "same_metrics": grpc_run["metrics"] == local_run["metrics"],
                        }
                    )
    table = Table(title=f"ranking mesh, {data}: {args.epochs} epoch(s)")
    for col in ("mode", "transport", "s/epoch", "vs in-process", "wire/ex", "HR@10", "NDCG@10",
                "same metrics"):  # fmt: skip
        table.add_column(col, justify="left" if col in ("mode", "transport") else "right")
    lines = [f"# Ranking mesh: {data}, {args.epochs} epoch(s)", ""]
    lines += ["| mode | transport | s/epoch | vs in-process | wire B/example | HR@10 | NDCG@10 |"]
    lines += ["|---|---|---|---|---|---|---|"]
    for r in rows:
        m = r["metrics"]
        cells = [
            r["mode"],
            r["transport"],
            f"{r['seconds_per_epoch']:.2f}",
            f"{r['ratio']:.2f}x",
            f"{r['wire_bytes_per_example']:.0f}",
            f"{m['hr@10']:.4f}",
            f"{m['ndcg@10']:.4f}",
        ]
        table.add_row(*cells, "yes" if r["same_metrics"] else "NO")
        lines.append("| " + " | ".join(cells) + " |")
    Console(width=120).print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "star.json", {"data": data, "epochs": args.epochs, "runs": rows})
    atomic_write_text(args.out / "star.md", "\n".join(lines) + "\n")
    print(f"wrote {args.out / 'star.json'} and {args.out / 'star.md'}")


if __name__ == "__main__":
    main()
