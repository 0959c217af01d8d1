"""Resources: create machines (placed together at the lowest total price that fits within the
provider quotas), list them, release them."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from cumulo.control import provider_quotas
from cumulo.control.resources import placement_request
from cumulo.core.errors import Conflict, CumuloError, InvalidSpec, NotFound, OverQuota, Unschedulable
from cumulo.core.offerings import Offering
from cumulo.core.resources import ResourcesRequest
from cumulo.core.specs import describe_errors, field_errors
from cumulo.core.states import NodeState
from cumulo.core.tokens import Scope
from cumulo.core.views import NodeDetail, PoolView
from cumulo.policy.placement_batch import QuotasInfeasible, place_batch
from cumulo.policy.quota import ProviderQuotas, Quota, describe_quotas, over_node_quota
from cumulo.store import clusters as clusters_store
from cumulo.store import events
from cumulo.store import resources as store
from cumulo.store.db import Database
from cumulo.store.models import Node, Pool, Workspace


SYSTEM = Scope()  # callers inside the control plane: the default workspace


def utcnow() -> datetime:
    return datetime.now(UTC)


class ResourceService:
    def __init__(
        self, db: Database, *, offerings: Callable[[], list[Offering]], providers: list[str],
        find_instance_type: Callable[[str, str], Any], wake: Callable[[str], None],
        clock: Callable[[], datetime] = utcnow, quotas: Callable[[], ProviderQuotas] = provider_quotas.limits,
    ) -> None:
        self.db = db
        self.offerings = offerings
        self.quotas = quotas  # the providers' own limits per region (control/provider_quotas.py)
        self.providers = providers  # providers with a driver
        self.find_instance_type = find_instance_type
        self.wake = wake
        self.clock = clock

    def create(self, body: Any, scope: Scope = SYSTEM) -> PoolView:
        try:
            req = body if isinstance(body, ResourcesRequest) else ResourcesRequest.model_validate(body)
        except ValidationError as exc:
            errors = field_errors(exc.errors())
            raise InvalidSpec(describe_errors(errors), errors=errors) from None
        for p in req.providers:
            if p not in self.providers:
                raise InvalidSpec(
                    f"providers: {p!r} has no driver here (drivers: {', '.join(self.providers)}); "
                    "GCP and Azure are in the catalog (`cumulo offers`) but cannot be provisioned yet",
                    errors=[{"field": "providers", "message": f"no driver for {p!r}"}],
                )
        # this machine and the made-up local-vm machines are used only when named
        allowed = list(req.providers or [p for p in self.providers if p not in ("local", "local-vm")])
        offerings = self.offerings()
        for i, n in enumerate(req.nodes):
            if n.instance_type and not any(o.instance_type == n.instance_type and o.provider in allowed for o in offerings):
                self.find_instance_type(allowed[0], n.instance_type)  # raises NotFound with "did you mean"
                raise NotFound(f"nodes.{i}.instance_type: {n.instance_type!r} is not offered by {', '.join(allowed)}")
        requests = [placement_request(n, req, allowed) for n in req.nodes]
        limits = self.quotas()
        now = self.clock()
        pool_id = uuid.uuid4().hex[:12]
        body_json = req.model_dump(mode="json")
        body_json["providers"] = allowed
        # One decision at a time spends the providers' quotas: read what the live nodes hold, place
        # every node of the request together (exact: policy/placement_batch), record the nodes.
        with provider_quotas.lock, self.db.tx() as s:
            _check_cluster(s, req.cluster)
            left = provider_quotas.left(s, limits)
            plans = list(self._place(requests, offerings, limits, left, allowed, req.regions))
            self._check_quota(s, scope, now, plans)
            s.add(Pool(id=pool_id, workspace=scope.workspace, created_at=now, request=body_json, count=len(req.nodes), idle_ttl=req.idle_ttl))
            s.flush()
            for i, c in enumerate(plans):
                o = c.offering
                s.add(Node(
                    name=f"{pool_id}-{i}", provider=o.provider, state=NodeState.PROVISIONING.value, cpu=o.vcpus,
                    memory=int(o.memory_gib * 2**30), gpus=list(range(o.accelerator_count)),
                    gpu_names=[o.accelerator] * o.accelerator_count if o.accelerator else [], updated_at=now,
                    pool_id=pool_id, region=o.region, zone=o.zone, instance_type=o.instance_type, spot=c.spot,
                    price=c.hourly, reason=f"placed on {o.provider} {o.zone or o.region} at ${c.hourly:.3f}/h",
                    created_at=now, blocked=[], cluster=req.cluster or "local",
                ))
            events.record(s, now=now, kind="Pool", name=pool_id, object_id=pool_id, type="Normal", reason="Created",
                          message=f"{len(plans)} nodes requested", workspace=scope.workspace, actor=scope.actor)
        for i in range(len(plans)):
            self.wake(f"{pool_id}-{i}")
        return self.pool(pool_id, scope)

    @staticmethod
    def _place(requests, offerings, limits, left, allowed: list[str], regions: list[str]):
        """The cheapest placement of all `requests` together within what the quotas leave.
        Unschedulable (422) when no offering fits a node, or when the quotas themselves are too small
        for the request; Conflict (409) when the live nodes hold the room it needs; both name the
        limits."""
        try:
            return place_batch(requests, offerings, left).assignments
        except QuotasInfeasible:
            pass
        except CumuloError as exc:  # one node fits nowhere: name it as the request does ("nodes.3: ...")
            exc.message = re.sub(r"^request (\d+): ", r"nodes.\1: ", exc.message)
            exc.args = (exc.message,)
            raise
        where = [loc for loc in limits if loc[0] in allowed and (not regions or loc[1] in regions)]
        held = any(left[loc][k] < v - 1e-9 for loc in where for k, v in limits[loc].items())
        try:
            place_batch(requests, offerings, {loc: limits[loc] for loc in limits})
            fits_when_empty = True
        except QuotasInfeasible:
            fits_when_empty = False
        what = f"{len(requests)} machine{'s' if len(requests) != 1 else ''}"
        numbers = describe_quotas(limits, left, where)
        if fits_when_empty and held:
            raise Conflict(f"the provider quotas have no room for these {what} now ({numbers}); release nodes "
                           "first, allow more regions or providers, or ask the provider for a higher quota")
        raise Unschedulable(f"these {what} cannot be placed within the provider quotas even with no node running "
                            f"({numbers}); allow more regions or providers, ask the provider for a higher quota "
                            f"(then state it in $CUMULO_HOME/{provider_quotas.FILE}), or ask for fewer machines")

    @staticmethod
    def _check_quota(s, scope: Scope, now: datetime, plans: list) -> None:
        """Refuse machines past the workspace's node count, $/h or monthly budget, with the numbers."""
        row = s.get(Workspace, scope.workspace)
        quota = Quota.from_dict(row.quota) if row is not None else None
        if quota is None:
            return
        live = store.cloud_nodes(s, workspace=scope.workspace)
        why = over_node_quota(
            quota, nodes=len(live), price_per_hour=sum(n.price for n in live), new_nodes=len(plans),
            new_price_per_hour=sum(c.hourly for c in plans),
            spent=row.spent if row.spent_month == f"{now:%Y-%m}" else 0.0,
        )
        if why:
            raise OverQuota(f"workspace {scope.workspace!r} cannot add these machines: {why}; an admin can raise its "
                            f"quota (`cumulo workspace quota {scope.workspace} ...`), or release nodes first")

    def pool(self, pool_id: str, scope: Scope = SYSTEM) -> PoolView:
        with self.db.tx() as s:
            store.pool(s, pool_id, scope.workspace)
            nodes = [self._detail(n) for n in store.pool_nodes(s, pool_id)]
        states = {n.state for n in nodes}
        failed = [n for n in nodes if n.state == NodeState.FAILED.value]
        if failed:
            state, reason = "Failed", f"node {failed[0].id}: {failed[0].reason}"
        elif states == {NodeState.READY.value}:
            state, reason = "Ready", f"{len(nodes)} nodes ready"
        elif all(NodeState(n.state).terminal for n in nodes):
            state, reason = "Released", "every node has ended"
        else:
            ready = sum(n.state == NodeState.READY.value for n in nodes)
            state, reason = "Provisioning", f"{ready}/{len(nodes)} ready"
        return PoolView(id=pool_id, state=state, reason=reason, nodes=nodes,
                        price_per_hour=round(sum(n.price_per_hour for n in nodes if n.state == "Ready"), 4),
                        cost=round(sum(n.cost for n in nodes), 6))

    def list(self, *, include_ended: bool = False, scope: Scope = SYSTEM) -> list[NodeDetail]:
        with self.db.tx() as s:
            return [self._detail(n) for n in store.cloud_nodes(s, workspace=scope.workspace, include_ended=include_ended)]

    def release(self, ids: list[str], scope: Scope = SYSTEM) -> list[NodeDetail]:
        if not ids:
            raise InvalidSpec("give at least one node id", errors=[{"field": "ids", "message": "empty"}])
        with self.db.tx() as s:
            nodes = [store.node(s, i, scope.workspace) for i in ids]  # 404 before anything changes
            for n in nodes:
                if not n.release_requested and not NodeState(n.state).terminal:
                    n.release_requested = True
                    events.record(s, now=self.clock(), kind="Node", name=n.name, object_id=n.name, type="Normal",
                                  reason="ReleaseRequested", message="release requested", workspace=scope.workspace,
                                  actor=scope.actor)
            out = [self._detail(n) for n in nodes]
        for i in ids:
            self.wake(i)
        return out

    def _detail(self, n: Node) -> NodeDetail:
        end = n.finished_at or self.clock()
        hours = (end - n.ready_at).total_seconds() / 3600 if n.ready_at else 0.0
        return NodeDetail(
            id=n.name, pool=n.pool_id, provider=n.provider, region=n.region, zone=n.zone,
            instance_type=n.instance_type, spot=n.spot, state=n.state, reason=n.reason, machine_id=n.machine_id,
            price_per_hour=n.price, cost=round(max(hours, 0.0) * n.price, 6), created_at=n.created_at,
            ready_at=n.ready_at, finished_at=n.finished_at,
        )


def _check_cluster(s, name: str | None) -> None:
    """Machines join only a Ray cluster that exists (their bootstrap runs `ray start`)."""
    if name is None:
        return
    row = clusters_store.get(s, name)
    if row is None or row.kind != "ray":
        rays = ", ".join(c.name for c in clusters_store.listing(s) if c.kind == "ray") or "none yet"
        why = "does not exist" if row is None else f"is a {row.kind} cluster; launched machines join Ray clusters only"
        raise InvalidSpec(f"cluster: {name!r} {why} (Ray clusters: {rays}; `cumulo cluster add NAME --ray URL`)",
                          errors=[{"field": "cluster", "message": why}])


__all__ = ["ResourceService"]
