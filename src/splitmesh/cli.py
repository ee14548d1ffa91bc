"""The ``splitmesh`` command line."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from splitmesh.errors import ConfigError, SplitmeshError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Split learning across the domains of a data mesh.",
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from splitmesh import __version__

        print(f"splitmesh {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="print the version"),
    ] = False,
) -> None:
    """Split learning across the domains of a data mesh."""


def _width(stream) -> int | None:
    """A terminal's own width; elsewhere (CI logs, pipes, containers) wide enough that no
    table cell is cut, unless COLUMNS says otherwise."""
    if stream.isatty() or os.environ.get("COLUMNS"):
        return None
    return 200


console = Console(width=_width(sys.stdout), soft_wrap=True)  # paths are never broken
err = Console(stderr=True, width=_width(sys.stderr))


# options every use case takes the same way
ResumeOption = Annotated[
    bool, typer.Option(help="continue from the last checkpoint of the same settings")
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="override a mesh-file field, e.g. --set training.epochs=5 (repeat)"),
]
PolicyOption = Annotated[
    Path | None, typer.Option(help="the governance policy the run must satisfy")
]
AuditOption = Annotated[Path | None, typer.Option(help="audit log (default OUT/audit.jsonl)")]
LineageOption = Annotated[
    Path | None, typer.Option(help="OpenLineage events, JSON lines (default OUT/lineage.jsonl)")
]
CatalogOption = Annotated[
    str | None,
    typer.Option(
        help="catalog: SQLite file or postgresql:// URL (default $SPLITMESH_CATALOG, else "
        "~/.splitmesh/catalog.db, shared by all runs)"
    ),
]
MlflowOption = Annotated[
    str | None,
    typer.Option(
        help="log runs, metrics, figures and models to this MLflow tracking URI (default "
        "$MLFLOW_TRACKING_URI); needs splitmesh[mlflow]"
    ),
]
ProtectOption = Annotated[
    list[str] | None,
    typer.Option(
        "--protect",
        help="a protection (repeat): labels=EPSILON, gradients=SIGMA, embeddings=NOISE, "
        "nopeek=WEIGHT, secure-aggregation (sums the embeddings); settings: --set privacy...",
    ),
]
PrivacyAuditOption = Annotated[
    bool,
    typer.Option(help="attack what crossed the boundary in this run (in process)"),
]

# --protect NAME=VALUE: the mesh-file field each sets (privacy/protections.py)
_PROTECTIONS = {
    "labels": "privacy.labels.epsilon",
    "gradients": "privacy.gradients.sigma",
    "embeddings": "privacy.embeddings.noise_multiplier",
    "nopeek": "privacy.nopeek.weight",
}


def _protect_sets(values: list[str] | None) -> list[str]:
    """``--protect`` options as mesh-file overrides."""
    out = []
    for v in values or []:
        name, _, value = v.partition("=")
        name = name.strip().replace("_", "-")
        if name == "secure-aggregation" and not value:
            # the coordinator sees the domains' sum: they are summed, not concatenated
            out += ["privacy.secure_aggregation=true", "model.aggregation=sum"]
        elif name in _PROTECTIONS and value:
            out.append(f"{_PROTECTIONS[name]}={value}")
        else:
            known = [f"{k}=VALUE" for k in _PROTECTIONS] + ["secure-aggregation"]
            raise ConfigError(f"The 'protect' parameter must be one of {known}. Got {v!r}.")
    return out


def _ratio(value: str) -> float | None:
    if value.lower() in ("none", "off", "0"):
        return None
    try:
        return float(value)
    except ValueError:
        raise ConfigError(
            f"A resampling ratio must be a number or 'none'. Got {value!r}."
        ) from None


def _modes(mode: str) -> list[str]:
    """all: the centralized baseline and both split modes; split: the two split modes."""
    from splitmesh.config import MODES, check_mode

    modes = {"all": list(MODES), "split": list(MODES[1:])}.get(mode, mode.split(","))
    return [check_mode(m.strip()) for m in modes]


def _option_sets(**options) -> list[str]:
    """Options given on the command line as mesh-file overrides (``None``: not given)."""
    return [f"{path}={value}" for path, value in options.items() if value is not None]


def _training_sets(params: dict) -> dict:
    """The presets' shared training options, by the mesh-file field each overrides."""
    fields = ("epochs", "patience", "batch_size", "lr", "seed")
    return {
        **{f"training.{f}": params[f] for f in fields},
        "training.pipeline": params["pipeline"] or None,  # a flag: given only when set
        "wire_dtype": params["wire_dtype"],
    }


