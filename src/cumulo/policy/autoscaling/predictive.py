"""cumulo's predictive autoscaler: a reactive floor, plus a forecast of the rate one cold start ahead.

Every ``tick`` (10 s) the policy computes its reactive floor (``floor``: "drain", the default, see
below; "kpa": Knative's KPA with its published defaults run inside this policy with its own state,
panic mode included, best with ``tick=2``; "concurrency"). Every ``forecast_every`` (10 s) it
forecasts the rate one cold start ahead, ``R(t) = a*L(t) + b*H(t) + c*dL(t)`` fitted online (below),
and turns it into an upper bound: by default mean + ``z`` x the relative RMS error of past
forecasts; with ``coverage`` set, by **conformal calibration**: the ``coverage`` quantile of the
ratios (observed rate at t + h) / (what was planned for it) over the last ``calibration_window``.
The same is kept for persistence (the rate now as the forecast of the rate at t + h). The forecast
is used only while its calibrated bound was tighter than persistence's over the calibration window
(``gate``); otherwise the plan is persistence's calibrated bound (the rate now times the quantile of
how much the rate rose within one cold start): a policy that knows when its forecasts fail falls
back to reaction. Until ``min_calibration`` seconds of outcomes are in, only the reaction acts. So ``desired = max(reaction,
forecast bound / target_rps)`` with the forecast term held over ``downscale_window``.

The forecast:

- ``L(t)``: the request rate now (mean over ``rate_window``);
- ``H(t)``: the seasonal profile at the forecast time ``t + h``: the rate usually seen at that
  time of the week (10-minute bins), or of the day while no week has been seen yet; each bin is an
  exponential average over past weeks (days), learnt by the policy itself from the load it sees;
- ``dL(t)``: the slope of the rate over ``slope_window``, times the horizon ``h`` (so ``c`` has
  no unit);
- ``h``: one cold-start delay plus one tick: what is decided now is ready then.

``a, b, c`` minimise an exponentially-forgetting ridge least-squares loss over past
(features at t, rate observed at t + h) pairs (a soft rolling window with ``half_life``), shrunk
towards the no-forecast answer ``(1, 0, 0)`` with the weight of ``ridge`` average samples, so an untrained policy acts like a reactive one.
With a long cold start the plan is never below the recent level of the rate (``level``: an
exponential mean with half-life ``level_half_life``, by default 10 cold starts, used from a 60 s cold
start on): short-term rates jump up and down around that level, and a capacity released after a dip
takes a whole cold start to come back when the rate rebounds; below a minute the rebound is caught
quickly and the level costs more than it saves. The plan is raised by ``z`` times the
exponentially-averaged relative error of past forecasts (headroom for what the model misses) and
turned into replicas with ``target_rps``; the answer is
never below what a reactive rule asks now, so a surprise burst is never ignored. The rule
(``floor="drain"``) asks for the arrival rate over ``reactive_window`` plus the queue that will
still be there when a new replica is ready (what the replicas up or starting cannot drain within
``h``), drained over ``drain_horizon``; while a queue is forming it also trusts the last few
seconds' rate. It does not count queued requests as concurrency: a one-second spike that the
replicas up drain by themselves asks for nothing, where the old rule (``floor="concurrency"``:
in-flight requests, queue included, against ``target_concurrency``) asked for hundreds of replicas
that arrived after the queue had drained. A scale-down happens only
when every recommendation of the last ``downscale_window`` asked for it (no flapping). With
``min_replicas == 0`` and ``scale_to_zero_after`` set, an idle deployment goes to zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from cumulo.policy.autoscaling import kpa
from cumulo.policy.autoscaling.base import (
    AutoscaleInput,
    Decision,
    require,
    validate_input,
)

__all__ = ["PredictiveConfig", "PredictiveState", "coefficients", "conformal_quantile", "decide"]

WEEK = 7 * 86400.0
DAY = 86400.0
#: seconds of arrivals that show a rate change once a queue forms
SHORT_WINDOW = 5.0


@dataclass(frozen=True)
class PredictiveConfig:
    #: how often the policy reacts; the forecast runs every ``forecast_every``
    tick: float = 10.0
    forecast_every: float = 10.0
    rate_window: float = 60.0
    slope_window: float = 300.0
    reactive_window: float = 20.0
    bin_seconds: float = 600.0
    profile_alpha: float = 0.5
    half_life: float = 3 * DAY
    ridge: float = 10.0  # the prior (1, 0, 0) weighs as much as this many average samples
    #: the forecast's upper bound: the ``coverage`` quantile of (observed / planned) over the last
    #: ``calibration_window`` (conformal, gated against persistence); None (the default until the
    #: leave-one-out benchmark says otherwise): mean + ``z`` x relative RMS error, never gated
    coverage: float | None = None
    calibration_window: float = 6 * 3600.0
    #: forecast outcomes (in seconds of forecasting) needed before the forecast is used at all
    min_calibration: float = 3600.0
    #: use the forecast only while its calibrated bound is tighter than persistence's (else: react)
    gate: bool = True
    z: float = 2.0
    error_half_life: float = 3600.0
    downscale_window: float | None = None  # default: max(60 s, cold start); holds the forecast term
    #: the reaction and floor: "kpa" (Knative's KPA, published defaults), "drain" (arrival rate +
    #: the backlog left at t + h drained over ``drain_horizon``) or "concurrency" (in-flight requests,
    #: queue included, against target_concurrency)
    floor: str = "drain"
    drain_horizon: float | None = None  # default: cold start + forecast_every
    scale_to_zero_after: float | None = None
    #: the level floor: half-life of the recent-level mean the plan never goes below; None: 10 cold
    #: starts when the cold start is at least ``level_min_cold_start``, else off; 0: off
    level_half_life: float | None = None
    level_min_cold_start: float = 60.0

    def __post_init__(self) -> None:
        require(self.tick > 0, "tick", "must be > 0")
        require(self.forecast_every > 0, "forecast_every", "must be > 0")
        require(self.rate_window > 0, "rate_window", "must be > 0")
        require(self.bin_seconds > 0 and DAY % self.bin_seconds == 0, "bin_seconds", "must divide a day")
        require(0 < self.profile_alpha <= 1, "profile_alpha", "must be in (0, 1]")
        require(self.half_life > 0, "half_life", "must be > 0")
        require(self.ridge >= 0, "ridge", "must be >= 0")
        require(self.coverage is None or 0 < self.coverage < 1, "coverage", "must be in (0, 1) or null")
        require(self.calibration_window >= self.forecast_every, "calibration_window", "must be >= forecast_every")
        require(self.min_calibration >= 0, "min_calibration", "must be >= 0")
        require(self.z >= 0, "z", "must be >= 0")
        require(self.floor in ("kpa", "drain", "concurrency"), "floor", "must be 'kpa', 'drain' or 'concurrency'")
        require(self.drain_horizon is None or self.drain_horizon > 0, "drain_horizon", "must be > 0")
        require(self.level_half_life is None or self.level_half_life >= 0, "level_half_life", "must be >= 0")
        require(self.scale_to_zero_after is None or self.scale_to_zero_after >= 0, "scale_to_zero_after", "must be >= 0")


#: the reaction inside the policy: Knative's published defaults
KPA = kpa.KPAConfig()


@dataclass(frozen=True)
class PredictiveState:
    target: int | None = None
    last_tick: float = -math.inf
    last_forecast: float = -math.inf
    #: seasonal profiles (rate per bin) and how many times each bin was seen
    week: np.ndarray = field(default_factory=lambda: np.zeros(0))
    week_n: np.ndarray = field(default_factory=lambda: np.zeros(0))
    day: np.ndarray = field(default_factory=lambda: np.zeros(0))
    day_n: np.ndarray = field(default_factory=lambda: np.zeros(0))
    #: the bin being filled: its index (on the absolute bin axis), sum of rate*seconds, seconds
    bin_index: int = -1
    bin_sum: float = 0.0
    bin_seconds: float = 0.0
    #: ridge sufficient statistics (exponentially forgotten)
    xtx: np.ndarray = field(default_factory=lambda: np.zeros((3, 3)))
    xty: np.ndarray = field(default_factory=lambda: np.zeros(3))
    samples: float = 0.0
    #: forecasts waiting for their outcome: (due time, features, forecast, planned, rate then)
    pending: tuple[tuple[float, tuple[float, float, float], float, float, float], ...] = ()
    #: exponentially averaged squared relative forecast error (for coverage=None)
    err2: float = 0.0
    err_w: float = 0.0
    #: conformal calibration: a ring of the last outcomes, one row each:
    #: (observed / planned, observed / rate then, planned, rate then); ``cal_n`` rows are filled
    cal: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    cal_n: int = 0
    cal_i: int = 0
    #: recent forecast terms (time, replicas) for the downscale window
    recent: tuple[tuple[float, float], ...] = ()
    last_active: float = -math.inf
    #: exponential mean of the rate (the level floor); nan until the first forecast
    level: float = math.nan
    #: the reaction's own state (KPA's) and the forecast term in replicas (0 while not trusted)
    reaction: Any = None
    plan: float = 0.0
    why: str = "no forecast yet"


def conformal_quantile(values: np.ndarray, coverage: float) -> float:
    """The split-conformal quantile: the ceil(coverage * (n + 1))-th smallest of ``values`` (inf if
    there are too few values for that coverage)."""
    n = len(values)
    k = math.ceil(coverage * (n + 1))
    if n == 0 or k > n:
        return math.inf
    return float(np.partition(values, k - 1)[k - 1])


def level_half_life(cfg: PredictiveConfig, cold_start: float) -> float:
    """The level floor's half-life for this cold start (0: no level floor)."""
    if cfg.level_half_life is not None:
        return cfg.level_half_life
    return 10.0 * cold_start if cold_start >= cfg.level_min_cold_start else 0.0


