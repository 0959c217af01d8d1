"""SlurmRuntime: each launch is one Slurm batch job, submitted with `sbatch`, watched with `squeue`,
stopped with `scancel`. Slurm's own commands only (not pyslurm, which must match the cluster's
Slurm version exactly), each bounded in time.

A launch's run folder (on the cluster's shared filesystem) holds the generated scripts and the
durable record the job writes (script.py lists the files); slurmctld forgets a finished job after
MinJobAge, the files do not. The job's name is derived from the launch key, so a restarted control
plane finds the job again by name; a `claim` file created exclusively in the run folder stops a
second `sbatch` of the same key, and `begun` (created exclusively by the job, or by abandon())
decides whether a job that was submitted runs its work at all.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import time
from pathlib import Path

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
from cumulo.runtimes.slurm import commands
from cumulo.runtimes.slurm.commands import ACTIVE, WAITING, Cached, QueuedJob
from cumulo.runtimes.slurm.script import (
    CONTRACT,
    batch_script,
    sbatch_options,
    task_script,
)

log = logging.getLogger(__name__)

NAME_PREFIX = "cumulo-"
#: after a stop's grace, this much more before the runtime cancels the job itself
_STOP_MARGIN = 5.0
_EXIT_CODES = {"TIMEOUT": 143, "CANCELLED": 143, "PREEMPTED": 143, "OUT_OF_MEMORY": 137, "DEADLINE": 143}


class SlurmRuntime:
    name = "slurm"

    def __init__(self, run_root: str | Path, partition: str | None = None, *, ttl: float = 0.5) -> None:
        self.root = Path(run_root)
        self._root_id = str(self.root.resolve())  # in job names: two control planes never share one
        self.partition = partition
        self._queue = Cached(lambda: commands.read_queue(NAME_PREFIX), ttl)
        self._nodes = Cached(commands.read_nodes, max(ttl, 1.0))

    # -- capacity ----------------------------------------------------------------------------
    def nodes(self) -> list[EngineNode]:
        nodes = []
        for f in self._nodes.get():
            parts = [p.strip("*") for p in f.get("Partitions", "").split(",") if p]
            if self.partition and self.partition not in parts:
                continue
            gpus, gpu_type = commands.gres_gpus(f.get("Gres", ""))
            cpu = float(f.get("CPUTot") or f.get("CPUEfctv") or 0)
            mem = _int(f.get("RealMemory")) * 2**20
            features = [x for x in f.get("ActiveFeatures", f.get("AvailableFeatures", "")).split(",")
                        if x and x != "(null)"]
            nodes.append(EngineNode(
                id=f["NodeName"],
                address=f.get("NodeAddr") or f["NodeName"],
                cpu=cpu,
                memory=mem,
                gpus=gpus,
                gpu_type=gpu_type,
                labels={x: "true" for x in features},
                alive=not commands.node_dead(f.get("State", "")),
                cpu_free=max(0.0, cpu - _int(f.get("CPUAlloc"))) if "CPUAlloc" in f else None,
                memory_free=max(0, mem - _int(f.get("AllocMem")) * 2**20) if "AllocMem" in f else None,
                gpus_free=max(0, gpus - commands.tres_gpus(f.get("AllocTRES", ""))),
            ))
        if not nodes:
            where = f"partition {self.partition!r}" if self.partition else "the cluster"
            raise RuntimeUnavailable(f"Slurm reports no nodes in {where}: check `sinfo` "
                                     "(and the cluster's --partition)")
        return nodes

    def resources(self) -> NodeResources:
        alive = [n for n in self.nodes() if n.alive]
        gpus = sum(n.gpus for n in alive)
        kind = next((n.gpu_type for n in alive if n.gpu_type), None) or "gpu"
        return NodeResources(cpu=sum(n.cpu for n in alive), memory=sum(n.memory for n in alive),
                             gpus=tuple(range(gpus)), gpu_names=(kind,) * gpus)

    # -- lifecycle ---------------------------------------------------------------------------
    def handle_for(self, key: str) -> Handle:
        run_dir = self.root / key
        digest = hashlib.sha1(f"{self._root_id}\0{key}".encode()).hexdigest()[:10]
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", key).strip("-")[:80]
        return Handle(self.name, {"dir": str(run_dir), "name": f"{NAME_PREFIX}{safe}-{digest}"})

    def launch(self, spec: LaunchSpec) -> Handle:
        handle = self.handle_for(spec.key)
        run_dir = Path(handle.data["dir"])
        name = handle.data["name"]
        run_dir.mkdir(parents=True, exist_ok=True)
        common, per_rank = _split_env(spec)
        claimed = _claim(run_dir / "claim", "submit")
        if not claimed and not self._unsubmitted(run_dir):
            # launched before (maybe by a control plane that crashed meanwhile), or abandoned
            return self._known(handle)
        # already in Slurm's queue under this name: never twice. A claim we just made means no
        # launch of this key got this far before, so the shared queue read (<= ttl old) will do;
        # after a crash Slurm is asked afresh.
        if self._jobs(name, fresh=not claimed):
            return self._known(handle)
        one_node = self._fits_one_node(spec)
        options = sbatch_options(spec, job_name=name, run_dir=str(run_dir), partition=self.partition,
                                 one_node=one_node)
        write_private(run_dir / "env", _nul(common))
        for rank, extra in enumerate(per_rank):
            if extra:
                write_private(run_dir / f"env-{rank}", _nul(extra))
        (run_dir / "task.sh").write_text(task_script(spec, str(run_dir)))
        (run_dir / "job.sh").write_text(batch_script(spec, str(run_dir), options))
        (run_dir / "spec.json").write_text(json.dumps({"workers": len(spec.worker_env), "serve": spec.serve,
                                                       "grace": spec.stop_grace, "timeout": spec.timeout}))
        proc = commands.run(["sbatch", "--parsable", *options, str(run_dir / "job.sh")], timeout=15.0, check=False)
        if proc.returncode != 0:
            err = (proc.stderr or proc.stdout).strip()
            (run_dir / "submit.error").write_text(err + "\n")
            _drop_env(run_dir)
            raise RuntimeUnavailable(f"sbatch refused the job: {err or 'no output'}")
        job_id = proc.stdout.strip().split(";")[0]
        (run_dir / "jobid").write_text(job_id + "\n")  # observe reads the queue again if older
        return Handle(self.name, {**handle.data, "job_id": job_id})

    def observe(self, handle: Handle) -> Observation:
        run_dir = Path(handle.data["dir"])
        claim = _read(run_dir / "claim")
        begun = _read(run_dir / "begun")
        refused = _read(run_dir / "submit.error")
        if refused is not None:
            return Observation(ProcessPhase.LOST, detail=f"sbatch refused the job: {refused.strip()}")
        if claim == "abandoned" or begun == "abandoned":
            return Observation(ProcessPhase.LOST, detail="the launch never came up and was abandoned")
        if claim is None:
            return Observation(ProcessPhase.BOOTING)
        spec = _spec(run_dir)
        try:
            job = self._job(handle)
        except RuntimeUnavailable:
            if (run_dir / "batch.exit").exists():  # the job's own record is enough
                return self._exited(run_dir, spec, None)
            raise
        state = job.state if job else None
        if state in ACTIVE and (run_dir / "stop.json").exists():
            self._escalate(run_dir, job)
        if state is not None and state not in ACTIVE:
            return self._exited(run_dir, spec, job)
        # while Slurm still lists the job as active, its final state (NODE_FAIL, TIMEOUT, ...) is
        # yet to come and says why workers ended: the files decide only once Slurm is done
        if state in WAITING:
            reason = job.reason if job.reason not in ("", "None") else "not scheduled yet"
            return Observation(ProcessPhase.QUEUED, detail=f"waiting in Slurm's queue: {reason}")
        if state is not None:
            workers = self._workers(run_dir, spec, job)
            lost = self._lost_node(job)
            detail = f"node {lost} stopped responding to Slurm" if lost else ""
            return Observation(ProcessPhase.RUNNING, workers=workers, node_lost=lost, detail=detail)
        # slurmctld no longer knows the job (or never did)
        if _read(run_dir / "jobid") is None and begun is None:
            return Observation(ProcessPhase.BOOTING)  # claimed, not (yet) submitted: the boot timeout decides
        if (run_dir / "batch.exit").exists() or _all_ranks_exited(run_dir, spec):
            return self._exited(run_dir, spec, None)
        job_id = (_read(run_dir / "jobid") or begun or "?").strip()
        return Observation(ProcessPhase.LOST, detail=f"Slurm job {job_id} is gone without recording every "
                                                     "worker's exit code")

    def stop(self, handle: Handle) -> None:
        run_dir = Path(handle.data["dir"])
        job = self._job(handle, fresh=True)
        if job is None or job.state not in ACTIVE:
            return
        if job.state in WAITING:
            commands.run(["scancel", job.job_id], check=False)
            _drop_env(run_dir)
        else:
            grace = _spec(run_dir).get("grace", 10.0)
            if not (run_dir / "stop.json").exists():
                (run_dir / "stop.json").write_text(json.dumps({"at": time.time(), "grace": grace}))
            commands.run(["scancel", "--signal=TERM", job.job_id], check=False)
        self._queue.invalidate()

    def kill(self, handle: Handle) -> None:
        run_dir = Path(handle.data["dir"])
        job = self._job(handle, fresh=True)
        if job is None or job.state not in ACTIVE:
            return
        stop = _json(run_dir / "stop.json") or {"at": time.time(), "grace": 0.0}
        (run_dir / "stop.json").write_text(json.dumps({**stop, "killed": time.time()}))
        if job.state not in WAITING:
            commands.run(["scancel", "--signal=KILL", "--full", job.job_id], check=False)
        commands.run(["scancel", job.job_id], check=False)
        self._queue.invalidate()

    def abandon(self, handle: Handle) -> bool:
        run_dir = Path(handle.data["dir"])
        run_dir.mkdir(parents=True, exist_ok=True)
        if _claim(run_dir / "claim", "abandoned"):
            return True  # launch() never got as far as sbatch, and now never will
        if not _claim(run_dir / "begun", "abandoned"):
            return _read(run_dir / "begun") == "abandoned"  # the job started its work: it came up
        # submitted (or about to be) but not started: if it ever starts, it finds `begun` and exits
        _drop_env(run_dir)
        try:  # frees its place in the queue; `begun` already keeps it from running anything
            commands.run(["scancel", f"--name={handle.data['name']}"], check=False)
        except RuntimeUnavailable as e:
            log.warning("abandoning %s: %s", handle.data["name"], e)
        self._queue.invalidate()
        return True

    def log_path(self, handle: Handle, rank: int = 0) -> str:
        return str(Path(handle.data["dir"]) / f"rank-{rank}.log")

    def forget(self, handle: Handle) -> None:
        """Nothing is cached per launch: the queue cache is shared and short-lived."""

    # -- helpers -----------------------------------------------------------------------------
    def _jobs(self, name: str, fresh: bool = False) -> list[QueuedJob]:
        if fresh:
            self._queue.invalidate()
        return self._queue.get().get(name, [])

    def _job(self, handle: Handle, fresh: bool = False) -> QueuedJob | None:
        jobs = self._jobs(handle.data["name"], fresh)
        if not jobs and not fresh and self._queue.read_at <= _mtime(Path(handle.data["dir"]) / "jobid"):
            jobs = self._jobs(handle.data["name"], fresh=True)  # submitted after the shared read
        if not jobs:
            return None
        active = [j for j in jobs if j.state in ACTIVE]
        return (active or jobs)[-1]

    def _unsubmitted(self, run_dir: Path) -> bool:
        """Claimed for a launch that left no trace: sbatch never answered (or the control plane
        died before calling it). Submitting now cannot run the work twice: launch() checks
        Slurm's queue by name first, and a job that ran wrote `begun`."""
        return (_read(run_dir / "claim") == "submit" and not (run_dir / "jobid").exists()
                and not (run_dir / "begun").exists() and not (run_dir / "submit.error").exists())

    def _known(self, handle: Handle) -> Handle:
        job_id = (_read(Path(handle.data["dir"]) / "jobid") or "").strip()
        return Handle(self.name, {**handle.data, "job_id": job_id}) if job_id else handle

    def _fits_one_node(self, spec: LaunchSpec) -> bool:
        if spec.placement == "spread" and len(spec.worker_env) > 1:
            return False
        n = len(spec.worker_env)
        r = spec.resources
        try:
            nodes = self.nodes()
        except RuntimeUnavailable:
            return n == 1
        return any(node.cpu >= r.cpu * n and node.memory >= r.memory * n and node.gpus >= r.gpu * n
                   for node in nodes)

    def _workers(self, run_dir: Path, spec: dict, job: QueuedJob | None) -> tuple[WorkerStatus, ...]:
        serve = _json(run_dir / "serve.json") if spec.get("serve") else None
        out = []
        for rank in range(spec.get("workers", 1)):
            start = _json(run_dir / f"rank-{rank}.start") or {}
            code = _exit_code(run_dir, rank)
            out.append(WorkerStatus(
                rank=rank,
                pid=start.get("pid"),
                exit_code=code[0] if code else None,
                node=start.get("node") or None,
                host=start.get("host") or (serve or {}).get("host") or None,
                port=(serve or {}).get("port"),
            ))
        return tuple(out)

    def _exited(self, run_dir: Path, spec: dict, job: QueuedJob | None) -> Observation:
        state = job.state if job else "COMPLETED"
        _drop_env(run_dir)  # a job cancelled while queued never read them; they may hold secrets
        workers = self._workers(run_dir, spec, job)
        ended = [(c, rank) for rank in range(len(workers)) if (c := _exit_code(run_dir, rank))]
        failures = sorted((t, code) for (code, t), _ in ended if code != 0)
        codes = tuple(w.exit_code for w in workers)
        batch = _read(run_dir / "batch.exit")
        if failures:
            exit_code = failures[0][1]  # the first to fail; the others were stopped because of it
        elif batch is not None and batch.strip().lstrip("-").isdigit() and None not in codes:
            exit_code = int(batch)  # srun's status: 0 when every worker succeeded
        elif state == "COMPLETED" and all(c == 0 for c in codes):
            exit_code = 0
        elif (_json(run_dir / "stop.json") or {}).get("killed"):
            exit_code = 137
        else:
            exit_code = _EXIT_CODES.get(state, 1)
        detail, lost = "", None
        if state == "TIMEOUT":
            detail = f"Slurm's time limit ({_minutes(spec.get('timeout'))}) was reached"
            exit_code = exit_code or 143
        elif state == "NODE_FAIL":
            lost = self._failed_node(job) if job else None
            detail = f"node {lost or job.nodes} failed under the job (Slurm: NODE_FAIL)" if job else "node failure"
            exit_code = exit_code or 1
        elif state not in ACTIVE and state not in ("COMPLETED", "CANCELLED", "FAILED"):
            detail = f"Slurm ended the job: {state}" + (f" ({job.reason})" if job.reason not in ("", "None") else "")
        return Observation(ProcessPhase.EXITED, exit_code=exit_code, exit_codes=codes, detail=detail,
                           workers=workers, node_lost=lost)

    def _lost_node(self, job: QueuedJob) -> str | None:
        """A node of the running job that Slurm sees down or not responding."""
        hosts = commands.expand_hostlist(job.nodes)
        if not hosts:
            return None
        try:
            states = {f.get("NodeName"): f.get("State", "") for f in self._nodes.get()}
        except RuntimeUnavailable:
            return None
        return next((h for h in hosts if commands.node_lost(states.get(h, ""))), None)

    def _failed_node(self, job: QueuedJob) -> str | None:
        hosts = commands.expand_hostlist(job.nodes)
        self._nodes.invalidate()
        # the node may be back already (ReturnToService): then name the job's nodes
        return self._lost_node(job) or (hosts[0] if len(hosts) == 1 else job.nodes or None)

    def _escalate(self, run_dir: Path, job: QueuedJob) -> None:
        """A stop's grace is long past and the job still runs: cancel it (durable: stop.json)."""
        stop = _json(run_dir / "stop.json") or {}
        if stop.get("cancelled") or time.time() < stop.get("at", 0) + stop.get("grace", 10.0) + _STOP_MARGIN:
            return
        commands.run(["scancel", job.job_id], check=False)
        (run_dir / "stop.json").write_text(json.dumps({**stop, "cancelled": time.time()}))
        self._queue.invalidate()


