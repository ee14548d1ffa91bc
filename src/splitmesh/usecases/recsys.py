"""``splitmesh recsys``: a recommender star mesh (sales, customers, products) shipped in
examples/ (MovieLens 100K, H&M) or written for synthetic H&M, with the command's options
as overrides, trained by the one engine (usecases/train.py).

The mesh file actually run is written to ``OUT/mesh.yaml``: each domain's source reads the
chosen folder; the H&M sales table is sampled in its SQL (a share of the customers, then
articles and customers with too few purchases left out, one pass each).
"""

from __future__ import annotations

from pathlib import Path

from splitmesh.errors import ConfigError
from splitmesh.io import atomic_write_yaml
from splitmesh.yaml_files import read_yaml_mapping

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
# each shipped example and the data folder its SQL names (relative to the mesh file)
SHIPPED = {
    "ml-100k": ("movielens", "../../../shared/data/ml-100k"),
    "hm": ("hm", "../../../shared/data/hm-sample"),
}
DATASETS = ("ml-100k", "hm", "hm-synthetic")
# H&M sizes as the source paper samples them: a share of the customers, then a k-core
PRESETS = {
    "small": {"fraction": 0.02, "min_user": 40, "min_item": 10},
    "medium": {"fraction": 0.07, "min_user": 40, "min_item": 10},
    "large": {"fraction": 0.18, "min_user": 40, "min_item": 10},
}


def hm_sales_sql(table: str, fraction: float = 1.0, min_user: int = 3, min_item: int = 1) -> str:
    """The H&M fact table in file order: customers drawn by a stable hash of their id (md5,
    the same on every DuckDB), articles bought at least ``min_item`` times, then customers
    with at least ``min_user`` purchases (leave-latest-out needs three)."""
    if not 0 < fraction <= 1:
        raise ConfigError(f"The 'fraction' parameter must be in (0, 1]. Got {fraction}.")
    # a filter that keeps every row is left out: at 31.8M rows each costs a pass (md5) or
    # a window over the whole table
    cut = f"{min(int(fraction * 16**8), 16**8 - 1):08x}"
    where = f" WHERE substr(md5(customer_id), 1, 8) < '{cut}'" if fraction < 1 else ""
    rows = (
        "SELECT customer_id, CAST(article_id AS BIGINT) AS article_id,"
        f" CAST(t_dat AS DATE) AS t_dat, row_number() OVER () AS line FROM {table}{where}"
    )
    if min_item > 1:
        rows = (
            f"SELECT * FROM ({rows})"
            f" QUALIFY count(*) OVER (PARTITION BY article_id) >= {int(min_item)}"
        )
    return (
        f"SELECT customer_id, article_id, t_dat FROM ({rows})"
        f" QUALIFY count(*) OVER (PARTITION BY customer_id) >= {max(3, int(min_user))}"
        " ORDER BY line"
    )


def _synthetic(out: Path, sizes: dict, seed: int) -> Path:
    """Kaggle-schema parquet tables from the generator, written once per size and seed."""
    from splitmesh.data.datasets.hm_synthetic import SyntheticHM, generate_hm

    cfg = SyntheticHM(**sizes, seed=seed)
    folder = out / "data" / f"synthetic-hm-{cfg.transactions}-{cfg.customers}-{cfg.articles}-{seed}"
    if not (folder / "transactions_train.parquet").is_file():
        generate_hm(folder, cfg)
    return folder.resolve()


def _read_as(sql: str, folder: Path, parquet: bool) -> str:
    """An H&M example SQL reading ``folder``'s tables (parquet when generated)."""
    for stem in ("transactions_train", "customers", "articles"):
        csv = f"read_csv('{SHIPPED['hm'][1]}/{stem}.csv', header=true)"
        sql = sql.replace(csv, f"'{folder / stem}.parquet'" if parquet else csv)
    return sql.replace(SHIPPED["hm"][1], str(folder))


def recsys_mesh(
    out: str | Path,
    *,
    dataset: str = "ml-100k",
    data: str | Path | None = None,
    synthetic: dict | None = None,
    preset: str | None = None,
    sampling: dict | None = None,
    domains: int = 3,
    seed: int = 0,
) -> Path:
    """Write ``out/mesh.yaml`` for ``dataset`` read from ``data`` (default: the shipped
    example's folder) with its first ``domains`` domains; returns its path. ``sampling``
    (``fraction``, ``min_user``, ``min_item``) overrides the H&M ``preset``'s."""
    if dataset not in DATASETS:
        raise ConfigError(f"The 'dataset' parameter must be one of {DATASETS}. Got {dataset!r}.")
    if not 1 <= domains <= 3:
        raise ConfigError(f"The 'domains' parameter must be 1 to 3. Got {domains} instead.")
    if preset is not None and preset not in PRESETS:
        raise ConfigError(
            f"The 'preset' parameter must be one of {sorted(PRESETS)}. Got {preset!r}."
        )
    out = Path(out)
    example, folder_in_sql = SHIPPED["hm" if dataset.startswith("hm") else dataset]
    here = EXAMPLES / example
    mesh = read_yaml_mapping(here / "mesh.yaml", "mesh file")
    if dataset == "hm-synthetic":
        folder = _synthetic(out, synthetic or {}, seed)
    elif data is not None:
        folder = Path(data).resolve()
    else:
        folder = (here / folder_in_sql).resolve()
    if not folder.is_dir():
        raise ConfigError(
            f"{dataset} data not found at {folder}",
            hint="give --data FOLDER (MovieLens: u.data, u.user, u.item; H&M: the Kaggle "
            "CSVs), or --dataset hm-synthetic",
        )
    how = {**PRESETS.get(preset, {}), **{k: v for k, v in (sampling or {}).items() if v}}
    for d in mesh["domains"]:
        sql = d["source"]["sql"]
        if dataset.startswith("hm"):
            if d["name"] == mesh["fact"]["domain"]:
                table = f"read_csv('{SHIPPED['hm'][1]}/transactions_train.csv', header=true)"
                sql = hm_sales_sql(table, **how)
            sql = _read_as(sql, folder, parquet=dataset == "hm-synthetic")
        else:
            sql = sql.replace(folder_in_sql, str(folder))
        d["source"] = {"sql": sql}
        d["data_dirs"] = [str(folder)]
    keep = [d["name"] for d in mesh["domains"]][:domains]  # sales, customers, products
    mesh["domains"] = [d for d in mesh["domains"] if d["name"] in keep]
    for side in ("user", "item"):  # a dimension left out: the fact's key into it stays ids
        if mesh["fact"][side].get("domain") not in keep:
            mesh["fact"][side]["domain"] = None
    mesh["name"] = "-".join(filter(None, [dataset, preset]))
    path = out / "mesh.yaml"
    atomic_write_yaml(path, mesh)
    return path
