"""The mesh file: which domains take part, with which tables, columns and settings.

Validated with errors that name the file, the field and what was expected. Relative
paths are read from the mesh file's own folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from splitmesh.data.sources import DomainTable, Source, load_domain_table
from splitmesh.errors import ConfigError
from splitmesh.node.config import MeshNetwork, load_yaml_model
from splitmesh.split.tasks import SELECT_METRICS


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SqlSource(_Strict):
    sql: str = Field(description="a DuckDB query; relative paths in it: from the mesh's folder")


class DomainSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    source: str | SqlSource = Field(description="a CSV or Parquet path, or {sql: ...}")
    key: str
    features: list[str] | None = Field(
        default=None, description="default: every column but the key and the label"
    )
    categorical: list[str] = Field(
        default_factory=list, description="text columns; every other feature must be numeric"
    )
    exclude: list[str] = Field(default_factory=list, description="columns never used")
    data_dirs: list[str] = Field(
        default_factory=list,
        description="the only folders its source may read (default: the mesh file's folder "
        "for SQL, the file's own folder for a path)",
    )

    def source_for(self, base: Path) -> Source:
        allowed = tuple(Path(d) for d in self.data_dirs)
        if isinstance(self.source, SqlSource):
            return Source(sql=self.source.sql, base=base, allowed=allowed)
        return Source(path=Path(self.source), base=base, allowed=allowed)


class LabelSpec(_Strict):
    domain: str
    column: str


class TrainingSpec(_Strict):
    epochs: int = Field(default=20, ge=1)
    batch_size: int = Field(default=256, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    optimizer: Literal["adam", "sgd"] = "adam"
    weight_decay: float = Field(default=0.0, ge=0)
    seed: int = 0
    patience: int | None = Field(default=5, ge=1, description="null: keep the last epoch")
    select_metric: str | None = Field(
        default=None, description="validation metric for early stopping; default per task"
    )


class ModelSpec(_Strict):
    bottom: list[int] = Field(default_factory=lambda: [32, 16], min_length=1)
    top: list[int] = Field(default_factory=lambda: [32])
    aggregation: Literal["concat", "sum", "mean"] = "concat"
    activation: Literal["relu", "tanh", "gelu"] = "relu"
    dropout: float = Field(default=0.0, ge=0, lt=1)


class SplitSpec(_Strict):
    test: float = Field(default=0.2, gt=0, lt=1)
    validation: float = Field(
        default=0.1,
        gt=0,
        lt=1,
        description="validation rows pick the kept epoch and the binary decision threshold",
    )

    @model_validator(mode="after")
    def _sum(self) -> SplitSpec:
        if self.test + self.validation >= 1:
            raise ValueError("test + validation must be below 1")
        return self


class ResampleSpec(_Strict):
    """Binary tasks only: SMOTE then random undersampling of the training rows."""

    smote_ratio: float | None = Field(default=None, gt=0)
    under_ratio: float | None = Field(default=None, gt=0)
    k_neighbors: int = Field(default=5, ge=1)


class MeshSpec(_Strict):
    name: str
    task: Literal["binary", "multiclass", "regression"] = "binary"
    mode: Literal["centralized", "label-sharing", "label-preserving"] = "label-preserving"
    label: LabelSpec
    domains: list[DomainSpec] = Field(min_length=1)
    training: TrainingSpec = TrainingSpec()
    model: ModelSpec = ModelSpec()
    split: SplitSpec = SplitSpec()
    resample: ResampleSpec | None = None
    wire_dtype: Literal["float32", "float16", "int8"] = "float32"
    products: str | None = Field(
        default=None,
        description="folder of declared data products, one <domain>/ each (product init); "
        "their contracts are checked at every run",
    )
    transport: Literal["local"] | MeshNetwork = Field(
        default="local", description="local (in process), or the nodes' network for gRPC"
    )
    base: Path = Field(default=Path("."), exclude=True)  # the mesh file's folder

    @model_validator(mode="after")
    def _consistent(self) -> MeshSpec:
        names = [d.name for d in self.domains]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"domain names must be unique; repeated: {sorted(dup)}")
        if self.label.domain not in names:
            raise ValueError(f"label.domain {self.label.domain!r} is not one of {names}")
        if self.resample is not None and self.task != "binary":
            raise ValueError("resample applies to binary tasks only")
        metric = self.training.select_metric
        if metric is not None and metric not in SELECT_METRICS[self.task]:
            raise ValueError(
                f"training.select_metric {metric!r} is not a {self.task} metric; use one of "
                f"{list(SELECT_METRICS[self.task])}"
            )
        return self

    @property
    def label_domain(self) -> DomainSpec:
        return next(d for d in self.domains if d.name == self.label.domain)

    def domain(self, name: str) -> DomainSpec:
        for d in self.domains:
            if d.name == name:
                return d
        raise ConfigError(f"mesh {self.name!r} has no domain {name!r}")

    @property
    def domain_names(self) -> list[str]:
        return [d.name for d in self.domains]

    def wire(self) -> str:
        """local (no network), tls or plaintext."""
        if self.transport == "local":
            return "local"
        return "plaintext" if self.transport.insecure or self.transport.tls is None else "tls"

    def plan(self) -> dict:
        """What a governance policy judges: mode, each domain's columns, wire, limits."""
        domains = {}
        for d in self.domains:
            t = self.read_domain(d.name, predict=True)
            domains[d.name] = [t.key, *t.numeric_names, *t.categorical_names]
        return {
            "mode": self.mode,
            "domains": domains,
            "transport": self.wire(),
            "batch_size": self.training.batch_size,
            "epochs": self.training.epochs,
        }

    def declared_product(self, name: str):
        """Domain ``name``'s declared product (mesh/products.py), or None without ``products``."""
        if self.products is None:
            return None
        from splitmesh.mesh.products import Product

        self.domain(name)
        return Product(self.base / self.products / name)

    def embedding_contracts(self) -> dict:
        """Each domain's output contract, which the coordinator checks embeddings against."""
        if self.products is None:
            return {}
        return {d: self.declared_product(d).embedding for d in self.domain_names}

    def read_domain(self, name: str, *, predict: bool = False) -> DomainTable:
        """One domain's table as its own party reads it (the label domain with its labels;
        ``predict``: new rows may come without them)."""
        d = self.domain(name)
        return load_domain_table(
            d.name,
            d.source_for(self.base),
            key=d.key,
            features=d.features,
            categorical=d.categorical,
            label=self.label.column if d.name == self.label.domain else None,
            exclude=d.exclude,
            label_optional=predict,
        )


def load_mesh(path: str | Path) -> MeshSpec:
    """Read and validate a mesh file; sources and certificates are read relative to it."""
    path = Path(path)
    base = path.parent.resolve()
    spec = load_yaml_model(path, MeshSpec, "mesh file", path_keys=(), extra={"base": str(base)})
    net = spec.transport
    if net != "local" and net.tls is not None:  # certificates, like sources, are file-relative
        tls = net.tls.model_copy(
            update={f: base / getattr(net.tls, f) for f in ("ca", "cert", "key")}
        )
        spec = spec.model_copy(update={"transport": net.model_copy(update={"tls": tls})})
    return spec
