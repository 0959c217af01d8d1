"""Request bodies that are not specs."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class MetricReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    step: int | None = None
    time: datetime | None = None
    values: dict[str, float] = Field(min_length=1)


class MetricsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    attempt: int | None = Field(None, ge=1)
    points: list[MetricReport] = Field(min_length=1, max_length=10000)


class Accepted(BaseModel):
    accepted: int
