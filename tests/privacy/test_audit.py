"""``privacy audit`` end to end: every run trains, every attack reports, protections
change what leaks, and the files a person reads are written."""

import json

import numpy as np
import pandas as pd
import pytest

from splitmesh.data.datasets.vertical import write_vertical_mesh
from splitmesh.mesh.spec import load_mesh
from splitmesh.privacy.audit import privacy_audit


def _mesh(tmp_path, n=1500, seed=0, extra=None):
    """A binary vertical mesh with 20 % positives; the label domain holds one column."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6))
    y = (x[:, 0] + x[:, 2] - x[:, 4] + 0.5 * rng.normal(size=n) > 1.0).astype(int)
    df = pd.DataFrame(x, columns=[f"x{j}" for j in range(6)]).assign(y=y)
    domains = {"bank": ["x0", "y"], "shop": ["x1", "x2", "x3"], "telco": ["x4", "x5"]}
    cfg = {"training": {"epochs": 4, "patience": None, "batch_size": 64}}
    return write_vertical_mesh(
        df, domains, label="y", label_domain="bank", folder=tmp_path / "mesh", keep=1.0,
        extra={**cfg, **(extra or {})},
    )  # fmt: skip


def test_the_audit_measures_every_protection_and_writes_its_report(tmp_path):
    spec = load_mesh(_mesh(tmp_path))
    report = privacy_audit(spec, tmp_path / "audit", progress=False)
    runs = report["runs"]
    kinds = ["labels"] * 3 + ["gradients"] * 3 + ["embeddings"] * 3 + ["nopeek"] * 3
    assert [r["protection"] for r in runs] == ["none", *kinds, "secure_aggregation"]
    none = runs[0]
    # unprotected label-preserving training leaks labels through the gradients it returns
    assert none["attacks"]["label_inference_auc"] > 0.85
    assert set(none["attacks"]["label_inference"]) >= {"coordinator", "shop", "telco"}
    assert set(none["attacks"]["feature_reconstruction_r2"]) == {"bank", "shop", "telco"}
    assert none["utility"]["roc_auc"] > 0.8
    strongest = {r["protection"]: r for r in runs}  # the last (strongest) of each ladder
    noisy = strongest["gradients"]["attacks"]["label_inference"]["coordinator"]
    clear = none["attacks"]["label_inference"]["coordinator"]
    assert max(noisy.values()) < max(clear.values())  # gradient noise hides labels
    emb = strongest["embeddings"]["attacks"]["feature_reconstruction_r2"]
    assert np.mean(list(emb.values())) < np.mean(
        list(none["attacks"]["feature_reconstruction_r2"].values())
    )
    peek = strongest["nopeek"]["attacks"]["feature_reconstruction_r2"]
    assert np.mean(list(peek.values())) < np.mean(
        list(none["attacks"]["feature_reconstruction_r2"].values())
    )
    # secure aggregation sums the embeddings: a concatenating mesh is audited with a sum
    assert strongest["secure_aggregation"]["settings"]["aggregation"] == "sum"
    assert strongest["secure_aggregation"]["utility"]["roc_auc"] > 0.8
    eps = [r["epsilon"] for r in runs if r["protection"] == "embeddings"]
    assert eps[0] > eps[1] > eps[2] > 0  # more noise, less privacy spent
    assert [r["epsilon"] for r in runs if r["protection"] == "labels"] == [4.0, 1.0, 0.25]
    saved = json.loads((tmp_path / "audit" / "privacy.json").read_text())
    assert len(saved["runs"]) == 14 and saved["runs"][0]["utility"]
    assert "| labels | 0.25 |" in (tmp_path / "audit" / "privacy.md").read_text()
    assert (tmp_path / "audit" / "privacy.png").stat().st_size > 1000


def test_a_mesh_files_protection_is_applied_by_its_owners_and_is_deterministic(tmp_path):
    from splitmesh.usecases.train import train_mesh

    privacy = {"privacy": {"embeddings": {"clip": 2.0, "noise_multiplier": 0.5}}}
    spec = load_mesh(_mesh(tmp_path, extra=privacy))
    a = train_mesh(spec, tmp_path / "a", progress=False)["runs"][0]["metrics"]
    b = train_mesh(spec, tmp_path / "b", progress=False)["runs"][0]["metrics"]
    assert a == b  # the noise is drawn from the run's seed
    bare = spec.model_copy(update={"privacy": spec.privacy.model_copy(update={"embeddings": None})})
    c = train_mesh(bare, tmp_path / "c", progress=False)["runs"][0]["metrics"]
    assert c != a


def test_privacy_settings_are_checked(tmp_path):
    from splitmesh.errors import ConfigError

    with pytest.raises(ConfigError, match=r"privacy\.embeddings\.noise_multiplier"):
        load_mesh(_mesh(tmp_path, extra={"privacy": {"embeddings": {"noise_multiplier": -1}}}))
    with pytest.raises(ConfigError, match="randomized response"):
        load_mesh(
            _mesh(tmp_path, extra={"task": "regression", "privacy": {"labels": {"epsilon": 1}}})
        )


def test_the_cli_names_a_protection_it_does_not_know(tmp_path):
    from tests.test_cli import splitmesh

    done = splitmesh("privacy", "audit", str(_mesh(tmp_path)), "--protection", "marvell")
    assert done.returncode == 2 and "'protection' parameter must be one of" in done.stderr


def test_a_ranking_mesh_is_audited_on_its_examples_and_dimensions(tmp_path):
    """The recommender: gradients tell real interactions from sampled negatives, and the
    dimensions' embeddings give their columns back; gradient noise hides the first."""
    from tests.split.test_star import write_star

    star = write_star(tmp_path, n_users=120, n_items=60, per_user=10)
    sets = ["mode=label-preserving", "training.epochs=3"]
    spec = load_mesh(star, sets)
    report = privacy_audit(spec, tmp_path / "audit", kinds=["gradients"], progress=False)
    none, *noised = report["runs"]
    assert [r["protection"] for r in report["runs"]] == ["none"] + ["gradients"] * 3
    assert none["attacks"]["label_inference_auc"] > 0.9
    assert set(none["attacks"]["label_inference"]) >= {"coordinator", "sales", "customers"}
    assert set(none["attacks"]["feature_reconstruction_r2"]) == {"customers", "products"}
    assert "ndcg@5" in none["utility"] and "hr@10" in none["utility"]
    clear = none["attacks"]["label_inference"]["coordinator"]
    strongest = noised[-1]["attacks"]["label_inference"]["coordinator"]
    assert max(strongest.values()) < max(clear.values())
    # randomized response and secure aggregation do not apply to a ranking mesh
    assert privacy_audit(spec, tmp_path / "b", kinds=["labels", "secure_aggregation"],
                         progress=False)["runs"][1:] == []  # fmt: skip


