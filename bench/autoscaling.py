"""Autoscaling benchmark: every policy on the public traces in shared/traces. Prints JSON.

    PYTHONPATH=src nice -n 15 python bench/autoscaling.py [--traces DIR] [--out docs/benchmarks] [--quick]

ServeGen (14 days): each policy's run covers all 14 days; days 1-7 are the fitting part (the
predictive policy learns online from them; "tuned" picks each policy's cheapest utilization that
meets 99 % SLO on days 1-7), days 8-14 are what is reported. Azure (1 hour, no daily pattern):
every policy at defaults, for burst response only. Cold starts 30 s and 120 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

from cumulo.sim.load import ServiceModel, build_load
from cumulo.sim.model import ReplicaModel, make_config, simulate
from cumulo.sim.plot import plot_run, plot_sweep
from cumulo.sim.traces import load_trace

POLICIES = ["hpa", "kpa", "rayserve", "skyserve", "predictive", "oracle"]
BASELINES = ["hpa", "kpa", "rayserve", "skyserve"]
GRID = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0)
DAY = 86400.0
SLO = 0.99


def _row(u: float, r) -> dict:
    keep = ("slo_attainment", "latency_p50_s", "latency_p99_s", "replica_seconds", "cost",
            "seconds_under_provisioned", "scaling_actions", "cold_starts", "mean_replicas")
    out = {"utilization": u, **{k: r.metrics[k] for k in keep}}
    out["fit"] = {k: r.metrics["fit"][k] for k in ("slo_attainment", "replica_seconds")}
    return out


def servegen(path: Path, out: Path, cold_starts, grid, log) -> dict:
    trace = load_trace(path)
    load = build_load(trace, ServiceModel(service_time=1.0), step=1.0, seed=0)
    result = {"trace": f"servegen/{path.name}", "requests": int(load.counts.sum()), "cold_starts": {}}
    for cs in cold_starts:
        base = ReplicaModel(concurrency=8, cold_start=cs, min_replicas=1, max_replicas=1000, utilization=0.7)
        per_policy = {}
        sweep_rows = []
        for p in POLICIES:
            rows = []
            for u in grid:
                m = replace(base, utilization=u)
                t0 = time.perf_counter()
                r = simulate(load, p, m, config=make_config(p, load, m), eval_from=7 * DAY)
                log(f"{path.name} cs={cs:g} {p} u={u}: {time.perf_counter() - t0:.1f}s slo={r.metrics['slo_attainment']:.4f} rs={r.metrics['replica_seconds']:.3g}")
                rows.append(_row(u, r))
                sweep_rows.append({"policy": p, "replica_seconds": r.metrics["replica_seconds"], "slo_attainment": r.metrics["slo_attainment"]})
            default = next(x for x in rows if x["utilization"] == 0.7)
            ok_fit = [x for x in rows if x["fit"]["slo_attainment"] >= SLO]
            tuned = min(ok_fit, key=lambda x: x["fit"]["replica_seconds"]) if ok_fit else None
            ok_eval = [x for x in rows if x["slo_attainment"] >= SLO]
            hindsight = min(ok_eval, key=lambda x: x["replica_seconds"]) if ok_eval else None
            per_policy[p] = {"default": default, "tuned": tuned, "hindsight": hindsight, "at_slo": at_slo(rows), "sweep": rows}
        plot_sweep(sweep_rows, out / f"autoscaling-{path.name}-cs{cs:g}-sweep.png",
                   f"ServeGen {path.name}, days 8-14, cold start {cs:g}s: cost vs SLO over utilization")
        result["cold_starts"][str(cs)] = {"policies": per_policy, "summary": summarize(per_policy)}
        # one evaluation day in detail: predictive (tuned) vs the best tuned baseline vs the oracle
        s = result["cold_starts"][str(cs)]["summary"]
        picks = [("predictive", s.get("predictive_u")), (s.get("best_baseline"), s.get("best_baseline_u")), ("oracle", s.get("oracle_u"))]
        runs = []
        for p, u in picks:
            if p is None or u is None:
                continue
            m = replace(base, utilization=u)
            runs.append(simulate(load, p, m, config=make_config(p, load, m), eval_from=7 * DAY))
        if runs:
            day = int(DAY)
            lo, hi = 8 * day, 9 * day
            cut = [_slice(r, lo, hi) for r in runs]
            plot_run(cut, out / f"autoscaling-{path.name}-cs{cs:g}-day8.png",
                     f"ServeGen {path.name}, day 8, cold start {cs:g}s (tuned on days 1-7)")
    return result


def _slice(r, lo, hi):
    return replace(r, t=r.t[lo:hi] - r.t[lo], rates=r.rates[lo:hi], ready=r.ready[lo:hi], starting=r.starting[lo:hi],
                   capacity_rps=r.capacity_rps[lo:hi], step_latency=r.step_latency[lo:hi])


def at_slo(rows: list[dict], slo: float = SLO) -> float | None:
    """Replica-seconds at exactly ``slo`` on days 8-14, read off the sweep: linear between the
    cheapest utilization that meets it and the next one up, when that one misses it (None if none
    meets it; the cheapest passing row itself when the next one up passes too, i.e. where cost is not
    monotone in utilization). Less sensitive to the grid's step than the cheapest passing grid point."""
    rows = sorted(rows, key=lambda x: x["utilization"])
    ok = [i for i, x in enumerate(rows) if x["slo_attainment"] >= slo]
    if not ok:
        return None
    i = min(ok, key=lambda j: rows[j]["replica_seconds"])
    if i + 1 < len(rows) and rows[i + 1]["slo_attainment"] < slo:
        a, b = rows[i], rows[i + 1]
        f = (a["slo_attainment"] - slo) / (a["slo_attainment"] - b["slo_attainment"])
        return a["replica_seconds"] + f * (b["replica_seconds"] - a["replica_seconds"])
    return rows[i]["replica_seconds"]


