"""A node pool's scale-up and scale-down as a pure function: what runs and waits on the pool's
cluster, the pool's nodes and limits go in; which machines to launch and release, and why each
waiting workload gets no machine, come out. No clock (``now`` is an input), no I/O.

Scale up, in order:

1. Work the cluster's nodes can hold now (`policy.clusters.choose`, what the job reconciler runs)
   is left to the job reconciler: no machine is launched for it.
2. Work that machines already launching will hold (their whole capacity, less what earlier work
   was given) is covered by them: no second machine is launched for the same demand.
3. The rest becomes placement requests (a packed job: one machine with its total when one the
   pool may launch holds it, else one per worker; a spread job: one per worker) placed together
   by the exact batch placement (`placement_batch.place_batch`, cheapest total $/h) under the
   provider quotas left. When that set would pass a pool limit (max_nodes, max_price_per_hour,
   budget_per_month), workloads are taken in order (oldest first) and each one that would pass a
   limit is left out, its reason naming the limit with the numbers.

Budget: a launch may not let month-to-date spend plus one hour (`BUDGET_LOOKAHEAD_H`) of every
machine the pool would then have pass `budget_per_month`.

While the cluster is unreachable nothing changes (a machine could not join it, and what runs on
the machines up is not known).

Scale down: a ready node with no cumulo work is idle from the first pass that sees it so
(`idle_since`, the policy's state); idle for `idle_ttl`, it is released, the most expensive first,
never below `min_nodes`. Below `min_nodes`, the cheapest allowed machines are launched.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from cumulo.core.errors import CumuloError
from cumulo.core.offerings import Offering
from cumulo.core.specs import NodePoolSpec
from cumulo.core.units import format_memory
from cumulo.policy.capacity import Allocation, Request
from cumulo.policy.clusters import ClusterView, choose
from cumulo.policy.placement import PlacementRequest
from cumulo.policy.placement_batch import place_batch

__all__ = [
    "BUDGET_LOOKAHEAD_H", "Launch", "PendingWork", "PoolDecision", "PoolInput", "PoolNode", "Release",
    "allowed_offerings", "decide_pool", "node_name",
]

#: a launch must leave the pool able to run every machine it would have for this long within budget
BUDGET_LOOKAHEAD_H = 1.0
_MEMORY_SLACK = 0.02  # a shape's memory matches offerings within 2 % (catalogs round GiB)


@dataclass(frozen=True)
class PoolNode:
    """One of the pool's live machines."""

    name: str
    state: str  # "launching" (not joined yet) | "ready" (joined) | "releasing"
    cpu: float
    memory: int  # bytes
    gpus: int = 0
    gpu_type: str | None = None
    price: float = 0.0  # $/h
    busy: bool = False  # cumulo work runs on it (ready nodes)
    instance_type: str = ""


@dataclass(frozen=True)
class PendingWork:
    """A workload waiting to run on the pool's cluster (oldest first)."""

    key: str  # e.g. "job:<id>"
    name: str  # for people: "job train"
    request: Request
    placement: str = "pack"


@dataclass(frozen=True)
class PoolInput:
    now: datetime
    spec: NodePoolSpec
    #: offerings of providers with a driver (the policy keeps those the spec allows)
    offerings: tuple[Offering, ...]
    #: the cluster as placement sees it: engine nodes (joined), without the pool's unjoined ones
    cluster: ClusterView
    #: what cumulo's running work holds (every cluster; only the pool's counts)
    used: tuple[Allocation, ...] = ()
    nodes: tuple[PoolNode, ...] = ()
    pending: tuple[PendingWork, ...] = ()
    spent_month: float = 0.0
    #: provider quota LEFT per (provider, region): {"instances": 3, "vcpus": 64, ...}
    quotas: Mapping[tuple[str, str], Mapping[str, float]] = field(default_factory=dict)
    #: previous state: node name -> when it was first seen idle
    idle_since: Mapping[str, datetime] = field(default_factory=dict)
    #: the sequence number the next launched node gets (names are decided here, deterministically)
    next_seq: int = 1


@dataclass(frozen=True)
class Launch:
    node: str
    offering: Offering
    spot: bool
    price: float  # $/h
    reason: str
    work: tuple[str, ...] = ()  # keys of the work it is for


@dataclass(frozen=True)
class Release:
    node: str
    price: float
    reason: str


