"""A node pool's scale decisions (policy/node_pools.py): table-driven cases and properties."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cumulo.core.errors import InvalidSpec
from cumulo.core.offerings import Offering
from cumulo.core.specs import NodePoolSpec, parse_spec
from cumulo.policy.capacity import Allocation, Request
from cumulo.policy.clusters import ClusterView, NodeShape
from cumulo.policy.node_pools import (
    BUDGET_LOOKAHEAD_H, PendingWork, PoolInput, PoolNode, allowed_offerings, decide_pool, node_name,
)

G = 2**30
T0 = datetime(2026, 11, 15, 12, tzinfo=UTC)

# local-vm-like shapes: 1, 2 and 4 CPUs, one with a GPU; the 4-CPU one is NOT the cheapest per CPU
VM = (
    Offering("local-vm", "local", "local-a", "vm-1", 1, 2, price=0.010),
    Offering("local-vm", "local", "local-a", "vm-2", 2, 4, price=0.018, spot_price=0.006),
    Offering("local-vm", "local", "local-a", "vm-4", 4, 8, price=0.040, spot_price=0.012),
    Offering("local-vm", "local", "local-a", "vm-2-gpu", 2, 8, accelerator="T4", accelerator_count=1, price=0.30),
    Offering("local-vm", "local", "local-b", "vm-4", 4, 8, price=0.036),
)
HEAD = ClusterView("ray", "ray", nodes=(NodeShape("ray-head", 2, 4 * G, cpu_free=2, memory_free=4 * G),))


def spec(**kw) -> NodePoolSpec:
    base = {"name": "pool", "cluster": "ray", "max_nodes": 5}
    base.update(kw)
    return NodePoolSpec(**base)


def job(i: int, cpu: float = 3, memory: int = G, gpu: int = 0, workers: int = 1, placement: str = "pack") -> PendingWork:
    return PendingWork(f"job:{i}", f"job j{i}", Request(cpu, memory, gpu, workers), placement)


def inp(pending=(), nodes=(), cluster=HEAD, used=(), **kw) -> PoolInput:
    s = kw.pop("spec", None) or spec()
    base = dict(now=T0, spec=s, offerings=VM, cluster=cluster, used=tuple(used), nodes=tuple(nodes),
                pending=tuple(pending))
    base.update(kw)
    return PoolInput(**base)


def launching(name: str, cpu: float, price: float = 0.04, state: str = "launching", busy: bool = False) -> PoolNode:
    return PoolNode(name, state, cpu, int(cpu * 2 * G), price=price, busy=busy, instance_type=f"vm-{cpu:g}")


# -- scale up ----------------------------------------------------------------------------------

def test_work_no_node_holds_launches_the_cheapest_machine_that_fits():
    d = decide_pool(inp([job(1, cpu=3)]))
    assert [(x.node, x.offering.instance_type, x.offering.zone, x.price) for x in d.launches] == [
        ("pool-1", "vm-4", "local-b", 0.036)]  # the cheaper zone of the only type with 3+ CPUs
    assert d.next_seq == 2
    assert d.notes == {"job:1": "node pool pool: launching pool-1 for it"}
    assert "vm-4 on local-vm local-b at $0.036/h" in d.launches[0].reason


@pytest.mark.parametrize("cpu,expected", [(0.5, None), (2, None), (2.5, "vm-4"), (4, "vm-4")])
def test_what_the_cluster_holds_now_launches_nothing(cpu, expected):
    d = decide_pool(inp([job(1, cpu=cpu)]))
    assert [x.offering.instance_type for x in d.launches] == ([expected] if expected else [])


def test_work_the_cluster_holds_is_counted_before_later_work():
    # the head holds one 2-CPU job; the second one needs a machine (the cheapest 2-CPU one)
    d = decide_pool(inp([job(1, cpu=2), job(2, cpu=2)]))
    assert [x.offering.instance_type for x in d.launches] == ["vm-2"]
    assert "job:1" not in d.notes and d.launches[0].work == ("job:2",)


def test_cumulo_work_already_running_is_not_room():
    held = Allocation(cpu=2, memory=G, cluster="ray")
    d = decide_pool(inp([job(1, cpu=1)], used=[held]))
    assert [x.offering.instance_type for x in d.launches] == ["vm-1"]


def test_machines_already_launching_cover_the_demand():
    d = decide_pool(inp([job(1, cpu=3)], nodes=[launching("pool-1", 4)], next_seq=2))
    assert d.launches == ()
    assert d.notes["job:1"] == "node pool pool: waiting for pool-1 to join"
    # ... until it is full: the next job gets a machine of its own
    d = decide_pool(inp([job(1, cpu=3), job(2, cpu=3)], nodes=[launching("pool-1", 4)], next_seq=2))
    assert [(x.node, x.work) for x in d.launches] == [("pool-2", ("job:2",))]


def test_a_packed_job_gets_one_machine_for_all_its_workers_when_one_holds_them():
    d = decide_pool(inp([job(1, cpu=1, workers=3)]))  # 3 CPU: more than the head's 2
    assert [x.offering.instance_type for x in d.launches] == ["vm-4"]


def test_a_spread_job_gets_one_machine_per_worker():
    d = decide_pool(inp([job(1, cpu=1, workers=3, placement="spread")], cluster=ClusterView("ray", "ray")))
    assert [x.offering.instance_type for x in d.launches] == ["vm-1"] * 3
    assert [x.node for x in d.launches] == ["pool-1", "pool-2", "pool-3"]


def test_gpu_work_gets_a_gpu_machine():
    d = decide_pool(inp([job(1, cpu=1, gpu=1)]))
    assert [x.offering.instance_type for x in d.launches] == ["vm-2-gpu"]


def test_work_no_allowed_machine_holds_is_named():
    d = decide_pool(inp([job(1, cpu=16)]))
    assert d.launches == ()
    assert d.blocked["job:1"] == "node pool pool: no machine the pool may launch holds a worker of 16 CPU, 1Gi"


@pytest.mark.parametrize("limits,pending,nodes,launched,why", [
    ({"max_nodes": 1}, [job(1), job(2)], [], 1, "max_nodes 1 reached (1 up or launching, this needs 1 more)"),
    ({"max_nodes": 2}, [job(1)], [launching("pool-7", 1), launching("pool-8", 1)], 0,
     "max_nodes 2 reached (2 up or launching, this needs 1 more)"),
    ({"max_price_per_hour": 0.05}, [job(1), job(2)], [], 1,
     "max_price_per_hour $0.050 (its machines cost $0.036/h and this needs $0.036/h more)"),
    ({"budget_per_month": 10.0}, [job(1)], [], 0, "budget_per_month $10.00 ($9.99 spent this month"),
])
def test_a_limit_stops_a_scale_up_and_is_named_in_the_pending_reason(limits, pending, nodes, launched, why):
    d = decide_pool(inp(pending, nodes=nodes, spec=spec(**limits), spent_month=9.99))
    assert len(d.launches) == launched
    blocked = [k for k in d.blocked]
    assert blocked and why in d.blocked[blocked[-1]], d.blocked
    assert d.notes[blocked[-1]] == d.blocked[blocked[-1]]


def test_a_limit_stops_the_work_that_would_pass_it_not_smaller_work_after_it():
    d = decide_pool(inp([job(1, cpu=3), job(2, cpu=1)], spec=spec(max_price_per_hour=0.02),
                        cluster=ClusterView("ray", "ray")))
    assert [x.work for x in d.launches] == [("job:2",)]
    assert "max_price_per_hour" in d.blocked["job:1"]


def test_provider_quota_moves_the_launch_or_names_the_quota():
    # no vm-4 quota in local-b's region? quotas are per (provider, region): one region here
    d = decide_pool(inp([job(1, cpu=3)], quotas={("local-vm", "local"): {"vcpus": 2}}))
    assert d.launches == ()
    assert d.blocked["job:1"].startswith("node pool pool: provider quota: ")


def test_spot_allowed_takes_the_cheaper_spot_market_and_required_only_spot():
    d = decide_pool(inp([job(1, cpu=3)], spec=spec(spot="allowed")))
    assert [(x.offering.instance_type, x.spot, x.price) for x in d.launches] == [("vm-4", True, 0.012)]
    d = decide_pool(inp([job(1, cpu=1)], spec=spec(spot="required"), cluster=ClusterView("ray", "ray")))
    assert [(x.offering.instance_type, x.spot, x.price) for x in d.launches] == [("vm-2", True, 0.006)]
    d = decide_pool(inp([job(1, cpu=1)], spec=spec(spot="never"), cluster=ClusterView("ray", "ray")))
    assert [(x.offering.instance_type, x.spot) for x in d.launches] == [("vm-1", False)]


def test_instance_types_and_shapes_choose_what_the_pool_may_launch():
    assert {o.instance_type for o in allowed_offerings(spec(instance_types=["vm-2"]), VM)} == {"vm-2"}
    assert {o.instance_type for o in allowed_offerings(spec(shapes=[{"cpu": 2}]), VM)} == {"vm-2"}  # gpus: 0
    gpu = {"cpu": 2, "memory": "8Gi", "gpus": 1}
    assert {o.instance_type for o in allowed_offerings(spec(shapes=[gpu]), VM)} == {"vm-2-gpu"}
    assert allowed_offerings(spec(shapes=[{**gpu, "memory": "4Gi"}]), VM) == []
    assert {o.zone for o in allowed_offerings(spec(providers=["aws"]), VM)} == set()
    d = decide_pool(inp([job(1, cpu=3)], spec=spec(shapes=[{"cpu": 2}])))
    assert d.launches == () and "no machine the pool may launch" in d.blocked["job:1"]


def test_min_nodes_are_kept_up_with_the_cheapest_machines():
    d = decide_pool(inp(spec=spec(min_nodes=2)))
    assert [(x.node, x.offering.instance_type) for x in d.launches] == [("pool-1", "vm-1"), ("pool-2", "vm-1")]
    assert all("min_nodes 2" in x.reason for x in d.launches)
    assert decide_pool(inp(nodes=[launching("pool-1", 1), launching("pool-2", 1)], spec=spec(min_nodes=2))).launches == ()


def test_node_names_come_from_the_sequence_so_a_repeated_decision_names_the_same_nodes():
    a = decide_pool(inp([job(1, cpu=3), job(2, cpu=1)], cluster=ClusterView("ray", "ray"), next_seq=41))
    b = decide_pool(inp([job(1, cpu=3), job(2, cpu=1)], cluster=ClusterView("ray", "ray"), next_seq=41))
    assert a == b
    assert [x.node for x in a.launches] == ["pool-41", "pool-42"] and a.next_seq == 43
    assert node_name("p" * 63, 7) == "p" * 50 + "-7"


# -- scale down --------------------------------------------------------------------------------

def test_an_idle_node_is_released_after_idle_ttl_not_before():
    n = launching("pool-1", 4, state="ready")
    d = decide_pool(inp(nodes=[n], spec=spec(idle_ttl=60)))
    assert d.releases == () and d.idle_since == {"pool-1": T0}
    later = inp(nodes=[n], spec=spec(idle_ttl=60), idle_since={"pool-1": T0}, now=T0 + timedelta(seconds=59))
    assert decide_pool(later).releases == ()
    d = decide_pool(inp(nodes=[n], spec=spec(idle_ttl=60), idle_since={"pool-1": T0}, now=T0 + timedelta(seconds=60)))
    assert [(r.node, r.price) for r in d.releases] == [("pool-1", 0.04)]
    assert "idle for 60s" in d.releases[0].reason and "$0.040/h" in d.releases[0].reason
    assert d.idle_since == {}


def test_busy_nodes_reset_their_idle_clock_and_launching_ones_never_age():
    d = decide_pool(inp(nodes=[launching("pool-1", 4, state="ready", busy=True), launching("pool-2", 4)],
                        spec=spec(idle_ttl=1), idle_since={"pool-1": T0 - timedelta(hours=1)}))
    assert d.releases == () and d.idle_since == {}


def test_scale_down_never_goes_below_min_nodes_and_keeps_the_cheapest():
    nodes = [launching("pool-1", 4, 0.04, "ready"), launching("pool-2", 1, 0.01, "ready"),
             launching("pool-3", 2, 0.02, "ready")]
    old = {n.name: T0 - timedelta(hours=1) for n in nodes}
    d = decide_pool(inp(nodes=nodes, spec=spec(min_nodes=1, idle_ttl=60), idle_since=old))
    assert [r.node for r in d.releases] == ["pool-1", "pool-3"]
    assert d.launches == ()


# -- the spec ----------------------------------------------------------------------------------

@pytest.mark.parametrize("body,field,fix", [
    ({"min_nodes": 3, "max_nodes": 2}, "(spec)", "lower min_nodes or raise max_nodes"),
    ({"spot": "sometimes"}, "spot", "'allowed', 'required' or 'never'"),
    ({"idle_ttl": "soon"}, "idle_ttl", ""),
    ({"cluster": "local"}, "(spec)", "name a Ray cluster"),
    ({"max_price_per_hour": 0}, "max_price_per_hour", "greater than 0"),
    ({"instance_types": ["a"], "shapes": [{"cpu": 1}]}, "(spec)", "not both"),
    ({"maxnodes": 3}, "maxnodes", "unknown field"),
])
def test_a_bad_node_pool_spec_names_the_field_and_the_fix(body, field, fix):
    with pytest.raises(InvalidSpec) as e:
        parse_spec({"kind": "NodePool", "name": "p", "cluster": "ray", **body})
    fields = [x["field"] for x in e.value.errors]
    assert field in fields, e.value.errors
    assert fix in str(e.value)


# -- properties --------------------------------------------------------------------------------

works = st.lists(st.tuples(st.sampled_from([0.5, 1, 2, 3, 4, 6]), st.integers(1, 3), st.sampled_from(["pack", "spread"]),
                           st.integers(0, 1)), max_size=8)


@settings(max_examples=150, deadline=None)
@given(works=works, max_nodes=st.integers(1, 6), max_price=st.one_of(st.none(), st.floats(0.01, 0.3)),
       budget=st.one_of(st.none(), st.floats(0.05, 2.0)), spent=st.floats(0, 1.0),
       live=st.lists(st.sampled_from([1, 2, 4]), max_size=3), spot=st.sampled_from(["allowed", "required", "never"]))
def test_a_decision_never_passes_max_nodes_price_or_budget(works, max_nodes, max_price, budget, spent, live, spot):
    s = spec(max_nodes=max(max_nodes, 1), max_price_per_hour=max_price, budget_per_month=budget, spot=spot)
    nodes = [launching(f"pool-{i}", c, price=0.01 * c) for i, c in enumerate(live)]
    pending = [job(i, cpu=c, workers=w, placement=p, gpu=g) for i, (c, w, p, g) in enumerate(works)]
    d = decide_pool(inp(pending, nodes=nodes, spec=s, spent_month=spent, next_seq=10))
    if not d.launches:
        return
    n = len(nodes) + len(d.launches)
    price = sum(x.price for x in nodes) + sum(x.price for x in d.launches)
    assert n <= s.max_nodes
    assert max_price is None or price <= max_price + 1e-9
    assert budget is None or spent + price * BUDGET_LOOKAHEAD_H <= budget + 1e-9
    assert len({x.node for x in d.launches}) == len(d.launches)
    assert spot != "never" or not any(x.spot for x in d.launches)
    assert spot != "required" or all(x.spot for x in d.launches)


@settings(max_examples=150, deadline=None)
@given(cpus=st.lists(st.sampled_from([0.25, 0.5, 1, 2]), min_size=1, max_size=6), free=st.integers(8, 16))
def test_no_launch_when_the_cluster_already_holds_the_work(cpus, free):
    big = ClusterView("ray", "ray", nodes=(NodeShape("n", free, 64 * G, cpu_free=free, memory_free=64 * G),))
    if sum(cpus) > free:
        return
    d = decide_pool(inp([job(i, cpu=c) for i, c in enumerate(cpus)], cluster=big))
    assert d.launches == () and d.blocked == {}


@settings(max_examples=150, deadline=None)
@given(cpu=st.sampled_from([0.5, 1, 1.5, 2, 3, 4]), mem=st.sampled_from([1, 2, 4, 6, 8]), gpu=st.integers(0, 1),
       spot=st.sampled_from(["allowed", "never"]))
def test_one_job_gets_the_cheapest_machine_that_fits_it(cpu, mem, gpu, spot):
    s = spec(spot=spot)
    d = decide_pool(inp([job(1, cpu=cpu, memory=mem * G, gpu=gpu)], cluster=ClusterView("ray", "ray"), spec=s))
    fits = [o for o in allowed_offerings(s, VM)
            if o.vcpus >= cpu and o.memory_gib >= mem and o.accelerator_count >= gpu]
    if not fits:
        assert d.launches == () and "job:1" in d.blocked
        return
    cheapest = min(min(o.price, o.spot_price if o.spot_price is not None else o.price) for o in fits)
    assert [x.price for x in d.launches] == [cheapest]


def test_an_unreachable_cluster_gets_no_machines_and_loses_none():
    away = ClusterView("ray", "ray", reachable=False, reason="connection refused")
    idle = launching("pool-1", 4, state="ready")
    d = decide_pool(inp([job(1, cpu=3)], nodes=[idle], cluster=away, spec=spec(idle_ttl=1, min_nodes=0),
                        idle_since={"pool-1": T0 - timedelta(hours=1)}))
    assert d.launches == () and d.releases == ()
    assert d.notes == {"job:1": "node pool pool: cluster ray is unreachable (connection refused): no machine is "
                                "launched until it answers"}
    assert d.idle_since == {"pool-1": T0 - timedelta(hours=1)}
