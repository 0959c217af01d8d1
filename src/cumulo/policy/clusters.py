"""Which cluster a workload runs on. Pure: what each cluster has and holds goes in, a choice or the
reason there is none comes out.

`local` is this machine (GPU indices assigned here, as before). An engine's cluster (Ray, Slurm) is
a set of nodes the engine reports; the engine places the workers and assigns GPUs, so here a
request fits such a cluster when its workers can be packed onto the nodes (`pack`), or land one per
node (`spread`), in whole workers, and its total fits beside what cumulo's own work there holds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from cumulo.core.units import format_memory
from cumulo.policy.capacity import Allocation, Capacity, Request, allocate, describe, gpu_type_matches, never_fits

LOCAL = "local"


@dataclass(frozen=True)
class NodeShape:
    """One engine node: what it has, and what the engine says is free (None: not said)."""

    name: str
    cpu: float
    memory: int
    gpus: int = 0
    gpu_type: str | None = None
    alive: bool = True
    cpu_free: float | None = None
    memory_free: int | None = None
    gpus_free: int | None = None


@dataclass(frozen=True)
class ClusterView:
    name: str
    kind: str  # local | ray | slurm
    reachable: bool = True
    reason: str = ""  # why it is unreachable
    nodes: tuple[NodeShape, ...] = ()
    #: the local node's capacity (with GPU indices); None for an engine's cluster
    capacity: Capacity | None = None
    gpu_names: tuple[str, ...] = ()  # the local node's GPUs


def _slots(request: Request, cpu: float, memory: int, gpus: int, gpu_type: str | None = None) -> int:
    """How many workers of the request fit in this much (of GPUs of this type)."""
    if request.gpu > 0 and not gpu_type_matches(request.gpu_type, [gpu_type]):
        return 0
    n = math.floor((cpu + 1e-9) / request.cpu) if request.cpu > 0 else request.workers
    n = min(n, memory // request.memory) if request.memory > 0 else n
    if request.gpu > 0:
        n = min(n, gpus // request.gpu)
    return max(0, n)


def _fits_nodes(request: Request, placement: str, slots: Sequence[int]) -> bool:
    if placement == "spread":
        return sum(1 for k in slots if k >= 1) >= request.workers
    return sum(slots) >= request.workers


def _shape(request: Request, placement: str) -> str:
    gpu = f", {request.gpu} {request.gpu_type + ' ' if request.gpu_type else ''}GPU" if request.gpu else ""
    worker = f"{request.cpu:g} CPU, {format_memory(request.memory)}{gpu}"
    if request.workers == 1:
        return worker
    how = "one per node" if placement == "spread" else "packed"
    return f"{request.workers} workers of {worker} ({how})"


def _as_engine_gives(request: Request, c: ClusterView) -> Request:
    """Slurm allocates whole CPUs per task (--cpus-per-task): 0.1 CPU holds 1 there."""
    if c.kind == "slurm" and request.cpu != math.ceil(request.cpu):
        return replace(request, cpu=float(math.ceil(request.cpu)))
    return request


def _engine_never(request: Request, placement: str, c: ClusterView) -> str | None:
    request = _as_engine_gives(request, c)
    if not c.nodes:
        return None if not c.reachable else f"{c.name}: has no nodes"
    slots = [_slots(request, n.cpu, n.memory, n.gpus, n.gpu_type) for n in c.nodes]
    if _fits_nodes(request, placement, slots):
        return None
    biggest = max(c.nodes, key=lambda n: (n.gpus, n.cpu, n.memory))
    return (f"{c.name}: {_shape(request, placement)} never fit its {len(c.nodes)} node(s) "
            f"(largest: {biggest.cpu:g} CPU, {format_memory(biggest.memory)}, {biggest.gpus} GPU)")


def never_fits_anywhere(request: Request, placement: str, clusters: Sequence[ClusterView]) -> str | None:
    """Why the request is larger than every cluster (refused at submit), or None. A cluster whose
    nodes are not known yet (just added, unreachable) might fit: it does not refuse."""
    reasons = []
    for c in clusters:
        if c.kind == LOCAL:
            if c.capacity is None:
                return None
            why = never_fits(request, c.capacity) or _local_gpu_type(request, c)
            if why is None and placement == "spread" and request.workers > 1:
                why = f"placement: spread needs {request.workers} nodes but this machine is one node"
            if why is None:
                return None
            reasons.append(f"{c.name}: {why}")
        else:
            why = _engine_never(request, placement, c)
            if why is None:
                return None
            reasons.append(why)
    return "; ".join(reasons) if reasons else "no cluster to run on"


def _engine_now(request: Request, placement: str, c: ClusterView, used: Sequence[Allocation]) -> tuple[float, str]:
    """(how loaded the cluster would be after this, "") if the request fits now, else (inf, why not)."""
    request = _as_engine_gives(request, c)
    if not c.reachable:
        return math.inf, f"{c.name}: unreachable ({c.reason})" if c.reason else f"{c.name}: unreachable"
    alive = [n for n in c.nodes if n.alive]
    if not alive:
        return math.inf, f"{c.name}: no live nodes"
    total_cpu = sum(n.cpu for n in alive)
    total_mem = sum(n.memory for n in alive)
    total_gpu = sum(n.gpus for n in alive if gpu_type_matches(request.gpu_type, [n.gpu_type]))
    held = [a for a in used if a.cluster == c.name]
    free_cpu = total_cpu - sum(a.cpu for a in held)
    free_mem = total_mem - sum(a.memory for a in held)
    free_gpu = total_gpu - sum(a.gpu_count for a in held)
    short = []
    if request.total_cpu > free_cpu + 1e-9:
        short.append(f"{request.total_cpu:g} CPU ({max(free_cpu, 0):g} free)")
    if request.total_memory > free_mem:
        short.append(f"{format_memory(request.total_memory)} memory ({format_memory(max(free_mem, 0))} free)")
    if request.total_gpu > free_gpu:
        short.append(f"{request.total_gpu} GPU ({max(free_gpu, 0)} free)")
    if not short:
        # the engine's own view of each node (it lags a launch by a moment; the engine queues then)
        slots = [
            _slots(request,
                   n.cpu if n.cpu_free is None else n.cpu_free,
                   n.memory if n.memory_free is None else n.memory_free,
                   n.gpus if n.gpus_free is None else n.gpus_free, n.gpu_type)
            for n in alive
        ]
        if not _fits_nodes(request, placement, slots):
            short.append(f"{_shape(request, placement)} on its nodes as they are now")
    if short:
        return math.inf, f"{c.name}: needs " + ", ".join(short)
    load = max(
        (total_cpu - free_cpu + request.total_cpu) / total_cpu if total_cpu else 0.0,
        (total_gpu - free_gpu + request.total_gpu) / total_gpu if total_gpu else 0.0,
    )
    return load, ""


def choose(
    request: Request,
    placement: str,
    clusters: Sequence[ClusterView],
    used: Sequence[Allocation],
    *,
    only: str | None = None,
) -> Allocation | str:
    """Where the request runs now: an Allocation (its `cluster` says which), or why it must wait,
    naming each cluster's shortfall. `local` first when it fits, then the least loaded."""
    candidates = [c for c in clusters if only is None or c.name == only]
    if not candidates:
        return f"cluster {only!r} does not exist (`cumulo cluster list` shows the clusters)"
    reasons: list[str] = []
    best: tuple[float, str, ClusterView] | None = None
    for c in candidates:
        if c.kind == LOCAL:
            if not c.reachable:  # cordoned: no new work here until it is uncordoned
                reasons.append(f"{c.name}: {c.reason or 'unavailable'}")
                continue
            if c.capacity is None:
                reasons.append(f"{c.name}: waiting for the node to report its capacity")
                continue
            if placement == "spread" and request.workers > 1:
                reasons.append(f"{c.name}: placement: spread needs {request.workers} nodes; this machine is one")
                continue
            wrong_type = _local_gpu_type(request, c)
            if wrong_type:
                if len(candidates) == 1:
                    return wrong_type
                reasons.append(f"{c.name}: {wrong_type}")
                continue
            fit = allocate(request, c.capacity, list(used))
            if isinstance(fit, Allocation) or len(candidates) == 1:
                return fit  # local first (alone, its reason as it always was)
            reasons.append(f"{c.name}: {fit.removeprefix('waiting for resources: ')}")
            continue
        load, why = _engine_now(request, placement, c, used)
        if why:
            reasons.append(why)
        elif best is None or (load, c.name) < (best[0], best[1]):
            best = (load, c.name, c)
    if best is not None:
        held = _as_engine_gives(request, best[2])
        return Allocation(cpu=held.total_cpu, memory=held.total_memory, cluster=best[2].name, gpu=held.total_gpu)
    return "waiting for resources: " + "; ".join(reasons)


