"""The cost reconciler: every 30 s, each workspace's spend this calendar month (UTC), written to its
row (admission reads it against the budget), and an event when it reaches 80 % and 100 % of the
budget (once per level per month)."""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime

from cumulo.control.usage import usages
from cumulo.policy.quota import Quota, budget_level, cost_of
from cumulo.store import events
from cumulo.store import workspaces as workspaces_store
from cumulo.store.db import Database

PERIOD = float(os.environ.get("CUMULO_COST_PERIOD", "30"))  # seconds between two accountings


def month_start(now: datetime) -> datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


class CostReconciler:
    name = "costs"
    resync = PERIOD

    def __init__(self, db: Database, *, local_node: str, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.db = db
        self.local_node = local_node
        self.clock = clock

    def keys(self) -> list[str]:
        return ["all"]

    def reconcile(self, _key: str) -> float | None:
        now = self.clock()
        since = month_start(now)
        month = f"{now:%Y-%m}"
        with self.db.tx() as s:
            spent: dict[str, float] = defaultdict(float)
            for u in usages(s, local_node=self.local_node, since=since):
                spent[u.workspace] += cost_of(u, since, now)
            for w in workspaces_store.every(s):
                if w.spent_month != month:
                    w.spent_month, w.alerted = month, 0
                w.spent = round(spent.get(w.name, 0.0), 6)
                quota = Quota.from_dict(w.quota)
                budget = quota.budget_per_month if quota else None
                level = budget_level(w.spent, budget)
                if level > w.alerted:
                    events.record(s, now=now, kind="Workspace", name=w.name, object_id=w.name, type="Warning",
                                  reason="BudgetExceeded" if level >= 100 else "BudgetWarning",
                                  message=f"${w.spent:,.2f} of this month's ${budget:,.2f} budget spent ({level} % "
                                          "reached)" + ("; new work and machines wait or are refused" if level >= 100 else ""),
                                  workspace=w.name)
                    w.alerted = level
        return PERIOD