def test_a_run_attacks_itself_only_where_it_holds_the_truth(tmp_path):
    from splitmesh.errors import ConfigError
    from splitmesh.usecases.train import check_privacy_audit

    spec = load_mesh(_mesh(tmp_path))
    check_privacy_audit(spec)
    remote = spec.model_copy(update={"transport": "grpc-network"})
    with pytest.raises(ConfigError, match="only an in-process run holds"):
        check_privacy_audit(remote)


def test_an_epoch_in_parts_is_refused_rather_than_scored_against_the_wrong_rows(tmp_path):
    """Positions restart with every part of an epoch: the attacks' truth would be another
    part's rows, so the audit (and a run's --privacy-audit) refuses, saying what to set."""
    from splitmesh.errors import ConfigError
    from splitmesh.usecases.train import run_mode
    from tests.split.test_star import write_star

    star = write_star(tmp_path, n_users=120, n_items=60, per_user=10)
    sets = ["mode=label-sharing", "training.epochs=1", "ranking.part_examples=1024"]
    spec = load_mesh(star, sets)
    with pytest.raises(ConfigError, match=r"come in 3 parts \(ranking.part_examples=1,024\)"):
        privacy_audit(spec, tmp_path / "audit", kinds=["gradients"], progress=False)
    with pytest.raises(ConfigError, match=r"ranking\.part_examples"):
        run_mode(spec, "label-sharing", tmp_path / "out", progress=False, privacy_audit=True)
