import pytest

from splitmesh.data.datasets.movielens import load_movielens
from splitmesh.errors import DataError


def test_loads_the_real_movielens_100k(ml100k_path):
    d = load_movielens(ml100k_path)
    assert (len(d), d.n_users, d.n_items) == (100_000, 943, 1_682)
    assert d.users.categorical_names == ("gender", "occupation", "zip_prefix")
    assert d.items.numeric.shape == (1_682, 20)  # release year + 19 genres


def test_a_missing_file_is_named(tmp_path):
    (tmp_path / "u.data").write_text("1\t1\t5\t100\n")
    with pytest.raises(DataError, match=r"u\.user"):
        load_movielens(tmp_path)
