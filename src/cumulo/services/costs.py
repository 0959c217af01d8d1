"""`cumulo cost`: what each workspace, job, deployment or node cost since a date."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from cumulo.control.costs import month_start
from cumulo.control.usage import usages
from cumulo.core.errors import InvalidSpec
from cumulo.core.tokens import Scope
from cumulo.core.views import CostLine, CostReport
from cumulo.policy.quota import cost_of
from cumulo.store.db import Database

BY = ("workspace", "job", "deployment", "node")


class CostService:
    def __init__(self, db: Database, *, local_node: str, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.db = db
        self.local_node = local_node
        self.now = now

    def report(self, *, by: str = "workspace", since: datetime | None = None, scope: Scope = Scope(),
               all_workspaces: bool = False) -> CostReport:
        if by not in BY:
            raise InvalidSpec(f"by: {by!r} is not one of {', '.join(BY)}", errors=[{"field": "by", "message": "unknown"}])
        now = self.now()
        since = since or month_start(now)
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        if since > now:
            raise InvalidSpec(f"since: {since:%Y-%m-%d %H:%M} is in the future", errors=[{"field": "since", "message": "future"}])
        with self.db.tx() as s:
            rows = usages(s, local_node=self.local_node, since=since,
                          workspace=None if all_workspaces else scope.workspace)
        lines: dict[tuple[str, str], CostLine] = {}
        for u in rows:
            if by != "workspace" and u.kind != by:
                continue
            key = u.workspace if by == "workspace" else u.name
            line = lines.get((u.workspace, key)) or CostLine(key=key, workspace=u.workspace, kind=by, cost=0.0,
                                                              price_per_hour=0.0)
            running = u.end is None
            lines[(u.workspace, key)] = line.model_copy(update={
                "cost": line.cost + cost_of(u, since, now),
                "price_per_hour": line.price_per_hour + (u.price_per_hour if running else 0.0),
            })
        out = sorted(lines.values(), key=lambda c: -c.cost)
        out = [c.model_copy(update={"cost": round(c.cost, 6), "price_per_hour": round(c.price_per_hour, 6)}) for c in out]
        return CostReport(since=since, until=now, by=by, total=round(sum(c.cost for c in out), 6), lines=out)
