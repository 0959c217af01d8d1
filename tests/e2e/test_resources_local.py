"""Resources on the local provider (this machine, one machine, $0) through the CLI and the SDK, as
a new user tries them first: no cloud account needed."""

from __future__ import annotations

import json

import pytest

from cumulo.core.views import NodeDetail
from cumulo.sdk.client import Client
from cumulo.sdk.resources import ResourceManager, node_ids, pool_id
from tests.helpers import Server, kill_leftovers, wait_until


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path / "home", f"sqlite:///{tmp_path / 'cumulo.db'}").start()
    yield s
    s.kill()
    kill_leftovers(s.home)


def ended(rm: ResourceManager) -> bool:
    return all(n.state == "Terminated" for n in rm.list(all=True))


def test_create_this_machine_then_release_what_create_returned(server):
    """Issue 9: `rm.release(resources)` with the list `create_resources` returned raised
    `TypeError: Object of type NodeDetail is not JSON serializable`."""
    r = server.cli("resources", "create", "local", "--provider", "local", "--json")
    assert r.returncode == 0, r.stderr + server.log()
    (created,) = json.loads(r.stdout)
    assert created["state"] == "Ready" and created["provider"] == "local"
    rm = ResourceManager(Client(server.url, token=server.token))
    resources = rm.list()
    assert [n.id for n in resources] == [created["id"]]
    released = rm.release(resources)  # the list, as it came back
    assert [n.id for n in released] == [created["id"]]
    wait_until(lambda: ended(rm), timeout=30, what="terminated")

    # one node, a pool, or the list create_resources returned: whatever came back can go back
    nodes = rm.create_resources("local", provider="local", timeout=30)
    assert len(nodes) == 1 and isinstance(nodes[0], NodeDetail)
    assert rm.pool(nodes[0]).id == nodes[0].pool == rm.wait_pool(rm.pool(nodes[0].pool)).id
    assert [n.id for n in rm.release(nodes[0])] == [nodes[0].id]
    assert [n.id for n in rm.release(nodes, nodes[0].id)] == [nodes[0].id]  # idempotent, each once
    wait_until(lambda: ended(rm), timeout=30, what="terminated")


def test_node_refs_are_flattened_in_order_each_once():
    a = NodeDetail(id="p-0", pool="p", provider="aws", state="Ready", price_per_hour=0.1, cost=0.0)
    b = NodeDetail(id="p-1", pool="p", provider="aws", state="Ready", price_per_hour=0.1, cost=0.0)
    assert node_ids([a, b]) == node_ids(a, b) == node_ids((a, "p-1")) == node_ids("p-0", [[b]], a) == ["p-0", "p-1"]
    assert pool_id(a) == "p"
    with pytest.raises(TypeError, match="NodeDetail, a PoolView, or a list"):
        node_ids(3)