def coefficients(st: PredictiveState, ridge: float) -> np.ndarray:
    """``(a, b, c)`` for the statistics in ``st``: ridge regression shrunk towards (1, 0, 0)."""
    prior = np.array([1.0, 0.0, 0.0])
    per_sample = float(np.trace(st.xtx)) / 3.0 / st.samples if st.samples > 0 else 0.0
    rho = ridge * per_sample + 1e-9
    try:
        return np.linalg.solve(st.xtx + rho * np.eye(3), st.xty + rho * prior)
    except np.linalg.LinAlgError:  # pragma: no cover - rho > 0 keeps the matrix regular
        return prior


def _profile_value(st: PredictiveState, t: float, cfg: PredictiveConfig) -> tuple[float, str]:
    """The seasonal rate expected at time ``t``: weekly bin if seen, else daily, else none."""
    nweek = int(WEEK / cfg.bin_seconds)
    nday = int(DAY / cfg.bin_seconds)
    pos = t / cfg.bin_seconds - 0.5  # interpolate between bin centres
    lo = math.floor(pos)
    frac = pos - lo
    profiles = ((st.week, st.week_n, nweek, "week"), (st.day, st.day_n, nday, "day"))
    for values, counts, n, name in profiles:
        if len(values):
            i, j = lo % n, (lo + 1) % n
            if counts[i] > 0 and counts[j] > 0:
                return float(values[i] * (1 - frac) + values[j] * frac), name
    if len(st.day):  # only one neighbour of the daily profile seen so far
        i, j = lo % nday, (lo + 1) % nday
        if st.day_n[i] > 0 or st.day_n[j] > 0:
            return float(st.day[i] if st.day_n[i] > 0 else st.day[j]), "day"
    return math.nan, "none"


