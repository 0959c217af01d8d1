"""Benchmark the scale-up decision: what to launch for 1,000 pending requests over the full catalog
under binding provider quotas, at the exact optimum (policy/placement_batch). Prints one JSON object.

    flock /tmp/cumulo-bench.lock nice python bench/elastic_decision.py [--requests 1000] [--repeat 15] \
        [--seed 1] [--compare REF]

The catalog is every cloud offering shipped as package data (every provider but `local`, which is
this one machine, not a pool to launch from). Pending requests are machines for pending work, each
one node: a seeded mix of CPU workers (1-64 vCPUs, 2-256 GiB) and GPU workers (T4, L4, A10G, V100,
A100, A100-80GB, H100; 1-8 GPUs), half of them allowed to use spot. Provider quotas are set the way
the clouds set them, per (provider, region): vCPUs of on-demand machines, vCPUs of spot machines,
and GPUs, on every region, at two levels (checked: the unconstrained optimum breaks them, and the
constrained optimum costs more):
- `binding`: each a quarter of what the unconstrained optimum uses in all regions together;
- `tight`: each a quarter of what the unconstrained optimum puts in its busiest region (GPU
  machines exist in few regions, so this is close to infeasible: a hard knapsack in each region).

Demand, each timed `--repeat` times at both levels (wall clock median / min / max and CPU time
median / min, in ms):
- `shapes`: the requests above (a few dozen distinct shapes, as pending work has);
- `distinct`: 1,000 all-different CPU requests (random vCPUs and memory): the worst case for
  grouping identical requests.
`--compare REF` also times `place_batch` as it is in git revision REF in the same run, and checks
that both reach the same total $/h.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np
import scipy

from cumulo.catalog import PROVIDERS, load_catalog
from cumulo.policy.placement import PlacementRequest
from cumulo.policy.placement_batch import place_batch

GPUS = [("T4", (1, 4)), ("L4", (1, 8)), ("A10G", (1, 4)), ("V100", (1, 8)), ("A100", (1, 8)),
        ("A100-80GB", (8,)), ("H100", (8,))]


def pending(rng: random.Random, n: int) -> list[PlacementRequest]:
    out = []
    for _ in range(n):
        spot = rng.random() < 0.5
        if rng.random() < 0.3:
            name, counts = rng.choice(GPUS)
            out.append(PlacementRequest(accelerator=f"{name}:{rng.choice(counts)}", spot=spot))
        else:
            cpu = rng.choice([1, 2, 4, 8, 16, 32, 64])
            out.append(PlacementRequest(cpu=cpu, memory_gib=cpu * rng.choice([2, 4, 8]), spot=spot))
    return out


def distinct(rng: random.Random, n: int) -> list[PlacementRequest]:
    return [PlacementRequest(cpu=rng.randint(1, 64), memory_gib=round(rng.uniform(1, 256), 1), spot=rng.random() < 0.5)
            for _ in range(n)]


KEYS = ("on-demand:vcpus", "spot:vcpus", "gpus")


def cloud_quotas(free, regions, level: str) -> dict:
    """Per region: on-demand vCPUs, spot vCPUs and GPUs, each a quarter of what the unconstrained
    optimum uses in all ("binding") or in its busiest region ("tight")."""
    use: dict = {}
    for c in free.assignments:
        u = use.setdefault((c.offering.provider, c.offering.region), dict.fromkeys(KEYS, 0.0))
        u["spot:vcpus" if c.spot else "on-demand:vcpus"] += c.offering.vcpus
        u["gpus"] += c.offering.accelerator_count
    pick = sum if level == "binding" else max
    base = {k: pick(u[k] for u in use.values()) for k in KEYS}
    return {loc: {k: max(1.0, round(v / 4)) for k, v in base.items()} for loc in regions}


def violated(placement, quotas) -> bool:
    from cumulo.policy.quota import quota_usage

    used: dict = {}
    for c in placement.assignments:
        loc = (c.offering.provider, c.offering.region)
        for k in quotas.get(loc, {}):
            used[(loc, k)] = used.get((loc, k), 0.0) + quota_usage(k, c.offering, c.spot)
    return any(v > quotas[loc][k] + 1e-9 for (loc, k), v in used.items())


def timed(fn, repeat: int) -> tuple[dict, object]:
    """Wall clock and CPU time (this process, all threads) per call. On a machine shared with other
    work the CPU time is what the decision itself costs; the wall clock includes waiting for a core."""
    out, cpu, result = [], [], None
    fn()  # warm: imports, caches
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        result = fn()
        out.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
    return {"median_ms": round(statistics.median(out), 2), "min_ms": round(min(out), 2),
            "max_ms": round(max(out), 2), "cpu_median_ms": round(statistics.median(cpu), 2),
            "cpu_min_ms": round(min(cpu), 2)}, result


def load_ref(ref: str):
    """`place_batch` as it is in git revision `ref` (its module loaded beside this one)."""
    text = subprocess.run(["git", "-C", str(ROOT), "show", f"{ref}:src/cumulo/policy/placement_batch.py"],
                          check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "placement_batch_ref.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("cumulo.policy._placement_batch_ref", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod.place_batch


def machine() -> dict:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cpus": os.cpu_count(), "load_1m": round(os.getloadavg()[0], 2),
            "python": platform.python_version(), "platform": platform.platform(), "numpy": np.__version__,
            "scipy": scipy.__version__}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--compare", metavar="REF", help="also time place_batch from this git revision")
    a = ap.parse_args()
    providers = [p for p in PROVIDERS if p != "local"]
    catalog = load_catalog(providers)
    regions = sorted({(o.provider, o.region) for o in catalog})
    rng = random.Random(a.seed)
    res: dict = {"machine": machine(), "providers": providers, "catalog_offerings": len(catalog),
                 "regions": len(regions), "requests": a.requests, "repeat": a.repeat, "seed": a.seed, "goal_ms": 100}
    ref = load_ref(a.compare) if a.compare else None
    demands = (("shapes", pending(rng, a.requests)), ("distinct", distinct(rng, a.requests)))
    for name, requests in demands:
        free = place_batch(requests, catalog)
        for level in ("binding", "tight"):
            quotas = cloud_quotas(free, regions, level)
            timing, bound = timed(lambda r=requests, q=quotas: place_batch(r, catalog, q), a.repeat)
            row = {"distinct_requests": len(set(requests)), **timing, "total_hourly": round(bound.total_hourly, 4),
                   "unconstrained_total_hourly": round(free.total_hourly, 4),
                   "quotas_bind": violated(free, quotas) and bound.total_hourly > free.total_hourly + 1e-6,
                   "quota_per_region": quotas[regions[0]], "within_quotas": not violated(bound, quotas),
                   "meets_goal_wall": timing["median_ms"] <= 100, "meets_goal_cpu": timing["cpu_median_ms"] <= 100}
            if ref is not None:
                ref_timing, ref_bound = timed(lambda r=requests, q=quotas: ref(r, catalog, q), a.repeat)
                row["ref"] = {"rev": a.compare, **ref_timing, "total_hourly": round(ref_bound.total_hourly, 4),
                              "same_total": abs(ref_bound.total_hourly - bound.total_hourly) < 1e-6}
            res[f"{name}_{level}"] = row
    res["machine"]["load_1m_after"] = round(os.getloadavg()[0], 2)
    json.dump(res, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
