"""Request bodies that are not specs."""

from __future__ import annotations

from datetime import datetime

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints


#: the largest integer every store column holds (PostgreSQL INTEGER)
MAX_INT = 2**31 - 1


class MetricReport(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

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


class Routes(BaseModel):
    deployments: dict[str, list[RouteEndpoint]]


class ReleaseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[str] = Field(min_length=1, max_length=1000)


class TokenBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="who or what holds the token (shown in audit events)", max_length=63)
    workspace: str = Field("default", max_length=63)
    role: str = Field("member", description="admin, member or viewer")
    expires: str | None = Field(None, description="lifetime, e.g. '30d' or '12h'; none: never expires",
                                max_length=32)


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
