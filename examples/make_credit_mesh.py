"""Write examples/credit/: the fraud data cut into a mesh of three domain tables.

Uses the real subset in ../shared/data/ when it is there (it stays out of git: the
written files are ignored), else synthetic rows of the same schema.

    python examples/make_credit_mesh.py
    splitmesh train examples/credit/mesh.yaml --out runs/credit --compare
"""

from pathlib import Path

from splitmesh.data.datasets.creditcard import DOMAINS, synthetic_creditcard
from splitmesh.data.datasets.vertical import write_vertical_mesh

HERE = Path(__file__).resolve().parent
REAL = HERE.parent.parent / "shared" / "data" / "creditcard" / "creditcard_1722.csv"


def main() -> None:
    import pandas as pd

    if REAL.is_file():
        df = pd.read_csv(REAL).iloc[:, 1:]  # the file has a leading unnamed index column
    else:
        t = synthetic_creditcard(20_000, 0)
        df = pd.DataFrame(t.x, columns=list(t.columns)).assign(Class=t.y)
    path = write_vertical_mesh(
        df,
        DOMAINS,
        label="Class",
        label_domain="payments",
        folder=HERE / "credit",
        name="credit-fraud",
        string_keys=True,
        extra={
            "training": {
                "epochs": 100,
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
