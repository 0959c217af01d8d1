"""cumulo.ResourceManager: machines from the clouds (or this one), placed at the lowest price that fits.

    rm = cumulo.ResourceManager()
    nodes = rm.create_resources(["g4dn.xlarge"] * 4)     # returns once all 4 are ready
    rm.release(nodes)                                     # or a node, ids, a pool: what you got back
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, Union

from cumulo.core.errors import CumuloError
from cumulo.core.resources import ResourcesRequest
from cumulo.core.views import NodeDetail, PoolView
from cumulo.sdk.client import Client

#: what names nodes: an id, a node as the SDK returned it, a pool (its nodes), or any iterable of these
NodeRef = Union[str, NodeDetail, PoolView, Iterable["NodeRef"]]  # noqa: UP007 - a recursive alias
PoolRef = Union[str, PoolView, NodeDetail]  # noqa: UP007


def node_ids(*refs: NodeRef) -> list[str]:
    """The node ids in `refs`, flattened, in order, each once: `rm.release(rm.create_resources(...))`
    hands back exactly what it got."""
    out: list[str] = []

    def add(ref: Any) -> None:
        if isinstance(ref, str):
            out.append(ref)
        elif isinstance(ref, NodeDetail):
            out.append(ref.id)
        elif isinstance(ref, PoolView):
            out.extend(n.id for n in ref.nodes)
        elif isinstance(ref, Iterable) and not isinstance(ref, bytes | dict):
            for r in ref:
                add(r)
        else:
            raise TypeError(f"a node is named by its id (str), a NodeDetail, a PoolView, or a list of these; "
                            f"got {type(ref).__name__}")

    for ref in refs:
        add(ref)
    return list(dict.fromkeys(out))


def pool_id(ref: PoolRef) -> str:
    """A pool's id from the id itself, the PoolView, or one of its nodes."""
    if isinstance(ref, str):
        return ref
    if isinstance(ref, PoolView):
        return ref.id
    if isinstance(ref, NodeDetail) and ref.pool:
        return ref.pool
    raise TypeError(f"a pool is named by its id (str), a PoolView or one of its NodeDetails; got {type(ref).__name__}")


class ResourceManager:
    def __init__(self, client: Client | None = None) -> None:
        self.client = client or Client()

    def create_resources(
        self,
        types: list[str] | str | ResourcesRequest | dict[str, Any],
        *,
        count: int = 1,
        provider: str | list[str] | None = None,
        regions: list[str] | None = None,
        spot: bool = False,
        max_price: float | None = None,
        idle_ttl: float | None = None,
        cluster: str | None = None,
        wait: bool = True,
        timeout: float = 600.0,
    ) -> list[NodeDetail]:
        """Create machines: instance type names (a list, or one name with `count`) or a full request.

        With `wait`, returns once every machine is Ready; if any cannot be provisioned, the whole
        batch is rolled back (what was started is terminated) and the reason is raised.
        """
        if isinstance(types, ResourcesRequest):
            body: dict[str, Any] = types.model_dump(mode="json", exclude_defaults=True)
        elif isinstance(types, dict):
            body = dict(types)
        else:
            names = [types] * count if isinstance(types, str) else list(types)
            if not names:
                raise CumuloError("create_resources needs at least one instance type")
            body = {"nodes": [{"instance_type": n} for n in names]}
            if provider:
                body["providers"] = [provider] if isinstance(provider, str) else list(provider)
            if regions:
                body["regions"] = regions
            if spot:
                body["spot"] = True
            if max_price is not None:
                body["max_price"] = max_price
            if idle_ttl is not None:
                body["idle_ttl"] = idle_ttl
            if cluster is not None:
                body["cluster"] = cluster
        pool = PoolView.model_validate(self.client._call("POST", "/resources", json=body))
        if not wait:
            return pool.nodes
        return self.wait_pool(pool.id, timeout=timeout).nodes

    def wait_pool(self, pool: PoolRef, *, timeout: float = 600.0, poll: float = 0.5) -> PoolView:
        """Wait until the pool (its id, the PoolView, or one of its nodes) is Ready."""
        pool_id_ = pool_id(pool)
        deadline = time.monotonic() + timeout
        while True:
            view = self.pool(pool_id_)
            if view.state == "Ready":
                return view
            if view.state == "Failed":
                raise CumuloError(f"resources {pool_id_} could not be provisioned and were rolled back: {view.reason}")
            if time.monotonic() > deadline:
                raise CumuloError(f"resources {pool_id_} are still {view.state} after {timeout:g}s: {view.reason}")
            time.sleep(poll)

    def pool(self, pool: PoolRef) -> PoolView:
        """A pool as it stands now (by its id, the PoolView, or one of its nodes)."""
        return PoolView.model_validate(self.client._call("GET", f"/pools/{pool_id(pool)}"))

    def list(self, *, all: bool = False) -> list[NodeDetail]:  # noqa: A002 - mirrors the CLI's --all
        """Nodes not yet ended (with `all`, ended ones too)."""
        return [NodeDetail.model_validate(n) for n in self.client._call("GET", "/resources", params={"all": all})]

    def release(self, *nodes: NodeRef) -> list[NodeDetail]:
        """Terminate these nodes (idempotent); returns them as they stand. Nodes are named by id or
        by what the SDK returned, one or a list: `rm.release(rm.create_resources(...))`,
        `rm.release(node)`, `rm.release("pool-0", "pool-1")`, `rm.release(pool)`."""
        rows = self.client._call("POST", "/resources/release", json={"ids": node_ids(*nodes)})
        return [NodeDetail.model_validate(n) for n in rows]
