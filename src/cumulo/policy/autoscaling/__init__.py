"""Autoscaling policies: pure ``decide(input, config) -> Decision`` functions.

``POLICIES`` maps each policy's name to its config class and decide function; ``period(config)``
is how often the policy wants to be asked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace
from typing import Any

from cumulo.core.errors import InvalidSpec
from cumulo.policy.autoscaling import hpa, kpa, oracle, predictive, rayserve, skyserve
from cumulo.policy.autoscaling.base import AutoscaleInput, Decision, LoadWindow, validate_input

__all__ = ["POLICIES", "AutoscaleInput", "Decision", "LoadWindow", "configure", "period", "validate_input"]

POLICIES: dict[str, tuple[type, Callable[[AutoscaleInput, Any], Decision]]] = {
    "hpa": (hpa.HPAConfig, hpa.decide),
    "kpa": (kpa.KPAConfig, kpa.decide),
    "rayserve": (rayserve.RayServeConfig, rayserve.decide),
    "skyserve": (skyserve.SkyServeConfig, skyserve.decide),
    "predictive": (predictive.PredictiveConfig, predictive.decide),
    "oracle": (oracle.OracleConfig, oracle.decide),
}


def period(config: Any) -> float:
    """Seconds between two decisions of the policy that ``config`` configures."""
    for name in ("tick", "sync_period", "decision_interval"):
        if hasattr(config, name):
            return float(getattr(config, name))
    return 1.0


def configure(policy: str, options: dict[str, Any] | None = None, *, scale_to_zero_after: float | None = None) -> Any:
    """The config of `policy` with its published defaults, overridden by `options` (field names of
    its config class). Unknown policies or options raise InvalidSpec naming the field."""
    if policy not in POLICIES:
        raise InvalidSpec(f"autoscaling.policy: {policy!r} is not one of {', '.join(POLICIES)}",
                          errors=[{"field": "autoscaling.policy", "message": "unknown policy"}])
    cls = POLICIES[policy][0]
    cfg = cls()
    known = {f.name for f in fields(cls)}
    values: dict[str, Any] = {}
    if scale_to_zero_after is not None:
        if "scale_to_zero_grace" in known:
            values["scale_to_zero_grace"] = scale_to_zero_after
        if "scale_to_zero_after" in known:
            values["scale_to_zero_after"] = scale_to_zero_after
    for key, value in (options or {}).items():
        if key not in known:
            raise InvalidSpec(
                f"autoscaling.options.{key}: {policy} has no option {key!r}; it has: {', '.join(sorted(known))}",
                errors=[{"field": f"autoscaling.options.{key}", "message": "unknown option"}],
            )
        values[key] = value
    try:
        return replace(cfg, **values)
    except (TypeError, ValueError) as exc:
        raise InvalidSpec(f"autoscaling.options: {exc}") from None
