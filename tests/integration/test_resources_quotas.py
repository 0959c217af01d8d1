"""POST /resources places all of a request's machines together, at the lowest total $/h, within the
providers' own quotas (control/provider_quotas.py) and what the live nodes already hold of them;
a request the quotas cannot hold is refused naming the limits. The service on a real store."""

from __future__ import annotations

from collections import Counter

import pytest

from cumulo.catalog import find_instance_type, load_catalog
from cumulo.control import provider_quotas
from cumulo.core.errors import Conflict, InvalidSpec, Unschedulable
from cumulo.policy.placement import PlacementRequest, rank
from cumulo.services.resources import ResourceService
from cumulo.store.db import Database
from cumulo.store.migrate import upgrade
from cumulo.store.models import Node


@pytest.fixture
def db(database_url):
    d = Database(database_url)
    upgrade(d.engine)
    yield d
    d.dispose()


def by_region() -> list[str]:
    """Two AWS regions for g4dn.xlarge, the first strictly cheaper (ranking one node at a time
    would put every node there)."""
    price: dict[str, float] = {}
    for c in rank(PlacementRequest(instance_type="g4dn.xlarge", providers=("aws",)), load_catalog(["aws"])):
        price.setdefault(c.offering.region, c.hourly)
    regions = list(price)
    second = next(r for r in regions if price[r] > price[regions[0]])
    return [regions[0], second]


def service(db, limits) -> ResourceService:
    return ResourceService(db, offerings=lambda: load_catalog(["aws", "local"]), providers=["aws", "local"],
                           find_instance_type=find_instance_type, wake=lambda key: None,
                           quotas=lambda: {**limits, **provider_quotas.LOCAL})


def test_a_binding_quota_spreads_the_pool_over_regions_at_the_lowest_total_price(db):
    cheapest, second = by_region()[:2]
    svc = service(db, {("aws", cheapest): {"vcpus": 8}})  # two g4dn.xlarge (4 vCPUs each)
    pool = svc.create({"nodes": [{"instance_type": "g4dn.xlarge"}] * 4, "providers": ["aws"],
                       "regions": [cheapest, second]})
    assert Counter(n.region for n in pool.nodes) == {cheapest: 2, second: 2}
    # the next request finds the cheapest region's quota held by the live nodes
    more = svc.create({"nodes": [{"instance_type": "g4dn.xlarge"}] * 2, "providers": ["aws"],
                       "regions": [cheapest, second]})
    assert {n.region for n in more.nodes} == {second}
    # and one only allowed there is refused, naming the limit and what holds it
    with pytest.raises(Conflict, match=rf"aws/{cheapest} vcpus: limit 8, 8 held by live nodes, 0 left"):
        svc.create({"nodes": [{"instance_type": "g4dn.xlarge"}], "providers": ["aws"], "regions": [cheapest]})
    # released (ended) nodes hold nothing
    svc.release([n.id for n in pool.nodes])
    with db.tx() as s:
        for n in pool.nodes:
            s.get(Node, n.id).state = "Terminated"  # as the node reconciler records it
    again = svc.create({"nodes": [{"instance_type": "g4dn.xlarge"}], "providers": ["aws"], "regions": [cheapest]})
    assert again.nodes[0].region == cheapest


def test_a_request_larger_than_the_quota_itself_is_unschedulable_naming_it(db):
    cheapest = by_region()[0]
    svc = service(db, {("aws", cheapest): {"gpus:T4": 2}})
    with pytest.raises(Unschedulable, match=rf"even with no node running \(aws/{cheapest} gpus:T4: limit 2, "
                                            r"0 held by live nodes, 2 left\)"):
        svc.create({"nodes": [{"accelerators": "T4"}] * 3, "providers": ["aws"], "regions": [cheapest]})


def test_the_local_machine_is_one_instance(db):
    svc = service(db, {})
    with pytest.raises(Unschedulable, match="local/local instances: limit 1"):
        svc.create({"nodes": [{"instance_type": "local"}] * 2, "providers": ["local"]})
    svc.create({"nodes": [{"instance_type": "local"}], "providers": ["local"]})
    with pytest.raises(Conflict, match="local/local instances: limit 1, 1 held by live nodes, 0 left"):
        svc.create({"nodes": [{"instance_type": "local"}], "providers": ["local"]})


def test_the_quotas_file(tmp_path):
    path = tmp_path / provider_quotas.FILE
    assert provider_quotas.limits(path) == provider_quotas.LOCAL  # no file: only the local machine
    path.write_text('aws:\n  us-east-1: {vcpus: 64, "spot:vcpus": 32, gpus:T4: 8}\n')
    assert provider_quotas.limits(path) == {("aws", "us-east-1"): {"vcpus": 64, "spot:vcpus": 32, "gpus:T4": 8},
                                            **provider_quotas.LOCAL}
    path.write_text("aws:\n  us-east-1: {cores: 64}\n")
    with pytest.raises(InvalidSpec, match=r"provider-quotas.yaml: aws.us-east-1: unknown quota resource 'cores'"):
        provider_quotas.limits(path)
    path.write_text("aws:\n  us-east-1: {vcpus: -1}\n")
    with pytest.raises(InvalidSpec, match=r"aws.us-east-1.vcpus: the limit must be a number >= 0, got -1"):
        provider_quotas.limits(path)


def test_a_node_nothing_fits_is_named_by_its_place_in_the_request(db):
    svc = service(db, {})
    with pytest.raises(Unschedulable, match=r"^nodes\.1: no offering has 64x H100"):
        svc.create({"nodes": [{"instance_type": "g4dn.xlarge"}, {"accelerators": "H100:64"}], "providers": ["aws"]})
