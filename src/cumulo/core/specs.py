"""Specs: what a user asks for, validated by pydantic. An error names the field and the fix."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from cumulo.core.errors import InvalidSpec
from cumulo.core.units import parse_cpu, parse_duration, parse_memory

NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
NAME_HINT = "lowercase letters, digits and '-', 1-63 characters, starting and ending with a letter or digit"

Cpu = Annotated[float, BeforeValidator(parse_cpu)]
Memory = Annotated[int, BeforeValidator(parse_memory)]
Duration = Annotated[float, BeforeValidator(parse_duration)]


def validate_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise ValueError(f"{name!r} is not a valid name: use {NAME_HINT}")
    return name


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Resources(_Model):
    """What ONE worker process needs. Defaults: 1 CPU, 512Mi, no GPU."""

    cpu: Cpu = Field(1.0, gt=0, description="CPUs per worker: 2, 0.5 or '500m'")
    memory: Memory = Field(512 * 2**20, gt=0, description="memory per worker: '4Gi', '512Mi'")
    gpu: int = Field(0, ge=0, le=1024, description="whole NVIDIA GPUs per worker")
    gpu_type: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                                 description="e.g. A100, H100, T4: only nodes whose GPUs are of this type "
                                             "(matched case-insensitively within the name the node reports)")

    @model_validator(mode="after")
    def _type_needs_gpus(self) -> "Resources":
        if self.gpu_type is not None and self.gpu == 0:
            raise ValueError("gpu_type needs gpu: 1 or more")
        return self


class Backoff(_Model):
    """Delay before retry n (n = 1, 2, ...) is min(initial * factor**(n-1), max)."""

    initial: Duration = Field(1.0, ge=0)
    factor: float = Field(2.0, ge=1)
    max: Duration = Field(300.0, ge=0)


class SecretRef(_Model):
    """`env: {HF_TOKEN: {secret: hf-token}}`: the value of a secret (`cumulo secret create`), given
    only to the workload's processes; the spec keeps just the name."""

    secret: str = Field(description="the name of a secret in the workspace")

    _check_name = field_validator("secret")(classmethod(lambda cls, v: validate_name(v)))


def _stringify_env(value: Any) -> Any:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if isinstance(v, (SecretRef, dict)) and (isinstance(v, SecretRef) or set(v) == {"secret"}):
                out[str(k)] = v
                continue
            if isinstance(v, (dict, list)) or v is None:
                raise ValueError(f"env var {k!r} must be a string, number, boolean or {{secret: NAME}}")
            out[str(k)] = str(v).lower() if isinstance(v, bool) else str(v)
        return out
    return value


def secret_refs(env: dict[str, str | SecretRef]) -> dict[str, str]:
    """{variable: secret name} of the variables that refer to a secret."""
    return {k: v.secret for k, v in env.items() if isinstance(v, SecretRef)}


class JobHealth(_Model):
    """How the control plane watches a running job's own reports (`cumulo.report`) and repairs it."""

    progress_timeout: Literal["auto"] | Duration | None = Field(
        "auto", description="an attempt that reports no progress for this long is stalled; auto: three times "
        "the job's own recent report interval and at least 30s (only once the job has reported); "
        "null: never")
    on_stall: Literal["restart", "alert"] = Field(
        "restart", description="restart: stop the attempt and retry from the newest checkpoint (counts as a "
        "retry); alert: only record it")
    on_nan: Literal["fail", "restart", "alert"] = Field(
        "fail", description="a reported loss that is NaN or infinite, or that diverged: fail the job at once "
        "(no retry), restart it (counts as a retry) or only record it")

    @field_validator("progress_timeout")
    @classmethod
    def _positive(cls, v: object) -> object:
        if isinstance(v, float) and v <= 0:
            raise ValueError("must be a positive duration such as 90s or 10m, 'auto', or null")
        return v


