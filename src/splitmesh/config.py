"""What a run is configured with, as the mesh file spells it (mesh/spec.py): pydantic
models the library takes as they are, so each setting and its default is written once.

A party that gets a setting over the wire validates it with the same model
(``from_message``): a coordinator cannot ask for what a mesh file could not say.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Literal, TypeVar

from pydantic import Field, ValidationError, model_validator

from splitmesh.errors import ConfigError, ProtocolError
from splitmesh.yaml_files import Strict

MAX_WIDTH, MAX_LAYERS = 65_536, 16  # a model part anyone may ask a party for
Width = Annotated[int, Field(ge=1, le=MAX_WIDTH)]
Widths = Annotated[list[Width], Field(max_length=MAX_LAYERS)]

M = TypeVar("M", bound=Strict)


def from_message(cls: type[M], value: Any, who: str) -> M:
    """A setting that arrived in a message, validated as a mesh file's would be; a
    ProtocolError naming the party and the first field at fault otherwise."""
    try:
        return cls.model_validate(value, strict=True)  # "8" is no width on the wire
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or cls.__name__
        raise ProtocolError(f"{who}: {cls.__name__} field {field!r}: {err['msg']}") from None


MODES = ("centralized", "label-sharing", "label-preserving")


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ConfigError(f"The 'mode' parameter must be one of {MODES}. Got {mode!r} instead.")
    return mode


class Optim(Strict):
    """The optimizer every party builds for its own part."""

    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)

    def wire(self) -> dict:
        """Only the optimizer's settings: what travels in a setup message."""
        return {"optimizer": self.optimizer, "lr": self.lr, "weight_decay": self.weight_decay}

    def build(self, params: Iterable[Any]):
        # torch's fused kernels without torch.optim's wrappers (nn/optim.py says why); every
        # mode uses them, so split and centralized runs follow the same arithmetic
        from splitmesh.nn.optim import SGD, Adam

        if self.optimizer == "sgd":
            return SGD(params, lr=self.lr, weight_decay=self.weight_decay)
        return Adam(params, lr=self.lr, weight_decay=self.weight_decay)


class Training(Optim):
    # Defaults that fit small tables without tuning (benchmarks/defaults.py): a large epoch
    # budget that early stopping on validation cuts short, and a learning rate that gets a
    # few hundred rows somewhere in that budget. A table of millions of rows sets its own.
    lr: float = Field(default=3e-3, gt=0)
    weight_decay: float = Field(default=1e-3, ge=0)
    epochs: int = Field(default=200, ge=1, description="an upper bound when patience is set")
    batch_size: int = Field(default=256, ge=1)
    seed: int = 0
    patience: int | None = Field(
        default=20, ge=1, description="epochs without a validation gain before stopping; "
        "null: keep the last epoch"
    )  # fmt: skip
    select_metric: str | None = Field(
        default=None, description="validation metric for early stopping; default per task"
    )
    pipeline: bool = Field(
        default=False, description="send the next batch's Forward during this step (one step stale)"
    )
    checkpoint_interval: float = Field(
        default=10.0, ge=0, description="seconds of training between checkpoints, at least "
        "(the first and the last epoch are always checkpointed); 0: after every epoch"
    )  # fmt: skip
    min_batch: int = Field(
        default=1, ge=1, description="no training batch smaller (the last one is merged); "
        "a node's policy may ask for more"
    )  # fmt: skip


class Model(Strict):
    """Widths of every part. ``bottom[-1]`` is the cut layer's width."""

    bottom: Widths = Field(default_factory=lambda: [32, 16], min_length=1)
    top: Widths = Field(default_factory=lambda: [32])
    aggregation: Literal["concat", "sum", "mean"] = "concat"
    activation: Literal["relu", "tanh", "gelu"] = "relu"
    dropout: float = Field(default=0.0, ge=0, lt=1)
    gmf: Width = Field(default=16, description="ranking: the fact's GMF factor")
    mlp: Width = Field(default=32, description="ranking: the fact's MLP id embedding")
    history: int = Field(
        default=5,
        ge=0,
        le=200,
        description="ranking: the user side of the id embeddings adds the mean embedding of "
        "the user's N latest earlier items (0: ids alone, the NCF paper's NeuMF)",
    )
    sparse_ids: int | None = Field(
        default=100_000,
        ge=1,
        description="ranking: an id table of this many rows or more takes sparse gradients and "
        "a lazy Adam step (only the batch's rows move); null: always dense",
    )


class Split(Strict):
    test: float = Field(default=0.2, gt=0, lt=1)
    validation: float = Field(
        default=0.1,
        gt=0,
        lt=1,
        description="validation rows pick the kept epoch and the binary decision threshold",
    )

    @model_validator(mode="after")
    def _sum(self) -> Split:
        if self.test + self.validation >= 1:
            raise ValueError("test + validation must be below 1")
        return self


