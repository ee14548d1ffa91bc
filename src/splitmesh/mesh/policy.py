"""The federated governance policy: who may take part, with which columns, how labels are
placed, what the wire must be. The coordinator checks a planned run against it, and every
node holds its own copy and refuses what it forbids. A refusal names the rule.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from splitmesh.errors import PolicyError
from splitmesh.yaml_files import load_yaml_model

__all__ = ["Decision", "Policy", "PolicyError", "PolicyGuard", "check_run", "enforce"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Participant(_Strict):
    name: str
    fingerprint: str | None = Field(
        default=None, description="SHA-256 of its node certificate (what nodes `accept`)"
    )
    forbidden_columns: list[str] = Field(default_factory=list)
    embeddings_max_epsilon: float | None = Field(
        default=None, gt=0, description="stricter than the policy's, for this domain only"
    )


class PrivacyRules(_Strict):
    """Protections a run must apply (privacy/protections.py), each at a minimum strength;
    every node checks the ones it applies, from its own mesh file, at Hello."""

    labels_max_epsilon: float | None = Field(
        default=None, gt=0, description="randomized response on the labels, epsilon at most"
    )
    embeddings_max_epsilon: float | None = Field(
        default=None,
        gt=0,
        description="embedding DP on every domain, epsilon accounted over the run's planned "
        "epochs at most",
    )
    gradients_min_sigma: float | None = Field(
        default=None, ge=0, description="noise on the gradients the label side returns"
    )
    secure_aggregation: bool = Field(
        default=False, description="every domain masks its embeddings: the coordinator sees a sum"
    )


class Policy(_Strict):
    version: str
    name: str = "policy"
    participants: list[Participant]
    forbidden_columns: list[str] = Field(
        default_factory=list, description="no domain may use these (e.g. raw ids, postcodes)"
    )
    label_placement: list[str] = Field(
        default_factory=lambda: ["label-preserving"],
        description="allowed modes: label-preserving, label-sharing, centralized",
    )
    require_tls: bool = True
    min_batch_size: int = Field(default=1, ge=1)
    max_epochs: int | None = Field(default=None, ge=1)
    privacy: PrivacyRules = Field(
        default=PrivacyRules(), description="protections required, at a minimum strength"
    )

    @property
    def hash(self) -> str:
        body = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(body).hexdigest()

    def facts(self) -> dict:
        """What a run records of the policy it ran under."""
        return {"name": self.name, "version": self.version, "hash": self.hash}

    def participant(self, name: str) -> Participant | None:
        return next((p for p in self.participants if p.name == name), None)

    def forbidden_for(self, domain: str) -> set[str]:
        p = self.participant(domain)
        return {*self.forbidden_columns, *(p.forbidden_columns if p else [])}


def load_policy(path: str | Path) -> Policy:
    return load_yaml_model(path, Policy, "policy file", path_keys=())


@dataclasses.dataclass(frozen=True)
class Decision:
    rule: str
    allowed: bool
    reason: str


def check_run(policy: Policy, plan: dict) -> list[Decision]:
    """Every rule on a planned run. ``plan``: mode, domains {name: columns}, transport
    ("local" | "tls" | "plaintext"), batch_size, epochs."""
    out = []
    unknown = [d for d in plan["domains"] if policy.participant(d) is None]
    out.append(
        Decision(
            "participants",
            not unknown,
            f"domain(s) {unknown} are not participants of policy {policy.name!r}"
            if unknown
            else f"every domain is a participant ({', '.join(plan['domains'])})",
        )
    )
    bad = {d: sorted(set(cols) & policy.forbidden_for(d)) for d, cols in plan["domains"].items()}
    bad = {d: c for d, c in bad.items() if c}
    out.append(
        Decision(
            "columns",
            not bad,
            "; ".join(f"domain {d!r} uses forbidden column(s) {c}" for d, c in bad.items())
            if bad
            else "no forbidden column is used",
        )
    )
    mode = plan["mode"]
    out.append(
        Decision(
            "label_placement",
            mode in policy.label_placement,
            f"mode {mode} is {'' if mode in policy.label_placement else 'not '}allowed "
            f"(allowed: {', '.join(policy.label_placement)})",
        )
    )
    wire = plan["transport"]
    tls_ok = not policy.require_tls or wire in ("local", "tls")
    out.append(
        Decision(
            "require_tls",
            tls_ok,
            f"transport is {wire}" + ("" if tls_ok else ": plaintext where TLS is required"),
        )
    )
    out.append(
        Decision(
            "min_batch_size",
            plan["batch_size"] >= policy.min_batch_size,
            f"batch size {plan['batch_size']}, minimum {policy.min_batch_size}",
        )
    )
    if policy.max_epochs is not None:
        out.append(
            Decision(
                "max_epochs",
                plan["epochs"] <= policy.max_epochs,
                f"{plan['epochs']} epochs, maximum {policy.max_epochs}",
            )
        )
    out += privacy_decisions(policy, plan)
    return out


def privacy_decisions(policy: Policy, plan: dict, *, labels: bool = True) -> list[Decision]:
    """The privacy rules on a plan's ``privacy`` block (its mesh file's); ``labels``: judge
    the label side's rules too (a node that holds no labels applies none of them)."""
    from splitmesh.config import Privacy
    from splitmesh.privacy.protections import embedding_epsilon

    rules, out = policy.privacy, []
    have = Privacy.model_validate(plan.get("privacy") or {})
    if labels and rules.labels_max_epsilon is not None:
        eps = have.labels.epsilon if have.labels else None
        ok = eps is not None and eps <= rules.labels_max_epsilon
        got = "no randomized response" if eps is None else f"randomized response at epsilon {eps}"
        out.append(
            Decision(
                "privacy.labels",
                ok,
                f"labels: {got}; the policy requires epsilon <= {rules.labels_max_epsilon}",
            )
        )
    if labels and rules.gradients_min_sigma is not None:
        sigma = have.gradients.sigma if have.gradients else None
        ok = sigma is not None and sigma >= rules.gradients_min_sigma
        got = "no gradient noise" if sigma is None else f"gradient noise sigma {sigma}"
        out.append(
            Decision(
                "privacy.gradients",
                ok,
                f"gradients: {got}; the policy requires sigma >= {rules.gradients_min_sigma}",
            )
        )
    if rules.secure_aggregation:
        for d in plan["domains"]:
            ok = have.secure_aggregation is not None
            got = "masks its embeddings" if ok else "sends its embeddings in the clear"
            out.append(
                Decision(
                    "privacy.secure_aggregation",
                    ok,
                    f"domain {d!r} {got}; the policy requires secure aggregation",
                )
            )
    for d in plan["domains"]:
        p = policy.participant(d)
        limits = [rules.embeddings_max_epsilon, p.embeddings_max_epsilon if p else None]
        limits = [v for v in limits if v is not None]
        if not limits:
            continue
        limit = min(limits)
        eps = embedding_epsilon(have.embeddings, plan["epochs"]) if have.embeddings else None
        ok = eps is not None and eps <= limit
        got = (
            "no embedding DP" if eps is None else f"epsilon {eps:.3g} over {plan['epochs']} epochs"
        )
        out.append(
            Decision(
                "privacy.embeddings",
                ok,
                f"domain {d!r} embeddings: {got}; the policy requires epsilon <= {limit}",
            )
        )
    return out