class JobSpec(_Model):
    """A batch workload that runs to completion (YAML ``kind: Job``)."""

    kind: Literal["Job"] = "Job"
    name: str = Field(description=f"unique among jobs: {NAME_HINT}")
    command: str | list[str] = Field(description="a shell command line, or an argv list run without a shell")
    workdir: str | None = Field(None, description="absolute directory the command runs in")
    env: Annotated[dict[str, str | SecretRef], BeforeValidator(_stringify_env)] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)
    workers: int = Field(1, ge=1, le=256, description="processes started with RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT")
    placement: Literal["pack", "spread"] = Field(
        "pack", description="pack: workers on as few nodes as possible; spread: one worker per node")
    cluster: str | None = Field(None, description="the cluster to run on (`cumulo cluster list`); "
                                "default: the first that fits, `local` first")
    max_retries: int = Field(0, ge=0, le=100)
    backoff: Backoff = Field(default_factory=Backoff)
    timeout: Duration | None = Field(None, gt=0, description="per attempt; a timed-out attempt counts as failed")
    health: JobHealth = Field(default_factory=JobHealth)

    _check_name = field_validator("name")(classmethod(lambda cls, v: validate_name(v)))
    _check_cluster = field_validator("cluster")(classmethod(lambda cls, v: v if v is None else validate_name(v)))

    @field_validator("command")
    @classmethod
    def _command_not_empty(cls, v: str | list[str]) -> str | list[str]:
        if (isinstance(v, str) and not v.strip()) or (isinstance(v, list) and not v):
            raise ValueError("command is empty: give a shell command line or an argv list")
        return v

    @field_validator("env")
    @classmethod
    def _env_names(cls, v: dict[str, str | SecretRef]) -> dict[str, str | SecretRef]:
        for key in v:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
                raise ValueError(f"{key!r} is not a valid environment variable name")
            if key.startswith("CUMULO_"):
                raise ValueError(f"{key!r}: CUMULO_* variables are set by cumulo itself")
        return v

    @model_validator(mode="after")
    def _backoff_bounds(self) -> "JobSpec":
        if self.backoff.max < self.backoff.initial:
            raise ValueError("backoff.max must be at least backoff.initial")
        return self


