"""Secrets in the store (sealed values only; core/keyring.py seals and opens them)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from cumulo.core.errors import InvalidSpec
from cumulo.core.specs import SecretRef, secret_refs
from cumulo.core.states import JobState
from cumulo.store.models import Deployment, Job, Secret

DEFAULT_WORKSPACE = "default"


def get(s: Session, name: str, workspace: str = DEFAULT_WORKSPACE) -> Secret | None:
    return s.get(Secret, (name, workspace))


def listed(s: Session, workspace: str = DEFAULT_WORKSPACE) -> list[Secret]:
    return list(s.scalars(select(Secret).where(Secret.workspace == workspace).order_by(Secret.name)))


def every(s: Session) -> list[Secret]:
    return list(s.scalars(select(Secret)))


def require(s: Session, env: dict[str, str | SecretRef], workspace: str = DEFAULT_WORKSPACE) -> None:
    """422 naming each `env.VAR` whose secret does not exist."""
    missing = [(var, name) for var, name in secret_refs(env).items() if get(s, name, workspace) is None]
    if missing:
        errors = [{"field": f"env.{var}", "message": f"no secret named {name!r}; create it with "
                                                      f"`cumulo secret create {name} --from-literal ...`"}
                  for var, name in missing]
        raise InvalidSpec("; ".join(f"{e['field']}: {e['message']}" for e in errors), errors=errors)


def users(s: Session, name: str, workspace: str = DEFAULT_WORKSPACE) -> list[str]:
    """The unfinished jobs and the deployments of the workspace whose spec refers to secret `name`."""
    live = [st.value for st in JobState if not st.terminal]
    out = [f"job {n}" for n, spec in s.execute(select(Job.name, Job.spec).where(Job.workspace == workspace,
                                                                                   Job.state.in_(live)))
           if name in _refs(spec)]
    out += [f"deployment {n}" for n, spec in s.execute(select(Deployment.name, Deployment.spec)
                                                        .where(Deployment.workspace == workspace))
            if name in _refs(spec)]
    return out


def _refs(spec: dict) -> set[str]:
    return {v["secret"] for v in (spec.get("env") or {}).values() if isinstance(v, dict) and "secret" in v}
