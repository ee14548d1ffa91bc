"""Key alignment benchmark: ECDH private set intersection (openmined.psi) against a plain
hash join of the same keys, which is the floor (and leaks every key).

Per size N (two domains of N string keys each, half of them shared):
- ``psi one-way``: one PSI run, client request + server setup/response + client
  intersection, the core of every step;
- ``mesh align``: the whole two-domain alignment splitmesh runs (shrink, share, order),
  through the encoded protocol messages;
- ``hash join``: a Python set intersection of the clear keys.

    python benchmarks/psi.py --out benchmarks/results                  # 100k and 1M
    python benchmarks/psi.py --sizes 10000,100000 --out /tmp/b
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def keys(n: int, offset: int) -> list[str]:
    return [f"customer-{i:09d}" for i in range(offset, offset + n)]


def one_way(a: list[str], b: list[str]) -> tuple[float, int, int]:
    """Seconds, common count and bytes on the wire of one PSI intersection."""
    from splitmesh.data.alignment import KeyAligner

    client, server = KeyAligner(a), KeyAligner(b)
    t0 = time.perf_counter()
    request = client.request()
    setup, response = server.serve(request, len(a))
    common = client.finish(setup, response)
    return time.perf_counter() - t0, common, request.nbytes + setup.nbytes + response.nbytes


def mesh_align(a: list[str], b: list[str]) -> tuple[float, int, int]:
    """The full alignment of two domains through the protocol (in process)."""
    import numpy as np

    from splitmesh.config import Model, Optim
    from splitmesh.data.sources import DomainTable
    from splitmesh.split.coordinator import Coordinator
    from splitmesh.split.domain import Domain
    from splitmesh.split.keyed import KeyedDomain
    from splitmesh.split.peer_alignment import Peers
    from splitmesh.transport.local import LocalTransport

    def table(name, ks, label):
        n = len(ks)
        return DomainTable(
            domain=name,
            source="benchmark",
            key="id",
            keys=np.array(ks, dtype=object),
            numeric_names=["x"],
            numeric=np.zeros((n, 1)),
            categorical_names=[],
            categorical=np.empty((n, 0), dtype=object),
            label_name="y" if label else None,
            label=(np.arange(n) % 2) if label else None,
        )

    peers = Peers.in_process("a", ["a", "b"])
    parties = {
        "a": Domain.keyed(
            table("a", a, True), mode="label-preserving", task="binary", peers=peers["a"]
        ),
        "b": KeyedDomain(table("b", b, False), peers=peers["b"]),
    }
    transport = LocalTransport(parties)
    coord = Coordinator(
        transport, ["a", "b"], "a", mode="label-preserving", spec=Model(),
        optim=Optim(), seed=0,
    )  # fmt: skip
    coord.hello()
    transport.stats.reset()
    t0 = time.perf_counter()
    coord.align()
    return time.perf_counter() - t0, coord.alignment_["aligned"], transport.stats.total()


def hash_join(a: list[str], b: list[str]) -> tuple[float, int, int]:
    t0 = time.perf_counter()
    common = len(set(a) & set(b))
    return time.perf_counter() - t0, common, sum(len(k) for k in b)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,1000000", help="keys per domain, comma-separated")
    ap.add_argument(
        "--mesh-max",
        type=int,
        default=100_000,
        help="largest N for the full mesh alignment (it runs PSI twice)",
    )
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    from rich.console import Console
    from rich.table import Table

    console = Console()
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        a, b = keys(n, 0), keys(n, n // 2)
        runs = [("hash join", hash_join), ("psi one-way", one_way)]
        if n <= args.mesh_max:
            runs.append(("mesh align", mesh_align))
        for name, fn in runs:
            console.print(f"{name} {n:,} x {n:,} ...", highlight=False)
            seconds, common, wire = fn(a, b)
            assert common == n - n // 2, (name, common)
            rows.append({"method": name, "keys_per_domain": n, "seconds": seconds,
                         "keys_per_second": 2 * n / seconds, "common": common,
                         "wire_bytes": wire})  # fmt: skip
    t = Table(title="key alignment, 2 domains of N keys, half shared (2 cores)")
    for col in ("method", "N", "seconds", "keys/s", "vs hash join", "wire"):
        t.add_column(col, justify="left" if col == "method" else "right")
    floor = {r["keys_per_domain"]: r["seconds"] for r in rows if r["method"] == "hash join"}
    for r in rows:
        t.add_row(r["method"], f"{r['keys_per_domain']:,}", f"{r['seconds']:.2f}",
                  f"{r['keys_per_second']:,.0f}",
                  f"{r['seconds'] / floor[r['keys_per_domain']]:,.0f}x",
                  f"{r['wire_bytes'] / 2**20:.1f} MB")  # fmt: skip
    console.print(t)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / "psi.json"
        path.write_text(json.dumps({"benchmark": "psi", "rows": rows}, indent=2) + "\n")
        console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
