"""The protections, as the party that owns what is protected applies them.

Noise is drawn from a key only its party holds (derived from its own private key: a
node's TLS key, or this user's local key in process), the run's seed, and where it is
drawn (party, partition, step). The recipient knows the seed and the step but not the
key, so it cannot redraw the noise and take it off; the same party with the same key and
seed draws the same noise again (a resumed run draws what the uninterrupted one would
have, two runs of one mesh on the same nodes give the same result).
"""

from __future__ import annotations

import hashlib
import warnings
from typing import TYPE_CHECKING

import numpy as np
import torch

from splitmesh.config import EmbeddingDP, GradientNoise, LabelDP

if TYPE_CHECKING:
    from splitmesh.transport.identity import Identity

# Rényi orders the accountant tries (Opacus's defaults)
ORDERS = [1 + x / 100.0 for x in range(1, 10)] + [1 + x / 10.0 for x in range(1, 100)]
ORDERS += list(range(12, 64))


def party_key(secret: bytes, seed: int) -> bytes:
    """A party's noise key for a run: its own secret and the run's seed."""
    return hashlib.blake2b(
        secret + seed.to_bytes(8, "little", signed=True), digest_size=32, person=b"splitmesh-noise"
    ).digest()


def _draw_seed(key: bytes, *where: object) -> int:
    where_bytes = "/".join(str(p) for p in where).encode()
    digest = hashlib.blake2b(where_bytes, key=key[:64], digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1  # torch seeds are non-negative int64


def _generator(key: bytes, *where: object) -> torch.Generator:
    return torch.Generator().manual_seed(_draw_seed(key, *where))


def noise_secret(identity: Identity | None, name: str) -> bytes:
    """What keys the noise a party adds: derived from its own private key (its TLS key,
    else this user's local key), so no other party can redraw it."""
    from splitmesh.transport.identity import local_signer

    label = f"splitmesh/noise/{name}"
    return identity.secret(label) if identity is not None else local_signer().secret(label)


def clip_rows(x: torch.Tensor, max_norm: float) -> torch.Tensor:
    """Each row scaled down to L2 norm ``max_norm`` at most (differentiable)."""
    norms = x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return x * (max_norm / norms).clamp(max=1.0)


def gaussian(shape: torch.Size, std: float, key: bytes, *where: object) -> torch.Tensor:
    return torch.randn(shape, generator=_generator(key, *where)) * std


def embedding_noise(out: torch.Tensor, p: EmbeddingDP, key: bytes, *where: object) -> torch.Tensor:
    """What a domain releases: its (clipped) embedding plus Gaussian noise."""
    return out + gaussian(out.shape, p.noise_multiplier * p.clip, key, "embedding", *where)


def noisy_gradient(
    grad: torch.Tensor, p: GradientNoise, key: bytes, *where: object
) -> torch.Tensor:
    """A gradient as the label side returns it: clipped per example, then noised."""
    clipped = clip_rows(grad, p.max_norm)
    return clipped + gaussian(grad.shape, p.sigma * p.max_norm, key, "gradient", *where)


def distance_correlation(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Sample distance correlation between the rows of ``x`` and of ``z`` (Székely et al.
    2007): 0 when independent, 1 when one is a similarity transform of the other;
    differentiable, the NoPeek penalty."""

    def centred(t: torch.Tensor) -> torch.Tensor:
        t = t.reshape(len(t), -1).to(torch.float32)
        norms = t.pow(2).sum(1)
        sq = norms[:, None] + norms[None, :] - 2 * (t @ t.T)  # n x n, never n x n x width
        d = sq.clamp_min(1e-12).sqrt()  # no infinite gradient where two rows coincide
        return d - d.mean(0, keepdim=True) - d.mean(1, keepdim=True) + d.mean()

    a, b = centred(x), centred(z)
    xy, xx, yy = (a * b).mean(), (a * a).mean(), (b * b).mean()
    return xy.clamp_min(0).sqrt() / (xx * yy).clamp_min(1e-24).sqrt().sqrt()


def randomized_response(y: np.ndarray, p: LabelDP, n_classes: int, key: bytes) -> np.ndarray:
    """Each label kept with probability e^ε / (e^ε + k - 1), else replaced by one of the
    other k - 1 classes at random: ε-label differential privacy."""
    rng = np.random.default_rng(_draw_seed(key, "randomized-response"))
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
