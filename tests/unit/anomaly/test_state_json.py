"""Every detector state survives a JSON round trip (a reconciler keeps it in the database)."""

from __future__ import annotations

import json

import numpy as np

from cumulo.policy.anomaly import (
    BurnParams,
    BurnState,
    DivergenceParams,
    DivergenceState,
    IdleParams,
    IdleState,
    LevelParams,
    LevelState,
    MemoryParams,
    MemoryState,
    PeerState,
    ProgressState,
    latency_peers,
    record_report,
    run_level,
    state,
    step_burn,
    step_divergence,
    step_gpu_idle,
    step_memory,
    step_peers,
)


def roundtrip(s):
    return state.load(type(s), json.loads(json.dumps(state.dump(s), allow_nan=False)))


def test_round_trips():
    rng = np.random.default_rng(0)
    level, _, _ = run_level(LevelParams(), LevelState(), [i * 60.0 for i in range(500)], rng.normal(size=500))
    burn, _ = step_burn(BurnParams(pairs=((60.0, 5.0, 14.4),), bucket_s=1.0), BurnState(), 10.0, 1.0, 10.0)
    peers, _ = step_peers(latency_peers(), PeerState(), 0.0, {"a": 0.1, "b": 0.1, "c": 1.0})
    div, _ = step_divergence(DivergenceParams(), DivergenceState(), 0.0, 2.0)  # best is still inf
    prog = record_report(record_report(ProgressState(), 0.0), 10.0)
    idle, _ = step_gpu_idle(IdleParams(), IdleState(), 5.0, 0.0, True)
    mem, _ = step_memory(MemoryParams(), MemoryState(), 5.0, 1e9, 8e9)
    for s in (level, burn, peers, div, prog, idle, mem, LevelState(), BurnState(), ProgressState()):
        assert roundtrip(s) == s, type(s).__name__
    # and the restored state keeps working
    s2, _, _ = run_level(LevelParams(), roundtrip(level), [500 * 60.0], [0.0])
    s1, _, _ = run_level(LevelParams(), level, [500 * 60.0], [0.0])
    assert s1 == s2


def test_unknown_fields_are_refused():
    import pytest

    with pytest.raises(ValueError, match="unknown fields"):
        state.load(LevelState, {"n": 1, "typo": 2})
