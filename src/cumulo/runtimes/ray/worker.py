"""The actor that runs one rank's command on the node its placement group bundle landed on.

Runs on the cluster (imports ray). The command runs as a subprocess in its own session and process
group, dies with the actor (PR_SET_PDEATHSIG), and writes stdout and stderr to rank-N.log.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
from pathlib import Path

import psutil
import ray

from cumulo.runtimes.ray.rundir import exit_code_of

_PR_SET_PDEATHSIG = 1


try:  # bound here, not in the child: between fork and exec only the bare call runs
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux: workers end with their process group only
    _prctl = None


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))


def _free_port(ip: str) -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


@ray.remote(max_restarts=0, max_task_retries=0)
class Worker:
    """One rank. Calls are short and non-blocking; the driver polls."""

    def __init__(self, run_dir: str, rank: int) -> None:
        self.run_dir = Path(run_dir)
        self.rank = rank
        self.proc: subprocess.Popen | None = None
        self.family: dict[int, psutil.Process] = {}

    def info(self, want_port: bool) -> dict:
        ip = ray.util.get_node_ip_address()
        return {
            "node": ray.get_runtime_context().get_node_id(),
            "host": ip,
            "gpus": [str(g) for g in ray.get_runtime_context().get_accelerator_ids().get("GPU", [])],
            "port": _free_port(ip) if want_port else None,
        }

    def start(self, argv: list[str], workdir: str, placed_env: dict[str, str]) -> int | None:
        env_file = self.run_dir / f"env-{self.rank}"
        env = json.loads(env_file.read_text())
        env_file.unlink(missing_ok=True)
        env.update(placed_env)
        ips = env.get("CUMULO_NODE_IPS", "")
        if ips and all(ip.startswith("127.") for ip in ips.split(",")):
            # every node is a loopback address of one machine (a demo or test cluster): keep the
            # collectives' sockets on loopback (gloo would pick the host name's address), unless
            # the job chose an interface itself
            env.setdefault("GLOO_SOCKET_IFNAME", "lo")
            env.setdefault("NCCL_SOCKET_IFNAME", "lo")
        with open(self.run_dir / f"rank-{self.rank}.log", "ab") as log:
            try:
                self.proc = subprocess.Popen(
                    argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                    # PR_SET_PDEATHSIG needs the child itself; the call is pre-bound (see _prctl)
                    preexec_fn=_die_with_parent,  # noqa: PLW1509
                )
            except OSError as e:
                log.write(f"cumulo: cannot start {argv[0]!r}: {e}\n".encode())
                return None
        return self.proc.pid

    def poll(self) -> dict:
        """{"exit_code"} once ended (127 if it never started), else usage of its process tree."""
        if self.proc is None:
            return {"exit_code": 127}
        code = self.proc.poll()
        if code is not None:
            return {"exit_code": exit_code_of(code)}
        cpu, rss = 0.0, 0
        try:
            root = self.family.get(self.proc.pid) or self.family.setdefault(self.proc.pid, psutil.Process(self.proc.pid))
            alive = {root.pid}
            for p in [root, *root.children(recursive=True)]:
                p = self.family.setdefault(p.pid, p)
                alive.add(p.pid)
                try:
                    cpu += p.cpu_percent(None)
                    rss += p.memory_info().rss
                except psutil.Error:
                    continue
            self.family = {pid: p for pid, p in self.family.items() if pid in alive}
        except psutil.Error:
            return {"exit_code": None}
        return {"exit_code": None, "cpu_percent": round(cpu, 1), "memory_bytes": rss}

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
