from __future__ import annotations

import os
import time

import pytest

from cumulo.core.states import ProcessPhase
from cumulo.runtimes.base import Handle, LaunchSpec, Observation, WorkerResources
from cumulo.runtimes.ray import RayRuntime

DONE = (ProcessPhase.EXITED, ProcessPhase.LOST)


@pytest.fixture
def ray_runtime(ray_cluster, tmp_path):
    rt = RayRuntime(ray_cluster, tmp_path / "runs")
    yield rt
    rt.close()


def spec(key: str, command: str, workers: int = 1, **kw) -> LaunchSpec:
    kw.setdefault("resources", WorkerResources(cpu=1, memory=64 * 2**20))
    return LaunchSpec(
        key=key,
        command=command,
        workdir=kw.pop("workdir", "/tmp"),
        env={"PATH": os.environ["PATH"], "WORLD_SIZE": str(workers), **kw.pop("env", {})},
        worker_env=tuple({"RANK": str(r)} for r in range(workers)),
        **kw,
    )


def wait_for(rt: RayRuntime, handle: Handle, phases, timeout: float = 90.0) -> Observation:
    deadline = time.monotonic() + timeout
    obs = rt.observe(handle)
    while obs.phase not in phases:
        assert time.monotonic() < deadline, f"still {obs.phase} ({obs.detail}) after {timeout}s, waiting for {phases}"
        time.sleep(0.3)
        obs = rt.observe(handle)
    return obs
