"""The node reconciler: provision cloud machines with failover, follow them, release them, sweep orphans.

One pass over one node: load it (lease), ask its provider what the machine looks like, decide with
the pure `policy.nodes`, act (launch / terminate, no transaction open), apply. A launch goes first
where the node's row says (the batch placement's choice when the pool was created); capacity or
quota errors block the zone/region/provider the error implies and the next best offering within
the provider quotas is tried. Launch tokens are derived from the node id and the number of blocked
locations, and before each failover launch the blocked list and the new target are written to the
row (under the lease): a pass repeated after a crash at any point retries the same location with
the same token and gets the same machine back, never a second one.

A node of an engine's cluster (`Node.cluster`, a Ray cluster) gets the bootstrap script
(providers/bootstrap.py) as its user-data: the machine joins the cluster with the node's id as a
label, and the cluster sync (control/clusters.py) records the engine's view on the node's row
(`engine_state`). The node is Joining until then, Ready after; a machine that has not joined
within `join_timeout` is terminated and another launched (`replacements` goes into the token).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from cumulo.control import provider_quotas
from cumulo.core.errors import CapacityError, CumuloError, ProviderError, QuotaError, Unschedulable
from cumulo.core.faults import crash_at
from cumulo.core.offerings import Machine, MachineState, Offering
from cumulo.core.resources import NodeRequest, ResourcesRequest
from cumulo.core.states import NodeState
from cumulo.policy.nodes import NodeAct, NodeSnapshot, decide_node
from cumulo.policy.placement import PlacementRequest, block, is_blocked, parse_accelerator, rank
from cumulo.policy.quota import ProviderQuotas, describe_quotas, fits_quotas
from cumulo.providers.base import MANAGED_TAG, NODE_ID_TAG, POOL_TAG, Provider
from cumulo.providers.bootstrap import BootstrapSpec, render
from cumulo.store import events, leases
from cumulo.store import resources as store
from cumulo.store.db import Database
from cumulo.store.models import Cluster, Node, Pool

log = logging.getLogger(__name__)

LEASE_TTL = 120.0
INSTALL_TAG = "cumulo:install"
MAX_FAILOVERS = 8
SWEEP_EVERY = 10.0
#: seconds a machine launched for a cluster has to join it before it is replaced (CUMULO_JOIN_TIMEOUT)
JOIN_TIMEOUT = 300.0
#: Ray's default GCS port: a cluster added without a join address is joined at its dashboard host here
RAY_GCS_PORT = 6379


@dataclass(frozen=True)
class Join:
    """The engine's cluster a node's machine joins."""

    cluster: str
    kind: str
    address: str | None  # Ray: the GCS address


def default_join_address(dashboard: str | None) -> str | None:
    """http://HOST:8265 -> HOST:6379 (Ray's default GCS port on the head)."""
    host = urlsplit(dashboard or "").hostname
    return f"{host}:{RAY_GCS_PORT}" if host else None


def utcnow() -> datetime:
    return datetime.now(UTC)


def placement_request(node: NodeRequest, pool: ResourcesRequest, providers: list[str]) -> PlacementRequest:
    """The pure placement request for one node of a pool, limited to providers that have a driver."""
    accel, count = parse_accelerator(node.accelerators) if node.accelerators else (None, 0)
    return PlacementRequest(
        cpu=node.cpu or 0.0, memory_gib=node.memory_gib or 0.0, accelerator=accel, accelerator_count=count,
        instance_type=node.instance_type, spot=pool.spot, providers=tuple(pool.providers or providers),
        regions=tuple(pool.regions), max_price=pool.max_price,
    )


@dataclass(frozen=True)
class _Launched:
    offering: Offering
    spot: bool
    price: float
    machine: Machine | None
    blocked: frozenset
    error: str = ""
    #: one line per location that refused for capacity or quota before this outcome
    failovers: tuple[str, ...] = ()


class _LeaseLost(Exception):
    """Another worker took the node over mid-launch: this pass's decision is dropped."""


