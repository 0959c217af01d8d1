"""RayRuntime: each launch is a Ray job (Jobs API) whose driver (driver.py) places the workers.

The control plane only reads files in the run folder (on the cluster's shared filesystem) and calls
Ray's public REST APIs on the dashboard address (Jobs: submit, status, stop; state: nodes), every
call time-bound. It never imports ray: `ray.init` and the actors live in the driver on the cluster.

Crash safety: the handle (run folder + submission id derived from the key) is known before the
launch; Ray refuses a second submission with the same id, so a launch repeated after a crash never
starts the work twice, and abandon() claims the run folder first so a late driver starts nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import shlex
import sys
import time
from pathlib import Path

import httpx

from cumulo.core.files import write_private
from cumulo.core.states import ProcessPhase
from cumulo.runtimes.base import (
    EngineNode,
    Handle,
    LaunchSpec,
    NodeResources,
    Observation,
    RuntimeUnavailable,
    WorkerStatus,
)
from cumulo.runtimes.ray.rundir import claim, read_json, write_json

#: a status file older than this means the driver may be gone: ask Ray about its job
STALE = 10.0
#: with the driver silent and Ray unreachable this long, the launch is given up as lost
GIVE_UP = 60.0
#: seconds between two Jobs API reads of one launch's job (observe is called about once a second)
JOB_RECHECK = 2.0
_TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
#: the folder this cumulo package is imported from (src/ of a checkout, or site-packages)
_SOURCE_ROOT = str(Path(__file__).resolve().parents[3])


def submission_id(key: str, run_dir: str) -> str:
    """Ray's submission id for a launch: readable, path-safe, and unique per run folder (the hash
    covers the folder, so two control planes sharing a cluster never take each other's ids)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", key)[:80]
    return f"cumulo-{safe}-{hashlib.sha1(run_dir.encode()).hexdigest()[:10]}"


