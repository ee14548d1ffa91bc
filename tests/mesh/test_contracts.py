"""ODCS contracts: valid by the official JSON schema, and every breach of one refused with
the contract and column named."""

import numpy as np
import pytest
import yaml

from splitmesh.data.sources import DomainTable
from splitmesh.mesh.contracts import (
    ContractError,
    EmbeddingContract,
    check_table,
    input_contract,
    output_contract,
    read_contract,
    schema_errors,
)


def _table(n=50, seed=0) -> DomainTable:
    rng = np.random.default_rng(seed)
    numeric = np.column_stack([rng.normal(size=n), rng.integers(0, 10, n).astype(float)])
    numeric[3, 0] = np.nan
    cats = np.array([["a"], ["b"]] * (n // 2), dtype=object)
    return DomainTable("bank", "bank.csv", "id", np.arange(n), ["income", "visits"], numeric,
                       ["segment"], cats)  # fmt: skip


def test_written_contracts_pass_the_official_schema_and_describe_the_data():
    t = _table()
    doc = input_contract(t, pii=("income",))
    assert schema_errors(doc) == [] and schema_errors(output_contract("bank", 16)) == []
    props = {p["name"]: p for p in doc["schema"][0]["properties"]}
    assert props["id"]["primaryKey"] and props["id"]["classification"] == "restricted"
    assert props["income"]["required"] is False  # it has a gap
    assert props["income"]["classification"] == "pii"
    assert props["visits"]["logicalType"] == "integer" and props["visits"]["required"]
    assert props["segment"]["logicalType"] == "string"
    check_table(doc, t)  # the data it was written from satisfies it


def test_the_schema_catches_what_the_standard_forbids(tmp_path):
    doc = output_contract("bank", 16)
    doc["schema"][0]["properties"][0]["logicalType"] = "tensor"
    del doc["id"]
    path = tmp_path / "bad.odcs.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ContractError, match=r"bad.odcs.yaml is not a valid ODCS .*'id'"):
        read_contract(path)


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (lambda d, t: d["schema"][0]["properties"].pop(), "column 'segment' is not in"),
        (lambda d, t: d["schema"][0]["properties"].append(
            {"name": "age", "logicalType": "number"}), "column 'age' is missing"),
        (lambda d, t: d["schema"][0]["properties"][1].update(required=True),
         "column 'income' has 1 null"),
        (lambda d, t: d["schema"][0]["properties"][2].update(logicalTypeOptions={"maximum": 5}),
         "column 'visits' has 9 above the contract's maximum 5"),
        (lambda d, t: d["schema"][0]["quality"][0].update(mustBeGreaterOrEqualTo=51),
         "50 rows, the contract's rowCount rule"),
        (lambda d, t: d["schema"][0]["properties"][3].update(logicalType="number"),
         "column 'segment' holds text"),
    ],
)  # fmt: skip
def test_every_breach_of_an_input_contract_is_refused_by_name(edit, says):
    t = _table()
    doc = input_contract(t)
    edit(doc, t)
    with pytest.raises(ContractError, match=f"domain 'bank', file bank.csv: .*{says}"):
        check_table(doc, t)


def test_row_count_rules_bind_training_not_scoring():
    t = _table()
    doc = input_contract(t)
    small = t.take(np.arange(10))
    with pytest.raises(ContractError, match="rowCount"):
        check_table(doc, small)
    check_table(doc, small, rows=False)


def test_embeddings_are_held_to_their_width_and_dtype():
    c = EmbeddingContract.from_doc(output_contract("bank", 16))
    c.check(np.zeros((4, 16), np.float32))
    c.check(np.zeros((4, 16), np.float16), wire="float16")  # the run's agreed compression
    with pytest.raises(ContractError, match=r"shape \[4, 8\] float32; .*'bank-embedding' v1.0.0 "
                       r"promises \[batch, 16\] float32"):  # fmt: skip
        c.check(np.zeros((4, 8), np.float32))
    with pytest.raises(ContractError, match="float64"):
        c.check(np.zeros((4, 16), np.float64))
    with pytest.raises(ContractError, match="float16"):
        c.check(np.zeros((4, 16), np.float16))  # not agreed for this run
