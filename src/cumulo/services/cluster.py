"""Read-only views of events and nodes."""

from __future__ import annotations

from cumulo.core.errors import InvalidSpec
from cumulo.core.views import EventView, NodeView
from cumulo.policy.capacity import Allocation
from cumulo.store import allocations as allocations_store
from cumulo.store import events as events_store
from cumulo.store import nodes as nodes_store
from cumulo.store.db import Database


class ClusterService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def events(self, *, kind: str | None = None, name: str | None = None, after: int = 0, limit: int = 100,
               workspace: str = "default") -> list[EventView]:
        if not 1 <= limit <= 10000:
            raise InvalidSpec("limit must be between 1 and 10000")
        with self.db.tx() as s:
            rows = events_store.query(s, workspace=workspace, kind=kind, name=name, after_id=after, limit=limit)
            return [
                EventView(id=e.id, time=e.time, kind=e.kind, name=e.name, type=e.type, reason=e.reason, message=e.message,
                          actor=e.actor)
                for e in rows
            ]

    def nodes(self) -> list[NodeView]:
        with self.db.tx() as s:
            held = allocations_store.allocations_of(s, allocations_store.holders(s))
            used = [Allocation.from_dict(a) for a in held.values()]
            return [
                NodeView(
                    name=n.name, provider=n.provider, state=n.state, cpu=n.cpu, memory_bytes=n.memory,
                    gpus=n.gpus, gpu_names=n.gpu_names,
                    allocated_cpu=round(sum(a.cpu for a in used), 3),
                    allocated_memory_bytes=sum(a.memory for a in used),
                    allocated_gpus=sorted(g for a in used for g in a.gpus),
                )
                for n in nodes_store.listing(s)
            ]
