"""What has held resources, and at what price, for cost accounting (policy/quota.py prices it)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from cumulo.policy.capacity import Allocation
from cumulo.policy.quota import Usage, share
from cumulo.store import nodes as nodes_store
from cumulo.store import usage as store


def usages(session: Session, *, local_node: str, since: datetime, workspace: str | None = None) -> list[Usage]:
    """Everything that ran at some time after `since` (all workspaces, or one): local work at its
    share of the local machine's price, cloud nodes at theirs."""
    local = nodes_store.get(session, local_node)
    node_cpu, node_gpus, price = (local.cpu, len(local.gpus), local.price) if local else (1.0, 0, 0.0)
    out: list[Usage] = []
    if price > 0:
        for kind, rows in (("job", store.attempts(session, since, workspace)),
                           ("deployment", store.replicas(session, since, workspace))):
            for w, name, start, end, alloc in rows:
                if alloc.get("cluster", "local") != "local":
                    continue  # an engine's cluster: its machines are the user's, priced nowhere here
                out.append(Usage(w, kind, name, start, end, share(Allocation.from_dict(alloc), node_cpu, node_gpus) * price))
    for w, name, ready, finished, node_price in store.cloud_nodes(session, since, workspace):
        out.append(Usage(w, "node", name, ready, finished, node_price))
    return out