class RayRuntime:
    name = "ray"

    def __init__(
        self,
        address: str,
        run_root: str | Path,
        *,
        python: str | None = None,
        pythonpath: str | None = None,
        http_timeout: float = 4.0,
    ) -> None:
        """`address`: the dashboard URL (what `ray job submit --address` takes). `run_root`: a folder
        every node of the cluster sees at the same path. `python` and `pythonpath`: how the cluster's
        nodes run cumulo's driver (default: this interpreter and this cumulo's source folder, right
        when the nodes share this machine's filesystem and Python)."""
        self.address = address.rstrip("/")
        self.root = Path(run_root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.python = python or sys.executable
        self.pythonpath = pythonpath if pythonpath is not None else _SOURCE_ROOT
        self._timeout = httpx.Timeout(http_timeout, connect=min(2.0, http_timeout))
        self._http: httpx.Client | None = None
        self._jobs: dict[str, tuple[float, dict | None]] = {}  # submission id -> (read at, job)

    # -- HTTP ----------------------------------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs) -> httpx.Response:
        if self._http is None:
            self._http = httpx.Client(base_url=self.address, timeout=self._timeout, trust_env=False)
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.HTTPError as e:
            raise RuntimeUnavailable(
                f"the Ray cluster at {self.address} is unreachable ({type(e).__name__}: {e or 'no answer'}): "
                "check that its head node is up and that this is its dashboard address "
                "(`ray start --head --dashboard-host=IP --dashboard-port=PORT`; the address is http://IP:PORT)"
            ) from e

    def _job(self, sid: str, fresh: bool = False) -> dict | None:
        """Ray's view of the job (None: not submitted), read at most every JOB_RECHECK seconds."""
        now = time.monotonic()
        cached = self._jobs.get(sid)
        if cached is not None and not fresh and now - cached[0] < JOB_RECHECK:
            return cached[1]
        r = self._request("GET", f"/api/jobs/{sid}")
        if r.status_code == 404:
            job = None
        elif r.status_code == 200:
            job = r.json()
        else:
            raise RuntimeUnavailable(f"the Ray cluster at {self.address} answered {r.status_code} for job {sid}: {r.text[:200]}")
        self._jobs[sid] = (now, job)
        return job

    def _stop_job(self, sid: str) -> None:
        try:
            self._request("POST", f"/api/jobs/{sid}/stop")
        except RuntimeUnavailable:
            pass

    # -- capacity ------------------------------------------------------------------------------
    def nodes(self) -> list[EngineNode]:
        r = self._request("GET", "/api/v0/nodes", params={"limit": 10000, "detail": "true"})
        if r.status_code != 200:
            raise RuntimeUnavailable(f"the Ray cluster at {self.address} answered {r.status_code} for its nodes: {r.text[:200]}")
        rows = r.json()["data"]["result"]["result"]
        used: dict = {}
        try:  # what each node has free: the autoscaler's usage report (best effort)
            s = self._request("GET", "/api/cluster_status", timeout=min(2.0, self._timeout.read or 2.0))
            if s.status_code == 200:
                used = s.json()["data"]["clusterStatus"]["loadMetricsReport"].get("usageByNode") or {}
        except (RuntimeUnavailable, KeyError, TypeError, ValueError):
            used = {}
        out = []
        for n in rows:
            total = n.get("resources_total") or {}
            gpu_type = next((k.split(":", 1)[1] for k in total if k.startswith("accelerator_type:")), None)
            usage = used.get(n["node_id"]) or {}

            def free(key: str, usage=usage):
                pair = usage.get(key)
                return pair[1] - pair[0] if pair else None

            labels = {k: str(v) for k, v in (n.get("labels") or {}).items() if k != "ray.io/node-id"}
            cpu_free, mem_free, gpu_free = free("CPU"), free("memory"), free("GPU")
            out.append(EngineNode(
                id=n["node_id"],
                address=n.get("node_ip") or "",
                cpu=float(total.get("CPU", 0.0)),
                memory=int(total.get("memory", 0)),
                gpus=int(total.get("GPU", 0)),
                gpu_type=gpu_type,
                labels=labels,
                alive=n.get("state") == "ALIVE",
                cpu_free=cpu_free,
                memory_free=int(mem_free) if mem_free is not None else None,
                gpus_free=int(gpu_free) if gpu_free is not None else (0 if not total.get("GPU") and usage else None),
            ))
        return out

    def resources(self) -> NodeResources:
        alive = [n for n in self.nodes() if n.alive]
        gpus = sum(n.gpus for n in alive)
        return NodeResources(
            cpu=sum(n.cpu for n in alive),
            memory=sum(n.memory for n in alive),
            gpus=tuple(range(gpus)),
            gpu_names=tuple(n.gpu_type or "GPU" for n in alive for _ in range(n.gpus)),
        )

    # -- lifecycle -----------------------------------------------------------------------------
    def handle_for(self, key: str) -> Handle:
        run_dir = str((self.root / key).absolute())
        return Handle(self.name, {"dir": run_dir, "submission_id": submission_id(key, run_dir), "address": self.address})

    def launch(self, spec: LaunchSpec) -> Handle:
        handle = self.handle_for(spec.key)
        run = Path(handle.data["dir"])
        sid = handle.data["submission_id"]
        run.mkdir(parents=True, exist_ok=True)
        if (run / "claim").exists():
            return handle  # a driver came up already, or the launch was abandoned: nothing to do
        argv = ["/bin/sh", "-c", spec.command] if isinstance(spec.command, str) else list(spec.command)
        envs = [{**spec.env, **extra} for extra in spec.worker_env]
        for item in argv:
            if "\0" in item:
                raise ValueError(f"{item[:40]!r} contains a NUL byte, which a command cannot hold")
        for env in envs:
            for k, v in env.items():
                if "\0" in k or "\0" in v:  # never show the value: it may be a secret
                    raise ValueError(f"the environment variable {k.split(chr(0))[0]!r} contains a NUL byte")
        if spec.serve and len(envs) != 1:
            raise ValueError(f"a serve launch runs one worker, not {len(envs)}")
        write_json(run / "spec.json", {
            "key": spec.key, "argv": argv, "workdir": spec.workdir, "workers": len(envs),
            "resources": {"cpu": spec.resources.cpu, "memory": spec.resources.memory, "gpu": spec.resources.gpu,
                          "gpu_type": spec.resources.gpu_type},
            "placement": spec.placement, "stop_grace": spec.stop_grace, "timeout": spec.timeout, "serve": spec.serve,
        })
        nonce = secrets.token_hex(8)
        secret_file = run / f"secrets-{nonce}"
        write_private(secret_file, json.dumps(envs))
        body = {
            "entrypoint": f"{shlex.quote(self.python)} -m cumulo.runtimes.ray.driver {shlex.quote(str(run))} {nonce}",
            "submission_id": sid,
            "runtime_env": {"env_vars": {"PYTHONPATH": self.pythonpath}} if self.pythonpath else {},
            "metadata": {"cumulo_key": spec.key},
        }
        try:
            r = self._request("POST", "/api/jobs/", json=body)
        except RuntimeUnavailable:
            secret_file.unlink(missing_ok=True)
            raise
        if r.status_code == 200:
            return handle
        secret_file.unlink(missing_ok=True)  # this submission will never read it
        if "already exists" in r.text:
            return handle  # launched before (a retry after a crash): Ray refuses a duplicate
        raise RuntimeUnavailable(f"the Ray cluster at {self.address} refused job {sid}: {r.status_code} {r.text[:300]}")

    def observe(self, handle: Handle) -> Observation:
        run = Path(handle.data["dir"])
        sid = handle.data["submission_id"]
        status = read_json(run / "status.json")
        if isinstance(status, dict):
            if status.get("phase") == "exited":
                return _final(status)
            age = time.time() - float(status.get("updated", 0))
            if age > STALE:
                lost = self._driver_gone(run, sid, age)
                if lost is not None:
                    return lost
            return _live(status)
        c = read_json(run / "claim")
        if isinstance(c, dict) and c.get("abandoned"):
            return Observation(ProcessPhase.LOST, detail="the launch never came up and was abandoned")
        try:
            job = self._job(sid)
        except RuntimeUnavailable as e:
            return Observation(ProcessPhase.BOOTING, detail=str(e))
        if job is None:
            return Observation(ProcessPhase.BOOTING, detail=f"not submitted to Ray (no job {sid})")
        state = job.get("status")
        if state == "PENDING":
            return Observation(ProcessPhase.QUEUED, detail=f"Ray has job {sid} pending: {job.get('message') or ''}".strip())
        if state in _TERMINAL:
            status = read_json(run / "status.json")  # the driver may have finished meanwhile
            if isinstance(status, dict):
                return self.observe(handle)
            return Observation(ProcessPhase.LOST, detail=f"Ray job {sid} ended {state} without recording exit codes: "
                                                         f"{job.get('message') or ''}".strip())
        return Observation(ProcessPhase.BOOTING, detail=f"Ray job {sid} is {state}: its driver is starting")

    def _driver_gone(self, run: Path, sid: str, age: float) -> Observation | None:
        """A LOST observation if the driver stopped reporting because its job ended (or Ray is gone)."""
        try:
            job = self._job(sid)
        except RuntimeUnavailable as e:
            if age > GIVE_UP:
                return Observation(ProcessPhase.LOST, detail=f"the driver has not reported for {age:.0f}s and {e}")
            return None
        if job is not None and job.get("status") not in _TERMINAL:
            return None
        status = read_json(run / "status.json")
        if isinstance(status, dict) and status.get("phase") == "exited":
            return _final(status)
        state = job.get("status") if job else "gone"
        return Observation(ProcessPhase.LOST, detail=f"Ray job {sid} ended {state} without recording exit codes: "
                                                     f"{(job or {}).get('message') or ''}".strip())

    def stop(self, handle: Handle) -> None:
        self._ask(handle, "TERM")

    def kill(self, handle: Handle) -> None:
        self._ask(handle, "KILL")

    def _ask(self, handle: Handle, sig: str) -> None:
        run = Path(handle.data["dir"])
        if not run.is_dir():
            return
        current = read_json(run / "control")
        if not (isinstance(current, dict) and current.get("signal") == "KILL"):
            write_json(run / "control", {"signal": sig})
        status = read_json(run / "status.json")
        fresh = isinstance(status, dict) and time.time() - float(status.get("updated", 0)) < STALE
        if isinstance(status, dict) and status.get("phase") == "exited":
            return
        if not (run / "claim").exists() or (sig == "KILL" and not fresh):
            # the driver is not up (Ray may hold the job pending) or does not answer: Ray stops it
            self._stop_job(handle.data["submission_id"])

    def abandon(self, handle: Handle) -> bool:
        run = Path(handle.data["dir"])
        run.mkdir(parents=True, exist_ok=True)
        if not claim(run, {"abandoned": True, "at": time.time()}):
            c = read_json(run / "claim")
            return isinstance(c, dict) and bool(c.get("abandoned"))
        for f in run.glob("secrets-*"):  # nothing will read them now; they may hold secrets
            f.unlink(missing_ok=True)
        self._stop_job(handle.data["submission_id"])  # a driver Ray holds pending never starts
        return True

    def log_path(self, handle: Handle, rank: int = 0) -> str:
        return str(Path(handle.data["dir"]) / f"rank-{rank}.log")

    def forget(self, handle: Handle) -> None:
        self._jobs.pop(handle.data.get("submission_id", ""), None)

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None


def _workers(status: dict) -> tuple[WorkerStatus, ...]:
    return tuple(
        WorkerStatus(rank=w["rank"], pid=w.get("pid"), exit_code=w.get("exit_code"),
                     cpu_percent=w.get("cpu_percent"), memory_bytes=w.get("memory_bytes"),
                     node=w.get("node"), host=w.get("host"), port=w.get("port"))
        for w in status.get("workers", ())
    )


def _live(status: dict) -> Observation:
    phase = status.get("phase")
    if phase == "queued":
        return Observation(ProcessPhase.QUEUED, detail=status.get("detail", ""))
    if phase == "starting":
        return Observation(ProcessPhase.BOOTING, detail=status.get("detail", ""), workers=_workers(status))
    return Observation(ProcessPhase.RUNNING, detail=status.get("detail", ""), workers=_workers(status),
                       node_lost=status.get("node_lost"))


def _final(status: dict) -> Observation:
    codes = tuple(status.get("exit_codes") or ())
    lost = bool(status.get("node_lost")) or bool(status.get("driver_failed")) or any(c is None for c in codes)
    return Observation(
        ProcessPhase.LOST if lost else ProcessPhase.EXITED,
        exit_code=status.get("exit_code"),
        exit_codes=codes,
        detail=status.get("detail", ""),
        workers=_workers(status),
        node_lost=status.get("node_lost"),
    )
