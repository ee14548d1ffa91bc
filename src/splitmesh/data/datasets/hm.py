"""H&M Personalized Fashion Recommendations (Kaggle schema) as a three-domain star.

Files: ``transactions_train`` (t_dat, customer_id, article_id, price, sales_channel_id),
``customers`` and ``articles``, each as .csv or .parquet in one folder. The originals
are 3.5 GB of transactions: DuckDB reads, samples and de-duplicates them, and Python
only ever sees integer arrays of the sample.

Sampling follows the source paper: a seeded fraction of customers, duplicate
(customer, article) pairs dropped (the first purchase is kept), a k-core (every customer
and article with a minimum number of interactions, iterated), ids re-indexed.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from splitmesh.data.interactions import FeatureTable, RecsysData, encode_categories, kcore
from splitmesh.errors import ConfigError, DataError

TRANSACTIONS = ("t_dat", "customer_id", "article_id")
CUSTOMER_NUMERIC = ("age",)
CUSTOMER_CATEGORICAL = ("FN", "Active", "club_member_status", "fashion_news_frequency")
# postal_code is left out on purpose: a hashed address is a quasi-identifier, not a taste
ARTICLE_CATEGORICAL = (
    "product_type_no",
    "product_group_name",
    "graphical_appearance_no",
    "colour_group_code",
    "perceived_colour_value_id",
    "perceived_colour_master_id",
    "department_no",
    "index_code",
    "index_group_no",
    "section_no",
    "garment_group_no",
)


@dataclasses.dataclass(frozen=True)
class HMSampling:
    fraction: float = 1.0  # share of customers kept, drawn by seed
    min_user: int = 1  # k-core: interactions per customer
    min_item: int = 1  # k-core: interactions per article
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.fraction <= 1:
            raise ConfigError(f"The 'fraction' parameter must be in (0, 1]. Got {self.fraction}.")
        if self.min_user < 1 or self.min_item < 1:
            raise ConfigError("The k-core minimums must be >= 1.")


# Roughly the paper's sizes on the full data (about 78k / 393k / 1.1M training interactions
# with 919 / 3,153 / 8,212 users): few, heavy customers after a deep k-core.
PRESETS: dict[str, HMSampling] = {
    "small": HMSampling(fraction=0.02, min_user=40, min_item=10),
    "medium": HMSampling(fraction=0.07, min_user=40, min_item=10),
    "large": HMSampling(fraction=0.18, min_user=40, min_item=10),
}


def sampling(preset: str | None, **overrides) -> HMSampling:
    if preset is None:
        return HMSampling(**{k: v for k, v in overrides.items() if v is not None})
    if preset not in PRESETS:
        raise ConfigError(
            f"The 'preset' parameter must be one of {sorted(PRESETS)}. Got {preset!r}."
        )
    return dataclasses.replace(
        PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}
    )


def find_table(folder: Path, stem: str) -> Path:
    """``stem``.parquet, a ``stem`` folder of Parquet parts, or ``stem``.csv."""
    for candidate in (folder / f"{stem}.parquet", folder / stem, folder / f"{stem}.csv"):
        if candidate.exists():
            return candidate
    raise DataError(f"no {stem}.csv or {stem}.parquet in the H&M folder", path=str(folder))


def relation(con, path: Path) -> str:
    """A DuckDB table expression for a CSV, a Parquet file or a folder of Parquet parts."""
    p = str(path).replace("'", "''")
    if path.is_dir():
        return f"read_parquet('{p}/*.parquet')"
    if path.suffix == ".parquet":
        return f"read_parquet('{p}')"
    # all_varchar: ids such as article_id 0108775015 keep their meaning; typed below
    return f"read_csv('{p}', header=true, all_varchar=true)"


def _columns(con, rel: str, path: Path, wanted: tuple[str, ...]) -> list[str]:
    import duckdb

    try:
        cols = [r[0] for r in con.sql(f"DESCRIBE SELECT * FROM {rel}").fetchall()]
    except duckdb.Error as exc:
        raise DataError(f"not a readable table: {exc}".splitlines()[0], path=str(path)) from None
    missing = [c for c in wanted if c not in cols]
    if missing:
        raise DataError(
            f"missing column(s) {', '.join(map(repr, missing))}; it has {', '.join(cols[:10])}",
            path=str(path),
            column=missing[0],
        )
    return cols


def load_hm(folder: str | Path, how: HMSampling = HMSampling(), *, name: str = "hm") -> RecsysData:
    import duckdb

    folder = Path(folder)
    paths = {s: find_table(folder, s) for s in ("transactions_train", "customers", "articles")}
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")  # ours are drawn by rich
    rels = {s: relation(con, p) for s, p in paths.items()}
    _columns(con, rels["transactions_train"], paths["transactions_train"], TRANSACTIONS)
    _columns(
        con,
        rels["customers"],
        paths["customers"],
        ("customer_id", *CUSTOMER_NUMERIC, *CUSTOMER_CATEGORICAL),
    )
    _columns(con, rels["articles"], paths["articles"], ("article_id", *ARTICLE_CATEGORICAL))
    tx = rels["transactions_train"]
    try:
        # the customer sample: a seeded draw from the sorted distinct ids (stable across
        # DuckDB versions, unlike its hash function)
        ids = np.array(
            con.sql(
                f"SELECT DISTINCT customer_id FROM {tx} WHERE customer_id IS NOT NULL ORDER BY 1"
            ).fetchnumpy()["customer_id"]
        )
        if len(ids) == 0:
            raise DataError("no transactions", path=str(paths["transactions_train"]))
        rng = np.random.default_rng([how.seed, 5381])
        keep = np.sort(
            rng.choice(len(ids), size=max(1, round(how.fraction * len(ids))), replace=False)
        )
        con.register("sampled", {"customer_id": ids[keep]})
        con.execute(
            f"""
            CREATE TEMP TABLE pairs AS
            SELECT t.customer_id, CAST(t.article_id AS BIGINT) AS article_id,
                   min(CAST(t.t_dat AS DATE)) AS day
            FROM {tx} t JOIN sampled s USING (customer_id)
            GROUP BY ALL
            """
        )
        known = con.sql(
            f"""
            SELECT p.customer_id, p.article_id, date_diff('day', DATE '2000-01-01', p.day) AS day
            FROM pairs p
            SEMI JOIN (SELECT customer_id FROM {rels["customers"]}) c USING (customer_id)
            SEMI JOIN (SELECT CAST(article_id AS BIGINT) AS article_id FROM {rels["articles"]}) a
                USING (article_id)
            ORDER BY day, customer_id, article_id
            """
        ).fetchnumpy()
    except duckdb.Error as exc:
        raise DataError(
            f"could not read the H&M tables: {str(exc).splitlines()[0]}", path=str(folder)
        ) from None
    if len(known["article_id"]) == 0:
        raise DataError(
            "no sampled transaction joins a known customer and article", path=str(folder)
        )
    user_distinct, user = np.unique(np.array(known["customer_id"]), return_inverse=True)
    item_distinct, item = np.unique(np.asarray(known["article_id"], np.int64), return_inverse=True)
    mask = kcore(user, item, how.min_user, how.min_item)
    if not mask.any():
        raise DataError(
            f"the k-core (customers >= {how.min_user}, articles >= {how.min_item} interactions) "
            "left nothing; lower the minimums or raise the fraction",
            path=str(folder),
        )
    user_ids, user = np.unique(user_distinct[user[mask]], return_inverse=True)
    item_ids, item = np.unique(item_distinct[item[mask]], return_inverse=True)
    day = np.asarray(known["day"], np.int64)[mask]
    users = _customer_table(con, rels["customers"], user_ids, paths["customers"])
    items = _article_table(con, rels["articles"], item_ids, paths["articles"])
    return RecsysData(
        name,
        user.astype(np.int64),
        item.astype(np.int64),
        day,
        len(user_ids),
        len(item_ids),
        users,
        items,
    )


def _rows_for(con, rel: str, key: str, ids, cast: str, path: Path, columns: tuple[str, ...]):
    """The table's rows for ``ids``, in that order; refuses duplicate keys."""
    con.register("wanted", {"k": ids, "pos": np.arange(len(ids))})
    cols = ", ".join(f'"{c}"' for c in columns)
    df = con.sql(
        f"SELECT w.pos, {cols} FROM (SELECT * , CAST({key} AS {cast}) AS k FROM {rel}) t "
        "JOIN wanted w USING (k) ORDER BY w.pos"
    ).df()
    if len(df) != len(ids):
        dup = df["pos"][df["pos"].duplicated()]
        example = ids[int(dup.iloc[0])] if len(dup) else "?"
        raise DataError(f"{key} {example!r} appears more than once", path=str(path), column=key)
    return df


