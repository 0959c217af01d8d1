"""Ray Serve's default autoscaling policy, with its published defaults.

Source: Ray docs, "Ray Serve Autoscaling" / "Advanced Ray Serve Autoscaling"
(docs.ray.io/en/latest/serve/autoscaling-guide.html) and ray-project/ray
``python/ray/serve/autoscaling_policy.py`` (``replica_queue_length_autoscaling_policy`` and
``_calculate_desired_num_replicas``) with ``python/ray/serve/config.py`` (``AutoscalingConfig``):

- ``target_ongoing_requests`` 2 per replica (here ``target_concurrency``); ongoing requests are
  averaged over ``look_back_period_s`` 30 s;
- ``error_ratio = ongoing / (target * running)``;
  ``desired = ceil(running * (1 + (error_ratio - 1) * smoothing_factor))``, with
  ``upscaling_factor`` / ``downscaling_factor`` defaulting to ``smoothing_factor`` 1.0;
- a change is applied only after it has been asked for on consecutive control-loop iterations for
  ``upscale_delay_s`` 30 s (up) or ``downscale_delay_s`` 600 s (down); a reversal resets the count;
- from zero replicas, any request scales to one at once (no delay);
- the control loop runs every 0.1 s in Ray; here every ``tick`` (1 s), with the delays in seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cumulo.policy.autoscaling.base import AutoscaleInput, Decision, require, validate_input

__all__ = ["RayServeConfig", "RayServeState", "decide"]


@dataclass(frozen=True)
class RayServeConfig:
    upscale_delay_s: float = 30.0
    downscale_delay_s: float = 600.0
    look_back_period_s: float = 30.0
    smoothing_factor: float = 1.0
    upscaling_factor: float | None = None
    downscaling_factor: float | None = None
    tick: float = 1.0

    def __post_init__(self) -> None:
        require(self.upscale_delay_s >= 0, "upscale_delay_s", "must be >= 0")
        require(self.downscale_delay_s >= 0, "downscale_delay_s", "must be >= 0")
        require(self.look_back_period_s > 0, "look_back_period_s", "must be > 0")
        require(self.smoothing_factor > 0, "smoothing_factor", "must be > 0")
        require(self.tick > 0, "tick", "must be > 0")


@dataclass(frozen=True)
class RayServeState:
    target: int | None = None
    #: seconds the current direction has been asked for (+ up, - down), Ray's decision_counter
    counter: float = 0.0
    last_tick: float = -math.inf


def decide(inp: AutoscaleInput, config: RayServeConfig = RayServeConfig()) -> Decision:
    validate_input(inp)
    st: RayServeState = inp.state or RayServeState()
    current = st.target if st.target is not None else max(inp.min_replicas, inp.current)
    current = max(inp.min_replicas, min(inp.max_replicas, current))
    if inp.now - st.last_tick < config.tick - 1e-9:
        return Decision(current, RayServeState(current, st.counter, st.last_tick), "rayserve: waiting for tick")
    dt = config.tick if st.last_tick == -math.inf else inp.now - st.last_tick

    ongoing = inp.load.mean_concurrency(config.look_back_period_s)
    target = inp.target_concurrency
    if current == 0 or inp.ready == 0:
        if current == 0 and ongoing > 0:
            desired = max(1, inp.min_replicas)
            return Decision(desired, RayServeState(desired, 0.0, inp.now), "rayserve: scale from zero at once")
        return Decision(current, RayServeState(current, 0.0, inp.now), "rayserve: hold: no running replica reports")

    running = inp.ready
    error_ratio = ongoing / (target * running)
    factor = (
        (config.upscaling_factor or config.smoothing_factor)
        if error_ratio >= 1
        else (config.downscaling_factor or config.smoothing_factor)
    )
    smoothed = 1 + (error_ratio - 1) * factor
    want = math.ceil(running * smoothed - 1e-9)
    if error_ratio == 0 and want == running and want >= 1:
        want -= 1  # Ray's rule so that an idle deployment can reach zero
    want = max(inp.min_replicas, min(inp.max_replicas, want))

    counter = st.counter
    desired = current
    if want > current:
        counter = max(counter, 0.0) + dt
        if counter >= config.upscale_delay_s:
            desired, counter = want, 0.0
        why = f"ongoing {ongoing:.1f} vs target {target:g} x {running}: want {want}, asked for {counter:.0f}/{config.upscale_delay_s:g}s"
    elif want < current:
        counter = min(counter, 0.0) - dt
        if -counter >= config.downscale_delay_s:
            desired, counter = want, 0.0
        why = f"ongoing {ongoing:.1f} vs target {target:g} x {running}: want {want}, asked for {-counter:.0f}/{config.downscale_delay_s:g}s"
    else:
        counter = 0.0
        why = f"ongoing {ongoing:.1f} matches target {target:g} x {running}"
    verb = "scale up" if desired > current else "scale down" if desired < current else "hold"
    return Decision(desired, RayServeState(desired, counter, inp.now), f"rayserve: {verb} {current}->{desired}: {why}")
