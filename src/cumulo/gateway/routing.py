"""The route table and the balancing choice. PURE: no clock, no I/O, randomness only from a source
passed in.

A route table maps a deployment name to its replicas' endpoints. The gateway sends each request to
one *ready* endpoint, chosen by least outstanding requests with the power of two choices: sample two
distinct candidates at random and take the one with fewer requests in flight (Mitzenmacher 2001).
It balances nearly as well as a full least-loaded scan, costs O(1) per request, and avoids the herd
behaviour of always picking the global minimum from slightly stale counts.

During a canary rollout a deployment has a `Split`: the new generation's ready endpoints get
`weight` percent of the requests and the others the rest (`choose_group`, one random draw; a group
with no ready endpoint hands its share to the other), and the power of two choices runs within the
chosen group. Deployments without a split pay one dict lookup.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import unquote

__all__ = ["Endpoint", "RandomSource", "RouteTable", "Split", "choose_group", "parse_routes", "parse_splits", "pick",
           "split_path"]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One replica of a deployment, as the gateway reaches it."""

    replica_id: str
    host: str
    port: int
    ready: bool = True
    generation: int = 0  # the deployment's spec generation it runs (0: not said)

    @property
    def key(self) -> tuple[str, str, int]:
        """Identity of the upstream connection pool: a replica id reused on a new port is a new pool."""
        return (self.replica_id, self.host, self.port)


class RandomSource(Protocol):
    """What `pick` needs from a random source; `random.Random(seed)` is one."""

    def randrange(self, stop: int, /) -> int: ...


@dataclass(frozen=True, slots=True)
class Split:
    """A canary rollout's traffic split: `weight` percent (0..100) of the requests go to the
    endpoints of `canary_generation`, the rest to the others (the stable generation's)."""

    canary_generation: int
    weight: int
    stable_generation: int = 0


#: a deployment's split, ready to use: (weight, canary generation, its ready endpoints,
#: stable generation, the other ready endpoints)
Groups = tuple[int, int, tuple[Endpoint, ...], int, tuple[Endpoint, ...]]


def choose_group(groups: Groups, rng: RandomSource) -> tuple[tuple[Endpoint, ...], int]:
    """The endpoints one request may go to, and their generation: the canary's with probability
    weight/100 (one draw), else the stable ones; an empty group hands its share to the other."""
    weight, cgen, canary, sgen, stable = groups
    if canary and (not stable or rng.randrange(100) < weight):
        return canary, cgen
    return stable, sgen


class RouteTable:
    """An immutable snapshot of {deployment name: endpoints}, with the ready ones (and the groups of
    deployments with a canary split) precomputed."""

    __slots__ = ("_all", "_ready", "_groups")

    def __init__(self, routes: Mapping[str, Iterable[Endpoint]] | None = None,
                 splits: Mapping[str, Split] | None = None) -> None:
        self._all: dict[str, tuple[Endpoint, ...]] = {n: tuple(eps) for n, eps in (routes or {}).items()}
        self._ready: dict[str, tuple[Endpoint, ...]] = {
            n: tuple(e for e in eps if e.ready) for n, eps in self._all.items()
        }
        self._groups: dict[str, Groups] = {}
        for n, sp in (splits or {}).items():
            ready = self._ready.get(n)
            if ready is None:
                continue
            canary = tuple(e for e in ready if e.generation == sp.canary_generation)
            stable = tuple(e for e in ready if e.generation != sp.canary_generation)
            self._groups[n] = (max(0, min(100, sp.weight)), sp.canary_generation, canary, sp.stable_generation, stable)

    def groups(self, name: str) -> Groups | None:
        """The canary split of `name` (see choose_group), or None when it has none."""
        return self._groups.get(name)

    def splits(self) -> dict[str, Split]:
        return {n: Split(g[1], g[0], g[3]) for n, g in self._groups.items()}

    def __contains__(self, name: object) -> bool:
        return name in self._all

    def names(self) -> list[str]:
        return sorted(self._all)

    def endpoints(self, name: str) -> tuple[Endpoint, ...]:
        """Every endpoint of `name` (ready or not); empty for an unknown deployment."""
        return self._all.get(name, ())

    def ready(self, name: str) -> tuple[Endpoint, ...] | None:
        """The ready endpoints of `name`, or None when no such deployment is routed."""
        return self._ready.get(name)

    def keys(self) -> set[tuple[str, str, str, int]]:
        """(deployment, replica id, host, port) of every endpoint: replica ids are unique only within
        a deployment (the control plane publishes ordinals), so the deployment is part of the key."""
        return {(n, *e.key) for n, eps in self._all.items() for e in eps}

    def as_dict(self) -> dict[str, list[Endpoint]]:
        return {n: list(eps) for n, eps in self._all.items()}


