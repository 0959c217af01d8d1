"""The simulator on tiny hand-made traces whose answers are worked out by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cumulo.sim.load import ServiceModel, build_load
from cumulo.sim.model import ReplicaModel, simulate
from cumulo.sim.traces import load_trace


def _jsonl(tmp_path, ms):
    p = tmp_path / "t.jsonl"
    p.write_text("".join(json.dumps({"t_ms": t}) + "\n" for t in ms))
    return p


FIXED_ONE = ReplicaModel(concurrency=1, min_replicas=1, max_replicas=1, slo_wait=1.5)


def test_a_queue_behind_one_replica(tmp_path):
    """Four 1-s requests at t=0 on one single-slot replica start at 0, 1, 2, 3 s; one at 9 s waits
    for nothing. Latencies 1, 2, 3, 4, 1; waits <= 1.5 s for 3 of 5; 10 replica-seconds; the
    backlog is non-empty at the end of seconds 0, 1 and 2."""
    load = build_load(load_trace(_jsonl(tmp_path, [0, 0, 0, 0, 9000])), ServiceModel(service_time=1.0))
    assert load.steps == 10
    m = simulate(load, "hpa", FIXED_ONE).metrics
    assert m["requests"] == 5
    assert m["slo_attainment"] == pytest.approx(3 / 5)
    assert m["latency_p50_s"] == pytest.approx(2.0)
    assert m["latency_p99_s"] == pytest.approx(4.0)
    assert m["replica_seconds"] == 10
    assert m["cost"] == pytest.approx(10 / 3600)
    assert m["seconds_under_provisioned"] == 3
    assert m["scaling_actions"] == 0 and m["cold_starts"] == 0


def test_enough_capacity_means_latency_is_the_service_time(tmp_path):
    load = build_load(load_trace(_jsonl(tmp_path, [i * 500 for i in range(20)])), ServiceModel(service_time=0.4))
    m = simulate(load, "hpa", ReplicaModel(concurrency=1, min_replicas=1, max_replicas=1)).metrics
    assert m["slo_attainment"] == 1.0
    assert m["latency_p50_s"] == pytest.approx(0.4)
    assert m["latency_p99_s"] == pytest.approx(0.4)
    assert m["seconds_under_provisioned"] == 0


def test_a_cold_start_from_zero(tmp_path):
    """No replica at the start; a request at 0 s: Ray Serve asks for one at its next tick (1 s); it
    is ready 30 s later, so that request waits 31 s (latency 32 s). The request at 99 s finds the
    replica still up (the downscale delay is 600 s)."""
    load = build_load(load_trace(_jsonl(tmp_path, [0, 99_000])), ServiceModel(service_time=1.0))
    model = ReplicaModel(concurrency=1, min_replicas=0, max_replicas=3, cold_start=30.0, initial_replicas=0)
    r = simulate(load, "rayserve", model)
    m = r.metrics
    assert m["cold_starts"] == 1
    assert m["latency_p99_s"] == pytest.approx(32.0)
    assert m["latency_p50_s"] == pytest.approx(1.0)
    assert m["replica_seconds"] == 100 - 1  # from 1 s (paid while starting) to the end
    assert r.decisions[0][:3] == (1.0, 0, 1)


def test_metrics_only_cover_the_evaluation_part(tmp_path):
    load = build_load(load_trace(_jsonl(tmp_path, [0, 0, 0, 0, 9000])), ServiceModel(service_time=1.0))
    m = simulate(load, "hpa", FIXED_ONE, eval_from=5.0).metrics
    assert m["requests"] == 1
    assert m["replica_seconds"] == 5
    assert m["slo_attainment"] == 1.0


def test_token_counts_set_the_service_time(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:00:00.0000000,1000,10\n2023-11-16 18:00:05.0000000,0,100\n")
    sm = ServiceModel(base_s=0.1, prefill_s_per_token=0.001, decode_s_per_token=0.01)
    load = build_load(load_trace(p), sm, step=0.5)
    assert list(load.service) == pytest.approx([0.1 + 1.0 + 0.1, 0.1 + 1.0])
    m = simulate(load, "hpa", ReplicaModel(concurrency=1, min_replicas=1, max_replicas=1)).metrics
    assert m["latency_p99_s"] == pytest.approx(1.2)


def test_oracle_beats_reactive_policies_on_a_step(tmp_path):
    # 1 req/s for 5 minutes, then 20 req/s for 5 minutes
    ms = [i * 1000 for i in range(300)] + [300_000 + i * 50 for i in range(6000)]
    load = build_load(load_trace(_jsonl(tmp_path, ms)), ServiceModel(service_time=1.0))
    model = ReplicaModel(concurrency=2, cold_start=30.0, max_replicas=50)
    oracle = simulate(load, "oracle", model).metrics
    kpa = simulate(load, "kpa", model).metrics
    assert oracle["slo_attainment"] > 0.99
    assert oracle["slo_attainment"] >= kpa["slo_attainment"]


def test_seeded_synthesis_is_reproducible(tmp_path):
    p = tmp_path / "chunk-0-trace.csv"
    p.write_text("0,2.0,1.0,Gamma,1.0,0.5\n600,0,0,,0,0\n1200,5.0,3.0,Weibull,0.5,1.0\n")
    a = build_load(load_trace(p), seed=7)
    b = build_load(load_trace(p), seed=7)
    c = build_load(load_trace(p), seed=8)
    assert np.array_equal(a.counts, b.counts)
    assert not np.array_equal(a.counts, c.counts)
    assert a.counts[600:1200].sum() == 0
    assert a.counts[:600].sum() == pytest.approx(1200, rel=0.15)
    assert a.counts[1200:].sum() == pytest.approx(3000, rel=0.35)


def test_eval_from_must_lie_inside_the_trace(tmp_path):
    from cumulo.core.errors import InvalidSpec

    load = build_load(load_trace(_jsonl(tmp_path, [0, 0, 0, 0, 9000])), ServiceModel(service_time=1.0))
    for bad in (10.0, 1e9, -1.0):
        with pytest.raises(InvalidSpec, match="eval_from") as e:
            simulate(load, "hpa", FIXED_ONE, eval_from=bad)
        assert "10 s" in str(e.value) and f"{bad:g}" in str(e.value)


def test_a_part_without_requests_has_no_slo_attainment(tmp_path):
    """The fitting part [0, 5 s) holds 4 requests, the evaluated part [5, 10 s) one at 9 s; from
    9.5 s on nothing arrives: attainment is undefined (nan), and tune() never picks such a row."""
    from cumulo.sim.sweep import tune

    load = build_load(load_trace(_jsonl(tmp_path, [0, 0, 0, 0, 9000])), ServiceModel(service_time=1.0))
    m = simulate(load, "hpa", FIXED_ONE, eval_from=9.5).metrics
    assert m["requests"] == 0 and np.isnan(m["slo_attainment"])
    assert m["fit"]["requests"] == 5
    assert tune([{"slo_attainment": m["slo_attainment"], "replica_seconds": 1.0}]) is None