class Resample(Strict):
    """Binary tasks only: SMOTE then random undersampling of the training rows."""

    smote_ratio: float | None = Field(
        default=None, gt=0, le=1, description="minority / majority after SMOTE; null: none"
    )
    under_ratio: float | None = Field(
        default=None, gt=0, le=1, description="minority / majority after undersampling"
    )
    k_neighbors: int = Field(default=5, ge=1, le=1000)


class Pretrain(Strict):
    """The NCF paper's pre-training of NeuMF (He et al. 2017, section 3.4.1): the GMF part
    alone, then the MLP part alone, then both, the head reading ``alpha`` x GMF and
    ``1 - alpha`` x MLP. Its epochs come before ``training.epochs``; model selection and
    early stopping watch only the last phase."""

    gmf_epochs: int = Field(default=10, ge=1, le=1000, description="epochs of GMF alone")
    mlp_epochs: int = Field(default=10, ge=1, le=1000, description="epochs of the MLP alone")
    alpha: float = Field(default=0.5, gt=0, lt=1, description="the GMF part's share of the head")


class Ranking(Strict):
    """Bounded: a fact domain allocates what these ask for."""

    holdout: int = Field(
        default=1, ge=1, le=100, description="latest interactions per user held out"
    )
    negatives: int = Field(
        default=4, ge=1, le=1000, description="training negatives per positive, drawn each epoch"
    )
    eval_negatives: int | None = Field(
        default=99, ge=1, le=100_000, description="sampled competitors per user; null: full ranking"
    )
    ks: list[Annotated[int, Field(ge=1, le=1000)]] = Field(
        default_factory=lambda: [10], min_length=1, max_length=16
    )
    eval_users: int | None = Field(
        default=None,
        ge=1,
        le=10_000_000,
        description="rank a sample of this many users in each validation and test pass (drawn "
        "once by seed); null: every user",
    )
    part_examples: int = Field(
        default=1 << 23,
        ge=1024,
        le=1 << 26,
        description="training examples planned, relayed and held at once: an epoch of more "
        "is trained in parts, which bounds every party's memory",
    )
    pretrain: Pretrain | None = Field(
        default=None, description="NeuMF pre-training (GMF, then MLP, then both); null: none"
    )


class LabelDP(Strict):
    """Label differential privacy by randomized response: the label owner keeps each
    training label with probability e^ε / (e^ε + k - 1), else draws another class."""

    epsilon: float = Field(gt=0, le=50)


class GradientNoise(Strict):
    """What the label side returns for the activations (d loss / d activations): each
    example's gradient clipped to ``max_norm``, Gaussian noise of ``sigma`` x ``max_norm``
    added (against the norm and direction attacks on labels)."""

    max_norm: float = Field(default=1.0, gt=0)
    sigma: float = Field(ge=0, le=1000)


class EmbeddingDP(Strict):
    """Each domain's released embeddings: clipped to ``clip`` per example, Gaussian noise
    of ``noise_multiplier`` x ``clip`` added; the privacy spent per training row (one
    release per epoch) is accounted by Opacus's RDP accountant."""

    clip: float = Field(default=1.0, gt=0)
    noise_multiplier: float = Field(gt=0, le=1000)
    delta: float = Field(default=1e-5, gt=0, lt=1)


class NoPeek(Strict):
    """Each domain adds ``weight`` x the distance correlation between a batch's inputs and
    its embeddings to what it minimises (NoPeek, Vepakomma et al. 2020): embeddings that
    keep less of its raw columns, at some cost in utility."""

    weight: float = Field(gt=0, le=100)


class SecureAggregation(Strict):
    """The coordinator gets every domain's embedding masked with keys agreed pairwise
    between the domains (X25519) and learns only their sum (aggregation sum or mean).
    Values travel in fixed point, where the masks cancel exactly."""

    precision_bits: int = Field(
        default=20, ge=8, le=32, description="fixed-point fraction bits of what is summed"
    )


class Privacy(Strict):
    """Protections of what crosses the boundary, each applied by the party that owns what
    it protects, from its own copy of the mesh file."""

    labels: LabelDP | None = Field(default=None, description="label owner: randomized response")
    gradients: GradientNoise | None = Field(
        default=None, description="label side: clipped, noised gradients it returns"
    )
    embeddings: EmbeddingDP | None = Field(
        default=None, description="every domain: clipped, noised embeddings it releases"
    )
    nopeek: NoPeek | None = Field(
        default=None, description="every domain: distance-correlation penalty on its embeddings"
    )
    secure_aggregation: SecureAggregation | None = Field(
        default=None, description="every domain: masked embeddings, the coordinator sees the sum"
    )

    @model_validator(mode="before")
    @classmethod
    def _switch(cls, data: Any) -> Any:
        # ``secure_aggregation: true`` reads as its defaults, ``false`` as none
        if isinstance(data, dict) and isinstance(data.get("secure_aggregation"), bool):
            data = {**data, "secure_aggregation": {} if data["secure_aggregation"] else None}
        return data