def _learn_profile(st: PredictiveState, now: float, rate: float, seconds: float, cfg: PredictiveConfig) -> PredictiveState:
    """Add ``seconds`` of ``rate`` to the current bin; when a bin completes, fold it into the profiles."""
    index = int(now // cfg.bin_seconds)
    if st.bin_index == index or st.bin_index < 0:
        return replace(st, bin_index=index, bin_sum=st.bin_sum + rate * seconds, bin_seconds=st.bin_seconds + seconds)
    nweek = int(WEEK / cfg.bin_seconds)
    nday = int(DAY / cfg.bin_seconds)
    week = st.week.copy() if len(st.week) else np.zeros(nweek)
    week_n = st.week_n.copy() if len(st.week_n) else np.zeros(nweek)
    day = st.day.copy() if len(st.day) else np.zeros(nday)
    day_n = st.day_n.copy() if len(st.day_n) else np.zeros(nday)
    if st.bin_seconds >= 0.5 * cfg.bin_seconds:  # only fold bins that were mostly observed
        mean = st.bin_sum / st.bin_seconds
        a = cfg.profile_alpha
        for values, counts, i in ((week, week_n, st.bin_index % nweek), (day, day_n, st.bin_index % nday)):
            values[i] = mean if counts[i] == 0 else (1 - a) * values[i] + a * mean
            counts[i] += 1
    return replace(
        st, week=week, week_n=week_n, day=day, day_n=day_n,
        bin_index=index, bin_sum=rate * seconds, bin_seconds=seconds,
    )


def _drain_floor(inp: AutoscaleInput, rate_now: float, h: float, drain: float) -> float:
    """Replicas for the arrival rate now plus the backlog still queued when new replicas are ready.

    The queue is the last sample's in-flight requests beyond what the arrival rate keeps in service
    (Little: rate x service time, the service time being target_concurrency / target_rps). Until
    ``t + h`` the replicas up or starting (at ``target_rps`` each, so conservatively) drain it with
    what they carry beyond the arrival rate, or it keeps growing by the shortfall; what is left at
    ``t + h`` is drained over ``drain`` seconds. While there is a queue the arrival rate is the
    higher of the ``reactive_window`` mean and the last ``SHORT_WINDOW`` seconds' (a step up in load
    shows there first). A one-second spike that the replicas up absorb asks for nothing; a step up
    that outruns them asks for the new rate and the queue built up until new replicas are ready.
    Without a queue the rule is the arrival rate alone.
    """
    load = inp.load
    service = inp.target_concurrency / inp.target_rps
    queued = 0.0
    if len(load.concurrency):
        queued = max(0.0, float(load.concurrency[-1]) - float(load.rates[-1]) * service)
    if queued <= 1e-6:
        return rate_now / inp.target_rps
    rate = max(rate_now, load.mean_rate(SHORT_WINDOW))
    net = inp.current * inp.target_rps - rate  # < 0: the queue keeps growing until new replicas are up
    left = max(0.0, queued - net * h)
    return (rate + left / drain) / inp.target_rps


def _forecast(inp: AutoscaleInput, st: PredictiveState, cfg: PredictiveConfig) -> PredictiveState:
    """One forecast step: learn from forecasts now due, forecast t + h, calibrate, gate; the result
    is ``st.plan`` (replicas the forecast asks for, 0 while it is not trusted) and ``st.why``."""
    elapsed = cfg.forecast_every if st.last_forecast == -math.inf else min(inp.now - st.last_forecast, inp.load.covers())
    load = inp.load
    L = load.mean_rate(cfg.rate_window)
    recent_rate = load.mean_rate(elapsed)
    st = _learn_profile(st, inp.now, recent_rate, elapsed, cfg)
    level_hl = level_half_life(cfg, inp.cold_start)
    if level_hl > 0:
        keep = 0.5 ** (elapsed / level_hl)
        st = replace(st, level=recent_rate if math.isnan(st.level) else keep * st.level + (1 - keep) * recent_rate)

    # slope: rate now minus the rate one slope window ago, per second, times the horizon
    h = inp.cold_start + cfg.forecast_every
    n = len(load.rates)
    k_rate = max(1, int(round(cfg.rate_window / load.step)))
    k_back = int(round(cfg.slope_window / load.step))
    if n >= k_back + k_rate:
        past = float(load.rates[n - k_back - k_rate : n - k_back].sum()) / k_rate
        dL = (L - past) / cfg.slope_window * h
    else:
        dL = 0.0

    # learn from forecasts whose time has come
    decay = 0.5 ** (cfg.forecast_every / cfg.half_life)
    edecay = 0.5 ** (cfg.forecast_every / cfg.error_half_life)
    xtx, xty, samples, err2, err_w = st.xtx, st.xty, st.samples, st.err2, st.err_w
    size = max(1, int(round(cfg.calibration_window / cfg.forecast_every)))
    cal, cal_n, cal_i = st.cal, st.cal_n, st.cal_i
    copied = False
    pending = []
    for due, x, yhat, planned_then, rate_then in st.pending:
        if due > inp.now + 1e-9:
            pending.append((due, x, yhat, planned_then, rate_then))
            continue
        xv = np.array(x)
        xtx = decay * xtx + np.outer(xv, xv)
        xty = decay * xty + xv * L
        samples = decay * samples + 1
        rel = (L - yhat) / max(yhat, L, 1e-9)
        err2 = edecay * err2 + rel * rel
        err_w = edecay * err_w + 1
        if planned_then > 1e-9 and rate_then > 1e-9:  # idle periods say nothing about forecast skill
            if not copied:
                cal = cal.copy() if len(cal) == size else np.zeros((size, 4))
                copied = True
            cal[cal_i] = (L / planned_then, L / rate_then, planned_then, rate_then)
            cal_i = (cal_i + 1) % size
            cal_n = min(size, cal_n + 1)
    st = replace(st, xtx=xtx, xty=xty, samples=samples, err2=err2, err_w=err_w, cal=cal, cal_n=cal_n, cal_i=cal_i)

    H, season = _profile_value(st, inp.now + h, cfg)
    if math.isnan(H):
        H = L
    a, b, c = coefficients(st, cfg.ridge)
    forecast = max(0.0, a * L + b * H + c * dL)
    # the level floor: plan for at least the recent level; not while no request is arriving or in
    # flight, so that an idle deployment still scales to zero
    active = L > 0 or load.mean_rate(cfg.reactive_window) > 0 or load.mean_concurrency(cfg.reactive_window) > 0
    planned = forecast
    if level_hl > 0 and active and not math.isnan(st.level):
        planned = max(forecast, st.level)
    pending.append((inp.now + h, (L, H, dL), forecast, planned, L))
    st = replace(st, pending=tuple(pending), last_forecast=inp.now)

    what = f"L={L:.2f} H({season})={H:.2f} dL*h={dL:.2f} -> a={a:.2f} b={b:.2f} c={c:.2f}: forecast {forecast:.2f}"
    if planned > forecast:
        what += f" (level {planned:.2f})"
    if not active:  # an idle deployment: nothing to plan for (scale to zero stays possible)
        return replace(st, plan=0.0, why=f"{what}; idle")
    if cfg.coverage is None:  # the old headroom: mean + z x RMS relative error, never gated
        sigma = math.sqrt(err2 / err_w) if err_w > 0 else 0.0
        upper = planned * (1 + cfg.z * sigma)
        return replace(st, plan=upper / inp.target_rps, why=f"{what} +{cfg.z:g}x{sigma:.0%} req/s at t+{h:.0f}s")
    if cal_n * cfg.forecast_every < cfg.min_calibration:
        return replace(st, plan=0.0, why=f"{what}; calibrating ({cal_n} outcomes), reacting only")
    rows = cal[:cal_n]
    q_f = conformal_quantile(rows[:, 0], cfg.coverage)
    q_p = conformal_quantile(rows[:, 1], cfg.coverage)
    if math.isinf(q_f) or math.isinf(q_p):  # too few outcomes for this coverage yet
        return replace(st, plan=0.0, why=f"{what}; calibrating ({cal_n} outcomes), reacting only")
    # how wide each calibrated bound was on average over the calibration window
    width_f = q_f * float(rows[:, 2].mean())
    width_p = q_p * float(rows[:, 3].mean())
    upper = planned * q_f
    what += f" x{q_f:.2f} (q{cfg.coverage:g}) = {upper:.2f} req/s at t+{h:.0f}s"
    if cfg.gate and not width_f < width_p:
        # the forecast does no better than "the rate now": react, with the headroom that the rate
        # now needed over the same window to cover the rate one cold start later
        fallback = L * q_p
        return replace(st, plan=fallback / inp.target_rps,
                       why=f"{what}; forecast bound not tighter than persistence's ({width_f:.1f} vs {width_p:.1f}): "
                           f"reacting, rate now x{q_p:.2f} = {fallback:.2f} req/s")
    return replace(st, plan=upper / inp.target_rps, why=what)


def decide(inp: AutoscaleInput, config: PredictiveConfig = PredictiveConfig()) -> Decision:
    validate_input(inp)
    cfg = config
    st: PredictiveState = inp.state or PredictiveState(last_active=inp.now)
    current = st.target if st.target is not None else max(inp.min_replicas, inp.current)
    current = max(inp.min_replicas, min(inp.max_replicas, current))
    if inp.now - st.last_tick < cfg.tick - 1e-9:
        return Decision(current, replace(st, target=current), "predictive: waiting for tick")

    if inp.now - st.last_forecast >= cfg.forecast_every - 1e-9:
        st = _forecast(inp, st, cfg)

    load = inp.load
    rate_now = load.mean_rate(cfg.reactive_window)
    conc_now = load.mean_concurrency(cfg.reactive_window)
    reaction_state = st.reaction
    if cfg.floor == "kpa":
        k = kpa.decide(replace(inp, state=st.reaction), KPA)
        reactive = float(k.desired)
        reaction_state = k.state
    elif cfg.floor == "concurrency":
        reactive = max(rate_now / inp.target_rps, conc_now / inp.target_concurrency)
    else:
        h = inp.cold_start + cfg.forecast_every
        reactive = _drain_floor(inp, rate_now, h, cfg.drain_horizon if cfg.drain_horizon is not None else h)

    # the forecast term is held over the downscale window (no flapping); the reaction is Knative's
    window = cfg.downscale_window if cfg.downscale_window is not None else max(60.0, inp.cold_start)
    recent = tuple(r for r in st.recent if r[0] > inp.now - window)
    if st.plan > 0:
        recent += ((inp.now, st.plan),)
    plan = max((r[1] for r in recent), default=0.0)
    want = math.ceil(max(reactive, plan) - 1e-9)
    source = "forecast" if plan > reactive else "reaction"

    active = rate_now > 0 or conc_now > 0 or load.mean_rate(cfg.rate_window) > 0
    last_active = inp.now if active else st.last_active
    if want == 0 and inp.min_replicas == 0:
        idle = inp.now - last_active
        if cfg.scale_to_zero_after is None or idle < cfg.scale_to_zero_after:
            want = 1
    desired = max(inp.min_replicas, min(inp.max_replicas, want))
    verb = "scale up" if desired > current else "scale down" if desired < current else "hold"
    why = f"{st.why}; reaction asks {math.ceil(reactive - 1e-9)}, forecast term {plan:.1f}: {source} decides"
    state = replace(st, target=desired, last_tick=inp.now, recent=recent, last_active=last_active, reaction=reaction_state)
    return Decision(desired, state, f"predictive: {verb} {current}->{desired}: {why}")
