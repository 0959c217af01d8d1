"""The alert reconciler: evaluate the rules, resolve what no longer holds, deliver notifications.

Two loop keys:

- ``rules`` (every CUMULO_ALERT_INTERVAL, 10 s): each user rule (`kind: AlertRule`) against the
  newest value of every monitored series it selects (``read_series``), through the pure
  ``policy.alerts.advance``: a breach opens a pending alert, one that lasts the rule's ``for`` fires,
  the first evaluation without it resolves. Built-in alerts (a job's health verdicts, opened by the
  job reconciler as it acts) are resolved here once their attempt or job is over.
- ``notify``: every alert that fired or resolved is POSTed to each configured webhook in
  Alertmanager's webhook format; a failed delivery is retried with backoff (policy/alerts.py), the
  delivery state lives on the alert row, so a restart neither loses nor repeats a notification
  that was acknowledged.
"""

from __future__ import annotations

import fnmatch
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from cumulo.control.detectors import ServiceDetectors
from cumulo.core.specs import AlertRuleSpec
from cumulo.core.states import JobState
from cumulo.policy.alerts import (
    DELIVERY_ATTEMPTS, FIRING, AlertState, advance, breached, fingerprint, retry_delay, webhook_body,
)
from cumulo.store import alerts as store
from cumulo.store import events
from cumulo.store import metrics as metrics_store
from cumulo.store.db import Database
from cumulo.store.models import Alert, Job, Node

log = logging.getLogger(__name__)

PERIOD = float(os.environ.get("CUMULO_ALERT_INTERVAL", "10"))
WEBHOOK_TIMEOUT = 5.0
#: the built-in rules a job's health opens (policy/jobs.HEALTH_EVENTS), by event reason
JOB_HEALTH_RULES = {"Stalled": ("JobStalled", "warning"), "LossNotFinite": ("JobLossNotFinite", "critical"),
                    "LossDiverged": ("JobLossDiverged", "critical")}

#: self-repair a deployment made on its own, by event reason: an alert that resolves REPAIR_ALERT_TTL later
#: (the repair is done by then; a repeat opens a new one)
REPAIR_RULES = {"ReplicaOutlier": ("DeploymentReplicaReplaced", "warning"),
                "ReplicaNearOOM": ("DeploymentReplicaReplaced", "warning"),
                "RolloutRolledBack": ("DeploymentRolledBack", "critical")}
REPAIR_ALERT_TTL = 300.0

#: (rule spec, workspace, now) -> {(object, instance): [(unix seconds, value), ... oldest first]}
SeriesReader = Callable[[AlertRuleSpec, str, datetime], dict[tuple[str, str], list[tuple[float, float]]]]


def utcnow() -> datetime:
    return datetime.now(UTC)


def metric_reader(db: Database, interval: float) -> SeriesReader:
    """Rules read the sampler's series (store/metrics.py): the last five minutes in steps of the
    sampling interval; a series with no sample in the last three intervals has no data (an alert on
    it resolves)."""
    step = max(1, int(interval))

    def read(spec: AlertRuleSpec, workspace: str, now: datetime) -> dict[tuple[str, str], list[tuple[float, float]]]:
        t = int(now.timestamp())
        with db.tx() as s:
            data = metrics_store.query(s, kind=spec.target, workspace="" if spec.target == "node" else workspace,
                                       metric=spec.metric, since=t - 300, until=t + 1, step=step, now=t)
        out = {}
        for d in data:
            points = [(pt[0], pt[1]) for pt in d.points]
            if points and points[-1][0] >= t - 3 * step - step:
                out[(d.key.object, d.key.instance)] = points
        return out

    return read


def webhooks_from_env() -> list[str]:
    raw = os.environ.get("CUMULO_ALERT_WEBHOOKS", "")
    return [u for u in raw.replace(",", " ").split() if u]


def open_job_health_alert(s, *, workspace: str, job: str, attempt: int, reason: str, message: str,
                          now: datetime) -> None:
    """The job reconciler acted on (or was told to alert about) a health verdict: fire its alert."""
    rule, severity = JOB_HEALTH_RULES[reason]
    if store.open_by_fingerprint(s, fingerprint(workspace, rule, "job", job, "")) is not None:
        return
    store.open_one(s, workspace=workspace, rule_name=rule, target="job", obj=job, instance="", severity=severity,
                   summary=message, evidence={"attempt": attempt, "verdict": reason, "message": message},
                   now=now, firing=True)


