"""The node pool reconciler on a real store (SQLite and PostgreSQL), driven pass by pass with a
clock of its own: the rows a scale-up writes, no second launch for the same demand, the notes a
waiting job shows, idle release after idle_ttl (and no new work placed on a machine being
released), min_nodes, delete. The machines themselves are the node reconciler's (tested with real
providers in tests/e2e/test_node_pools_*.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from cumulo.control.node_pools import NodePoolReconciler
from cumulo.core.offerings import Offering
from cumulo.core.states import NodeState
from cumulo.services.node_pools import NodePoolService
from cumulo.store import clusters as clusters_store
from cumulo.store import node_pools as store
from cumulo.store.db import Database
from cumulo.store.migrate import upgrade
from cumulo.store.models import Cluster, Event, Job, Node, Pool

G = 2**30
OFFERS = [
    Offering("local-vm", "local-1", "local-1a", "lvm.c2", 2, 4, price=0.10),
    Offering("local-vm", "local-1", "local-1a", "lvm.c4", 4, 8, price=0.20),
    Offering("local-vm", "local-1", "local-1b", "lvm.c4", 4, 8, price=0.19),
    Offering("aws", "us-east-1", "us-east-1a", "c5.xlarge", 4, 8, price=0.17),  # not named by the pool
]


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 20, 12, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def env(database_url):
    db = Database(database_url)
    upgrade(db.engine)
    clock = Clock()
    with db.tx() as s:
        s.add(Cluster(name="ray", kind="ray", address="http://127.0.0.9:9", artifacts="/tmp/x", created_at=clock.now,
                      state="Ready"))
        # the engine's own node: 2 CPUs, all free
        s.add(Node(name="ray-head", provider="ray", cluster="ray", state="Ready", cpu=2, memory=4 * G, gpus=[],
                   gpu_names=[], updated_at=clock.now, labels={"cumulo.free": {"cpu": 2, "memory": 4 * G}}))
    woken: dict[str, list[str]] = {"node": [], "job": []}
    r = NodePoolReconciler(db, offerings=lambda: OFFERS, providers=["aws", "local-vm"], clock=clock)
    r.wake_node, r.wake_job = woken["node"].append, woken["job"].append
    svc = NodePoolService(db, providers=["aws", "local", "local-vm"], clock=clock)
    yield db, clock, r, svc, woken
    db.dispose()


def pending_job(db, clock, name: str, cpu: float, **spec) -> str:
    job_id = f"{name}-id"
    with db.tx() as s:
        s.add(Job(id=job_id, name=name, workspace="default", created_at=clock.now, artifacts_dir="/tmp/a",
                  spec={"kind": "Job", "name": name, "command": "true", "cluster": "ray",
                        "resources": {"cpu": cpu, "memory": "1Gi"}, **spec},
                  state="Pending", reason="waiting for resources", attempts=0))
    clock.now += timedelta(seconds=1)
    return job_id


def rows(db) -> list[tuple]:
    with db.tx() as s:
        return [(n.name, n.instance_type, n.zone, n.price, n.state, n.node_pool, n.cluster, n.release_requested)
                for n in s.scalars(select(Node).where(Node.node_pool.is_not(None)).order_by(Node.name))]


def pool_spec(**kw) -> dict:
    return {"kind": "NodePool", "name": "p", "cluster": "ray", "providers": ["local-vm"], "max_nodes": 3,
            "idle_ttl": 60, **kw}


def test_a_scale_up_writes_the_node_rows_and_a_repeated_pass_launches_nothing_more(env):
    db, clock, r, svc, woken = env
    view, action, _ = svc.apply(pool_spec())
    assert action == "created" and view.nodes_up == 0
    job = pending_job(db, clock, "wide", cpu=3)
    pending_job(db, clock, "small", cpu=1)  # the head holds it: no machine for it
    r.reconcile("p")
    # the cheapest 4-CPU machine the pool may launch (aws's cheaper one is not among its providers)
    assert rows(db) == [("p-1", "lvm.c4", "local-1b", 0.19, "Provisioning", "p", "ray", False)]
    with db.tx() as s:
        node = s.get(Node, "p-1")
        req = s.get(Pool, node.pool_id).request
        assert req["nodes"] == [{"instance_type": "lvm.c4"}] and req["providers"] == ["local-vm"]
        ups = [e.message for e in s.scalars(select(Event).where(Event.reason == "ScaleUp"))]
        assert ups == ["p-1: scale up for job wide: lvm.c4 on local-vm local-1b at $0.190/h, the cheapest that fits"]
        assert store.get(s, "p").next_seq == 2
        assert store.notes_for(s, "ray", f"job:{job}") == ["node pool p: launching p-1 for it"]
    assert woken["node"] == ["p-1"] and woken["job"] == [job]
    # again, and again after the machine is up but not joined: the booting machine covers the job
    r.reconcile("p")
    with db.tx() as s:
        s.get(Node, "p-1").state = NodeState.JOINING.value
    r.reconcile("p")
    assert [x[0] for x in rows(db)] == ["p-1"]
    with db.tx() as s:
        assert store.notes_for(s, "ray", f"job:{job}") == ["node pool p: waiting for p-1 to join"]
    # a pool view says the same, by the job's name
    assert svc.get("p").notes == {"job wide": "node pool p: waiting for p-1 to join"}


def test_a_limit_is_a_note_for_the_job_and_one_event_not_one_per_pass(env):
    db, clock, r, svc, woken = env
    svc.apply(pool_spec(max_price_per_hour=0.15))
    job = pending_job(db, clock, "wide", cpu=3)
    for _ in range(3):
        r.reconcile("p")
    assert rows(db) == []
    with db.tx() as s:
        (note,) = store.notes_for(s, "ray", f"job:{job}")
        blocked = list(s.scalars(select(Event.message).where(Event.reason == "ScaleUpBlocked")))
    assert note == ("node pool p: max_price_per_hour $0.150 (its machines cost $0.000/h and this needs "
                    "$0.190/h more)")
    assert blocked == [f"job:{job}: {note}"]


def test_an_idle_machine_is_released_after_idle_ttl_and_takes_no_new_work_meanwhile(env):
    db, clock, r, svc, woken = env
    svc.apply(pool_spec())
    pending_job(db, clock, "wide", cpu=3)
    r.reconcile("p")
    with db.tx() as s:  # the job ran and ended; the machine joined and is all free
        s.get(Job, "wide-id").state = "Succeeded"
        n = s.get(Node, "p-1")
        n.state, n.engine_state, n.engine_id, n.ready_at = "Ready", "alive", "e1", clock.now
        n.labels = {"cumulo.free": {"cpu": 4, "memory": 8 * G}, "cumulo.io/node-id": "p-1"}
    r.reconcile("p")
    clock.now += timedelta(seconds=59)
    r.reconcile("p")
    assert rows(db)[0][-1] is False
    clock.now += timedelta(seconds=1)
    r.reconcile("p")
    assert rows(db)[0][-1] is True
    with db.tx() as s:
        (down,) = s.scalars(select(Event.message).where(Event.reason == "ScaleDown"))
        # drained: placement no longer offers the machine to new work
        ray = [c for c in clusters_store.views(s, None) if c.name == "ray"][0]
        assert {n.name: n.alive for n in ray.nodes} == {"ray-head": True, "p-1": False}
    assert down == "p-1: idle for 60s (no cumulo work on it): releasing lvm.c4 at $0.190/h"


def test_a_busy_machine_is_kept(env):
    db, clock, r, svc, woken = env
    svc.apply(pool_spec())
    pending_job(db, clock, "wide", cpu=3)
    r.reconcile("p")
    with db.tx() as s:  # joined, and the engine reports a CPU in use
        n = s.get(Node, "p-1")
        n.state, n.engine_state, n.engine_id, n.ready_at = "Ready", "alive", "e1", clock.now
        n.labels = {"cumulo.free": {"cpu": 1, "memory": 8 * G}}
    for _ in range(3):
        clock.now += timedelta(seconds=120)
        r.reconcile("p")
    assert rows(db)[0][-1] is False


def test_min_nodes_are_launched_and_delete_releases_everything_then_the_pool(env):
    db, clock, r, svc, woken = env
    svc.apply(pool_spec(min_nodes=2))
    r.reconcile("p")
    assert [(x[0], x[1]) for x in rows(db)] == [("p-1", "lvm.c2"), ("p-2", "lvm.c2")]
    _, action, changed = svc.apply(pool_spec(min_nodes=2))
    assert (action, changed) == ("unchanged", [])
    _, action, changed = svc.apply(pool_spec(min_nodes=1, max_nodes=5))
    assert (action, changed) == ("updated", ["max_nodes", "min_nodes"])
    svc.delete("p")
    assert r.reconcile("p") is not None
    assert all(x[-1] for x in rows(db))
    with db.tx() as s:
        for n in s.scalars(select(Node).where(Node.node_pool == "p")):
            n.state = "Terminated"
    assert r.reconcile("p") is None
    with db.tx() as s:
        assert store.get(s, "p") is None


def test_bad_pools_name_the_field(env):
    db, clock, r, svc, woken = env
    from cumulo.core.errors import InvalidSpec

    for body, field in [(pool_spec(cluster="nope"), "cluster"), (pool_spec(providers=["local"]), "providers"),
                        (pool_spec(providers=["gcp"]), "providers"), (pool_spec(max_nodes=0), "max_nodes")]:
        with pytest.raises(InvalidSpec) as e:
            svc.apply(body)
        assert [x["field"] for x in e.value.errors] == [field], e.value.errors