@app.command()
def fraud(
    mode: Annotated[
        str,
        typer.Option(help="centralized | label-sharing | label-preserving | split (both) | all"),
    ] = "all",
    data: Annotated[
        Path | None,
        typer.Option(help="a creditcard.csv (default: the real subset in ../shared/data)"),
    ] = None,
    synthetic_rows: Annotated[
        int | None, typer.Option(help="generate N rows of the schema instead")
    ] = None,
    domains: Annotated[int, typer.Option(help="the first N of payments, cardholder, security")] = 3,
    domains_sweep: Annotated[
        bool, typer.Option(help="labels with 1, 2, 3 domains, over --seeds seeds; a plot")
    ] = False,
    seeds: Annotated[int, typer.Option(min=1, help="seeds per domain set (sweep)")] = 3,
    epochs: Annotated[int | None, typer.Option(help="maximum epochs")] = None,
    patience: Annotated[
        int | None, typer.Option(help="stop after N epochs without validation gain")
    ] = None,
    batch_size: int | None = None,
    lr: float | None = None,
    seed: Annotated[int, typer.Option(help="training seed (and synthetic rows')")] = 0,
    smote_ratio: Annotated[
        str | None, typer.Option(help="minority ratio after SMOTE, or 'none'")
    ] = None,
    under_ratio: Annotated[
        str | None, typer.Option(help="minority ratio after undersampling, or 'none'")
    ] = None,
    wire_dtype: Annotated[
        str | None, typer.Option(help="float32 | float16 | int8 (per-tensor scale) on the wire")
    ] = None,
    pipeline: Annotated[
        bool, typer.Option(help="send the next batch's Forward during this step (one step stale)")
    ] = False,
    sets: SetOption = None,
    protect: ProtectOption = None,
    privacy_audit: PrivacyAuditOption = False,
    out: Annotated[Path, typer.Option(help="the mesh file run, results, models")] = Path(
        "runs/fraud"
    ),
    resume: ResumeOption = False,
    policy: PolicyOption = None,
    audit: AuditOption = None,
    lineage: LineageOption = None,
    catalog: CatalogOption = None,
    mlflow: MlflowOption = None,
    progress: bool = True,
) -> None:
    """Credit-card fraud detection, split across three domains and a label domain, against
    a centralized baseline of the same network: the mesh file examples/fraud/mesh.yaml with
    these options as overrides (OUT/mesh.yaml is what ran). Every domain publishes its
    trained bottom model as a data product under OUT/<domain>/."""
    params = locals()
    _run(*_fraud_spec(params), params)


def _fraud_spec(params: dict):
    """The fraud command's mesh (written under --out) and modes, from its parameters."""
    from splitmesh.usecases.fraud import fraud_mesh

    resample = {  # a ratio, or 'none' for the step off
        f"resample.{k}": params[k] and ("null" if _ratio(params[k]) is None else params[k])
        for k in ("smote_ratio", "under_ratio")
    }
    sets = _option_sets(**_training_sets(params), **resample) + _protect_sets(params["protect"])
    path = fraud_mesh(
        params["out"],
        data=params["data"],
        synthetic_rows=params["synthetic_rows"],
        domains=params["domains"],
        seed=params["seed"],
    )
    return _mesh_spec(path, None, sets=[*sets, *(params["sets"] or [])]), _modes(params["mode"])


@app.command()
def recsys(
    dataset: Annotated[
        str, typer.Option(help="ml-100k | hm (the Kaggle files in --data) | hm-synthetic")
    ] = "ml-100k",
    data: Annotated[Path | None, typer.Option(help="the dataset's folder")] = None,
    preset: Annotated[str | None, typer.Option(help="H&M sampling: small | medium | large")] = None,
    fraction: Annotated[float | None, typer.Option(help="H&M: share of customers")] = None,
    min_user: Annotated[int | None, typer.Option(help="H&M: purchases per customer")] = None,
    min_item: Annotated[int | None, typer.Option(help="H&M: purchases per article")] = None,
    synthetic_transactions: Annotated[
        int | None, typer.Option(help="hm-synthetic: transactions to generate")
    ] = None,
    synthetic_customers: int | None = None,
    synthetic_articles: int | None = None,
    mode: Annotated[
        str,
        typer.Option(
            help="centralized | label-sharing | label-preserving (comma-separated) | split | all"
        ),
    ] = "all",
    domains: Annotated[int, typer.Option(help="1: sales, 2: + customers, 3: + products")] = 3,
    domains_sweep: Annotated[
        bool, typer.Option(help="sales, + customers, + products over --seeds seeds; a plot")
    ] = False,
    seeds: Annotated[int, typer.Option(min=1, help="seeds per domain set (sweep)")] = 3,
    negatives: Annotated[int | None, typer.Option(help="training negatives per positive")] = None,
    eval_negatives: Annotated[
        str | None, typer.Option(help="sampled competitors per user, or 'full' (all items)")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="maximum epochs")] = None,
    patience: Annotated[
        int | None, typer.Option(help="stop after N epochs without validation NDCG gain")
    ] = None,
    pretrain: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="NCF pre-training: N epochs of GMF alone, then N of the MLP alone, before "
            "--epochs of both (ranking.pretrain)",
        ),
    ] = None,
    history: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="the user's N latest earlier items feed the user side (model.history; "
            "0: ids alone, the NCF paper's NeuMF)",
        ),
    ] = None,
    batch_size: int | None = None,
    lr: float | None = None,
    seed: Annotated[int, typer.Option(help="training seed (and synthetic data's)")] = 0,
    wire_dtype: Annotated[str | None, typer.Option(help="float32 | float16 | int8")] = None,
    pipeline: bool = False,
    sets: SetOption = None,
    protect: ProtectOption = None,
    privacy_audit: PrivacyAuditOption = False,
    out: Annotated[Path, typer.Option(help="the mesh file run, results, models")] = Path(
        "runs/recsys"
    ),
    resume: ResumeOption = False,
    policy: PolicyOption = None,
    audit: AuditOption = None,
    lineage: LineageOption = None,
    catalog: CatalogOption = None,
    mlflow: MlflowOption = None,
    progress: bool = True,
) -> None:
    """A recommender (NeuMF) across sales, customers and products, against a centralized
    baseline of the same network, random and ItemPop: a star mesh shipped in examples/
    (movielens, hm) or written for synthetic H&M, with these options as overrides
    (OUT/mesh.yaml is what ran). The customers and products bottoms are published as data
    products under OUT/<domain>/."""
    params = locals()
    _run(*_recsys_spec(params), params)