def open_repair_alert(s, *, workspace: str, deployment: str, reason: str, message: str, now: datetime) -> None:
    """A deployment repaired itself (replaced a replica, rolled a canary back): tell it as an alert too."""
    rule, severity = REPAIR_RULES[reason]
    older = store.open_by_fingerprint(s, fingerprint(workspace, rule, "deployment", deployment, ""))
    if older is not None:
        store.resolve(s, older, now, why="a newer repair of the same kind replaced it")
    store.open_one(s, workspace=workspace, rule_name=rule, target="deployment", obj=deployment, instance="",
                   severity=severity, summary=message, evidence={"event": reason, "message": message}, now=now,
                   firing=True)


class AlertReconciler:
    name = "alerts"
    resync = PERIOD

    def __init__(self, db: Database, *, webhooks: list[str], external_url: str,
                 read_series: SeriesReader | None = None, detectors: ServiceDetectors | None = None,
                 clock: Callable[[], datetime] = utcnow, period: float = PERIOD) -> None:
        self.db = db
        self.webhooks = list(webhooks)
        self.external_url = external_url
        self.read_series = read_series
        self.detectors = detectors
        self.clock = clock
        self.period = period
        self.wake: Callable[[str], None] = lambda key: None
        self._http = httpx.Client(timeout=WEBHOOK_TIMEOUT)

    def keys(self) -> list[str]:
        return ["rules", "notify"]

    def reconcile(self, key: str) -> float | None:
        if key == "rules":
            self.evaluate()
            self.wake("notify")
            return self.period
        return self.notify()

    # -- evaluation ------------------------------------------------------------------------------
    def evaluate(self) -> None:
        now = self.clock()
        with self.db.tx() as s:
            rules = [(r.workspace, AlertRuleSpec.model_validate(r.spec)) for r in store.rules(s)]
        for workspace, spec in rules:
            data = self._read(spec, workspace, now)
            if data is None:
                continue
            with self.db.tx() as s:
                self._apply_rule(s, workspace, spec, data, now)
        if self.detectors is not None:
            try:
                with self.db.tx() as s:
                    self.detectors.run(s, now)
            except Exception:  # the rules and the job alerts go on without them
                log.exception("built-in deployment detectors failed; will retry")
        with self.db.tx() as s:
            self._resolve_job_health(s, now)
            self._resolve_repairs(s, now)
            store.prune(s)

    def _read(self, spec: AlertRuleSpec, workspace: str, now: datetime):
        if self.read_series is None:
            return None
        try:
            data = self.read_series(spec, workspace, now)
        except Exception:  # one rule's bad read must not stop the others
            log.exception("alert rule %s/%s: reading its series failed", workspace, spec.name)
            return None
        return {k: v for k, v in data.items()
                if fnmatch.fnmatchcase(k[0], spec.object) and fnmatch.fnmatchcase(k[1], spec.instance) and v}

    def _apply_rule(self, s, workspace: str, spec: AlertRuleSpec, data, now: datetime) -> None:
        opened = {(a.object, a.instance): a for a in store.open_alerts(s, workspace=workspace, rule_name=spec.name)}
        th = spec.threshold
        for subject in sorted(set(data) | set(opened)):
            points = data.get(subject, [])
            value = points[-1][1] if points else None
            breach = value is not None and breached(value, above=th.above, below=th.below)
            row = opened.get(subject)
            prev = AlertState(row.state, row.started_at, row.fired_at) if row is not None else None
            new, told = advance(prev, breach, now, spec.for_)
            summary = spec.summary or _describe(spec, subject, value)
            evidence = {"value": value, "threshold": th.model_dump(exclude_none=True), "for_seconds": spec.for_,
                        "window": [[t, v] for t, v in points[-10:]]}
            if new is None:
                if row is not None:  # pending, and the breach ended before `for`: never fired
                    store.resolve(s, row, now, why="no longer breached")
                continue
            if row is None:
                store.open_one(s, workspace=workspace, rule_name=spec.name, target=spec.target, obj=subject[0],
                               instance=subject[1], severity=spec.severity, summary=summary, evidence=evidence,
                               now=now, firing=new.state == FIRING)
            elif told == FIRING:
                store.fire(s, row, now, summary=summary, evidence=evidence)
            elif told is not None:
                why = "no data" if value is None else f"value {value:.4g} within the threshold"
                store.resolve(s, row, now, why=why)
            elif new.state == FIRING:  # still firing: keep the newest evidence
                row.evidence, row.updated_at = evidence, now

    def _resolve_job_health(self, s, now: datetime) -> None:
        rules = {r for r, _ in JOB_HEALTH_RULES.values()}
        for a in store.open_alerts(s, target="job"):
            if a.rule not in rules:
                continue
            job = s.query(Job).filter(Job.workspace == a.workspace, Job.name == a.object).first()
            if job is None:
                store.resolve(s, a, now, why="the job was deleted")
            elif JobState(job.state).terminal:
                store.resolve(s, a, now, why=f"the job ended {job.state}")
            elif job.attempts > int((a.evidence or {}).get("attempt", 0)):
                store.resolve(s, a, now, why=f"attempt {job.attempts} replaced the attempt it was about")

    def _resolve_repairs(self, s, now: datetime) -> None:
        for a in store.open_alerts(s, rule_name="NodeGpuFault", target="node"):
            node = s.get(Node, a.object)
            if node is None or not node.cordoned:
                store.resolve(s, a, now, why="the node was uncordoned" if node is not None else "the node is gone")
        rules = {r for r, _ in REPAIR_RULES.values()}
        for a in store.open_alerts(s, target="deployment"):
            if a.rule in rules and (now - (a.fired_at or a.started_at)).total_seconds() >= REPAIR_ALERT_TTL:
                store.resolve(s, a, now, why=f"repaired ({REPAIR_ALERT_TTL:.0f}s ago)")

    # -- notifications ---------------------------------------------------------------------------
    def notify(self) -> float:
        now = self.clock()
        with self.db.tx() as s:
            due = [(a.id, a.state, dict(a.delivered or {}), a.notify_attempts, _payload(a)) for a in
                   store.due_notifications(s, now)]
        for alert_id, state, delivered, attempts, alert in due:
            failures = []
            for url in self.webhooks:
                if delivered.get(url) == state:
                    continue
                try:
                    r = self._http.post(url, json=webhook_body(alert, status=state, external_url=self.external_url))
                    if r.status_code >= 300:
                        raise httpx.HTTPStatusError(f"{url} answered {r.status_code}", request=r.request, response=r)
                    delivered[url] = state
                except httpx.HTTPError as exc:
                    failures.append(f"{url}: {exc}")
            with self.db.tx() as s:
                row = s.get(Alert, alert_id)
                if row is None or row.state != state:
                    continue  # moved on meanwhile: its new state is due on its own
                row.delivered = delivered
                if not failures:
                    row.notify_next_at, row.notify_error = None, ""
                    continue
                row.notify_attempts = attempts + 1
                row.notify_error = "; ".join(failures)
                if row.notify_attempts >= DELIVERY_ATTEMPTS:
                    row.notify_next_at = None
                    events.record(s, now=now, kind="Alert", name=row.rule, object_id=row.fingerprint, type="Warning",
                                  reason="NotificationFailed", workspace=row.workspace,
                                  message=f"gave up telling {len(failures)} webhook(s) that {row.rule} is {state} "
                                          f"after {row.notify_attempts} attempts: {row.notify_error}")
                else:
                    row.notify_next_at = now + timedelta(seconds=retry_delay(row.notify_attempts))
        with self.db.tx() as s:
            nxt = store.next_notification(s)
        if nxt is None:
            return self.period
        return max(0.05, min(self.period, (nxt - self.clock()).total_seconds()))


