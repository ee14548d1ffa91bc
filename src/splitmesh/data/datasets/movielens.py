"""MovieLens 100K (GroupLens) as a three-domain star: ratings / users / movies.

Every rating counts as an interaction (implicit feedback, as in the NCF paper).
Users: age (numeric), gender, occupation, first zip digit (categorical).
Movies: release year (numeric, may be missing), 19 genre flags (numeric 0/1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from splitmesh.data.interactions import FeatureTable, RecsysData, encode_categories
from splitmesh.errors import DataError

GENRES = 19


def _read(path: Path, sep: str, names: list[str]) -> pd.DataFrame:
    if not path.is_file():
        raise DataError("no such file (expected a MovieLens 100K folder)", path=str(path))
    try:
        df = pd.read_csv(path, sep=sep, names=names, header=None, encoding="latin-1")
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"not a readable MovieLens file: {exc}", path=str(path)) from None
    if df.empty:
        raise DataError("the file is empty", path=str(path))
    return df


def _ids(df: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    values = pd.to_numeric(df[column], errors="coerce")
    if values.isna().any():
        row = int(np.flatnonzero(values.isna().to_numpy())[0])
        raise DataError(
            f"non-integer id {df[column].iloc[row]!r}", path=str(path), column=column, row=row + 1
        )
    return values.to_numpy(np.int64)


def load_movielens(folder: str | Path) -> RecsysData:
    """Read ``u.data``, ``u.user`` and ``u.item`` from ``folder``."""
    folder = Path(folder)
    ratings = _read(folder / "u.data", "\t", ["user", "item", "rating", "time"])
    users = _read(folder / "u.user", "|", ["user", "age", "gender", "occupation", "zip"])
    genre_cols = [f"genre_{g}" for g in range(GENRES)]
    items = _read(folder / "u.item", "|", ["item", "title", "release", "video", "url", *genre_cols])
    r_user, r_item = (
        _ids(ratings, "user", folder / "u.data"),
        _ids(ratings, "item", folder / "u.data"),
    )
    user_ids, item_ids = (
        _ids(users, "user", folder / "u.user"),
        _ids(items, "item", folder / "u.item"),
    )
    # ids are 1..n in the original; map through the tables so gaps and orders do not matter
    u_pos = pd.Index(user_ids).get_indexer(r_user)
    i_pos = pd.Index(item_ids).get_indexer(r_item)
    for what, pos, raw, f in (("user", u_pos, r_user, "u.user"), ("item", i_pos, r_item, "u.item")):
        if (pos < 0).any():
            bad = raw[pos < 0][0]
            raise DataError(
                f"{what} id {bad} is rated in u.data but missing from {f}", path=str(folder / f)
            )

    age = pd.to_numeric(users["age"], errors="coerce").to_numpy(np.float64)
    gender, n_gender = encode_categories(users["gender"])
    occupation, n_occ = encode_categories(users["occupation"])
    zip1, n_zip = encode_categories(users["zip"].astype(str).str[:1])
    user_table = FeatureTable(
        numeric=age[:, None],
        numeric_names=("age",),
        categorical=np.stack([gender, occupation, zip1], axis=1),
        categorical_names=("gender", "occupation", "zip_prefix"),
        cardinalities=(n_gender, n_occ, n_zip),
    )
    year = pd.to_datetime(items["release"], format="%d-%b-%Y", errors="coerce").dt.year
    genres = items[genre_cols].apply(pd.to_numeric, errors="coerce").fillna(0).to_numpy(np.float64)
    item_table = FeatureTable(
        numeric=np.column_stack([year.to_numpy(np.float64), genres]),
        numeric_names=("release_year", *genre_cols),
        categorical=np.zeros((len(items), 0), np.int64),
        categorical_names=(),
        cardinalities=(),
    )
    return RecsysData(
        name="ml-100k",
        user=u_pos.astype(np.int64),
        item=i_pos.astype(np.int64),
        time=_ids(ratings, "time", folder / "u.data"),
        n_users=len(users),
        n_items=len(items),
        users=user_table,
        items=item_table,
    )
