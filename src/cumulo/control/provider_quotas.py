"""Provider quotas: the cloud accounts' own limits per (provider, region) that placement keeps
new machines within, and what cumulo's live nodes already hold of them.

The limits are the operator's to state (e.g. from AWS's Service Quotas console), in
`$CUMULO_HOME/provider-quotas.yaml`:

    aws:
      us-east-1: {vcpus: 64, "spot:vcpus": 32, "gpus:T4": 8}
      us-west-2: {instances: 10}

Resources: instances, vcpus, memory_gib, gpus, gpus:NAME, each optionally "spot:" or "on-demand:"
(`policy.quota.quota_usage`). A region without an entry is unlimited. The local provider is one
machine whatever the file says (`local/local: instances 1`). What holds a quota is every live
cloud node of this installation, in every workspace (Provisioning ones too: they are about to
launch where their row says). `lock` serialises the decisions that consume quota (a create, a
failover), so two of them never spend the same room.
"""

from __future__ import annotations

import threading
from pathlib import Path

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from cumulo.core.errors import InvalidSpec
from cumulo.core.offerings import Offering
from cumulo.core.settings import home
from cumulo.core.states import NodeState
from cumulo.policy.quota import ProviderQuotas, check_quota_key, quotas_left
from cumulo.store.models import Node

FILE = "provider-quotas.yaml"
LOCAL = {("local", "local"): {"instances": 1.0}}
LIVE = [s.value for s in NodeState if not s.terminal]

lock = threading.Lock()
_cache: dict[tuple[str, float], dict] = {}


def parse(doc: object, where: str) -> dict[tuple[str, str], dict[str, float]]:
    """The YAML document as (provider, region) -> {resource: limit}; InvalidSpec names what is wrong."""
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise InvalidSpec(f"{where}: expected provider: {{region: {{resource: limit}}}}, got {type(doc).__name__}")
    out: dict[tuple[str, str], dict[str, float]] = {}
    for provider, regions in doc.items():
        if not isinstance(regions, dict):
            raise InvalidSpec(f"{where}: {provider}: expected {{region: {{resource: limit}}}}")
        for region, limits in regions.items():
            if not isinstance(limits, dict):
                raise InvalidSpec(f"{where}: {provider}.{region}: expected {{resource: limit}}")
            for key, limit in limits.items():
                try:
                    check_quota_key(str(key))
                except InvalidSpec as exc:
                    raise InvalidSpec(f"{where}: {provider}.{region}: {exc.message}") from None
                if isinstance(limit, bool) or not isinstance(limit, int | float) or not limit >= 0:
                    raise InvalidSpec(f"{where}: {provider}.{region}.{key}: the limit must be a number >= 0, got {limit!r}")
            out[(str(provider), str(region))] = {str(k): float(v) for k, v in limits.items()}
    return out


def limits(path: Path | None = None) -> dict[tuple[str, str], dict[str, float]]:
    """The limits in force: the file's (re-read when it changes) and the local machine's."""
    path = path or home() / FILE
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return dict(LOCAL)
    key = (str(path), mtime)
    if key not in _cache:
        try:
            doc = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise InvalidSpec(f"{path}: not valid YAML: {exc}") from None
        _cache.clear()
        _cache[key] = parse(doc, str(path))
    return {**_cache[key], **LOCAL}


def node_offering(n: Node) -> Offering:
    """A node row as the offering it holds (for what it uses of a quota)."""
    names = n.gpu_names or []
    return Offering(provider=n.provider, region=n.region or "", zone=n.zone, instance_type=n.instance_type or "",
                    vcpus=n.cpu, memory_gib=n.memory / 2**30, accelerator=names[0] if names else None,
                    accelerator_count=len(n.gpus or []), price=n.price)


def left(s: Session, quotas: ProviderQuotas, *, exclude: str | None = None) -> dict[tuple[str, str], dict[str, float]]:
    """What `quotas` leave after every live cloud node (but `exclude`, the node being placed)."""
    if not quotas:
        return {}
    rows = s.scalars(select(Node).where(Node.pool_id.is_not(None), Node.state.in_(LIVE)))
    return quotas_left(quotas, ((node_offering(n), bool(n.spot)) for n in rows if n.name != exclude))
