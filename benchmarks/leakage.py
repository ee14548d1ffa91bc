"""What the gradients of a label-preserving run reveal about the labels, measured.

Trains the credit mesh (the real fraud subset in ../shared/data cut into three domains,
else synthetic rows of the same schema) in label-preserving mode, in process, recording
every message as it would cross the wire. Then it runs the spectral/sign attack of Li et
al. (2021) from two seats: the coordinator (the gradient the label owner returns for the
top model's output) and each domain (the gradient it receives for its embedding). For
binary cross-entropy the per-example gradient is (sigmoid(z) - y) times one direction per
step, so within a batch the sign of each row's projection on the batch's first singular
vector splits the classes; the larger side is taken as the majority class. Prints a table
and writes ``leakage.json``: the attack's ROC-AUC against the true labels.

    python benchmarks/leakage.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def spectral_scores(grads: np.ndarray) -> np.ndarray:
    """Each row's projection on the batch's first right-singular vector, oriented so the
    larger side (the majority class, taken as negative) scores low."""
    centered = grads - grads.mean(axis=0)
    _, _, vt = np.linalg.svd(centered, full_matrices=False)
    s = grads @ vt[0]
    return s if (s > 0).sum() <= (s < 0).sum() else -s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    from rich.console import Console
    from rich.table import Table
    from sklearn.metrics import roc_auc_score

    from splitmesh.data.datasets.creditcard import DOMAINS
    from splitmesh.data.datasets.vertical import write_vertical_mesh
    from splitmesh.mesh.spec import load_mesh
    from splitmesh.transport.local import LocalTransport
    from splitmesh.transport.messages import Forward, Head, HeadReply
    from splitmesh.usecases import train as train_case
    from tests.security.conftest import credit_frame

    seen: list = []

    class Recording(LocalTransport):
        def request(self, party, msg):
            reply = super().request(party, msg)
            seen.append((party, msg, reply))
            return reply

    with tempfile.TemporaryDirectory() as tmp:
        mesh = write_vertical_mesh(
            credit_frame(), DOMAINS, label="Class", label_domain="payments",
            folder=Path(tmp) / "mesh", string_keys=True,
            extra={"training": {"epochs": args.epochs, "batch_size": 64, "patience": None}},
        )  # fmt: skip
        spec = load_mesh(mesh)
        original = train_case.LocalTransport
        train_case.LocalTransport = Recording
        try:
            transport = train_case._transport(spec, spec.mode, None, False)
        finally:
            train_case.LocalTransport = original
        coord = train_case.coordinator(spec, transport, spec.mode, None)
        coord.prepare(test=0.2, validation=0.1, resample=spec.resample)
        coord.build()
        train_case.fit(coord, spec.training, progress=False)
        labels = transport._handlers[spec.label.domain].party.side._y["train"]

    # the coordinator's seat: HeadReply.grad for each training Head
    coordinator_rows, domain_rows = [], {d: [] for d in DOMAINS}
    for _, msg, reply in seen:
        if isinstance(msg, Head) and msg.train and isinstance(reply, HeadReply):
            coordinator_rows.append((spectral_scores(reply.grad), labels[msg.positions]))
    # each domain's seat: the gradient riding on its next Forward, for the step it names
    positions = {}
    for party, msg, _ in seen:
        if isinstance(msg, Forward) and msg.train:
            positions[(party, msg.step)] = msg.positions
            if msg.grad is not None and (party, msg.grad_step) in positions:
                pos = positions[(party, msg.grad_step)]
                domain_rows[party].append((spectral_scores(msg.grad), labels[pos]))

    def auc(rows):
        s = np.concatenate([r[0] for r in rows])
        y = np.concatenate([r[1] for r in rows])
        return float(roc_auc_score(y, s)), len(y), float(1 - y.mean())

    results = {"coordinator": auc(coordinator_rows)}
    results.update({f"domain {d}": auc(r) for d, r in domain_rows.items() if r})
    table = Table(title="Label inference from gradients, label-preserving, no protection")
    for col in ("seat", "attack ROC-AUC", "examples", "majority share"):
        table.add_column(col)
    for seat, (a, n, maj) in results.items():
        table.add_row(seat, f"{a:.4f}", str(n), f"{maj:.3f}")
    Console().print(table)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        out = {
            s: {"roc_auc": a, "examples": n, "majority_share": m}
            for s, (a, n, m) in results.items()
        }
        (args.out / "leakage.json").write_text(json.dumps({"epochs": args.epochs, **out}, indent=2))
        print(f"wrote {args.out / 'leakage.json'}")


if __name__ == "__main__":
    main()
