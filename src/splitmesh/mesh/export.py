"""A trained bottom model as ONNX (with the product's facts as metadata) and its model card.

The ONNX graph takes the domain's *prepared* features (scaled numeric columns plus
was-missing flags as ``numeric``, category codes as ``categorical``; the preparation is in
the ``prep`` metadata entry and ``prep.json``) and returns the cut-layer ``embedding``.
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from splitmesh.io import atomic_write_bytes

OPSET = 17


class _Inputs(nn.Module):
    """Feeds ONNX only the inputs a domain has (a graph input may not be zero-wide)."""

    def __init__(self, bottom: nn.Module, n_numeric: int, n_categorical: int) -> None:
        super().__init__()
        self.bottom, self.n_numeric, self.n_categorical = bottom, n_numeric, n_categorical

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        num = xs[0] if self.n_numeric else None
        cat = xs[-1] if self.n_categorical else None
        n = (num if num is not None else cat).shape[0]
        if num is None:
            num = torch.zeros(n, 0)
        if cat is None:
            cat = torch.zeros(n, 0, dtype=torch.int64)
        return self.bottom(num, cat)


def input_names(n_numeric: int, n_categorical: int) -> list[str]:
    return [n for n, k in (("numeric", n_numeric), ("categorical", n_categorical)) if k]


def export_onnx(
    bottom: nn.Module, n_numeric: int, n_categorical: int, path: str | Path, metadata: dict
) -> Path:
    """Write ``bottom`` as ONNX with ``metadata`` (values JSON-encoded unless strings)."""
    import onnx

    model = _Inputs(bottom, n_numeric, n_categorical).eval()
    example = []
    if n_numeric:
        example.append(torch.zeros(2, n_numeric))
    if n_categorical:
        example.append(torch.zeros(2, n_categorical, dtype=torch.int64))
    names = input_names(n_numeric, n_categorical)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # the TorchScript exporter is enough for an MLP with embeddings and needs no onnxscript
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            tuple(example),
            buf,
            dynamo=False,
            input_names=names,
            output_names=["embedding"],
            dynamic_axes={n: {0: "batch"} for n in [*names, "embedding"]},
            opset_version=OPSET,
        )
    proto = onnx.load_from_string(buf.getvalue())
    proto.producer_name = "splitmesh"
    proto.doc_string = f"splitmesh bottom model of domain {metadata.get('domain', '?')!r}"
    for k, v in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v if isinstance(v, str) else json.dumps(v, sort_keys=True)
    onnx.checker.check_model(proto)
    atomic_write_bytes(path, proto.SerializeToString())
    return Path(path)


def onnx_metadata(path: str | Path) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def run_onnx(path: str | Path, numeric: np.ndarray, categorical: np.ndarray) -> np.ndarray:
    """The ONNX model's embeddings for prepared inputs, through onnxruntime."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {}
    for i in session.get_inputs():
        feeds[i.name] = (
            numeric.astype(np.float32) if i.name == "numeric" else categorical.astype(np.int64)
        )
    return session.run(["embedding"], feeds)[0]


def max_difference(
    path: str | Path, bottom: nn.Module, numeric: np.ndarray, categorical: np.ndarray
) -> float:
    """Largest absolute gap between the ONNX and the PyTorch embeddings of the same rows."""
    with torch.no_grad():
        want = bottom.eval()(
            torch.from_numpy(numeric.astype(np.float32)), torch.from_numpy(categorical)
        ).numpy()
    got = run_onnx(path, numeric, categorical)
    return float(np.abs(got - want).max()) if want.size else 0.0


def sha256_file(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def model_card(facts: dict, meta: dict, *, table, input_width: int, n_categorical: int) -> str:
    """A model card under the headings of Mitchell et al., "Model Cards for Model Reporting"
    (FAT* 2019)."""
    metrics = meta.get("metrics") or {}
    shown = {k: v for k, v in metrics.items() if isinstance(v, float)}
    rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in sorted(shown.items())) or "| - | - |"
    data = meta.get("data") or {}
    columns = table.features
    return f"""# Model card: {facts["domain"]} bottom model

## Model details
- Domain (owner): {facts["domain"]}; mesh: {facts["mesh"] or "-"}; run: `{facts["run_id"]}`
- Type: the bottom part of a split-learning network (split learning across the domains of a
  data mesh, splitmesh). It maps the domain's own columns to a cut-layer embedding
  of shape {facts["cut_layer_shape"]}; a coordinator's top model combines the embeddings of all
  domains. This part alone predicts nothing.
- Inputs: {input_width} prepared numeric value(s) (scaled, plus was-missing flags) and
  {n_categorical} category code(s), as `prep.json` / the `prep` metadata prepare them.
- Contracts: input `{facts["input_contract"]}`, output `{facts["output_contract"]}` (ODCS v3.1.0).
- Governance: policy version {facts["policy_version"] or "-"}, hash
  `{facts["policy_hash"][:16] or "-"}`.
- Files: `bottom.onnx` (sha256 `{facts.get("onnx_sha256", "")[:16]}`), `bottom.pt`, `prep.json`.

## Intended use
Scoring inside the same mesh, with the same parties, through `splitmesh predict`. Not for use
outside the mesh, and not as a feature extractor handed to third parties: its embeddings are
classified restricted.

## Factors
The entities the domains have in common (their keys' intersection, found by PSI). Groups of
entities under-represented in the intersection may be served worse; this run did not measure
performance per group.

## Metrics
The task's metrics on a held-out test split of the aligned rows, for the whole split model
(this part is not evaluated alone); the threshold, where there is one, was chosen on
validation rows.

## Evaluation data
A stratified (classification) or random (regression) test split of the aligned rows, never
used for training, scaling or model selection.

## Training data
Domain {facts["domain"]!r}: {data.get("rows", "?")} row(s), columns {columns}; table sha256
`{facts["training_data_sha256"][:16] or "-"}`. Preparation (scaling, vocabularies) was fitted
on training rows only.

## Quantitative analyses
| metric (test) | value |
|---|---|
{rows}

## Ethical considerations
Embeddings can leak information about the inputs (model inversion, attribute inference).
They are shared only with the run's coordinator over mutual TLS; the governance policy decides
who takes part and which columns may be used. Protection of the released embeddings:
{facts.get("embedding_protection", "none")} (`splitmesh privacy audit` measures what leaks).

## Caveats and recommendations
Retrain when the input contract changes version. Check new data against `input.odcs.yaml`
before scoring (splitmesh does this at every run).
"""
