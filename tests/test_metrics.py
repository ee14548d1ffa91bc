import numpy as np
import pytest

from splitmesh import metrics as metrics_mod
from splitmesh.metrics import best_f1_threshold, binary_report


def test_perfect_scores():
    y = np.array([0, 0, 0, 1, 1])
    m = binary_report(y, np.array([0.1, 0.2, 0.3, 0.8, 0.9]))
    assert m["roc_auc"] == m["average_precision"] == m["f1_1"] == m["accuracy"] == 1.0
    assert m["confusion_matrix"] == [[3, 0], [0, 2]]
    assert 0.3 < m["threshold"] <= 0.8


def test_metrics_come_from_scores_not_hard_labels():
    y = np.array([0, 1, 0, 1, 0, 1])
    s = np.array([0.1, 0.2, 0.3, 0.4, 0.45, 0.9])
    m = binary_report(y, s, threshold=0.95)  # nothing predicted positive
    assert m["recall_1"] == 0.0 and m["precision_1"] == 0.0
    assert m["roc_auc"] == pytest.approx(6 / 9)  # 6 of 9 (pos, neg) pairs ordered


def test_threshold_maximises_f1():
    rng = np.random.default_rng(0)
    y = (rng.random(500) < 0.2).astype(int)
    s = np.clip(y * 0.3 + rng.random(500) * 0.8, 0, 1)
    t = best_f1_threshold(y, s)
    f1_at = lambda th: binary_report(y, s, threshold=th)["f1_1"]  # noqa: E731
    assert all(f1_at(t) >= f1_at(other) - 1e-12 for other in np.linspace(0.05, 0.95, 37))


def test_supports_and_macro():
    y = np.array([0, 0, 1, 1, 1])
    m = binary_report(y, np.array([0.9, 0.1, 0.8, 0.7, 0.2]), threshold=0.5)
    assert (m["support_0"], m["support_1"], m["support_macro"]) == (2, 3, 5)
    assert m["precision_macro"] == pytest.approx((m["precision_0"] + m["precision_1"]) / 2)


def test_single_class_is_refused():
    with pytest.raises(Exception, match="both classes"):
        binary_report(np.zeros(4), np.linspace(0, 1, 4))


def test_ranking_metrics_by_hand():
    import numpy as np

    from splitmesh.metrics import ranking_report, ranks

    pos = np.array([[0.9], [0.5], [0.1]])
    neg = np.array([[0.1, 0.2, 0.3], [0.6, 0.5, 0.1], [0.2, 0.3, 0.4]])
    r = ranks(pos, neg)
    assert r[:, 0].tolist() == [0, 2, 3]  # a tie counts against the held-out item
    m = ranking_report(r, ks=(1, 3))
    assert m["hr@1"] == pytest.approx(1 / 3)
    assert m["hr@3"] == pytest.approx(2 / 3)
    assert m["ndcg@3"] == pytest.approx((1 + 1 / np.log2(4)) / 3)
    two = ranking_report(np.array([[0, 5]]), ks=(3,))
    assert two["recall@3"] == 0.5 and two["hr@3"] == 1.0
    assert two["ndcg@3"] == pytest.approx(1 / (1 + 1 / np.log2(3)))


def test_curves_are_thinned_and_agree_with_the_areas():
    from sklearn.metrics import auc

    from splitmesh.metrics import CURVE_POINTS

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 5000)
    scores = np.clip(y * 0.3 + rng.normal(0.35, 0.25, 5000), 0, 1)
    m = binary_report(y, scores)
    roc, pr = m["roc_curve"], m["pr_curve"]
    assert 10 < len(roc["fpr"]) <= CURVE_POINTS and len(pr["recall"]) <= CURVE_POINTS
    assert (roc["fpr"][0], roc["tpr"][0], roc["fpr"][-1], roc["tpr"][-1]) == (0, 0, 1, 1)
    assert np.all(np.diff(roc["fpr"]) >= 0) and np.all(np.diff(pr["recall"]) >= 0)
    assert auc(roc["fpr"], roc["tpr"]) == pytest.approx(m["roc_auc"], abs=0.01)


@pytest.mark.parametrize("seed", range(12))
def test_binary_metrics_equal_scikit_learns(seed):
    """Computed in numpy (no scikit-learn import where a run ends), the same figures as
    scikit-learn's functions: ties (rounded scores), imbalance, a threshold nobody reaches."""
    from sklearn import metrics as skm

    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 3000))
    y = (rng.random(n) < rng.uniform(0.02, 0.6)).astype(int)
    y[:2] = [0, 1]
    s = np.clip(y * rng.uniform(0, 0.5) + rng.random(n) * 0.7, 0, 1)
    if seed % 3 == 0:
        s = s.round(1)  # many ties
    if seed % 4 == 1:
        s[::3] = 1.0  # certain predictions (clipped in the log loss)
    m = binary_report(y, s)
    t = m["threshold"]
    pred = (s >= t).astype(int)
    p, r, f, sup = skm.precision_recall_fscore_support(y, pred, labels=[0, 1], zero_division=0)
    close = lambda a, b: a == pytest.approx(b, rel=1e-12, abs=1e-15)  # noqa: E731
    for c in (0, 1):
        assert close(m[f"precision_{c}"], p[c]) and close(m[f"recall_{c}"], r[c])
        assert close(m[f"f1_{c}"], f[c]) and m[f"support_{c}"] == sup[c]
    assert close(m["f1_macro"], f.mean())
    assert close(m["accuracy"], skm.accuracy_score(y, pred))
    assert close(m["roc_auc"], skm.roc_auc_score(y, s))
    assert close(m["average_precision"], skm.average_precision_score(y, s))
    assert close(m["log_loss"], skm.log_loss(y, np.clip(s, 1e-7, 1 - 1e-7), labels=[0, 1]))
    assert close(m["brier"], skm.brier_score_loss(y, s))
    assert m["confusion_matrix"] == skm.confusion_matrix(y, pred, labels=[0, 1]).tolist()
    ours, theirs = metrics_mod.roc_curve(y, s), skm.roc_curve(y, s)
    assert all(np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True))
    ours, theirs = metrics_mod.precision_recall_curve(y, s), skm.precision_recall_curve(y, s)
    assert all(np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True))
    # the threshold scikit-learn's curve gives the best F1
    pr, rc, th = theirs
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(pr + rc > 0, 2 * pr * rc / (pr + rc), 0.0)[:-1]
    assert t == th[f1 == f1.max()].max()
