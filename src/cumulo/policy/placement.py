"""Where should a workload run: feasible offerings ranked by cost or speed, failover blocking, and
exact batch placement under per-region quotas. Pure: core, numpy and scipy only; no clock, no I/O.

- `rank(request, offerings, blocked)` -> feasible `Candidate`s, best first (market chosen per
  offering: spot when allowed and cheaper). Nothing feasible -> `Unschedulable` naming the
  constraint that excluded everything.
- `block(blocked, offering, scope)` -> a new `Blocked` set after a launch failed with a
  `ProviderError` of that scope ("zone", "region", "provider"); `rank` skips blocked locations, so
  the caller's failover loop is: rank, launch the first, on failure block and rank again.
- batch placement under quotas lives in `placement_batch` (it loads scipy; ranking does not).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType


from cumulo.core.errors import InvalidSpec, NotFound, Unschedulable
from cumulo.core.offerings import Offering
from cumulo.core.offerings import parse_accelerator as _parse_accelerator

__all__ = [
    "DEFAULT_SPEEDS", "OBJECTIVES", "SCOPES", "Blocked", "Candidate", "PlacementRequest",
    "block", "is_blocked", "parse_accelerator", "rank",
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



def parse_accelerator(text: str) -> tuple[str, int]:
    """'A100:8' -> ('A100', 8); 'T4' -> ('T4', 1)."""
    name, count = _parse_accelerator(text, field="accelerator", min_count=0)  # counts are checked below
    return name, 1 if count is None else count


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
