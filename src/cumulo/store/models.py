"""Tables. Spec columns are written by services (API), Status columns only by reconcilers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer, LargeBinary, String, Text, TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive values)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("workspace", "name", name="uq_jobs_workspace_name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(63))
    workspace: Mapped[str] = mapped_column(String(63), default="default")
    created_at: Mapped[datetime]
    # spec (written by services)
    spec: Mapped[dict[str, Any]]
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    artifacts_dir: Mapped[str] = mapped_column(Text)
    # status (written by the job reconciler)
    #: the cluster its first attempt was placed on; retries stay there (its artifacts live there)
    cluster: Mapped[str | None] = mapped_column(String(63), nullable=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # lease: a reconciler pass owns the row while lock_expires is in the future
    lock_token: Mapped[str | None] = mapped_column(String(32), nullable=True)
    lock_expires: Mapped[datetime | None] = mapped_column(nullable=True)


class Attempt(Base):
    __tablename__ = "attempts"
    __table_args__ = (Index("ix_attempts_job_number", "job_id", "number", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    number: Mapped[int]
    state: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    runtime: Mapped[str] = mapped_column(String(32))
    cluster: Mapped[str] = mapped_column(String(63), default="local")
    handle: Mapped[dict[str, Any]]
    allocation: Mapped[dict[str, Any]]
    stop_cause: Mapped[str | None] = mapped_column(String(16), nullable=True)
    stop_requested_at: Mapped[datetime | None] = mapped_column(nullable=True)
    #: last observed per-worker pid, CPU % and RSS
    workers: Mapped[list[Any]] = mapped_column(default=list)
    #: what its reports showed (policy/job_health.observe): last progress, cadence, a bad loss
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    #: the health verdict already told as an alert (health on_stall/on_nan: alert)
    alerted: Mapped[str | None] = mapped_column(String(16), nullable=True)


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (Index("ix_events_object", "kind", "name", "id"), Index("ix_events_workspace", "workspace", "id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workspace: Mapped[str] = mapped_column(String(63), default="default")
    actor: Mapped[str | None] = mapped_column(String(63), nullable=True)  # the token's name, for writes through the API
    time: Mapped[datetime] = mapped_column(index=True)
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(63))
    object_id: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)


class Metric(Base):
    """One reported value of one training metric: a long-format time series."""

    __tablename__ = "metrics"
    __table_args__ = (Index("ix_metrics_job_name", "job_id", "name", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    attempt: Mapped[int]
    step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    time: Mapped[datetime]
    name: Mapped[str] = mapped_column(String(128))
    #: NULL is NaN (SQLite cannot store NaN); infinities are stored as they are
    value: Mapped[float | None] = mapped_column(Float, nullable=True)


class Node(Base):
    """A machine workloads run on, with what it has. The local node registers itself at start;
    cloud nodes are provisioned in pools (`cumulo resources create`)."""

    __tablename__ = "nodes"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    #: the cluster it belongs to; engine nodes (Ray, Slurm) are synced from the engine
    cluster: Mapped[str] = mapped_column(String(63), default="local", index=True)
    engine_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    address: Mapped[str | None] = mapped_column(String(255), nullable=True)
    labels: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True, default=dict)
    state: Mapped[str] = mapped_column(String(16))
    cpu: Mapped[float]
    memory: Mapped[int] = mapped_column(BigInteger)
    gpus: Mapped[list[Any]] = mapped_column(default=list)
    gpu_names: Mapped[list[Any]] = mapped_column(default=list)
    updated_at: Mapped[datetime]
    # cloud nodes (None for the local node)
    pool_id: Mapped[str | None] = mapped_column(ForeignKey("pools.id", ondelete="SET NULL"), nullable=True, index=True)
    region: Mapped[str | None] = mapped_column(String(64), nullable=True)
    zone: Mapped[str | None] = mapped_column(String(64), nullable=True)
    instance_type: Mapped[str | None] = mapped_column(String(64), nullable=True)
    spot: Mapped[bool] = mapped_column(Boolean, default=False)
    price: Mapped[float] = mapped_column(Float, default=0.0)  # $/hour
    machine_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime | None] = mapped_column(nullable=True)
    ready_at: Mapped[datetime | None] = mapped_column(nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)
    release_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    #: locations (provider/region/zone) that failed for capacity or quota: skipped on the next try
    blocked: Mapped[list[Any]] = mapped_column(default=list)
    #: the node pool (NodePool.name) that launched it, for its cluster; None otherwise
    node_pool: Mapped[str | None] = mapped_column(String(63), nullable=True, index=True)
    #: a machine launched for an engine's cluster: what the engine says of it (written by the cluster
    #: sync only): alive | dead | absent (listed before, not now); None until the engine first lists it
    engine_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    #: machines this node has had before its current one (a machine that did not join in time is replaced)
    replacements: Mapped[int] = mapped_column(Integer, default=0)
    #: cordoned (no new work lands on it), and why: `cumulo node cordon`, or self-repair (GPU faults)
    cordoned: Mapped[str | None] = mapped_column(Text, nullable=True)
    lock_token: Mapped[str | None] = mapped_column(String(32), nullable=True)
    lock_expires: Mapped[datetime | None] = mapped_column(nullable=True)


class Cluster(Base):
    """A named engine that runs workloads: `local` (always there), a Ray cluster, a Slurm cluster."""

    __tablename__ = "clusters"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # local | ray | slurm
    address: Mapped[str | None] = mapped_column(Text, nullable=True)  # Ray: the dashboard URL
    partition: Mapped[str | None] = mapped_column(String(63), nullable=True)  # Slurm
    #: Ray: the GCS address (HOST:PORT) machines launched for the cluster join (`ray start --address`)
    join_address: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: a folder every node of the cluster sees (CUMULO_ARTIFACTS, logs, checkpoints)
    artifacts: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    # status (written by the cluster reconciler)
    state: Mapped[str] = mapped_column(String(16), default="Unknown")  # Ready | Unreachable | Unknown
    reason: Mapped[str] = mapped_column(Text, default="")
    checked_at: Mapped[datetime | None] = mapped_column(nullable=True)


class Pool(Base):
    """One `create_resources` request: N nodes placed together, rolled back together."""

    __tablename__ = "pools"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace: Mapped[str] = mapped_column(String(63), default="default")
    created_at: Mapped[datetime]
    #: the placement request (spec): instance type or cpu/memory/accelerators, spot, providers, ...
    request: Mapped[dict[str, Any]]
    count: Mapped[int]
    idle_ttl: Mapped[float | None] = mapped_column(Float, nullable=True)  # seconds; None: never


class NodePool(Base):
    """A cluster's elastic capacity (`kind: NodePool`): the spec, and the scale policy's state.
    (Not `pools`: that table groups the machines of one `create_resources` request.)"""

    __tablename__ = "node_pools"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    cluster: Mapped[str] = mapped_column(String(63), index=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # spec (written by services)
    spec: Mapped[dict[str, Any]]
    deleting: Mapped[bool] = mapped_column(Boolean, default=False)
    # status (written by the node pool reconciler)
    state: Mapped[str] = mapped_column(String(16), default="Ready")
    reason: Mapped[str] = mapped_column(Text, default="")
    #: the sequence number of the next node it launches (node names derive from it)
    next_seq: Mapped[int] = mapped_column(Integer, default=1)
    #: policy state: node name -> ISO time it was first seen idle
    idle_since: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: work key ("job:<id>") -> what the pool does about it (the limit that stops it): Pending reasons
    notes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    lock_token: Mapped[str | None] = mapped_column(String(32), nullable=True)
    lock_expires: Mapped[datetime | None] = mapped_column(nullable=True)


class Deployment(Base):
    __tablename__ = "deployments"
    __table_args__ = (UniqueConstraint("workspace", "name", name="uq_deployments_workspace_name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(63))
    workspace: Mapped[str] = mapped_column(String(63), default="default")
    created_at: Mapped[datetime]
    # spec (written by services); `generation` goes up whenever what replicas run changes
    spec: Mapped[dict[str, Any]]
    generation: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime]
    deleting: Mapped[bool] = mapped_column(Boolean, default=False)
    workdir: Mapped[str] = mapped_column(Text)
    # status (written by the deployment reconciler)
    state: Mapped[str] = mapped_column(String(24))
    reason: Mapped[str] = mapped_column(Text, default="")
    failures: Mapped[int] = mapped_column(Integer, default=0)
    next_start_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_failure: Mapped[str] = mapped_column(Text, default="")
    next_ordinal: Mapped[int] = mapped_column(Integer, default=1)
    #: set by the autoscaler (status); None: the spec's replicas count
    desired_replicas: Mapped[int | None] = mapped_column(Integer, nullable=True)
    autoscale_reason: Mapped[str] = mapped_column(Text, default="")
    #: a canary rollout (policy/rollout.py RolloutState.to_dict() + its weight now, and the stable
    #: generation's spec and workdir); None: none since the deployment was made
    rollout: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    lock_token: Mapped[str | None] = mapped_column(String(32), nullable=True)
    lock_expires: Mapped[datetime | None] = mapped_column(nullable=True)


class Replica(Base):
    """One process incarnation of a deployment's replica; a replacement is a new row."""

    __tablename__ = "replicas"
    __table_args__ = (Index("ix_replicas_deployment_ordinal", "deployment_id", "ordinal", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    deployment_id: Mapped[str] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"))
    ordinal: Mapped[int]
    generation: Mapped[int]
    state: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[datetime]
    ready_at: Mapped[datetime | None] = mapped_column(nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int]
    runtime: Mapped[str] = mapped_column(String(32))
    cluster: Mapped[str] = mapped_column(String(63), default="local")
    #: the engine node it runs on (Node.name), once the runtime reports it
    node: Mapped[str | None] = mapped_column(String(63), nullable=True)
    handle: Mapped[dict[str, Any]]
    allocation: Mapped[dict[str, Any]]
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    probe_failures: Mapped[int] = mapped_column(Integer, default=0)
    stop_requested_at: Mapped[datetime | None] = mapped_column(nullable=True)
    #: self-repair asked for it to be replaced (an outlier among its peers, heading for OOM), and why:
    #: the deployment reconciler starts its replacement first, then drains it
    replace_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class Workspace(Base):
    """A tenant: every token is scoped to one."""

    __tablename__ = "workspaces"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    created_at: Mapped[datetime]
    quota: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # policy/quota.py Quota
    # status (written by the cost reconciler): this month's spend so far and the alert level reached
    spent_month: Mapped[str] = mapped_column(String(7), default="")
    spent: Mapped[float] = mapped_column(Float, default=0.0)
    alerted: Mapped[int] = mapped_column(Integer, default=0)


class Token(Base):
    """An API token: only its SHA-256 is kept."""

    __tablename__ = "tokens"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(63))  # who or what holds it, shown in audit events
    workspace: Mapped[str] = mapped_column(ForeignKey("workspaces.name", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    #: a deployment-scoped token (role invoke): the deployment whose /d/ routes it opens
    deployment: Mapped[str | None] = mapped_column(String(63), nullable=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)


class Secret(Base):
    """A secret value, sealed with AES-256-GCM (core/keyring.py); specs refer to it by name."""

    __tablename__ = "secrets"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    workspace: Mapped[str] = mapped_column(ForeignKey("workspaces.name", ondelete="CASCADE"), primary_key=True)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class AlertRule(Base):
    """A user's alert rule (`kind: AlertRule`): its spec as written."""

    __tablename__ = "alert_rules"
    __table_args__ = (UniqueConstraint("workspace", "name", name="uq_alert_rules_workspace_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workspace: Mapped[str] = mapped_column(String(63), default="default")
    name: Mapped[str] = mapped_column(String(63))
    spec: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Alert(Base):
    """One episode of one rule on one subject: pending, firing, then resolved (policy/alerts.py).
    Built-in rules (a job's health, the detectors) have no alert_rules row."""

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_fingerprint_state", "fingerprint", "state"),
                      Index("ix_alerts_workspace_id", "workspace", "id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workspace: Mapped[str] = mapped_column(String(63), default="default")
    fingerprint: Mapped[str] = mapped_column(String(16))
    rule: Mapped[str] = mapped_column(String(63))
    target: Mapped[str] = mapped_column(String(16))  # job | deployment | node
    object: Mapped[str] = mapped_column(String(63))
    instance: Mapped[str] = mapped_column(String(63), default="")
    severity: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), index=True)
    summary: Mapped[str] = mapped_column(Text)
    #: the values and the window that made it fire
    evidence: Mapped[dict[str, Any]]
    started_at: Mapped[datetime]
    fired_at: Mapped[datetime | None] = mapped_column(nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(nullable=True)
    updated_at: Mapped[datetime]
    #: webhook url -> the state last delivered to it
    delivered: Mapped[dict[str, Any]] = mapped_column(default=dict)
    notify_attempts: Mapped[int] = mapped_column(Integer, default=0)
    notify_next_at: Mapped[datetime | None] = mapped_column(nullable=True, index=True)
    notify_error: Mapped[str] = mapped_column(Text, default="")
class Series(Base):
    """One monitored time series (monitor/): what it measures and on which object.

    kind: node | job | deployment; object: the node, job or deployment name; instance: the part of
    it ('' for the whole; a GPU `gpu0` of a node, a job's rank `0`, a deployment's replica `3`).
    """

    __tablename__ = "series"
    __table_args__ = (UniqueConstraint("kind", "workspace", "object", "instance", "metric", name="uq_series_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    workspace: Mapped[str] = mapped_column(String(63))  # '' for nodes (installation-wide)
    object: Mapped[str] = mapped_column(String(63))
    instance: Mapped[str] = mapped_column(String(32), default="")
    metric: Mapped[str] = mapped_column(String(64))


class Sample(Base):
    """One raw sample: series, Unix second, value. Clustered on (series, t): no rowid on SQLite."""

    __tablename__ = "samples"
    __table_args__ = {"sqlite_with_rowid": False}

    series_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    t: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    value: Mapped[float] = mapped_column(Float)


class Rollup(Base):
    """One minute of a series (t: the minute's first second): mean and maximum of its samples."""

    __tablename__ = "samples_1m"
    __table_args__ = {"sqlite_with_rowid": False}

    series_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    t: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    avg: Mapped[float] = mapped_column(Float)
    max: Mapped[float] = mapped_column(Float)