def describe_cluster(c: ClusterView) -> str:
    if c.capacity is not None:
        return describe(c.capacity)
    alive = [n for n in c.nodes if n.alive]
    return (f"{len(alive)} node(s), {sum(n.cpu for n in alive):g} CPU, "
            f"{format_memory(sum(n.memory for n in alive))} memory, {sum(n.gpus for n in alive)} GPU")


def still_fits_engine(new: Sequence[Allocation], c: ClusterView, used: Sequence[Allocation]) -> bool:
    """Whether allocations decided earlier on an engine's cluster still fit its live nodes beside
    what cumulo's work there holds now (re-checked at commit)."""
    alive = [n for n in c.nodes if n.alive]
    held = [a for a in (*used, *new) if a.cluster == c.name]
    return (
        c.reachable
        and sum(a.cpu for a in held) <= sum(n.cpu for n in alive) + 1e-9
        and sum(a.memory for a in held) <= sum(n.memory for n in alive)
        and sum(a.gpu_count for a in held) <= sum(n.gpus for n in alive)
    )


def _local_gpu_type(request: Request, c: ClusterView) -> str | None:
    if request.gpu == 0 or gpu_type_matches(request.gpu_type, c.gpu_names):
        return None
    have = ", ".join(sorted(set(c.gpu_names))) or "none"
    return f"asks for {request.gpu_type} GPUs but this machine's GPUs are: {have}"
