"""The optimizers every party steps: torch's own kernels, without torch.optim's wrappers.

``torch.optim.Adam(fused=True)`` runs one fused kernel per step, but its Python layer
imports ``torch._dynamo`` on first use (0.8 s of CPU in every process: each node and the
coordinator) and wraps every step in graph-break and profiling hooks that cost more than
the kernel on our small models. These classes call the same kernels in the same order
(``torch._fused_adam_``; ``torch._foreach_add`` for SGD), so the arithmetic is bit for bit
torch's (tests/nn/test_optim.py), and keep torch's ``state_dict`` layout, so checkpoints
move between the two.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import torch


class Optimizer:
    """One parameter group; the ``state_dict`` layout of ``torch.optim.Optimizer``."""

    def __init__(self, params: Iterable[torch.nn.Parameter], **group: Any) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("optimizer got an empty parameter list")
        self.group = group
        self.state: dict[int, dict[str, Any]] = {}

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [{**self.group, "params": self.params}]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.detach_().zero_()

    def _with_grads(self) -> list[int]:
        return [i for i, p in enumerate(self.params) if p.grad is not None]

    def state_dict(self) -> dict[str, Any]:
        group = {**self.group, "params": list(range(len(self.params)))}
        return {"state": {i: dict(s) for i, s in self.state.items()}, "param_groups": [group]}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        groups = saved.get("param_groups", [])
        if len(groups) != 1 or len(groups[0].get("params", [])) != len(self.params):
            raise ValueError(
                f"optimizer state is for {[len(g.get('params', [])) for g in groups]} "
                f"parameters in {len(groups)} group(s); this optimizer has {len(self.params)} "
                "in one"
            )
        order = groups[0]["params"]  # saved ids, in the order of this optimizer's params
        for k in self.group:
            if k in groups[0]:
                self.group[k] = groups[0][k]
        self.state = {}
        for i, pid in enumerate(order):
            s = saved["state"].get(pid)
            if s:
                p = self.params[i]
                self.state[i] = {  # copies: the saved dict may be another optimizer's live one
                    k: _copy(v, p, k) for k, v in s.items()
                }


@dataclasses.dataclass
class _Plan:
    """What a step of Adam hands the fused kernel while the same parameters step (every
    step of a run but for pre-training phases), built once. Rebuilding the lists each
    step and counting steps as a list of scalar tensors (torch's foreach falls back to
    one op per scalar tensor) cost more than the kernel: a step of a six-parameter bottom
    took 83 us, 50 us with the plan. The step counts live in one buffer, each state's
    "step" a view of one element, so counting is one add."""

    idx: list[int]  # the parameters' positions
    groups: list[tuple[list[torch.Tensor], ...]]  # per device and dtype: kernel arguments
    counts: torch.Tensor | None  # the step counts' buffer; None across devices


class Adam(Optimizer):
    """Adam with L2 weight decay added to the gradient, as ``torch.optim.Adam(fused=True)``."""

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(
            params,
            lr=lr,
            betas=tuple(betas),
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=False,
            maximize=False,
            foreach=None,
            capturable=False,
            differentiable=False,
            fused=True,
            decoupled_weight_decay=False,
        )
        self._plan: _Plan | None = None

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        super().load_state_dict(saved)
        self._plan = None  # it holds the state tensors that loading replaced

    @torch.no_grad()
    def step(self) -> None:
        sparse, idx = _split_sparse(self.params, self._with_grads())
        if sparse:
            self._lazy_step(sparse)
        if not idx:
            return
        plan = self._plan
        if plan is None or plan.idx != idx:
            plan = self._plan = self._new_plan(idx)
        if plan.counts is not None:
            plan.counts.add_(1)
        else:  # parameters on several devices: each group's counts where they live
            for *_, steps in plan.groups:
                torch._foreach_add_(steps, 1)
        g = self.group
        beta1, beta2 = g["betas"]
        for params, exp_avgs, exp_avg_sqs, steps in plan.groups:
            torch._fused_adam_(
                params,
                [p.grad for p in params],
                exp_avgs,
                exp_avg_sqs,
                [],
                steps,
                amsgrad=False,
                lr=g["lr"],
                beta1=beta1,
                beta2=beta2,
                weight_decay=g["weight_decay"],
                eps=g["eps"],
                maximize=False,
                grad_scale=None,
                found_inf=None,
            )

    def _new_plan(self, idx: list[int]) -> _Plan:
        """The kernel's arguments for the parameters at ``idx`` (states made if new)."""
        for i in idx:
            if i not in self.state:
                p = self.params[i]
                self.state[i] = {
                    "step": torch.zeros((), dtype=torch.float32, device=p.device),
                    "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                    "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
                }
        steps = [self.state[i]["step"] for i in idx]
        counts = None
        if len({(t.device, t.dtype) for t in steps}) == 1:
            counts = torch.stack(steps)  # the same counts, now one element each of one buffer
            for k, i in enumerate(idx):
                self.state[i]["step"] = counts[k]
        groups = []
        for part in _by_device_and_dtype(self.params, idx):
            states = [self.state[i] for i in part]
            groups.append(
                (
                    [self.params[i] for i in part],
                    [s["exp_avg"] for s in states],
                    [s["exp_avg_sq"] for s in states],
                    [s["step"] for s in states],
                )
            )
        return _Plan(idx, groups, counts)

    def _lazy_step(self, idx: list[int]) -> None:
        """Adam on the rows a sparse gradient names, as ``torch.optim.SparseAdam``: a
        large id table's other rows (and their moments) stay as they are, so a step costs
        the batch's rows, not the table's."""
        g = self.group
        beta1, beta2 = g["betas"]
        for i in idx:
            p = self.params[i]
            rows, values = _sparse_rows(p, g["weight_decay"])
            s = self.state.get(i)
            if s is None:
                s = self.state[i] = {
                    "step": torch.zeros((), dtype=torch.float32, device=p.device),
                    "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                    "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
                }
            s["step"] += 1
            step = float(s["step"])
            m = s["exp_avg"][rows].mul_(beta1).add_(values, alpha=1 - beta1)
            v = s["exp_avg_sq"][rows].mul_(beta2).addcmul_(values, values, value=1 - beta2)
            s["exp_avg"][rows], s["exp_avg_sq"][rows] = m, v
            size = g["lr"] * (1 - beta2**step) ** 0.5 / (1 - beta1**step)
            p.index_add_(0, rows, m.div_(v.sqrt_().add_(g["eps"])), alpha=-size)


