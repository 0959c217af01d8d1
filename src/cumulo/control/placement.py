"""What this node has and what is held on it, shared by the job and deployment reconcilers.

Each reconciler decides on a snapshot; before it records new allocations it takes `lock`,
re-reads what is held and re-checks the fit, so two reconcilers never over-commit the node.

Which attempts and replicas hold resources is read from the store every time (the store is the
truth); what each one holds never changes once its row is written, so it is decoded once and
remembered. With hundreds of jobs running, decoding every allocation on every pass had been the
control plane's largest cost.
"""

from __future__ import annotations

import threading

from datetime import datetime

from sqlalchemy.orm import Session

from cumulo.policy.capacity import Allocation, Capacity, still_fits
from cumulo.policy.clusters import ClusterView, still_fits_engine
from cumulo.policy.quota import Quota, still_within
from cumulo.store import allocations as allocations_store
from cumulo.store import clusters as clusters_store
from cumulo.store import nodes as nodes_store
from cumulo.store import workspaces as workspaces_store


class Placement:
    def __init__(self, node: str) -> None:
        self.node = node
        self.lock = threading.Lock()
        self._known: dict[allocations_store.Holder, Allocation] = {}

    def capacity(self, s: Session) -> Capacity | None:
        node = nodes_store.get(s, self.node)
        return Capacity(node.cpu, node.memory, tuple(node.gpus)) if node else None

    def clusters(self, s: Session) -> tuple[ClusterView, ...]:
        """Every cluster with what it has (the local node's capacity; engines' nodes)."""
        return clusters_store.views(s, self.capacity(s))

    def used(self, s: Session) -> tuple[Allocation, ...]:
        known = self._known
        held = allocations_store.holders(s)
        missing = [k for k in held if k not in known]
        if missing:
            for k, a in allocations_store.allocations_of(s, missing).items():
                known[k] = Allocation.from_dict(a)
        # forget what no longer holds anything (a new dict: the other reconciler may be reading)
        fresh = {k: known[k] for k in held if k in known}
        self._known = fresh
        return tuple(fresh.values())

    def used_by(self, s: Session, workspace: str) -> tuple[Allocation, ...]:
        """What the running work of one workspace holds (for its quota). Call after `used` in the
        same transaction: it filters what that read, without reading it again."""
        owners = workspaces_store.live_owners(s, workspace)
        return tuple(a for (_kind, owner, _n), a in self._known.items() if owner in owners)

    def quota(self, s: Session, workspace: str, now: datetime) -> tuple[Quota | None, tuple[Allocation, ...], float]:
        """The workspace's quota (None: unlimited), what it holds, and what it spent this month
        (after `used`, as `used_by`)."""
        row, quota = _quota_of(s, workspace)
        if quota is None:
            return None, (), 0.0
        spent = row.spent if row.spent_month == f"{now:%Y-%m}" else 0.0
        return quota, self.used_by(s, workspace), spent

    def confirm(self, s: Session, new: list[Allocation], workspace: str | None = None) -> bool:
        """Call with `lock` held, in the transaction that records `new` (for `workspace`, whose
        quota is re-checked too)."""
        used = list(self.used(s))
        local = [a for a in new if a.cluster == "local"]
        if local:
            capacity = self.capacity(s)
            if capacity is None or not still_fits(local, capacity, used):
                return False
        remote = [a for a in new if a.cluster != "local"]
        if remote:
            views = {c.name: c for c in self.clusters(s)}
            for name in {a.cluster for a in remote}:
                view = views.get(name)
                if view is None or not still_fits_engine([a for a in remote if a.cluster == name], view, used):
                    return False
        if workspace is not None:
            _row, quota = _quota_of(s, workspace)
            if quota is not None and not still_within(quota, [*self.used_by(s, workspace), *new]):
                return False
        return True


def _quota_of(s: Session, workspace: str):
    row = workspaces_store.get(s, workspace)
    return row, (Quota.from_dict(row.quota) if row is not None else None)