@dataclass(frozen=True)
class PoolDecision:
    launches: tuple[Launch, ...] = ()
    releases: tuple[Release, ...] = ()
    #: work key -> what the pool does about it ("launching X for it", or the limit that stops it)
    notes: Mapping[str, str] = field(default_factory=dict)
    #: work keys the pool cannot launch for (a limit, quota or no fitting offering): Pending reasons
    blocked: Mapping[str, str] = field(default_factory=dict)
    idle_since: Mapping[str, datetime] = field(default_factory=dict)
    next_seq: int = 1
    reason: str = ""


def node_name(pool: str, seq: int) -> str:
    """The node a pool's `seq`-th launch makes: decided before anything is launched, so a pass
    repeated after a crash finds the same row (and the provider the same launch token)."""
    return f"{pool[:50]}-{seq}"


def allowed_offerings(spec: NodePoolSpec, offerings: Sequence[Offering]) -> list[Offering]:
    """The offerings the pool may launch. Under `spot: required` the on-demand market is priced
    out (inf), so placement picks spot; under `never` spot prices are dropped."""
    out = []
    types = {t.lower() for t in spec.instance_types}
    for o in offerings:
        if spec.providers and o.provider not in spec.providers:
            continue
        if spec.regions and o.region not in spec.regions:
            continue
        if types and o.instance_type.lower() not in types:
            continue
        if spec.shapes and not any(_is_shape(o, s) for s in spec.shapes):
            continue
        if spec.spot == "never":
            o = replace(o, spot_price=None)
        elif spec.spot == "required":
            if o.spot_price is None:
                continue
            o = replace(o, price=math.inf)
        out.append(o)
    return out


def _is_shape(o: Offering, s) -> bool:
    if abs(o.vcpus - s.cpu) > 1e-9 or o.accelerator_count != s.gpus:
        return False
    if s.memory is not None and abs(o.memory_gib * 2**30 - s.memory) > _MEMORY_SLACK * s.memory:
        return False
    return s.gpu_type is None or (o.accelerator or "").lower() == s.gpu_type.lower()


# -- scale up ------------------------------------------------------------------------------------

@dataclass
class _Bin:
    name: str
    cpu: float
    memory: int
    gpus: int
    gpu_type: str | None


def _worker_fits(r: Request, b: _Bin) -> bool:
    if r.gpu and (b.gpus < r.gpu or (r.gpu_type and (b.gpu_type or "").lower().find(r.gpu_type.lower()) < 0)):
        return False
    return b.cpu + 1e-9 >= r.cpu and b.memory >= r.memory


def _cover(w: PendingWork, bins: list[_Bin]) -> list[str] | None:
    """Place every worker of `w` on the launching machines' spare capacity (first fit; spread:
    distinct machines); take it from the bins and return their names, or None (bins untouched)."""
    taken: list[tuple[_Bin, int]] = []
    used_bins: set[str] = set()
    r = w.request
    for _ in range(r.workers):
        for b in bins:
            if w.placement == "spread" and b.name in used_bins:
                continue
            if _worker_fits(r, b):
                b.cpu -= r.cpu
                b.memory -= r.memory
                b.gpus -= r.gpu
                taken.append((b, 1))
                used_bins.add(b.name)
                break
        else:
            for b, _n in taken:
                b.cpu += r.cpu
                b.memory += r.memory
                b.gpus += r.gpu
            return None
    return sorted(used_bins)