class SGD(Optimizer):
    """Plain SGD (no momentum) with L2 weight decay, as ``torch.optim.SGD(foreach=True)``."""

    def __init__(
        self, params: Iterable[torch.nn.Parameter], lr: float = 1e-3, weight_decay: float = 0.0
    ) -> None:
        super().__init__(
            params,
            lr=lr,
            momentum=0,
            dampening=0,
            weight_decay=weight_decay,
            nesterov=False,
            maximize=False,
            foreach=True,
            differentiable=False,
            fused=None,
        )

    @torch.no_grad()
    def step(self) -> None:
        sparse, idx = _split_sparse(self.params, self._with_grads())
        for i in sparse:
            rows, values = _sparse_rows(self.params[i], self.group["weight_decay"])
            self.params[i].index_add_(0, rows, values, alpha=-self.group["lr"])
        for part in _by_device_and_dtype(self.params, idx):
            params = [self.params[i] for i in part]
            grads = [p.grad for p in params]
            if self.group["weight_decay"] != 0:
                grads = torch._foreach_add(grads, params, alpha=self.group["weight_decay"])
            torch._foreach_add_(params, grads, alpha=-self.group["lr"])


def _split_sparse(params: list[torch.Tensor], idx: list[int]) -> tuple[list[int], list[int]]:
    """Positions whose gradient is sparse (a large id table's), and the others."""
    sparse = [i for i in idx if params[i].grad.is_sparse]
    return sparse, [i for i in idx if not params[i].grad.is_sparse]


def _sparse_rows(p: torch.Tensor, weight_decay: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows a sparse gradient names and its values there, L2 decay added on them."""
    grad = p.grad.coalesce()
    rows, values = grad.indices()[0], grad.values()
    if weight_decay != 0:
        values = values.add(p[rows], alpha=weight_decay)
    return rows, values


def _copy(v: Any, p: torch.Tensor, key: str) -> Any:
    if not isinstance(v, torch.Tensor):
        return v
    dtype = torch.float32 if key == "step" else p.dtype
    return v.to(device=p.device, dtype=dtype, copy=True)


def _by_device_and_dtype(params: list[torch.Tensor], idx: list[int]) -> list[list[int]]:
    """Positions grouped as torch groups them for one kernel call each (order kept)."""
    groups: dict[tuple, list[int]] = {}
    for i in idx:
        groups.setdefault((params[i].device, params[i].dtype), []).append(i)
    return list(groups.values())
