"""The mesh file: which domains take part, with which tables, columns and settings.

Validated with errors that name the file, the field and what was expected. Relative
paths are read from the mesh file's own folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from splitmesh.config import Model, Privacy, Ranking, Resample, Split, Training
from splitmesh.errors import ConfigError
from splitmesh.metrics import DEFAULT_SELECT, SELECT_METRICS
from splitmesh.transport.network import MeshNetwork
from splitmesh.yaml_files import Strict as _Strict
from splitmesh.yaml_files import load_yaml_model

if TYPE_CHECKING:  # reading a mesh file needs neither pandas nor DuckDB: `mesh up` reads
    # it before it starts the nodes, and loads the rest while they start
    from splitmesh.data.sources import DomainTable, FactTable, Source


# what a ranking mesh trains with unless its file says otherwise
RANKING_TRAINING = {"lr": 1e-3, "weight_decay": 0.0, "epochs": 20, "patience": 5}


class SqlSource(_Strict):
    sql: str = Field(description="a DuckDB query; relative paths in it: from the mesh's folder")


class DomainSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    source: str | SqlSource = Field(description="a CSV or Parquet path, or {sql: ...}")
    key: str | None = Field(default=None, description="its rows' key (all but a fact domain)")
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
        from splitmesh.data.sources import Source

        allowed = tuple(Path(d) for d in self.data_dirs)
        if isinstance(self.source, SqlSource):
            return Source(sql=self.source.sql, base=base, allowed=allowed)
        return Source(path=Path(self.source), base=base, allowed=allowed)


class LabelSpec(_Strict):
    domain: str
    column: str | None = Field(default=None, description="ranking: none, a fact row is a positive")


class ForeignKey(_Strict):
    column: str = Field(description="the fact table's column naming the entity")
    domain: str | None = Field(
        default=None, description="the dimension domain keyed by it (none: ids only)"
    )


class FactSpec(_Strict):
    """A star schema: the fact domain's rows are the examples (interactions), joined to
    dimension domains by foreign keys that each dimension resolves itself."""

    domain: str
    user: ForeignKey
    item: ForeignKey
    time: str | None = Field(default=None, description="orders interactions (leave-latest-out)")

    def dimensions(self) -> dict[str, str]:
        """Dimension domain -> the side it describes (users or items)."""
        pairs = (("users", self.user.domain), ("items", self.item.domain))
        return {d: side for side, d in pairs if d is not None}


class MeshSpec(_Strict):
    name: str
    task: Literal["binary", "multiclass", "regression", "ranking"] = "binary"
    mode: Literal["centralized", "label-sharing", "label-preserving"] = "label-preserving"
    label: LabelSpec
    domains: list[DomainSpec] = Field(min_length=1)
    fact: FactSpec | None = Field(default=None, description="ranking: the star schema")
    ranking: Ranking = Ranking()
    training: Training = Training()
    model: Model = Model()
    split: Split = Split()
    resample: Resample | None = Field(
        default=None, description="binary tasks: SMOTE then undersampling of training rows"
    )
    wire_dtype: Literal["float32", "float16", "int8"] = "float32"
    privacy: Privacy = Field(
        default=Privacy(), description="protections of what crosses the boundary (issue 15)"
    )
    products: str | None = Field(
        default=None,
        description="folder of declared data products, one <domain>/ each (product init); "
        "their contracts are checked at every run",
    )
    transport: Literal["local"] | MeshNetwork = Field(
        default="local", description="local (in process), or the nodes' network for gRPC"
    )
    base: Path = Field(default=Path("."), exclude=True)  # the mesh file's folder

    @model_validator(mode="before")
    @classmethod
    def _fact_owns_labels(cls, raw):
        """A ranking mesh's labels are its fact rows: the fact domain owns them."""
        if not isinstance(raw, dict):
            return raw
        fact = raw.get("fact")
        if raw.get("task") == "ranking" and fact is None:
            raise ValueError("a ranking task needs a fact: block (its star schema)")
        if raw.get("task") == "ranking" and isinstance(raw.get("training", {}), dict):
            # NCF's settings, not the small-table defaults: weight decay on id embeddings
            # and a larger step cost MovieLens 100K several points of HR@10
            raw = {**raw, "training": {**RANKING_TRAINING, **raw.get("training", {})}}
        if isinstance(fact, dict) and "label" not in raw:
            return {**raw, "label": {"domain": fact.get("domain")}}
        return raw

    @model_validator(mode="after")
    def _consistent(self) -> MeshSpec:
        names = [d.name for d in self.domains]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"domain names must be unique; repeated: {sorted(dup)}")
        if self.label.domain not in names:
            raise ValueError(f"label.domain {self.label.domain!r} is not one of {names}")
        if (self.task == "ranking") != (self.fact is not None):
            raise ValueError("a ranking task needs a fact: block, and only a ranking task has one")
        if self.fact is not None:
            self._check_star(names)
        else:
            if self.label.column is None:
                raise ValueError("label.column: the label domain names its label column")
            keyless = [d.name for d in self.domains if d.key is None]
            if keyless:
                raise ValueError(f"domain {keyless[0]!r} names no key")
            featureless = [d.name for d in self.domains if d.features == []]
            if featureless and featureless != [self.label.domain]:
                raise ValueError(
                    f"domain {featureless[0]!r} lists no features: only the label domain "
                    "may hold labels alone"
                )
            if len(self.embedding_domains) == 0:
                raise ValueError("a label-only domain needs at least one domain with features")
        if self.resample is not None and self.task != "binary":
            raise ValueError("resample applies to binary tasks only")
        if self.privacy.labels is not None and self.task not in ("binary", "multiclass"):
            raise ValueError("privacy.labels (randomized response) applies to class labels only")
        if self.privacy.secure_aggregation is not None:
            if self.task == "ranking" or self.model.aggregation == "concat":
                raise ValueError(
                    "privacy.secure_aggregation hands the coordinator the sum of the domains' "
                    "embeddings: it needs a keyed mesh with model.aggregation sum or mean"
                )
            if len(self.embedding_domains) < 2:
                raise ValueError(
                    "privacy.secure_aggregation needs two or more domains with features "
                    "(the sum of one embedding is that embedding)"
                )
        if self.ranking.pretrain is not None:
            if self.task != "ranking":
                raise ValueError("ranking.pretrain pre-trains NeuMF: a ranking task only")
            if self.training.weight_decay:
                # L2 decay is in the gradient: with Adam it moves the part a phase leaves
                # out toward zero by about lr per step, undoing what it learned
                raise ValueError(
                    "ranking.pretrain needs training.weight_decay 0: the decay would shrink "
                    "the part each phase leaves out"
                )
        metric, allowed = self.training.select_metric, self.select_metrics()
        if metric is not None and metric not in allowed:
            raise ValueError(
                f"training.select_metric {metric!r} is not a {self.task} metric; use one of "
                f"{list(allowed)}"
            )
        return self

    def select_metrics(self) -> tuple[str, ...]:
        """What model selection may watch; the first is the default."""
        if self.task == "ranking":
            ks = self.ranking.ks
            return (*(f"{m}@{k}" for m in ("ndcg", "hr", "recall") for k in ks), "mrr")
        return SELECT_METRICS[self.task]

    def select_metric(self) -> str:
        return self.training.select_metric or (
            self.select_metrics()[0] if self.task == "ranking" else DEFAULT_SELECT[self.task]
        )

    def _check_star(self, names: list[str]) -> None:
        fact, dims = self.fact, self.fact.dimensions()
        if fact.domain not in names or self.label.domain != fact.domain:
            raise ValueError(f"fact.domain {fact.domain!r}: one of {names}, owning the labels")
        if fact.user.domain is not None and fact.user.domain == fact.item.domain:
            raise ValueError("fact.user and fact.item name the same dimension domain")
        for d in dims:
            if d not in names or d == fact.domain:
                raise ValueError(f"dimension domain {d!r} is not one of the other domains {names}")
            if self.domain(d).key is None:
                raise ValueError(f"dimension domain {d!r} names no key")
        stray = [n for n in names if n != fact.domain and n not in dims]
        if stray:
            raise ValueError(f"domain {stray[0]!r} is neither the fact nor a dimension of it")

    @property
    def label_only(self) -> bool:
        """The label domain holds labels and keys, no features (``features: []``)."""
        return self.fact is None and self.label_domain.features == []

    @property
    def embedding_domains(self) -> list[str]:
        """The domains with a bottom model: all but a label-only domain."""
        return [d for d in self.domain_names if not (self.label_only and d == self.label.domain)]

    @property
    def fact_domains(self) -> list[str]:
        """A ranking mesh's fact domain (its ids are no data product); none otherwise."""
        return [self.fact.domain] if self.fact is not None else []

    @property
    def dimensions(self) -> dict[str, str]:
        """A ranking mesh's dimension domains -> the side (users, items) each describes."""
        return self.fact.dimensions() if self.fact is not None else {}

    def read_fact(self) -> FactTable:
        """The fact domain's table, as its own party reads it."""
        from splitmesh.data.sources import load_fact_table

        f = self.fact
        d = self.domain(f.domain)
        return load_fact_table(
            d.name, d.source_for(self.base), user=f.user.column, item=f.item.column, time=f.time
        )

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
        return {
            "mode": self.mode,
            "domains": {d.name: self.plan_columns(d.name) for d in self.domains},
            "transport": self.wire(),
            "batch_size": self.training.batch_size,
            "epochs": self.training.epochs,
            "privacy": self.privacy.model_dump(exclude_none=True),
        }

    def plan_columns(self, name: str) -> list[str]:
        """The columns domain ``name`` brings to a run (its key first), from its source."""
        f = self.fact
        if f is not None and name == f.domain:
            return [c for c in (f.user.column, f.item.column, f.time) if c]
        return self.read_domain(name, predict=True).columns

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
        from splitmesh.data.sources import load_domain_table

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

    def read_dimension(self, name: str) -> DomainTable:
        """A star schema's dimension ``name`` as its own party reads it: its categories
        coded by DuckDB as it reads them (no Python object per cell)."""
        from splitmesh.data.sources import load_coded_table

        d = self.domain(name)
        if name not in self.dimensions:
            raise ConfigError(f"domain {name!r} is not a dimension of the mesh's star schema")
        return load_coded_table(
            d.name,
            d.source_for(self.base),
            key=d.key,
            features=d.features,
            categorical=d.categorical,
            exclude=d.exclude,
        )


def load_mesh(path: str | Path, overrides: Sequence[str] = ()) -> MeshSpec:
    """Read and validate a mesh file; sources and certificates are read relative to it.
    ``overrides``: ``field.path=value`` settings (the value read as YAML) laid over it."""
    path = Path(path)
    base = path.parent.resolve()
    spec = load_yaml_model(
        path,
        MeshSpec,
        "mesh file",
        path_keys=(),
        extra={"base": str(base)},
        overrides=overrides,
    )
    net = spec.transport
    if net != "local" and net.tls is not None:  # certificates, like sources, are file-relative
        tls = net.tls.model_copy(
            update={f: base / getattr(net.tls, f) for f in ("ca", "cert", "key")}
        )
        spec = spec.model_copy(update={"transport": net.model_copy(update={"tls": tls})})
    return spec
