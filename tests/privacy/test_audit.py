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
    assert [r["protection"] for r in runs] == ["none"] + ["labels"] * 3 + ["gradients"] * 3 + [
        "embeddings"
    ] * 3
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
    eps = [r["epsilon"] for r in runs if r["protection"] == "embeddings"]
    assert eps[0] > eps[1] > eps[2] > 0  # more noise, less privacy spent
    assert [r["epsilon"] for r in runs if r["protection"] == "labels"] == [4.0, 1.0, 0.25]
    saved = json.loads((tmp_path / "audit" / "privacy.json").read_text())
    assert len(saved["runs"]) == 10 and saved["runs"][0]["utility"]
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


def test_the_cli_names_a_protection_it_does_not_know_and_refuses_ranking_meshes(tmp_path):
    from tests.split.test_star import write_star
    from tests.test_cli import splitmesh

    mesh = _mesh(tmp_path)
    done = splitmesh("privacy", "audit", str(mesh), "--protection", "nopeek")
    assert done.returncode == 2 and "'protection' parameter must be one of" in done.stderr
    (tmp_path / "star").mkdir()
    star = write_star(tmp_path / "star")
    done = splitmesh("privacy", "audit", str(star), "--out", str(tmp_path / "a"))
    assert done.returncode == 2 and "ranking mesh" in done.stderr
