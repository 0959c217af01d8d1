"""A deployment's canary rollout inside its reconcile pass: build the policy's input from the stored
rollout and the gateways' per-generation counters, and shape the deployment snapshot to follow the
decision (policy/rollout.py decides, policy/deployments.py places the replicas).

The stored form (`deployments.rollout`, JSON) is RolloutState.to_dict() plus:
- `weight`: the canary's share of the traffic now (what the gateways are told, store/gateway_view.py);
- `stable_spec`, `stable_workdir`: what the stable generation runs (to replace its replicas during the
  rollout, and to restore on a rollback);
- `command`, `command_id`, `actor`: a `promote` or `abort` asked through the API, consumed by the
  next pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from cumulo.core.specs import DeploymentSpec
from cumulo.core.states import ReplicaState
from cumulo.policy.deployments import CRASH_LOOP_AFTER, Canary, DeploymentSnapshot
from cumulo.policy.rollout import Counts, RolloutDecision, RolloutInput, RolloutState, canary_replicas, decide_rollout

__all__ = ["RolloutPass", "rollout_pass", "stored"]

#: generation -> (requests, errors, latency bucket counts), cumulative over every gateway
GenerationCounts = Mapping[int, tuple[int, int, tuple[int, ...]]]


@dataclass(frozen=True)
class RolloutPass:
    decision: RolloutDecision
    raw: dict[str, Any]  # the stored rollout this pass read
    stable_spec: DeploymentSpec
    stable_workdir: str
    weight: int


def rollout_pass(raw: dict[str, Any] | None, snap: DeploymentSnapshot, counts: GenerationCounts,
                 bounds: tuple[float, ...]) -> tuple[RolloutPass | None, DeploymentSnapshot]:
    """Decide this pass of an active canary rollout; the snapshot the deployment policy should see."""
    if not raw or raw.get("phase") != "Progressing" or snap.deleting:
        return None, snap
    state = RolloutState.from_dict(raw)
    if state.canary_generation != snap.generation or snap.spec.rollout.strategy != "canary":
        return None, snap  # a deploy changed the spec meanwhile; its own rollout comes with it
    cfg = snap.spec.rollout
    canary_ready = sum(1 for r in snap.replicas
                       if r.generation == state.canary_generation and r.state == ReplicaState.READY)
    failing = ""
    if snap.failures >= CRASH_LOOP_AFTER and canary_ready == 0:
        failing = snap.last_failure or "its replicas keep failing"
    command = raw.get("command") if raw.get("command") in ("promote", "abort") else None
    decision = decide_rollout(RolloutInput(
        now=snap.now, config=cfg, state=state,
        counters={g: Counts(c[0], c[1], tuple(c[2])) for g, c in counts.items()},
        canary_ready=canary_ready, bounds=bounds, command=command, actor=raw.get("actor"), canary_failing=failing,
    ))
    stable_spec = DeploymentSpec.model_validate(raw["stable_spec"])
    weight = decision.state.weight(cfg.steps)
    desired = snap.spec.replicas if snap.desired is None else snap.desired
    if decision.action == "rollback":
        # this pass drains every canary replica and keeps the stable ones; the next runs the stable spec
        snap = replace(snap, canary=Canary(state.stable_generation, 0, rolled_back=True), failures=0,
                       next_start_at=None, last_failure="")
    elif decision.state.active:
        snap = replace(snap, canary=Canary(state.stable_generation, canary_replicas(desired, weight),
                                           stable_resources=stable_spec.resources))
    return RolloutPass(decision, raw, stable_spec, str(raw.get("stable_workdir", "")), weight), snap


def stored(p: RolloutPass, current: dict[str, Any] | None) -> dict[str, Any] | None:
    """The rollout to write back, or None when `current` (the row now) is another rollout than the one
    this pass judged (a deploy started a new one meanwhile). A command that arrived meanwhile stays."""
    if not current or current.get("canary_generation") != p.raw.get("canary_generation") \
            or current.get("started_at") != p.raw.get("started_at"):
        return None
    out = {**current, **p.decision.state.to_dict(), "weight": p.weight}
    if current.get("command_id") == p.raw.get("command_id"):  # consumed (or none was there)
        for k in ("command", "command_id", "actor"):
            out.pop(k, None)
    return out