class NodeReconciler:
    name = "nodes"
    resync = 10.0

    def __init__(
        self,
        db: Database,
        providers: dict[str, Provider],
        *,
        offerings: Callable[[], list[Offering]],
        install_id: str,
        clock: Callable[[], datetime] = utcnow,
        join_timeout: float = JOIN_TIMEOUT,
        quotas: Callable[[], ProviderQuotas] = provider_quotas.limits,
    ) -> None:
        self.db = db
        self.join_timeout = join_timeout
        self.providers = providers
        self.offerings = offerings
        self.quotas = quotas
        self.install_id = install_id
        self.clock = clock
        self.wake: Callable[[str], None] = lambda key: None
        #: asks the cluster sync to read a cluster's nodes now (a machine began joining it)
        self.wake_cluster: Callable[[str], None] = lambda name: None
        #: a machine joined its cluster and is Ready: work waiting for room may fit now
        self.capacity_changed: Callable[[], None] = lambda: None
        self._last_sweep = 0.0

    def keys(self) -> list[str]:
        if time.monotonic() - self._last_sweep >= SWEEP_EVERY:
            self._last_sweep = time.monotonic()
            try:
                self.sweep_orphans()
            except Exception:
                log.exception("orphan sweep failed; will retry")
        with self.db.tx() as s:
            return store.live_ids(s)

    def tags(self, node: Node) -> dict[str, str]:
        return {NODE_ID_TAG: node.name, POOL_TAG: node.pool_id or "", MANAGED_TAG: "true", INSTALL_TAG: self.install_id}

    # -- one pass --------------------------------------------------------------------------------
    def reconcile(self, node_id: str) -> float | None:
        token = uuid.uuid4().hex
        now = self.clock()
        with self.db.tx() as s:
            if not leases.claim(s, Node, node_id, token, now, LEASE_TTL):
                return 1.0 if s.get(Node, node_id) is not None else None
            node = s.get(Node, node_id)
            assert node is not None
            if NodeState(node.state).terminal:
                leases.release(s, Node, node_id, token)
                return None
            pool = s.get(Pool, node.pool_id)
            siblings = store.pool_nodes(s, node.pool_id) if node.pool_id else []
            pool_failed = any(n.state == NodeState.FAILED.value for n in siblings if n.name != node_id)
            s.expunge(node)
            request = ResourcesRequest.model_validate(pool.request) if pool else None
            idle_ttl = pool.idle_ttl if pool else None
            workspace = pool.workspace if pool else "default"
            # a node pool's node is the only node of its request
            index = int(node.name.rsplit("-", 1)[1]) if "-" in node.name and node.node_pool is None else 0
            join = _join(s.get(Cluster, node.cluster)) if node.cluster and node.cluster != "local" else None
        machine = self._observe(node)
        d = decide_node(NodeSnapshot(
            now=now, state=NodeState(node.state), created_at=node.created_at or now, machine_id=node.machine_id,
            machine=machine, release_requested=node.release_requested, pool_failed=pool_failed,
            ready_at=node.ready_at, idle_ttl=idle_ttl, cluster=node.cluster if join else None,
            engine_state=node.engine_state, join_timeout=self.join_timeout,
        ))
        values: dict = {"state": d.state.value, "reason": d.reason, "updated_at": now}
        launched: _Launched | None = None
        replaced = ""
        unjoinable = _unjoinable(node, join) if d.act == NodeAct.LAUNCH else None
        if unjoinable:
            values.update(state=NodeState.FAILED.value, reason=unjoinable, finished_at=now)
        elif d.act == NodeAct.LAUNCH and request is not None:
            try:
                launched = self._launch(node, request, index, token, workspace, join)
            except _LeaseLost:
                return 0.0
            values.update(blocked=[list(b) for b in launched.blocked])
            if launched.machine is None:
                values.update(state=NodeState.FAILED.value, reason=launched.error, finished_at=now)
            else:
                o = launched.offering
                values.update(machine_id=launched.machine.id, provider=o.provider, region=o.region, zone=o.zone,
                              instance_type=o.instance_type, spot=launched.spot, price=launched.price,
                              cpu=o.vcpus, memory=int(o.memory_gib * 2**30),
                              reason=f"launched {launched.machine.id} in {o.zone or o.region}")
        elif d.act == NodeAct.TERMINATE and node.machine_id:
            try:
                self.providers[node.provider].terminate([node.machine_id], region=node.region or "")
            except ProviderError as exc:
                values["reason"] = f"terminating: {exc}"
        elif d.act == NodeAct.REPLACE and node.machine_id:
            try:
                self.providers[node.provider].terminate([node.machine_id], region=node.region or "")
                values.update(machine_id=None, engine_id=None, engine_state=None, address=None, labels={},
                              replacements=node.replacements + 1)
                replaced = d.reason
            except ProviderError as exc:  # keep the machine on the row until it is surely going
                values.update(state=node.state, reason=f"replacing {node.machine_id}: terminating it failed: {exc}")
        if d.state == NodeState.READY and node.ready_at is None:
            values["ready_at"] = now
        if NodeState(values["state"]).terminal:
            values["finished_at"] = now
        with self.db.tx() as s:
            if not leases.guarded_update(s, Node, node_id, token, **values):
                return 0.0
            if replaced:
                events.record(s, now=now, kind="Node", name=node_id, object_id=node_id, type="Warning",
                              reason="JoinTimeout", message=replaced, workspace=workspace)
            if values["state"] != node.state:
                events.record(s, now=now, kind="Node", name=node_id, object_id=node_id,
                              type="Warning" if values["state"] in ("Failed", "Preempted") else "Normal",
                              reason=values["state"], message=values["reason"], workspace=workspace)
        if values["state"] == NodeState.JOINING.value and node.state != NodeState.JOINING.value:
            self.wake_cluster(node.cluster)
        if values["state"] == NodeState.READY.value and node.state != NodeState.READY.value and join is not None:
            self.capacity_changed()
        if values["state"] == NodeState.FAILED.value:
            for sibling in self._siblings(node):
                self.wake(sibling)  # roll the rest of the pool back
        return None if NodeState(values["state"]).terminal else d.requeue_after

    def _siblings(self, node: Node) -> list[str]:
        with self.db.tx() as s:
            return [n.name for n in store.pool_nodes(s, node.pool_id) if n.name != node.name] if node.pool_id else []

    def _observe(self, node: Node) -> Machine | None:
        if not node.machine_id:
            return None
        provider = self.providers.get(node.provider)
        if provider is None:
            return None
        found = provider.describe(region=node.region, tags={NODE_ID_TAG: node.name})
        mine = [m for m in found if m.id == node.machine_id]
        return mine[0] if mine else None

    def _launch(self, node: Node, request: ResourcesRequest, index: int, lease: str, workspace: str,
                join: Join | None = None) -> _Launched:
        blocked = frozenset(tuple(b) for b in (node.blocked or []))
        preq = placement_request(request.nodes[index], request, sorted(self.providers))
        offerings = self.offerings()
        tried: list[str] = []
        target = self._planned(node, offerings, blocked)

        def failed(o: Offering, spot: bool, price: float, why: str) -> _Launched:
            if tried:
                why += f" (after failing over from: {'; '.join(tried)})"
            return _Launched(o, spot, price, None, blocked, why, tuple(tried))

        for _ in range(MAX_FAILOVERS):
            if target is None:  # the row's location is blocked (or unknown): choose and record the next
                try:
                    target = self._failover_target(node, preq, offerings, blocked, lease, workspace, None)
                except CumuloError as exc:
                    return failed(node_offering(node), node.spot, node.price, str(exc))
            o, spot, price = target
            provider = self.providers[o.provider]
            try:
                machines = provider.launch(o, 1, spot=spot, tags=self.tags(node),
                                           user_data=bootstrap(node, o, spot, join),
                                           client_token=f"{_token_base(node)}-{len(blocked)}")
            except (CapacityError, QuotaError) as exc:
                scope = exc.scope or "zone"
                where = {"zone": o.zone or o.region, "region": o.region, "provider": o.provider}[scope]
                log.info("node %s: %s; blocking %s %s and trying the next offering", node.name, exc, scope, where)
                message = f"{exc}; blocked {scope} {where}"
                tried.append(message)
                blocked = block(blocked, o, scope)
                try:
                    target = self._failover_target(node, preq, offerings, blocked, lease, workspace, message)
                except CumuloError as nothing:
                    return failed(o, spot, price, str(nothing))
                continue
            except CumuloError as exc:
                return failed(o, spot, price, str(exc))
            crash_at("after-launch")
            return _Launched(o, spot, price, machines[0], blocked, failovers=tuple(tried))
        return failed(node_offering(node), node.spot, node.price,
                      f"gave up after {MAX_FAILOVERS} locations without capacity")

    def _planned(self, node: Node, offerings: list[Offering], blocked: frozenset) -> tuple[Offering, bool, float] | None:
        """Where the row says the node goes (chosen at create, or before a failover launch), unless
        that location is blocked."""
        if not node.instance_type or node.provider not in self.providers:
            return None
        key = (node.provider, node.region, node.zone, node.instance_type)
        o = next((o for o in offerings if (o.provider, o.region, o.zone, o.instance_type) == key), None)
        o = o or node_offering(node)
        return None if is_blocked(blocked, o) else (o, bool(node.spot), node.price)

    def _failover_target(self, node: Node, preq: PlacementRequest, offerings: list[Offering], blocked: frozenset,
                         lease: str, workspace: str, refusal: str | None) -> tuple[Offering, bool, float]:
        """The cheapest unblocked offering within what the provider quotas leave, written to the
        row with the blocked list (and the refusal as a FailedOver event) BEFORE it is launched:
        the launch token counts the blocked locations, so a control plane killed after that
        launch retries this same location with this same token and gets the same machine back.
        Unschedulable when nothing is left (the blocked list is written all the same)."""
        with provider_quotas.lock:
            limits = self.quotas()
            with self.db.tx() as s:
                left = provider_quotas.left(s, limits, exclude=node.name)
            target, nothing = None, None
            try:
                ranked = rank(preq, offerings, blocked)
                within = [c for c in ranked if fits_quotas(left, c.offering, c.spot)]
                if not within:
                    where = sorted({(c.offering.provider, c.offering.region) for c in ranked})
                    raise Unschedulable(f"every offering with {preq.describe()} not refused yet is over the provider "
                                        f"quotas ({describe_quotas(limits, left, where)})")
                best = within[0]
                target = (best.offering, best.spot, best.hourly)
            except CumuloError as exc:  # Unschedulable says why; NotFound if the catalog lost the type
                nothing = exc
            now = self.clock()
            values: dict = {"blocked": [list(b) for b in sorted(blocked)], "updated_at": now}
            if target is not None:
                o, spot, price = target
                values.update(provider=o.provider, region=o.region, zone=o.zone, instance_type=o.instance_type,
                              spot=spot, price=price, cpu=o.vcpus, memory=int(o.memory_gib * 2**30),
                              gpus=list(range(o.accelerator_count)),
                              gpu_names=[o.accelerator] * o.accelerator_count if o.accelerator else [],
                              reason=f"failing over to {o.provider} {o.zone or o.region} at ${price:.3f}/h")
            with self.db.tx() as s:
                # write and keep the lease (guarded_update releases it; the claim takes it straight back)
                if not (leases.guarded_update(s, Node, node.name, lease, **values)
                        and leases.claim(s, Node, node.name, lease, now, LEASE_TTL)):
                    raise _LeaseLost(node.name)
                if refusal is not None:
                    events.record(s, now=now, kind="Node", name=node.name, object_id=node.name, type="Warning",
                                  reason="FailedOver", message=refusal, workspace=workspace)
        if nothing is not None:
            raise nothing
        return target

    # -- orphans ---------------------------------------------------------------------------------
    def sweep_orphans(self) -> list[str]:
        """Terminate machines tagged by this installation that no live node owns."""
        with self.db.tx() as s:
            live = set(store.live_ids(s))
            locations = store.known_locations(s)
        killed = []
        for provider_name, region in sorted(locations):
            provider = self.providers.get(provider_name)
            if provider is None:
                continue
            for m in provider.describe(region=region, tags={MANAGED_TAG: "true", INSTALL_TAG: self.install_id}):
                if m.state in (MachineState.TERMINATED, MachineState.PREEMPTED, MachineState.TERMINATING):
                    continue
                if m.tags.get(NODE_ID_TAG) not in live:
                    provider.terminate([m.id], region=region)
                    killed.append(m.id)
                    with self.db.tx() as s:
                        events.record(s, now=self.clock(), kind="Node", name=m.tags.get(NODE_ID_TAG, m.id),
                                      object_id=m.id, type="Warning", reason="OrphanTerminated",
                                      message=f"{m.id} in {region} is tagged by this cumulo but no live node owns it")
        return killed


