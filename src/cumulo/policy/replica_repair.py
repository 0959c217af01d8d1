"""Which replica of a deployment to replace, and why, as a pure function.

Input: what the gateway saw of each ready replica over the last window (answers, failures, seconds)
and, where sampled, each replica's memory. Two reasons to replace one:

- an **outlier among its peers**: its mean latency or its error rate is far beyond the others'
  (`policy/anomaly/peers.py`: the others' median by robust spreads and by a factor, for several
  windows in a row); judged only on replicas that answered at least ``min_requests`` in the window
  and only with at least three such peers;
- **heading for OOM**: its memory grows towards its limit (`policy/anomaly/training.step_memory`,
  a linear trend) and would reach it within ``oom_horizon`` seconds.

Rate-limited: at most one replacement per deployment at a time and ``cooldown`` seconds apart, and
only while every wanted replica is ready (the replacement is started before the replica drains).
State in, state and decision out: no clock (``t`` is passed in), no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from cumulo.policy.anomaly import training
from cumulo.policy.anomaly.peers import PeerParams, PeerState, error_rate_peers, latency_peers, step_peers
from cumulo.policy.anomaly.verdict import Verdict


@dataclass(frozen=True)
class ReplicaWindow:
    id: str
    requests: int  # answered in the window (failures included)
    errors: int
    seconds: float  # their latency summed


@dataclass(frozen=True)
class RepairParams:
    min_requests: int = 20
    windows: int = 3  # consecutive outlying windows before a replica is replaced
    cooldown: float = 60.0
    oom_horizon: float = 300.0

    @property
    def latency(self) -> PeerParams:
        return latency_peers(for_points=self.windows)

    @property
    def errors(self) -> PeerParams:
        return error_rate_peers(for_points=self.windows)


@dataclass(frozen=True)
class RepairState:
    latency: PeerState = field(default_factory=PeerState)
    errors: PeerState = field(default_factory=PeerState)
    memory: dict[str, training.MemoryState] = field(default_factory=dict)
    last_repair: float | None = None


@dataclass(frozen=True)
class Replace:
    replica: str
    reason: str  # ReplicaOutlier | ReplicaNearOOM
    message: str
    evidence: dict


def decide_replica_repair(p: RepairParams, s: RepairState, t: float, windows: list[ReplicaWindow], *,
                          ready: int, desired: int, replacing: bool,
                          memory: dict[str, float] | None = None, memory_limit: float | None = None,
                          window_s: float = 0.0) -> tuple[RepairState, Replace | None]:
    judged = [w for w in windows if w.requests >= p.min_requests]
    lat_state, err_state, lat, err = s.latency, s.errors, {}, {}
    if len(judged) >= p.latency.min_peers:  # too little traffic says nothing: the streaks are kept, not reset
        lat_state, lat = step_peers(p.latency, s.latency, t, {w.id: w.seconds / w.requests for w in judged}, window_s)
        err_state, err = step_peers(p.errors, s.errors, t, {w.id: w.errors / w.requests for w in judged}, window_s)
    mem_state = dict(s.memory)
    near: dict[str, Verdict] = {}
    if memory and memory_limit:
        mp = training.MemoryParams(horizon_s=p.oom_horizon)
        for rid, used in memory.items():
            st, v = training.step_memory(mp, mem_state.get(rid, training.MemoryState()), t, used, memory_limit)
            mem_state[rid] = st
            if v.fires:
                near[rid] = v
        mem_state = {rid: st for rid, st in mem_state.items() if rid in memory}
    state = RepairState(latency=lat_state, errors=err_state, memory=mem_state, last_repair=s.last_repair)
    if replacing or ready < desired or desired < 1:
        return state, None
    if s.last_repair is not None and t - s.last_repair < p.cooldown:
        return state, None
    candidates: list[Replace] = []
    for rid, v in sorted(err.items(), key=lambda kv: -kv[1].score):
        if v.fires:
            candidates.append(Replace(rid, "ReplicaOutlier", f"replica {rid}: error rate {v.value:.1%} against its "
                                      f"peers' {v.expected:.1%} for {p.windows} windows; replacing it",
                                      {"signal": "error_rate", **v.evidence()}))
    for rid, v in sorted(lat.items(), key=lambda kv: -kv[1].score):
        if v.fires:
            candidates.append(Replace(rid, "ReplicaOutlier", f"replica {rid}: mean latency {v.value * 1000:.0f} ms "
                                      f"against its peers' {v.expected * 1000:.0f} ms for {p.windows} windows; "
                                      "replacing it", {"signal": "latency_seconds", **v.evidence()}))
    for rid, v in near.items():
        candidates.append(Replace(rid, "ReplicaNearOOM", f"replica {rid}: {v.reason}; replacing it before it dies",
                                  {"signal": "memory_bytes", **v.evidence()}))
    if not candidates:
        return state, None
    return replace(state, last_repair=t), candidates[0]
