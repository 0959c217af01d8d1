"""`Client.apply`: create or update objects of every kind from their specs (`cumulo apply FILE`).

One function per kind in `APPLIERS` (kind -> applier); each takes the client and a spec and says
what it did. A new kind (AlertRule, ...) adds its spec to `core.specs.SPEC_KINDS` and an applier
here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cumulo.core.errors import Conflict, NotFound
from cumulo.core.views import ApplyResult

if TYPE_CHECKING:
    from cumulo.sdk.client import Client


def _changed(old: dict, new: dict) -> list[str]:
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def apply_job(client: Client, spec: Any) -> ApplyResult:
    """A job is created once; applying the same spec again changes nothing; a different spec
    under the same name is refused (a job's spec never changes: delete it or rename)."""
    body = spec.model_dump(mode="json")
    try:
        client._call("POST", "/jobs", json=body)
        return ApplyResult(kind="Job", name=spec.name, action="created")
    except Conflict:
        current = client.get_job(spec.name)
        changed = _changed(current.spec.model_dump(mode="json"), body)
        if not changed:
            return ApplyResult(kind="Job", name=spec.name, action="unchanged")
        raise Conflict(f"job {spec.name!r} exists with a different {', '.join(changed)}; a job's spec cannot change: "
                       f"delete it first (`cumulo job delete {spec.name}`) or give the new one another name") from None


def apply_deployment(client: Client, spec: Any) -> ApplyResult:
    body = spec.model_dump(mode="json")
    try:
        before = client.get_deployment(spec.name).spec.model_dump(mode="json")
    except NotFound:
        before = None
    client._call("POST", "/deployments", json=body)
    if before is None:
        return ApplyResult(kind="Deployment", name=spec.name, action="created")
    changed = _changed(before, body)
    return ApplyResult(kind="Deployment", name=spec.name, action="updated" if changed else "unchanged",
                       changed=changed)


def apply_node_pool(client: Client, spec: Any) -> ApplyResult:
    got = client._call("POST", "/nodepools", json=spec.model_dump(mode="json"))
    return ApplyResult(kind="NodePool", name=spec.name, action=got["action"], changed=got.get("changed", []))


def apply_alert_rule(client: Client, spec: Any) -> ApplyResult:
    body = spec.model_dump(mode="json", by_alias=True)
    before = next((r.spec for r in client.alert_rules() if r.name == spec.name), None)
    client._call("PUT", f"/alertrules/{spec.name}", json=body)
    if before is None:
        return ApplyResult(kind="AlertRule", name=spec.name, action="created")
    changed = _changed(before, body)
    return ApplyResult(kind="AlertRule", name=spec.name, action="updated" if changed else "unchanged", changed=changed)


APPLIERS: dict[str, Callable[[Any, Any], ApplyResult]] = {
    "Job": apply_job,
    "Deployment": apply_deployment,
    "NodePool": apply_node_pool,
    "AlertRule": apply_alert_rule,
}
