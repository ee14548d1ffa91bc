import numpy as np
import pytest
import torch

from splitmesh.errors import DataError
from splitmesh.split.tasks import Task, encode_labels


def test_binary_labels_of_any_two_values_say_which_is_positive():
    labels = encode_labels("binary", np.array(["no", "yes", "no"]), where="domain 'bank'")
    assert labels.y.tolist() == [0, 1, 0] and labels.classes == ("no", "yes")
    assert "'yes' class 1" in labels.notes[0]
    assert encode_labels("binary", np.array([0, 1, 1]), where="x").notes == ()


def test_label_errors_name_the_place_and_suggest_the_task():
    with pytest.raises(DataError, match=r"domain 'bank'.*exactly 2 label values; found 3") as e:
        encode_labels("binary", np.array([0, 1, 2]), where="domain 'bank'")
    assert "multiclass" in e.value.hint
    with pytest.raises(DataError, match="missing label at row 2"):
        encode_labels("multiclass", np.array([1.0, np.nan]), where="x")


def test_regression_learns_standardised_targets_and_reports_in_label_units():
    task = Task("regression").fit(np.array([10.0, 20.0, 30.0]))
    target = task.target(np.array([20.0, 30.0]))
    assert target.tolist() == pytest.approx([0.0, 1.2247449], rel=1e-6)
    scores = task.scores(target[:, None])
    assert scores.tolist() == pytest.approx([20.0, 30.0])
    assert task.report(np.array([20.0, 30.0]), scores)["rmse"] == pytest.approx(0, abs=1e-5)


def test_multiclass_loss_and_metrics():
    task = Task("multiclass", n_classes=3)
    logits = torch.tensor([[5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0]])
    assert task.loss(logits, task.target(np.array([0, 1, 2]))).item() < 0.02
    report = task.report(np.array([0, 1, 2]), task.scores(logits))
    assert report["accuracy"] == 1.0 and report["macro_f1"] == 1.0
