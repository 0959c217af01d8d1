"""Which replica self-repair replaces (policy/replica_repair.py): outliers among peers, near OOM,
rate-limited, never while the deployment is short of replicas."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cumulo.policy.replica_repair import RepairParams, RepairState, ReplicaWindow, decide_replica_repair

P = RepairParams(min_requests=20, windows=3, cooldown=60)


def windows(latencies: dict[str, float], n: int = 100, errors: dict[str, int] | None = None):
    return [ReplicaWindow(rid, n, (errors or {}).get(rid, 0), lat * n) for rid, lat in latencies.items()]


def run(series, *, ready=3, desired=3, replacing=False, state=None, t0=0.0):
    state = state or RepairState()
    out = []
    for i, ws in enumerate(series):
        state, d = decide_replica_repair(P, state, t0 + 5 * i, ws, ready=ready, desired=desired, replacing=replacing)
        out.append(d)
    return state, out


def test_a_replica_ten_times_slower_than_its_peers_is_replaced_after_three_windows():
    slow = windows({"0": 0.02, "1": 0.021, "2": 0.2})
    _, ds = run([slow] * 4)
    assert ds[:2] == [None, None] and ds[2] is not None and ds[2].replica == "2"
    assert ds[2].reason == "ReplicaOutlier" and "200 ms" in ds[2].message and ds[2].evidence["signal"] == "latency_seconds"
    assert ds[3] is None  # cooldown: one at a time


def test_a_replica_failing_far_more_than_its_peers_is_replaced_before_a_slow_one():
    ws = windows({"0": 0.02, "1": 0.02, "2": 0.02}, errors={"1": 30})
    _, ds = run([ws] * 3)
    assert ds[2].replica == "1" and ds[2].evidence["signal"] == "error_rate"


@pytest.mark.parametrize("kw", [dict(ready=2), dict(replacing=True), dict(desired=0)])
def test_never_while_short_of_replicas_or_already_replacing(kw):
    _, ds = run([windows({"0": 0.02, "1": 0.02, "2": 0.5})] * 5, **kw)
    assert ds == [None] * 5


def test_too_little_traffic_or_too_few_peers_is_not_judged():
    _, ds = run([windows({"0": 0.02, "1": 0.02, "2": 0.5}, n=5)] * 5)
    assert ds == [None] * 5
    _, ds = run([windows({"0": 0.02, "2": 0.5})] * 5, ready=2, desired=2)
    assert ds == [None] * 5


def test_the_cooldown_passes():
    slow = windows({"0": 0.02, "1": 0.02, "2": 0.3})
    state, ds = run([slow] * 3)
    assert ds[2] is not None and state.last_repair == 10.0
    _, later = run([slow] * 3, state=state, t0=75.0)
    assert later[0] is not None  # 65 s after the last one, the streak still running


def test_memory_growing_towards_the_limit_is_replaced_before_it_gets_there():
    state, d = RepairState(), None
    limit = 1000e6
    for i in range(30):  # 20 MB per 10 s sample from 500 MB: the limit in ~ 250 s
        state, d = decide_replica_repair(P, state, 10.0 * i, [], ready=3, desired=3, replacing=False,
                                         memory={"0": 100e6, "1": 100e6, "2": 500e6 + 2e6 * 10 * i}, memory_limit=limit)
        if d is not None:
            break
    assert d is not None and d.replica == "2" and d.reason == "ReplicaNearOOM" and "limit in about" in d.message


@given(st.lists(st.floats(min_value=0.001, max_value=0.05), min_size=3, max_size=8), st.integers(1, 12))
def test_peers_within_a_factor_of_two_are_never_replaced(base, n):
    lo = min(base)
    lat = {str(i): min(v, lo * 1.9) for i, v in enumerate(base)}
    _, ds = run([windows(lat)] * n, ready=len(lat), desired=len(lat))
    assert all(d is None for d in ds)


def test_a_quiet_window_between_two_busy_ones_keeps_the_streak():
    slow = windows({"0": 0.02, "1": 0.02, "2": 0.3})
    quiet = windows({"0": 0.02, "1": 0.02, "2": 0.3}, n=2)
    _, ds = run([slow, quiet, slow, quiet, slow])
    assert ds[4] is not None and ds[4].replica == "2"
