"""OpenLineage run events (START, COMPLETE, FAIL) through the ``openlineage-python`` client,
written as JSON lines by its file transport: the domains' datasets are the inputs, the
published model products the outputs."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

NAMESPACE = "splitmesh"
PRODUCER = "https://github.com/splitmesh/splitmesh"


def dataset(namespace: str, name: str, fields: list[tuple[str, str]] = ()) -> dict:
    return {"namespace": namespace, "name": name, "fields": list(fields)}


class Lineage:
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
        from openlineage.client.facet_v2 import error_message_run, schema_dataset

        def facets(d: dict) -> dict:
            if not d.get("fields"):
                return {}
            fields = [
                schema_dataset.SchemaDatasetFacetFields(name=n, type=t) for n, t in d["fields"]
            ]
            return {"schema": schema_dataset.SchemaDatasetFacet(fields=fields)}

        run_facets = {}
        if error:
            run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=error, programmingLanguage="python"
            )
        event = ev.RunEvent(
            eventType=getattr(ev.RunState, state),
            eventTime=dt.datetime.now(dt.UTC).isoformat(),
            run=ev.Run(runId=run_id, facets=run_facets),
            job=ev.Job(namespace=self.namespace, name=job),
            producer=PRODUCER,
            inputs=[ev.InputDataset(d["namespace"], d["name"], facets=facets(d)) for d in inputs],
            outputs=[
                ev.OutputDataset(d["namespace"], d["name"], facets=facets(d)) for d in outputs
            ],
        )
        self.client.emit(event)
