"""Kubernetes Horizontal Pod Autoscaler, with its published defaults.

Source: Kubernetes docs, "Horizontal Pod Autoscaling" (kubernetes.io/docs/tasks/run-application/
horizontal-pod-autoscale/, algorithm details and "Configurable scaling behavior") and
kubernetes/kubernetes ``pkg/controller/podautoscaler/horizontal.go`` / ``replica_calculator.go``:

- every sync period (``--horizontal-pod-autoscaler-sync-period``, default 15 s):
  ``desired = ceil(currentReplicas * currentMetric / targetMetric)``;
- no change while ``|currentMetric/targetMetric - 1| <= tolerance`` (default 0.1);
- scale-down stabilization window 300 s: the new size is the highest recommendation of the
  last 300 s; scale-up has none;
- default behavior: scale up by at most ``max(100 %, 4 pods)`` per 15 s, scale down by at most
  100 % per 15 s;
- HPA never scales to zero (``minReplicas >= 1`` unless the alpha gate is on).

Here the metric is a Pods metric: mean in-flight requests per ready replica over the last sync
period, against ``target_concurrency``. Unready (starting) replicas contribute no metric, as in
``replica_calculator.go`` for scale-up decisions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cumulo.policy.autoscaling.base import AutoscaleInput, Decision, clamp, require, validate_input

__all__ = ["HPAConfig", "HPAState", "decide"]


@dataclass(frozen=True)
class HPAConfig:
    sync_period: float = 15.0
    tolerance: float = 0.1
    downscale_stabilization: float = 300.0
    scale_up_percent: float = 100.0
    scale_up_pods: int = 4
    scale_down_percent: float = 100.0

    def __post_init__(self) -> None:
        require(self.sync_period > 0, "sync_period", "must be > 0")
        require(self.tolerance >= 0, "tolerance", "must be >= 0")
        require(self.downscale_stabilization >= 0, "downscale_stabilization", "must be >= 0")


@dataclass(frozen=True)
class HPAState:
    #: (time, recommendation) of the last ``downscale_stabilization`` seconds, oldest first
    recommendations: tuple[tuple[float, int], ...] = ()
    last_sync: float = -math.inf
    target: int | None = None


def decide(inp: AutoscaleInput, config: HPAConfig = HPAConfig()) -> Decision:
    validate_input(inp)
    st: HPAState = inp.state or HPAState()
    current = st.target if st.target is not None else max(inp.current, inp.min_replicas)
    current = max(inp.min_replicas, min(inp.max_replicas, current))
    if inp.now - st.last_sync < config.sync_period - 1e-9:
        return Decision(current, HPAState(st.recommendations, st.last_sync, current), "hpa: waiting for sync period")

    metric = inp.load.mean_concurrency(config.sync_period)
    ready = inp.ready
    if ready == 0:
        # No pod reports a metric: the HPA keeps the current scale (it cannot compute a ratio).
        raw = current if metric <= 0 else max(current, 1)
        why = "no ready replica reports a metric"
    else:
        per_pod = metric / ready
        ratio = per_pod / inp.target_concurrency
        if abs(ratio - 1.0) <= config.tolerance:
            raw = current
            why = f"usage ratio {ratio:.2f} within tolerance {config.tolerance}"
        else:
            why = f"usage ratio {ratio:.2f} ({per_pod:.2f} per replica vs target {inp.target_concurrency:g})"
            # replicas without a metric yet (starting) count as 0 % for a scale-up and 100 % for a
            # scale-down, then the ratio is recomputed (replica_calculator.go, missing metrics)
            if ratio > 1:
                new_ratio = metric / (inp.current * inp.target_concurrency)
                raw = current if new_ratio <= 1 + config.tolerance else math.ceil(new_ratio * inp.current - 1e-9)
            else:
                total = metric + inp.starting * inp.target_concurrency
                raw = math.ceil(total / inp.target_concurrency - 1e-9)
    raw = clamp(raw, inp)

    # scale-down stabilization: the highest recommendation inside the window
    horizon = inp.now - config.downscale_stabilization
    recs = tuple(r for r in st.recommendations if r[0] > horizon) + ((inp.now, raw),)
    stabilized = max(r[1] for r in recs) if raw < current else raw

    # rate limits of the default behavior
    up_limit = max(math.floor(current * (1 + config.scale_up_percent / 100)), current + config.scale_up_pods)
    down_limit = math.ceil(current * (1 - config.scale_down_percent / 100))
    desired = max(down_limit, min(up_limit, stabilized))
    desired = max(inp.min_replicas, min(inp.max_replicas, desired))
    if desired > current:
        reason = f"hpa: scale up {current}->{desired}: {why}"
    elif desired < current:
        reason = f"hpa: scale down {current}->{desired}: {why}"
    elif raw < current:
        reason = f"hpa: hold {current}: recommendation {raw} held by {config.downscale_stabilization:g}s stabilization"
    else:
        reason = f"hpa: hold {current}: {why}"
    return Decision(desired, HPAState(recs, inp.now, desired), reason)
