"""Do the shipped training defaults fit small tables? Every table cut into three domains
(label-sharing, in process), trained with the defaults alone, against a logistic regression
and gradient-boosted trees on the same joined rows (``--compare``'s reference rows).

Tables: scikit-learn's bundled wine, iris, digits and breast-cancer sets (no download),
a synthetic four-class table, and the real credit-card subset in ../shared/data when it is
there. Test accuracy and log-loss; epochs run (early stopping on validation).

    python benchmarks/defaults.py --out benchmarks/results
    python benchmarks/defaults.py --set training.lr=0.001 --set training.epochs=20  # old ones
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

CREDITCARD = Path(__file__).resolve().parents[2] / "shared/data/creditcard/creditcard_1722.csv"


def tables() -> dict:
    """name -> (frame with a column y, task)."""
    import pandas as pd
    from sklearn import datasets

    out = {}
    for name, load, task in (
        ("wine", datasets.load_wine, "multiclass"),
        ("iris", datasets.load_iris, "multiclass"),
        ("digits", datasets.load_digits, "multiclass"),
        ("breast cancer", datasets.load_breast_cancer, "binary"),
    ):
        b = load()
        df = pd.DataFrame(b.data, columns=[f"f{i}" for i in range(b.data.shape[1])])
        out[name] = (df.assign(y=b.target), task)
    x, y = datasets.make_classification(1200, 12, n_informative=8, n_classes=4, random_state=3)
    out["synthetic 4-class"] = (pd.DataFrame(x).add_prefix("f").assign(y=y), "multiclass")
    if CREDITCARD.is_file():
        df = pd.read_csv(CREDITCARD).iloc[:, 1:].rename(columns={"Class": "y"})
        out["credit-card subset"] = (df, "binary")
    return out


def run_one(name: str, df, task: str, work: Path, sets: list[str]) -> dict:
    from splitmesh.data.datasets.vertical import write_vertical_mesh
    from splitmesh.mesh.spec import load_mesh
    from splitmesh.usecases.train import train_mesh

    cols = [c for c in df.columns if c != "y"]
    k = len(cols) // 3
    domains = {"a": cols[:k], "b": cols[k : 2 * k], "c": cols[2 * k :]}
    folder = work / name.replace(" ", "-")
    mesh = write_vertical_mesh(
        df, domains, label="y", label_domain="a", folder=folder, task=task, keep=1.0,
        mode="label-sharing",
    )  # fmt: skip
    t0 = time.perf_counter()
    res = train_mesh(
        load_mesh(mesh, sets), folder / "out", compare=True, progress=False,
        catalog=str(work / "catalog.db"),
    )  # fmt: skip
    runs = {r["mode"]: r for r in [*res["runs"], *res["references"]]}
    split = runs["label-sharing"]
    return {
        "table": name,
        "rows": len(df),
        "task": task,
        "seconds": round(time.perf_counter() - t0, 1),
        "epochs_run": split["epochs_run"],
        **{
            f"{short}_{metric}": runs[mode]["metrics"][metric]
            for short, mode in (
                ("split", "label-sharing"),
                ("linear", "linear (reference)"),
                ("trees", "boosted trees (reference)"),
            )
            for metric in ("accuracy", "log_loss")
        },
    }


PARTS = ("split", "linear", "trees")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", dest="sets", action="append", default=[], help="mesh override")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    from rich.console import Console
    from rich.table import Table

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (df, task) in tables().items():
            rows.append(run_one(name, df, task, Path(tmp), args.sets))
            print(f"{name}: done in {rows[-1]['seconds']} s", flush=True)
    title = (
        "defaults on small tables: test accuracy / log-loss ("
        + (", ".join(args.sets) or "shipped defaults")
        + ")"
    )
    t = Table(title=title)
    heads = ("table", "rows", "epochs", "split (defaults)", "logistic regression", "boosted trees")
    for c in heads:
        t.add_column(c)
    for r in rows:
        cells = [f"{r[p + '_accuracy']:.3f} / {r[p + '_log_loss']:.3f}" for p in PARTS]
        t.add_row(r["table"], str(r["rows"]), str(r["epochs_run"]), *cells)
    Console(width=160).print(t)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / "defaults.json"
        doc = {"benchmark": "defaults", "sets": args.sets, "rows": rows}
        path.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
