"""Capacity vocabulary shared by the catalog, placement, providers and the control plane."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from cumulo.core.errors import InvalidSpec

_ACCELERATOR = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9_-]*)\s*(?::\s*(\d+)\s*)?$")


def parse_accelerator(text: str, *, field: str = "accelerators", min_count: int = 1) -> tuple[str, int | None]:
    """'A100:8' -> ('A100', 8); 'T4' -> ('T4', None): no count given. Errors name `field`; a count
    below `min_count` is one of them (a caller that checks counts itself passes 0)."""
    m = _ACCELERATOR.match(text or "")
    if not m:
        raise InvalidSpec(f"{field}: {text!r} must look like NAME or NAME:COUNT (e.g. A100:8)",
                          errors=[{"field": field, "message": "expected NAME[:COUNT]"}])
    count = int(m.group(2)) if m.group(2) is not None else None
    if count is not None and count < min_count:
        raise InvalidSpec(f"{field}: the count must be at least 1, got {count}",
                          errors=[{"field": field, "message": "count must be >= 1"}])
    return m.group(1), count


@dataclass(frozen=True)
class Offering:
    """One priced instance type in one region/zone of one provider (a catalog row)."""

    provider: str  # "aws" | "gcp" | "azure" | "local"
    region: str
    zone: str | None
    instance_type: str
    vcpus: float
    memory_gib: float
    accelerator: str | None = None  # e.g. "T4", "A100", "H100"
    accelerator_count: int = 0
    accelerator_memory_gib: float = 0.0  # per accelerator
    price: float = 0.0  # on-demand $/hour
    spot_price: float | None = None  # $/hour; None when the offering has no spot market


#: the engine label (Ray node label) a machine's bootstrap gives its node: the cumulo node's id, so the
#: cluster sync can tell which engine node is which launched machine (providers/bootstrap.py)
NODE_ID_LABEL = "cumulo.io/node-id"
#: ... and which of the node's machines it is (0, then 1 after a replacement, ...): a replaced
#: machine still listed by the engine is never taken for its successor
GENERATION_LABEL = "cumulo.io/generation"


class MachineState:
    """Provider-normalised machine states."""

    PENDING = "pending"
    RUNNING = "running"
    TERMINATING = "terminating"
    TERMINATED = "terminated"
    PREEMPTED = "preempted"  # a spot machine the provider took back


@dataclass(frozen=True)
class Machine:
    """A machine as the provider reports it."""

    id: str  # the provider's instance id
    provider: str
    region: str
    zone: str | None
    instance_type: str
    state: str  # a MachineState value
    spot: bool = False
    tags: dict[str, str] = field(default_factory=dict)
    launched_at: datetime | None = None
    private_ip: str | None = None
    public_ip: str | None = None
    state_reason: str = ""