def _join(cluster: Cluster | None) -> Join | None:
    if cluster is None:
        return None
    address = cluster.join_address or (default_join_address(cluster.address) if cluster.kind == "ray" else None)
    return Join(cluster.name, cluster.kind, address)


def _unjoinable(node: Node, join: Join | None) -> str | None:
    """Why a machine for this node cannot be launched (it could never join its cluster), or None."""
    if not node.cluster or node.cluster == "local":
        return None
    if join is None:
        return f"cluster {node.cluster!r} does not exist (`cumulo cluster list`)"
    if join.kind != "ray":
        return f"launched machines join Ray clusters only; cluster {join.cluster} is {join.kind}"
    if not join.address:
        return (f"cluster {join.cluster} has no join address: add it again with "
                f"`cumulo cluster add {join.cluster} --ray URL --join HOST:PORT`")
    return None


def _token_base(node: Node) -> str:
    """A replaced machine's successor needs a launch token of its own."""
    return node.name if not node.replacements else f"{node.name}.r{node.replacements}"


def bootstrap(node: Node, o: Offering, spot: bool, join: Join | None) -> str | None:
    """The user-data of a machine for `node` on offering `o`: the bootstrap that joins its cluster."""
    if join is None or not join.address:
        return None
    return render(BootstrapSpec(
        node_id=node.name, cluster=join.cluster, join_address=join.address, provider=o.provider,
        instance_type=o.instance_type, zone=o.zone or o.region, spot=spot, cpus=o.vcpus,
        memory_bytes=int(o.memory_gib * 2**30), gpus=o.accelerator_count, accelerator=o.accelerator,
        generation=node.replacements,
    ))


def node_offering(node: Node) -> Offering:
    return provider_quotas.node_offering(node)
