"""Write a synthetic H&M star mesh: Kaggle-schema tables (transactions, customers,
articles) from the synthetic generator, and a mesh file like examples/hm/mesh.yaml over
them. For scale: the full size is 31.8M transactions, 1.37M customers, 105k articles.

    python examples/make_synthetic_hm_mesh.py --transactions 2000000 --customers 100000
    splitmesh train examples/synthetic-hm/mesh.yaml --out runs/synthetic-hm
"""

import argparse
from pathlib import Path

import yaml

from splitmesh.data.datasets.hm_synthetic import SyntheticHM, generate_hm

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "synthetic-hm")
    ap.add_argument("--customers", type=int, default=SyntheticHM.customers)
    ap.add_argument("--articles", type=int, default=SyntheticHM.articles)
    ap.add_argument("--transactions", type=int, default=SyntheticHM.transactions)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    cfg = SyntheticHM(args.customers, args.articles, args.transactions, args.seed)
    generate_hm(args.out, cfg)
    mesh = yaml.safe_load((HERE / "hm" / "mesh.yaml").read_text())
    mesh["name"] = f"synthetic-hm-{args.transactions}"
    sources = {
        "sales": "SELECT customer_id, article_id, CAST(t_dat AS DATE) AS t_dat FROM ("
        "SELECT *, row_number() OVER () AS line FROM 'transactions_train.parquet') "
        "QUALIFY count(*) OVER (PARTITION BY customer_id) >= 3 ORDER BY line",
        "customers": "SELECT customer_id, age, CAST(FN AS VARCHAR) AS FN, "
        "CAST(Active AS VARCHAR) AS Active, upper(club_member_status) AS club_member_status, "
        "upper(fashion_news_frequency) AS fashion_news_frequency FROM 'customers.parquet'",
    }
    columns = ", ".join(mesh["domains"][2]["categorical"])
    sources["products"] = f"SELECT article_id, {columns} FROM 'articles.parquet'"
    for d in mesh["domains"]:
        d["source"] = {"sql": sources[d["name"]]}
        d.pop("data_dirs", None)  # the mesh file's own folder
    path = args.out / "mesh.yaml"
    path.write_text(yaml.safe_dump(mesh, sort_keys=False))
    print(f"wrote {path} and its three tables ({args.transactions} transactions)")


if __name__ == "__main__":
    main()
