"""Autoscaling benchmark: leave-one-trace-out choice of the predictive policy's parameters. Prints JSON.

    PYTHONPATH=src nice -n 15 python bench/autoscaling.py --out docs/benchmarks --cache /tmp/pred-cache \\
        > docs/benchmarks/autoscaling.json

Four traces, each split into a fitting part and a reported part: ServeGen m-large and m-mid (14
days; days 1-7 fit, days 8-14 reported) and the two Azure LLM 2023 traces (~1 h; the first 1,800 s
fit, the rest, ~28 min, reported). Every policy is swept over the per-replica target ``u`` (the
same axis for all); on each part a policy's cost is its replica-seconds at exactly 99 % SLO, read off
its sweep (``at_slo``). The predictive policy has a few candidate settings (``CANDIDATES``); for each
trace (fold) the candidate with the lowest mean ratio to the best baseline *on the other traces'
fitting parts* is chosen and reported on the held-out trace's reported part. The shipped default is
the candidate chosen on all four traces' fitting parts. Runs are cached on disk (``--cache``): a
rerun only simulates what changed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from cumulo.sim.load import ServiceModel, build_load
from cumulo.sim.model import ReplicaModel, make_config, simulate
from cumulo.sim.traces import load_trace

BASELINES = ["hpa", "kpa", "rayserve", "skyserve"]
#: Ray Serve is the slowest policy to simulate (9 s per m-large week pair) and was never the best
#: baseline on ServeGen (docs/benchmarks/autoscaling.md history): it runs on the Azure traces only
SERVEGEN_BASELINES = ["hpa", "kpa", "skyserve"]
DAY = 86400.0
SLO = 0.99
#: the traces: (name, path under the traces folder, simulation step s, where the reported part starts s)
TRACES = {
    "m-large": ("servegen/m-large", 1.0, 7 * DAY),
    "m-mid": ("servegen/m-mid", 1.0, 7 * DAY),
    "azure-code": ("azure-llm-2023-code.csv", 0.1, 1800.0),
    "azure-conv": ("azure-llm-2023-conv.csv", 0.1, 1800.0),
}
GRIDS = {
    "servegen": (0.6, 0.7, 0.8, 0.9, 1.0),
    "azure": (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
}
#: the predictive policy's candidate settings (overrides of PredictiveConfig); "mean+2sigma" is
#: PredictiveConfig()'s default (see docs/benchmarks/autoscaling.md for how it was chosen)
CANDIDATES = {
    "mean+2sigma": {"coverage": None},
    "conformal-0.9": {"coverage": 0.9},
    "conformal-0.98": {"coverage": 0.98},
}


def _baselines(name: str) -> list[str]:
    return BASELINES if name.startswith("azure") else SERVEGEN_BASELINES


def _grid(name: str) -> tuple[float, ...]:
    return GRIDS["azure" if name.startswith("azure") else "servegen"]


def _load(traces: Path, name: str, cache: Path):
    f = cache / f"load-{name}.pkl"
    if f.exists():
        with f.open("rb") as fh:
            return pickle.load(fh)
    rel, step, _ = TRACES[name]
    sm = ServiceModel(service_time=1.0) if rel.startswith("servegen") else ServiceModel()
    load = build_load(load_trace(traces / rel), sm, step=step, seed=0)
    with f.open("wb") as fh:
        pickle.dump(load, fh)
    return load


def _code_version() -> str:
    """Runs are cached per version of the policies and the simulator."""
    root = Path(__file__).resolve().parents[1] / "src" / "cumulo"
    h = hashlib.sha256()
    for sub in ("policy/autoscaling", "sim"):
        for p in sorted((root / sub).glob("*.py")):
            h.update(p.read_bytes())
    return h.hexdigest()[:12]


def _job(args) -> dict:
    traces, cache, name, policy, cand, u, cs, version = args
    key = hashlib.sha256(json.dumps([version, name, policy, cand, u, cs]).encode()).hexdigest()[:20]
    f = cache / "runs" / f"{key}.json"
    if f.exists():
        return json.loads(f.read_text())
    load = _load(traces, name, cache)
    m = ReplicaModel(concurrency=8, cold_start=cs, min_replicas=1, max_replicas=1000, utilization=u)
    over = CANDIDATES[cand] if policy == "predictive" else {}
    t0 = time.perf_counter()
    r = simulate(load, policy, m, config=make_config(policy, load, m, over), eval_from=TRACES[name][2])
    out = {"trace": name, "policy": policy, "candidate": cand, "u": u, "cold_start": cs,
           "slo": r.metrics["slo_attainment"], "rs": r.metrics["replica_seconds"],
           "fit_slo": r.metrics["fit"]["slo_attainment"], "fit_rs": r.metrics["fit"]["replica_seconds"],
           "p99": r.metrics["latency_p99_s"], "actions": r.metrics["scaling_actions"],
           "seconds": time.perf_counter() - t0}
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(json.dumps(_finite(out)))
    print(f"{name} cs={cs:g} {policy}{'/' + cand if cand else ''} u={u}: {out['seconds']:.0f}s "
          f"slo={out['slo']:.4f} rs={out['rs']:.4g} fit_slo={out['fit_slo']:.4f}", file=sys.stderr, flush=True)
    return out


def at_slo(rows: list[dict], part: str = "", slo: float = SLO) -> float | None:
    """Replica-seconds at exactly ``slo`` on one part (``""``: reported, ``"fit_"``: fitting), read
    off the sweep: linear between the cheapest utilization that meets it and the next one up when
    that one misses it (None if none meets it)."""
    rows = sorted(rows, key=lambda x: x["u"])
    s, r = part + "slo", part + "rs"
    ok = [i for i, x in enumerate(rows) if x[s] is not None and x[s] >= slo]
    if not ok:
        return None
    i = min(ok, key=lambda j: rows[j][r])
    if i + 1 < len(rows) and rows[i + 1][s] is not None and rows[i + 1][s] < slo:
        a, b = rows[i], rows[i + 1]
        f = (a[s] - slo) / (a[s] - b[s])
        return a[r] + f * (b[r] - a[r])
    return rows[i][r]


def _ratio(a, b):
    return a / b if a is not None and b else None


def leave_one_out(costs: dict, cs: float) -> dict:
    """``costs[trace][policy or predictive/cand][part]``: replica-seconds at 99 %. Per fold: the
    candidate with the lowest mean (fit-part cost / best baseline's fit-part cost) over the other
    traces, and its reported-part ratios on the held-out trace."""
    def best_baseline(c, part):
        vals = [(c[p][part], p) for p in BASELINES if p in c and c[p][part] is not None]
        return min(vals) if vals else (None, None)

    def score(cand, names):
        ratios = []
        for n in names:
            b, _ = best_baseline(costs[n], "fit")
            if b is None:
                continue  # no baseline reaches 99 % on this fitting part: it cannot rank candidates
            mine = costs[n][f"predictive/{cand}"]["fit"]
            ratios.append(mine / b if mine is not None else 2.0)  # missing 99 % counts as 2x
        return sum(ratios) / len(ratios) if ratios else float("inf")

    names = list(costs)
    folds = {}
    for held in names:
        others = [n for n in names if n != held]
        scores = {c: score(c, others) for c in CANDIDATES}
        choice = min(scores, key=lambda c: (scores[c], list(CANDIDATES).index(c)))
        c = costs[held]
        b, bp = best_baseline(c, "eval")
        mine = c[f"predictive/{choice}"]["eval"]
        folds[held] = {
            "chosen": choice, "fit_scores": scores, "best_baseline": bp, "best_baseline_rs": b,
            "predictive_rs": mine, "kpa_rs": c["kpa"]["eval"], "oracle_rs": c["oracle"]["eval"],
            "vs_best_baseline": _ratio(mine, b), "vs_kpa": _ratio(mine, c["kpa"]["eval"]),
            "vs_oracle": _ratio(mine, c["oracle"]["eval"]), "oracle_vs_kpa": _ratio(c["oracle"]["eval"], c["kpa"]["eval"]),
            "oracle_vs_best_baseline": _ratio(c["oracle"]["eval"], b),
            "every_candidate_vs_best_baseline": {k: _ratio(c[f"predictive/{k}"]["eval"], b) for k in CANDIDATES},
        }
    all_scores = {c: score(c, names) for c in CANDIDATES}
    shipped = min(all_scores, key=lambda c: (all_scores[c], list(CANDIDATES).index(c)))

    def mean(key):
        vals = [f[key] for f in folds.values() if f[key] is not None]
        return sum(vals) / len(vals) if vals else None

    return {"cold_start": cs, "folds": folds, "chosen_on_all_fit_parts": shipped, "all_fit_scores": all_scores,
            "mean": {k: mean(k) for k in ("vs_best_baseline", "vs_kpa", "vs_oracle", "oracle_vs_kpa", "oracle_vs_best_baseline")}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--traces", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "traces"))
    ap.add_argument("--out", default="docs/benchmarks")
    ap.add_argument("--cache", default="/tmp/pred-cache")
    ap.add_argument("--cold-starts", default="120", help="comma-separated seconds")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--traces-only", default=",".join(TRACES), help="comma-separated subset of " + ",".join(TRACES))
    args = ap.parse_args()
    traces = Path(args.traces)
    if not traces.exists():
        traces = Path("/work/shared/traces")
    out, cache = Path(args.out), Path(args.cache)
    out.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    names = args.traces_only.split(",")
    colds = [float(x) for x in args.cold_starts.split(",")]
    version = _code_version()
    for n in names:
        _load(traces, n, cache)
    jobs = []
    # the slowest runs (m-mid) first, so that the pool's tail is short
    for n in sorted(names, key=lambda n: n != "m-mid"):
        for cs in colds:
            for u in _grid(n):
                for p in _baselines(n) + ["oracle"]:
                    jobs.append((traces, cache, n, p, "", u, cs, version))
                for cand in CANDIDATES:
                    jobs.append((traces, cache, n, "predictive", cand, u, cs, version))
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        rows = list(pool.map(_job, jobs))
    report = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "model": {"service_time_s": "1 (ServeGen); 0.05 + 0.0002 x input + 0.02 x output tokens (Azure)",
                  "concurrency": 8, "slo": "latency <= service time + 1 s", "target": SLO,
                  "parts": {n: {"step_s": TRACES[n][1], "reported_from_s": TRACES[n][2]} for n in names},
                  "grids": {n: _grid(n) for n in names}, "candidates": CANDIDATES},
        "runs": rows,
        "cold_starts": {},
    }
    for cs in colds:
        costs: dict = {}
        for n in names:
            c = costs.setdefault(n, {})
            for p in _baselines(n) + ["oracle"]:
                rr = [r for r in rows if r["trace"] == n and r["policy"] == p and r["cold_start"] == cs]
                c[p] = {"fit": at_slo(rr, "fit_"), "eval": at_slo(rr)}
            for cand in CANDIDATES:
                rr = [r for r in rows if r["trace"] == n and r["policy"] == "predictive" and r["candidate"] == cand and r["cold_start"] == cs]
                c[f"predictive/{cand}"] = {"fit": at_slo(rr, "fit_"), "eval": at_slo(rr)}
        report["cold_starts"][str(cs)] = {"at_99": costs, "leave_one_out": leave_one_out(costs, cs)}
        _plots(rows, report["cold_starts"][str(cs)], out, cs, names)
    report["seconds"] = time.perf_counter() - t0
    print(json.dumps(_finite(report), indent=1))


def _plots(rows, res, out: Path, cs: float, names) -> None:
    try:
        from cumulo.sim.plot import _pyplot
    except ImportError:  # pragma: no cover - matplotlib is the 'sim' extra
        return
    plt = _pyplot()
    loo = res["leave_one_out"]
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.6))
    for ax, n in zip(axes, names, strict=True):
        shown = _baselines(n) + ["oracle"] + [f"predictive/{loo['folds'][n]['chosen']}"]
        for label in shown:
            pol, _, cand = label.partition("/")
            rr = sorted((r for r in rows if r["trace"] == n and r["policy"] == pol and r["candidate"] == cand and r["cold_start"] == cs and r["slo"] is not None),
                        key=lambda r: r["u"])
            ax.plot([r["rs"] / 3600 for r in rr], [100 * r["slo"] for r in rr], marker="o", ms=3, label=label)
        ax.axhline(99, color="grey", lw=0.8, ls="--")
        ax.set_ylim(90, 100.2)
        ax.set_title(f"{n} (reported part)", fontsize=9)
        ax.set_xlabel("replica-hours")
    axes[0].set_ylabel("SLO attainment %")
    axes[-1].legend(fontsize=7)
    fig.suptitle(f"cost vs SLO over u, cold start {cs:g}s (predictive: the setting chosen without that trace)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / f"autoscaling-loo-cs{cs:g}-sweeps.png", dpi=110)
    plt.close(fig)


def _finite(x):
    """Strict JSON: nan is null, an infinite latency "inf"."""
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
