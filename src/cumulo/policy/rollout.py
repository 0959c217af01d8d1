"""Canary rollouts as a pure decision: state and the gateway's counters in, what to do out.

A canary rollout sends `steps[i]` percent of a deployment's traffic to the new generation while the
stable one keeps serving the rest. Each step is judged over one *window*, the same for both
generations: from the moment the step began serving (its first canary replica ready) to now. The
gateway counts per generation, cumulatively (requests answered, 5xx or failed, a latency
histogram); the window's numbers are the growth since the counts recorded at its start.

Per pass the decision is one of:
- wait: the canary has no ready replica yet, it has answered fewer than `min_requests` in the
  window, or the window is younger than `interval` (a passing step is promoted only after it);
- rollback: the canary answered at least `min_requests` and its error rate or p99 is over its
  threshold and worse than the stable generation's in the same window (judged as soon as there are
  enough requests: a bad version is rolled back without waiting for the interval);
- promote: the step passed and lasted `interval`: the next step's weight; when that is 100 the
  rollout finishes (the new generation becomes the stable one).

When both generations are over a threshold and the canary is no worse (say the whole service is
overloaded, or a dependency fails), the canary is not to blame: the step holds and says so.
Commands (`cumulo deployment rollout promote | abort`) come in as `command`. Every decision carries
its evidence: both generations' requests, failures, error rate and p99 over the window, the
thresholds and the window's age. Finished and rolled-back rollouts are final.

No clock, no I/O: `now` and the counters come in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from cumulo.core.specs import Rollout

__all__ = ["Counts", "Evidence", "GenerationNumbers", "RolloutDecision", "RolloutInput", "RolloutState",
           "decide_rollout", "quantile", "start_rollout"]

PROGRESSING, SUCCEEDED, ROLLED_BACK = "Progressing", "Succeeded", "RolledBack"
Action = Literal["wait", "promote", "finish", "rollback"]


@dataclass(frozen=True)
class Counts:
    """One generation's counters as the gateways saw them (cumulative): requests answered, those
    answered 5xx or failed, and how many fell in each latency bucket (upper bounds: `bounds`, then
    +Inf)."""

    requests: int = 0
    errors: int = 0
    buckets: tuple[int, ...] = ()

    def minus(self, base: Counts) -> Counts | None:
        """The growth since `base`; None when a counter went backwards (the counters restarted)."""
        if self.requests < base.requests or self.errors < base.errors:
            return None
        n = max(len(self.buckets), len(base.buckets))
        mine = self.buckets + (0,) * (n - len(self.buckets))
        theirs = base.buckets + (0,) * (n - len(base.buckets))
        growth = tuple(a - b for a, b in zip(mine, theirs, strict=True))
        if any(g < 0 for g in growth):
            return None
        return Counts(self.requests - base.requests, self.errors - base.errors, growth)

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "errors": self.errors, "buckets": list(self.buckets)}

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> Counts:
        return Counts(int(d.get("requests", 0)), int(d.get("errors", 0)), tuple(int(x) for x in d.get("buckets", ())))


def quantile(bounds: tuple[float, ...], counts: tuple[int, ...], q: float) -> float | None:
    """The q-quantile of a histogram (upper bounds `bounds`, +Inf last), linear within a bucket;
    None when it is empty. Beyond the last bound it answers the last bound (a lower estimate)."""
    total = sum(counts)
    if total == 0 or not bounds:
        return None
    rank = q * total
    seen, lower = 0, 0.0
    for i, c in enumerate(counts):
        upper = bounds[i] if i < len(bounds) else bounds[-1]
        if c > 0 and seen + c >= rank:
            return lower + (upper - lower) * ((rank - seen) / c)
        seen += c
        lower = upper
    return bounds[-1]


@dataclass(frozen=True)
class GenerationNumbers:
    generation: int
    requests: int
    errors: int
    error_rate: float | None  # None: no request in the window
    p99_ms: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"generation": self.generation, "requests": self.requests, "errors": self.errors,
                "error_rate": self.error_rate, "p99_ms": self.p99_ms}


@dataclass(frozen=True)
class Evidence:
    """What a decision was made on: both generations over the same window, and the thresholds."""

    stable: GenerationNumbers
    canary: GenerationNumbers
    window_seconds: float
    max_error_rate: float
    max_p99_ms: float | None
    min_requests: int

    def to_dict(self) -> dict[str, Any]:
        return {"stable": self.stable.to_dict(), "canary": self.canary.to_dict(),
                "window_seconds": round(self.window_seconds, 3), "max_error_rate": self.max_error_rate,
                "max_p99_ms": self.max_p99_ms, "min_requests": self.min_requests}

    def summary(self) -> str:
        def one(n: GenerationNumbers) -> str:
            rate = "n/a" if n.error_rate is None else f"{n.error_rate:.2%}"
            p99 = "n/a" if n.p99_ms is None else f"{n.p99_ms:.0f} ms"
            return f"{n.errors}/{n.requests} failed ({rate}), p99 {p99}"
        limit = f"max error rate {self.max_error_rate:.2%}" + (
            f", max p99 {self.max_p99_ms:g} ms" if self.max_p99_ms is not None else "")
        return (f"version {self.canary.generation}: {one(self.canary)}; version {self.stable.generation} "
                f"(stable): {one(self.stable)}; over the last {self.window_seconds:.0f}s ({limit})")


@dataclass(frozen=True)
class RolloutState:
    """A canary rollout as stored between passes (JSON: to_dict/from_dict)."""

    stable_generation: int
    canary_generation: int
    phase: str = PROGRESSING
    step: int = 0  # index into the spec's steps
    started_at: datetime | None = None
    #: when this step's window began (its canary serving); None: not yet
    window_start: datetime | None = None
    baseline: Mapping[int, Counts] = field(default_factory=dict)  # counters at window_start
    reason: str = ""
    evidence: Evidence | None = None  # of the latest judgement

    def weight(self, steps: list[int]) -> int:
        """Percent of the traffic the canary gets now (0 once rolled back, 100 once finished)."""
        if self.phase == ROLLED_BACK:
            return 0
        if self.phase == SUCCEEDED:
            return 100
        return steps[min(self.step, len(steps) - 1)]

    @property
    def active(self) -> bool:
        return self.phase == PROGRESSING

    def to_dict(self) -> dict[str, Any]:
        return {
            "stable_generation": self.stable_generation, "canary_generation": self.canary_generation,
            "phase": self.phase, "step": self.step,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "window_start": self.window_start.isoformat() if self.window_start else None,
            "baseline": {str(g): c.to_dict() for g, c in self.baseline.items()},
            "reason": self.reason, "evidence": self.evidence.to_dict() if self.evidence else None,
        }

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> RolloutState:
        ev = d.get("evidence")
        return RolloutState(
            stable_generation=int(d["stable_generation"]), canary_generation=int(d["canary_generation"]),
            phase=str(d.get("phase", PROGRESSING)), step=int(d.get("step", 0)),
            started_at=_when(d.get("started_at")), window_start=_when(d.get("window_start")),
            baseline={int(g): Counts.from_dict(c) for g, c in (d.get("baseline") or {}).items()},
            reason=str(d.get("reason", "")),
            evidence=None if not ev else Evidence(
                stable=GenerationNumbers(**ev["stable"]), canary=GenerationNumbers(**ev["canary"]),
                window_seconds=float(ev["window_seconds"]), max_error_rate=float(ev["max_error_rate"]),
                max_p99_ms=ev.get("max_p99_ms"), min_requests=int(ev["min_requests"])),
        )


def _when(v: Any) -> datetime | None:
    return datetime.fromisoformat(v) if v else None


@dataclass(frozen=True)
class RolloutInput:
    now: datetime
    config: Rollout
    state: RolloutState
    #: cumulative counters per generation, summed over every gateway
    counters: Mapping[int, Counts]
    canary_ready: int  # ready replicas of the canary generation
    bounds: tuple[float, ...]  # the latency histogram's upper bounds, seconds
    command: Literal["promote", "abort"] | None = None
    actor: str | None = None  # who sent the command
    #: why the canary's replicas keep failing to come up (crash loop); "": they do not
    canary_failing: str = ""


@dataclass(frozen=True)
class RolloutDecision:
    action: Action
    state: RolloutState
    reason: str
    evidence: Evidence | None = None
    events: tuple[tuple[str, str, str], ...] = ()  # (type, reason, message)


def start_rollout(stable_generation: int, canary_generation: int, now: datetime, steps: list[int]) -> RolloutState:
    return RolloutState(stable_generation, canary_generation, PROGRESSING, 0, started_at=now,
                        reason=f"step 1/{len(steps)}: {steps[0]}% of the traffic to version {canary_generation} "
                               "once its first replica is ready")


def numbers(generation: int, c: Counts, bounds: tuple[float, ...]) -> GenerationNumbers:
    p99 = quantile(bounds, c.buckets, 0.99)
    return GenerationNumbers(generation, c.requests, c.errors,
                             c.errors / c.requests if c.requests else None,
                             None if p99 is None else round(p99 * 1000.0, 3))


def decide_rollout(inp: RolloutInput) -> RolloutDecision:
    st, cfg, now = inp.state, inp.config, inp.now
    if not st.active:
        return RolloutDecision("wait", st, st.reason, st.evidence)
    steps = cfg.steps
    step = min(st.step, len(steps) - 1)
    here = f"step {step + 1}/{len(steps)} ({steps[step]}% to version {st.canary_generation})"
    a = cfg.analysis
    evidence = _evidence(inp) if st.window_start is not None else None
    by = f" by {inp.actor}" if inp.actor else ""

    if inp.command == "abort":
        why = f"rollout aborted{by} at {here}" + (f": {evidence.summary()}" if evidence else "")
        return _rollback(inp, why, evidence, "RolloutAborted")
    if inp.command == "promote":
        return _promote(inp, step, f"promoted{by} at {here}" + (f": {evidence.summary()}" if evidence else ""),
                        evidence)

    if inp.canary_failing and inp.canary_ready == 0:
        return _rollback(inp, f"version {st.canary_generation} keeps failing to start at {here}: "
                              f"{inp.canary_failing}", evidence, "RolloutRolledBack")
    if inp.canary_ready == 0:
        reason = f"{here}: waiting for a replica of version {st.canary_generation} to be ready"
        return RolloutDecision("wait", replace(st, window_start=None, baseline={}, reason=reason), reason)
    if st.window_start is None:
        reason = f"{here}: measuring both versions from now"
        return RolloutDecision("wait", _new_window(st, inp, reason), reason)
    if evidence is None:
        reason = f"{here}: the gateways' counters restarted (a control plane restart?); measuring afresh from now"
        return RolloutDecision("wait", _new_window(st, inp, reason), reason)
    canary = evidence.canary
    if canary.requests < a.min_requests:
        reason = f"{here}: {canary.requests}/{a.min_requests} requests to the new version so far"
        return RolloutDecision("wait", replace(st, reason=reason, evidence=evidence), reason, evidence)

    failed, held = _judge(evidence)
    if failed:
        return _rollback(inp, f"analysis failed at {here}: {'; '.join(failed)} ({evidence.summary()})", evidence,
                         "RolloutRolledBack")
    if held:
        reason = (f"{here}: holding, both versions fail the analysis in the same window, so the new one is not "
                  f"to blame: {'; '.join(held)} ({evidence.summary()})")
        events = () if st.reason.startswith(f"{here}: holding") else (("Warning", "RolloutHeld", reason),)
        return RolloutDecision("wait", replace(st, reason=reason, evidence=evidence), reason, evidence, events)
    age = evidence.window_seconds
    if age < cfg.interval:
        reason = f"{here}: analysis passing, promoting in {cfg.interval - age:.0f}s"
        return RolloutDecision("wait", replace(st, reason=reason, evidence=evidence), reason, evidence)
    return _promote(inp, step, f"analysis passed at {here}: {evidence.summary()}", evidence)


def _evidence(inp: RolloutInput) -> Evidence | None:
    """Both generations over the window; None when a counter went backwards (a restart)."""
    st = inp.state
    assert st.window_start is not None
    got = {}
    for gen in (st.stable_generation, st.canary_generation):
        grown = inp.counters.get(gen, Counts()).minus(st.baseline.get(gen, Counts()))
        if grown is None:
            return None
        got[gen] = numbers(gen, grown, inp.bounds)
    a = inp.config.analysis
    return Evidence(stable=got[st.stable_generation], canary=got[st.canary_generation],
                    window_seconds=max(0.0, (inp.now - st.window_start).total_seconds()),
                    max_error_rate=a.max_error_rate, max_p99_ms=a.max_p99_ms, min_requests=a.min_requests)


def _judge(ev: Evidence) -> tuple[list[str], list[str]]:
    """(what the canary fails, what it fails no worse than the stable generation does)."""
    failed, held = [], []
    c, s = ev.canary, ev.stable
    stable_counts = s.requests >= ev.min_requests
    if c.error_rate is not None and c.error_rate > ev.max_error_rate:
        what = f"error rate {c.error_rate:.2%} > {ev.max_error_rate:.2%}"
        if stable_counts and s.error_rate is not None and s.error_rate >= c.error_rate:
            held.append(what + f" (stable: {s.error_rate:.2%})")
        else:
            failed.append(what)
    if ev.max_p99_ms is not None and c.p99_ms is not None and c.p99_ms > ev.max_p99_ms:
        what = f"p99 {c.p99_ms:.0f} ms > {ev.max_p99_ms:g} ms"
        if stable_counts and s.p99_ms is not None and s.p99_ms >= c.p99_ms:
            held.append(what + f" (stable: {s.p99_ms:.0f} ms)")
        else:
            failed.append(what)
    return failed, held


def _new_window(st: RolloutState, inp: RolloutInput, reason: str, **changes: Any) -> RolloutState:
    base = {g: inp.counters.get(g, Counts()) for g in (st.stable_generation, st.canary_generation)}
    return replace(st, window_start=inp.now, baseline=base, reason=reason, **changes)


def _promote(inp: RolloutInput, step: int, why: str, evidence: Evidence | None) -> RolloutDecision:
    st, steps = inp.state, inp.config.steps
    nxt = step + 1
    if nxt >= len(steps) or steps[nxt] >= 100:
        reason = f"version {st.canary_generation} takes all the traffic: {why}"
        done = replace(st, phase=SUCCEEDED, step=len(steps) - 1, reason=reason, evidence=evidence or st.evidence,
                       window_start=None, baseline={})
        return RolloutDecision("finish", done, reason, evidence, (("Normal", "RolloutSucceeded", reason),))
    reason = f"step {nxt + 1}/{len(steps)}: {steps[nxt]}% to version {st.canary_generation}; {why}"
    # the next window starts now if the canary serves, else once it does
    moved = replace(st, step=nxt, evidence=evidence or st.evidence)
    moved = _new_window(moved, inp, reason) if inp.canary_ready else replace(moved, window_start=None, baseline={},
                                                                              reason=reason)
    return RolloutDecision("promote", moved, reason, evidence, (("Normal", "RolloutPromoted", reason),))


def _rollback(inp: RolloutInput, why: str, evidence: Evidence | None, event: str) -> RolloutDecision:
    st = inp.state
    reason = f"rolled back to version {st.stable_generation}: {why}"
    done = replace(st, phase=ROLLED_BACK, reason=reason, evidence=evidence or st.evidence, window_start=None,
                   baseline={})
    return RolloutDecision("rollback", done, reason, evidence, (("Warning", event, reason),))


def canary_replicas(desired: int, weight: int) -> int:
    """Replicas of the new generation at a step that sends it `weight` percent of the traffic: its
    share of `desired`, rounded up, at least one."""
    return max(1, min(desired, math.ceil(desired * weight / 100))) if desired > 0 else 1
