"""Placement policy: table-driven cases, failover, batch optimum vs brute force, properties."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cumulo.core.errors import InvalidSpec, NotFound, Unschedulable
from cumulo.core.offerings import Offering
from cumulo.policy.placement import PlacementRequest, block, is_blocked, parse_accelerator, rank
from cumulo.policy.placement_batch import place_batch, quota_usage


def off(provider="aws", region="r1", zone="r1a", itype="t.small", vcpus=4, mem=16, acc=None, n=0, price=1.0, spot=None):
    return Offering(provider, region, zone, itype, vcpus, mem, acc, n, 16.0 if acc else 0.0, price, spot)


CAT = [
    off(itype="cpu.large", vcpus=2, mem=8, price=0.10, spot=0.03),
    off(itype="cpu.xlarge", vcpus=4, mem=16, price=0.20, spot=0.07),
    off(zone="r1b", itype="cpu.xlarge", vcpus=4, mem=16, price=0.20, spot=0.05),
    off(region="r2", zone="r2a", itype="cpu.xlarge", vcpus=4, mem=16, price=0.22, spot=None),
    off(itype="gpu.t4", vcpus=4, mem=16, acc="T4", n=1, price=0.50, spot=0.20),
    off(region="r2", zone="r2a", itype="gpu.a100x8", vcpus=96, mem=1152, acc="A100", n=8, price=30.0, spot=12.0),
    off(provider="gcp", region="g1", zone="g1-a", itype="a2-8g", vcpus=96, mem=680, acc="A100", n=8, price=29.0, spot=9.0),
    off(provider="gcp", region="g1", zone="g1-b", itype="a2-16g", vcpus=96, mem=1360, acc="A100", n=16, price=55.0),
    off(provider="gcp", region="g2", zone="g2-a", itype="h100x8", vcpus=208, mem=1872, acc="H100", n=8, price=88.0, spot=30.0),
    off(provider="local", region="local", zone=None, itype="local", vcpus=2, mem=4, price=0.0),
]


@pytest.mark.parametrize("req, first, market, hourly", [
    (dict(cpu=4, memory_gib=16), "cpu.xlarge@r1a", "on-demand", 0.20),
    (dict(cpu=4, memory_gib=16, spot=True), "cpu.xlarge@r1b", "spot", 0.05),
    (dict(cpu=1), "local@local", "on-demand", 0.0),
    (dict(cpu=1, exclude_providers=["local"]), "cpu.large@r1a", "on-demand", 0.10),
    (dict(accelerator="A100:8"), "a2-8g@g1-a", "on-demand", 29.0),
    (dict(accelerator="a100:8", spot=True), "a2-8g@g1-a", "spot", 9.0),
    (dict(accelerator="A100:8", providers=["aws"]), "gpu.a100x8@r2a", "on-demand", 30.0),
    (dict(accelerator="A100:9"), "a2-16g@g1-b", "on-demand", 55.0),
    (dict(accelerator="T4"), "gpu.t4@r1a", "on-demand", 0.5),
    (dict(instance_type="CPU.XLARGE", regions=["r2"]), "cpu.xlarge@r2a", "on-demand", 0.22),
    (dict(accelerator="A100:8", objective="time"), "a2-16g@g1-b", "on-demand", 55.0),
    (dict(cpu=64, objective="time"), "h100x8@g2-a", "on-demand", 88.0),
    (dict(accelerator="A100:8", max_price=29.5), "a2-8g@g1-a", "on-demand", 29.0),
])
def test_rank_picks(req, first, market, hourly):
    r = PlacementRequest(**req)
    ranked = rank(r, CAT)
    top = ranked[0]
    assert f"{top.offering.instance_type}@{top.offering.zone or top.offering.region}" == first
    assert top.market == market and top.hourly == pytest.approx(hourly)


def test_count_multiplies_total_and_ties_are_deterministic():
    ranked = rank(PlacementRequest(cpu=4, memory_gib=16, count=3, exclude_providers=("local",)), CAT)
    assert [c.total_hourly for c in ranked[:2]] == pytest.approx([0.6, 0.6])
    assert [c.offering.zone for c in ranked[:2]] == ["r1a", "r1b"]  # equal price: zone order
    assert ranked == rank(PlacementRequest(cpu=4, memory_gib=16, count=3, exclude_providers=("local",)), list(reversed(CAT)))


@pytest.mark.parametrize("req, error, words", [
    (dict(accelerator="A100:8", regions=["eu-west-9"]), Unschedulable,
     "no offering has 8x A100 in regions [eu-west-9]; 3 offerings have 8x A100 elsewhere (g1, r2)"),
    (dict(accelerator="A100:8", exclude_regions=["g1", "r2"]), Unschedulable, "regions other than [g1, r2]"),
    (dict(accelerator="A100:8", providers=["azure"]), Unschedulable, "on providers [azure]; 3 offerings have 8x A100 on other providers (aws, gcp)"),
    (dict(accelerator="A100:32"), Unschedulable, "no offering has 32x A100; the most on one machine is 16x"),
    (dict(accelerator="A10"), InvalidSpec, "unknown accelerator 'A10'; did you mean A100"),
    (dict(instance_type="cpu.medium"), NotFound, "unknown instance type 'cpu.medium'; did you mean cpu.large, cpu.xlarge?"),
    (dict(accelerator="T4", cpu=64), Unschedulable, "no offering with 1x T4 has >= 64 vCPUs; the largest has 4 vCPUs"),
    (dict(memory_gib=5000), Unschedulable, ">= 5000 GiB memory; the largest has 208 vCPUs and 1872 GiB"),
    (dict(instance_type="cpu.large", accelerator="T4"), Unschedulable, "cpu.large has no T4"),
    (dict(accelerator="H100:8", max_price=20), Unschedulable, "costs at most $20/h per machine; the cheapest is gcp h100x8"),
    (dict(accelerator="H100:8", max_price=20, spot=True), Unschedulable, "(spot allowed)"),
])
def test_rank_says_which_constraint_excluded_everything(req, error, words):
    with pytest.raises(error) as e:
        rank(PlacementRequest(**req), CAT)
    assert words in str(e.value)


@pytest.mark.parametrize("req, field", [
    (dict(count=0), "count"), (dict(count=-2), "count"), (dict(cpu=-1), "cpu"), (dict(memory_gib=math.nan), "memory_gib"),
    (dict(accelerator="A100:0"), "accelerator_count"), (dict(accelerator="A100:8", accelerator_count=4), "accelerator_count"),
    (dict(accelerator_count=2), "accelerator_count"), (dict(objective="speed"), "objective"), (dict(max_price=-1), "max_price"),
])
def test_bad_requests_name_the_field(req, field):
    with pytest.raises(InvalidSpec) as e:
        PlacementRequest(**req)
    assert field in [x["field"] for x in e.value.errors]


def test_accelerator_parsing():
    assert parse_accelerator("A100:8") == ("A100", 8)
    assert parse_accelerator("T4") == ("T4", 1)
    r = PlacementRequest(accelerator="L4", accelerator_count=2)
    assert (r.accelerator, r.accelerator_count) == ("L4", 2)
    assert PlacementRequest(accelerator="A100:8").describe() == "8x A100"
    assert PlacementRequest(providers="aws").providers == ("aws",)
    with pytest.raises(InvalidSpec):
        parse_accelerator("A100:x")


def test_failover_blocks_zone_then_region_then_provider():
    r = PlacementRequest(cpu=4, memory_gib=16, spot=True)
    first = rank(r, CAT)[0].offering
    assert first.zone == "r1b"
    b = block(frozenset(), first, "zone")
    assert rank(r, CAT, b)[0].offering.zone == "r1a"
    b = block(b, rank(r, CAT, b)[0].offering, "region")
    assert all(c.offering.region != "r1" for c in rank(r, CAT, b))
    b = block(b, rank(r, CAT, b)[0].offering, "provider")
    assert all(c.offering.provider != "aws" for c in rank(r, CAT, b))
    assert block(b, first, None) == b
    with pytest.raises(InvalidSpec):
        block(b, first, "planet")
    local = CAT[-1]
    assert block(frozenset(), local, "zone") == {("region", "local", "local")}  # no zones: the region
    with pytest.raises(Unschedulable, match="blocked after failures"):
        rank(PlacementRequest(accelerator="H100:8"), CAT, block(frozenset(), CAT[8], "zone"))


def test_quota_usage_keys():
    a100 = CAT[5]
    assert quota_usage("gpus", a100, False, 2) == 16
    assert quota_usage("gpus:a100", a100, False) == 8 and quota_usage("gpus:H100", a100, False) == 0
    assert quota_usage("spot:vcpus", a100, False) == 0 and quota_usage("spot:vcpus", a100, True) == 96
    assert quota_usage("on-demand:instances", a100, True) == 0 and quota_usage("memory_gib", a100, True) == 1152
    with pytest.raises(InvalidSpec):
        quota_usage("cores", a100, False)


def test_batch_without_quotas_is_each_cheapest_and_in_request_order():
    reqs = [PlacementRequest(accelerator="A100:8"), PlacementRequest(cpu=4, memory_gib=16, spot=True),
            PlacementRequest(accelerator="A100:8")]
    out = place_batch(reqs, CAT)
    assert [a.offering.instance_type for a in out.assignments] == ["a2-8g", "cpu.xlarge", "a2-8g"]
    assert out.total_hourly == pytest.approx(29 + 0.05 + 29)
    assert place_batch([], CAT).assignments == ()


def test_batch_quota_moves_the_overflow_to_the_next_cheapest():
    reqs = [PlacementRequest(accelerator="A100:8")] * 3
    out = place_batch(reqs, CAT, {("gcp", "g1"): {"gpus": 16}})
    names = sorted(a.offering.instance_type for a in out.assignments)
    assert names == ["a2-8g", "a2-8g", "gpu.a100x8"]
    assert out.usage[("gcp", "g1")] == {"gpus": 16}
    with pytest.raises(Unschedulable, match="cannot all be placed within the quotas"):
        place_batch(reqs, CAT, {("gcp", "g1"): {"gpus": 8}, ("aws", "r2"): {"gpus": 8}})
    with pytest.raises(Unschedulable, match="request 1: no offering has 8x H100 in regions"):
        place_batch([reqs[0], PlacementRequest(accelerator="H100:8", regions=["g1"])], CAT)
    with pytest.raises(InvalidSpec):
        place_batch(reqs, CAT, {("gcp", "g1"): {"gpus": -1}})


# -------------------------------------------------------------------------------- brute force

def brute_force(reqs, offerings, quotas):
    """Minimum total $/h over every assignment (each request to any feasible offering, any market
    rank chooses), or None when no assignment fits the quotas."""
    options = []
    for r in reqs:
        try:
            options.append(rank(r, offerings))
        except (Unschedulable, InvalidSpec, NotFound):
            return "unschedulable"
    best = None
    for combo in itertools.product(*options):
        used: dict = {}
        for r, c in zip(reqs, combo, strict=True):
            loc = (c.offering.provider, c.offering.region)
            for k in quotas.get(loc, {}):
                used[(loc, k)] = used.get((loc, k), 0) + quota_usage(k, c.offering, c.spot, r.count)
        if all(v <= quotas[loc][k] + 1e-9 for (loc, k), v in used.items()):
            total = sum(c.total_hourly for c in combo)
            best = total if best is None else min(best, total)
    return best


prices = st.floats(min_value=0.01, max_value=50, allow_nan=False).map(lambda p: round(p, 2))


@st.composite
def offering_st(draw):
    region = draw(st.sampled_from(["r1", "r2", "r3"]))
    acc = draw(st.sampled_from([None, "T4", "A100"]))
    price = draw(prices)
    return Offering(
        provider=draw(st.sampled_from(["aws", "gcp"])), region=region, zone=region + draw(st.sampled_from("ab")),
        instance_type=draw(st.sampled_from(["x.1", "x.2", "y.1", "z.4"])), vcpus=draw(st.sampled_from([2, 4, 8, 16])),
        memory_gib=draw(st.sampled_from([4, 16, 64])), accelerator=acc, accelerator_count=draw(st.integers(1, 4)) if acc else 0,
        accelerator_memory_gib=16.0 if acc else 0.0, price=price,
        spot_price=draw(st.none() | st.floats(0.005, 60).map(lambda p: round(p, 3))))


@st.composite
def request_st(draw):
    kind = draw(st.sampled_from(["cpu", "gpu"]))
    return PlacementRequest(
        cpu=draw(st.sampled_from([0, 2, 4, 8])), memory_gib=draw(st.sampled_from([0, 4, 16])),
        accelerator=draw(st.sampled_from(["T4", "A100"])) if kind == "gpu" else None,
        accelerator_count=draw(st.integers(1, 3)) if kind == "gpu" else 0,
        count=draw(st.integers(1, 2)), spot=draw(st.booleans()),
        regions=draw(st.sampled_from([(), ("r1",), ("r2", "r3")])),
        max_price=draw(st.none() | st.sampled_from([5.0, 30.0])),
        objective=draw(st.sampled_from(["cost", "time"])))


def dedupe(offerings):
    seen, out = set(), []
    for o in offerings:  # one row per (provider, region, zone, type), specs per type consistent
        key = (o.provider, o.region, o.zone, o.instance_type)
        if key not in seen:
            seen.add(key)
            out.append(o)
    by_type: dict = {}
    return [o for o in out if by_type.setdefault((o.provider, o.region, o.instance_type), o) == o]


@settings(max_examples=150, deadline=None)
@given(st.lists(offering_st(), min_size=1, max_size=8).map(dedupe), request_st(),
       st.frozensets(st.sampled_from([("zone", "aws", "r1", "r1a"), ("region", "gcp", "r2"), ("provider", "gcp")]), max_size=2))
def test_rank_properties(offerings, req, blocked):
    try:
        ranked = rank(req, offerings, blocked)
    except (Unschedulable, InvalidSpec, NotFound):
        return
    feasible_cheapest = None
    for c in ranked:
        o = c.offering
        assert o.vcpus >= req.cpu and o.memory_gib >= req.memory_gib  # never infeasible
        if req.accelerator:
            assert o.accelerator == req.accelerator and o.accelerator_count >= req.accelerator_count
        if req.regions:
            assert o.region in req.regions
        if req.max_price is not None:
            assert c.hourly <= req.max_price
        assert not is_blocked(blocked, o)  # blocked locations never returned
        assert c.spot == (req.spot and o.spot_price is not None and o.spot_price < o.price)
        assert c.hourly == (o.spot_price if c.spot else o.price)
        feasible_cheapest = c.total_hourly if feasible_cheapest is None else min(feasible_cheapest, c.total_hourly)
    if req.objective == "cost":  # never a costlier one ranked above a cheaper feasible one
        assert all(a.total_hourly <= b.total_hourly for a, b in zip(ranked, ranked[1:]))
        assert ranked[0].total_hourly == feasible_cheapest
    # every feasible, unblocked offering is listed
    assert len(ranked) == sum(1 for o in offerings if not is_blocked(blocked, o) and _feasible(req, o))


def _feasible(req, o):
    hourly = o.spot_price if (req.spot and o.spot_price is not None and o.spot_price < o.price) else o.price
    return (o.vcpus >= req.cpu and o.memory_gib >= req.memory_gib
            and (req.accelerator is None or (o.accelerator == req.accelerator and o.accelerator_count >= req.accelerator_count))
            and (not req.regions or o.region in req.regions) and (req.max_price is None or hourly <= req.max_price))


@settings(max_examples=150, deadline=None)
@given(st.lists(offering_st(), min_size=1, max_size=7).map(dedupe), st.lists(request_st(), min_size=1, max_size=4),
       st.dictionaries(st.tuples(st.sampled_from(["aws", "gcp"]), st.sampled_from(["r1", "r2", "r3"])),
                       st.dictionaries(st.sampled_from(["vcpus", "gpus", "instances", "spot:vcpus", "gpus:T4"]),
                                       st.integers(0, 12), min_size=1, max_size=2), max_size=3))
def test_batch_optimum_equals_brute_force(offerings, reqs, quotas):
    expected = brute_force(reqs, offerings, quotas)
    if expected == "unschedulable":
        with pytest.raises((Unschedulable, InvalidSpec, NotFound)):
            place_batch(reqs, offerings, quotas)
        return
    if expected is None:
        with pytest.raises(Unschedulable, match="quotas"):
            place_batch(reqs, offerings, quotas)
        return
    out = place_batch(reqs, offerings, quotas)
    assert out.total_hourly == pytest.approx(expected, abs=1e-6)
    for r, c in zip(reqs, out.assignments, strict=True):  # every assignment feasible for its request
        assert _feasible(r, c.offering) and c.total_hourly == pytest.approx(c.hourly * r.count)
    for loc, used in out.usage.items():
        assert all(used[k] <= quotas[loc][k] + 1e-9 for k in used)


def _pending(rng, n):
    gpus = [("T4", (1, 4)), ("L4", (1, 8)), ("A10G", (1, 4)), ("V100", (1, 8)), ("A100", (1, 8)), ("H100", (8,))]
    out = []
    for _ in range(n):
        if rng.random() < 0.3:
            name, counts = rng.choice(gpus)
            out.append(PlacementRequest(accelerator=f"{name}:{rng.choice(counts)}", spot=rng.random() < 0.5))
        else:
            cpu = rng.choice([1, 2, 4, 8, 16, 32])
            out.append(PlacementRequest(cpu=cpu, memory_gib=cpu * rng.choice([2, 4, 8]), spot=rng.random() < 0.5,
                                        count=rng.choice([1, 1, 2])))
    return out


@pytest.mark.parametrize("kind", ["mixed", "distinct"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_lp_reduction_keeps_the_exact_optimum(seed, kind, monkeypatch):
    """place_batch drops columns whose LP reduced cost exceeds the gap between the LP bound and a
    rounded placement before the integer program; the optimum must be the one the full program
    finds. Shipped catalog, tight market-split quotas (a quarter of the busiest region's use)."""
    import random

    import cumulo.policy.placement_batch as pb
    from cumulo.catalog import load_catalog

    catalog = load_catalog(["aws", "gcp", "azure"])
    rng = random.Random(seed)
    if kind == "mixed":
        requests = _pending(rng, 150)
    else:  # all different: the reduction drops most columns here
        requests = [PlacementRequest(cpu=rng.randint(1, 64), memory_gib=round(rng.uniform(1, 256), 1),
                                     spot=rng.random() < 0.5) for _ in range(300)]
    free = place_batch(requests, catalog)
    use: dict = {}
    for c in free.assignments:
        u = use.setdefault((c.offering.provider, c.offering.region), {"on-demand:vcpus": 0.0, "spot:vcpus": 0.0, "gpus": 0.0})
        u["spot:vcpus" if c.spot else "on-demand:vcpus"] += quota_usage("vcpus", c.offering, c.spot, round(c.total_hourly / c.hourly) if c.hourly else 1)
        u["gpus"] += quota_usage("gpus", c.offering, c.spot, round(c.total_hourly / c.hourly) if c.hourly else 1)
    peak = {k: max(u[k] for u in use.values()) for k in ("on-demand:vcpus", "spot:vcpus", "gpus")}
    quotas = {(o.provider, o.region): {k: max(8.0, round(v / 3)) for k, v in peak.items()} for o in catalog}
    paths = []
    real = pb._reduce

    def spy(*args):
        keep, x = real(*args)
        paths.append("optimal" if keep is None else "none" if keep is False else (int(keep.sum()), keep.size))
        return keep, x

    monkeypatch.setattr(pb, "_reduce", spy)
    try:
        reduced = place_batch(requests, catalog, quotas)
    except Unschedulable:
        pytest.skip("these quotas cannot hold these requests")
    monkeypatch.setattr(pb, "_reduce", lambda *a: (False, None))
    full = place_batch(requests, catalog, quotas)
    assert reduced.total_hourly == pytest.approx(full.total_hourly, abs=1e-6)
    assert kind == "mixed" or paths[0] == "optimal" or paths[0][0] < paths[0][1] / 2  # most columns dropped
    assert kind == "mixed" or paths[0] != "none"
    assert paths  # the LP ran; on mixed demand it may leave the full program to HiGHS (too little to drop)
    for loc, lims in quotas.items():
        for k, v in lims.items():
            assert reduced.usage.get(loc, {}).get(k, 0.0) <= v + 1e-9
