import numpy as np
import pandas as pd
import pytest

from splitmesh.data.datasets.hm import HMSampling, load_hm, sampling
from splitmesh.data.datasets.hm_synthetic import SyntheticHM, generate_hm
from splitmesh.errors import ConfigError, DataError


def test_reads_the_real_csv_sample_with_its_extra_index_column(hm_sample_path):
    d = load_hm(hm_sample_path)
    assert len(d) > 0 and d.users is not None and d.items is not None
    assert len(d.users) == d.n_users and len(d.items) == d.n_items
    # hashed customer ids joined to customers.csv; ages are real numbers or missing
    assert np.nanmax(d.users.numeric[:, 0]) < 120


def test_reads_the_real_parquet_sample(hm_sample_path, tmp_path):
    for stem in ("transactions", "customers", "articles"):
        target = tmp_path / ("transactions_train" if stem == "transactions" else stem)
        target.with_suffix(".parquet").symlink_to(hm_sample_path / f"{stem}_sample.parquet")
    d = load_hm(tmp_path)
    assert len(d) > 4_000  # the parquet sample is fully joinable
    pairs = set(zip(d.user.tolist(), d.item.tolist(), strict=True))
    assert len(pairs) == len(d)  # duplicate (customer, article) pairs dropped


def test_a_missing_column_names_the_file_and_column(tmp_path):
    generate_hm(tmp_path, SyntheticHM(customers=50, articles=20, transactions=300))
    pd.read_parquet(tmp_path / "articles.parquet").drop(columns=["section_no"]).to_csv(
        tmp_path / "articles.csv", index=False
    )
    (tmp_path / "articles.parquet").unlink()
    with pytest.raises(DataError, match=r"articles\.csv.*section_no"):
        load_hm(tmp_path)


def test_duplicate_article_keys_are_refused(tmp_path):
    generate_hm(tmp_path, SyntheticHM(customers=50, articles=20, transactions=300))
    a = pd.read_parquet(tmp_path / "articles.parquet")
    pd.concat([a, a.iloc[:1]]).to_parquet(tmp_path / "articles.parquet")
    with pytest.raises(DataError, match="appears more than once"):
        load_hm(tmp_path)


def test_synthetic_data_samples_customers_and_keeps_a_kcore(tmp_path):
    generate_hm(
        tmp_path, SyntheticHM(customers=3_000, articles=500, transactions=60_000, chunk=7_000)
    )
    tx = pd.read_parquet(tmp_path / "transactions_train.parquet")
    assert len(tx) == 60_000 and tx["customer_id"].str.len().eq(64).all()
    d = load_hm(tmp_path, HMSampling(fraction=0.5, min_user=10, min_item=5, seed=1))
    assert np.bincount(d.user).min() >= 10 and np.bincount(d.item).min() >= 5
    assert d.n_users < 0.5 * 3_000 + 1
    again = load_hm(tmp_path, HMSampling(fraction=0.5, min_user=10, min_item=5, seed=1))
    assert np.array_equal(d.user, again.user) and np.array_equal(d.item, again.item)


def test_presets_and_overrides():
    assert sampling("small").min_user == sampling("small", fraction=None).min_user
    assert sampling("large", fraction=0.5).fraction == 0.5
    with pytest.raises(ConfigError, match="preset"):
        sampling("huge")
