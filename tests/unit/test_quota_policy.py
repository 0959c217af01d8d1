"""Workspace quotas and costs: the pure arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from cumulo.policy.capacity import Allocation, Request
from cumulo.core.offerings import Offering
from cumulo.policy.quota import (
    Quota, Usage, budget_level, cost_of, describe_quotas, fits_quotas, over_node_quota, over_quota, quotas_left, share,
)

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def test_work_within_the_quota_may_start_and_past_it_waits_with_the_numbers():
    q = Quota(cpu=4, gpu=1)
    used = [Allocation(cpu=3, memory=0)]
    assert over_quota(Request(1, 0, 0), q, used) is None
    why = over_quota(Request(0.5, 0, 0, workers=3), q, used)
    assert why == "workspace quota: CPU 3 of 4 in use and this needs 1.5"
    why = over_quota(Request(0, 0, 1), q, [Allocation(cpu=0, memory=0, worker_gpus=((0,),))])
    assert why == "workspace quota: GPU 1 of 1 in use and this needs 1"
    assert over_quota(Request(64, 0, 8), None, used) is None  # no quota: no limit


def test_a_spent_budget_stops_new_work_and_new_machines():
    q = Quota(budget_per_month=100)
    assert over_quota(Request(1, 0, 0), q, [], spent=99.99) is None
    assert "budget of $100.00 is spent ($100.00)" in over_quota(Request(1, 0, 0), q, [], spent=100)
    why = over_node_quota(Quota(nodes=2, price_per_hour=1.0, budget_per_month=50), nodes=1, price_per_hour=0.8,
                          new_nodes=2, new_price_per_hour=0.5, spent=60)
    assert "budget of $50.00 is spent ($60.00)" in why
    assert "1 of 2 nodes are in use and this asks for 2 more" in why
    assert "$0.800/h of $1.000/h" in why and "add $0.500/h" in why
    assert over_node_quota(Quota(nodes=3), nodes=1, price_per_hour=0, new_nodes=2, new_price_per_hour=9, spent=0) is None


def test_cost_counts_only_the_overlap_with_the_window():
    u = Usage("w", "node", "n1", start=T0, end=T0 + timedelta(hours=10), price_per_hour=2.0)
    assert cost_of(u, T0, T0 + timedelta(hours=24)) == 20.0
    assert cost_of(u, T0 + timedelta(hours=5), T0 + timedelta(hours=24)) == 10.0
    assert cost_of(u, T0 + timedelta(hours=11), T0 + timedelta(hours=24)) == 0.0
    running = Usage("w", "job", "j", start=T0, end=None, price_per_hour=1.0)
    assert cost_of(running, T0, T0 + timedelta(minutes=30)) == 0.5


def test_a_share_of_the_machine_is_its_larger_resource_share():
    assert share(Allocation(cpu=2, memory=0), node_cpu=8, node_gpus=0) == 0.25
    assert share(Allocation(cpu=1, memory=0, worker_gpus=((0, 1),)), node_cpu=8, node_gpus=4) == 0.5
    assert share(Allocation(cpu=16, memory=0), node_cpu=8, node_gpus=0) == 1.0


def test_budget_alert_levels():
    assert budget_level(79.9, 100) == 0
    assert budget_level(80, 100) == 80
    assert budget_level(150, 100) == 100
    assert budget_level(1e9, None) == 0


@given(cpu=st.floats(0, 64), used=st.lists(st.floats(0, 8), max_size=8), need=st.floats(0.001, 16))
def test_admitted_work_never_takes_the_workspace_past_its_cpu_quota(cpu, used, need):
    allocs = [Allocation(cpu=c, memory=0) for c in used]
    if over_quota(Request(need, 0, 0), Quota(cpu=cpu), allocs) is None:
        assert sum(used) + need <= cpu + 1e-9


# -- provider quotas ------------------------------------------------------------------------------

def _offering(region="us-east-1", vcpus=4.0, accelerator="T4", count=1):
    return Offering(provider="aws", region=region, zone=f"{region}a", instance_type="g4dn.xlarge", vcpus=vcpus,
                    memory_gib=16, accelerator=accelerator, accelerator_count=count, price=0.5, spot_price=0.2)


def test_quotas_left_counts_held_machines_per_region_and_market():
    limits = {("aws", "us-east-1"): {"vcpus": 10, "spot:vcpus": 4, "gpus:T4": 2}}
    held = [(_offering(), False), (_offering(), True), (_offering("us-west-2"), False)]
    assert quotas_left(limits, held) == {("aws", "us-east-1"): {"vcpus": 2.0, "spot:vcpus": 0.0, "gpus:T4": 0.0}}
    assert quotas_left(limits, [(_offering(vcpus=64), False)])[("aws", "us-east-1")]["vcpus"] == 0.0  # never < 0
    assert quotas_left({}, held) == {}


def test_fits_quotas_and_describe():
    limits = {("aws", "us-east-1"): {"vcpus": 10}}
    left = {("aws", "us-east-1"): {"vcpus": 4.0}}
    assert fits_quotas(left, _offering(), False) and not fits_quotas(left, _offering(), False, count=2)
    assert fits_quotas(left, _offering("eu-west-1", vcpus=96), False)  # no entry: unlimited
    assert describe_quotas(limits, left) == "aws/us-east-1 vcpus: limit 10, 6 held by live nodes, 4 left"
    assert describe_quotas(limits, left, where=[("aws", "eu-west-1")]) == ""
