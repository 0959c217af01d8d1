"""Built-in detector alerts for every deployment: no rule to write.

On each alert pass, the deployment series the sampler wrote since the last pass are fed, point by
point, to the streaming detectors of `policy/anomaly/`:

- ``DeploymentLatencyAnomaly`` / ``DeploymentErrorAnomaly`` / ``DeploymentTrafficAnomaly``: the level
  and seasonal-residual detector (the one measured on NAB) on latency_p99_seconds, error_rate and
  request_rate. It fires on a point; the alert resolves after ``RESOLVE_AFTER`` quiet points.
- ``DeploymentErrorBudgetBurn``: the multiwindow burn rate of the error budget (objective
  ``OBJECTIVE``, Google SRE's 1 h / 5 min at 14.4x and 6 h / 30 min at 6x) on the gateway's answers.

Detector state is kept in memory per series (bounded by the number of series: each is a few floats
and two small tables); after a restart each series warms up again before it is judged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from cumulo.policy.anomaly.burn_rate import BurnParams, BurnState, step_burn
from cumulo.policy.anomaly.level import LevelParams, LevelState, step_level
from cumulo.policy.anomaly.verdict import Verdict
from cumulo.store import alerts as store
from cumulo.store import metrics as metrics_store

log = logging.getLogger(__name__)

#: metric -> (alert rule, severity)
LEVEL_RULES = {"latency_p99_seconds": ("DeploymentLatencyAnomaly", "warning"),
               "error_rate": ("DeploymentErrorAnomaly", "warning"),
               "request_rate": ("DeploymentTrafficAnomaly", "info")}
BURN_RULE = ("DeploymentErrorBudgetBurn", "critical")
OBJECTIVE = 0.999
#: quiet points after which a level alert resolves
RESOLVE_AFTER = 6
#: how far back the first pass reads (a restart does not replay a day)
FIRST_LOOK = 600


@dataclass
class _Series:
    level: LevelState = field(default_factory=LevelState)
    last_t: int = 0
    quiet: int = 0


@dataclass
class _Burn:
    state: BurnState = field(default_factory=BurnState)
    last_t: int = 0
    points: dict[int, dict[str, float]] = field(default_factory=dict)


class ServiceDetectors:
    def __init__(self, interval: float, *, level: LevelParams | None = None, burn: BurnParams | None = None) -> None:
        self.interval = max(1.0, interval)
        self.level = level or LevelParams()
        self.burn = burn or BurnParams(objective=OBJECTIVE)
        self._series: dict[tuple[str, str, str], _Series] = {}
        self._burns: dict[tuple[str, str], _Burn] = {}

    def run(self, s, now: datetime) -> None:
        """Feed what was sampled since the last pass; open and resolve the built-in alerts."""
        t_now = int(now.timestamp())
        oldest = min([x.last_t for x in self._series.values()] + [t_now - FIRST_LOOK])
        since = max(oldest + 1, t_now - FIRST_LOOK)
        data = metrics_store.query(s, kind="deployment", metric=list(LEVEL_RULES), instance="", since=since,
                                   until=t_now + 1, step=1, now=t_now)
        opened = {(a.workspace, a.object, a.rule): a for a in store.open_alerts(s, target="deployment")
                  if a.rule in {r for r, _ in LEVEL_RULES.values()} | {BURN_RULE[0]}}
        live = set()
        for d in data:
            key = (d.key.workspace, d.key.object, d.key.metric)
            live.add(key)
            st = self._series.setdefault(key, _Series())
            burn = self._burns.setdefault(key[:2], _Burn())
            for t, mean, _max in d.points:
                if t <= st.last_t:
                    continue
                st.last_t = t
                st.level, verdict = step_level(self.level, st.level, float(t), mean,
                                               window_s=self.interval * RESOLVE_AFTER)
                self._judge(s, key, verdict, opened, now)
                if d.key.metric in ("error_rate", "request_rate"):
                    burn.points.setdefault(t, {})[d.key.metric] = mean
        for (ws, obj), burn in self._burns.items():
            self._feed_burn(s, ws, obj, burn, opened, now)
        # deployments that are gone: forget their state, resolve their alerts
        for key in [k for k in self._series if k not in live and self._series[k].last_t < t_now - FIRST_LOOK]:
            del self._series[key]
            self._burns.pop(key[:2], None)
        for (ws, obj, rule), a in opened.items():
            if not any(k[0] == ws and k[1] == obj for k in live) and a.started_at.timestamp() < t_now - FIRST_LOOK:
                store.resolve(s, a, now, why="no samples any more")

    def _judge(self, s, key, verdict: Verdict, opened, now: datetime) -> None:
        ws, obj, metric = key
        rule, severity = LEVEL_RULES[metric]
        st = self._series[key]
        row = opened.get((ws, obj, rule))
        if verdict.fires:
            st.quiet = 0
            if row is None:
                opened[(ws, obj, rule)] = store.open_one(
                    s, workspace=ws, rule_name=rule, target="deployment", obj=obj, instance="", severity=severity,
                    summary=f"{metric} of {obj} is anomalous: {verdict.reason}",
                    evidence={"metric": metric, **verdict.evidence()}, now=now, firing=True)
            return
        st.quiet += 1
        if row is not None and st.quiet >= RESOLVE_AFTER:
            store.resolve(s, row, now, why=f"{metric} back to normal for {RESOLVE_AFTER} samples")
            del opened[(ws, obj, rule)]

    def _feed_burn(self, s, ws: str, obj: str, burn: _Burn, opened, now: datetime) -> None:
        rule, severity = BURN_RULE
        verdict = None
        for t in sorted(burn.points):
            p = burn.points[t]
            if "request_rate" not in p:
                continue
            total = max(0.0, p["request_rate"]) * self.interval
            bad = min(total, max(0.0, p.get("error_rate", 0.0)) * total)
            burn.state, verdict = step_burn(self.burn, burn.state, float(t), bad, total)
            burn.last_t = t
        burn.points = {t: p for t, p in burn.points.items() if t > burn.last_t}
        if verdict is None:
            return
        row = opened.get((ws, obj, rule))
        if verdict.fires and row is None:
            opened[(ws, obj, rule)] = store.open_one(
                s, workspace=ws, rule_name=rule, target="deployment", obj=obj, instance="", severity=severity,
                summary=f"{obj} is burning its error budget ({OBJECTIVE:.1%} objective): {verdict.reason}",
                evidence=verdict.evidence(), now=now, firing=True)
        elif not verdict.fires and row is not None:
            store.resolve(s, row, now, why="the burn rate fell below every window pair's factor")
            del opened[(ws, obj, rule)]
