"""Per-replica state is per deployment: replica ids are ordinals ("0", "1", ...) in every deployment."""

from __future__ import annotations

import threading
from collections import Counter

import httpx

from cumulo.gateway import Endpoint

from .conftest import free_port, wait_until


def ordinal_routes(a_eps, b_eps):
    return {"a": [Endpoint(str(i), "127.0.0.1", port) for i, port in enumerate(a_eps)],
            "b": [Endpoint(str(i), "127.0.0.1", port) for i, port in enumerate(b_eps)]}


def test_an_ejection_in_one_deployment_does_not_eject_the_same_ordinal_in_another(replicas, start_gateway, client):
    a1, b0, b1 = replicas(3)
    dead = free_port()  # a's replica "0" refuses connections
    gw = start_gateway(routes=ordinal_routes([dead, a1.port], [b0.port, b1.port]), eject_seconds=60, seed=3)
    for _ in range(10):  # a's "0" refuses, gets ejected, and the request is retried on a's "1"
        assert client.get(f"{gw.url}/d/a/x").json()["replica"] == a1.name
    assert gw.gateway.stats("a")["retries_total"] >= 1
    seen = Counter(client.get(f"{gw.url}/d/b/x").json()["replica"] for _ in range(40))
    assert set(seen) == {b0.name, b1.name}, seen  # b's "0" is not ejected
    assert gw.gateway.stats("b")["retries_total"] == 0


def test_load_on_one_deployment_does_not_steer_another(replicas, start_gateway, client):
    a0, b0, b1 = replicas(3)
    gw = start_gateway(routes=ordinal_routes([a0.port], [b0.port, b1.port]), seed=5)
    done = []

    def slow():
        with httpx.Client(timeout=10) as c:
            done.append(c.get(f"{gw.url}/d/a/slow?s=2").status_code)

    threads = [threading.Thread(target=slow) for _ in range(4)]
    for t in threads:
        t.start()
    wait_until(lambda: gw.gateway.stats("a")["in_flight"] == 4, what="4 requests in flight to a's replica 0")
    # a's replica "0" has 4 requests in flight; b's "0" and "1" are both idle and share the load
    seen = Counter(client.get(f"{gw.url}/d/b/x").json()["replica"] for _ in range(40))
    assert gw.gateway.stats("a")["in_flight"] == 4  # still loaded while b was served
    assert set(seen) == {b0.name, b1.name}, seen
    for t in threads:
        t.join()
    assert done == [200] * 4


def test_replicas_behind_one_address_in_two_deployments_each_get_their_own_state(replicas, start_gateway, client):
    """The same ids and even the same address in two deployments: each deployment's requests are its own."""
    (r,) = replicas(1)
    gw = start_gateway(routes={"a": [Endpoint("0", "127.0.0.1", r.port)], "b": [Endpoint("0", "127.0.0.1", r.port)]})
    assert client.get(f"{gw.url}/d/a/x").json()["headers"]["x-forwarded-prefix"] == "/d/a"
    assert client.get(f"{gw.url}/d/b/x").json()["headers"]["x-forwarded-prefix"] == "/d/b"
    gw.gateway.update({"b": [Endpoint("0", "127.0.0.1", r.port)]})  # a leaves the table: b keeps working
    assert client.get(f"{gw.url}/d/b/x").status_code == 200
    assert client.get(f"{gw.url}/d/a/x").status_code == 404
