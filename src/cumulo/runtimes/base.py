"""The Runtime interface: launch a workload's processes, observe them, stop them.

Local processes, Ray and Slurm implement the same calls. A Handle is plain JSON the control plane
stores, so a runtime can find its processes again after the control plane restarts; it is known
before the launch (`handle_for(key)`), and a launch under the same key twice never starts the work
twice (the engine's own idempotency: Ray's submission id, Slurm's job name).

The environment contract: the control plane gives each worker RANK and WORLD_SIZE and the local
defaults of everything placement decides; a runtime that places workers on engine nodes overrides
LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR (rank 0's node address), MASTER_PORT,
CUMULO_NODE_RANK, CUMULO_NUM_NODES, CUMULO_NODE_IPS (comma-separated, by node rank) and
CUDA_VISIBLE_DEVICES (as the engine assigns GPUs). A `serve` launch (a deployment replica) gets
HOST and PORT: the address of the node it landed on and a free port there, reported back in
WorkerStatus.host/port so the gateway can route to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from cumulo.core.states import ProcessPhase


@dataclass(frozen=True)
class NodeResources:
    cpu: float
    memory: int
    gpus: tuple[int, ...] = ()
    gpu_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class WorkerResources:
    """What ONE worker asks the engine for (a local launch has its allocation already)."""

    cpu: float = 1.0
    memory: int = 512 * 2**20
    gpu: int = 0
    gpu_type: str | None = None  # e.g. "A100": Ray's accelerator_type, Slurm's gres type


@dataclass(frozen=True)
class LaunchSpec:
    """One workload: ``len(worker_env)`` processes running the same command."""

    key: str  # unique and stable, e.g. "<job id>/attempt-<n>"
    command: str | list[str]
    workdir: str
    env: dict[str, str]
    worker_env: tuple[dict[str, str], ...] = ({},)
    stop_grace: float = 10.0
    resources: WorkerResources = field(default_factory=WorkerResources)
    #: "pack": as few nodes as possible; "spread": one worker per node
    placement: str = "pack"
    #: seconds; an engine with a time limit (Slurm's --time) is given it too
    timeout: float | None = None
    #: a deployment replica: the runtime picks HOST and PORT on the node it lands on
    serve: bool = False


@dataclass(frozen=True)
class Handle:
    runtime: str
    data: dict[str, Any]


@dataclass(frozen=True)
class WorkerStatus:
    rank: int
    pid: int | None = None
    exit_code: int | None = None
    cpu_percent: float | None = None
    memory_bytes: int | None = None
    node: str | None = None  # the engine's node id
    host: str | None = None  # that node's address
    port: int | None = None  # where a serve launch listens


@dataclass(frozen=True)
class Observation:
    phase: ProcessPhase
    exit_code: int | None = None  # once exited: the first failing worker's code, else 0
    exit_codes: tuple[int | None, ...] = ()
    detail: str = ""
    workers: tuple[WorkerStatus, ...] = field(default_factory=tuple)
    #: the node whose loss ended (or is ending) the launch: its id or address, for the reason
    node_lost: str | None = None


@dataclass(frozen=True)
class EngineNode:
    """One node as the engine reports it."""

    id: str  # the engine's node id (Ray's node id, Slurm's node name)
    address: str
    cpu: float
    memory: int
    gpus: int = 0
    gpu_type: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    alive: bool = True
    #: what the engine says is free now (None where it does not say)
    cpu_free: float | None = None
    memory_free: int | None = None
    gpus_free: int | None = None


class RuntimeUnavailable(Exception):
    """The engine cannot be reached or refused; the message says why and what to check."""


class Runtime(Protocol):
    name: str

    def resources(self) -> NodeResources: ...

    def nodes(self) -> list[EngineNode]:
        """The engine's nodes with their capacity. Raises RuntimeUnavailable."""

    def launch(self, spec: LaunchSpec) -> Handle: ...

    def observe(self, handle: Handle) -> Observation: ...

    def stop(self, handle: Handle) -> None:
        """Ask the processes to stop (SIGTERM, then SIGKILL after the grace period)."""

    def kill(self, handle: Handle) -> None:
        """Kill the processes now."""

    def abandon(self, handle: Handle) -> bool:
        """Make sure a launch that has not come up never will. False if it came up meanwhile."""

    def log_path(self, handle: Handle, rank: int = 0) -> str: ...

    def forget(self, handle: Handle) -> None:
        """Drop whatever the runtime cached about a launch that has ended."""

    def handle_for(self, key: str) -> Handle:
        """The handle a launch of `key` will have, known before launching (recorded first)."""
