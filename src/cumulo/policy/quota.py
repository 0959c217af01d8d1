"""Workspace quotas, provider quotas and what usage costs: pure arithmetic, no clock, no I/O.

A workspace may cap the CPUs and GPUs its running work holds, the cloud nodes it keeps, their
price per hour, and what it spends in a calendar month. Work that would pass a cap waits (Pending,
with the numbers); machines that would are refused.

A provider quota is a cloud account's own limit in one (provider, region), e.g. AWS's vCPUs of
running on-demand instances: `ProviderQuotas` maps (provider, region) to {resource: limit} with
the resources of `quota_usage`. Placement keeps new machines within what the live ones leave
(`quotas_left`), so a launch is not refused by the cloud for a limit cumulo knew about.

Spend accrues per hour of use: a cloud node at its price; work on the local machine at its share
of the machine (the larger of its CPU share and its GPU share) times the machine's price.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from cumulo.core.errors import InvalidSpec
from cumulo.core.offerings import Offering
from cumulo.policy.capacity import Allocation, Request

__all__ = [
    "QUOTA_RESOURCES",
    "ProviderQuotas",
    "Quota",
    "Usage",
    "budget_level",
    "check_quota_key",
    "cost_of",
    "describe_quotas",
    "fits_quotas",
    "over_node_quota",
    "over_quota",
    "quota_usage",
    "quotas_left",
    "share",
]

QUOTA_RESOURCES = ("instances", "vcpus", "memory_gib", "gpus")

#: (provider, region) -> {resource key: limit}; a region without an entry is unlimited
ProviderQuotas = Mapping[tuple[str, str], Mapping[str, float]]


@dataclass(frozen=True)
class Quota:
    cpu: float | None = None
    gpu: int | None = None
    nodes: int | None = None
    price_per_hour: float | None = None  # of the workspace's cloud nodes together
    budget_per_month: float | None = None

    @classmethod
    def from_dict(cls, d: dict | None) -> Quota | None:
        if not d:
            return None
        return cls(**{k: d.get(k) for k in ("cpu", "gpu", "nodes", "price_per_hour", "budget_per_month")})

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def over_quota(request: Request, quota: Quota | None, used: Sequence[Allocation], spent: float = 0.0) -> str | None:
    """Why this work must wait for its workspace's quota or budget, or None if it may start."""
    if quota is None:
        return None
    short = []
    if quota.budget_per_month is not None and spent >= quota.budget_per_month:
        short.append(f"this month's budget of ${quota.budget_per_month:,.2f} is spent (${spent:,.2f})")
    if quota.cpu is not None:
        held = sum(a.cpu for a in used)
        if held + request.total_cpu > quota.cpu + 1e-9:
            short.append(f"CPU {held:g} of {quota.cpu:g} in use and this needs {request.total_cpu:g}")
    if quota.gpu is not None and request.total_gpu:
        held_gpu = sum(a.gpu_count for a in used)
        if held_gpu + request.total_gpu > quota.gpu:
            short.append(f"GPU {held_gpu} of {quota.gpu} in use and this needs {request.total_gpu}")
    return "workspace quota: " + "; ".join(short) if short else None


def over_node_quota(quota: Quota | None, *, nodes: int, price_per_hour: float, new_nodes: int,
                    new_price_per_hour: float, spent: float) -> str | None:
    """Why new cloud machines are refused for this workspace, with the numbers, or None."""
    if quota is None:
        return None
    short = []
    if quota.budget_per_month is not None and spent >= quota.budget_per_month:
        short.append(f"this month's budget of ${quota.budget_per_month:,.2f} is spent (${spent:,.2f})")
    if quota.nodes is not None and nodes + new_nodes > quota.nodes:
        short.append(f"{nodes} of {quota.nodes} nodes are in use and this asks for {new_nodes} more")
    if quota.price_per_hour is not None and price_per_hour + new_price_per_hour > quota.price_per_hour + 1e-9:
        short.append(f"its nodes cost ${price_per_hour:,.3f}/h of ${quota.price_per_hour:,.3f}/h and these would "
                     f"add ${new_price_per_hour:,.3f}/h")
    return "; ".join(short) if short else None


@dataclass(frozen=True)
class Usage:
    """One thing that costs money while it holds resources."""

    workspace: str
    kind: str  # "job", "deployment" or "node"
    name: str
    start: datetime
    end: datetime | None  # None: still running
    price_per_hour: float  # what it costs per hour while it runs (its share already applied)


