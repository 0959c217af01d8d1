"""Where should a workload run: feasible offerings ranked by cost or speed, failover blocking, and
exact batch placement under per-region quotas. Pure: core, numpy and scipy only; no clock, no I/O.

- `rank(request, offerings, blocked)` -> feasible `Candidate`s, best first (market chosen per
  offering: spot when allowed and cheaper). Nothing feasible -> `Unschedulable` naming the
  constraint that excluded everything.
- `block(blocked, offering, scope)` -> a new `Blocked` set after a launch failed with a
  `ProviderError` of that scope ("zone", "region", "provider"); `rank` skips blocked locations, so
  the caller's failover loop is: rank, launch the first, on failure block and rank again.
- `place_batch(requests, offerings, quotas)` -> the assignment of minimum total $/h that respects
  per-(provider, region) quotas, solved exactly with `scipy.optimize.milp` on an equivalent
  reduced problem (identical requests grouped, zones collapsed, dominated choices removed).
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_array

from cumulo.core.errors import InvalidSpec, NotFound, Unschedulable
from cumulo.core.offerings import Offering

__all__ = [
    "DEFAULT_SPEEDS", "OBJECTIVES", "SCOPES", "BatchPlacement", "Blocked", "Candidate", "PlacementRequest",
    "block", "is_blocked", "parse_accelerator", "place_batch", "quota_usage", "rank",
]

OBJECTIVES = ("cost", "time")
SCOPES = ("zone", "region", "provider")

# Relative training throughput of one accelerator (T4 = 1), approximate (public mixed-precision
# benchmarks); used by objective "time". A request may pass its own table.
DEFAULT_SPEEDS: Mapping[str, float] = MappingProxyType({
    "T4": 1.0, "L4": 2.0, "A10G": 2.3, "V100": 2.5, "V100-32GB": 2.6, "A100": 6.0, "A100-80GB": 6.5, "H100": 14.0,
})
CPU_SPEED_PER_VCPU = 0.02  # a CPU-only machine under objective "time": 50 vCPUs ~ one T4

Blocked = frozenset  # of ("provider", p) | ("region", p, r) | ("zone", p, r, z)

_ACC = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9_-]*)\s*(?::\s*(\d+)\s*)?$")


def parse_accelerator(text: str) -> tuple[str, int]:
    """'A100:8' -> ('A100', 8); 'T4' -> ('T4', 1)."""
    m = _ACC.match(text or "")
    if not m:
        raise InvalidSpec(f"accelerator {text!r} must look like NAME or NAME:COUNT (e.g. A100:8)",
                          errors=[{"field": "accelerator", "message": "expected NAME[:COUNT]"}])
    return m.group(1), int(m.group(2)) if m.group(2) is not None else 1


def _tuple(value: Sequence[str] | str | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


@dataclass(frozen=True)
class PlacementRequest:
    """`count` machines of one offering, each with at least `cpu` vCPUs, `memory_gib` GiB and
    `accelerator_count` accelerators named `accelerator` (or exactly `instance_type`).

    `accelerator` may carry the count ("A100:8"). `max_price` bounds $/h per machine in the chosen
    market. Empty `providers`/`regions` allow all; the `exclude_*` lists remove some.
    """

    cpu: float = 0.0
    memory_gib: float = 0.0
    accelerator: str | None = None
    accelerator_count: int = 0
    instance_type: str | None = None
    count: int = 1
    spot: bool = False
    providers: tuple[str, ...] = ()
    exclude_providers: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    exclude_regions: tuple[str, ...] = ()
    max_price: float | None = None
    objective: str = "cost"
    speeds: Mapping[str, float] = field(default=None, compare=False, hash=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        errors = []
        if self.speeds is None:
            object.__setattr__(self, "speeds", DEFAULT_SPEEDS)
        if self.accelerator is not None:
            name, count = parse_accelerator(self.accelerator)
            if ":" in self.accelerator:
                if self.accelerator_count not in (0, count):
                    errors.append({"field": "accelerator_count",
                                   "message": f"{self.accelerator_count} contradicts {self.accelerator!r}"})
            else:
                count = self.accelerator_count or 1
            object.__setattr__(self, "accelerator", name)
            object.__setattr__(self, "accelerator_count", count)
        for name in ("providers", "exclude_providers", "regions", "exclude_regions"):
            object.__setattr__(self, name, _tuple(getattr(self, name)))
        if not isinstance(self.count, int) or self.count <= 0:
            errors.append({"field": "count", "message": f"must be at least 1, got {self.count}"})
        for name in ("cpu", "memory_gib"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                errors.append({"field": name, "message": f"must be a number >= 0, got {v!r}"})
        if self.accelerator_count < 0 or (self.accelerator is None and self.accelerator_count > 0):
            errors.append({"field": "accelerator_count", "message": "needs an accelerator name and must be >= 0"})
        if self.accelerator is not None and self.accelerator_count == 0:
            errors.append({"field": "accelerator_count", "message": "must be at least 1"})
        if self.max_price is not None and not (self.max_price >= 0):
            errors.append({"field": "max_price", "message": f"must be >= 0, got {self.max_price}"})
        if self.objective not in OBJECTIVES:
            errors.append({"field": "objective", "message": f"must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}"})
        if errors:
            raise InvalidSpec("invalid placement request: " + "; ".join(f"{e['field']}: {e['message']}" for e in errors),
                              errors=errors)

    def describe(self) -> str:
        """The machine asked for, in words: '8x A100', 'g4dn.xlarge', '>= 4 vCPUs, >= 16 GiB'."""
        parts = []
        if self.instance_type:
            parts.append(self.instance_type)
        if self.accelerator:
            parts.append(f"{self.accelerator_count}x {self.accelerator}")
        if self.cpu:
            parts.append(f">= {self.cpu:g} vCPUs")
        if self.memory_gib:
            parts.append(f">= {self.memory_gib:g} GiB memory")
        return ", ".join(parts) or "any machine"


@dataclass(frozen=True)
class Candidate:
    """One feasible choice: the offering, its market, and $/h per machine and for all `count`."""

    offering: Offering
    spot: bool
    hourly: float
    total_hourly: float
    speed: float  # relative throughput of one machine (objective "time")

    @property
    def market(self) -> str:
        return "spot" if self.spot else "on-demand"

    def describe(self) -> str:
        o = self.offering
        where = o.zone or o.region
        return f"{o.provider} {o.instance_type} in {where} ({self.market}, ${self.hourly:.4f}/h)"


# ---------------------------------------------------------------------------------------- failover

def block(blocked: frozenset, offering: Offering, scope: str | None) -> frozenset:
    """The blocked set after a launch of `offering` failed with an error of this scope. A "zone"
    scope on an offering without zones blocks its region; scope None (the error rules nothing out)
    returns the set unchanged."""
    if scope is None:
        return frozenset(blocked)
    if scope not in SCOPES:
        raise InvalidSpec(f"failover scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    if scope == "provider":
        key: tuple[str, ...] = ("provider", offering.provider)
    elif scope == "region" or offering.zone is None:
        key = ("region", offering.provider, offering.region)
    else:
        key = ("zone", offering.provider, offering.region, offering.zone)
    return frozenset(blocked) | {key}


def is_blocked(blocked: frozenset, offering: Offering) -> bool:
    if not blocked:
        return False
    return (("provider", offering.provider) in blocked
            or ("region", offering.provider, offering.region) in blocked
            or (offering.zone is not None and ("zone", offering.provider, offering.region, offering.zone) in blocked))


def _describe_blocked(blocked: frozenset) -> str:
    words = {"provider": "provider", "region": "region", "zone": "zone"}
    return ", ".join(f"{words[k[0]]} {'/'.join(k[1:])}" for k in sorted(blocked))


# ------------------------------------------------------------------------------------------ ranking

def _market(request: PlacementRequest, o: Offering) -> tuple[bool, float]:
    if request.spot and o.spot_price is not None and o.spot_price < o.price:
        return True, o.spot_price
    return False, o.price


def _speed(request: PlacementRequest, o: Offering) -> float:
    if o.accelerator and o.accelerator_count:
        return request.speeds.get(o.accelerator, 1.0) * o.accelerator_count
    return o.vcpus * CPU_SPEED_PER_VCPU


def _fits(request: PlacementRequest, o: Offering) -> bool:
    if request.instance_type is not None and o.instance_type.lower() != request.instance_type.lower():
        return False
    if request.accelerator is not None and (
            (o.accelerator or "").lower() != request.accelerator.lower() or o.accelerator_count < request.accelerator_count):
        return False
    return o.vcpus >= request.cpu and o.memory_gib >= request.memory_gib


def _location_ok(request: PlacementRequest, o: Offering) -> tuple[bool, bool]:
    provider_ok = (not request.providers or o.provider in request.providers) and o.provider not in request.exclude_providers
    region_ok = (not request.regions or o.region in request.regions) and o.region not in request.exclude_regions
    return provider_ok, region_ok


def _sort_key(request: PlacementRequest, c: Candidate) -> tuple:
    o = c.offering
    tail = (o.provider, o.region, o.zone or "", o.instance_type, c.spot)
    if request.objective == "time":
        return (-c.speed * request.count, c.total_hourly, *tail)
    return (c.total_hourly, -c.speed, *tail)


def rank(request: PlacementRequest, offerings: Sequence[Offering], blocked: frozenset = frozenset()) -> list[Candidate]:
    """Every feasible, unblocked offering for `request`, best first: objective "cost" by total $/h
    (then faster, then provider/region/zone/type), objective "time" by total speed (then cheaper).
    Raises InvalidSpec for an unknown accelerator, NotFound for an unknown instance type, and
    Unschedulable naming the constraint that excluded every offering."""
    shape = [o for o in offerings if _fits(request, o)]
    if not shape:
        raise _no_shape(request, offerings)
    located, wrong_provider, wrong_region = [], [], []
    for o in shape:
        provider_ok, region_ok = _location_ok(request, o)
        if provider_ok and region_ok:
            located.append(o)
        elif not provider_ok:
            wrong_provider.append(o)
        else:
            wrong_region.append(o)
    what = request.describe()
    if not located:
        if not [o for o in shape if _location_ok(request, o)[0]]:
            allowed = _allowed("providers", request.providers, request.exclude_providers)
            elsewhere = sorted({o.provider for o in wrong_provider})
            raise Unschedulable(f"no offering has {what} on {allowed}; {len(shape)} offerings have {what} "
                                f"on other providers ({', '.join(elsewhere)})")
        allowed = _allowed("regions", request.regions, request.exclude_regions)
        elsewhere = sorted({o.region for o in wrong_region})
        more = ", ..." if len(elsewhere) > 5 else ""
        raise Unschedulable(f"no offering has {what} in {allowed}; {len(wrong_region)} offerings have {what} "
                            f"elsewhere ({', '.join(elsewhere[:5])}{more})")
    priced = []
    for o in located:
        spot, hourly = _market(request, o)
        priced.append(Candidate(o, spot, hourly, hourly * request.count, _speed(request, o)))
    affordable = [c for c in priced if request.max_price is None or c.hourly <= request.max_price]
    if not affordable:
        cheapest = min(priced, key=lambda c: (c.hourly, *_sort_key(request, c)))
        raise Unschedulable(f"no offering with {what} costs at most ${request.max_price:g}/h per machine"
                            f"{' (spot allowed)' if request.spot else ''}; the cheapest is {cheapest.describe()}")
    free = [c for c in affordable if not is_blocked(blocked, c.offering)]
    if not free:
        raise Unschedulable(f"all {len(affordable)} offerings with {what} are in locations blocked after failures "
                            f"({_describe_blocked(blocked)})")
    free.sort(key=lambda c: _sort_key(request, c))
    return free


def _allowed(noun: str, allowed: tuple[str, ...], excluded: tuple[str, ...]) -> str:
    if allowed and excluded:
        return f"{noun} [{', '.join(allowed)}] minus [{', '.join(excluded)}]"
    if allowed:
        return f"{noun} [{', '.join(allowed)}]"
    if excluded:
        return f"{noun} other than [{', '.join(excluded)}]"
    return f"any of the {noun}"  # pragma: no cover - nothing excluded means something matched


def _no_shape(request: PlacementRequest, offerings: Sequence[Offering]) -> Exception:
    """Why no offering has the asked-for machine at all."""
    if request.instance_type is not None:
        names = sorted({o.instance_type for o in offerings})
        if request.instance_type.lower() not in {n.lower() for n in names}:
            family = request.instance_type.split(".", 1)[0].lower() + "."
            close = [n for n in names if n.lower().startswith(family)][:4] if "." in request.instance_type else []
            close = close or difflib.get_close_matches(request.instance_type, names, n=4, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            return NotFound(f"unknown instance type {request.instance_type!r}{hint}",
                            errors=[{"field": "instance_type", "message": "unknown instance type"}])
    pool = [o for o in offerings if request.instance_type is None or o.instance_type.lower() == request.instance_type.lower()]
    if request.accelerator is not None:
        known = sorted({o.accelerator for o in offerings if o.accelerator})
        named = [o for o in pool if (o.accelerator or "").lower() == request.accelerator.lower()]
        if not any((o.accelerator or "").lower() == request.accelerator.lower() for o in offerings):
            close = difflib.get_close_matches(request.accelerator.upper(), known, n=4, cutoff=0.4)
            hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(known) or 'none'}"
            return InvalidSpec(f"unknown accelerator {request.accelerator!r}; {hint}",
                               errors=[{"field": "accelerator", "message": "unknown accelerator"}])
        if request.instance_type is not None and not named:
            return Unschedulable(f"{request.instance_type} has no {request.accelerator}")
        most = max(o.accelerator_count for o in named)
        if most < request.accelerator_count:
            return Unschedulable(f"no offering has {request.accelerator_count}x {request.accelerator}; "
                                 f"the most on one machine is {most}x")
        pool = [o for o in named if o.accelerator_count >= request.accelerator_count]
    top_cpu = max((o.vcpus for o in pool), default=0)
    top_mem = max((o.memory_gib for o in pool), default=0)
    with_what = f" with {request.accelerator_count}x {request.accelerator}" if request.accelerator else ""
    if request.instance_type:
        with_what = f" of type {request.instance_type}{with_what}"
    need = " and ".join(p for p in (f">= {request.cpu:g} vCPUs" if request.cpu > top_cpu else "",
                                    f">= {request.memory_gib:g} GiB memory" if request.memory_gib > top_mem else "") if p)
    return Unschedulable(f"no offering{with_what} has {need}; the largest has {top_cpu:g} vCPUs and {top_mem:g} GiB")


# --------------------------------------------------------------------------------- batch placement

QUOTA_RESOURCES = ("instances", "vcpus", "memory_gib", "gpus")


@dataclass(frozen=True)
class BatchPlacement:
    """One Candidate per request (same order), the total $/h, and the quota'd resources used per
    (provider, region)."""

    assignments: tuple[Candidate, ...]
    total_hourly: float
    usage: Mapping[tuple[str, str], Mapping[str, float]]


def _check_quota_key(key: str) -> None:
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
    _check_quota_key(key)
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


def _class_key(r: PlacementRequest) -> tuple:
    return (r.cpu, r.memory_gib, (r.accelerator or "").lower(), r.accelerator_count, (r.instance_type or "").lower(),
            r.count, r.spot, r.providers, r.exclude_providers, r.regions, r.exclude_regions, r.max_price)


class _Table:
    """The offerings reduced to one row per (provider, region, instance type): quotas are per
    region, so within a region only the cheapest zone of a type (per market) can be in an optimum."""

    def __init__(self, offerings: Sequence[Offering], blocked: frozenset) -> None:
        groups: dict[tuple[str, str, str], list[Offering]] = {}
        for o in sorted(offerings, key=lambda o: (o.provider, o.region, o.zone or "", o.instance_type)):
            if not is_blocked(blocked, o):
                groups.setdefault((o.provider, o.region, o.instance_type), []).append(o)
        self.keys = list(groups)
        n = len(self.keys)
        self.od_offer: list[Offering] = []
        self.sp_offer: list[Offering] = []
        od = np.empty(n)
        sp = np.empty(n)
        sp_is_spot = np.zeros(n, dtype=bool)
        for i, members in enumerate(groups.values()):
            best = min(members, key=lambda o: o.price)  # first of equals: deterministic
            self.od_offer.append(best)
            od[i] = best.price
            cheap = min(members, key=lambda o: min(o.price, o.spot_price if o.spot_price is not None else math.inf))
            self.sp_offer.append(cheap)
            if cheap.spot_price is not None and cheap.spot_price < cheap.price:
                sp[i], sp_is_spot[i] = cheap.spot_price, True
            else:
                sp[i] = best.price
                self.sp_offer[-1] = best
        self.od, self.sp, self.sp_is_spot = od, sp, sp_is_spot
        rep = [m[0] for m in groups.values()]
        self.rep = rep
        self.vcpus = np.array([o.vcpus for o in rep])
        self.mem = np.array([o.memory_gib for o in rep])
        self.acc = np.array([(o.accelerator or "").lower() for o in rep], dtype=object)
        self.acc_count = np.array([o.accelerator_count for o in rep])
        self.itype = np.array([o.instance_type.lower() for o in rep], dtype=object)
        self.provider = np.array([k[0] for k in self.keys], dtype=object)
        self.region = np.array([k[1] for k in self.keys], dtype=object)
        self.loc = [(k[0], k[1]) for k in self.keys]
        by_loc: dict[tuple[str, str], list[int]] = {}
        for i, loc in enumerate(self.loc):
            by_loc.setdefault(loc, []).append(i)
        self.by_loc = {loc: np.array(v) for loc, v in by_loc.items()}
        self._usage: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def feasible(self, r: PlacementRequest) -> tuple[np.ndarray, np.ndarray]:
        """(mask of rows that fit r, $/h per machine of each row in r's market)."""
        m = (self.vcpus >= r.cpu) & (self.mem >= r.memory_gib)
        if r.accelerator is not None:
            m &= (self.acc == r.accelerator.lower()) & (self.acc_count >= r.accelerator_count)
        if r.instance_type is not None:
            m &= self.itype == r.instance_type.lower()
        if r.providers:
            m &= np.isin(self.provider, list(r.providers))
        if r.exclude_providers:
            m &= ~np.isin(self.provider, list(r.exclude_providers))
        if r.regions:
            m &= np.isin(self.region, list(r.regions))
        if r.exclude_regions:
            m &= ~np.isin(self.region, list(r.exclude_regions))
        price = self.sp if r.spot else self.od
        if r.max_price is not None:
            m &= price <= r.max_price
        return m, price

    def usage(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """Per row, how much of quota resource `key` one machine uses (on-demand mode, spot mode)."""
        if key not in self._usage:
            _check_quota_key(key)
            market, base_key = (key.split(":", 1) if key.startswith(("spot:", "on-demand:")) else ("", key))
            if base_key == "instances":
                per = np.ones(len(self.keys))
            elif base_key == "vcpus":
                per = self.vcpus.astype(float)
            elif base_key == "memory_gib":
                per = self.mem.astype(float)
            elif base_key == "gpus":
                per = self.acc_count.astype(float)
            else:
                per = self.acc_count * (self.acc == base_key[5:].lower()).astype(float)
            if market == "spot":
                pair = (np.zeros_like(per), per * self.sp_is_spot)
            elif market == "on-demand":
                pair = (per, per * ~self.sp_is_spot)
            else:
                pair = (per, per)
            self._usage[key] = pair
        return self._usage[key]

    def dominance(self, quotas: Mapping[tuple[str, str], Mapping[str, float]], spot: bool):
        """Sparse n x n: [i, j] when rows i and j are in the same quota'd region and i is as cheap
        or cheaper than j in this market while using no more of any of the region's quota'd
        resources (ties go to the earlier row, so two equal rows never remove each other)."""
        price = self.sp if spot else self.od
        ii, jj = [], []
        for loc, limits in quotas.items():
            idx = self.by_loc.get(loc)
            if idx is None or idx.size < 2:
                continue
            p = price[idx]
            u = np.stack([self.usage(k)[1 if spot else 0][idx] for k in limits], axis=1) if limits else np.zeros((idx.size, 0))
            le_u = (u[:, None, :] <= u[None, :, :]).all(axis=2)
            lt_u = (u[:, None, :] < u[None, :, :]).any(axis=2)
            earlier = np.arange(idx.size)[:, None] < np.arange(idx.size)[None, :]
            dom = (p[:, None] <= p[None, :]) & le_u & ((p[:, None] < p[None, :]) | lt_u | earlier)
            a, b = np.nonzero(dom)
            ii.append(idx[a])
            jj.append(idx[b])
        n = len(self.keys)
        if not ii:
            return coo_array((n, n)).tocsr()
        i, j = np.concatenate(ii), np.concatenate(jj)
        return coo_array((np.ones(i.size), (i, j)), shape=(n, n)).tocsr()

    def candidate(self, row: int, r: PlacementRequest) -> Candidate:
        spot = bool(r.spot and self.sp_is_spot[row])
        o = self.sp_offer[row] if r.spot else self.od_offer[row]
        hourly = float(self.sp[row] if r.spot else self.od[row])
        return Candidate(o, spot, hourly, hourly * r.count, _speed(r, o))


def place_batch(
    requests: Sequence[PlacementRequest],
    offerings: Sequence[Offering],
    quotas: Mapping[tuple[str, str], Mapping[str, float]] | None = None,
    blocked: frozenset = frozenset(),
) -> BatchPlacement:
    """Place every request (each: `count` machines of one offering) at minimum total $/h such that,
    for each (provider, region) in `quotas`, the machines placed there use at most the given amount
    of each resource (see `quota_usage`). Regions without an entry are unlimited. Exact: an integer
    program solved by scipy.optimize.milp (HiGHS) with a zero optimality gap. The objective is
    always cost here; ties between equally cheap choices go to the earlier (provider, region, zone,
    type). Raises Unschedulable when one request fits nowhere (with rank's reason) or when the
    quotas cannot hold all requests together."""
    quotas = quotas or {}
    for loc, limits in quotas.items():
        for key, limit in limits.items():
            _check_quota_key(key)
            if not (limit >= 0):
                raise InvalidSpec(f"quota {loc[0]}/{loc[1]} {key} must be >= 0, got {limit}")
    if not requests:
        return BatchPlacement((), 0.0, {})
    table = _Table(offerings, blocked)
    n = len(table.keys)
    constrained = np.array([loc in quotas for loc in table.loc], dtype=bool)

    classes: dict[tuple, list[int]] = {}
    for i, r in enumerate(requests):
        classes.setdefault(_class_key(r), []).append(i)
    class_list = list(classes.values())
    reps = [requests[members[0]] for members in class_list]

    # Candidate rows per class, reduced without losing any optimum:
    # - outside the quota'd regions only the cheapest row matters (it uses no quota);
    # - inside, only rows cheaper than that one, and within one region only rows that no other
    #   feasible row dominates (as cheap or cheaper, using no more of any quota'd resource).
    base: list[list[int]] = []
    limited = np.zeros((len(reps), n), dtype=bool)
    prices = np.empty((len(reps), n))
    for c, r in enumerate(reps):
        mask, price = table.feasible(r)
        if not mask.any():
            try:
                rank(r, offerings, blocked)
            except (Unschedulable, NotFound, InvalidSpec) as e:
                e.message = f"request {class_list[c][0]}: {e.message}"
                e.args = (e.message,)
                raise
            raise Unschedulable(f"request {class_list[c][0]}: no offering fits {r.describe()}")  # pragma: no cover
        prices[c] = price
        free = np.flatnonzero(mask & ~constrained)
        bound = math.inf
        base.append([])
        if free.size:
            best = int(free[np.argmin(price[free])])
            base[c].append(best)
            bound = price[best]
        limited[c] = mask & constrained & (price < bound)
    if limited.any():
        spot_mode = np.array([r.spot for r in reps])
        for mode in (False, True):
            sel = np.flatnonzero(spot_mode == mode)
            if sel.size and limited[sel].any():
                dom = table.dominance(quotas, mode)  # dom[i, j]: row i dominates row j
                dominated = (dom.T @ limited[sel].T.astype(np.float64)).T > 0
                limited[sel] &= ~dominated
    var_class: list[int] = []
    var_row: list[int] = []
    for c in range(len(reps)):
        rows = base[c] + np.flatnonzero(limited[c]).tolist()
        var_class.extend([c] * len(rows))
        var_row.extend(rows)
    vc = np.array(var_class)
    vr = np.array(var_row)
    counts = np.array([len(m) for m in class_list], dtype=float)
    machines = np.array([r.count for r in reps], dtype=float)
    cost = prices[vc, vr] * machines[vc]
    x = _solve(table, reps, counts, machines, vc, vr, cost, quotas, len(requests))

    assignments: list[Candidate | None] = [None] * len(requests)
    usage: dict[tuple[str, str], dict[str, float]] = {}
    order = np.lexsort((vr, cost, vc))
    next_member = [0] * len(class_list)
    for v in order.tolist():
        c, k = int(vc[v]), int(round(x[v]))
        r = reps[c]
        for _ in range(k):
            cand = table.candidate(int(vr[v]), r)
            assignments[class_list[c][next_member[c]]] = cand
            next_member[c] += 1
            loc = (cand.offering.provider, cand.offering.region)
            if loc in quotas:
                used = usage.setdefault(loc, {key: 0.0 for key in quotas[loc]})
                for key in quotas[loc]:
                    used[key] += quota_usage(key, cand.offering, cand.spot, r.count)
    final = tuple(a for a in assignments if a is not None)
    assert len(final) == len(requests)
    return BatchPlacement(final, float(sum(a.total_hourly for a in final)), usage)


def _solve(table: _Table, reps: list[PlacementRequest], counts: np.ndarray, machines: np.ndarray, vc: np.ndarray,
           vr: np.ndarray, cost: np.ndarray, quotas: Mapping[tuple[str, str], Mapping[str, float]],
           n_requests: int) -> np.ndarray:
    nv = vr.size
    spot = np.array([r.spot for r in reps])[vc]
    loc_id = {loc: i for i, loc in enumerate(quotas)}
    var_loc = np.array([loc_id.get(table.loc[row], -1) for row in vr.tolist()])
    qi, qj, qv, limits = [], [], [], []
    for loc, lims in quotas.items():
        at = np.flatnonzero(var_loc == loc_id[loc])
        if not at.size:
            continue
        for key, limit in lims.items():
            u_od, u_sp = table.usage(key)
            a = np.where(spot[at], u_sp[vr[at]], u_od[vr[at]]) * machines[vc[at]]
            nz = a != 0
            if nz.any():
                qi.append(np.full(int(nz.sum()), len(limits)))
                qj.append(at[nz])
                qv.append(a[nz])
                limits.append(limit)
    # Start from the cheapest choice of every class (ties: the earlier row).
    x = np.zeros(nv)
    order = np.lexsort((vr, cost, vc))
    first = order[np.r_[True, vc[order][1:] != vc[order][:-1]]]
    x[first] = counts[vc[first]]
    if not limits:
        return x
    lim = np.array(limits, dtype=float)
    a_q = coo_array((np.concatenate(qv), (np.concatenate(qi), np.concatenate(qj))), shape=(lim.size, nv)).tocsr()
    if np.all(a_q @ x <= lim + 1e-9):  # the unconstrained optimum fits: it is the optimum
        return x
    a_eq = coo_array((np.ones(nv), (vc, np.arange(nv))), shape=(counts.size, nv)).tocsr()
    res = milp(cost, integrality=np.ones(nv), bounds=Bounds(0, counts[vc]),
               constraints=[LinearConstraint(a_eq, counts, counts), LinearConstraint(a_q, -np.inf, lim)],
               options={"mip_rel_gap": 0.0})
    if res.status == 2 or res.x is None:
        limited = ", ".join(f"{p}/{r}: " + " ".join(f"{k}<={v:g}" for k, v in lim_.items())
                            for (p, r), lim_ in sorted(quotas.items()))
        raise Unschedulable(f"the {n_requests} requests cannot all be placed within the quotas ({limited}); "
                            "each fits on its own: raise a quota, allow more regions or providers, or place fewer")
    if res.status != 0:  # pragma: no cover - HiGHS stopped early (time or node limit): not exact
        raise Unschedulable(f"batch placement did not reach an optimum: {res.message}")
    return np.round(res.x)
