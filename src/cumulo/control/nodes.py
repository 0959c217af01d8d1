"""The local node: registers this machine's capacity so placement and submit checks can read it."""

from __future__ import annotations

from datetime import datetime

from cumulo.runtimes.base import Runtime
from cumulo.store import nodes as nodes_store
from cumulo.store.db import Database

LOCAL_NODE = "local"


def register_local_node(db: Database, runtime: Runtime, now: datetime) -> None:
    r = runtime.resources()
    with db.tx() as s:
        nodes_store.upsert(
            s, name=LOCAL_NODE, provider="local", state="Ready", cpu=r.cpu, memory=r.memory,
            gpus=list(r.gpus), gpu_names=list(r.gpu_names), now=now,
        )
