"""report.py: the figures a run writes beside its report, and the report that shows them."""

from __future__ import annotations

import numpy as np

from splitmesh.metrics import binary_report
from splitmesh.report import write_results
from splitmesh.split.tasks import Task


def _run(mode: str, metrics: dict, epochs: int = 4) -> dict:
    return {
        "mode": mode,
        "domains": ["a", "b"],
        "metrics": metrics,
        "validation_metrics": metrics,
        "losses": [1.0 / (e + 1) for e in range(epochs)],
        "validation_curve": {
            "metric": "log_loss",
            "values": [0.9 - 0.1 * e for e in range(epochs)],
        },
        "best_epoch": epochs,
        "seconds_per_epoch": 0.1,
        "wire_bytes_per_example": 10.0,
        "transport": "in-process",
        "alignment": {},
        "notes": [],
    }


def test_binary_runs_get_training_roc_and_pr_figures_embedded_in_the_report(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    m = binary_report(y, np.clip(y * 0.4 + rng.uniform(0, 0.6, 300), 0, 1))
    results = {
        "mesh": "m",
        "task": "binary",
        "runs": [_run("label-preserving", m), _run("centralized", m)],
    }
    written = write_results(results, tmp_path)
    figures = [p for p in written if p.suffix == ".png"]
    assert [p.name for p in figures] == ["label-preserving.png", "centralized.png"]
    assert all(p.stat().st_size > 10_000 for p in figures)
    report = (tmp_path / "report.md").read_text()
    assert "![label-preserving](plots/label-preserving.png)" in report


def test_a_multiclass_run_gets_its_confusion_matrix(tmp_path):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 200)
    scores = rng.dirichlet(np.ones(4), 200)
    m = Task("multiclass", n_classes=4).report(y, scores)
    assert np.asarray(m["confusion_matrix"]).shape == (4, 4)
    assert np.asarray(m["confusion_matrix"]).sum() == 200
    written = write_results(
        {"mesh": "m", "task": "multiclass", "runs": [_run("label-sharing", m)]}, tmp_path
    )
    assert (tmp_path / "plots" / "label-sharing.png") in written