def _recsys_spec(params: dict):
    """The recsys command's mesh (written under --out) and modes, from its parameters."""
    from splitmesh.usecases.recsys import recsys_mesh

    full = params["eval_negatives"] in ("full", "none")
    sets = _option_sets(
        **_training_sets(params),
        **{
            "ranking.negatives": params["negatives"],
            "ranking.eval_negatives": "null" if full else params["eval_negatives"],
            "ranking.pretrain.gmf_epochs": params["pretrain"],
            "ranking.pretrain.mlp_epochs": params["pretrain"],
            "model.history": params["history"],
        },
    ) + _protect_sets(params["protect"])
    synthetic = {
        k: params[f"synthetic_{k}"]
        for k in ("transactions", "customers", "articles")
        if params[f"synthetic_{k}"] is not None
    }
    path = recsys_mesh(
        params["out"],
        dataset=params["dataset"],
        data=params["data"],
        synthetic=synthetic,
        preset=params["preset"],
        sampling={k: params[k] for k in ("fraction", "min_user", "min_item")},
        domains=params["domains"],
        seed=params["seed"],
    )
    return _mesh_spec(path, None, sets=[*sets, *(params["sets"] or [])]), _modes(params["mode"])


@app.command()
def train(
    mesh: Annotated[Path, typer.Argument(help="the mesh file (YAML)")],
    out: Annotated[Path, typer.Option(help="results, each party's model folder, checkpoints")],
    compare: Annotated[
        bool, typer.Option(help="also train the centralized reference on the same rows")
    ] = False,
    mode: Annotated[str | None, typer.Option(help="override the mesh file's mode")] = None,
    pipeline: Annotated[
        bool,
        typer.Option(
            help="the domains embed the next batch while this step runs (one step stale; "
            "training.pipeline)"
        ),
    ] = False,
    sets: SetOption = None,
    protect: ProtectOption = None,
    privacy_audit: PrivacyAuditOption = False,
    domains_sweep: Annotated[
        bool,
        typer.Option(
            help="the paper's experiment: the label domain alone, then add the others one "
            "by one (mesh order), each set over --seeds seeds; writes domains.png"
        ),
    ] = False,
    seeds: Annotated[int, typer.Option(min=1, help="seeds per domain set (sweep)")] = 3,
    policy: PolicyOption = None,
    audit: AuditOption = None,
    lineage: LineageOption = None,
    catalog: CatalogOption = None,
    mlflow: MlflowOption = None,
    resume: ResumeOption = False,
    progress: Annotated[bool, typer.Option(help="progress bars")] = True,
) -> None:
    """Align the domains' keys (PSI), train, evaluate; every domain publishes its trained part
    as a data product under OUT/<domain>/ (ONNX, contracts, model card)."""
    sets = [
        *(["training.pipeline=true"] if pipeline else []),
        *_protect_sets(protect),
        *(sets or []),
    ]
    _run(_mesh_spec(mesh, mode, sets=sets), None, locals())


# what a command's parameters pass on to the run itself (the rest shape the mesh)
_RUN_OPTIONS = (
    "out", "compare", "resume", "progress", "policy", "audit", "lineage", "catalog",
    "privacy_audit", "mlflow",
)  # fmt: skip


def _run(spec, modes: list[str] | None, params: dict) -> None:
    """Train ``spec`` (each of ``modes``; default its own) as a command's ``params`` ask:
    where to, under which policy, and a domains sweep when asked."""
    sweep = params["seeds"] if params.get("domains_sweep") else None
    run = {"compare": False, **{k: params[k] for k in _RUN_OPTIONS if k in params}}
    _train(spec, modes=modes, sweep=sweep, **run)


def _train(
    spec,
    *,
    out: Path,
    compare: bool,
    resume: bool,
    progress: bool,
    policy,
    sweep: int | None = None,
    modes: list[str] | None = None,
    mlflow: str | None = None,
    **where,
) -> None:
    from splitmesh.mesh.policy import load_policy
    from splitmesh.mesh.tracking import check_available, tracking_uri

    mlflow = tracking_uri(mlflow)
    if mlflow is not None:
        check_available(mlflow)

    # progress: bars on a terminal, one line per step and epoch elsewhere (trainer.py)
    rules = load_policy(policy) if policy else None
    wire = "over gRPC" if spec.transport != "local" else "in process"
    console.print(
        f"{spec.name}: {spec.task}, {len(spec.domains)} domains, "
        f"{', '.join(modes or [spec.mode])} {wire}; results to {out}",
        highlight=False,
    )
    if sweep is not None:
        from splitmesh.report import plot_mesh_sweep, print_sweep_report, write_results
        from splitmesh.usecases.sweep import domains_sweep

        results = domains_sweep(
            spec, out, seeds=sweep, compare=compare, modes=modes, progress=progress, policy=rules,
            **where,
        )  # fmt: skip
        print_sweep_report(results, console)
        plot = plot_mesh_sweep(results, out)
        for p in [*write_results(results, out, plot=plot.name), plot]:
            console.print(f"wrote {p}")
        if mlflow is not None:
            from splitmesh.mesh.tracking import log_sweep

            logged = log_sweep(results, out, mlflow)
            console.print(
                f"MLflow {mlflow}: experiment splitmesh/{results['mesh']}, run domains-sweep "
                f"{logged['run']} with {len(logged['children'])} nested runs",
                highlight=False,
            )
        return
    if progress:  # importing torch and the engine: most of two seconds on a cold start
        err.print("loading the training engine (torch)", highlight=False)
    from splitmesh.report import print_mesh_report, write_results
    from splitmesh.usecases.train import train_mesh

    results = train_mesh(
        spec, out, compare=compare, modes=modes, progress=progress, resume=resume, policy=rules,
        **where,
    )  # fmt: skip
    print_mesh_report(results, console)
    for p in write_results(results, out):
        console.print(f"wrote {p}")
    if mlflow is not None:
        from splitmesh.mesh.tracking import log_results

        logged = log_results(results, out, mlflow)
        registered = ", ".join(f"{k} v{v}" for k, v in logged["registered"].items())
        console.print(
            f"MLflow {mlflow}: experiment splitmesh/{results['mesh']}, runs "
            f"{', '.join(logged['runs'])}; registered {registered or 'nothing'}",
            highlight=False,
        )


