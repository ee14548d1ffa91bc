"""The protections, as the party that owns what is protected applies them.

Noise is drawn from a generator seeded by the run's seed, the party and the step, so the
same mesh and seed give the same run in process and over the network, and a resumed run
draws what the uninterrupted one would have.
"""

from __future__ import annotations

import warnings
import zlib

import numpy as np
import torch

from splitmesh.config import EmbeddingDP, GradientNoise, LabelDP

# Rényi orders the accountant tries (Opacus's defaults)
ORDERS = [1 + x / 100.0 for x in range(1, 10)] + [1 + x / 10.0 for x in range(1, 100)]
ORDERS += list(range(12, 64))


def _generator(seed: int, *parts: object) -> torch.Generator:
    key = "/".join(str(p) for p in (seed, *parts))
    return torch.Generator().manual_seed(zlib.crc32(key.encode()) * 7919 + seed)


def clip_rows(x: torch.Tensor, max_norm: float) -> torch.Tensor:
    """Each row scaled down to L2 norm ``max_norm`` at most (differentiable)."""
    norms = x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return x * (max_norm / norms).clamp(max=1.0)


def gaussian(shape: torch.Size, std: float, seed: int, *where: object) -> torch.Tensor:
    return torch.randn(shape, generator=_generator(seed, *where)) * std


def embedding_noise(out: torch.Tensor, p: EmbeddingDP, seed: int, *where: object) -> torch.Tensor:
    """What a domain releases: its (clipped) embedding plus Gaussian noise."""
    return out + gaussian(out.shape, p.noise_multiplier * p.clip, seed, "embedding", *where)


def noisy_gradient(grad: torch.Tensor, p: GradientNoise, seed: int, *where: object) -> torch.Tensor:
    """A gradient as the label side returns it: clipped per example, then noised."""
    clipped = clip_rows(grad, p.max_norm)
    return clipped + gaussian(grad.shape, p.sigma * p.max_norm, seed, "gradient", *where)


def randomized_response(y: np.ndarray, p: LabelDP, n_classes: int, seed: int) -> np.ndarray:
    """Each label kept with probability e^ε / (e^ε + k - 1), else replaced by one of the
    other k - 1 classes at random: ε-label differential privacy."""
    rng = np.random.default_rng([seed, 0x5EED])
    y = np.asarray(y).astype(np.int64)
    keep = np.exp(p.epsilon) / (np.exp(p.epsilon) + n_classes - 1)
    flip = rng.random(len(y)) >= keep
    other = (y + rng.integers(1, n_classes, size=len(y))) % n_classes
    return np.where(flip, other, y)


def embedding_epsilon(p: EmbeddingDP, releases: int) -> float:
    """The privacy spent per training row after ``releases`` releases of its embedding
    (one per epoch, no subsampling claimed): Opacus's RDP accountant, used stand-alone."""
    if releases <= 0:
        return 0.0
    from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent

    rdp = compute_rdp(q=1.0, noise_multiplier=p.noise_multiplier, steps=releases, orders=ORDERS)
    with warnings.catch_warnings():  # at very large epsilon the bound sits at the smallest order
        warnings.simplefilter("ignore", UserWarning)
        eps, _ = get_privacy_spent(orders=ORDERS, rdp=rdp, delta=p.delta)
    return float(eps)
