"""The canary traffic split (pure routing) and the per-generation counters behind the analysis."""

from __future__ import annotations

import random

import pytest

from cumulo.gateway.metrics import BUCKETS, GenerationStats
from cumulo.gateway.routing import Endpoint, RouteTable, Split, choose_group, parse_routes, parse_splits
from cumulo.services.gateways import Counters, GatewayRegistry, GatewayReport

STABLE = [Endpoint(f"{i}", "127.0.0.1", 9000 + i, True, generation=1) for i in range(3)]
CANARY = [Endpoint("9", "127.0.0.1", 9009, True, generation=2)]


@pytest.mark.parametrize("weight", [0, 1, 10, 50, 90, 100])
def test_the_canary_gets_its_weight_of_the_requests(weight):
    table = RouteTable({"m": STABLE + CANARY}, {"m": Split(2, weight, 1)})
    groups = table.groups("m")
    rng = random.Random(7)
    n = 20_000
    to_canary = sum(choose_group(groups, rng)[1] == 2 for _ in range(n))
    assert abs(to_canary / n - weight / 100) < 0.015, to_canary
    chosen, gen = choose_group(groups, random.Random(1))
    assert all(e.generation == gen for e in chosen)


def test_a_group_without_ready_endpoints_hands_its_share_to_the_other():
    not_ready = [Endpoint("9", "h", 1, False, generation=2)]
    g = RouteTable({"m": STABLE + not_ready}, {"m": Split(2, 100, 1)}).groups("m")
    assert choose_group(g, random.Random(0)) == (tuple(STABLE), 1)  # no canary ready: all to stable
    g = RouteTable({"m": CANARY}, {"m": Split(2, 0, 1)}).groups("m")
    assert choose_group(g, random.Random(0)) == (tuple(CANARY), 2)  # no stable: the canary takes it


def test_deployments_without_a_split_have_no_groups():
    table = RouteTable({"m": STABLE, "n": CANARY}, {"n": Split(2, 10, 1), "ghost": Split(2, 10, 1)})
    assert table.groups("m") is None and table.groups("n") is not None and table.groups("ghost") is None
    assert table.splits() == {"n": Split(2, 10, 1)}


def test_routes_json_carries_generations_and_splits():
    doc = {"deployments": {"m": [{"replica_id": "1", "host": "h", "port": 1, "ready": True, "generation": 2},
                                 {"replica_id": "2", "host": "h", "port": 2, "ready": True}]},
           "splits": {"m": {"canary_generation": 2, "weight": 10, "stable_generation": 1}}}
    routes = parse_routes(doc)
    assert [e.generation for e in routes["m"]] == [2, 0]
    assert parse_splits(doc) == {"m": Split(2, 10, 1)}
    assert parse_splits({"deployments": {}}) == {}
    for bad in ({"m": {"canary_generation": 2, "weight": 101}}, {"m": {"weight": 5}}, {"m": 3},
                {"m": {"canary_generation": True, "weight": 5}}):
        with pytest.raises(ValueError, match="routes.splits.m"):
            parse_splits({"splits": bad})
    with pytest.raises(ValueError, match="generation"):
        parse_routes({"deployments": {"m": [{"replica_id": "1", "host": "h", "port": 1, "generation": "2"}]}})


def test_generation_stats_count_failures_and_latency():
    g = GenerationStats()
    for status, seconds in ((200, 0.003), (500, 0.2), (502, 0.001), (404, 0.003), (200, 2.0)):
        g.finished(status, seconds)
    snap = g.snapshot()
    assert snap["requests"] == 5 and snap["errors"] == 2  # 5xx only: a 404 is the client's
    assert len(snap["buckets"]) == len(BUCKETS) + 1 and sum(snap["buckets"]) == 5


def test_the_registry_sums_each_gateways_generation_growth():
    class Clock:
        t = 0.0

        def __call__(self):
            return self.t

    reg = GatewayRegistry(None, clock=Clock())

    def rep(gid, req, err):
        return GatewayReport(gid, {"m": Counters(generations={2: (req, err, (req - err, err))})})

    reg.record(GatewayReport("g1", {"m": Counters()}))  # before the split: nothing per generation
    reg.record(rep("g1", 10, 1))  # the split began: all 10 are new
    reg.record(GatewayReport("g2", {"m": Counters(generations={2: (500, 0, (500, 0))})}))  # first report: a baseline
    reg.record(rep("g2", 530, 3))
    reg.record(rep("g1", 4, 0))  # g1 restarted: its 4 count
    assert reg.generation_totals("m") == {2: (10 + 30 + 4, 1 + 3, (9 + 27 + 4, 1 + 3))}
    assert reg.generation_totals("other") == {}
