"""MLflow: each run of a mesh as an MLflow run, its composite model and its domains' bottoms
in the model registry (the optional extra ``splitmesh[mlflow]``).

What goes there is what the run already wrote: the settings as parameters, every test and
validation metric, the training loss and the validation metric per epoch (steps), the
report, results and figures, and each data product the run published (ONNX, contracts,
model card) where this process can read it (in process; over gRPC every node keeps its own
part on its own disk, and the registry records the product's id, version and ONNX hash).

The registry holds, per mesh, ``<mesh>-<domain>-bottom`` (one version per run, tagged with
its contracts and ONNX hash) and ``<mesh>-<mode>`` (the composite: the coordinator's part,
tagged with the bottom versions it was trained with).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from splitmesh.errors import ConfigError, TrackingError

TRACKING_ENV = "MLFLOW_TRACKING_URI"


def tracking_uri(given: str | None) -> str | None:
    """``--mlflow URI``, else ``$MLFLOW_TRACKING_URI``, else None (no MLflow)."""
    return given or os.environ.get(TRACKING_ENV) or None


def check_available(uri: str | None = None) -> None:
    """Refuse before training, not after: MLflow asked for but not installed, or a tracking
    server that does not answer its health check."""
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise ConfigError(
            "MLflow tracking was asked for (--mlflow or MLFLOW_TRACKING_URI) but mlflow is "
            "not installed",
            hint="pip install 'splitmesh[mlflow]'",
        ) from None
    if uri is not None and uri.startswith(("http://", "https://")):
        import requests

        try:
            requests.get(f"{uri.rstrip('/')}/health", timeout=5).raise_for_status()
        except requests.RequestException as exc:
            raise TrackingError(
                f"the MLflow server at {uri} does not answer ({exc})",
                hint="start it, or point --mlflow / MLFLOW_TRACKING_URI at one that runs",
            ) from None


def _flat(prefix: str, value: Any, out: dict[str, str]) -> dict[str, str]:
    """Nested settings as MLflow parameters: ``training.lr`` -> ``0.003``."""
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif value is not None:
        out[prefix] = str(value)[:500]  # MLflow's limit on a parameter value
    return out


def _scalars(prefix: str, metrics: dict) -> dict[str, float]:
    safe = lambda k: k.replace("@", "_at_")  # noqa: E731 (MLflow's metric names)
    return {
        f"{prefix}{safe(k)}": float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def log_results(results: dict, out: str | Path, uri: str) -> dict[str, Any]:
    """Log every run of ``results`` (what ``train`` wrote under ``out``) to the MLflow
    tracking server or store at ``uri``; returns the run ids and registered versions.
    A store that refuses or cannot be reached is a TrackingError: the results stay on disk."""
    try:
        return _log_results(results, out, uri)
    except Exception as exc:
        raise _failed(uri, out, exc) from exc


def _open(results: dict, uri: str) -> tuple[Any, Any, str, dict[str, str]]:
    """(mlflow, its client, the mesh's experiment id, the settings as parameters)."""
    import mlflow
    from mlflow import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    experiment = _experiment(client, f"splitmesh/{results['mesh']}", uri)
    params = _flat("", {k: v for k, v in results["config"].items() if k != "domains"}, {})
    params["domains"] = ",".join(d["name"] for d in results["config"]["domains"])
    return mlflow, client, experiment, params


def _failed(uri: str, out: str | Path, exc: Exception) -> TrackingError:
    return TrackingError(
        f"MLflow at {uri} did not take the run: {type(exc).__name__}: {exc}",
        hint=f"the results are in {out}; the same command with --resume logs them again "
        "without training",
    )


def log_sweep(results: dict, out: str | Path, uri: str) -> dict[str, Any]:
    """A domains sweep (usecases/sweep.py) as one MLflow run, ``domains-sweep``: each domain
    set's mean and standard deviation of the selection metric and what each added domain
    changes, per mode, with the sweep's files; under it one nested run per trained run
    (its domains, seed, mode and test metrics). Nothing is registered: a sweep explores."""
    try:
        return _log_sweep(results, Path(out), uri)
    except Exception as exc:
        raise _failed(uri, out, exc) from exc


def _log_sweep(results: dict, out: Path, uri: str) -> dict[str, Any]:
    mlflow, _, experiment, params = _open(results, uri)
    metric = results["metric"].replace("@", "_at_")
    summary: dict[str, float] = {}
    for mode, s in results["summary"].items():
        for row in s["sets"]:
            where = f"{mode}/{len(row['domains'])}_domains"
            summary[f"{where}/mean_{metric}"] = row["mean"]
            if row["std"] is not None:
                summary[f"{where}/std_{metric}"] = row["std"]
        for add in s["adds"]:
            summary[f"{mode}/add_{add['domain']}/delta_{metric}"] = add["delta"]
    tags = {"splitmesh.mesh": results["mesh"], "splitmesh.experiment": "domains-sweep"}
    with mlflow.start_run(experiment_id=experiment, run_name="domains-sweep", tags=tags) as top:
        mlflow.log_params({**params, "sweep.seeds": ",".join(map(str, results["seeds"]))})
        mlflow.log_metrics(summary)
        for path in (out / "results.json", out / "report.md", *out.glob("*.png")):
            if path.is_file():
                mlflow.log_artifact(str(path))
        children = []
        for run in results["runs"]:
            name = f"{run['mode']} {'+'.join(run['domains'])} seed {run['seed']}"
            with mlflow.start_run(
                experiment_id=experiment, run_name=name, nested=True, tags=tags
            ) as child:
                mlflow.log_params(
                    {"mode": run["mode"], "domains": ",".join(run["domains"]), "seed": run["seed"]}
                )
                mlflow.log_metrics(_scalars("test_", run["metrics"]))
                children.append(child.info.run_id)
    return {"experiment": experiment, "run": top.info.run_id, "children": children}


def _log_results(results: dict, out: str | Path, uri: str) -> dict[str, Any]:
    mlflow, client, experiment, params = _open(results, uri)
    out = Path(out)
    mesh = results["mesh"]
    logged: dict[str, Any] = {"experiment": experiment, "runs": {}, "registered": {}}
    shared = [out / "results.json", out / "report.md"]
    for run in results["runs"]:
        mode = run["mode"]
        tags = {
            "splitmesh.mesh": mesh,
            "splitmesh.mode": mode,
            "splitmesh.transport": run.get("transport", ""),
            "splitmesh.run_uuid": run.get("run_uuid", ""),
            "splitmesh.run_id": run.get("run_id") or "",
        }
        with mlflow.start_run(experiment_id=experiment, run_name=mode, tags=tags) as active:
            rid = active.info.run_id
            mlflow.log_params(params)
            mlflow.log_metrics(
                {
                    **_scalars("test_", run["metrics"]),
                    **_scalars("val_", run.get("validation_metrics", {})),
                    "seconds_per_epoch": float(run.get("seconds_per_epoch", 0.0)),
                    "epochs_run": float(run.get("epochs_run", 0)),
                    "best_epoch": float(run.get("best_epoch", 0)),
                }
            )
            curve = run.get("validation_curve") or {}
            for step, loss in enumerate(run.get("losses", []), start=1):
                mlflow.log_metric("train_loss", loss, step=step)
            for step, v in enumerate(curve.get("values", []), start=1):
                mlflow.log_metric(f"val_curve_{curve['metric']}", v, step=step)
            for path in shared:
                if path.is_file():
                    mlflow.log_artifact(str(path))
            figure = out / "plots" / f"{mode}.png"
            if figure.is_file():
                mlflow.log_artifact(str(figure), "plots")
            bottoms = _log_products(client, rid, mesh, run)
            composite = out / ("centralized" if mode == "centralized" else "coordinator")
            if composite.is_dir():
                mlflow.log_artifacts(str(composite), "model")
            logged["runs"][mode] = rid
        if mode != "centralized":
            name = f"{mesh}-{mode}"
            version = _register(
                client, name, rid, "model",
                {**tags, **{f"bottom.{d}": v for d, v in bottoms.items()}},
                f"The composite model of mesh {mesh!r} ({mode}): the coordinator's part, "
                "trained with the bottom versions its tags name.",
            )  # fmt: skip
            logged["registered"][name] = version
        logged["registered"].update(bottoms)
    return logged


def _experiment(client, name: str, uri: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if uri.startswith("sqlite:///"):  # artifacts beside the database, not in the cwd
        db = Path(uri.removeprefix("sqlite:///"))
        location = (db.parent / "mlartifacts").resolve().as_uri()
    return client.create_experiment(name, artifact_location=location)


def _log_products(client, rid: str, mesh: str, run: dict) -> dict[str, str]:
    """Each domain product of the run as artifacts (where readable) and a registered
    version of ``<mesh>-<domain>-bottom``; returns ``{registered name: version}``."""
    out = {}
    for p in run.get("products", []):
        folder = Path(p.get("folder", ""))
        here = folder.is_dir()
        if here:
            client.log_artifacts(rid, str(folder), f"products/{p['domain']}")
        tags = {
            "splitmesh.product": p["id"],
            "splitmesh.product_version": str(p["version"]),
            "splitmesh.onnx_sha256": p.get("onnx_sha256", ""),
            "splitmesh.input_contract": "@".join(map(str, p.get("input_contract", []))),
            "splitmesh.output_contract": "@".join(map(str, p.get("output_contract", []))),
            "splitmesh.folder": str(folder),
        }
        name = f"{mesh}-{p['domain']}-bottom"
        source = f"products/{p['domain']}" if here else None
        description = (
            f"Domain {p['domain']!r}'s bottom model (data product {p['id']}): ONNX, its "
            "input and embedding contracts and its model card."
        )
        out[name] = _register(client, name, rid, source, tags, description)
    return out


def _register(client, name: str, rid: str, artifacts: str | None, tags: dict, about: str) -> str:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name, description=about)
    except MlflowException as exc:  # registered by an earlier run: a new version of it
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    source = f"runs:/{rid}/{artifacts}" if artifacts else f"runs:/{rid}"
    tags = {k: v for k, v in tags.items() if v}
    version = client.create_model_version(name, source, run_id=rid, tags=tags)
    return str(version.version)
