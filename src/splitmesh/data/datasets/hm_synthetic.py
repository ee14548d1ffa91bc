"""A synthetic H&M dataset: the Kaggle schema at any scale, with structure to learn.

Articles belong to a *style* (their section) with correlated attributes and a skewed
popularity. Each customer has a few favourite styles and an age group whose styles they
also buy; purchases pick a style from that taste and then an article by popularity. So
ids, customer features (age) and article features (section, group, ...) all carry signal.

Transactions are written as Parquet in chunks (one row group each), so memory stays
bounded at the full size (31.8M transactions, 1.37M customers, 105.5k articles).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from splitmesh.errors import ConfigError

FULL = {"customers": 1_371_980, "articles": 105_542, "transactions": 31_788_324}
START = np.datetime64("2018-09-20")
DAYS = 734  # up to 2020-09-22, as the original
N_STYLES = 56
AGE_GROUPS = ((16, 25), (25, 35), (35, 50), (50, 100))


@dataclasses.dataclass(frozen=True)
class SyntheticHM:
    customers: int = 20_000
    articles: int = 5_000
    transactions: int = 400_000
    seed: int = 0
    chunk: int = 1_000_000  # transactions per row group

    def __post_init__(self) -> None:
        if min(self.customers, self.articles, self.transactions, self.chunk) < 1:
            raise ConfigError(f"synthetic H&M sizes must be positive. Got {self}.")

    @classmethod
    def full(cls, seed: int = 0) -> SyntheticHM:
        return cls(**FULL, seed=seed)


def _hex_ids(prefix: str, n: int, seed: int) -> np.ndarray:
    """64-character hashed ids like the original's customer_id, as fixed-width bytes."""
    return np.array(
        [hashlib.sha256(f"{prefix}{seed}:{i}".encode()).hexdigest().encode() for i in range(n)],
        dtype="S64",
    )


def _articles(cfg: SyntheticHM, rng: np.random.Generator):
    import pyarrow as pa

    n = cfg.articles
    style = np.minimum(rng.zipf(1.3, n) - 1, N_STYLES - 1)  # some sections are much bigger
    style = rng.permutation(N_STYLES)[style]
    index_group = np.array([1, 2, 3, 4, 26])[style % 5]
    garment = 1001 + (style * 7 + rng.integers(0, 3, n)) % 21
    colour = rng.integers(1, 51, n)
    codes = 108_775 + rng.permutation(n * 2)[:n]
    article_id = codes * 1000 + rng.integers(1, 40, n)
    table = pa.table(
        {
            "article_id": article_id,
            "product_code": codes,
            "prod_name": pa.array([f"Item {c}" for c in codes]),
            "product_type_no": 50 + (style * 3 + rng.integers(0, 4, n)) % 131,
            "product_group_name": pa.array([f"Group {g}" for g in (style % 19)]),
            "graphical_appearance_no": 1010000 + rng.integers(1, 31, n),
            "colour_group_code": colour,
            "perceived_colour_value_id": 1 + colour % 8,
            "perceived_colour_master_id": 1 + colour % 20,
            "department_no": 1000 + style * 5 + rng.integers(0, 5, n),
            "index_code": pa.array([chr(ord("A") + g % 10) for g in style]),
            "index_group_no": index_group,
            "section_no": 2 + style,
            "garment_group_no": garment,
            "detail_desc": pa.array([None] * n, pa.string()),
        }
    )
    popularity = rng.lognormal(0.0, 1.5, n)
    price = rng.lognormal(-3.6, 0.5, n)
    return table, style, popularity, price


