"""Multi-layer perceptrons."""

from __future__ import annotations

from torch import nn

from splitmesh.errors import ConfigError

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


def make_mlp(
    in_features: int,
    hidden: list[int],
    *,
    activation: str = "relu",
    dropout: float = 0.0,
    last_activation: bool = True,
) -> nn.Sequential:
    """Linear layers of the given widths, each followed by the activation.

    ``last_activation=True`` keeps the activation after the last layer: a bottom model's
    cut layer and a top model's hidden output are activations, not logits.
    """
    if activation not in ACTIVATIONS:
        raise ConfigError(
            f"The 'activation' parameter must be one of {sorted(ACTIVATIONS)}. "
            f"Got {activation!r} instead."
        )
    if in_features < 1 or any(h < 1 for h in hidden):
        raise ConfigError(f"Layer widths must be positive. Got {in_features} -> {hidden} instead.")
    layers: list[nn.Module] = []
    width = in_features
    for i, h in enumerate(hidden):
        layers.append(nn.Linear(width, h))
        if last_activation or i < len(hidden) - 1:
            layers.append(ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        width = h
    return nn.Sequential(*layers)