def enforce(decisions: list[Decision]) -> None:
    """Raise on the first refused rule."""
    for d in decisions:
        if not d.allowed:
            raise PolicyError(d.rule, d.reason)


class PolicyGuard:
    """A node's own enforcement, on every request it serves: it takes part only as a listed
    participant, with allowed columns and label placement, over TLS when required, and
    never embeds a training batch smaller than the minimum."""

    def __init__(
        self,
        policy: Policy,
        domain: str,
        columns: list[str],
        *,
        wire: str,
        audit=None,
        fingerprint: str | None = None,
        privacy: dict | None = None,
        labels: bool = False,
    ) -> None:
        self.policy, self.domain, self.columns, self.wire = policy, domain, columns, wire
        # the protections this node applies (its own mesh file), judged at every Hello
        self.privacy, self.labels = privacy or {}, labels
        self.audit = audit
        self.fingerprint = fingerprint  # SHA-256 of this node's own certificate, if any

    def __call__(self, msg) -> None:
        kind = type(msg).__name__
        if kind == "Hello":
            # the run's plan, as the coordinator declares it: batch sizes and epochs are
            # judged now, before anything is trained, and held to on every Forward
            plan = {
                "mode": msg.mode,
                "domains": {self.domain: self.columns},
                "transport": self.wire,
                "batch_size": msg.batch_size,
                "epochs": msg.epochs,
                "privacy": self.privacy,
            }
            decisions = [d for d in check_run(self.policy, plan) if d.rule[:8] != "privacy."]
            if msg.purpose == "train":
                decisions += privacy_decisions(self.policy, plan, labels=self.labels)
            if msg.purpose == "train":
                ok = msg.min_batch >= self.policy.min_batch_size
                decisions.append(
                    Decision(
                        "min_batch_size",
                        ok,
                        f"the run merges a last batch smaller than {msg.min_batch} rows, "
                        f"minimum {self.policy.min_batch_size}",
                    )
                )
            else:  # scoring trains nothing: batch and epoch limits do not apply
                skip = ("min_batch_size", "max_epochs")
                decisions = [d for d in decisions if d.rule not in skip]
            decisions.append(self._certificate())
            self._record(kind, decisions)
            self._enforce(decisions)
        elif kind == "Forward" and msg.train and len(msg.positions) < self.policy.min_batch_size:
            d = Decision(
                "min_batch_size",
                False,
                f"a training batch of {len(msg.positions)} rows, minimum "
                f"{self.policy.min_batch_size}",
            )
            self._record(kind, [d])
            self._enforce([d])

    def _enforce(self, decisions: list[Decision]) -> None:
        for d in decisions:
            if not d.allowed:
                raise PolicyError(d.rule, d.reason, party=self.domain)

    def _certificate(self) -> Decision:
        """The node serves as the participant only with the certificate governance listed."""
        p = self.policy.participant(self.domain)
        want = p.fingerprint.lower() if p and p.fingerprint else None
        if want is None:
            return Decision("participant_certificate", True, "the policy pins no certificate")
        ok = self.fingerprint is not None and self.fingerprint.lower() == want
        have = self.fingerprint or "none (no TLS)"
        return Decision(
            "participant_certificate",
            ok,
            f"node {self.domain!r} serves with certificate sha256 {have[:16]}, the policy lists "
            f"{want[:16]}",
        )

    def _record(self, kind: str, decisions: list[Decision]) -> None:
        if self.audit is None:
            return
        for d in decisions:
            self.audit.append(
                f"node.{kind}",
                result="allow" if d.allowed else "refuse",
                reason=d.reason,
                policy_hash=self.policy.hash,
                inputs={"node": self.domain, "rule": d.rule},
            )
