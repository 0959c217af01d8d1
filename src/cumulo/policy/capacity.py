"""Does a request fit a node, now or ever, and which GPUs does it get. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from cumulo.core.units import format_memory


@dataclass(frozen=True)
class Request:
    """Per-worker resources times the number of workers (all on one node)."""

    cpu: float
    memory: int
    gpu: int
    workers: int = 1
    gpu_type: str | None = None

    @property
    def total_cpu(self) -> float:
        return self.cpu * self.workers

    @property
    def total_memory(self) -> int:
        return self.memory * self.workers

    @property
    def total_gpu(self) -> int:
        return self.gpu * self.workers


@dataclass(frozen=True)
class Capacity:
    cpu: float
    memory: int
    gpus: tuple[int, ...] = ()


@dataclass(frozen=True)
class Allocation:
    """What one attempt holds: CPU and memory in total, and each worker's GPU indices (on the local
    node; on an engine's cluster the engine picks the GPUs and only their number is known here)."""

    cpu: float
    memory: int
    worker_gpus: tuple[tuple[int, ...], ...] = ()
    cluster: str = "local"
    gpu: int = 0  # GPUs in total, where the engine assigns them (worker_gpus is then empty)

    @property
    def gpus(self) -> tuple[int, ...]:
        return tuple(g for worker in self.worker_gpus for g in worker)

    @property
    def gpu_count(self) -> int:
        return self.gpu or len(self.gpus)

    def to_dict(self) -> dict:
        d = {"cpu": self.cpu, "memory": self.memory, "worker_gpus": [list(g) for g in self.worker_gpus]}
        if self.cluster != "local":
            d.update(cluster=self.cluster, gpu=self.gpu)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Allocation:
        return cls(cpu=d["cpu"], memory=d["memory"], worker_gpus=tuple(tuple(g) for g in d.get("worker_gpus", [])),
                   cluster=d.get("cluster", "local"), gpu=d.get("gpu", 0))


def describe(capacity: Capacity) -> str:
    return f"{capacity.cpu:g} CPU, {format_memory(capacity.memory)} memory, {len(capacity.gpus)} GPU"


def never_fits(request: Request, capacity: Capacity) -> str | None:
    """Why the request exceeds the whole node (so it can never run here), or None."""
    problems = []
    if request.total_cpu > capacity.cpu + 1e-9:
        problems.append(f"{request.total_cpu:g} CPU")
    if request.total_memory > capacity.memory:
        problems.append(f"{format_memory(request.total_memory)} memory")
    if request.total_gpu > len(capacity.gpus):
        problems.append(f"{request.total_gpu} GPU")
    if not problems:
        return None
    per = f" ({request.workers} workers)" if request.workers > 1 else ""
    return f"asks for {', '.join(problems)}{per} but this machine has {describe(capacity)} in total"


def allocate(request: Request, capacity: Capacity, used: list[Allocation]) -> Allocation | str:
    """An Allocation if the request fits beside what is used now, else the reason it must wait."""
    used = [a for a in used if a.cluster == "local"]
    free_cpu = capacity.cpu - sum(a.cpu for a in used)
    free_mem = capacity.memory - sum(a.memory for a in used)
    taken = {g for a in used for g in a.gpus}
    free_gpus = [g for g in capacity.gpus if g not in taken]
    short = []
    if request.total_cpu > free_cpu + 1e-9:
        short.append(f"{request.total_cpu:g} CPU ({max(free_cpu, 0):g} free)")
    if request.total_memory > free_mem:
        short.append(f"{format_memory(request.total_memory)} memory ({format_memory(max(free_mem, 0))} free)")
    if request.total_gpu > len(free_gpus):
        short.append(f"{request.total_gpu} GPU ({len(free_gpus)} free)")
    if short:
        return "waiting for resources: needs " + ", ".join(short)
    worker_gpus = tuple(
        tuple(free_gpus[i * request.gpu : (i + 1) * request.gpu]) for i in range(request.workers)
    )
    return Allocation(cpu=request.total_cpu, memory=request.total_memory, worker_gpus=worker_gpus)


def still_fits(new: list[Allocation], capacity: Capacity, used: list[Allocation]) -> bool:
    """Whether allocations decided earlier still fit beside what is used now (re-checked at commit)."""
    held = [a for a in (*used, *new) if a.cluster == "local"]
    gpus = [g for a in held for g in a.gpus]
    return (
        sum(a.cpu for a in held) <= capacity.cpu + 1e-9
        and sum(a.memory for a in held) <= capacity.memory
        and len(gpus) == len(set(gpus))
        and set(gpus) <= set(capacity.gpus)
    )


def gpu_type_matches(wanted: str | None, names) -> bool:
    """Whether GPUs named `names` (what a node reports: "NVIDIA A100-SXM4-80GB", "T4") are of the
    type asked for ("A100"); no type asked: any."""
    if wanted is None:
        return True
    w = wanted.lower()
    return any(w in (n or "").lower() for n in names)