def _style_sampler(style: np.ndarray, popularity: np.ndarray):
    """Draw an article of a given style with probability proportional to its popularity."""
    order = np.argsort(style, kind="stable")
    bounds = np.searchsorted(style[order], np.arange(N_STYLES + 1))
    cum = np.cumsum(popularity[order])
    base = np.concatenate([[0.0], cum])
    sizes = np.diff(bounds)
    present = np.flatnonzero(sizes > 0)

    def draw(styles: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        styles = present[np.searchsorted(present, styles) % len(present)]  # empty -> next
        lo, hi = base[bounds[styles]], base[bounds[styles + 1]]
        at = np.searchsorted(cum, lo + rng.random(len(styles)) * (hi - lo), side="right")
        return order[np.minimum(at, bounds[styles + 1] - 1)]

    return draw


def generate_hm(
    out: str | Path,
    cfg: SyntheticHM = SyntheticHM(),
    *,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Path]:
    """Write customers.parquet, articles.parquet and transactions_train.parquet to ``out``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([cfg.seed, 2718])
    articles, style, popularity, price = _articles(cfg, rng)
    draw = _style_sampler(style, popularity)
    paths = {s: out / f"{s}.parquet" for s in ("customers", "articles", "transactions_train")}
    pq.write_table(articles, paths["articles"].with_suffix(".tmp"))

    n = cfg.customers
    ids = _hex_ids("customer", n, cfg.seed)
    young = rng.random(n) < 0.55
    age = np.where(young, rng.normal(26, 5, n), rng.normal(50, 10, n)).clip(16, 99).round()
    age_group = np.searchsorted([b for _, b in AGE_GROUPS[:-1]], age, side="right")
    favourites = rng.integers(0, N_STYLES, (n, 3))
    age_styles = (np.arange(4)[:, None] * 13 + np.arange(14)[None, :]) % N_STYLES  # per group
    club = rng.choice(
        ["ACTIVE", "PRE-CREATE", "LEFT CLUB", None], n, p=[0.926, 0.067, 0.0004, 0.0066]
    )
    news = rng.choice(["NONE", "Regularly", "Monthly", None], n, p=[0.64, 0.348, 0.0006, 0.0114])
    customers = pa.table(
        {
            "customer_id": pa.array(ids).cast(pa.string()),
            "FN": np.where(rng.random(n) < 0.35, 1.0, np.nan),
            "Active": np.where(rng.random(n) < 0.34, 1.0, np.nan),
            "club_member_status": pa.array(club.tolist(), pa.string()),
            "fashion_news_frequency": pa.array(news.tolist(), pa.string()),
            "age": pa.array(age.astype(np.int64), mask=rng.random(n) < 0.011),
            "postal_code": pa.array(_hex_ids("postal", n, cfg.seed)[rng.integers(0, n, n)]).cast(
                pa.string()
            ),
        }
    )
    pq.write_table(customers, paths["customers"].with_suffix(".tmp"))
    del customers

    # purchases per customer: heavy-tailed, summing to the requested total
    weight = rng.lognormal(0.0, 1.1, n)
    counts = np.floor(weight / weight.sum() * cfg.transactions).astype(np.int64)
    np.add.at(counts, rng.choice(n, cfg.transactions - counts.sum(), replace=True), 1)
    schema = pa.schema(
        [
            ("t_dat", pa.string()),
            ("customer_id", pa.string()),
            ("article_id", pa.int64()),
            ("price", pa.float64()),
            ("sales_channel_id", pa.int64()),
        ]
    )
    article_ids = articles.column("article_id").to_numpy()
    ends = np.cumsum(counts)
    tmp = paths["transactions_train"].with_suffix(".tmp")
    with pq.ParquetWriter(tmp, schema) as writer:
        first = 0
        while first < n:
            last = int(
                np.searchsorted(
                    ends, ends[first - 1] + cfg.chunk if first else cfg.chunk, side="right"
                )
            )
            last = max(last, first + 1)
            cust = np.repeat(np.arange(first, last), counts[first:last])
            m = len(cust)
            pick = rng.random(m)
            styles = np.where(
                pick < 0.7,
                favourites[cust, rng.integers(0, 3, m)],
                age_styles[age_group[cust], rng.integers(0, 14, m)],
            )
            styles = np.where(pick > 0.92, rng.integers(0, N_STYLES, m), styles)  # exploration
            art = draw(styles, rng)
            days = START + rng.integers(0, DAYS, m).astype("timedelta64[D]")
            batch = pa.table(
                {
                    "t_dat": pa.array(np.datetime_as_string(days, unit="D")),
                    "customer_id": pa.array(ids[cust]).cast(pa.string()),
                    "article_id": article_ids[art],
                    "price": price[art] * rng.lognormal(0, 0.1, m),
                    "sales_channel_id": np.where(rng.random(m) < 0.7, 2, 1),
                },
                schema=schema,
            )
            writer.write_table(batch)
            if progress is not None:
                progress(m)
            first = last
    for p in paths.values():  # all three complete before any takes its final name
        p.with_suffix(".tmp").replace(p)
    return paths
