"""Sweeps: each policy's cost-versus-SLO curve over its main parameter.

The main parameter of every policy here is its per-replica target (HPA's target metric value,
Knative's target concurrency, Ray Serve's ``target_ongoing_requests``, SkyServe's
``target_qps_per_replica``, the predictive and oracle request-rate targets), expressed as a
utilization of one replica's capacity so that all policies move along the same axis.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from cumulo.sim.load import Load
from cumulo.sim.model import ReplicaModel, make_config, simulate

__all__ = ["UTILIZATIONS", "sweep", "tune"]

UTILIZATIONS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def sweep(
    load: Load,
    policy: str,
    model: ReplicaModel,
    *,
    values: tuple[float, ...] = UTILIZATIONS,
    overrides: dict[str, Any] | None = None,
    eval_from: float = 0.0,
) -> list[dict[str, Any]]:
    rows = []
    for u in values:
        m = replace(model, utilization=u)
        cfg = make_config(policy, load, m, overrides)
        r = simulate(load, policy, m, config=cfg, eval_from=eval_from)
        rows.append({"utilization": u, **r.metrics})
    return rows


def tune(rows: list[dict[str, Any]], slo: float = 0.99) -> dict[str, Any] | None:
    """The cheapest row that meets ``slo``; None if none does."""
    ok = [r for r in rows if r["slo_attainment"] >= slo]
    return min(ok, key=lambda r: r["replica_seconds"]) if ok else None
