"""A domain's table read by DuckDB through Arrow: ``load_coded_table`` (a dimension's,
categories coded) gives the features, codes and errors of ``load_domain_table``
(categories as values), on random tables; both read every column type as a DataFrame of
DuckDB's result did, without making one."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from splitmesh.data.sources import Source, load_coded_table, load_domain_table
from splitmesh.errors import ConfigError, DataError
from splitmesh.split.star import feature_table

VALUES = ["a", "b", "B", "é", "zz", "10", "9", " x", "ä", "Ω"]


def random_table(seed: int, rows: int, string_keys: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    keys = rng.permutation(rows * 3)[:rows]
    df = pd.DataFrame({"k": [f"key-{k}" for k in keys] if string_keys else keys})
    x = rng.normal(size=rows)
    x[rng.random(rows) < 0.2] = np.nan
    df["x"] = x
    df["n"] = rng.integers(-5, 5, size=rows)
    df["flag"] = rng.random(rows) < 0.5
    text = rng.choice(VALUES, size=rows).astype(object)
    text[rng.random(rows) < 0.15] = None
    text[rng.random(rows) < 0.05] = ""  # empty text counts as missing
    df["c"] = text
    codes = rng.integers(0, 40, size=rows).astype(float)
    codes[rng.random(rows) < 0.1] = np.nan
    df["num_cat"] = codes  # a category stored as numbers with gaps
    return df


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_the_coded_table_is_the_value_tables_feature_table(tmp_path, seed, fmt):
    df = random_table(seed, rows=50 + 40 * seed, string_keys=seed % 2 == 0)
    path = tmp_path / f"t.{fmt}"
    df.to_csv(path, index=False) if fmt == "csv" else df.to_parquet(path, index=False)
    args = dict(key="k", categorical=["c", "num_cat", "flag"])
    old = load_domain_table("customers", Source(path=path), **args)
    new = load_coded_table("customers", Source(path=path), **args)
    a, b = feature_table(old), feature_table(new)
    assert a.columns == b.columns == ["x", "n", "flag", "c", "num_cat"]
    np.testing.assert_array_equal(a.numeric, b.numeric)  # NaN where missing, in both
    np.testing.assert_array_equal(a.categorical, b.categorical)
    assert a.cardinalities == b.cardinalities
    assert list(old.keys) == list(new.keys) and old.key_items() == new.key_items()
    assert new.key_type == old.key_type
    assert b.categorical.min() >= 0 and (b.categorical < np.array(b.cardinalities)).all()


def test_a_sql_source_with_an_index_column_and_all_missing_category(tmp_path):
    pd.DataFrame({"id": [3, 1, 2], "v": ["x", None, "y"]}).to_csv(tmp_path / "t.csv")
    sql = "SELECT *, NULL::VARCHAR AS empty FROM read_csv('t.csv', header=true)"
    t = load_coded_table(
        "products", Source(sql=sql, base=tmp_path), key="id", categorical=["v", "empty"]
    )
    assert t.features == ["v", "empty"] and list(t.keys) == [3, 1, 2]
    assert t.categorical.tolist() == [[1, 0], [0, 0], [2, 0]]
    assert t.cardinalities == (3, 1)


def write(tmp_path, df: pd.DataFrame):
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    return Source(path=path)


@pytest.mark.parametrize(
    ("df", "kwargs", "error", "match"),
    [
        ({"k": ["a", "b", "a", "b"], "x": [1, 2, 3, 4]}, {}, DataError,
         "duplicate key 'a' \\(2 duplicate row"),
        ({"k": [5, 6, 6], "x": [1, 2, 3]}, {}, DataError, "duplicate key 6 \\(1 duplicate"),
        ({"k": ["a", None, "c"], "x": [1, 2, 3]}, {}, DataError, "missing key"),
        ({"k": [1, 2, 3], "x": ["1", "two", "3"]}, {}, DataError, "non-numeric value 'two'"),
        ({"k": [1, 2, 3], "x": [1.0, np.inf, 3.0]}, {}, DataError, "infinite value"),
        ({"k": [1, 2], "x": [1, 2]}, {"features": ["y"]}, DataError,
         "feature column 'y' is not in the table"),
        ({"k": [1, 2], "x": [1, 2]}, {"categorical": ["z"], "features": ["x"]}, DataError,
         "categorical column 'z' is not in the table"),
        ({"k": [1, 2], "x": [1, 2]}, {"features": ["k"]}, ConfigError, "cannot be a feature"),
        ({"k": [1, 2]}, {}, ConfigError, "has no feature columns"),
        ({"k": [], "x": []}, {}, DataError, "has no rows"),
    ],
)  # fmt: skip
def test_bad_tables_are_refused_alike_by_both_loaders(tmp_path, df, kwargs, error, match):
    src = write(tmp_path, pd.DataFrame(df))
    for load in (load_domain_table, load_coded_table):
        with pytest.raises(error, match=match) as info:
            load("customers", src, key="k", **kwargs)
        assert "customers" in str(info.value)


def test_the_error_names_the_row_of_the_first_repeated_key(tmp_path):
    src = write(tmp_path, pd.DataFrame({"k": ["a", "b", "c", "b", "a"], "x": range(5)}))
    with pytest.raises(DataError) as info:
        load_coded_table("customers", src, key="k")
    assert info.value.row == 4 and "duplicate key 'b' (2 duplicate row(s))" in str(info.value)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_boolean_date_and_decimal_features_read_as_numbers_in_both_paths(tmp_path, fmt):
    # DuckDB pushed a CAST of a CSV's BOOLEAN column into its reader, which then failed
    # on the text "True"; a DATE feature is its instant (microseconds), as in a DataFrame
    import datetime
    import decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    day = [datetime.date(2024, 1, 1), datetime.date(2024, 1, 2), datetime.date(2024, 3, 1)]
    t = pa.table(
        {
            "k": [1, 2, 3],
            "flag": [True, False, True],
            "day": day,
            "price": pa.array([decimal.Decimal("0.47"), decimal.Decimal("1.10"), None]),
        }
    )
    path = tmp_path / f"t.{fmt}"
    pq.write_table(t, path) if fmt == "parquet" else t.to_pandas().to_csv(path, index=False)
    micros = [(d - datetime.date(1970, 1, 1)).days * 86_400e6 for d in day]
    expected = np.array([[1.0, micros[0], 0.47], [0.0, micros[1], 1.1], [1.0, micros[2], np.nan]])
    for load in (load_domain_table, load_coded_table):
        got = load("customers", Source(path=path), key="k")
        assert got.numeric_names == ["flag", "day", "price"]
        np.testing.assert_array_equal(got.numeric, expected)


def test_categories_and_labels_keep_their_types(tmp_path):
    """Integers with gaps stay integers, booleans booleans; missing is None (NaN too)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "t.parquet"
    pq.write_table(
        pa.table(
            {
                "k": ["a", "b", "c"],
                "shop": pa.array([3, None, 7], pa.int64()),
                "online": pa.array([True, None, False]),
                "score": pa.array([0.5, float("nan"), None], pa.float64()),
                "y": pa.array([1, 0, None], pa.int64()),
            }
        ),
        path,
    )
    t = load_domain_table(
        "sales", Source(path=path), key="k", categorical=["shop", "online", "score"], label="y"
    )
    rows = t.categorical.tolist()
    assert rows == [[3, True, 0.5], [None, None, None], [7, False, None]]
    assert [type(v) for v in rows[0]] == [int, bool, float]
    assert t.label.tolist()[:2] == [1, 0] and pd.isna(t.label[2])


def test_a_wide_table_is_read_without_a_dataframe_of_it(tmp_path, monkeypatch):
    """Tabular domains read through Arrow too: pandas never sees the whole table."""
    df = random_table(0, rows=200, string_keys=False)
    path = tmp_path / "t.parquet"
    df.to_parquet(path, index=False)

    def refuse(*args, **kwargs):
        raise AssertionError("a DataFrame was made")

    monkeypatch.setattr(pd.DataFrame, "__init__", refuse)
    t = load_domain_table("customers", Source(path=path), key="k", categorical=["c"], label="n")
    assert len(t) == 200 and t.numeric_names == ["x", "flag", "num_cat"]
