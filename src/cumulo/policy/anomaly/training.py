"""Training-job detectors: NaN/inf loss, divergence, stalled progress, GPU idle, memory towards a limit.

All pure: the caller passes the time (seconds) and the previous state; nothing reads a clock. Each
``step_*`` returns ``(state, Verdict)``; states are a few numbers (bounded). A straggler rank is a
peer outlier on the low side: see ``straggler_params`` and ``cumulo.policy.anomaly.peers``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cumulo.policy.anomaly.peers import PeerParams
from cumulo.policy.anomaly.verdict import Verdict

# --- NaN or inf loss ---------------------------------------------------------------------------


def check_finite(name: str, value: float) -> Verdict:
    """Fires at once when a reported value (the loss) is NaN or infinite."""
    v = float(value)
    bad = not math.isfinite(v)
    return Verdict(score=1.0 if bad else 0.0, fires=bad, value=v, expected=0.0, threshold=0.0, window=0.0,
                   reason=f"{name} is {v}" if bad else "")


# --- divergence: the loss rises well above its running minimum ----------------------------------


@dataclass(frozen=True, slots=True)
class DivergenceParams:
    alpha: float = 0.1  # smoothing of the reported loss
    rise: float = 1.0  # fires when smoothed > best + rise * |best| (1.0: twice the best)...
    min_rise: float = 1e-3  # ...and by at least this much in absolute terms
    warmup: int = 10  # reports before judging
    patience: int = 3  # consecutive reports above the bound

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha <= 1.0 or self.rise <= 0 or self.min_rise < 0:
            raise ValueError("DivergenceParams: need 0 < alpha <= 1, rise > 0, min_rise >= 0")
        if self.warmup < 1 or self.patience < 1:
            raise ValueError("DivergenceParams: warmup and patience must be >= 1")


@dataclass(frozen=True, slots=True)
class DivergenceState:
    n: int = 0
    smoothed: float = 0.0
    best: float = math.inf
    above: int = 0


def step_divergence(p: DivergenceParams, s: DivergenceState, t: float, loss: float) -> tuple[DivergenceState, Verdict]:
    """One reported loss. NaN/inf losses are left to ``check_finite`` (they do not move the state)."""
    loss = float(loss)
    if not math.isfinite(loss):
        return s, Verdict(0.0, False, loss, s.smoothed, s.best, 0.0, "not finite: see check_finite")
    smoothed = loss if s.n == 0 else s.smoothed + p.alpha * (loss - s.smoothed)
    n = s.n + 1
    best = min(s.best, smoothed) if n >= p.warmup else math.inf
    bound = best + max(p.rise * abs(best), p.min_rise) if math.isfinite(best) else math.inf
    above = s.above + 1 if smoothed > bound else 0
    fires = n > p.warmup and above >= p.patience
    score = 0.0
    if math.isfinite(bound) and bound > best:
        score = min(1.0, max(0.0, (smoothed - best) / (bound - best) / 2.0))
    reason = (f"loss {smoothed:.6g} (smoothed) rose above {bound:.6g}, its best was {best:.6g}, for {above} reports"
              if fires else "")
    return DivergenceState(n=n, smoothed=smoothed, best=best, above=above), Verdict(
        score=score, fires=fires, value=smoothed, expected=best, threshold=bound, window=0.0, reason=reason)


# --- stalled progress, against the job's own report cadence -------------------------------------

MIN_PROGRESS_TIMEOUT_S = 30.0
AUTO_FACTOR = 3.0


@dataclass(frozen=True, slots=True)
class ProgressState:
    last_t: float | None = None
    intervals: tuple[float, ...] = ()  # the most recent report intervals, newest last


HISTORY = 8


def record_report(s: ProgressState, t: float, history: int = HISTORY) -> ProgressState:
    """A report (any metric, at time ``t``) arrived: remember the interval since the previous one."""
    if s.last_t is None:
        return ProgressState(last_t=t, intervals=())
    gap = t - s.last_t
    if gap <= 0:
        return ProgressState(last_t=max(t, s.last_t), intervals=s.intervals)
    return ProgressState(last_t=t, intervals=(s.intervals + (gap,))[-history:])


def progress_timeout(s: ProgressState, setting: float | str = "auto",
                     minimum: float = MIN_PROGRESS_TIMEOUT_S) -> float | None:
    """Seconds without a report that count as a stall.

    ``setting`` is a number of seconds or ``"auto"``: three times the job's recent report interval
    (the longest of its last 8), and at least ``minimum`` (30 s). None while ``auto`` has no interval
    to go on yet (fewer than two reports): nothing is judged stalled before the job's cadence is known.
    """
    if setting != "auto":
        value = float(setting)
        if not value > 0:
            raise ValueError(f"progress_timeout must be 'auto' or a positive number of seconds, got {setting!r}")
        return value
    if not s.intervals:
        return None
    return max(AUTO_FACTOR * max(s.intervals), minimum)


def progress_deadline(s: ProgressState, setting: float | str = "auto",
                      minimum: float = MIN_PROGRESS_TIMEOUT_S) -> float | None:
    """The time after which the job counts as stalled (last report + timeout); None if not yet known."""
    timeout = progress_timeout(s, setting, minimum)
    if timeout is None or s.last_t is None:
        return None
    return s.last_t + timeout


def check_stall(s: ProgressState, now: float, setting: float | str = "auto",
                minimum: float = MIN_PROGRESS_TIMEOUT_S) -> Verdict:
    """Fires when ``now`` is past the progress deadline."""
    deadline = progress_deadline(s, setting, minimum)
    if deadline is None:
        return Verdict(0.0, False, 0.0, 0.0, 0.0, 0.0, "report cadence not known yet")
    timeout = deadline - s.last_t
    silent = now - s.last_t
    fires = now > deadline
    reason = (f"no progress report for {silent:.0f}s (timeout {timeout:.0f}s"
              f"{', 3x the recent report interval' if setting == 'auto' else ''})") if fires else ""
    return Verdict(score=min(1.0, max(0.0, silent / timeout / 2.0)), fires=fires, value=silent,
                   expected=max(s.intervals) if s.intervals else 0.0, threshold=timeout, window=timeout, reason=reason)


# --- a straggler rank ---------------------------------------------------------------------------


def straggler_params(ratio: float = 2.0, k: float = 5.0, for_points: int = 3) -> PeerParams:
    """Peer-outlier parameters for per-rank steps/s: a rank at half the others' median (or slower), well
    outside their spread, for 3 observations. Use with ``peers.step_peers``."""
    return PeerParams(side="low", k=k, ratio=ratio, rel_floor=0.05, min_peers=2, for_points=for_points)


# --- GPU idle while the job runs ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IdleParams:
    idle_below: float = 5.0  # utilization percent at or below which a GPU counts as idle
    for_s: float = 300.0

    def __post_init__(self) -> None:
        if self.idle_below < 0 or self.for_s <= 0:
            raise ValueError("IdleParams: idle_below >= 0 and for_s > 0")


@dataclass(frozen=True, slots=True)
class IdleState:
    idle_since: float | None = None


def step_gpu_idle(p: IdleParams, s: IdleState, t: float, utilization: float, running: bool) -> tuple[IdleState, Verdict]:
    """Fires when a running job's GPU utilization stayed at or below ``idle_below`` for ``for_s``."""
    u = float(utilization)
    if not running or not (u <= p.idle_below):  # NaN counts as not idle (unknown)
        return IdleState(None), Verdict(0.0, False, u, p.idle_below, p.idle_below, 0.0, "")
    since = s.idle_since if s.idle_since is not None else t
    idle_for = t - since
    fires = idle_for >= p.for_s
    reason = f"GPU at {u:.0f}% for {idle_for:.0f}s while the job runs" if fires else ""
    return IdleState(since), Verdict(score=min(1.0, idle_for / p.for_s / 2.0), fires=fires, value=u,
                                     expected=p.idle_below, threshold=p.idle_below, window=idle_for, reason=reason)