def _payload(a: Alert) -> dict[str, Any]:
    return {"rule": a.rule, "workspace": a.workspace, "target": a.target, "object": a.object,
            "instance": a.instance, "severity": a.severity, "summary": a.summary,
            "description": _evidence_text(a.evidence or {}), "started_at": a.started_at,
            "resolved_at": a.resolved_at, "fingerprint": a.fingerprint}


def _evidence_text(e: dict[str, Any]) -> str:
    parts = []
    if e.get("value") is not None:
        parts.append(f"value {e['value']:.4g}")
    if e.get("threshold"):
        parts.append("threshold " + ", ".join(f"{k} {v:g}" for k, v in e["threshold"].items()))
    if e.get("message"):
        parts.append(e["message"])
    if e.get("resolved"):
        parts.append(f"resolved: {e['resolved']}")
    return "; ".join(parts)


def _describe(spec: AlertRuleSpec, subject: tuple[str, str], value: float | None) -> str:
    what = f"{spec.target} {subject[0]}" + (f" ({subject[1]})" if subject[1] else "")
    th = spec.threshold
    side = f"above {th.above:g}" if th.above is not None else f"below {th.below:g}"
    shown = "no data" if value is None else f"{value:.4g}"
    return f"{spec.metric} of {what} is {shown}, {side}" + (f" for {spec.for_:g}s" if spec.for_ else "")
