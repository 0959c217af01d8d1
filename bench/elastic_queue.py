"""A 24-hour training queue replayed in simulation against the node pool policy, vs fixed clusters.

    flock /tmp/cumulo-bench.lock nice python bench/elastic_queue.py [--seed 1] [--mean-gpus 40] [--out FILE]

Prints one JSON object (and writes it to --out). Every scenario sees the same jobs and the same
scheduler (FIFO with backfill: each tick, every queued job in arrival order starts on the first
ready node with the GPUs, CPUs and memory it needs; a job runs on one node); they differ only in
the machines:

- elastic: a NodePool over the shipped AWS catalog's us-east-1 A10G machines (g5.*), on demand,
  decided every tick by `policy.node_pools.decide_pool` (the code the control plane runs): the
  cheapest machines for the queued work no node holds, machines still booting counted, idle ones
  released after `idle_ttl`. A launched machine is billed from its launch and ready `--boot` s later.
- elastic-8gpu: the same policy limited to g5.48xlarge (8 GPUs), the fixed clusters' machine: the
  effect of elasticity alone, without the choice of machine.
- fixed-peak / fixed-mean: g5.48xlarge machines, always on, as many as the peak / the mean of the
  GPUs the jobs would hold if each started on arrival (the offered load), rounded up.

Where the numbers come from (no cluster trace is on this machine, and none is downloaded):
- Arrival times: a Poisson process whose rate follows a real day: the first 24 h of the ServeGen
  m-large production trace (Alibaba Bailian, Apache-2.0; /work/shared/traces/servegen/
  m-large-total.csv, per-600 s request rate), scaled so that the offered load averages
  `--mean-gpus` GPUs. That is an inference service's day, used for its diurnal shape only.
- Sizes: GPUs per job 1 / 2 / 4 / 8 with probabilities 0.70 / 0.10 / 0.12 / 0.08, in the spirit
  of the published GPU-cluster characterizations (Microsoft Philly, Jeon et al. ATC'19; SenseTime
  Helios, Hu et al. SC'21; Alibaba PAI, Weng et al. NSDI'22: most jobs ask for one GPU, multi-GPU
  jobs for powers of two). The exact mix is this script's choice, not a trace's (`--gpu-mix`).
  Each GPU comes with 3 vCPUs and 12 GiB.
- Durations: log-normal, median 20 min x sqrt(GPUs), sigma 1.4, between 1 min and 12 h: heavy
  tailed from minutes to hours, as those papers describe; again this script's parameters.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import random
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from cumulo.catalog import load_catalog  # noqa: E402
from cumulo.core.specs import NodePoolSpec  # noqa: E402
from cumulo.policy.capacity import Request  # noqa: E402
from cumulo.policy.clusters import ClusterView, NodeShape  # noqa: E402
from cumulo.policy.node_pools import PendingWork, PoolInput, PoolNode, decide_pool  # noqa: E402

GIB = 2**30
DAY = 24 * 3600
TRACE = Path(os.environ.get("CUMULO_SHARED", "/work/shared")) / "traces" / "servegen" / "m-large-total.csv"
T0 = datetime(2026, 11, 1, tzinfo=UTC)


@dataclass
class Job:
    id: int
    arrival: float
    gpus: int
    duration: float
    start: float | None = None

    @property
    def cpu(self) -> float:
        return 3.0 * self.gpus

    @property
    def memory(self) -> int:
        return 12 * GIB * self.gpus


@dataclass
class Machine:
    name: str
    itype: str
    cpu: float
    memory: int
    gpus: int
    price: float
    launched: float
    ready: float
    released: float | None = None
    running: list[Job] = field(default_factory=list)

    def free(self) -> tuple[float, int, int]:
        return (self.cpu - sum(j.cpu for j in self.running), self.memory - sum(j.memory for j in self.running),
                self.gpus - sum(j.gpus for j in self.running))


def diurnal_rate(path: Path) -> list[float]:
    """The first day of the trace: 144 relative rates (one per 600 s), mean 1."""
    with path.open() as f:
        rows = [float(r["total_rate_rps"]) for r in csv.DictReader(f)][:144]
    mean = sum(rows) / len(rows)
    return [r / mean for r in rows]


def make_jobs(seed: int, mean_gpus: float, mix: dict[int, float], shape: list[float]) -> list[Job]:
    rng = random.Random(seed)
    sizes, weights = list(mix), list(mix.values())

    def duration(g: int) -> float:
        return min(max(rng.lognormvariate(math.log(20 * 60 * math.sqrt(g)), 1.4), 60.0), 12 * 3600.0)

    # offered GPU load = arrival rate x E[gpus x duration]: estimate E[] by sampling, then scale
    sample = [(g := rng.choices(sizes, weights)[0]) * duration(g) for _ in range(200_000)]
    per_job = sum(sample) / len(sample)  # GPU-seconds per job
    base = mean_gpus / per_job  # jobs per second at relative rate 1
    jobs, t, i = [], 0.0, 0
    peak = max(shape)
    while True:  # thinning: a Poisson process at the peak rate, each arrival kept with rate(t)/peak
        t += rng.expovariate(base * peak)
        if t >= DAY:
            break
        if rng.random() <= shape[int(t // 600)] / peak:
            g = rng.choices(sizes, weights)[0]
            jobs.append(Job(i, t, g, duration(g)))
            i += 1
    return jobs


def offered_load(jobs: list[Job], step: float = 60.0) -> list[int]:
    """GPUs held per minute of the day if every job started on arrival."""
    n = int(DAY // step)
    load = [0] * n
    for j in jobs:
        for k in range(int(j.arrival // step), min(n, int((j.arrival + j.duration) // step) + 1)):
            load[k] += j.gpus
    return load


def schedule(queue: list[Job], machines: list[Machine], now: float) -> None:
    for j in list(queue):
        for m in machines:
            if m.released is None and m.ready <= now:
                cpu, mem, gpu = m.free()
                if gpu >= j.gpus and cpu + 1e-9 >= j.cpu and mem >= j.memory:
                    j.start = now
                    m.running.append(j)
                    queue.remove(j)
                    break


def simulate(jobs: list[Job], *, tick: float, fixed: tuple[object, int] | None = None, pool: NodePoolSpec | None = None,
             offerings: list | None = None, boot: float = 180.0, horizon: float = 4 * DAY) -> dict:
    jobs = [Job(j.id, j.arrival, j.gpus, j.duration) for j in jobs]
    machines: list[Machine] = []
    if fixed is not None:
        o, n = fixed
        machines = [Machine(f"fixed-{i}", o.instance_type, o.vcpus, int(o.memory_gib * GIB), o.accelerator_count,
                            o.price, 0.0, 0.0) for i in range(n)]
    pending = sorted(jobs, key=lambda j: j.arrival)
    queue: list[Job] = []
    idle_since: dict = {}
    seq = 1
    decisions = decide_s = 0.0
    now = 0.0
    while now < horizon:
        for m in machines:
            for j in [j for j in m.running if j.start + j.duration <= now]:
                m.running.remove(j)
        while pending and pending[0].arrival <= now:
            queue.append(pending.pop(0))
        schedule(queue, machines, now)
        if pool is not None:
            live = [m for m in machines if m.released is None]
            view = ClusterView("train", "ray", nodes=tuple(
                NodeShape(m.name, m.cpu, m.memory, m.gpus, "A10G", cpu_free=m.free()[0], memory_free=m.free()[1],
                          gpus_free=m.free()[2]) for m in live if m.ready <= now))
            inp = PoolInput(
                now=T0 + timedelta(seconds=now), spec=pool, offerings=tuple(offerings), cluster=view,
                nodes=tuple(PoolNode(m.name, "ready" if m.ready <= now else "launching", m.cpu, m.memory, m.gpus,
                                     "A10G", m.price, busy=bool(m.running), instance_type=m.itype) for m in live),
                pending=tuple(PendingWork(f"job:{j.id}", f"job {j.id}", Request(j.cpu, j.memory, j.gpus, 1)) for j in queue),
                idle_since=idle_since, next_seq=seq,
            )
            t = time.perf_counter()
            d = decide_pool(inp)
            decide_s += time.perf_counter() - t
            decisions += 1
            idle_since, seq = dict(d.idle_since), d.next_seq
            for launch in d.launches:
                o = launch.offering
                machines.append(Machine(launch.node, o.instance_type, o.vcpus, int(o.memory_gib * GIB),
                                        o.accelerator_count, launch.price, now, now + boot))
            by_name = {m.name: m for m in machines}
            for r in d.releases:
                by_name[r.node].released = now
        if not pending and not queue and all(not m.running for m in machines) and now >= DAY:
            break
        now += tick
    end = now
    for m in machines:
        if m.released is None:
            m.released = end if pool is not None else max(end, DAY)
    done = [j for j in jobs if j.start is not None]
    delays = sorted(j.start - j.arrival for j in done)
    unfinished = len(jobs) - len(done)

    def cost(until: float) -> float:
        return sum(m.price * max(min(m.released, until) - m.launched, 0.0) / 3600 for m in machines)

    gpu_hours = sum(m.gpus * (min(m.released, DAY) - m.launched) / 3600 for m in machines if m.launched < DAY)
    used_gpu_hours = sum(j.gpus * max(min(j.start + j.duration, DAY) - j.start, 0.0) / 3600 for j in done if j.start < DAY)
    return {
        "jobs": len(jobs), "started": len(done), "never_started": unfinished,
        "cost_24h": round(cost(DAY), 2), "cost_until_all_done": round(cost(end), 2),
        "all_done_after_h": round(end / 3600, 2),
        "mean_queue_delay_s": round(sum(delays) / len(delays), 1) if delays else None,
        "p50_queue_delay_s": round(delays[len(delays) // 2], 1) if delays else None,
        "p95_queue_delay_s": round(delays[int(len(delays) * 0.95)], 1) if delays else None,
        "max_queue_delay_s": round(delays[-1], 1) if delays else None,
        "gpu_utilization_24h": round(used_gpu_hours / gpu_hours, 3) if gpu_hours else None,
        "machines_launched": len(machines),
        "peak_machines": max_concurrent(machines),
        **({"decisions": int(decisions), "decide_ms_mean": round(1000 * decide_s / decisions, 2)} if decisions else {}),
    }


def max_concurrent(machines: list[Machine]) -> int:
    points = sorted([(m.launched, 1) for m in machines] + [(m.released, -1) for m in machines], key=lambda p: (p[0], p[1]))
    n = best = 0
    for _, d in points:
        n += d
        best = max(best, n)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--mean-gpus", type=float, default=40.0, help="offered load: GPUs busy on average")
    ap.add_argument("--gpu-mix", default="1:0.70,2:0.10,4:0.12,8:0.08")
    ap.add_argument("--tick", type=float, default=30.0, help="seconds between scheduler and pool passes")
    ap.add_argument("--boot", type=float, default=180.0, help="seconds from launch to a machine that runs work")
    ap.add_argument("--idle-ttl", type=float, default=600.0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    mix = {int(k): float(v) for k, v in (p.split(":") for p in args.gpu_mix.split(","))}
    shape = diurnal_rate(TRACE)
    jobs = make_jobs(args.seed, args.mean_gpus, mix, shape)
    load = offered_load(jobs)
    catalog = [o for o in load_catalog() if o.provider == "aws" and o.region == "us-east-1"
               and o.instance_type.startswith("g5.")]
    big = min((o for o in catalog if o.instance_type == "g5.48xlarge"), key=lambda o: o.price)
    peak_nodes = math.ceil(max(load) / big.accelerator_count)
    mean_nodes = math.ceil(sum(load) / len(load) / big.accelerator_count)
    common = dict(cluster="train", providers=["aws"], regions=["us-east-1"], spot="never", max_nodes=200,
                  idle_ttl=args.idle_ttl)
    elastic = NodePoolSpec(name="elastic", instance_types=sorted({o.instance_type for o in catalog}), **common)
    elastic8 = NodePoolSpec(name="elastic8", instance_types=["g5.48xlarge"], **common)
    t = time.perf_counter()
    results = {
        "elastic": simulate(jobs, tick=args.tick, pool=elastic, offerings=catalog, boot=args.boot),
        "elastic-8gpu": simulate(jobs, tick=args.tick, pool=elastic8, offerings=catalog, boot=args.boot),
        "fixed-peak": simulate(jobs, tick=args.tick, fixed=(big, peak_nodes)) | {"machines": peak_nodes},
        "fixed-mean": simulate(jobs, tick=args.tick, fixed=(big, mean_nodes)) | {"machines": mean_nodes},
    }
    out = {
        "bench": "elastic_queue",
        "workload": {
            "seed": args.seed, "jobs": len(jobs), "gpu_mix": mix, "mean_gpus_offered": round(sum(load) / len(load), 1),
            "peak_gpus_offered": max(load), "gpu_hours_offered": round(sum(j.gpus * j.duration for j in jobs) / 3600, 1),
            "arrival_shape": f"{TRACE.name}, first 144 windows of 600 s (ServeGen m-large, Alibaba Bailian)",
            "median_duration_min_1gpu": 20, "duration_sigma": 1.4,
        },
        "settings": {"tick_s": args.tick, "boot_s": args.boot, "idle_ttl_s": args.idle_ttl,
                     "fixed_machine": f"{big.instance_type} ${big.price}/h", "elastic_types": elastic.instance_types},
        "results": results,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "wall_s": round(time.perf_counter() - t, 1),
    }
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