# --- memory growing towards a limit, with an ETA ------------------------------------------------


@dataclass(frozen=True, slots=True)
class MemoryParams:
    alpha: float = 0.05  # weight of the newest sample in the trend (about 1/alpha samples remembered)
    horizon_s: float = 600.0  # fires when the limit is reached within this time
    min_points: int = 10
    min_fraction: float = 0.5  # ... and usage is at least this fraction of the limit

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha <= 1.0 or self.horizon_s <= 0 or self.min_points < 2:
            raise ValueError("MemoryParams: need 0 < alpha <= 1, horizon_s > 0, min_points >= 2")


@dataclass(frozen=True, slots=True)
class MemoryState:
    n: int = 0
    t0: float = 0.0  # the newest sample's time: the sums' origin, so they stay small however long it runs
    # exponentially weighted sums of 1, t, x, t*t, t*x (t relative to t0)
    w: float = 0.0
    st: float = 0.0
    sx: float = 0.0
    stt: float = 0.0
    stx: float = 0.0


def memory_trend(s: MemoryState) -> tuple[float, float] | None:
    """(slope per second, fitted value at the newest sample) of the weighted linear fit, or None."""
    if s.w <= 0:
        return None
    mt, mx = s.st / s.w, s.sx / s.w
    var = s.stt / s.w - mt * mt
    if var <= 1e-12 * max(1.0, mt * mt):
        return None
    slope = (s.stx / s.w - mt * mx) / var
    return slope, mx - slope * mt  # the fit at t = t0 (the newest sample)


