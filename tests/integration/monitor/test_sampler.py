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


def test_per_replica_rates_from_the_gateways_counters(db):
    """Answers/s, error rate and mean latency per replica over each interval, from cumulative counters
    (what the gateway's per-replica stats give); a replica that left the deployment is not sampled."""
    from datetime import UTC, datetime

    from cumulo.store.models import Deployment, Replica

    now = datetime.now(UTC)
    with db.tx() as s:
        s.add(Deployment(id="d1", name="web", workspace="default", created_at=now, updated_at=now,
                         spec={"kind": "Deployment", "name": "web", "command": "x"}, generation=1, deleting=False,
                         workdir="/", state="Available"))
        s.flush()
        for ordinal in (1, 2):
            s.add(Replica(deployment_id="d1", ordinal=ordinal, generation=1, state="Ready", created_at=now,
                          host="127.0.0.1", port=40000 + ordinal, runtime="local", handle={"dir": "/nonexistent"},
                          allocation={}))
    counters = {"1": (0, 0, 0.0), "2": (0, 0, 0.0), "9": (0, 0, 0.0)}
    clock = [1_800_000_000.0]
    sampler = Sampler(db, local_node="local", clock=lambda: clock[0], replica_counters=lambda route: dict(counters))
    sampler.sample()
    counters.update({"1": (100, 0, 5.0), "2": (50, 10, 25.0), "9": (7, 0, 1.0)})
    clock[0] += 10
    got = sampler.sample()

    def val(rid, metric):
        return got.get(m.SeriesKey("deployment", "default", "web", rid, metric))

    assert val("1", "request_rate") == 10.0 and val("1", "error_rate") == 0 and val("1", "latency_mean_seconds") == 0.05
    assert val("2", "request_rate") == 5.0 and val("2", "error_rate") == 0.2 and val("2", "latency_mean_seconds") == 0.5
    assert val("9", "request_rate") is None  # not a live replica of it
    clock[0] += 10
    got = sampler.sample()  # no traffic: a rate of 0, and no error rate or latency to speak of
    assert val("1", "request_rate") == 0.0 and val("1", "error_rate") is None