# -- files -------------------------------------------------------------------------------------
def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return float("-inf")


def _drop_env(run_dir: Path) -> None:
    for f in run_dir.glob("env*"):
        f.unlink(missing_ok=True)


def _claim(path: Path, content: str) -> bool:
    """Create `path` exclusively with `content`: True if we did, False if it was there."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(content)
    return True


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (FileNotFoundError, NotADirectoryError):
        return None


def _json(path: Path) -> dict | None:
    text = _read(path)
    try:
        value = json.loads(text) if text else None
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _spec(run_dir: Path) -> dict:
    return _json(run_dir / "spec.json") or {"workers": 1}


def _exit_code(run_dir: Path, rank: int) -> tuple[int, float] | None:
    text = _read(run_dir / f"rank-{rank}.exit")
    if not text:
        return None
    parts = text.split()
    try:
        return int(parts[0]), float(parts[1]) if len(parts) > 1 else 0.0
    except ValueError:
        return None


def _all_ranks_exited(run_dir: Path, spec: dict) -> bool:
    return all(_exit_code(run_dir, r) is not None for r in range(spec.get("workers", 1)))


def _split_env(spec: LaunchSpec) -> tuple[dict[str, str], list[dict[str, str]]]:
    """What every worker shares, and what each has of its own (Slurm's contract keys dropped)."""
    common = dict(spec.env)
    per_rank = [{k: v for k, v in extra.items() if k not in CONTRACT} for extra in spec.worker_env]
    for env in [common, *per_rank]:
        for key, value in env.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                raise ValueError(f"environment variable name {key!r} is not a valid shell name "
                                 "(letters, digits and _ only, not starting with a digit)")
            if "\0" in value:
                raise ValueError(f"environment variable {key!r} contains a NUL byte, which an environment cannot hold")
    return common, per_rank


def _nul(env: dict[str, str]) -> bytes:
    return b"".join(f"{k}={v}".encode() + b"\0" for k, v in env.items())


def _int(text: str | None) -> int:
    m = re.match(r"\d+", text or "")
    return int(m.group()) if m else 0


def _minutes(timeout: float | None) -> str:
    if timeout is None:
        return "the partition's limit"
    return f"{max(1, math.ceil(timeout / 60))} min"
