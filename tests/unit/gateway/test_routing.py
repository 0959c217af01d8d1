"""The pure routing: route table, power-of-two-choices pick, routes JSON parsing."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cumulo.gateway.metrics import DeploymentStats
from cumulo.gateway.routing import Endpoint, RouteTable, parse_routes, pick, split_path


class Scripted:
    """A random source that returns scripted draws (to pin down which two are sampled)."""

    def __init__(self, draws):
        self.draws = list(draws)

    def randrange(self, stop):
        v = self.draws.pop(0)
        assert 0 <= v < stop
        return v


E = [Endpoint(f"r{i}", "127.0.0.1", 9000 + i, True) for i in range(4)]


@pytest.mark.parametrize(
    "endpoints, load, draws, exclude, expected",
    [
        ([], {}, [], (), None),  # nothing at all
        ([Endpoint("x", "h", 1, False)], {}, [], (), None),  # nothing ready
        (E[:1], {"r0": 99}, [], (), "r0"),  # a single candidate, however loaded
        (E[:2], {"r0": 3, "r1": 1}, [0, 0], (), "r1"),  # samples r0 then r1 (shifted): the less loaded
        (E[:2], {"r0": 1, "r1": 3}, [1, 0], (), "r0"),
        (E[:2], {"r0": 2, "r1": 2}, [1, 0], (), "r1"),  # a tie goes to the first sample
        (E, {"r0": 0, "r1": 5, "r2": 9, "r3": 7}, [2, 2], (), "r3"),  # r2 vs r3: r0 is idle but not sampled
        (E[:2], {}, [], ("r0",), "r1"),  # excluded
        (E[:2], {}, [], ("r0", "r1"), None),
        ([E[0], Endpoint("r9", "h", 1, False), E[1]], {"r0": 5}, [0, 0], (), "r1"),  # not-ready filtered out
    ],
)
def test_pick_table(endpoints, load, draws, exclude, expected):
    got = pick(endpoints, load, Scripted(draws), exclude)
    assert (got.replica_id if got else None) == expected


endpoints_st = st.lists(
    st.builds(Endpoint, replica_id=st.sampled_from([f"r{i}" for i in range(8)]), host=st.just("h"),
              port=st.integers(1, 65535), ready=st.booleans()),
    max_size=8, unique_by=lambda e: e.replica_id,
)


@given(endpoints_st, st.dictionaries(st.sampled_from([f"r{i}" for i in range(8)]), st.integers(0, 50)),
       st.integers(0, 2**32), st.sets(st.sampled_from([f"r{i}" for i in range(8)])))
def test_pick_properties(endpoints, load, seed, exclude):
    got = pick(endpoints, load, random.Random(seed), exclude)
    cands = [e for e in endpoints if e.ready and e.replica_id not in exclude]
    if not cands:
        assert got is None  # never a choice out of nothing
        return
    assert got is not None, "never an empty choice while a ready endpoint is left"
    assert got.ready and got.replica_id not in exclude
    # never the more loaded of its two samples: replay the same draws
    rng = random.Random(seed)
    if len(cands) >= 2:
        i = rng.randrange(len(cands))
        j = rng.randrange(len(cands) - 1)
        j += j >= i
        a, b = cands[i], cands[j]
        assert got in (a, b)
        assert load.get(got.replica_id, 0) == min(load.get(a.replica_id, 0), load.get(b.replica_id, 0))


@given(st.integers(0, 2**32))
def test_pick_is_deterministic_for_a_seed(seed):
    load = {"r0": 1, "r1": 2, "r2": 0, "r3": 4}
    assert [pick(E, load, random.Random(seed)) for _ in range(3)] == \
           [pick(E, load, random.Random(seed)) for _ in range(3)]


def test_p2c_spreads_load_and_avoids_the_busy_replica():
    rng = random.Random(7)
    load = {"r0": 100, "r1": 0, "r2": 0, "r3": 0}
    picks = [pick(E, load, rng).replica_id for _ in range(1000)]
    assert "r0" not in picks  # r0 only wins a sample pair against... nobody: it is always the busier
    assert {"r1", "r2", "r3"} <= set(picks)


def test_route_table():
    t = RouteTable({"a": [E[0], Endpoint("x", "h", 1, False)], "b": []})
    assert t.ready("a") == (E[0],) and t.ready("b") == () and t.ready("zz") is None
    assert "a" in t and "zz" not in t and t.names() == ["a", "b"]
    assert len(t.endpoints("a")) == 2 and t.endpoints("zz") == ()
    assert ("a", "x", "h", 1) in t.keys()
    assert t.as_dict()["a"][1].ready is False


@pytest.mark.parametrize("raw, expected", [
    (b"/d/m/x/y", ("m", b"/x/y")),
    (b"/d/m", ("m", b"/")),
    (b"/d/m/", ("m", b"/")),
    (b"/%64/m/x", ("m", b"/x")),  # an encoded "d" is "d" (RFC 3986 6.2.2.2)
    (b"/%64/m", ("m", b"/")),
    (b"/d/%6D/x", ("m", b"/x")),  # an encoded name is decoded
    (b"/d/a%20b/p%2Fq", ("a b", b"/p%2Fq")),  # the rest is passed on as sent
    (b"/d/m%2Fx/y", ("m/x", b"/y")),  # an encoded slash is part of the name, not a separator
    (b"/d//x", ("", b"/x")),
    (b"/d%2Fm/x", None),  # one segment "d/m": not under /d/
    (b"/%44/m/x", None),  # "D" is not "d"
    (b"/d", None),
    (b"/dm/x", None),
    (b"/api/v1/health", None),
    (b"/", None),
])
def test_split_path(raw, expected):
    assert split_path(raw) == expected


def test_parse_routes():
    doc = {"deployments": {"m": [{"replica_id": "m-0", "host": "127.0.0.1", "port": 9001, "ready": True},
                                 {"replica_id": "m-1", "host": "127.0.0.1", "port": 9002, "ready": False}]}}
    assert parse_routes(doc) == {"m": [Endpoint("m-0", "127.0.0.1", 9001, True),
                                       Endpoint("m-1", "127.0.0.1", 9002, False)]}
    assert parse_routes({"deployments": {}}) == {}


@pytest.mark.parametrize("doc, message", [
    ([], "expected an object"),
    ({"deployments": []}, "expected an object"),
    ({"deployments": {"a/b": []}}, "bad deployment name"),
    ({"deployments": {"m": {}}}, "expected a list"),
    ({"deployments": {"m": [{"replica_id": "x", "host": "h"}]}}, r"m\[0\]"),
    ({"deployments": {"m": [{"replica_id": "x", "host": "h", "port": "80", "ready": True}]}}, r"m\[0\]"),
    ({"deployments": {"m": [{"replica_id": "x", "host": "h", "port": True, "ready": True}]}}, r"m\[0\]"),
    ({"deployments": {"m": [{"replica_id": "x", "host": "h", "port": 0, "ready": True}]}}, r"m\[0\]"),
    ({"deployments": {"m": [{"replica_id": "x", "host": "h", "port": 80, "ready": "yes"}]}}, r"m\[0\]"),
])
def test_parse_routes_rejects_bad_documents(doc, message):
    with pytest.raises(ValueError, match=message):
        parse_routes(doc)


class FakeClock:
    def __init__(self, t=1000.0):
        self.t = t

    def __call__(self):
        return self.t


def test_deployment_stats_counts_rate_and_quantiles():
    clock = FakeClock()
    s = DeploymentStats("m", clock=clock)
    for i in range(100):
        s.started(clock.t)
        s.finished(200 if i < 95 else 503, 0.002 if i < 90 else 0.2)
        clock.t += 0.05  # 20 requests a second for 5 s
    snap = s.snapshot()
    assert snap["requests_total"] == 100 and snap["in_flight"] == 0
    assert snap["status_codes"] == {"200": 95, "503": 5} and snap["errors_total"] == 5
    assert 0.001 < snap["latency_seconds"]["p50"] <= 0.0025
    assert 0.1 < snap["latency_seconds"]["p99"] <= 0.25
    assert 9.5 < snap["request_rate"] < 12  # 100 arrivals over the 10 s window (9 full seconds + now)
    clock.t += 60  # a minute of silence: the rate decays to 0
    assert s.snapshot()["request_rate"] == 0.0
    assert DeploymentStats("x", clock=clock).snapshot()["latency_seconds"]["p50"] is None
