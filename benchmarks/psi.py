"""Key alignment benchmark: the whole signed ECDH-PSI alignment of a two-domain mesh
(data/alignment.py) against a plain hash join of the same keys, which is the floor (and
leaks every key).

Per size N (two domains of N string keys each, half of them shared), seconds for:
- ``hash join``: a Python set intersection of the clear keys;
- ``mesh, in process``: the coordinator and both domains in one process (no concurrency);
- ``mesh, gRPC``: one node process per domain over gRPC with mutual TLS, as ``mesh up``
  runs them, the coordinator relaying; from the first PSI message to the aligned order
  (Hello and the nodes' start are not counted; preparation after alignment neither).
keys/s counts both domains' keys (2N / seconds), per domain is N / seconds.

    python benchmarks/psi.py --out benchmarks/results                  # 100k and 1M
    python benchmarks/psi.py --sizes 10000,100000 --out /tmp/b
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def keys(n: int, offset: int) -> list[str]:
    return [f"customer-{i:09d}" for i in range(offset, offset + n)]


def write_mesh(work: Path, n: int) -> Path:
    """Two domains of n keys each, half shared: ``a`` holds a label, ``b`` a feature."""
    import numpy as np
    import pandas as pd
    import yaml

    rng = np.random.default_rng(0)
    work.mkdir(parents=True, exist_ok=True)
    a = pd.DataFrame({"id": keys(n, 0), "x": rng.normal(size=n), "y": rng.integers(0, 2, n)})
    b = pd.DataFrame({"id": keys(n, n // 2), "z": rng.normal(size=n)})
    a.to_parquet(work / "a.parquet")
    b.to_parquet(work / "b.parquet")
    mesh = {
        "name": f"psi-{n}",
        "task": "binary",
        "label": {"domain": "a", "column": "y"},
        "domains": [
            {"name": "a", "source": "a.parquet", "key": "id"},
            {"name": "b", "source": "b.parquet", "key": "id"},
        ],
    }
    path = work / "mesh.yaml"
    path.write_text(yaml.safe_dump(mesh, sort_keys=False))
    return path


def align(spec, out: Path) -> tuple[float, int, int]:
    """Seconds, common keys and bytes on the wire of one alignment of ``spec``."""
    from splitmesh.usecases.train import _transport, coordinator

    transport = _transport(spec, "label-preserving", out, False)
    coord = coordinator(spec, transport, "label-preserving", None)
    try:
        coord.hello()
        transport.stats.reset()
        t0 = time.perf_counter()
        coord.align()
        seconds = time.perf_counter() - t0
        return seconds, coord.alignment_["aligned"], transport.stats.total()
    finally:
        coord.close()
        transport.close()


def hash_join(n: int) -> tuple[float, int, int]:
    a, b = keys(n, 0), keys(n, n // 2)
    t0 = time.perf_counter()
    common = len(set(a) & set(b))
    return time.perf_counter() - t0, common, sum(len(k) for k in b)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,1000000", help="keys per domain, comma-separated")
    ap.add_argument(
        "--in-process-max",
        type=int,
        default=100_000,
        help="largest N aligned in process too (one core, both parties in turn)",
    )
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    from rich.console import Console
    from rich.table import Table

    from splitmesh.memory import peak_rss_mb
    from splitmesh.mesh.spec import load_mesh
    from splitmesh.node.config import MeshRef, load_mesh_network
    from splitmesh.node.launcher import LocalMesh

    console = Console()
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        work = Path(tempfile.mkdtemp(prefix=f"splitmesh-psi-{n}-"))
        path = write_mesh(work, n)
        spec = load_mesh(path)
        runs = [("hash join", lambda n=n: hash_join(n))]
        if n <= args.in_process_max:
            runs.append(("mesh, in process", lambda spec=spec, w=work: align(spec, w / "local")))
        for name, fn in runs:
            console.print(f"{name} {n:,} x {n:,} ...", highlight=False)
            rows.append((name, n, *fn()))
        console.print(f"mesh, gRPC {n:,} x {n:,} (starting two nodes) ...", highlight=False)
        nodes = {d: MeshRef(file=path, domain=d) for d in spec.domain_names}
        with LocalMesh(work / "mesh", nodes) as mesh:
            network = spec.model_copy(update={"transport": load_mesh_network(mesh.mesh_file)})
            rows.append(("mesh, gRPC", n, *align(network, work / "grpc")))
    table = []
    for name, n, seconds, common, wire in rows:
        assert common == n - n // 2, (name, n, common)
        table.append({"method": name, "keys_per_domain": n, "seconds": seconds,
                      "keys_per_second": 2 * n / seconds, "keys_per_second_per_domain": n / seconds,
                      "common": common, "wire_bytes": wire})  # fmt: skip
    t = Table(title="key alignment, 2 domains of N keys, half shared (this machine)")
    for col in ("method", "N", "seconds", "keys/s (2N)", "per domain", "vs hash join", "wire"):
        t.add_column(col, justify="left" if col == "method" else "right")
    floor = {r["keys_per_domain"]: r["seconds"] for r in table if r["method"] == "hash join"}
    for r in table:
        t.add_row(r["method"], f"{r['keys_per_domain']:,}", f"{r['seconds']:.2f}",
                  f"{r['keys_per_second']:,.0f}", f"{r['keys_per_second_per_domain']:,.0f}",
                  f"{r['seconds'] / floor[r['keys_per_domain']]:,.0f}x",
                  f"{r['wire_bytes'] / 2**20:.1f} MB")  # fmt: skip
    console.print(t)
    console.print(f"peak RSS of this process (coordinator): {peak_rss_mb():.0f} MB")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / "psi.json"
        path.write_text(json.dumps({"benchmark": "psi", "rows": table}, indent=2) + "\n")
        console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
