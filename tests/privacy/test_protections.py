"""The protections do what they say: randomized response keeps the share of labels it
promises, clipping bounds norms, noise is seeded, and the accountant's epsilon moves the
right way."""

import numpy as np
import pytest
import torch

from splitmesh.config import EmbeddingDP, GradientNoise, LabelDP
from splitmesh.privacy.protections import (
    clip_rows,
    distance_correlation,
    embedding_epsilon,
    noisy_gradient,
    party_key,
    randomized_response,
)

KEY = party_key(b"this party's secret", 0)


@pytest.mark.parametrize("k", [2, 4])
def test_randomized_response_keeps_the_promised_share(k):
    y = np.random.default_rng(0).integers(0, k, 40_000)
    eps = 1.0
    got = randomized_response(y, LabelDP(epsilon=eps), k, KEY)
    keep = np.exp(eps) / (np.exp(eps) + k - 1)
    assert abs((got == y).mean() - keep) < 0.01
    assert set(np.unique(got)) == set(range(k))  # flips go to the other classes only
    again = randomized_response(y, LabelDP(epsilon=eps), k, KEY)
    assert np.array_equal(got, again)  # keyed: the same party redraws the same
    other = randomized_response(y, LabelDP(epsilon=eps), k, party_key(b"another party", 0))
    assert not np.array_equal(got, other)  # without the key, nobody else can


def test_clipping_bounds_norms_and_noise_is_seeded_per_step():
    g = torch.randn(64, 8) * 10
    assert clip_rows(g, 0.5).norm(dim=1).max() <= 0.5 + 1e-6
    small = torch.full((3, 4), 1e-3)
    assert torch.equal(clip_rows(small, 1.0), small)  # under the bound: untouched
    p = GradientNoise(max_norm=1.0, sigma=0.5)
    a, b = noisy_gradient(g, p, KEY, "x", 1), noisy_gradient(g, p, KEY, "x", 1)
    c = noisy_gradient(g, p, KEY, "x", 2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    # the recipient knows the seed and the step, not the key: it cannot redraw the noise
    guess = noisy_gradient(g, p, party_key(b"", 0), "x", 1)
    assert not torch.equal(a, guess)
    noise = a - clip_rows(g, 1.0)
    assert 0.4 < noise.std().item() < 0.6


def test_the_accountant_spends_more_with_more_releases_and_less_noise():
    eps = {
        (m, r): embedding_epsilon(EmbeddingDP(noise_multiplier=m), r)
        for m in (0.5, 1.0, 4.0)
        for r in (1, 10)
    }
    assert eps[(1.0, 10)] > eps[(1.0, 1)] > 0
    assert eps[(0.5, 1)] > eps[(1.0, 1)] > eps[(4.0, 1)]
    assert embedding_epsilon(EmbeddingDP(noise_multiplier=1.0), 0) == 0.0
    # the Gaussian mechanism at sigma 1, delta 1e-5, one release: a few units of epsilon
    assert 3 < eps[(1.0, 1)] < 6


def test_distance_correlation_sees_dependence_a_linear_measure_misses():
    torch.manual_seed(0)
    x = torch.randn(256, 4)
    assert distance_correlation(x, x @ torch.randn(4, 3) * 5 + 2).item() > 0.7
    assert distance_correlation(x, x * 3 + 1).item() == pytest.approx(1.0, abs=1e-4)
    assert distance_correlation(x, torch.randn(256, 3)).item() < 0.25
    y = x[:, :1] ** 2  # no linear correlation with x, yet dependent
    assert abs(torch.corrcoef(torch.cat([x[:, :1], y], 1).T)[0, 1].item()) < 0.2
    assert distance_correlation(x[:, :1], y).item() > 0.4
    z = torch.randn(32, 2, requires_grad=True)
    distance_correlation(x[:32], z).backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


@pytest.mark.parametrize(("multiplier", "releases"), [(0.5, 1), (1.0, 10), (4.0, 100)])
def test_the_accountant_agrees_with_opacus_own(multiplier, releases):
    from opacus.accountants import RDPAccountant

    acc = RDPAccountant()
    acc.history = [(multiplier, 1.0, releases)]  # full batch: every row in every release
    ours = embedding_epsilon(EmbeddingDP(noise_multiplier=multiplier), releases)
    assert ours == pytest.approx(acc.get_epsilon(1e-5), rel=1e-9)


def test_embedding_noise_has_the_scale_its_settings_give():
    from splitmesh.privacy.protections import embedding_noise

    p = EmbeddingDP(clip=2.0, noise_multiplier=1.5)
    x = torch.zeros(4000, 8)
    noise = embedding_noise(x, p, KEY, "domain", "train", True, 0)
    assert noise.std().item() == pytest.approx(3.0, rel=0.03)  # multiplier x clip
    assert abs(noise.mean().item()) < 0.05
