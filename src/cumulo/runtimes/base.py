"""The Runtime interface: launch a workload's processes, observe them, stop them.

A Ray or Slurm runtime implements the same five calls. A Handle is plain JSON the control plane
stores, so a runtime can find its processes again after the control plane restarts.
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
class LaunchSpec:
    """One workload: ``len(worker_env)`` processes running the same command."""

    key: str  # unique and stable, e.g. "<job id>-<attempt>"
    command: str | list[str]
    workdir: str
    env: dict[str, str]
    worker_env: tuple[dict[str, str], ...] = ({},)
    stop_grace: float = 10.0


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


@dataclass(frozen=True)
class Observation:
    phase: ProcessPhase
    exit_code: int | None = None  # once exited: the first failing worker's code, else 0
    exit_codes: tuple[int | None, ...] = ()
    detail: str = ""
    workers: tuple[WorkerStatus, ...] = field(default_factory=tuple)


class Runtime(Protocol):
    name: str

    def resources(self) -> NodeResources: ...

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