@app.command()
def predict(
    mesh: Annotated[Path, typer.Argument(help="the mesh file, its sources naming the new rows")],
    model: Annotated[Path, typer.Option(help="the --out folder of splitmesh train")],
    out: Annotated[Path, typer.Option(help="the scores CSV, keyed by the label domain's key")],
    mode: Annotated[str | None, typer.Option(help="override the mesh file's mode")] = None,
    sets: SetOption = None,
    progress: Annotated[bool, typer.Option(help="show each step")] = True,
) -> None:
    """Score the rows present in every domain's table with a trained model."""
    spec = _mesh_spec(mesh, mode, sets=sets)
    console.print(f"{spec.name}: scoring with the model in {model}", highlight=False)
    from splitmesh.usecases.train import predict_mesh

    done = predict_mesh(spec, model, out, progress=progress)
    if spec.transport == "local" or spec.mode == "centralized":
        console.print(f"scored {done['rows']} rows; wrote {out}", highlight=False)
    else:  # the label domain keeps its keys: the scores stay on its host
        console.print(
            f"scored {done['rows']} rows; the label domain {spec.label.domain!r} wrote "
            f"{done['file']} in its node's outputs folder",
            highlight=False,
        )


def _mesh_spec(mesh: Path, mode: str | None, network=None, sets: list[str] | None = None):
    """The mesh file with ``--set`` overrides, the mode and (for local nodes) the
    transport overridden."""
    from splitmesh.config import check_mode
    from splitmesh.mesh.spec import load_mesh

    spec = load_mesh(mesh, sets or ())
    if mode is not None:
        spec = spec.model_copy(update={"mode": check_mode(mode)})
    if network is not None:
        spec = spec.model_copy(update={"transport": network})
    return spec


product_app = typer.Typer(help="Data products: descriptors, contracts, ONNX.", no_args_is_help=True)
catalog_app = typer.Typer(help="The catalog of products, runs and lineage.", no_args_is_help=True)
app.add_typer(product_app, name="product")
app.add_typer(catalog_app, name="catalog")


@product_app.command("init")
def product_init(
    mesh: Annotated[Path, typer.Argument(help="the mesh file")],
    out: Annotated[Path, typer.Option(help="products folder: one <domain>/ each")],
    domain: Annotated[
        list[str] | None, typer.Option(help="only this domain (repeat); default all")
    ] = None,
    version: Annotated[str, typer.Option(help="the products' and contracts' version")] = "1.0.0",
    owner: Annotated[str | None, typer.Option(help="the owning team's name")] = None,
    contact: Annotated[
        str | None, typer.Option(help="the owning team's contact (user name or e-mail)")
    ] = None,
    pii: Annotated[
        list[str] | None, typer.Option(help="a column to classify as PII (repeat)")
    ] = None,
    sla: Annotated[
        list[str] | None,
        typer.Option(
            help="a service level the domain promises, PROPERTY=VALUE[UNIT] (repeat): "
            "frequency=1d, latency=4h, retention=365d"
        ),
    ] = None,
    sets: SetOption = None,
) -> None:
    """Write a starting ODPS descriptor and ODCS contracts from each domain's own table
    (servers: the files it reads; team; SLA)."""
    from splitmesh.mesh.contracts import sla_properties, source_servers
    from splitmesh.mesh.products import init_product

    spec = _mesh_spec(mesh, None, sets=sets)
    names = domain or [d for d in spec.embedding_domains if d not in spec.fact_domains]
    tables = {name: spec.read_domain(name, predict=True) for name in names}
    held = {c for t in tables.values() for c in t.columns}
    unknown = [c for c in pii or () if c not in held]
    if unknown:
        raise ConfigError(
            f"--pii {unknown[0]!r} is not a column of {', '.join(names)}",
            hint="name a column of the domains' tables",
        )
    sla_properties(sla or [])  # a malformed item fails before any file is written
    for name, table in tables.items():
        product = init_product(
            out / name,
            table,
            spec.model.bottom[-1],
            version=version,
            owner=owner,
            contact=contact,
            pii=tuple(c for c in pii or () if c in table.columns),
            servers=source_servers(name, spec.domain(name).source_for(spec.base)),
            sla=sla or [],
        )
        console.print(
            f"wrote {product.folder} ({product.descriptor.id} v{version})", highlight=False
        )
    console.print(f"point the mesh file at them with `products: {out}` (relative to it)")


