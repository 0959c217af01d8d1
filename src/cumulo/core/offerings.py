"""Capacity vocabulary shared by the catalog, placement, providers and the control plane."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


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
