"""PNG plots of a simulation (load, replicas, latency over time) and of a sweep (cost vs SLO)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cumulo.sim.model import SimResult

__all__ = ["plot_run", "plot_sweep"]

MAX_POINTS = 2000


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _bucket(x: np.ndarray, n: int, how: str = "mean") -> np.ndarray:
    if n <= 1:
        return x
    m = len(x) // n * n
    if m == 0:
        return x
    r = x[:m].reshape(-1, n)
    return r.max(axis=1) if how == "max" else r.mean(axis=1)


def plot_run(results: list[SimResult], path: str | Path, title: str = "") -> None:
    plt = _pyplot()
    first = results[0]
    n = max(1, len(first.t) // MAX_POINTS)
    t = _bucket(first.t, n) / 3600.0
    fig, axes = plt.subplots(3, 1, figsize=(11, 8), sharex=True)
    axes[0].plot(t, _bucket(first.rates, n), color="0.4", lw=0.8, label="arrivals (req/s)")
    for r in results:
        axes[0].plot(t, _bucket(r.capacity_rps, n), lw=0.8, label=f"{r.policy} capacity (req/s)")
        axes[1].plot(t, _bucket((r.ready + r.starting).astype(float), n), lw=0.8, label=f"{r.policy}")
        axes[2].plot(t, _bucket(r.step_latency, n, "max"), lw=0.8, label=f"{r.policy}")
    axes[0].set_ylabel("req/s")
    axes[1].set_ylabel("replicas (incl. starting)")
    axes[2].set_ylabel("max latency (s)")
    axes[2].set_yscale("log")
    axes[2].set_xlabel("hours")
    for ax in axes:
        ax.legend(fontsize=7, loc="upper right")
        ax.grid(alpha=0.3)
    fig.suptitle(title or first.metrics.get("trace", ""))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_sweep(rows: list[dict[str, Any]], path: str | Path, title: str = "") -> None:
    """``rows``: dicts with policy, replica_seconds, slo_attainment (one per swept value)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    for policy in dict.fromkeys(r["policy"] for r in rows):
        pts = sorted((r["replica_seconds"], r["slo_attainment"]) for r in rows if r["policy"] == policy)
        ax.plot([p[0] / 3600 for p in pts], [100 * p[1] for p in pts], marker="o", ms=3, label=policy)
    ax.axhline(99, color="0.5", ls="--", lw=0.8)
    ax.set_xlabel("replica-hours")
    ax.set_ylabel("SLO attainment (%)")
    ax.set_ylim(max(0, ax.get_ylim()[0]), 100.5)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