def summarize(per_policy: dict) -> dict:
    """The issue's goal: predictive <= 0.75x the best baseline and <= 1.2x the oracle, at >= 99 % SLO
    on days 8-14; baselines counted at defaults and tuned (tuned on days 1-7)."""
    cands = []
    for p in BASELINES:
        for mode in ("default", "tuned"):
            x = per_policy[p][mode]
            if x is not None and x["slo_attainment"] >= SLO:
                cands.append((x["replica_seconds"], p, mode, x["utilization"]))
    best = min(cands) if cands else None
    pred = per_policy["predictive"]["tuned"]
    orc = per_policy["oracle"]["tuned"]
    s = {
        "best_baseline": best[1] if best else None,
        "best_baseline_mode": best[2] if best else None,
        "best_baseline_u": best[3] if best else None,
        "best_baseline_replica_seconds": best[0] if best else None,
        "predictive_u": pred["utilization"] if pred else None,
        "predictive_replica_seconds": pred["replica_seconds"] if pred else None,
        "predictive_slo": pred["slo_attainment"] if pred else None,
        "oracle_u": orc["utilization"] if orc else None,
        "oracle_replica_seconds": orc["replica_seconds"] if orc else None,
    }
    if best and pred:
        s["predictive_vs_best_baseline"] = pred["replica_seconds"] / best[0]
    if orc and pred:
        s["predictive_vs_oracle"] = pred["replica_seconds"] / orc["replica_seconds"]
    # the same comparison at exactly 99 % (interpolated on each policy's sweep; baselines at any u)
    base_at = [(per_policy[p]["at_slo"], p) for p in BASELINES if per_policy[p].get("at_slo") is not None]
    if base_at and per_policy["predictive"].get("at_slo") and per_policy["oracle"].get("at_slo"):
        b_rs, b_p = min(base_at)
        p_rs, o_rs = per_policy["predictive"]["at_slo"], per_policy["oracle"]["at_slo"]
        s["at_slo"] = {"best_baseline": b_p, "best_baseline_replica_seconds": b_rs, "predictive_replica_seconds": p_rs,
                       "oracle_replica_seconds": o_rs, "predictive_vs_best_baseline": p_rs / b_rs,
                       "predictive_vs_oracle": p_rs / o_rs}
    s["goal_met"] = bool(
        pred and pred["slo_attainment"] >= SLO and s.get("predictive_vs_best_baseline", 9) <= 0.75
        and s.get("predictive_vs_oracle", 9) <= 1.2
    )
    return s


def azure(path: Path, out: Path, cold_starts, log) -> dict:
    load = build_load(load_trace(path), ServiceModel(), step=0.1)
    res = {"trace": path.name, "requests": int(load.counts.sum()), "cold_starts": {}}
    for cs in cold_starts:
        m = ReplicaModel(concurrency=8, cold_start=cs, min_replicas=1, max_replicas=1000, utilization=0.7)
        runs = [simulate(load, p, m, config=make_config(p, load, m)) for p in POLICIES]
        keep = ("slo_attainment", "latency_p50_s", "latency_p99_s", "replica_seconds", "seconds_under_provisioned", "scaling_actions", "cold_starts")
        res["cold_starts"][str(cs)] = {r.policy: {k: r.metrics[k] for k in keep} for r in runs}
        log(f"{path.name} cs={cs:g} done")
        plot_run(runs, out / f"autoscaling-{path.stem}-cs{cs:g}.png", f"{path.name}, cold start {cs:g}s, defaults (u=0.7)")
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--traces", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "traces"))
    ap.add_argument("--out", default="docs/benchmarks")
    ap.add_argument("--quick", action="store_true", help="cold start 30 s only, a 3-point grid")
    ap.add_argument("--servegen", default="m-large", help="comma-separated ServeGen models")
    args = ap.parse_args()
    traces = Path(args.traces)
    if not traces.exists():
        traces = Path("/work/shared/traces")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cold = (30.0,) if args.quick else (30.0, 120.0)
    grid = (0.7, 0.9, 1.0) if args.quick else GRID

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    report = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "model": {"service_time_s": 1.0, "concurrency": 8, "slo": "latency <= service time + 1 s", "step_s": 1.0,
                  "utilization_grid": grid, "fit": "days 1-7", "evaluate": "days 8-14"},
        "servegen": [servegen(traces / "servegen" / name, out, cold, grid, log) for name in args.servegen.split(",")],
        "azure": [azure(traces / f, out, cold, log) for f in ("azure-llm-2023-code.csv", "azure-llm-2023-conv.csv")],
    }
    report["seconds"] = time.perf_counter() - t0
    print(json.dumps(_finite(report), indent=1))


def _finite(x):
    """Strict JSON: an infinite latency (requests never served before the trace ended) is "inf"."""
    if isinstance(x, float) and x != x:
        return None
    if isinstance(x, float) and x in (float("inf"), float("-inf")):
        return "inf"
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


if __name__ == "__main__":
    main()
