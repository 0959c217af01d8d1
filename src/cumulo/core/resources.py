"""What a user asks for when creating resources: the API body of POST /api/v1/resources."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cumulo.core.errors import InvalidSpec
from cumulo.core.offerings import parse_accelerator
from cumulo.core.specs import Duration

class NodeRequest(BaseModel):
    """One machine: an instance type, or the resources it must have."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    instance_type: str | None = None
    cpu: float | None = Field(None, gt=0)
    memory_gib: float | None = Field(None, gt=0)
    accelerators: str | None = Field(None, description="e.g. 'A100:8' or 'T4'")

    @field_validator("accelerators")
    @classmethod
    def _accel(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                parse_accelerator(v)
            except InvalidSpec:
                raise ValueError(f"{v!r} is not NAME or NAME:COUNT, e.g. 'A100:8'") from None
        return v

    @model_validator(mode="after")
    def _something(self) -> NodeRequest:
        if self.instance_type is None and self.cpu is None and self.memory_gib is None and self.accelerators is None:
            raise ValueError("give an instance_type, or cpu / memory_gib / accelerators")
        return self


class ResourcesRequest(BaseModel):
    """Create `count` machines of each request, placed at the lowest price that fits."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    nodes: list[NodeRequest] = Field(min_length=1, max_length=1000)
    providers: list[str] = Field(default_factory=list, description="allowed providers (default: all)")
    regions: list[str] = Field(default_factory=list, description="allowed regions (default: all)")
    spot: bool = Field(False, description="allow spot/preemptible capacity when it is cheaper")
    max_price: float | None = Field(None, gt=0, description="$/hour per machine at most")
    idle_ttl: Duration | None = Field(None, gt=0, description="release a node idle this long")
    cluster: str | None = Field(None, max_length=63, description="a Ray cluster the machines join (their "
                                "bootstrap runs `ray start` with the node's labels); none: they join nothing")
