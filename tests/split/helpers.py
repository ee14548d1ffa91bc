"""Small split setups shared by the split tests."""

import numpy as np

from splitmesh.config import Model, Optim, Resample
from splitmesh.split.centralized import CentralizedLearner
from splitmesh.split.columns import ColumnsParty
from splitmesh.split.coordinator import Coordinator
from splitmesh.split.label_owner import LabelOwner
from splitmesh.transport.local import LocalTransport

NO_RESAMPLING = Resample()


def toy_tables(n=400, widths=(3, 4, 2), seed=0):
    rng = np.random.default_rng(seed)
    tables = {f"d{i}": rng.normal(size=(n, w)) * (i + 1) + i for i, w in enumerate(widths)}
    signal = sum(t[:, 0] for t in tables.values())
    y = (signal + rng.normal(scale=0.5, size=n) > np.median(signal)).astype(int)
    return tables, y


def make_pair(mode, tables, y, *, spec=None, optim=None, seed=0, resample=NO_RESAMPLING):
    spec = spec or Model(bottom=(8, 4), top=(6,))
    optim = optim or Optim()
    parties = {
        d: ColumnsParty(d, t, [f"{d}_{j}" for j in range(t.shape[1])]) for d, t in tables.items()
    }
    parties["labels"] = LabelOwner("labels", y, mode)
    transport = LocalTransport(parties)
    coord = Coordinator(
        transport, list(tables), "labels", mode=mode, spec=spec, optim=optim, seed=seed
    )
    central = CentralizedLearner(tables, y, spec=spec, optim=optim, seed=seed)
    for learner in (coord, central):
        learner.prepare(test=0.25, validation=0.25, resample=resample)
        learner.build()
    return coord, central, transport


def _params(module):
    return {n: p.detach().numpy().copy() for n, p in module.named_parameters()}


def split_params(coord, transport):
    """Every parameter of the split network, named as in the centralized SplitNetwork, read
    from the parties of this process (no message hands out weights)."""
    coord.flush()  # gradients owed to domains ride on the next Forward otherwise
    parties = transport._handlers
    out = {}
    for d in coord.domains:
        for name, value in _params(parties[d].bottom_).items():
            out[f"bottoms.{d}.{name}"] = value
    out.update({f"top.{k}": v for k, v in _params(coord.top_).items()})
    head = coord.head_ if coord.mode == "label-sharing" else parties["labels"].head_.head
    out.update({f"head.{k}": v for k, v in _params(head).items()})
    return out


def central_params(central):
    return {n: p.detach().numpy().copy() for n, p in central.net_.named_parameters()}
