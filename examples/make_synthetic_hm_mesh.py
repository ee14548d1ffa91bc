"""Write a synthetic H&M star mesh: Kaggle-schema tables (transactions, customers,
articles) from the synthetic generator, and a mesh file like examples/hm/mesh.yaml over
them (what `splitmesh recsys --dataset hm-synthetic` runs). For scale: the full size is
31.8M transactions, 1.37M customers, 105k articles.

    python examples/make_synthetic_hm_mesh.py --transactions 2000000 --customers 100000
    splitmesh train examples/synthetic-hm/mesh.yaml --out runs/synthetic-hm
"""

import argparse
from pathlib import Path

from splitmesh.data.datasets.hm_synthetic import SyntheticHM
from splitmesh.usecases.recsys import recsys_mesh

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "synthetic-hm")
    ap.add_argument("--customers", type=int, default=SyntheticHM.customers)
    ap.add_argument("--articles", type=int, default=SyntheticHM.articles)
    ap.add_argument("--transactions", type=int, default=SyntheticHM.transactions)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    sizes = {"customers": args.customers, "articles": args.articles}
    sizes["transactions"] = args.transactions
    path = recsys_mesh(args.out, dataset="hm-synthetic", synthetic=sizes, seed=args.seed)
    print(f"wrote {path} and its three tables ({args.transactions} transactions)")


if __name__ == "__main__":
    main()