@product_app.command("validate")
def product_validate(
    path: Annotated[Path, typer.Argument(help="a product folder, or a folder of them")],
    mesh: Annotated[
        Path | None, typer.Option(help="also check each domain's data and cut width")
    ] = None,
    sets: SetOption = None,
) -> None:
    """Validate descriptors (ODPS v1.0.0) and contracts (the official ODCS JSON schema); with
    --mesh, the data against the input contract and the model's cut width."""
    from rich.table import Table

    from splitmesh.mesh.contracts import ContractError, table_violations
    from splitmesh.mesh.products import find_products

    products = find_products(path)
    spec = _mesh_spec(mesh, None, sets=sets) if mesh else None
    t = Table(title=f"products under {path}")
    for col in ("product", "version", "input contract", "output contract", "width", "data"):
        t.add_column(col)
    problems = []
    for p in products:
        verdict = "-"
        if spec is not None:
            found = table_violations(p.input, spec.read_domain(p.domain, predict=True))
            if p.embedding.width != spec.model.bottom[-1]:
                found.append(
                    f"contract width {p.embedding.width}, the mesh's cut width "
                    f"{spec.model.bottom[-1]}"
                )
            problems += [f"{p.domain}: {f}" for f in found]
            verdict = "[green]ok[/green]" if not found else f"[red]{len(found)} breach(es)[/red]"
        t.add_row(
            p.descriptor.id,
            str(p.descriptor.version),
            "@".join(p.summary()["input_contract"]),
            "@".join(p.summary()["output_contract"]),
            str(p.embedding.width),
            verdict,
        )
    console.print(t)
    if problems:
        raise ContractError("; ".join(problems))
    console.print(f"{len(products)} product(s) valid", highlight=False)


@product_app.command("export")
def product_export(
    model: Annotated[Path, typer.Argument(help="a trained domain's folder (OUT/<domain>)")],
    out: Annotated[Path | None, typer.Option(help="product folder (default: MODEL)")] = None,
    mesh: Annotated[Path | None, typer.Option(help="the mesh file, for the domain's table")] = None,
    sets: SetOption = None,
) -> None:
    """Publish a trained bottom model as ONNX with metadata and a model card; check that
    onnxruntime gives the PyTorch embeddings."""
    from splitmesh.usecases.train import export_domain

    done = export_domain(model, out or model, _mesh_spec(mesh, None, sets=sets) if mesh else None)
    console.print(
        f"wrote {done['folder']}: {done['id']} v{done['version']}, ONNX sha256 "
        f"{done['onnx_sha256'][:16]}, max |onnx - torch| {done['max_difference']:.2e}",
        highlight=False,
    )


@catalog_app.command("list")
def catalog_list(catalog: CatalogOption = None) -> None:
    """Runs, products and contracts in the catalog."""
    from rich.table import Table

    from splitmesh.mesh.catalog import Catalog, default_catalog

    cat = Catalog(catalog or default_catalog(), create=False)
    views = (
        ("runs", cat.list_runs(), ("id", "job", "mode", "status", "started_at", "policy_version")),
        ("products", cat.list_products(), ("id", "domain", "latest", "runs")),
        ("contracts", cat.list_contracts(), ("id", "version", "product_id", "kind")),
    )
    for title, rows, cols in views:
        t = Table(title=f"{title} ({len(rows)})")
        for c in cols:  # never cut: catalog show takes an id as printed; the rest may fold
            whole = max((len(str(r.get(c))) for r in rows), default=0) if c == "id" else None
            t.add_column(c, overflow="fold", no_wrap=c == "id", min_width=whole)
        for r in rows:
            t.add_row(*(str(r.get(c) if r.get(c) is not None else "-") for c in cols))
        console.print(t)
    cat.close()


@catalog_app.command("show")
def catalog_show(
    ident: Annotated[str, typer.Argument(help="a run id (or prefix), a product or contract id")],
    catalog: CatalogOption = None,
) -> None:
    """One run with its metrics, products and lineage; or a product's versions; or a contract."""
    import json

    from splitmesh.mesh.catalog import Catalog, default_catalog

    cat = Catalog(catalog or default_catalog(), create=False)
    console.print_json(json.dumps(cat.show(ident), default=str))
    cat.close()


policy_app = typer.Typer(help="Federated governance policies.", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)
privacy_app = typer.Typer(
    help="Protections and the attacks that measure them.", no_args_is_help=True
)
app.add_typer(policy_app, name="policy")
app.add_typer(audit_app, name="audit")
app.add_typer(privacy_app, name="privacy")