def split_path(raw_path: bytes) -> tuple[str, bytes] | None:
    """`/d/<name>/<rest>` -> (name, b"/<rest>"); None when the path is not under /d/.

    One view of the path decides both: the raw (still percent-encoded) path, split at its real
    slashes. The first segment is the prefix when it is `d` or its encoding `%64` (RFC 3986 6.2.2.2:
    an encoded unreserved character is the character); the second, percent-decoded, is the name;
    the rest goes to the replica exactly as sent. An encoded slash (%2F) is data, never a separator,
    so `/d%2Fm/x` is not under /d/ and `/d/a%2Fb/x` names the deployment "a/b".
    """
    if raw_path.startswith(b"/d/"):
        start = 3
    elif raw_path[:5].lower() == b"/%64/":
        start = 5
    else:
        return None
    slash = raw_path.find(b"/", start)
    name_raw = raw_path[start:] if slash < 0 else raw_path[start:slash]
    name = name_raw.decode("latin-1")
    if "%" in name:
        name = unquote(name)
    return name, (b"/" if slash < 0 else raw_path[slash:])


def pick(
    ready: Sequence[Endpoint],
    outstanding: Mapping[str, int],
    rng: RandomSource,
    exclude: Collection[str] = (),
) -> Endpoint | None:
    """Choose one of `ready` by power of two choices on `outstanding` (replica id -> requests in
    flight; missing means 0), skipping replica ids in `exclude`. None only when nothing is left.

    Every endpoint given is taken as a candidate only if it is ready, so a caller may pass a raw list.
    Ties go to the first sample, so the choice is a function of (inputs, random draws) alone.
    """
    if exclude or not all(e.ready for e in ready):
        cands: Sequence[Endpoint] = [e for e in ready if e.ready and e.replica_id not in exclude]
    else:
        cands = ready
    n = len(cands)
    if n == 0:
        return None
    if n == 1:
        return cands[0]
    i = rng.randrange(n)
    j = rng.randrange(n - 1)
    if j >= i:
        j += 1  # two distinct samples, uniform over ordered pairs
    a, b = cands[i], cands[j]
    return b if outstanding.get(b.replica_id, 0) < outstanding.get(a.replica_id, 0) else a


def parse_splits(doc: Mapping) -> dict[str, Split]:
    """The routes JSON's canary splits: ``{"splits": {"name": {"canary_generation": int, "weight":
    0..100, "stable_generation": int}}}`` (absent: none). Raises ValueError naming the bad entry."""
    raw = doc.get("splits") or {}
    if not isinstance(raw, Mapping):
        raise ValueError("routes: 'splits' must map deployment names to {canary_generation, weight}")
    out = {}
    for name, sp in raw.items():
        try:
            cgen, weight, sgen = sp["canary_generation"], sp["weight"], sp.get("stable_generation", 0)
            if not all(isinstance(x, int) and not isinstance(x, bool) for x in (cgen, weight, sgen)) \
                    or not 0 <= weight <= 100:
                raise TypeError
        except (KeyError, TypeError, AttributeError):
            raise ValueError(f"routes.splits.{name}: expected "
                             '{"canary_generation": int, "weight": 0..100, "stable_generation": int}, got '
                             + repr(sp)) from None
        out[str(name)] = Split(cgen, weight, sgen)
    return out


def parse_routes(doc: Mapping) -> dict[str, list[Endpoint]]:
    """The control plane's routes JSON -> {name: [Endpoint]}.

    ``{"deployments": {"name": [{"replica_id": str, "host": str, "port": int, "ready": bool,
    "generation": int (optional)}]}}``. Raises ValueError naming the bad entry.
    """
    deps = doc.get("deployments") if isinstance(doc, Mapping) else None
    if not isinstance(deps, Mapping):
        raise ValueError('routes: expected an object {"deployments": {name: [endpoint, ...]}}')
    out: dict[str, list[Endpoint]] = {}
    for name, eps in deps.items():
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError(f"routes: bad deployment name {name!r}")
        if not isinstance(eps, list):
            raise ValueError(f"routes.deployments.{name}: expected a list of endpoints")
        parsed = []
        for i, e in enumerate(eps):
            try:
                rid, host, port = e["replica_id"], e["host"], e["port"]
                ready = e.get("ready", True)
                gen = e.get("generation", 0)
                if not (isinstance(rid, str) and isinstance(host, str) and isinstance(port, int)
                        and not isinstance(port, bool) and 0 < port < 65536 and isinstance(ready, bool)
                        and isinstance(gen, int) and not isinstance(gen, bool)):
                    raise TypeError
            except (KeyError, TypeError, AttributeError):
                raise ValueError(
                    f"routes.deployments.{name}[{i}]: expected "
                    '{"replica_id": str, "host": str, "port": int, "ready": bool}, got ' + repr(e)
                ) from None
            parsed.append(Endpoint(rid, host, port, ready, gen))
        out[name] = parsed
    return out
