"""What holds resources on this node: live job attempts and live deployment replicas."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import String, literal, select, union_all
from sqlalchemy.orm import Session

from cumulo.store.deployments import LIVE
from cumulo.store.jobs import ACTIVE_ATTEMPT
from cumulo.store.models import Attempt, Replica

#: (kind, owner id, number): ("job", job id, attempt number) or ("replica", deployment id, ordinal)
Holder = tuple[str, str, int]


def holders(session: Session) -> list[Holder]:
    """Every attempt and replica holding resources, in one round trip and without decoding JSON."""
    stmt = union_all(
        select(literal("job", String), Attempt.job_id, Attempt.number).where(Attempt.state.in_(ACTIVE_ATTEMPT)),
        select(literal("replica", String), Replica.deployment_id, Replica.ordinal).where(Replica.state.in_(LIVE)),
    )
    return [(kind, owner, number) for kind, owner, number in session.execute(stmt)]


def allocations_of(session: Session, keys: Sequence[Holder]) -> dict[Holder, dict]:
    """The allocation (as stored) of each of these holders."""
    out: dict[Holder, dict] = {}
    for kind, model, owner, number in (("job", Attempt, Attempt.job_id, Attempt.number),
                                       ("replica", Replica, Replica.deployment_id, Replica.ordinal)):
        wanted = {k for k in keys if k[0] == kind}
        if not wanted:
            continue
        rows = session.execute(select(owner, number, model.allocation).where(owner.in_({k[1] for k in wanted})))
        out.update({(kind, o, n): a for o, n, a in rows if (kind, o, n) in wanted})
    return out
