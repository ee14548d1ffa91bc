import numpy as np
import pytest

from splitmesh.data.datasets.creditcard import (
    DOMAINS,
    FEATURES,
    FRAUD_RATE,
    load_creditcard,
    synthetic_creditcard,
    write_creditcard_csv,
)
from splitmesh.errors import DataError


def test_real_subset_loads_with_its_index_column(creditcard_path):
    t = load_creditcard(creditcard_path)
    assert t.x.shape == (1722, 30)
    assert int(t.y.sum()) == 492
    assert t.x[:, 0].min() >= 0  # column 0 is Time, not the leading index


def test_domains_partition_the_features():
    cols = [c for cols in DOMAINS.values() for c in cols]
    assert sorted(cols) == sorted(FEATURES) and len(cols) == len(set(cols))
    assert DOMAINS["payments"][0] == "Time" and DOMAINS["security"][-1] == "Amount"


def test_synthetic_has_the_schema_and_the_imbalance(tmp_path):
    t = synthetic_creditcard(50_000, seed=3)
    assert t.x.shape == (50_000, 30)
    assert t.y.mean() == pytest.approx(FRAUD_RATE, rel=0.05)
    path = tmp_path / "cc.csv"
    write_creditcard_csv(path, t, chunk_rows=7_000)
    back = load_creditcard(path)
    np.testing.assert_allclose(back.x, t.x)
    np.testing.assert_array_equal(back.y, t.y)


def test_synthetic_is_deterministic_by_seed():
    a, b = synthetic_creditcard(1000, 5), synthetic_creditcard(1000, 5)
    np.testing.assert_array_equal(a.x, b.x)
    assert not np.array_equal(a.x, synthetic_creditcard(1000, 6).x)


@pytest.fixture
def good_csv(tmp_path):
    path = tmp_path / "cc.csv"
    write_creditcard_csv(path, synthetic_creditcard(200, 0))
    return path


def _edit(path, row, column, value):
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[row].split(",")
    cells[header.index(column)] = value
    lines[row] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("column", "value", "pattern"),
    [
        ("V7", "abc", r"column 'V7', row 5: non-numeric value 'abc'"),
        ("Amount", "", r"column 'Amount', row 5: missing"),
        ("Time", "nan", r"column 'Time', row 5: missing"),
        ("Class", "2", r"column 'Class', row 5: label value 2 is not 0 or 1"),
    ],
)
def test_bad_cells_name_file_column_and_row(good_csv, column, value, pattern):
    _edit(good_csv, 5, column, value)
    with pytest.raises(DataError, match=pattern) as info:
        load_creditcard(good_csv)
    assert str(good_csv) in str(info.value)


def test_missing_column_is_named(good_csv):
    lines = good_csv.read_text().splitlines()
    good_csv.write_text(
        "\n".join(line.rsplit(",", 2)[0] + "," + line.rsplit(",", 1)[1] for line in lines)
    )
    with pytest.raises(DataError, match=r"column 'Amount'.*missing column"):
        load_creditcard(good_csv)


@pytest.mark.parametrize("content", ["", "Time,V1\n"])
def test_empty_files(tmp_path, content):
    path = tmp_path / "empty.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=str(path)):
        load_creditcard(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_creditcard(tmp_path / "nope.csv")
