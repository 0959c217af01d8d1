"""Knative Pod Autoscaler (KPA), with its published defaults.

Source: Knative docs, "Configuring the autoscaler" / "Additional autoscaling configuration for
KPA" (knative.dev/docs/serving/autoscaling/) and knative/serving
``pkg/autoscaler/scaling/autoscaler.go`` (``Scale``) with ``config/core/configmaps/autoscaler.yaml``:

- a decision every tick (``tick-interval`` 2 s);
- ``stable-window`` 60 s and a panic window of ``panic-window-percentage`` 10 % of it (6 s);
  concurrency averaged over each;
- ``desiredStable = ceil(stable/target)``, ``desiredPanic = ceil(panic/target)``, both clamped to
  ``[floor(ready / max-scale-down-rate), ceil(max-scale-up-rate * ready)]`` (rates 2 and 1000);
- panic starts when ``desiredPanic / ready >= panic-threshold-percentage`` (200 %); while
  panicking the count only goes up (``max(desiredPanic, previous)``), and panic ends one stable
  window after it last started with the threshold no longer crossed;
- scale to zero only when the stable window saw no traffic at all, and after
  ``scale-to-zero-grace-period`` (30 s) at zero demand (KPA's activator/grace period);
- the real target is ``container-concurrency-target-default`` (100) x
  ``container-concurrency-target-percentage`` (70 %); here ``target_concurrency`` is that product.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from cumulo.policy.autoscaling.base import AutoscaleInput, Decision, require, validate_input

__all__ = ["KPAConfig", "KPAState", "decide"]


@dataclass(frozen=True)
class KPAConfig:
    tick: float = 2.0
    stable_window: float = 60.0
    panic_window_percentage: float = 10.0
    panic_threshold_percentage: float = 200.0
    max_scale_up_rate: float = 1000.0
    max_scale_down_rate: float = 2.0
    scale_to_zero_grace: float = 30.0

    def __post_init__(self) -> None:
        require(self.tick > 0, "tick", "must be > 0")
        require(self.stable_window >= 6, "stable_window", "must be >= 6 s (Knative's lower bound)")
        require(1 <= self.panic_window_percentage <= 100, "panic_window_percentage", "must be in [1, 100]")
        require(self.panic_threshold_percentage > 100, "panic_threshold_percentage", "must be > 100")
        require(self.max_scale_up_rate > 1, "max_scale_up_rate", "must be > 1")
        require(self.max_scale_down_rate > 1, "max_scale_down_rate", "must be > 1")


@dataclass(frozen=True)
class KPAState:
    target: int | None = None
    last_tick: float = -math.inf
    panic_since: float | None = None
    #: the count while panicking (never lowered during panic)
    panic_desired: int = 0
    #: when demand was last seen above zero (for the scale-to-zero grace period)
    last_active: float = -math.inf


def decide(inp: AutoscaleInput, config: KPAConfig = KPAConfig()) -> Decision:
    validate_input(inp)
    st: KPAState = inp.state or KPAState(last_active=inp.now)
    current = st.target if st.target is not None else max(inp.min_replicas, inp.current)
    current = max(inp.min_replicas, min(inp.max_replicas, current))
    if inp.now - st.last_tick < config.tick - 1e-9:
        return Decision(current, replace(st, target=current), "kpa: waiting for tick")

    target = inp.target_concurrency
    stable = inp.load.mean_concurrency(config.stable_window)
    panic_window = config.stable_window * config.panic_window_percentage / 100
    panic = inp.load.mean_concurrency(panic_window)
    ready = max(1, inp.ready)  # autoscaler.go: readyPodsCount is at least 1 for the ratios

    dspc = math.ceil(stable / target - 1e-9)
    dppc = math.ceil(panic / target - 1e-9)
    max_up = math.ceil(config.max_scale_up_rate * ready)
    max_down = math.floor(ready / config.max_scale_down_rate)
    dspc = min(max(dspc, max_down), max_up)
    dppc = min(max(dppc, max_down), max_up)

    over = dppc / ready >= config.panic_threshold_percentage / 100
    panic_since = st.panic_since
    if over:
        panic_since = inp.now if panic_since is None else panic_since
        if panic_since != st.panic_since or st.panic_since is None:
            why = f"entering panic: panic concurrency {panic:.1f} needs {dppc} >= {config.panic_threshold_percentage:g}% of {ready} ready"
        else:
            why = f"panicking: panic concurrency {panic:.1f} needs {dppc}"
        panic_since = inp.now  # the panic clock restarts while the threshold is crossed
    elif panic_since is not None and inp.now - panic_since >= config.stable_window:
        panic_since = None
        why = "leaving panic"
    else:
        why = ""

    if panic_since is not None:
        desired = max(dspc, dppc, st.panic_desired)  # never scale down while panicking
        why = why or f"panic mode: holding at least {desired}"
        panic_desired = desired
    else:
        desired = dspc
        why = why or f"stable concurrency {stable:.1f} over {config.stable_window:g}s / target {target:g}"
        panic_desired = 0

    last_active = inp.now if stable > 0 or panic > 0 else st.last_active
    if desired == 0 and inp.min_replicas == 0 and current > 0:
        if inp.now - last_active < config.scale_to_zero_grace:
            desired = 1
            why = f"no traffic for {inp.now - last_active:.0f}s; scale to zero after {config.scale_to_zero_grace:g}s grace"
    desired = max(inp.min_replicas, min(inp.max_replicas, desired))
    verb = "scale up" if desired > current else "scale down" if desired < current else "hold"
    state = KPAState(desired, inp.now, panic_since, panic_desired, last_active)
    return Decision(desired, state, f"kpa: {verb} {current}->{desired}: {why}")