@privacy_app.command("audit")
def privacy_audit(
    mesh: Annotated[Path, typer.Argument(help="the mesh file")],
    out: Annotated[Path, typer.Option(help="where privacy.json, .md and .png go")] = Path(
        "runs/privacy"
    ),
    protection: Annotated[
        list[str] | None,
        typer.Option(
            help="labels, gradients, embeddings, nopeek or secure_aggregation (repeat); "
            "default: those the mesh file sets, or every one the mesh can take"
        ),
    ] = None,
    sets: SetOption = None,
) -> None:
    """Train the mesh unprotected and with each protection at three strengths, attack what
    crossed the boundary each time, and report leakage against utility (keyed meshes and
    ranking meshes alike)."""
    from rich.table import Table

    from splitmesh.privacy.audit import KINDS, headline, privacy_audit

    for k in protection or []:
        if k not in KINDS:
            raise ConfigError(f"The 'protection' parameter must be one of {KINDS}. Got {k!r}.")
    spec = _mesh_spec(mesh, None, sets=sets)
    report = privacy_audit(spec, out, kinds=protection or None)
    t = Table(title=f"privacy audit: mesh {spec.name} ({spec.task}, {report['mode']})")
    cols = ("protection", "strength", "epsilon", "utility", "label AUC", "completion", "feature R²")
    for col in cols:
        t.add_column(col, justify="left" if col == "protection" else "right")
    for r in report["runs"]:
        r2 = r["attacks"]["feature_reconstruction_r2"]
        t.add_row(
            r["protection"],
            _fmt(r["strength"]),
            _fmt(r["epsilon"]),
            _fmt(headline(r, spec.task)),
            _fmt(r["attacks"]["label_inference_auc"]),
            _fmt(r["attacks"]["model_completion_auc"]),
            " ".join(f"{d} {_fmt(v)}" for d, v in r2.items()),
        )
    console.print(t)
    for name in ("privacy.json", "privacy.md", "privacy.png"):
        console.print(f"wrote {out / name}")


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


@policy_app.command("check")
def policy_check(
    policy: Annotated[Path, typer.Argument(help="the policy file (YAML)")],
    mesh: Annotated[Path, typer.Argument(help="the mesh file of the planned run")],
    sets: SetOption = None,
) -> None:
    """Say, rule by rule, whether the planned run is allowed; exit non-zero if not."""
    from rich.table import Table

    from splitmesh.mesh.policy import PolicyError, check_run, load_policy

    rules = load_policy(policy)
    decisions = check_run(rules, _mesh_spec(mesh, None, sets=sets).plan())
    t = Table(title=f"policy {rules.name} v{rules.version} (sha256 {rules.hash[:12]})")
    for col in ("rule", "decision", "reason"):
        t.add_column(col)
    for d in decisions:
        t.add_row(d.rule, "[green]allow[/green]" if d.allowed else "[red]refuse[/red]", d.reason)
    console.print(t)
    refused = [d for d in decisions if not d.allowed]
    if refused:
        raise PolicyError(refused[0].rule, refused[0].reason)


@audit_app.command("verify")
def audit_verify(
    log: Annotated[Path, typer.Argument(help="an audit log (*.jsonl)")],
    signer: Annotated[
        str | None,
        typer.Option(help="the SHA-256 (or a prefix) of the key that must have signed it"),
    ] = None,
) -> None:
    """Check the hash chain and its signed head; name the first edited, deleted,
    reordered or cut record, or a loss recorded when the log was reopened."""
    from splitmesh.mesh.audit import verify

    done = verify(log, signer=signer)
    who = f"signed by key sha256 {done['signer'][:16]}" if done["signer"] else "empty"
    tail = f"; {done['unsigned']} record(s) after the signed head" if done["unsigned"] else ""
    console.print(f"{log}: {done['records']} records, chain intact, {who}{tail}", highlight=False)


node_app = typer.Typer(help="Run a domain node.", no_args_is_help=True)
certs_app = typer.Typer(help="Certificates for mutual TLS.", no_args_is_help=True)
mesh_app = typer.Typer(help="A whole mesh on this machine.", no_args_is_help=True)
app.add_typer(node_app, name="node")
app.add_typer(certs_app, name="certs")
app.add_typer(mesh_app, name="mesh")


@node_app.command("serve")
def node_serve(
    config: Annotated[Path, typer.Option(help="the node file (YAML)")],
) -> None:
    """Serve one domain (or label-owner) node until stopped (Ctrl-C or SIGTERM)."""
    import signal
    import threading

    from splitmesh.node.config import load_node_config
    from splitmesh.node.serve import start_node

    server, line = start_node(load_node_config(config))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    console.print(line, soft_wrap=True, highlight=False)
    sys.stdout.flush()
    stop.wait()
    server.stop(grace=2.0)
    server.handler.close()  # the access log: every call it served, durable and signed
    from splitmesh.memory import peak_rss_mb

    console.print(f"node {server.name} stopped; peak RSS {peak_rss_mb():.0f} MB", highlight=False)
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything the node owns is written and closed: skip the interpreter's teardown of
    # torch and the data (most of a second per node, all of it spent freeing memory).
    os._exit(0)


@node_app.command("health")
def node_health(
    address: Annotated[str, typer.Argument(help="host:port of a node's plaintext health port")],
    timeout: Annotated[float, typer.Option(help="seconds to wait for SERVING")] = 5.0,
) -> None:
    """Exit 0 once the node's gRPC health service says SERVING (a container's health check)."""
    from splitmesh.transport.grpc import Endpoint, wait_serving

    wait_serving([Endpoint(address, address)], tls=None, timeout=timeout)
    console.print(f"{address}: SERVING", highlight=False)


@certs_app.command("init")
def certs_init(
    out: Annotated[Path, typer.Option(help="folder for ca.crt, <party>.crt/.key")],
    parties: Annotated[str, typer.Option(help="comma-separated party names")],
    hosts: Annotated[
        str, typer.Option(help="extra host names / IPs every certificate is valid for")
    ] = "localhost,127.0.0.1",
    days: int = 365,
    force: Annotated[bool, typer.Option(help="replace an existing CA")] = False,
) -> None:
    """Create a mesh CA and one certificate and key per party; print the fingerprints."""
    from splitmesh.transport.grpc import create_certificates

    names = [p.strip() for p in parties.split(",") if p.strip()]
    extra = tuple(h.strip() for h in hosts.split(",") if h.strip())
    prints = create_certificates(out, names, hosts=extra, days=days, force=force)
    for party, fp in prints.items():
        console.print(f"{party:<16} sha256 {fp}", highlight=False, soft_wrap=True)
    console.print(f"wrote {out}/ca.crt, one .crt and .key per party, fingerprints.json")