def _requests(w: PendingWork, offerings: Sequence[Offering], spot: bool) -> list[PlacementRequest] | str:
    """The machines `w` needs, or why no offering the pool may launch holds it."""
    r = w.request
    gib = 2**30

    def holds(o: Offering, cpu: float, memory: int, gpu: int) -> bool:
        if gpu and (o.accelerator_count < gpu or (r.gpu_type and (o.accelerator or "").lower() != r.gpu_type.lower())):
            return False
        return o.vcpus + 1e-9 >= cpu and o.memory_gib * gib + 1 >= memory

    def req(cpu: float, memory: int, gpu: int) -> PlacementRequest:
        accel = r.gpu_type
        if gpu and accel is None:  # any GPU: the type of the cheapest machine that holds it
            fits = [o for o in offerings if holds(o, cpu, memory, gpu)]
            accel = min(fits, key=lambda o: (_market_price(o, spot), o.instance_type)).accelerator if fits else None
        return PlacementRequest(cpu=cpu, memory_gib=memory / gib, accelerator=accel if gpu else None,
                                accelerator_count=gpu, spot=spot)

    if w.placement == "pack" and r.workers > 1 and any(holds(o, r.total_cpu, r.total_memory, r.total_gpu)
                                                        for o in offerings):
        return [req(r.total_cpu, r.total_memory, r.total_gpu)]
    if not any(holds(o, r.cpu, r.memory, r.gpu) for o in offerings):
        gpu = f", {r.gpu} {r.gpu_type + ' ' if r.gpu_type else ''}GPU" if r.gpu else ""
        return f"no machine the pool may launch holds a worker of {r.cpu:g} CPU, {format_memory(r.memory)}{gpu}"
    return [req(r.cpu, r.memory, r.gpu) for _ in range(r.workers)]


def _market_price(o: Offering, spot: bool) -> float:
    return min(o.price, o.spot_price) if spot and o.spot_price is not None else o.price


def _limits(spec: NodePoolSpec, n_live: int, live_price: float, spent: float,
            new_nodes: int, new_price: float) -> str | None:
    """The first pool limit that `new_nodes` machines costing `new_price` $/h would pass, or None."""
    if n_live + new_nodes > spec.max_nodes:
        return (f"node pool {spec.name}: max_nodes {spec.max_nodes} reached ({n_live} up or launching, "
                f"this needs {new_nodes} more)")
    if spec.max_price_per_hour is not None and live_price + new_price > spec.max_price_per_hour + 1e-9:
        return (f"node pool {spec.name}: max_price_per_hour ${spec.max_price_per_hour:,.3f} "
                f"(its machines cost ${live_price:,.3f}/h and this needs ${new_price:,.3f}/h more)")
    if spec.budget_per_month is not None:
        projected = spent + (live_price + new_price) * BUDGET_LOOKAHEAD_H
        if projected > spec.budget_per_month + 1e-9:
            return (f"node pool {spec.name}: budget_per_month ${spec.budget_per_month:,.2f} (${spent:,.2f} spent "
                    f"this month; with ${new_price:,.3f}/h more its machines would reach ${projected:,.2f} "
                    f"within {BUDGET_LOOKAHEAD_H:g} h)")
    return None


def _place(reqs: list[PlacementRequest], offerings: Sequence[Offering], quotas) -> list | str:
    try:
        return list(place_batch(reqs, offerings, quotas).assignments)
    except CumuloError as exc:
        return f"provider quota: {exc.message}" if quotas else str(exc.message)


def _describe(o: Offering, spot: bool, price: float) -> str:
    where = o.zone or o.region
    return f"{o.instance_type} on {o.provider} {where}{' (spot)' if spot else ''} at ${price:,.3f}/h"


