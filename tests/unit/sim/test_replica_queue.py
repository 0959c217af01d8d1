"""The simulator's per-replica queues (``ReplicaModel(queue="replica")``) on a trace worked out by hand."""

from __future__ import annotations

import json

import pytest

from cumulo.core.errors import InvalidSpec
from cumulo.sim.load import ServiceModel, build_load
from cumulo.sim.model import ReplicaModel, simulate
from cumulo.sim.traces import load_trace


def _load(tmp_path, ms):
    p = tmp_path / "t.jsonl"
    p.write_text("".join(json.dumps({"t_ms": t}) + "\n" for t in ms))
    return build_load(load_trace(p), ServiceModel(service_time=1.0))


def _model(queue: str) -> ReplicaModel:
    return ReplicaModel(concurrency=1, min_replicas=1, max_replicas=2, cold_start=2.0, initial_replicas=1, queue=queue)


def test_a_backlog_stays_at_the_replica_it_was_sent_to(tmp_path):
    """Eight 1-s requests at 0 s on one single-slot replica; KPA panics at its 2 s tick and the second
    replica is ready at 4 s. Shared queue: the second replica takes half of what is left at 4 s.
    Per-replica queues: all eight were sent to the first replica on arrival, so they finish at
    1..8 s; a request at 4.5 s goes to the idle second replica and is served at once (in the shared
    queue it waits behind the backlog); one at 9 s finds both idle."""
    load = _load(tmp_path, [0] * 8 + [4500, 9000])
    shared = simulate(load, "kpa", _model("shared"))
    mine = simulate(load, "kpa", _model("replica"))
    assert shared.decisions[0][:3] == mine.decisions[0][:3] == (2.0, 1, 2)
    assert shared.ready.tolist()[:6] == mine.ready.tolist()[:6] == [1, 1, 1, 1, 2, 2]
    assert mine.metrics["latency_p99_s"] == pytest.approx(8.0)  # latencies 1, 2, ..., 8, then 1 and 1
    assert mine.metrics["latency_p50_s"] == pytest.approx(3.0)
    assert mine.metrics["slo_attainment"] == pytest.approx(4 / 10)  # waits 0 and 1, then 0 at 4.5 s and 9 s
    assert shared.metrics["latency_p99_s"] < 7.0
    assert shared.metrics["slo_attainment"] == pytest.approx(3 / 10)  # the 4.5 s one queues behind the backlog
    assert mine.metrics["replica_seconds"] == shared.metrics["replica_seconds"]  # same timeline


def test_per_replica_queues_need_individual_requests_and_a_known_name(tmp_path):
    with pytest.raises(InvalidSpec, match="queue"):
        ReplicaModel(queue="global")
    load = build_load(load_trace(_load_window(tmp_path)), ServiceModel(service_time=1.0), exact=False)
    with pytest.raises(InvalidSpec, match="individual requests"):
        simulate(load, "kpa", ReplicaModel(queue="replica"))


def _load_window(tmp_path):
    p = tmp_path / "total.csv"
    p.write_text("t_start_s,total_rate_rps,active_clients\n0,2.0,1\n600,3.0,1\n")
    return p
