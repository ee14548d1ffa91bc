"""Write a mesh of three domain tables cut from the fraud data (default: examples/credit/).

Uses the real subset in ../shared/data/ when it is there (it stays out of git: the
written files are ignored), else synthetic rows of the same schema.

    python examples/make_credit_mesh.py                      # examples/credit/mesh.yaml
    python examples/make_credit_mesh.py --out /tmp/credit --synthetic --rows 5000
    splitmesh train examples/credit/mesh.yaml --out runs/credit --compare
"""

import argparse
from pathlib import Path

from splitmesh.data.datasets.creditcard import DOMAINS, synthetic_creditcard
from splitmesh.data.datasets.vertical import write_vertical_mesh

HERE = Path(__file__).resolve().parent
REAL = HERE.parent.parent / "shared" / "data" / "creditcard" / "creditcard_1722.csv"


def main() -> None:
    import pandas as pd

    ask = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ask.add_argument("--out", type=Path, default=HERE / "credit", help="folder for the mesh")
    ask.add_argument("--data", type=Path, default=REAL, help="a creditcard CSV (index column)")
    ask.add_argument("--synthetic", action="store_true", help="synthetic rows, even with --data")
    ask.add_argument("--rows", type=int, default=20_000, help="synthetic rows")
    ask.add_argument("--seed", type=int, default=0, help="synthetic rows' seed")
    args = ask.parse_args()
    if args.data.is_file() and not args.synthetic:
        df = pd.read_csv(args.data).iloc[:, 1:]  # the file has a leading unnamed index column
    else:
        t = synthetic_creditcard(args.rows, args.seed)
        df = pd.DataFrame(t.x, columns=list(t.columns)).assign(Class=t.y)
    path = write_vertical_mesh(
        df,
        DOMAINS,
        label="Class",
        label_domain="payments",
        folder=args.out,
        name="credit-fraud",
        string_keys=True,
        extra={
            "training": {
                "epochs": 100,
                "lr": 0.001,
                "batch_size": 64,
                "patience": 20,
                "weight_decay": 1e-4,
                "select_metric": "log_loss",
            },
            "model": {"bottom": [64, 16], "top": [32]},
        },
    )
    print(f"wrote {path} and one table per domain ({len(df)} source rows)")


if __name__ == "__main__":
    main()