def decide_pool(inp: PoolInput) -> PoolDecision:
    spec = inp.spec
    if not inp.cluster.reachable:
        # machines could not join, and what runs on the ones up is not known: change nothing
        why = f"cluster {spec.cluster} is unreachable" + (f" ({inp.cluster.reason})" if inp.cluster.reason else "")
        note = f"node pool {spec.name}: {why}: no machine is launched until it answers"
        return PoolDecision(notes={w.key: note for w in inp.pending}, idle_since=dict(inp.idle_since),
                            next_seq=inp.next_seq, reason=f"{why}: waiting for it")
    offerings = allowed_offerings(spec, inp.offerings)
    spot = spec.spot != "never"
    live = [n for n in inp.nodes if n.state != "releasing"]
    live_price = sum(n.price for n in live)
    seq = inp.next_seq
    notes: dict[str, str] = {}
    blocked: dict[str, str] = {}

    # 1-2: what fits the cluster now, or machines already launching
    used = list(inp.used)
    bins = [_Bin(n.name, n.cpu, n.memory, n.gpus, n.gpu_type) for n in live if n.state == "launching"]
    demand: list[tuple[PendingWork, list[PlacementRequest]]] = []
    for w in inp.pending:
        fit = choose(w.request, w.placement, [inp.cluster], used) if inp.cluster.nodes else "no nodes"
        if isinstance(fit, Allocation):
            used.append(fit)
            continue
        covered = _cover(w, bins)
        if covered is not None:
            notes[w.key] = f"node pool {spec.name}: waiting for {', '.join(covered)} to join"
            continue
        reqs = _requests(w, offerings, spot)
        if isinstance(reqs, str):
            blocked[w.key] = f"node pool {spec.name}: {reqs}"
            continue
        demand.append((w, reqs))

    # 3: place the rest together, cheapest total first; drop work that would pass a limit
    launches: list[Launch] = []
    accepted: list[tuple[PendingWork, list[PlacementRequest]]] = []
    placed: list = []
    if demand:
        everything = [r for _, reqs in demand for r in reqs]
        whole = _place(everything, offerings, inp.quotas)
        if not isinstance(whole, str) and _limits(spec, len(live), live_price, inp.spent_month, len(whole),
                                                  sum(c.hourly for c in whole)) is None:
            accepted, placed = demand, whole
        else:
            for w, reqs in demand:  # oldest first: each one that passes a limit waits
                trial = [r for _, rs in accepted for r in rs] + reqs
                got = _place(trial, offerings, inp.quotas)
                if isinstance(got, str):
                    blocked[w.key] = f"node pool {spec.name}: {got}"
                    continue
                before = sum(c.hourly for c in placed)
                why = _limits(spec, len(live) + len(placed), live_price + before, inp.spent_month,
                              len(got) - len(placed), sum(c.hourly for c in got) - before)
                if why:
                    blocked[w.key] = why
                    continue
                accepted.append((w, reqs))
                placed = got
    i = 0
    for w, reqs in accepted:
        names = []
        for _ in reqs:
            c = placed[i]
            i += 1
            name = node_name(spec.name, seq)
            seq += 1
            names.append(name)
            launches.append(Launch(name, c.offering, c.spot, c.hourly,
                                   f"scale up for {w.name}: {_describe(c.offering, c.spot, c.hourly)}, "
                                   "the cheapest that fits", (w.key,)))
        notes[w.key] = f"node pool {spec.name}: launching {', '.join(names)} for it"
    notes.update(blocked)

    # min_nodes: keep the floor up with the cheapest machines allowed
    short = spec.min_nodes - len(live) - len(launches)
    if short > 0 and offerings:
        floor = _place([PlacementRequest(spot=spot)] * short, offerings, inp.quotas)
        price_now = live_price + sum(x.price for x in launches)
        why = floor if isinstance(floor, str) else _limits(
            spec, len(live) + len(launches), price_now, inp.spent_month, short, sum(c.hourly for c in floor))
        if why:
            floor_reason = f"cannot keep min_nodes {spec.min_nodes}: {why}"
        else:
            floor_reason = ""
            for c in floor:
                launches.append(Launch(node_name(spec.name, seq), c.offering, c.spot, c.hourly,
                                       f"min_nodes {spec.min_nodes}: {_describe(c.offering, c.spot, c.hourly)}"))
                seq += 1
    else:
        floor_reason = ""

    # scale down: idle for idle_ttl -> release, most expensive first, never below min_nodes
    idle_since: dict[str, datetime] = {}
    expired: list[PoolNode] = []
    for n in live:
        if n.state != "ready" or n.busy:
            continue
        since = inp.idle_since.get(n.name, inp.now)
        idle_since[n.name] = since
        if (inp.now - since).total_seconds() >= spec.idle_ttl:
            expired.append(n)
    keep = max(spec.min_nodes - (len(live) - len(expired)), 0)
    expired.sort(key=lambda n: (-n.price, n.name))
    releases = [Release(n.name, n.price, f"idle for {spec.idle_ttl:g}s (no cumulo work on it): releasing "
                                         f"{n.instance_type or n.name} at ${n.price:,.3f}/h")
                for n in expired[:max(len(expired) - keep, 0)]]
    for r in releases:
        idle_since.pop(r.node, None)

    parts = []
    if launches:
        parts.append(f"launching {len(launches)} (${sum(x.price for x in launches):,.3f}/h)")
    if releases:
        parts.append(f"releasing {len(releases)} (${sum(x.price for x in releases):,.3f}/h)")
    if blocked:
        parts.append(f"{len(blocked)} waiting on a limit")
    if floor_reason:
        parts.append(floor_reason)
    return PoolDecision(tuple(launches), tuple(releases), notes, blocked, idle_since, seq,
                        "; ".join(parts) or "nothing to do")