def _customer_table(con, rel: str, ids: np.ndarray, path: Path) -> FeatureTable:
    import pandas as pd

    df = _rows_for(
        con, rel, "customer_id", ids, "VARCHAR", path, (*CUSTOMER_NUMERIC, *CUSTOMER_CATEGORICAL)
    )
    age = pd.to_numeric(df["age"], errors="coerce").to_numpy(np.float64)
    cats = [encode_categories(df[c].astype("string").str.upper()) for c in CUSTOMER_CATEGORICAL]
    return FeatureTable(
        numeric=age[:, None],
        numeric_names=CUSTOMER_NUMERIC,
        categorical=np.stack([c for c, _ in cats], axis=1),
        categorical_names=CUSTOMER_CATEGORICAL,
        cardinalities=tuple(k for _, k in cats),
    )


def _article_table(con, rel: str, ids: np.ndarray, path: Path) -> FeatureTable:
    df = _rows_for(con, rel, "article_id", ids, "BIGINT", path, ARTICLE_CATEGORICAL)
    cats = [encode_categories(df[c]) for c in ARTICLE_CATEGORICAL]
    return FeatureTable(
        numeric=np.zeros((len(df), 0)),
        numeric_names=(),
        categorical=np.stack([c for c, _ in cats], axis=1),
        categorical_names=ARTICLE_CATEGORICAL,
        cardinalities=tuple(k for _, k in cats),
    )
