"""Autoscaling policies: pure ``decide(input, config) -> Decision`` functions.

``POLICIES`` maps each policy's name to its config class and decide function; ``period(config)``
is how often the policy wants to be asked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cumulo.policy.autoscaling import hpa, kpa, oracle, predictive, rayserve, skyserve
from cumulo.policy.autoscaling.base import AutoscaleInput, Decision, LoadWindow, validate_input

__all__ = ["POLICIES", "AutoscaleInput", "Decision", "LoadWindow", "period", "validate_input"]

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
