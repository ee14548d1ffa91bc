"""OpenLineage run events (START, COMPLETE, FAIL) through the ``openlineage-python`` client:
the domains' datasets are the inputs, the published model products the outputs.

Every run writes its events as JSON lines beside its results (the run's own record), and
also sends them wherever the client's standard configuration points: ``openlineage.yml``
(``OPENLINEAGE_CONFIG``, the working folder, ``~/.openlineage/``), ``OPENLINEAGE__TRANSPORT__*``
variables, or ``OPENLINEAGE_URL`` (HTTP, e.g. Marquez). A lineage server that is down does
not stop a run: the failure is logged and the file still holds the event.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from pathlib import Path

from splitmesh.errors import TrackingError

NAMESPACE = "splitmesh"
PRODUCER = "https://github.com/splitmesh/splitmesh"

log = logging.getLogger("splitmesh.lineage")


def dataset(namespace: str, name: str, fields: list[tuple[str, str]] = ()) -> dict:
    return {"namespace": namespace, "name": name, "fields": list(fields)}


def file_dataset(location: str, fields: list[tuple[str, str]] = ()) -> dict:
    """A file as OpenLineage names it: ``file`` and its absolute path, or a remote object's
    scheme and bucket (``s3://bucket``) and its key."""
    if "://" in location:
        scheme, rest = location.split("://", 1)
        bucket, _, key = rest.partition("/")
        return dataset(f"{scheme}://{bucket}", key or "/", fields)
    return dataset("file", location, fields)


def standard_config() -> bool:
    """Whether the user configured an OpenLineage transport the client's standard way."""
    if os.environ.get("OPENLINEAGE_CONFIG") or os.environ.get("OPENLINEAGE_URL"):
        return True
    if any(k.startswith("OPENLINEAGE__TRANSPORT") for k in os.environ):
        return True
    places = (Path.cwd() / "openlineage.yml", Path.home() / ".openlineage" / "openlineage.yml")
    return any(p.is_file() for p in places)


class Lineage:
    """Events to ``path`` (JSON lines) and to the configured transport, if any."""

    def __init__(self, path: str | Path, *, namespace: str = NAMESPACE) -> None:
        from openlineage.client import OpenLineageClient
        from openlineage.client.transport.file import FileConfig, FileTransport

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.namespace = namespace
        # the client logs its transport choice at INFO; our terminal output is a table
        logging.getLogger("openlineage").setLevel(logging.WARNING)
        transport = FileTransport(FileConfig(log_file_path=str(self.path), append=True))
        self.client = OpenLineageClient(transport=transport)
        self.remote = None
        if standard_config():
            try:
                self.remote = OpenLineageClient()
            except Exception as exc:  # a malformed openlineage.yml: say so before the run
                raise TrackingError(
                    f"the OpenLineage configuration cannot be used: {exc}",
                    hint="check openlineage.yml (OPENLINEAGE_CONFIG) or OPENLINEAGE_URL; "
                    "unset them to write lineage to the run's file only",
                ) from exc
        self.failures: list[str] = []

    @property
    def transport(self) -> str | None:
        """The configured transport's kind (http, kafka, file, ...), or None."""
        return None if self.remote is None else getattr(self.remote.transport, "kind", "custom")

    def emit(
        self,
        state: str,
        run_id: str,
        job: str,
        *,
        inputs: list[dict] = (),
        outputs: list[dict] = (),
        error: str | None = None,
    ) -> None:
        """One run event; ``state`` START, COMPLETE or FAIL; ``run_id`` a UUID."""
        from openlineage.client import event_v2 as ev
        from openlineage.client.facet_v2 import (
            error_message_run,
            job_type_job,
            processing_engine_run,
            schema_dataset,
        )

        from splitmesh import __version__

        def facets(d: dict) -> dict:
            if not d.get("fields"):
                return {}
            fields = [
                schema_dataset.SchemaDatasetFacetFields(name=n, type=t) for n, t in d["fields"]
            ]
            return {"schema": schema_dataset.SchemaDatasetFacet(fields=fields)}

        run_facets: dict = {
            "processing_engine": processing_engine_run.ProcessingEngineRunFacet(
                version=__version__, name="splitmesh"
            )
        }
        if error:
            run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=error, programmingLanguage="python"
            )
        job_facets = {
            "jobType": job_type_job.JobTypeJobFacet(
                processingType="BATCH", integration="SPLITMESH", jobType="TRAINING"
            )
        }
        event = ev.RunEvent(
            eventType=getattr(ev.RunState, state),
            eventTime=dt.datetime.now(dt.UTC).isoformat(),
            run=ev.Run(runId=run_id, facets=run_facets),
            job=ev.Job(namespace=self.namespace, name=job, facets=job_facets),
            producer=PRODUCER,
            inputs=[ev.InputDataset(d["namespace"], d["name"], facets=facets(d)) for d in inputs],
            outputs=[
                ev.OutputDataset(d["namespace"], d["name"], facets=facets(d)) for d in outputs
            ],
        )
        self.client.emit(event)
        if self.remote is not None:
            try:
                self.remote.emit(event)
            except Exception as exc:  # the lineage server's trouble is not the run's
                self.failures.append(f"{state}: {exc}")
                log.warning(
                    "OpenLineage %s event not delivered (%s): kept in %s", state, exc, self.path
                )
