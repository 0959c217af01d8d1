"""The local node: registers this machine's capacity so placement and submit checks can read it."""

from __future__ import annotations

from datetime import datetime

from cumulo.runtimes.base import Runtime
from cumulo.store import nodes as nodes_store
from cumulo.store.db import Database
from cumulo.store.models import Cluster

LOCAL_NODE = "local"


def register_local_node(db: Database, runtime: Runtime, now: datetime, price: float = 0.0) -> None:
    """The machine the control plane runs on, with what it has and what an hour of it costs
    (`cumulo up --local-price`: work here is charged its share of that)."""
    r = runtime.resources()
    with db.tx() as s:
        nodes_store.upsert(
            s, name=LOCAL_NODE, provider="local", state="Ready", cpu=r.cpu, memory=r.memory,
            gpus=list(r.gpus), gpu_names=list(r.gpu_names), now=now, price=price,
        )
        if s.get(Cluster, LOCAL_NODE) is None:  # `local` always exists: this machine
            s.add(Cluster(name=LOCAL_NODE, kind="local", artifacts="", created_at=now, state="Ready"))
