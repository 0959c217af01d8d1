"""Machines launched for a cluster, in the store (SQLite and PostgreSQL): the cluster sync writes the
engine's view on the machine's own row, and an attempt's lost node is told preempted or not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cumulo.store import clusters as clusters_store
from cumulo.store import nodes as nodes_store
from cumulo.store.db import Database
from cumulo.store.migrate import upgrade
from cumulo.store.models import Cluster, Node, Pool

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def db(database_url):
    d = Database(database_url)
    upgrade(d.engine)
    with d.tx() as s:
        s.add(Cluster(name="ray", kind="ray", address="http://127.0.0.2:8265", join_address="127.0.0.2:6390",
                      artifacts="/tmp/a", created_at=T0))
        s.add(Pool(id="p1", created_at=T0, request={"nodes": [{"cpu": 2}]}, count=2))
    yield d
    d.dispose()


def machine(name, *, state="Joining", spot=False, replacements=0, address=None, engine_id=None, **kw) -> Node:
    return Node(name=name, provider="local-vm", cluster="ray", state=state, cpu=2, memory=4 * 2**30, updated_at=T0,
                created_at=kw.pop("created_at", T0), pool_id="p1", instance_type="lvm.c2", zone="local-1a", spot=spot,
                price=0.03, machine_id=f"lvm-{name}", replacements=replacements, address=address, engine_id=engine_id,
                **kw)


def engine(node_id, *, owner=None, generation=None, alive=True, address="127.0.0.10") -> dict:
    labels = {"cumulo.io/instance-type": "lvm.c2", "cumulo.free": {"cpu": 2.0}}
    if owner:
        labels["cumulo.io/node-id"] = owner
    if generation is not None:
        labels["cumulo.io/generation"] = str(generation)
    return {"engine_id": node_id, "address": address, "cpu": 2.0, "memory": 4 * 2**30, "gpus": 0, "gpu_type": None,
            "labels": labels, "alive": alive}


def sync(db, seen, now=T0):
    with db.tx() as s:
        return clusters_store.sync_nodes(s, "ray", "ray", seen, now)


def rows(db) -> dict[str, Node]:
    with db.tx() as s:
        out = {n.name: n for n in clusters_store.nodes_of(s, "ray")}
        for n in out.values():
            s.expunge(n)
        return out


def test_the_engine_node_of_a_launched_machine_goes_on_the_machine_row_and_its_state_stays_the_reconcilers(db):
    with db.tx() as s:
        s.add(machine("p1-0"))
    joined, lost = sync(db, [engine("e" * 56, owner="p1-0", generation=0), engine("f" * 56, address="127.0.0.3")])
    r = rows(db)
    assert set(r) == {"p1-0", "ray-ffffffffffff"}  # no row of its own for the machine's engine node
    m = r["p1-0"]
    assert (m.engine_id, m.address, m.engine_state, m.state) == ("e" * 56, "127.0.0.10", "alive", "Joining")
    assert m.labels["cumulo.io/node-id"] == "p1-0" and m.instance_type == "lvm.c2"
    assert sorted(joined) == ["p1-0", "ray-ffffffffffff"] and lost == []
    with db.tx() as s:
        assert clusters_store.machines_of(s, joined) == ["p1-0"] and clusters_store.joining(s, "ray")
        view = next(c for c in clusters_store.views(s, None) if c.name == "ray")
        assert {n.name: n.alive for n in view.nodes} == {"p1-0": False, "ray-ffffffffffff": True}  # not Ready yet
        s.get(Node, "p1-0").state = "Ready"
        view = next(c for c in clusters_store.views(s, None) if c.name == "ray")
        assert {n.name: (n.alive, n.cpu_free) for n in view.nodes}["p1-0"] == (True, 2.0)
    # dead, then no longer listed: lost once; the generic row follows the old rules
    joined, lost = sync(db, [engine("e" * 56, owner="p1-0", generation=0, alive=False)])
    assert rows(db)["p1-0"].engine_state == "dead" and sorted(lost) == ["p1-0", "ray-ffffffffffff"] and joined == []
    joined, lost = sync(db, [])
    assert rows(db)["p1-0"].engine_state == "absent" and lost == []
    assert rows(db)["p1-0"].state == "Ready"  # the node reconciler decides what that means


def test_only_the_current_machine_of_a_node_counts_and_an_ended_node_is_left_alone(db):
    with db.tx() as s:
        s.add(machine("p1-0", replacements=1))  # its first machine was replaced; Ray still lists it alive
        s.add(machine("p1-1", state="Terminated", engine_id="old", address="127.0.0.11", engine_state="alive"))
    sync(db, [engine("a" * 56, owner="p1-0", generation=0), engine("b" * 56, owner="p1-1", generation=0)])
    r = rows(db)
    assert r["p1-0"].engine_state is None and r["p1-0"].engine_id is None  # not joined: that was its predecessor
    assert (r["p1-1"].engine_id, r["p1-1"].engine_state) == ("old", "alive")  # ended: untouched
    assert set(r) == {"p1-0", "p1-1"}
    sync(db, [engine("a" * 56, owner="p1-0", generation=0, alive=False),
              engine("c" * 56, owner="p1-0", generation=1, address="127.0.0.12")])
    assert (rows(db)["p1-0"].engine_id, rows(db)["p1-0"].engine_state) == ("c" * 56, "alive")


def test_an_engine_node_naming_no_machine_of_this_cluster_is_an_ordinary_engine_node(db):
    sync(db, [engine("d" * 56, owner="someone-elses-0", generation=0)])
    r = rows(db)
    assert set(r) == {"ray-dddddddddddd"} and r["ray-dddddddddddd"].state == "Ready"


@pytest.mark.parametrize("state, spot, released, preempted", [
    ("Preempted", True, False, True),
    ("Terminated", True, False, True),     # a spot machine gone from the cloud
    ("Terminated", True, True, False),     # ... released by cumulo: not a preemption
    ("Terminated", False, False, False),   # an on-demand machine that died: NodeLost
    ("Ready", True, False, False),         # not known gone (yet)
])
def test_a_lost_node_is_preempted_only_when_its_record_says_the_provider_took_it_back(db, state, spot, released,
                                                                                      preempted):
    with db.tx() as s:
        s.add(machine("p1-0", state=state, spot=spot, release_requested=released, address="127.0.0.10",
                      engine_id="e1", reason="the spot machine was taken back"))
    with db.tx() as s:
        why = nodes_store.preemption(s, "ray", "127.0.0.10", set())
        assert (why is not None) == preempted, why
        assert nodes_store.preemption(s, "ray", "e1", set()) == why  # by engine id too
        assert nodes_store.preemption(s, "other", "127.0.0.10", set()) is None
    if preempted:
        assert why.startswith("spot machine lvm-p1-0 (local-vm lvm.c2 in local-1a)")


def test_an_address_reused_by_a_later_machine_is_told_apart_by_the_workers_engine_ids(db):
    with db.tx() as s:
        s.add(machine("p1-0", state="Preempted", spot=True, address="127.0.0.10", engine_id="e-old"))
        s.add(machine("p1-1", state="Terminated", spot=False, address="127.0.0.10", engine_id="e-new",
                      created_at=T0 + timedelta(minutes=5)))
    with db.tx() as s:
        assert nodes_store.preemption(s, "ray", "127.0.0.10", set()) is None  # the newest: on demand
        assert nodes_store.preemption(s, "ray", "127.0.0.10", {"e-old"}) is not None  # the one the attempt ran on