@mesh_app.command("up", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def mesh_up(
    ctx: typer.Context,
    usecase: Annotated[
        str, typer.Argument(help="the job to run on the mesh: fraud | recsys | train | predict")
    ],
    workdir: Annotated[
        Path, typer.Option(help="certificates, node files, node logs and node state")
    ] = Path("runs/mesh"),
    insecure: Annotated[
        bool, typer.Option(help="plaintext on loopback instead of mutual TLS")
    ] = False,
) -> None:
    """Start one node process per domain on 127.0.0.1 (fresh certificates), run the job
    (fraud, recsys, train MESH, predict MESH) over gRPC, stop the nodes. Options after the
    job name are the job's own."""
    if usecase not in ("fraud", "recsys", "train", "predict"):
        raise ConfigError(f"mesh up runs 'fraud', 'recsys', 'train' or 'predict'. Got {usecase!r}.")
    _mesh_up_job(usecase, list(ctx.args), Path(workdir), insecure)


@mesh_app.command("wait")
def mesh_wait(
    mesh: Annotated[Path, typer.Argument(help="a mesh file with its transport: network")],
    timeout: Annotated[float, typer.Option(help="seconds to wait for every node")] = 300.0,
) -> None:
    """Wait until every node of the mesh file's network serves (asked as the coordinator,
    over its mutual TLS): what a coordinator runs before it trains."""
    from splitmesh.mesh.spec import load_mesh
    from splitmesh.transport.grpc import wait_serving

    network = load_mesh(mesh).transport
    if network == "local":
        raise ConfigError(f"mesh file {mesh} has no transport: network to wait on")
    console.print(f"waiting for {len(network.nodes)} nodes (at most {timeout:g} s)")
    tls = network.tls.files() if network.tls is not None else None
    ready = wait_serving(network.endpoints(), tls=tls, timeout=timeout)
    for name, seconds in ready.items():
        console.print(f"{name}: serving after {seconds:.1f} s", highlight=False)


def _params(command: str, args: list[str]) -> dict:
    """A command's parameters as it would parse ``args`` (defaults filled in)."""
    import typer.main

    cmd = typer.main.get_command(app).commands[command]
    with cmd.make_context(command, list(args)) as ctx:
        return dict(ctx.params)


def _mesh_up_job(job: str, args: list[str], workdir: Path, insecure: bool) -> None:
    """``fraud``, ``recsys``, ``train`` or ``predict`` with one node process per domain;
    each node reads only its own domain's source and saves its part under the model folder."""
    import importlib
    import shutil
    import time

    from splitmesh.node.config import MeshRef, load_mesh_network
    from splitmesh.node.launcher import LocalMesh

    params = _params(job, args)
    if job in _PRESETS:
        spec, modes = _PRESETS[job](params)
        ref = (Path(params["out"]) / "mesh.yaml").resolve()
    else:
        spec, modes = _mesh_spec(params["mesh"], params["mode"], sets=params["sets"]), None
        ref = Path(params["mesh"]).resolve()
    nodes = {d: MeshRef(file=ref, domain=d) for d in spec.domain_names}
    models = params["model"] if job == "predict" else params["out"]
    policy = params.get("policy")
    local = LocalMesh(workdir, nodes, insecure=insecure, models=models, policy=policy)
    console.print(
        f"mesh up: starting {len(nodes)} domain nodes on 127.0.0.1 "
        f"({'plaintext' if insecure else 'mutual TLS'}), files in {workdir}",
        highlight=False,
    )
    started = time.perf_counter()
    # the coordinator loads its own modules while the nodes load theirs
    local.up(meanwhile=lambda: importlib.import_module("splitmesh.usecases.train"))
    console.print(f"mesh up: all nodes serving after {time.perf_counter() - started:.1f} s")
    try:
        network = load_mesh_network(local.mesh_file)
        spec = spec.model_copy(update={"transport": network})
        if job != "predict":
            _run(spec, modes, params)
        else:
            from splitmesh.usecases.train import predict_mesh

            done = predict_mesh(spec, params["model"], None)
            # this machine runs every node: hand the label node's output file to --out
            written = local.outputs(spec.label.domain) / done["file"]
            out = Path(params["out"])
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(written, out)
            console.print(f"scored {done['rows']} rows; wrote {out}", highlight=False)
    finally:
        local.down()


# the presets: their own options become mesh-file overrides (what _run passes on aside)
_PRESETS = {"fraud": _fraud_spec, "recsys": _recsys_spec}


deploy_app = typer.Typer(
    help="Run a mesh on a platform: one container per party.", no_args_is_help=True
)
app.add_typer(deploy_app, name="deploy")
ImageOption = Annotated[str, typer.Option(help="the image every party runs (deploy/Dockerfile)")]
DeployOutOption = Annotated[Path, typer.Option(help="folder for the rendered files")]
NodePolicyOption = Annotated[
    Path | None, typer.Option(help="the governance policy every node enforces (its own copy)")
]


ExtractOption = Annotated[
    str,
    typer.Option(
        help="shared: a domain whose folder another domain reads too gets its own table, "
        "extracted here by its own query into OUT/data/<domain>/ (a container never holds "
        "another domain's columns); all: every domain; none: mount the folders as they are"
    ),
]


def _deploy_layout(
    mesh: Path, out: Path, sets: list[str] | None, policy: Path | None, extract: str
):
    from splitmesh.deploy.layout import MeshLayout

    if extract not in ("shared", "all", "none"):
        raise ConfigError(f"The 'extract' parameter must be shared, all or none. Got {extract!r}.")
    layout = MeshLayout(mesh, sets=sets or [], policy=policy)
    shared = layout.shared_folders()
    if extract == "none":
        for name, others in shared.items():
            err.print(
                f"warning: domain {name!r}'s container will mount a folder that "
                f"{', '.join(others)} read(s) too: their columns are readable in it",
                soft_wrap=True,
            )
        return layout
    names = layout.domains if extract == "all" else list(shared)
    if names:
        console.print(f"extracting {', '.join(names)}: each its own table, read by its own query")
        layout.extract(out / "data", names)
        for name in names:
            console.print(f"  {name}: {layout.extracted[name]}", highlight=False)
    return layout


def _image() -> str:
    from splitmesh import __version__

    return f"splitmesh:{__version__}"


@deploy_app.command("kubernetes")
def deploy_kubernetes(
    mesh: Annotated[Path, typer.Argument(help="the mesh file (YAML)")],
    out: DeployOutOption,
    namespace: Annotated[str | None, typer.Option(help="default: splitmesh-<mesh name>")] = None,
    image: ImageOption = "",
    data: Annotated[
        str,
        typer.Option(
            help="claim: each domain's data from a PersistentVolumeClaim <domain>-data; "
            "host: from its folders on the cluster's node (a one-machine trial cluster)"
        ),
    ] = "claim",
    policy: NodePolicyOption = None,
    extract: ExtractOption = "shared",
    sets: SetOption = None,
) -> None:
    """Kubernetes manifests for any mesh: a StatefulSet, Service, Secret and NetworkPolicy
    per domain node, the coordinator as a Job; apply with `kubectl apply -k OUT`."""
    from splitmesh.deploy.kubernetes import KubernetesManifests

    if data not in ("claim", "host"):
        raise ConfigError(f"The 'data' parameter must be 'claim' or 'host'. Got {data!r}.")
    layout = _deploy_layout(mesh, out, sets, policy, extract)
    ns = namespace or _dns_label(f"splitmesh-{layout.spec.name}")
    manifests = KubernetesManifests(layout, namespace=ns, image=image or _image(), data=data)
    written = manifests.write(out)
    console.print(
        f"wrote {len(written)} files to {out} (namespace {ns}, {len(layout.domains)} nodes); "
        f"apply with: kubectl apply -k {out}",
        highlight=False,
    )


@deploy_app.command("compose")
def deploy_compose(
    mesh: Annotated[Path, typer.Argument(help="the mesh file (YAML)")],
    out: DeployOutOption,
    image: ImageOption = "",
    policy: NodePolicyOption = None,
    extract: ExtractOption = "shared",
    sets: SetOption = None,
) -> None:
    """A Docker Compose stack for any mesh: one container per party, each node mounting only
    its own data, health-checked; `docker compose up` in OUT trains."""
    from splitmesh.deploy.compose import ComposeStack

    layout = _deploy_layout(mesh, out, sets, policy, extract)
    written = ComposeStack(layout, image=image or _image()).write(out)
    console.print(
        f"wrote {len(written)} files to {out}; run with: cd {out} && docker compose up "
        "--build --abort-on-container-exit coordinator",
        highlight=False,
    )


def _dns_label(text: str) -> str:
    """``text`` as a Kubernetes name: lowercase letters, digits and '-', at most 63."""
    import re

    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:63].rstrip("-")


