"""Anomaly detectors: pure and streaming. State in, (state, Verdict) out; constant work per point.

No clock (callers pass the time in seconds), no I/O, bounded state. Every detector returns a
``Verdict``: ``score`` in [0, 1], ``fires`` (alert now), and the evidence (``value``, ``expected``,
``threshold``, ``window`` in seconds, ``reason``); ``Verdict.evidence()`` is the same as plain data.

Service metrics
- ``step_level(LevelParams, LevelState, t, value)``: level + seasonal residual with an adaptive
  threshold, for latency, error rate or throughput of one series (``run_level`` scores a batch; it is
  the detector measured on NAB, docs/benchmarks/operations.md).
- ``step_peers(PeerParams, PeerState, t, {peer: value})``: a replica that is an outlier among its peers
  (presets ``latency_peers()`` for seconds, ``error_rate_peers()`` for 0..1 rates).
- ``step_burn(BurnParams, BurnState, t, bad, total)``: SLO burn rate over several windows.

Training
- ``check_finite(name, value)``: NaN or inf loss.
- ``step_divergence(DivergenceParams, DivergenceState, t, loss)``: loss well above its running minimum.
- ``record_report(ProgressState, t)``, ``progress_timeout``/``progress_deadline``/``check_stall``:
  stalled progress against the job's own report cadence (``auto`` = 3x the recent interval, >= 30 s).
- ``step_peers(straggler_params(), ...)`` over per-rank steps/s: a straggler rank.
- ``step_gpu_idle(IdleParams, IdleState, t, utilization, running)``: GPU idle while the job runs.
- ``step_memory(MemoryParams, MemoryState, t, used, limit)``: memory growing towards a limit, with an ETA.

Start each state from its dataclass' defaults (``LevelState()``, ``PeerState()``, ...); keep it between
passes as JSON with ``state.dump(s)`` / ``state.load(LevelState, data)``. NaN and inf observations are
skipped (the state is unchanged), except by ``check_finite`` and ``step_burn`` (which refuses them).
``NAB_PARAMS`` is the level detector's configuration that bench/nab.py measures.
"""

from cumulo.policy.anomaly.burn_rate import SRE_PAIRS, BurnParams, BurnState, burn_rates, step_burn
from cumulo.policy.anomaly import state
from cumulo.policy.anomaly.level import NAB_PARAMS, LevelParams, LevelState, expected_value, run_level, step_level
from cumulo.policy.anomaly.peers import PeerParams, PeerState, error_rate_peers, latency_peers, step_peers
from cumulo.policy.anomaly.training import (
    DivergenceParams,
    DivergenceState,
    IdleParams,
    IdleState,
    MemoryParams,
    MemoryState,
    ProgressState,
    check_finite,
    check_stall,
    progress_deadline,
    progress_timeout,
    record_report,
    step_divergence,
    step_gpu_idle,
    step_memory,
    straggler_params,
)
from cumulo.policy.anomaly.verdict import Verdict

__all__ = [
    "SRE_PAIRS", "BurnParams", "BurnState", "burn_rates", "step_burn",
    "NAB_PARAMS", "LevelParams", "LevelState", "expected_value", "run_level", "step_level", "state",
    "PeerParams", "PeerState", "error_rate_peers", "latency_peers", "step_peers",
    "DivergenceParams", "DivergenceState", "IdleParams", "IdleState", "MemoryParams", "MemoryState",
    "ProgressState", "check_finite", "check_stall", "progress_deadline", "progress_timeout", "record_report",
    "step_divergence", "step_gpu_idle", "step_memory", "straggler_params",
    "Verdict",
]
