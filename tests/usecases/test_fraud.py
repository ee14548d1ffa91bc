"""The fraud preset: the shipped credit-card mesh trained by the one engine, in process."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from splitmesh.data.datasets.creditcard import synthetic_creditcard, write_creditcard_csv
from splitmesh.mesh.spec import MeshSpec, load_mesh
from splitmesh.usecases.fraud import LABELS, fraud_mesh
from splitmesh.usecases.train import run_mode, train_mesh

FAST = ["training.epochs=6", "training.patience=null"]
# 5 % fraud, so that the paper's resampling has minority rows to work with at this size
RESAMPLE = ["resample.smote_ratio=0.1", "resample.under_ratio=0.3"]


@pytest.fixture(scope="module")
def csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "creditcard.csv"
    write_creditcard_csv(path, synthetic_creditcard(3000, 0, fraud_rate=0.05))
    return path


def spec(folder: Path, csv: Path, *sets: str, domains: int = 3) -> MeshSpec:
    return load_mesh(fraud_mesh(folder, data=csv, domains=domains), [*FAST, *sets])


def train(folder: Path, s: MeshSpec, modes=("label-sharing",)) -> dict:
    return train_mesh(s, folder / "out", modes=list(modes), progress=False)


def test_the_preset_is_the_example_mesh_reading_the_given_table(tmp_path, csv):
    s = spec(tmp_path, csv, domains=2)
    assert s.name == "credit-fraud" and s.label.domain == LABELS and s.label_only
    assert s.embedding_domains == ["payments", "cardholder"]
    table = s.read_domain("cardholder")
    assert table.features == [f"V{i}" for i in range(10, 20)] and len(table) == 3000
    # the copy keeps the keys: an index column, as the real subset has
    assert (tmp_path / "data" / "creditcard.csv").read_text().startswith(",Time,")


def test_all_modes_and_the_linear_reference_agree_and_learn(tmp_path, csv):
    modes = ["centralized", "label-sharing", "label-preserving"]
    res = train(tmp_path, spec(tmp_path, csv, *RESAMPLE), modes)
    assert [r["mode"] for r in res["runs"]] == ["centralized", "label-sharing", "label-preserving"]
    aps = [r["metrics"]["average_precision"] for r in res["runs"]]
    assert min(aps) > 0.5  # 5 % fraud: random scoring would give about 0.05
    # same network, weights, batches: split equals centralized up to float rounding
    assert max(aps) - min(aps) < 1e-3
    for run in res["runs"]:
        assert run["rows"]["train"] != run["rows"]["original"]["train"]  # resampled
    cut = 3 * 16 * 4 * 2  # three 16-wide float32 embeddings, forward and backward
    assert cut <= res["runs"][1]["wire_bytes_per_example"] < 1.5 * cut
    linear, trees = res["references"]
    assert linear["mode"] == "linear (reference)" and linear["metrics"]["roc_auc"] > 0.8
    assert trees["mode"] == "boosted trees (reference)" and trees["metrics"]["roc_auc"] > 0.8
    json.dumps(res)  # JSON-ready


def test_same_seed_same_metrics_and_another_seed_differs(tmp_path, csv):
    s = spec(tmp_path, csv)
    a = train(tmp_path / "a", s)["runs"][0]["metrics"]
    assert train(tmp_path / "b", s)["runs"][0]["metrics"] == a
    other = load_mesh(tmp_path / "mesh.yaml", [*FAST, "training.seed=1"])
    assert train(tmp_path / "c", other)["runs"][0]["metrics"] != a


def test_adding_domains_adds_signal(tmp_path, csv):
    aps = []
    for n in (1, 2):
        s = spec(tmp_path / str(n), csv, domains=n)
        aps.append(train(tmp_path / str(n), s)["runs"][0]["metrics"]["average_precision"])
    assert aps[1] > aps[0] + 0.05


def test_compressed_wires_shrink_the_bytes_and_keep_the_metrics(tmp_path, csv):
    runs = {
        w: train(tmp_path / w, spec(tmp_path, csv, f"wire_dtype={w}"))["runs"][0]
        for w in ("float32", "float16", "int8")
    }
    r32 = runs["float32"]
    assert runs["float16"]["wire_bytes"] < 0.6 * r32["wire_bytes"]
    assert runs["int8"]["wire_bytes"] < 0.45 * r32["wire_bytes"]
    for w in ("float16", "int8"):
        auc = runs[w]["metrics"]["roc_auc"]
        assert auc == pytest.approx(r32["metrics"]["roc_auc"], abs=0.02), w
    assert runs["int8"]["metrics"] != r32["metrics"]  # the rounding did reach the arithmetic


def test_pipelining_is_one_step_stale_and_still_learns(tmp_path, csv):
    plain = train(tmp_path / "a", spec(tmp_path, csv))["runs"][0]
    piped = spec(tmp_path, csv, "training.pipeline=true")
    one, two = (train(tmp_path / k, piped)["runs"][0] for k in ("b", "c"))
    assert one["metrics"] != plain["metrics"]  # stale gradients: not the same run
    assert one["metrics"]["roc_auc"] == pytest.approx(plain["metrics"]["roc_auc"], abs=0.03)
    assert two["metrics"] == one["metrics"]  # and deterministic


def test_resume_after_an_interrupted_in_process_run_gives_the_same_result(tmp_path, csv):
    """A party failing mid-run stops training with a RunInterrupted naming the last
    checkpoint; --resume then finishes with the metrics of an uninterrupted run."""
    from splitmesh.errors import RunInterrupted
    from splitmesh.split.keyed import KeyedDomain

    s = spec(
        tmp_path,
        csv,
        "training.epochs=4",
        "training.batch_size=512",
        "training.patience=2",
        "training.checkpoint_interval=0",
    )  # every epoch: the failure falls after epoch 2
    calls = {"n": 0}
    original = KeyedDomain.on_forward

    def flaky(self, msg):
        if self.name == "security" and msg.train:
            calls["n"] += 1
            if calls["n"] == 12:  # in the third epoch (5 steps each)
                raise ConnectionError("disk on fire")
        return original(self, msg)

    KeyedDomain.on_forward = flaky
    try:
        with pytest.raises(RunInterrupted, match=r"'security'.*epoch 2") as err:
            run_mode(s, "label-preserving", tmp_path / "out", progress=False)
    finally:
        KeyedDomain.on_forward = original
    assert err.value.checkpoint["epoch"] == 2
    resumed = run_mode(s, "label-preserving", tmp_path / "out", progress=False, resume=True)
    fresh = run_mode(s, "label-preserving", tmp_path / "fresh", progress=False)
    for k in ("roc_auc", "average_precision", "log_loss", "f1_1"):
        assert resumed["metrics"][k] == pytest.approx(fresh["metrics"][k], rel=1e-6), k
    assert resumed["best_epoch"] == fresh["best_epoch"]
    # a finished run is not run again: its result comes from the manifest
    again = run_mode(s, "label-preserving", tmp_path / "out", progress=False, resume=True)
    assert again["resumed_from"] == "finished run"


def test_the_real_subset_says_the_papers_ratios_do_not_apply(tmp_path, creditcard_path):
    s = load_mesh(fraud_mesh(tmp_path), ["training.epochs=2", "training.patience=null"])
    run = train(tmp_path, s, ["label-preserving"])["runs"][0]
    assert sum("does not apply" in n for n in run["notes"]) == 2
    assert run["rows"]["train"] == run["rows"]["original"]["train"]


@pytest.mark.slow
def test_real_subset_split_modes_match_centralized_and_linear_reference(tmp_path, creditcard_path):
    """The paper's bar on one seed: split equals centralized, which is no worse than a
    logistic regression on the same joined rows."""
    modes = ["centralized", "label-sharing", "label-preserving"]
    res = train(tmp_path, load_mesh(fraud_mesh(tmp_path)), modes)
    ap = {r["mode"]: r["metrics"]["average_precision"] for r in res["runs"]}
    assert abs(ap["label-sharing"] - ap["centralized"]) <= 0.015
    assert abs(ap["label-preserving"] - ap["centralized"]) <= 0.015
    assert ap["centralized"] >= res["references"][0]["metrics"]["average_precision"] - 0.01


def test_fraud_under_a_policy_publishes_products_and_records_every_run(
    creditcard_path, tmp_path, shared_catalog
):
    from splitmesh.mesh.audit import verify
    from splitmesh.mesh.catalog import Catalog
    from splitmesh.mesh.export import onnx_metadata
    from splitmesh.mesh.policy import Policy, PolicyError

    policy = Policy(
        version="3",
        participants=[{"name": d} for d in (LABELS, "payments", "cardholder", "security")],
        label_placement=["label-sharing", "label-preserving"],
    )
    s = load_mesh(fraud_mesh(tmp_path), ["training.epochs=2", "training.patience=null"])
    modes = ["label-sharing", "label-preserving"]
    res = train_mesh(s, tmp_path / "out", modes=modes, progress=False, policy=policy)
    for run in res["runs"]:
        assert sorted(p["domain"] for p in run["products"]) == ["cardholder", "payments",
                                                                 "security"]  # fmt: skip
    meta = onnx_metadata(tmp_path / "out" / "payments" / "bottom.onnx")
    assert meta["policy_hash"] == policy.hash
    assert meta["input_contract"].startswith("payments-input@1.0.0+")
    cat = Catalog(shared_catalog)
    assert [r["status"] for r in cat.list_runs()] == ["complete", "complete"]
    assert len(cat.list_products()) == 3  # the same three products, one version per run
    assert verify(tmp_path / "out" / "audit.jsonl")["records"] > 2

    forbidding = policy.model_copy(update={"forbidden_columns": ["Amount"]})
    with pytest.raises(PolicyError, match=r"'columns' refuses: .* forbidden .*Amount"):
        train_mesh(s, tmp_path / "refused", modes=modes, progress=False, policy=forbidding)
    assert len(Catalog(shared_catalog).list_runs()) == 2  # the refused run left no row
    assert np.isfinite(res["runs"][0]["metrics"]["roc_auc"])


def test_a_run_whose_best_epoch_is_the_last_one_allowed_says_so():
    from splitmesh.config import Training
    from splitmesh.split.trainer import FitResult
    from splitmesh.usecases.train import _still_learning

    cfg = Training(epochs=3, patience=2)
    [note] = _still_learning(FitResult([0.5, 0.4, 0.3], [1.0] * 3, 30, 3, []), cfg, "m")
    assert "last one allowed (3)" in note and "training.epochs=6" in note
    assert _still_learning(FitResult([0.5, 0.4, 0.3], [1.0] * 3, 30, 2, []), cfg, "m") == []
    no_selection = Training(epochs=3, patience=None)  # the last epoch is kept by design
    assert _still_learning(FitResult([0.5] * 3, [1.0] * 3, 30, 3, []), no_selection, "m") == []
