"""Each attack finds leakage where there is some and none where there is none."""

import numpy as np

from splitmesh.privacy.attacks import feature_reconstruction, label_inference, model_completion


def test_gradient_attacks_read_labels_from_leaky_gradients_only():
    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.2).astype(int)
    direction = rng.normal(size=16)
    # d loss / d logit is (p - y): positives push one way, negatives the other
    leaky = np.outer(np.where(y == 1, -0.8, 0.2), direction) + rng.normal(0, 0.05, (2000, 16))
    got = label_inference(leaky, y)
    assert got["spectral"] > 0.95 and got["norm"] > 0.9
    blind = label_inference(rng.normal(size=(2000, 16)), y)
    assert all(v < 0.6 for v in blind.values())


def test_model_completion_and_feature_reconstruction():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1500, 5))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    mix = rng.normal(size=(5, 8))
    assert model_completion(x @ mix, y) > 0.95
    assert model_completion(rng.normal(size=(1500, 8)), y) < 0.6
    cols = [f"c{j}" for j in range(5)]
    good = feature_reconstruction(np.tanh(0.3 * x @ mix), x, cols)
    assert good["mean"] > 0.8 and set(good["columns"]) == set(cols)
    bad = feature_reconstruction(rng.normal(size=(1500, 8)), x, cols)
    assert bad["mean"] < 0.1
