"""H&M data: the synthetic generator of the Kaggle schema, and the recsys preset's mesh
over the real sample or generated tables (sampling done in the sales domain's SQL)."""

import duckdb
import pandas as pd
import pytest

from splitmesh.data.datasets.hm_synthetic import SyntheticHM, generate_hm
from splitmesh.errors import ConfigError
from splitmesh.mesh.spec import load_mesh
from splitmesh.usecases.recsys import hm_sales_sql, recsys_mesh


def test_the_real_sample_reads_as_a_star(hm_sample_path, tmp_path):
    spec = load_mesh(recsys_mesh(tmp_path, dataset="hm", data=hm_sample_path))
    assert spec.domain_names == ["sales", "customers", "products"]
    fact = spec.read_fact()
    counts = pd.Series(fact.users.index).value_counts()
    assert len(fact) > 0 and counts.min() >= 3  # leave-latest-out needs three
    assert "age" in spec.read_domain("customers").numeric_names


def test_synthetic_sales_keep_a_share_of_customers_and_the_minimums(tmp_path):
    generate_hm(
        tmp_path, SyntheticHM(customers=3_000, articles=500, transactions=60_000, chunk=7_000)
    )
    tx = pd.read_parquet(tmp_path / "transactions_train.parquet")
    assert len(tx) == 60_000 and tx["customer_id"].str.len().eq(64).all()
    path = str(tmp_path / "transactions_train.parquet")
    sql = hm_sales_sql(f"'{path}'", fraction=0.5, min_user=10, min_item=5)
    kept = duckdb.sql(sql).df()
    assert kept.groupby("customer_id").size().min() >= 10
    assert 0 < kept["customer_id"].nunique() < 0.6 * tx["customer_id"].nunique()  # half drawn
    assert kept.equals(duckdb.sql(sql).df())  # stable: md5 of the id, file order


def test_presets_and_bad_options_are_named(tmp_path):
    with pytest.raises(ConfigError, match="preset"):
        recsys_mesh(tmp_path, dataset="hm-synthetic", preset="huge")
    with pytest.raises(ConfigError, match="'fraction'"):
        hm_sales_sql("t", fraction=1.5)
    with pytest.raises(ConfigError, match="'dataset'"):
        recsys_mesh(tmp_path, dataset="netflix")
    with pytest.raises(ConfigError, match="data not found at"):
        recsys_mesh(tmp_path, dataset="ml-100k", data=tmp_path / "nowhere")
