"""What this node has and what is held on it, shared by the job and deployment reconcilers.

Each reconciler decides on a snapshot; before it records new allocations it takes `lock`,
re-reads what is held and re-checks the fit, so two reconcilers never over-commit the node.
"""

from __future__ import annotations

import threading

from sqlalchemy.orm import Session

from cumulo.policy.capacity import Allocation, Capacity, still_fits
from cumulo.store import deployments as deployments_store
from cumulo.store import jobs as jobs_store
from cumulo.store import nodes as nodes_store


class Placement:
    def __init__(self, node: str) -> None:
        self.node = node
        self.lock = threading.Lock()

    def capacity(self, s: Session) -> Capacity | None:
        node = nodes_store.get(s, self.node)
        return Capacity(node.cpu, node.memory, tuple(node.gpus)) if node else None

    def used(self, s: Session) -> tuple[Allocation, ...]:
        held = [*jobs_store.allocations_in_use(s), *deployments_store.allocations_in_use(s)]
        return tuple(Allocation.from_dict(a) for a in held)

    def confirm(self, s: Session, new: list[Allocation]) -> bool:
        """Call with `lock` held, in the transaction that records `new`."""
        capacity = self.capacity(s)
        return capacity is not None and still_fits(new, capacity, list(self.used(s)))
