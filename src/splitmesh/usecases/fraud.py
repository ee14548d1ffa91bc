"""``splitmesh fraud``: the shipped credit-card mesh (examples/fraud/mesh.yaml) with the
command's options as overrides, trained by the one engine (usecases/train.py).

Another creditcard.csv, or synthetic rows of its schema, is first written in the layout of
the real subset (a leading index column, the transaction key) under the run's folder; the
mesh file actually run is written beside the results.
"""

from __future__ import annotations

from pathlib import Path

from splitmesh.data.datasets.creditcard import (
    domain_names,
    load_creditcard,
    synthetic_creditcard,
    write_creditcard_csv,
)
from splitmesh.errors import ConfigError
from splitmesh.io import atomic_write_yaml
from splitmesh.yaml_files import read_yaml_mapping

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "fraud" / "mesh.yaml"
SUBSET = "../../../shared/data/creditcard/creditcard_1722.csv"  # as the example names it
LABELS = "fraud-labels"  # a party apart from every feature domain (DESIGN.md)


def _csv(out: Path, data: Path | None, synthetic_rows: int | None, seed: int) -> Path:
    """The table every domain reads: the real subset, or a copy of ``data`` or of synthetic
    rows written with an index column (their keys)."""
    if synthetic_rows is not None:
        path = out / "data" / f"creditcard-synthetic-{synthetic_rows}-{seed}.csv"
        if not path.is_file():  # deterministic in (rows, seed): written once
            write_creditcard_csv(path, synthetic_creditcard(synthetic_rows, seed), index=True)
        return path.resolve()
    if data is not None:
        path = out / "data" / "creditcard.csv"
        write_creditcard_csv(path, load_creditcard(data), index=True)
        return path.resolve()
    path = (EXAMPLE.parent / SUBSET).resolve()
    if not path.is_file():
        raise ConfigError(
            f"no data: the real subset {path} is not there",
            hint="pass --data creditcard.csv or --synthetic-rows 100000",
        )
    return path


def fraud_mesh(
    out: str | Path,
    *,
    data: str | Path | None = None,
    synthetic_rows: int | None = None,
    domains: int = 3,
    seed: int = 0,
) -> Path:
    """Write ``out/mesh.yaml``: the example mesh reading the chosen table, with its first
    ``domains`` feature domains (payments, cardholder, security); returns its path."""
    if data is not None and synthetic_rows is not None:
        raise ConfigError("Give either --data or --synthetic-rows, not both.")
    if not EXAMPLE.is_file():
        raise ConfigError(
            f"{EXAMPLE} is not there: splitmesh fraud runs the example of a source checkout",
            hint="splitmesh train MESH.yaml runs any mesh file",
        )
    out = Path(out)
    csv = _csv(out, Path(data) if data else None, synthetic_rows, seed)
    keep = {LABELS, *domain_names(domains)}
    mesh = read_yaml_mapping(EXAMPLE, "mesh file")
    mesh["domains"] = [d for d in mesh["domains"] if d["name"] in keep]
    for d in mesh["domains"]:
        d["source"]["sql"] = d["source"]["sql"].replace(SUBSET, str(csv))
        d["data_dirs"] = [str(csv.parent)]
    path = out / "mesh.yaml"
    atomic_write_yaml(path, mesh)
    return path
