"""CPU and memory of process trees, from one pass over /proc per sample.

`psutil.Process.children(recursive=True)` scans every process on the machine on each call; the
sampler asks for ~150 trees every 10 s, so it reads /proc once (`ProcTable.scan`) and walks the
trees in memory. A process is identified by pid AND start time, so a recycled pid is never counted
as ours. CPU % is the tree's CPU time since the previous scan over the wall time between the scans
(100 = one core); a process born between two scans counts all of its CPU time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    start: int  # clock ticks since boot
    cpu_ticks: int  # user + system
    rss: int  # bytes


@dataclass(frozen=True)
class TreeUsage:
    cpu_percent: float | None  # None on the first scan that sees the tree
    rss: int
    processes: int
    pids: tuple[int, ...]


def read_proc(pid: int) -> Proc | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2:].split()
    # fields[0] is field 3 (state): ppid 4, utime 14, stime 15, starttime 22, rss 24
    return Proc(pid=pid, ppid=int(fields[1]), start=int(fields[19]), cpu_ticks=int(fields[11]) + int(fields[12]),
                rss=int(fields[21]) * PAGE)


def _uptime_ticks() -> int:
    with open("/proc/uptime") as f:
        return int(float(f.read().split()[0]) * TICKS)


class ProcTable:
    """The machine's processes at the last scan, and the CPU ticks of each at the one before."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.procs: dict[int, Proc] = {}
        self.children: dict[int, list[int]] = {}
        self._prev: dict[tuple[int, int], int] = {}  # (pid, start) -> cpu ticks at the previous scan
        self._prev_at: float | None = None
        self._prev_uptime = 0
        self._at: float | None = None
        self._uptime = 0

    def scan(self) -> None:
        old = {(p.pid, p.start): p.cpu_ticks for p in self.procs.values()}
        self._prev, self._prev_at, self._prev_uptime = old, self._at, self._uptime
        procs: dict[int, Proc] = {}
        children: dict[int, list[int]] = {}
        for name in os.listdir("/proc"):
            if name.isdigit():
                p = read_proc(int(name))
                if p is not None:
                    procs[p.pid] = p
                    children.setdefault(p.ppid, []).append(p.pid)
        self.procs, self.children = procs, children
        self._at, self._uptime = self.clock(), _uptime_ticks()

    def tree(self, pid: int | None, start: int | None = None) -> TreeUsage | None:
        """The process `pid` (if it started at `start`, when given) and all its descendants."""
        root = self.procs.get(pid) if pid else None
        if root is None or (start is not None and root.start != start):
            return None
        members, stack = [], [root.pid]
        while stack:
            p = self.procs.get(stack.pop())
            if p is None:
                continue
            members.append(p)
            stack.extend(self.children.get(p.pid, ()))
        rss = sum(p.rss for p in members)
        cpu: float | None = None
        if self._prev_at is not None and self._at is not None and self._at > self._prev_at:
            ticks = 0
            for p in members:
                before = self._prev.get((p.pid, p.start))
                if before is not None:
                    ticks += max(p.cpu_ticks - before, 0)
                elif p.start >= self._prev_uptime:  # born since the previous scan: all of it is new
                    ticks += p.cpu_ticks
            cpu = round(100.0 * ticks / TICKS / (self._at - self._prev_at), 2)
        return TreeUsage(cpu, rss, len(members), tuple(p.pid for p in members))
