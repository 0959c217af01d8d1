"""SkyServe's request-rate autoscaler (SkyPilot), with its published defaults.

Source: SkyPilot docs, "Autoscaling" (docs.skypilot.co/en/latest/serving/autoscaling.html) and
skypilot-org/skypilot ``sky/serve/autoscalers.py`` (``RequestRateAutoscaler``,
``_set_target_num_replica_with_hysteresis``) with ``sky/serve/constants.py``:

- request rate = requests in the last ``AUTOSCALER_QPS_WINDOW_SIZE_SECONDS`` (60 s) / 60;
- ``target = ceil(rate / target_qps_per_replica)`` clipped to ``[min_replicas, max_replicas]``;
- a decision every ``AUTOSCALER_DEFAULT_DECISION_INTERVAL_SECONDS`` (20 s); a new target is
  applied only after ``upscale_delay_seconds / 20`` (300 s -> 15) or ``downscale_delay_seconds / 20``
  (1200 s -> 60) consecutive decisions in the same direction; any other decision resets both counters;
- "faster scale up when there is no replica": from a target of zero the new target applies at once.

``target_qps_per_replica`` is ``target_rps`` here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cumulo.policy.autoscaling.base import AutoscaleInput, Decision, clamp, require, validate_input

__all__ = ["SkyServeConfig", "SkyServeState", "decide"]


@dataclass(frozen=True)
class SkyServeConfig:
    qps_window: float = 60.0
    decision_interval: float = 20.0
    upscale_delay: float = 300.0
    downscale_delay: float = 1200.0

    def __post_init__(self) -> None:
        require(self.qps_window > 0, "qps_window", "must be > 0")
        require(self.decision_interval > 0, "decision_interval", "must be > 0")
        require(self.upscale_delay >= 0, "upscale_delay", "must be >= 0")
        require(self.downscale_delay >= 0, "downscale_delay", "must be >= 0")


@dataclass(frozen=True)
class SkyServeState:
    target: int | None = None
    upscale_counter: int = 0
    downscale_counter: int = 0
    last_decision: float = -math.inf


def decide(inp: AutoscaleInput, config: SkyServeConfig = SkyServeConfig()) -> Decision:
    validate_input(inp)
    st: SkyServeState = inp.state or SkyServeState()
    current = st.target if st.target is not None else max(inp.min_replicas, inp.current)
    current = max(inp.min_replicas, min(inp.max_replicas, current))
    if inp.now - st.last_decision < config.decision_interval - 1e-9:
        state = SkyServeState(current, st.upscale_counter, st.downscale_counter, st.last_decision)
        return Decision(current, state, "skyserve: waiting for decision interval")

    rate = inp.load.mean_rate(config.qps_window)
    want = clamp(rate / inp.target_rps, inp)
    up_periods = int(config.upscale_delay / config.decision_interval)
    down_periods = int(config.downscale_delay / config.decision_interval)
    up, down = st.upscale_counter, st.downscale_counter
    desired = current
    if current == 0:
        desired, up, down = want, 0, 0
        why = "faster scale up from zero replicas"
    elif want > current:
        up, down = up + 1, 0
        if up >= up_periods:
            desired, up = want, 0
        why = f"{rate:.2f} req/s / {inp.target_rps:g} per replica wants {want} ({up}/{up_periods} periods)"
    elif want < current:
        down, up = down + 1, 0
        if down >= down_periods:
            desired, down = want, 0
        why = f"{rate:.2f} req/s / {inp.target_rps:g} per replica wants {want} ({down}/{down_periods} periods)"
    else:
        up = down = 0
        why = f"{rate:.2f} req/s / {inp.target_rps:g} per replica matches {current}"
    verb = "scale up" if desired > current else "scale down" if desired < current else "hold"
    state = SkyServeState(desired, up, down, inp.now)
    return Decision(desired, state, f"skyserve: {verb} {current}->{desired}: {why}")
