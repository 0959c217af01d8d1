"""LocalRuntime: each launch is a detached supervisor (supervisor.sh) in its own session.

The supervisor survives the control plane, records exit codes in the run directory, and is
found again by pid AND start time, so a restarted control plane re-adopts it and never mistakes
a recycled pid for it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psutil

from cumulo.core.files import write_private
from cumulo.core.states import ProcessPhase
from cumulo.runtimes.base import EngineNode, Handle, LaunchSpec, NodeResources, Observation, WorkerStatus
from cumulo.runtimes.local.gpus import detect_gpus
from cumulo.runtimes.local.procs import start_time

log = logging.getLogger(__name__)

SUPERVISOR = str(Path(__file__).with_name("supervisor.sh"))
BASH = shutil.which("bash") or "/bin/bash"
#: a supervisor.json that stays unreadable this long belongs to a supervisor that died writing it
_TORN_CLAIM_AFTER = 5.0


def _read_json(path: Path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, OSError):
        return ...  # present but unreadable (being written, or torn)


def _alive(pid: int | None, start: int | None) -> bool:
    """True only if `pid` runs AND started when we recorded (a recycled pid has another start)."""
    if not pid or start is None:
        return False
    now_start = start_time(pid)
    if now_start != start:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class LocalRuntime:
    name = "local"

    def __init__(self, root: Path, *, gpus: tuple[tuple[int, str], ...] | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._gpus = detect_gpus() if gpus is None else gpus
        self._children: dict[str, subprocess.Popen] = {}  # supervisors we started: reaped on observe
        self._procs: dict[tuple[int, int], psutil.Process] = {}  # for CPU % between samples

    # -- capacity ----------------------------------------------------------------------------
    def resources(self) -> NodeResources:
        return NodeResources(
            cpu=float(psutil.cpu_count(logical=True) or 1),
            memory=int(psutil.virtual_memory().total),
            gpus=tuple(i for i, _ in self._gpus),
            gpu_names=tuple(n for _, n in self._gpus),
        )

    def nodes(self) -> list[EngineNode]:
        r = self.resources()
        return [EngineNode(id="local", address="127.0.0.1", cpu=r.cpu, memory=r.memory, gpus=len(r.gpus),
                           gpu_type=r.gpu_names[0] if r.gpu_names else None)]

    # -- lifecycle ---------------------------------------------------------------------------
    def handle_for(self, key: str) -> Handle:
        return Handle(self.name, {"dir": str(self.root / key)})

    def launch(self, spec: LaunchSpec) -> Handle:
        handle = self.handle_for(spec.key)
        run_dir = Path(handle.data["dir"])
        run_dir.mkdir(parents=True, exist_ok=True)
        argv = ["/bin/sh", "-c", spec.command] if isinstance(spec.command, str) else list(spec.command)
        _write_nul(run_dir / "argv", argv)
        (run_dir / "workdir").write_text(spec.workdir)
        (run_dir / "grace").write_text(f"{spec.stop_grace:g}")
        for rank, extra in enumerate(spec.worker_env):
            env = {**spec.env, **extra}
            # read once and deleted by the supervisor: it may hold secrets (owner-only meanwhile)
            _write_nul(run_dir / f"env-{rank}", [f"{k}={v}" for k, v in env.items()], private=True)
        with open(run_dir / "supervisor.log", "ab") as out:
            proc = subprocess.Popen(
                [BASH, SUPERVISOR, str(run_dir)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        self._children[str(run_dir)] = proc
        return handle

    def observe(self, handle: Handle) -> Observation:
        run_dir = Path(handle.data["dir"])
        child = self._children.get(str(run_dir))
        if child is not None and child.poll() is not None:
            self._children.pop(str(run_dir), None)  # reaped; its files tell the rest
        done = _read_json(run_dir / "exit.json")
        if isinstance(done, dict):
            codes = tuple(done.get("exit_codes", ()))
            workers = tuple(WorkerStatus(rank=r, exit_code=c) for r, c in enumerate(codes))
            return Observation(ProcessPhase.EXITED, exit_code=done.get("exit_code"), exit_codes=codes, workers=workers)
        claim = _read_json(run_dir / "supervisor.json")
        if claim is None:
            return Observation(ProcessPhase.BOOTING)
        if claim is ...:
            age = time.time() - _mtime(run_dir / "supervisor.json")
            if age < _TORN_CLAIM_AFTER:
                return Observation(ProcessPhase.BOOTING)
            return Observation(ProcessPhase.LOST, detail="the supervisor died while starting")
        if claim.get("abandoned"):
            return Observation(ProcessPhase.LOST, detail="the launch never came up and was abandoned")
        if _alive(claim.get("pid"), claim.get("start")):
            workers = _read_json(run_dir / "workers.json")
            if not isinstance(workers, list):
                return Observation(ProcessPhase.BOOTING)
            return Observation(ProcessPhase.RUNNING, workers=tuple(self._usage(w) for w in workers))
        # the supervisor is gone and wrote no exit status: make sure no worker outlives it
        if _read_json(run_dir / "exit.json") is not None:  # it finished between our two reads
            return self.observe(handle)
        self._signal_workers(run_dir, signal.SIGKILL)
        return Observation(
            ProcessPhase.LOST,
            detail=f"the supervisor (pid {claim.get('pid')}) ended without recording an exit status",
        )

    def stop(self, handle: Handle) -> None:
        run_dir = Path(handle.data["dir"])
        claim = _read_json(run_dir / "supervisor.json")
        if isinstance(claim, dict) and _alive(claim.get("pid"), claim.get("start")):
            try:
                os.kill(claim["pid"], signal.SIGTERM)  # it forwards to every worker group
                return
            except ProcessLookupError:
                pass
        self._signal_workers(run_dir, signal.SIGTERM)

    def kill(self, handle: Handle) -> None:
        self._signal_workers(Path(handle.data["dir"]), signal.SIGKILL)

    def abandon(self, handle: Handle) -> bool:
        run_dir = Path(handle.data["dir"])
        run_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(run_dir / "supervisor.json", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        os.write(fd, b'{"abandoned": true}')
        os.close(fd)
        for env_file in run_dir.glob("env-*"):  # nothing will read them now; they may hold secrets
            env_file.unlink(missing_ok=True)
        return True

    def log_path(self, handle: Handle, rank: int = 0) -> str:
        return str(Path(handle.data["dir"]) / f"rank-{rank}.log")

    # -- helpers -----------------------------------------------------------------------------
    def _signal_workers(self, run_dir: Path, sig: int) -> None:
        workers = _read_json(run_dir / "workers.json")
        if not isinstance(workers, list):
            return
        for w in workers:
            if _alive(w.get("pid"), w.get("start")):
                try:
                    os.killpg(w["pid"], sig)
                except (ProcessLookupError, PermissionError):
                    pass

    def _usage(self, w: dict) -> WorkerStatus:
        pid, start = w.get("pid"), w.get("start")
        key = (pid, start)
        proc = self._procs.get(key)
        try:
            if proc is None:
                proc = self._procs[key] = psutil.Process(pid)
                proc.cpu_percent(None)
            family = [proc, *proc.children(recursive=True)]
            cpu = 0.0
            rss = 0
            for p in family:
                try:
                    cached = self._procs.setdefault((p.pid, start_time(p.pid)), p)
                    cpu += cached.cpu_percent(None)
                    rss += p.memory_info().rss
                except psutil.Error:
                    continue
            return WorkerStatus(rank=w["rank"], pid=pid, cpu_percent=round(cpu, 1), memory_bytes=rss)
        except psutil.Error:
            self._procs.pop(key, None)
            return WorkerStatus(rank=w["rank"], pid=pid)

    def forget(self, handle: Handle) -> None:
        """Drop cached process objects of a finished launch."""
        self._children.pop(handle.data["dir"], None)
        self._procs = {k: p for k, p in list(self._procs.items()) if p.is_running()}


def _write_nul(path: Path, items: list[str], private: bool = False) -> None:
    for item in items:
        if "\0" in item:
            shown = item.split("=", 1)[0] if private else item[:40]  # never an environment value: it may be a secret
            raise ValueError(f"{shown!r} contains a NUL byte, which a command or environment cannot hold")
    data = b"".join(i.encode() + b"\0" for i in items)
    if private:
        write_private(path, data)
    else:
        path.write_bytes(data)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
