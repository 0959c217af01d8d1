"""What every gateway is told: routes, the hold list and which tokens open which deployments."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from cumulo.core.tokens import route_key
from cumulo.store import deployments as store
from cumulo.store.models import Deployment, Replica, Token


@dataclass(frozen=True)
class SplitView:
    """A deployment in a canary rollout: `weight` percent of its traffic to `canary_generation`."""

    canary_generation: int
    weight: int
    stable_generation: int
    generations: dict[int, int]  # ordinal -> generation of each of its ready replicas


@dataclass(frozen=True)
class GatewayView:
    routes: dict[str, list[tuple[int, str, int]]]  # route key -> [(ordinal, host, port)] of ready replicas
    hold: set[str]  # route keys that may scale from zero
    #: route key of each `auth: token` deployment -> {SHA-256 of a token made for it: expiry (epoch s) or None}
    auth: dict[str, dict[str, float | None]]
    #: route key of each deployment in a canary rollout -> its traffic split
    splits: dict[str, SplitView] = field(default_factory=dict)


def gateway_view(s: Session, now: datetime) -> GatewayView:
    auth: dict[str, dict[str, float | None]] = {}
    owners: dict[tuple[str, str], str] = {}
    splits: dict[str, SplitView] = {}
    for dep_id, name, ws, spec, rollout in s.execute(
            select(Deployment.id, Deployment.name, Deployment.workspace, Deployment.spec, Deployment.rollout)):
        if rollout and rollout.get("phase") == "Progressing":
            gens = dict(s.execute(select(Replica.ordinal, Replica.generation).where(
                Replica.deployment_id == dep_id, Replica.state == "Ready")).all())
            splits[route_key(name, ws)] = SplitView(int(rollout["canary_generation"]), int(rollout.get("weight", 0)),
                                                    int(rollout["stable_generation"]), gens)
        if spec.get("auth") == "token":
            key = route_key(name, ws)
            auth[key] = {}
            owners[(ws, name)] = key
    if owners:
        rows = s.execute(select(Token.workspace, Token.deployment, Token.hash, Token.expires_at)
                         .where(Token.deployment.is_not(None), Token.revoked_at.is_(None)))
        for ws, dep, digest, expires in rows:
            key = owners.get((ws, dep))
            if key is not None and (expires is None or expires > now):
                auth[key][digest] = expires.timestamp() if expires is not None else None
    return GatewayView(store.ready_endpoints(s), store.scale_from_zero_names(s), auth, splits)