def step_memory(p: MemoryParams, s: MemoryState, t: float, used: float, limit: float) -> tuple[MemoryState, Verdict]:
    """One memory sample (bytes used, bytes allowed): fires when the linear trend reaches the limit
    within ``horizon_s``; the verdict's ``window`` is the ETA in seconds (inf when not growing)."""
    used, limit = float(used), float(limit)
    if not limit > 0 or not math.isfinite(limit):
        raise ValueError(f"memory limit must be a finite number of bytes > 0, got {limit}")
    if not math.isfinite(used):  # a missing sample: nothing learnt
        return s, Verdict(0.0, False, used, limit, p.horizon_s, math.inf, "")
    d = 1.0 - p.alpha
    shift = t - s.t0 if s.n else 0.0  # move the origin to t: old times become negative
    w, st, sx = s.w, s.st - shift * s.w, s.sx
    stt = s.stt - 2.0 * shift * s.st + shift * shift * s.w
    stx = s.stx - shift * s.sx
    ns = MemoryState(n=s.n + 1, t0=t, w=d * w + 1.0, st=d * st, sx=d * sx + used, stt=d * stt, stx=d * stx)
    trend = memory_trend(ns)
    eta = math.inf
    fires = False
    reason = ""
    if trend is not None and ns.n >= p.min_points:
        slope, now_fit = trend
        current = max(used, now_fit)
        if slope > 0:
            eta = max(0.0, (limit - current) / slope)
        fires = eta <= p.horizon_s and used >= p.min_fraction * limit
        if fires:
            reason = (f"memory {used / 2**20:.0f} MiB of {limit / 2**20:.0f} MiB, growing "
                      f"{slope / 2**20:.2f} MiB/s: limit in about {eta:.0f}s")
    score = 0.0 if not math.isfinite(eta) else min(1.0, p.horizon_s / max(eta, 1e-9) / 2.0)
    return ns, Verdict(score=score, fires=fires, value=used, expected=limit, threshold=p.horizon_s, window=eta,
                       reason=reason)
