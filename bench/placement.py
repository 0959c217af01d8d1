"""Benchmark placement over the shipped catalog (AWS + GCP + Azure); prints one JSON object.

    flock /tmp/cumulo-bench.lock nice python bench/placement.py [--requests 1000] [--repeat 7] [--seed 1]

Scenarios (each timed `--repeat` times, median and max reported, in ms, wall clock):
- rank: one `rank()` call over the full catalog for a GPU request and a small CPU request;
- batch_no_quota: `place_batch` of N requests drawn from 29 request shapes (GPU and CPU, half
  spot-allowed, 1-4 machines each), no quotas;
- batch_quota: the same N requests with binding per-region quotas (GPUs, vCPUs) on every region, so
  the MILP runs (checked: the greedy choice violates them);
- batch_quota_distinct: N requests that are all different (random vCPU/memory/count), binding quotas:
  the worst case for grouping identical requests.
The `local` offering is left out: it is one machine, not an unlimited pool.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np  # noqa: E402
import scipy  # noqa: E402

from cumulo.catalog import load_catalog  # noqa: E402
from cumulo.policy.placement import PlacementRequest, rank  # noqa: E402
from cumulo.policy.placement_batch import place_batch  # noqa: E402

SHAPES = ([{"accelerator": a} for a in ("T4", "T4:4", "L4", "L4:8", "A10G", "A10G:4", "V100:8", "A100", "A100:8",
                                         "A100-80GB:8", "H100:8")]
          + [{"cpu": v, "memory_gib": m} for v in (2, 4, 8, 16, 32, 64) for m in (4, 16, 64)])


def timed(fn, repeat: int) -> tuple[dict, object]:
    out, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        out.append((time.perf_counter() - t) * 1000)
    return {"median_ms": round(statistics.median(out), 2), "max_ms": round(max(out), 2),
            "min_ms": round(min(out), 2)}, result


def quarter_quotas(unconstrained, regions) -> dict:
    """Binding quotas: each region may hold at most a quarter of the vCPUs and GPUs that the
    unconstrained optimum uses in all (which packs them into the few cheapest regions)."""
    vcpus = sum(c.offering.vcpus * (c.total_hourly / c.hourly if c.hourly else 1) for c in unconstrained.assignments)
    gpus = sum(c.offering.accelerator_count * (c.total_hourly / c.hourly if c.hourly else 1)
               for c in unconstrained.assignments)
    return {loc: {"vcpus": round(vcpus / 4), "gpus": round(gpus / 4)} for loc in regions}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    catalog = load_catalog(["aws", "gcp", "azure"])
    regions = sorted({(o.provider, o.region) for o in catalog})
    shaped = [PlacementRequest(**rng.choice(SHAPES), spot=rng.random() < 0.5, count=rng.choice([1, 1, 2, 4]))
              for _ in range(a.requests)]
    distinct = [PlacementRequest(cpu=rng.randint(1, 64), memory_gib=round(rng.uniform(1, 256), 1),
                                 spot=rng.random() < 0.5, count=rng.randint(1, 3)) for _ in range(a.requests)]
    res: dict = {
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
                    "processor": platform.processor() or platform.machine(), "numpy": np.__version__,
                    "scipy": scipy.__version__},
        "catalog_offerings": len(catalog), "regions": len(regions), "requests": a.requests,
        "distinct_shapes": len({(r.cpu, r.memory_gib, r.accelerator, r.accelerator_count, r.count, r.spot) for r in shaped}),
    }
    gpu = PlacementRequest(accelerator="A100:8", spot=True)
    cpu = PlacementRequest(cpu=4, memory_gib=16)
    res["rank_gpu"], _ = timed(lambda: rank(gpu, catalog), a.repeat)
    res["rank_cpu"], _ = timed(lambda: rank(cpu, catalog), a.repeat)
    res["batch_no_quota"], free = timed(lambda: place_batch(shaped, catalog), a.repeat)
    res["batch_no_quota"]["total_hourly"] = round(free.total_hourly, 4)
    quotas = quarter_quotas(free, regions)
    res["batch_quota"], bound = timed(lambda: place_batch(shaped, catalog, quotas), a.repeat)
    res["batch_quota"]["total_hourly"] = round(bound.total_hourly, 4)
    res["batch_quota"]["quotas_bind"] = bound.total_hourly > free.total_hourly + 1e-6
    res["batch_quota"]["quota"] = quotas[regions[0]]
    free_d = place_batch(distinct, catalog)
    tight = quarter_quotas(free_d, regions)
    res["batch_quota_distinct"], bd = timed(lambda: place_batch(distinct, catalog, tight), a.repeat)
    res["batch_quota_distinct"]["total_hourly"] = round(bd.total_hourly, 4)
    res["batch_quota_distinct"]["quotas_bind"] = bd.total_hourly > free_d.total_hourly + 1e-6
    res["batch_quota_distinct"]["quota"] = tight[regions[0]]
    json.dump(res, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