class _CtrlC(BaseException):
    """Raised by the SIGINT handler. Not an Exception, so no party (in process) turns it
    into an error reply; not KeyboardInterrupt, which typer turns into a silent exit."""


def _stop(signum, frame) -> None:
    raise _CtrlC("stopped by Ctrl-C")


def main() -> None:
    code = _main()
    if sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(code)  # a profiler or coverage writes its data at the interpreter's exit
    _leave(code)


def _main() -> int | str | None:
    """The command's exit status (what ``sys.exit`` would take)."""
    import signal

    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not if ignored
        signal.signal(signal.SIGINT, _stop)
    try:
        try:
            app()
        except _CtrlC:
            from splitmesh.errors import Stopped

            raise Stopped() from None
    except SplitmeshError as exc:
        # soft_wrap: never break an error line (paths, values) at the terminal's width
        err.print(f"[bold red]{type(exc).__name__}[/bold red]: {escape(str(exc))}", soft_wrap=True)
        if exc.hint:
            err.print(f"hint: {escape(exc.hint)}", soft_wrap=True)
        return exc.exit_code
    except SystemExit as exc:
        return exc.code
    return 0


def _leave(code: int | str | None) -> None:
    """Exit with ``code`` after the exit handlers (logging, multiprocessing, MLflow) ran,
    without the interpreter's teardown: with torch, grpc and the data loaded it spends
    1-2 s freeing memory the system takes back at once (measured on `mesh up train`).
    Every file the command writes is closed (and atomically replaced) before this."""
    import atexit
    import threading

    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)  # what sys.exit does with a message
        code = 1
    for thread in threading.enumerate():  # as the interpreter would: non-daemon threads end
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code or 0)


if __name__ == "__main__":
    main()
