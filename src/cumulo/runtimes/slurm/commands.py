"""Slurm's own commands, each bounded in time, and what their output means.

A hung slurmctld must not hang the control plane: every call gives up after a few seconds and
raises RuntimeUnavailable naming the command and what to check. The queue and the node list are
read with ONE squeue / scontrol call shared by every observe within `ttl` seconds.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from cumulo.runtimes.base import RuntimeUnavailable

TIMEOUT_S = 5.0
T = TypeVar("T")


def run(argv: list[str], *, timeout: float = TIMEOUT_S, check: bool = True) -> subprocess.CompletedProcess:
    """Run one Slurm command; RuntimeUnavailable when it is missing, hangs, or (check) fails."""
    try:
        proc = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise RuntimeUnavailable(
            f"`{argv[0]}` is not installed on the control plane's machine: install Slurm's client commands "
            "(Debian: apt-get install slurm-client) with the cluster's slurm.conf and munge key"
        ) from None
    except subprocess.TimeoutExpired:
        raise RuntimeUnavailable(
            f"`{' '.join(argv[:2])}` did not answer within {timeout:g} s: is slurmctld running and reachable? "
            "(check with `scontrol ping`)"
        ) from None
    if check and proc.returncode != 0:
        err = (proc.stderr or proc.stdout).strip().splitlines()
        raise RuntimeUnavailable(f"`{' '.join(argv[:2])}` failed (exit {proc.returncode}): {err[-1] if err else 'no output'}")
    return proc


class Cached(Generic[T]):
    """One reader's result shared by every caller within `ttl` seconds (thread-safe)."""

    def __init__(self, read: Callable[[], T], ttl: float) -> None:
        self._read = read
        self._ttl = ttl
        self._lock = threading.Lock()
        self._at = float("-inf")
        self.read_at = 0.0  # wall-clock time of the last read (to compare with files' mtimes)
        self._value: T | None = None
        self._error: RuntimeUnavailable | None = None

    def get(self) -> T:
        with self._lock:
            if time.monotonic() - self._at >= self._ttl:
                self.read_at = time.time()
                try:
                    self._value, self._error = self._read(), None
                except RuntimeUnavailable as e:
                    self._value, self._error = None, e
                self._at = time.monotonic()
            if self._error is not None:
                raise self._error
            return self._value  # type: ignore[return-value]

    def invalidate(self) -> None:
        with self._lock:
            self._at = float("-inf")


# -- the queue -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class QueuedJob:
    job_id: str
    state: str  # PENDING, RUNNING, COMPLETING, COMPLETED, FAILED, CANCELLED, TIMEOUT, NODE_FAIL, ...
    nodes: str  # a hostlist expression ("" while pending)
    reason: str
    name: str


#: states in which the job still holds (or waits for) resources
ACTIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD",
          "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD"}
WAITING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD"}


def read_queue(prefix: str) -> dict[str, list[QueuedJob]]:
    """Every job of ours still known to slurmctld (finished ones for MinJobAge), by name."""
    out = run(["squeue", "--me", "-h", "-t", "all", "-o", "%i|%T|%N|%r|%j"]).stdout
    jobs: dict[str, list[QueuedJob]] = {}
    for line in out.splitlines():
        parts = line.split("|", 4)
        if len(parts) != 5 or not parts[4].startswith(prefix):
            continue
        job = QueuedJob(parts[0].strip(), parts[1].strip(), parts[2].strip(), parts[3].strip(), parts[4])
        jobs.setdefault(job.name, []).append(job)
    for same_name in jobs.values():
        same_name.sort(key=lambda j: _job_number(j.job_id))
    return jobs


def _job_number(job_id: str) -> int:
    m = re.match(r"\d+", job_id)
    return int(m.group()) if m else 0


# -- nodes ---------------------------------------------------------------------------------------
#: node state words that mean the node runs nothing new (and what runs there may be lost)
DEAD_STATES = ("DOWN", "DRAIN", "FAIL", "NOT_RESPONDING", "POWERED_DOWN", "POWER_DOWN", "FUTURE", "NO_RESPOND")
_FIELD = re.compile(r"(?:^|\s)([A-Za-z][A-Za-z0-9_/:.]*)=")


def parse_fields(line: str) -> dict[str, str]:
    """`scontrol show ... -o` output: Key=Value pairs on one line; a value may hold spaces (OS=...)."""
    marks = list(_FIELD.finditer(line))
    fields = {}
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(line)
        fields[m.group(1)] = line[m.end():end].strip()
    return fields


def read_nodes() -> list[dict[str, str]]:
    out = run(["scontrol", "show", "node", "-o"]).stdout
    return [parse_fields(line) for line in out.splitlines() if line.startswith("NodeName=")]


def node_dead(state: str) -> bool:
    """`State=` of scontrol (IDLE, MIXED+DRAIN, DOWN*, ...): takes no new work. The trailing *
    means not responding."""
    s = state.upper()
    return s.endswith("*") or any(word in s for word in DEAD_STATES)


def node_lost(state: str) -> bool:
    """The node is gone for what runs there (down or not responding); a draining or failing node
    still runs its jobs to the end."""
    s = state.upper()
    return s.endswith("*") or any(word in s for word in ("DOWN", "NOT_RESPONDING", "NO_RESPOND"))


def gres_gpus(gres: str) -> tuple[int, str | None]:
    """`Gres=gpu:a100:4(S:0-1),gpu:2` -> (6, "a100")."""
    total, kind = 0, None
    for item in (gres or "").split(","):
        item = re.sub(r"\(.*?\)", "", item).strip()
        parts = item.split(":")
        if not parts or parts[0] != "gpu":
            continue
        count = parts[-1] if len(parts) > 1 and parts[-1].isdigit() else "1"
        total += int(count)
        if len(parts) == 3 and kind is None:
            kind = parts[1]
    return total, kind


def tres_gpus(tres: str) -> int:
    """`AllocTRES=cpu=2,mem=1G,gres/gpu=1,gres/gpu:a100=1` -> 1 (the untyped count)."""
    for item in (tres or "").split(","):
        key, _, value = item.partition("=")
        if key == "gres/gpu" and value.isdigit():
            return int(value)
    return 0


def expand_hostlist(expr: str) -> list[str]:
    """Slurm's hostlist syntax: `n[1-3,5],gpu01` -> [n1, n2, n3, n5, gpu01] (one bracket level)."""
    hosts: list[str] = []
    for m in re.finditer(r"([^,\[]+)(?:\[([^\]]*)\])?([^,]*)", expr or ""):
        head, ranges, tail = m.group(1), m.group(2), m.group(3)
        if ranges is None:
            hosts.append(head + tail)
            continue
        for part in ranges.split(","):
            lo, _, hi = part.partition("-")
            if not hi:
                hosts.append(f"{head}{lo}{tail}")
                continue
            for n in range(int(lo), int(hi) + 1):
                hosts.append(f"{head}{str(n).zfill(len(lo))}{tail}")
    return hosts