def share(allocation: Allocation, node_cpu: float, node_gpus: int) -> float:
    """The part of the local machine an allocation holds: the larger of its CPU and GPU shares."""
    cpu = allocation.cpu / node_cpu if node_cpu > 0 else 0.0
    gpu = len(allocation.gpus) / node_gpus if node_gpus > 0 else 0.0
    return min(1.0, max(cpu, gpu))


def cost_of(u: Usage, since: datetime, until: datetime) -> float:
    """Dollars `u` cost between `since` and `until`."""
    start = max(u.start, since)
    end = min(u.end or until, until)
    hours = (end - start).total_seconds() / 3600
    return max(hours, 0.0) * u.price_per_hour


def budget_level(spent: float, budget: float | None, levels: Iterable[int] = (80, 100)) -> int:
    """The highest alert level (percent of the budget) that `spent` has reached, or 0."""
    if not budget or budget <= 0:
        return 0
    reached = [lv for lv in levels if spent >= budget * lv / 100]
    return max(reached, default=0)


def still_within(quota: Quota | None, held: Sequence[Allocation]) -> bool:
    """Whether allocations decided earlier still keep the workspace within its CPU and GPU quota
    (re-checked when they are recorded)."""
    if quota is None:
        return True
    cpu_ok = quota.cpu is None or sum(a.cpu for a in held) <= quota.cpu + 1e-9
    gpu_ok = quota.gpu is None or sum(a.gpu_count for a in held) <= quota.gpu
    return cpu_ok and gpu_ok


# ------------------------------------------------------------------------------- provider quotas

def check_quota_key(key: str) -> None:
    base = key.split(":", 1)[1] if key.startswith(("spot:", "on-demand:")) else key
    if base in QUOTA_RESOURCES or (base.startswith("gpus:") and len(base) > 5):
        return
    raise InvalidSpec(f"unknown quota resource {key!r}: use instances, vcpus, memory_gib, gpus or gpus:NAME, "
                      "optionally prefixed with spot: or on-demand:",
                      errors=[{"field": "quotas", "message": f"unknown resource {key!r}"}])


def quota_usage(key: str, offering: Offering, spot: bool, count: int = 1) -> float:
    """How much of quota resource `key` `count` machines of `offering` in this market use.
    Keys: instances, vcpus, memory_gib, gpus, gpus:NAME; a "spot:" or "on-demand:" prefix counts
    only that market."""
    check_quota_key(key)
    if key.startswith("spot:"):
        if not spot:
            return 0.0
        key = key[5:]
    elif key.startswith("on-demand:"):
        if spot:
            return 0.0
        key = key[10:]
    if key == "instances":
        per = 1.0
    elif key == "vcpus":
        per = offering.vcpus
    elif key == "memory_gib":
        per = offering.memory_gib
    elif key == "gpus":
        per = float(offering.accelerator_count)
    else:
        per = float(offering.accelerator_count) if (offering.accelerator or "").lower() == key[5:].lower() else 0.0
    return per * count


def quotas_left(limits: ProviderQuotas, held: Iterable[tuple[Offering, bool]]) -> dict[tuple[str, str], dict[str, float]]:
    """What each limit leaves once the machines in `held` ((offering, spot) each, e.g. the live
    nodes) are counted; never below 0."""
    left = {loc: {k: float(v) for k, v in lims.items()} for loc, lims in limits.items()}
    for o, spot in held:
        lims = left.get((o.provider, o.region))
        if lims is None:
            continue
        for key in lims:
            lims[key] = max(0.0, lims[key] - quota_usage(key, o, spot))
    return left


def fits_quotas(left: ProviderQuotas, offering: Offering, spot: bool, count: int = 1) -> bool:
    """Whether `count` more machines of `offering` fit what the quotas leave in its region."""
    lims = left.get((offering.provider, offering.region))
    return lims is None or all(quota_usage(k, offering, spot, count) <= v + 1e-9 for k, v in lims.items())


def describe_quotas(limits: ProviderQuotas, left: ProviderQuotas, where: Iterable[tuple[str, str]] | None = None) -> str:
    """'aws/us-east-1 vcpus: limit 64, 60 held, 4 left; ...' for the quota'd regions in `where`
    (default: all), so a refusal names the limits and what holds them."""
    out = []
    for loc in sorted(limits if where is None else [w for w in where if w in limits]):
        for key, limit in sorted(limits[loc].items()):
            rest = left.get(loc, {}).get(key, limit)
            out.append(f"{loc[0]}/{loc[1]} {key}: limit {limit:g}, {limit - rest:g} held by live nodes, {rest:g} left")
    return "; ".join(out)
