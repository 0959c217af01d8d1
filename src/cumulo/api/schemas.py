"""Request bodies that are not specs."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


#: the largest integer every store column holds (PostgreSQL INTEGER)
MAX_INT = 2**31 - 1


class MetricReport(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    step: int | None = Field(None, ge=0, le=MAX_INT)
    time: datetime | None = None
    values: dict[str, float] = Field(min_length=1)


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