class Health(_Model):
    """How the control plane decides a replica is ready, and when it is unhealthy."""

    path: str | None = Field(None, description="GET path; default /readyz for a service, / for a command")
    initial_delay: Duration = Field(0.0, ge=0, description="wait this long after start before the first check")
    period: Duration = Field(2.0, gt=0)
    timeout: Duration = Field(1.0, gt=0)
    failure_threshold: int = Field(3, ge=1, le=1000, description="consecutive failures before a ready replica is replaced")
    startup_timeout: Duration = Field(300.0, gt=0, description="a replica not ready by then is replaced")
    replace_outliers: bool = Field(True, description="replace a replica whose latency or error rate is far beyond "
                                   "its peers' (started first, then drained)")
    replace_before_oom: bool = Field(True, description="replace a replica whose memory grows towards its "
                                     "resources.memory before it gets there")

    @field_validator("path")
    @classmethod
    def _abs_path(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith("/"):
            raise ValueError(f"{v!r} must start with '/'")
        return v


class Analysis(_Model):
    """When a canary step passes: the new generation's numbers over the step's window, measured in
    the same window as the stable generation's."""

    max_error_rate: float = Field(0.01, ge=0, le=1, description="share of the canary's requests answered 5xx "
                                  "or failed (0.01 = 1 %)")
    max_p99_ms: float | None = Field(500.0, gt=0, le=3_600_000, description="the canary's p99 latency in ms; "
                                     "null: not checked")
    min_requests: int = Field(50, ge=1, le=10_000_000, description="requests the canary must have answered in "
                              "the window before it is judged")


class Rollout(_Model):
    """How an update replaces replicas.

    rolling (the default): one by one, at most `max_surge` extra, `max_unavailable` missing.
    canary: new replicas get `steps` percent of the traffic in turn (the stable ones keep serving the
    rest); each step lasts at least `interval` and is promoted only when `analysis` passes; a failing
    analysis rolls back by itself.
    """

    strategy: Literal["rolling", "canary"] = "rolling"
    max_surge: int = Field(1, ge=0, le=256)
    max_unavailable: int = Field(0, ge=0, le=256)
    steps: list[int] = Field(default_factory=lambda: [10, 50, 100], min_length=1, max_length=100,
                             description="canary: percent of the traffic the new version gets at each step; "
                                         "increasing, 1..100, the last one 100")
    interval: Duration = Field(30.0, gt=0, le=7 * 86400, description="canary: how long each step lasts at least")
    analysis: Analysis = Field(default_factory=Analysis)

    @model_validator(mode="after")
    def _can_progress(self) -> "Rollout":
        if self.max_surge == 0 and self.max_unavailable == 0:
            raise ValueError("max_surge and max_unavailable cannot both be 0: the rollout could never progress")
        if self.strategy == "rolling":  # (a stored spec carries the defaults: those are fine)
            given = [f for f in ("analysis", "interval", "steps")
                     if getattr(self, f) != type(self).model_fields[f].get_default(call_default_factory=True)]
            if given:
                raise ValueError(f"{', '.join(given)} only apply to strategy: canary (add `strategy: canary`, "
                                 "or remove them)")
            return self
        steps = self.steps
        for i, w in enumerate(steps):
            if not 1 <= w <= 100:
                raise ValueError(f"steps[{i}] is {w}: each step is a percent of the traffic, 1..100")
            if i and w <= steps[i - 1]:
                raise ValueError(f"steps must increase: steps[{i}] ({w}) is not above steps[{i - 1}] "
                                 f"({steps[i - 1]})")
        if steps[-1] != 100:
            raise ValueError(f"the last step must be 100 (the new version takes all the traffic); add 100 after "
                             f"{steps[-1]}")
        return self


AUTOSCALING_POLICIES = ("kpa", "hpa", "rayserve", "skyserve", "predictive")


class Autoscaling(_Model):
    """Replicas follow load: the gateway's request rate and in-flight requests feed a policy."""

    policy: Literal["kpa", "hpa", "rayserve", "skyserve", "predictive"] = "kpa"
    target: float = Field(4.0, gt=0, description="requests in flight one replica should carry")
    target_rps: float | None = Field(None, gt=0, description="requests/s one replica should carry "
                                     "(skyserve, predictive); default: target / observed latency")
    min: int = Field(1, ge=0, le=256)
    max: int = Field(10, ge=1, le=256)
    scale_to_zero_after: Duration | None = Field(None, gt=0, description="idle this long -> 0 replicas (needs min: 0)")
    cold_start: Duration = Field(10.0, ge=0, description="how long a new replica takes to be ready")
    options: dict[str, float] = Field(default_factory=dict, description="the policy's own settings, e.g. "
                                      "{stable_window: 30} for kpa (names as in cumulo.policy.autoscaling)")

    @model_validator(mode="after")
    def _bounds(self) -> "Autoscaling":
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        if self.scale_to_zero_after is not None and self.min != 0:
            raise ValueError("scale_to_zero_after needs min: 0")
        return self


class DeploymentSpec(_Model):
    """A long-running service with replicas behind the gateway (YAML ``kind: Deployment``)."""

    kind: Literal["Deployment"] = "Deployment"
    name: str = Field(description=f"unique among deployments: {NAME_HINT}")
    service: str | None = Field(None, description="'path/to/file.py:ClassName', a cumulo.Service subclass")
    command: str | list[str] | None = Field(None, description="any HTTP server; it must listen on $PORT")
    workdir: str | None = None
    env: Annotated[dict[str, str | SecretRef], BeforeValidator(_stringify_env)] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)
    replicas: int = Field(1, ge=0, le=256)
    cluster: str | None = Field(None, description="the cluster its replicas run on; default: where they fit, "
                                "`local` first")
    health: Health = Field(default_factory=Health)
    auth: Literal["none", "token"] = Field(
        "none", description="token: /d/<name>/... needs a token made for this deployment "
                            "(`cumulo token create NAME --deployment D`)")
    rollout: Rollout = Field(default_factory=Rollout)
    autoscaling: Autoscaling | None = Field(None, description="if set, `replicas` is only the initial count")

    _check_name = field_validator("name")(classmethod(lambda cls, v: validate_name(v)))
    _env_names = field_validator("env")(classmethod(lambda cls, v: JobSpec._env_names(v)))
    _check_cluster = field_validator("cluster")(classmethod(lambda cls, v: v if v is None else validate_name(v)))

    @field_validator("service")
    @classmethod
    def _service_target(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^[^:]+\.py:[A-Za-z_][A-Za-z0-9_]*$", v):
            raise ValueError(f"{v!r} is not 'path/to/file.py:ClassName'")
        return v

    @model_validator(mode="after")
    def _one_entry_point(self) -> "DeploymentSpec":
        if (self.service is None) == (self.command is None):
            raise ValueError("give exactly one of 'service' (file.py:Class) or 'command' (listening on $PORT)")
        return self

    @property
    def health_path(self) -> str:
        return self.health.path or ("/readyz" if self.service else "/")

    def rollout_fields(self) -> dict:
        """What a running replica embodies: changing any of it rolls the replicas (replicas does not)."""
        return self.model_dump(mode="json", exclude={"replicas", "autoscaling", "auth"})

    def initial_replicas(self) -> int:
        a = self.autoscaling
        return self.replicas if a is None else max(a.min, min(a.max, self.replicas))


class Threshold(_Model):
    above: float | None = Field(None, description="breached while the value is above this")
    below: float | None = Field(None, description="breached while the value is below this")

    @model_validator(mode="after")
    def _one(self) -> "Threshold":
        if (self.above is None) == (self.below is None):
            raise ValueError("give exactly one of above: or below:")
        return self


class AlertRuleSpec(_Model):
    """A rule that fires an alert when a monitored metric breaches a threshold for a while (YAML
    ``kind: AlertRule``). Metrics are the series `cumulo job|deployment|node metrics` show."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, populate_by_name=True)

    kind: Literal["AlertRule"] = "AlertRule"
    name: str = Field(description=f"unique among the workspace's alert rules: {NAME_HINT}")
    target: Literal["job", "deployment", "node"] = Field(description="what the metric belongs to")
    object: str = Field("*", min_length=1, max_length=63,
                        description="the job, deployment or node name; a glob such as 'web-*' (default: every one)")
    instance: str = Field("*", max_length=63, description="the instance (a rank, a replica, gpuN; '' for the "
                          "whole object); a glob (default: every one)")
    metric: str = Field(min_length=1, max_length=128, description="e.g. latency_p99_seconds, cpu_percent")
    threshold: Threshold
    for_: Duration = Field(0.0, alias="for", ge=0, le=7 * 24 * 3600,
                           description="how long the breach must last before the alert fires")
    severity: Literal["info", "warning", "critical"] = "warning"
    summary: str | None = Field(None, max_length=500, description="what the alert says; default: the breach")

    _check_name = field_validator("name")(classmethod(lambda cls, v: validate_name(v)))



class Shape(_Model):
    """A machine size a node pool may launch: offerings with exactly these CPUs (and, when given,
    this memory and these GPUs)."""

    cpu: Cpu = Field(gt=0, description="vCPUs of the machine, e.g. 4")
    memory: Memory | None = Field(None, gt=0, description="its memory, e.g. '16Gi' (default: any)")
    gpus: int = Field(0, ge=0, le=64, description="its GPUs")
    gpu_type: str | None = Field(None, min_length=1, max_length=64, description="e.g. T4 (default: any)")


class NodePoolSpec(_Model):
    """A cluster's elastic capacity (YAML ``kind: NodePool``): which offerings it may launch, its
    limits, when idle machines go away and what it may spend."""

    kind: Literal["NodePool"] = "NodePool"
    name: str = Field(description=f"unique among node pools: {NAME_HINT}")
    cluster: str = Field(description="the cluster its machines join (`cumulo cluster list`)")
    providers: list[str] = Field(default_factory=list, description="providers it may launch on (default: all with a driver)")
    regions: list[str] = Field(default_factory=list, description="regions it may launch in (default: all)")
    instance_types: list[str] = Field(default_factory=list, description="instance types it may launch")
    shapes: list[Shape] = Field(default_factory=list, description="machine sizes it may launch (instead of instance_types)")
    spot: Literal["allowed", "required", "never"] = Field(
        "never", description="allowed: spot when cheaper; required: spot only; never: on-demand only")
    min_nodes: int = Field(0, ge=0, le=1000, description="machines kept up even when idle")
    max_nodes: int = Field(10, ge=1, le=1000, description="machines at most (launching or up)")
    max_price_per_hour: float | None = Field(None, gt=0, description="$/h of all its machines together, at most")
    idle_ttl: Duration = Field(300.0, gt=0, description="a machine with no cumulo work this long is released")
    budget_per_month: float | None = Field(None, gt=0, description="$ its machines may cost in a calendar month")

    _check_name = field_validator("name")(classmethod(lambda cls, v: validate_name(v)))
    _check_cluster = field_validator("cluster")(classmethod(lambda cls, v: validate_name(v)))

    @model_validator(mode="after")
    def _consistent(self) -> "NodePoolSpec":
        if self.min_nodes > self.max_nodes:
            raise ValueError(f"min_nodes ({self.min_nodes}) must not exceed max_nodes ({self.max_nodes}): "
                             "lower min_nodes or raise max_nodes")
        if self.instance_types and self.shapes:
            raise ValueError("give instance_types or shapes, not both")
        if self.cluster == "local":
            raise ValueError("cluster: 'local' is this machine and cannot grow; name a Ray cluster "
                             "(`cumulo cluster add NAME --ray ...`)")
        return self


SPEC_KINDS: dict[str, type[_Model]] = {"Job": JobSpec, "Deployment": DeploymentSpec, "NodePool": NodePoolSpec,
                                        "AlertRule": AlertRuleSpec}
Spec = JobSpec | DeploymentSpec | NodePoolSpec


def field_errors(raw: list[dict], *, strip: tuple[str, ...] = ()) -> list[dict]:
    """pydantic's error dicts as [{"field": "resources.memory", "message": ...}]."""
    errors = []
    for e in raw:
        parts = [str(p) for p in e.get("loc", ())]
        while parts and parts[0] in strip:
            parts.pop(0)
        loc = ".".join(parts) or ("(body)" if strip else "(spec)")
        msg = e["msg"].removeprefix("Value error, ")
        if e.get("type") == "json_invalid":
            loc = "(body)"
            msg = f"not valid JSON ({e.get('ctx', {}).get('error', 'parse error')}); send a JSON object"
        elif e["type"] == "extra_forbidden":
            msg = "unknown field; check its spelling"
        elif e["type"] == "missing":
            msg = "field required"
        errors.append({"field": loc, "message": msg})
    return errors


def describe_errors(errors: list[dict]) -> str:
    return "; ".join(f"{e['field']}: {e['message']}" for e in errors)


def parse_spec(data: Any, *, source: str = "spec", kind: str | None = None) -> Any:
    """Validate a mapping as a spec of its ``kind:``. Raises InvalidSpec naming each bad field."""
    if not isinstance(data, dict):
        raise InvalidSpec(f"{source}: expected a mapping with 'kind:' and 'name:', got {type(data).__name__}")
    kind = kind or data.get("kind")
    if kind not in SPEC_KINDS:
        known = ", ".join(SPEC_KINDS)
        raise InvalidSpec(
            f"{source}: kind: {kind!r} is not a kind cumulo knows; use one of: {known}",
            errors=[{"field": "kind", "message": f"must be one of: {known}"}],
        )
    try:
        return SPEC_KINDS[kind].model_validate(data)  # type: ignore[return-value]
    except ValidationError as exc:
        errors = field_errors(exc.errors())
        raise InvalidSpec(f"{source}: {describe_errors(errors)}", errors=errors) from None


def load_spec_text(text: str, *, source: str = "spec") -> Any:
    """Parse YAML text into a spec; YAML syntax errors name the line."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InvalidSpec(f"{source}:{where}: invalid YAML: {problem}") from None
    return parse_spec(data, source=source)


def load_specs_text(text: str, *, source: str = "spec") -> list[Any]:
    """Every document of a (multi-document) YAML text as a spec of its ``kind:``; an empty document
    is skipped. Errors name the document (1-based) and the field."""
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InvalidSpec(f"{source}:{where}: invalid YAML: {problem}") from None
    out = []
    docs = [d for d in docs if d is not None]
    for i, d in enumerate(docs, 1):
        out.append(parse_spec(d, source=f"{source} (document {i})" if len(docs) > 1 else source))
    if not out:
        raise InvalidSpec(f"{source}: no documents; give at least one spec with kind: {', '.join(SPEC_KINDS)}")
    return out
