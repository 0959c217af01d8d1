"""Request bodies that are not specs."""

from __future__ import annotations

from datetime import datetime

from typing import Literal, Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator


#: the largest integer every store column holds (PostgreSQL INTEGER)
MAX_INT = 2**31 - 1


class MetricReport(BaseModel):
    #: a loss that went NaN or infinite must reach the control plane (health.on_nan): JSON has no NaN,
    #: so it comes as the string "NaN", "Infinity" or "-Infinity"
    model_config = ConfigDict(extra="forbid")

    step: int | None = Field(None, ge=0, le=MAX_INT)
    time: datetime | None = None
    #: metric names fit the store's column (String(128))
    values: dict[Annotated[str, StringConstraints(min_length=1, max_length=128)], float] = Field(min_length=1)


class MetricsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    attempt: int | None = Field(None, ge=1, le=MAX_INT)
    points: list[MetricReport] = Field(min_length=1, max_length=10000)


class Accepted(BaseModel):
    accepted: int


class ScaleBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    replicas: int = Field(ge=0, le=256)


class RouteEndpoint(BaseModel):
    replica_id: str
    host: str
    port: int
    ready: bool
    generation: int = 0  # the deployment's spec generation this replica runs


class RouteSplit(BaseModel):
    """A canary rollout's traffic split: `weight` percent to the replicas of `canary_generation`."""

    canary_generation: int
    weight: int = Field(ge=0, le=100)
    stable_generation: int = 0


class Routes(BaseModel):
    deployments: dict[str, list[RouteEndpoint]]
    #: deployments that may scale from zero: a gateway holds their requests while a replica starts
    hold: list[str] = []
    #: `auth: token` deployments -> {SHA-256 (hex) of a token made for it: expiry (epoch s) or null}
    auth: dict[str, dict[str, float | None]] = {}
    #: deployments in a canary rollout -> how their traffic is split between generations
    splits: dict[str, RouteSplit] = {}


#: counters grow for the life of a gateway; 2**53 keeps them exact as JSON numbers
MAX_COUNT = 2**53


class GenerationCounters(BaseModel):
    """One generation's answers as one gateway counted them while a canary split was on."""

    model_config = ConfigDict(extra="ignore")

    requests: int = Field(0, ge=0, le=MAX_COUNT)
    errors: int = Field(0, ge=0, le=MAX_COUNT, description="answered 5xx or failed")
    buckets: list[int] = Field(default_factory=list, max_length=64,
                               description="latency histogram counts (the gateway's bucket bounds, then +Inf)")

    @field_validator("buckets")
    @classmethod
    def _counts(cls, v: list[int]) -> list[int]:
        if any(not 0 <= x <= MAX_COUNT for x in v):
            raise ValueError(f"bucket counts must be between 0 and {MAX_COUNT}")
        return v


class GatewayCounters(BaseModel):
    """One deployment's counters as one gateway saw them since it started."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    arrivals_total: int = Field(0, ge=0, le=MAX_COUNT, description="requests that arrived (demand)")
    requests_total: int = Field(0, ge=0, le=MAX_COUNT, description="requests answered")
    in_flight: int = Field(0, ge=0, le=MAX_COUNT, description="requests arrived and not yet answered")
    latency_sum: float = Field(0.0, ge=0, le=1e15, description="seconds, summed over answered requests")
    latency_count: int = Field(0, ge=0, le=MAX_COUNT)
    in_flight_seconds: float = Field(0.0, ge=0, le=1e15, description="requests in flight integrated over time")
    #: during a canary rollout: generation -> its counters
    generations: dict[str, GenerationCounters] = Field(default_factory=dict, max_length=64)

    @field_validator("generations")
    @classmethod
    def _generation_keys(cls, v: dict[str, GenerationCounters]) -> dict[str, GenerationCounters]:
        for k in v:
            if not k.isdigit() or len(k) > 9:
                raise ValueError(f"generation {k!r} is not a whole number")
        return v


class ReplicaLoad(BaseModel):
    model_config = ConfigDict(extra="ignore")

    host: str = Field(min_length=1, max_length=255)
    port: int = Field(ge=1, le=65535)
    in_flight: int = Field(0, ge=0, le=MAX_COUNT, description="requests being proxied there now")
    routed: bool = Field(False, description="whether the gateway's table routes new requests there now")


class GatewaySync(BaseModel):
    """What a standalone gateway (one worker process) reports at each poll."""

    model_config = ConfigDict(extra="ignore")

    gateway_id: str = Field(pattern=r"^[A-Za-z0-9._:-]{1,100}$", description="unique per gateway process")
    deployments: dict[str, GatewayCounters] = Field(default_factory=dict, max_length=100_000)
    replicas: list[ReplicaLoad] = Field(default_factory=list, max_length=100_000)


class CordonBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field("", max_length=500, description="why no new work should land on the node")


class ClusterBody(BaseModel):
    """`cumulo cluster add`: a Ray cluster (its dashboard address) or this machine's Slurm."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=63, description="lowercase letters, digits and '-'")
    kind: Literal["ray", "slurm"]
    address: str | None = Field(None, max_length=2048, description="Ray: what `ray job submit --address` takes")
    partition: str | None = Field(None, max_length=63, description="Slurm: the partition to submit to")
    join: str | None = Field(None, max_length=255, description="Ray: the GCS address (HOST:PORT) machines launched "
                             "for the cluster join (default: the dashboard's host, port 6379)")
    artifacts: str | None = Field(None, max_length=4096,
                                  description="a folder every node sees (default: under the control plane's home)")


class ReleaseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: node or pool ids as `cumulo resources list` shows them (a NUL byte is a 422, never a 500 on PostgreSQL)
    ids: list[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]] = Field(
        min_length=1, max_length=1000)


class TokenBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="who or what holds the token (shown in audit events)", max_length=63)
    workspace: str = Field("default", max_length=63)
    role: str = Field("member", description="admin, member, viewer, or metrics (reads /metrics only)")
    expires: str | None = Field(None, description="lifetime, e.g. '30d' or '12h'; none: never expires",
                                max_length=32)
    deployment: str | None = Field(None, max_length=63,
                                   description="a token for this deployment's /d/ routes only (`auth: token`)")


class SecretBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=63)
    value: str = Field(min_length=1, max_length=65536)
    overwrite: bool = False


class QuotaBody(BaseModel):
    """Limits of a workspace; an absent field is no limit."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    cpu: float | None = Field(None, ge=0, le=1e6, description="CPUs its running work may hold")
    gpu: int | None = Field(None, ge=0, le=1_000_000, description="GPUs its running work may hold")
    nodes: int | None = Field(None, ge=0, le=1_000_000, description="cloud nodes it may keep")
    price_per_hour: float | None = Field(None, ge=0, le=1e9, description="$/h its cloud nodes may cost together")
    budget_per_month: float | None = Field(None, ge=0, le=1e12, description="$ it may spend in a calendar month (UTC)")


class WorkspaceBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=63)
    quota: QuotaBody | None = None
