"""The sampler's parts on real processes and a real database, with an injected clock."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest
from sqlalchemy import func, select

from cumulo.monitor.gpu import Gpus
from cumulo.monitor.procs import ProcTable
from cumulo.monitor.sampler import Sampler, quantile
from cumulo.store import metrics as m
from cumulo.store.db import Database
from cumulo.store.migrate import upgrade
from cumulo.store.models import Rollup, Sample

BUSY_TREE = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; x = b'x' * 60_000_000; print('child', flush=True); time.sleep(60)"])
print("ready", flush=True)
end = time.time() + 60
while time.time() < end:
    pass
"""


@pytest.fixture
def busy_tree():
    proc = subprocess.Popen([sys.executable, "-c", BUSY_TREE], stdout=subprocess.PIPE, text=True)
    assert {proc.stdout.readline().strip(), proc.stdout.readline().strip()} == {"ready", "child"}
    yield proc
    for p in ProcTable_children(proc.pid):
        subprocess.run(["kill", str(p)], check=False)
    proc.kill()
    proc.wait()


def ProcTable_children(pid: int) -> list[int]:  # noqa: N802
    t = ProcTable()
    t.scan()
    return list(t.children.get(pid, []))


def test_a_process_tree_cpu_and_memory(busy_tree):
    table = ProcTable()
    reference = psutil.Process(busy_tree.pid)  # psutil's own measure of the spinning parent, same window
    reference.cpu_percent(None)
    table.scan()
    first = table.tree(busy_tree.pid)
    assert first is not None and first.cpu_percent is None and first.processes == 2  # no CPU % on first sight
    time.sleep(1.0)
    table.scan()
    expected = reference.cpu_percent(None)
    tree = table.tree(busy_tree.pid)
    assert tree.processes == 2
    assert tree.cpu_percent > 5  # the parent spins (on a shared machine it gets what it gets); the child sleeps
    assert abs(tree.cpu_percent - expected) < 10 + 0.2 * expected, (tree.cpu_percent, expected)
    assert tree.rss > 50_000_000  # the child's 60 MB count
    start = table.procs[busy_tree.pid].start
    assert table.tree(busy_tree.pid, start) is not None
    assert table.tree(busy_tree.pid, start + 1) is None  # a recycled pid is not ours
    assert table.tree(2**22 + 7) is None


def test_gpus_skip_cleanly_without_a_gpu():
    g = Gpus()
    samples = g.sample()
    assert g.available == bool(samples)
    for s in samples:  # on a GPU machine: the numbers NVML gives
        assert 0 <= s.values["gpu_utilization_percent"] <= 100
        assert s.values["gpu_memory_total_bytes"] > 0
    g.close()


@pytest.fixture
def db(database_url):
    d = Database(database_url)
    upgrade(d.engine)
    yield d
    d.dispose()


def test_samples_roll_up_each_minute_and_expire_by_the_injected_clock(db):
    now = [1_800_000_000.0 - 1_800_000_000 % 60]
    t0 = int(now[0])
    sampler = Sampler(db, local_node="local", interval=10, retention=m.Retention(raw=3600, rollup=7200),
                      clock=lambda: now[0])
    for _ in range(7):  # 60 s of samples, then the first of the next minute
        sampler.sample()
        now[0] += 10
    with db.tx() as s:
        assert s.scalar(select(func.count()).select_from(Rollup)) == 3  # minute t0: cpu, memory used, total
        got = m.query(s, kind="node", object="local", metric="memory_total_bytes", since=t0, until=t0 + 70, step=60)
        assert got[0].points[0][0] == t0 and got[0].points[0][1] > 0
    assert sampler.latest[m.SeriesKey("node", "", "local", "", "cpu_percent")] >= 0
    now[0] += 3600 + 600  # past the raw retention: the next sample prunes
    sampler.sample()
    with db.tx() as s:
        assert s.scalar(select(func.min(Sample.t))) == int(now[0])
        assert s.scalar(select(func.count()).select_from(Rollup)) >= 3
    now[0] += 7200
    sampler.sample()
    with db.tx() as s:
        assert s.scalar(select(func.count()).select_from(Rollup).where(Rollup.t < int(now[0]) - 7200)) == 0
        assert s.scalar(select(func.count()).select_from(Sample)) == 3  # only the newest sample is within an hour


def test_quantile_from_bucket_counts():
    bounds = (0.1, 0.2, 0.5)
    assert quantile([0, 0, 0, 0], bounds, 0.5) is None
    assert quantile([10, 0, 0, 0], bounds, 0.5) == pytest.approx(0.05)
    assert quantile([0, 10, 0, 0], bounds, 0.99) == pytest.approx(0.199)
    assert quantile([0, 0, 0, 5], bounds, 0.5) == 0.5  # above the last bound: the last bound
