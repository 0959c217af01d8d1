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

from sqlalchemy.orm import Session

from cumulo.policy.capacity import Allocation, Capacity, still_fits
from cumulo.store import allocations as allocations_store
from cumulo.store import nodes as nodes_store


class Placement:
    def __init__(self, node: str) -> None:
        self.node = node
        self.lock = threading.Lock()
        self._known: dict[allocations_store.Holder, Allocation] = {}

    def capacity(self, s: Session) -> Capacity | None:
        node = nodes_store.get(s, self.node)
        return Capacity(node.cpu, node.memory, tuple(node.gpus)) if node else None

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

    def confirm(self, s: Session, new: list[Allocation]) -> bool:
        """Call with `lock` held, in the transaction that records `new`."""
        capacity = self.capacity(s)
        return capacity is not None and still_fits(new, capacity, list(self.used(s)))
