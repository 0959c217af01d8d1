"""What the API returns and the SDK hands to users: one definition for both sides."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from cumulo.core.specs import DeploymentSpec, JobSpec
from cumulo.core.states import AttemptState, JobState


class _View(BaseModel):
    #: a reported NaN or infinity travels as the JSON strings "NaN", "Infinity", "-Infinity"
    model_config = ConfigDict(extra="ignore", ser_json_inf_nan="strings")


class WorkerView(_View):
    rank: int
    pid: int | None = None
    exit_code: int | None = None
    cpu_percent: float | None = None
    memory_bytes: int | None = None
    #: where it runs on an engine's cluster: the engine's node id and that node's address
    node_id: str | None = None
    address: str | None = None


class AttemptView(_View):
    number: int
    state: AttemptState
    exit_code: int | None = None
    reason: str = ""
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    workers: list[WorkerView] = []
    gpus: list[int] = []


class ProgressView(_View):
    step: int | None = None
    total_steps: int | None = None
    #: step / total_steps
    fraction: float | None = None
    steps_per_second: float | None = None
    eta_seconds: float | None = None
    #: seconds since its newest report
    since_report: float | None = None


class JobView(_View):
    id: str
    name: str
    state: JobState
    reason: str = ""
    exit_code: int | None = None
    attempts: int = 0
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    cancel_requested: bool = False
    spec: JobSpec
    artifacts: str = ""
    #: newest value of each metric the job reported, plus its ``step``
    metrics: dict[str, float] = {}
    #: CPU % (100 = one core) and resident memory of the running attempt's processes
    cpu_percent: float | None = None
    memory_bytes: int | None = None
    attempt_list: list[AttemptView] = []
    #: the cluster its attempts run on (chosen at its first start; None before)
    cluster: str | None = None
    #: training progress from its reports (`cumulo.report(step=..., total_steps=...)`); one job's view only
    progress: ProgressView | None = None


class EventView(_View):
    id: int
    time: datetime
    kind: str
    name: str
    type: str
    reason: str
    message: str
    actor: str | None = None  # the token that made the change, for writes through the API


class MetricPoint(_View):
    attempt: int
    step: int | None = None
    time: datetime
    values: dict[str, float]


class NodeView(_View):
    name: str
    provider: str
    state: str
    cpu: float
    memory_bytes: int
    gpus: list[int] = []
    gpu_names: list[str] = []
    allocated_cpu: float = 0
    allocated_memory_bytes: int = 0
    allocated_gpus: list[int] = []
    cluster: str = "local"
    #: an engine node's address and the engine's own id for it
    address: str | None = None
    engine_id: str | None = None
    labels: dict[str, str] = {}
    reason: str = ""
    #: a machine cumulo launched (`cumulo resources create`, a node pool): what it is and costs
    pool: str | None = None
    instance_type: str | None = None
    zone: str | None = None
    spot: bool = False
    price_per_hour: float = 0.0
    #: cordoned (no new work lands on it), and why
    cordoned: str | None = None


class ClusterInfo(_View):
    """A cluster (`cumulo cluster list`): what engine, whether it answers, what its nodes have."""

    name: str
    kind: str  # local | ray | slurm
    address: str | None = None
    partition: str | None = None
    #: Ray: the GCS address launched machines join
    join_address: str | None = None
    artifacts: str = ""
    state: str  # Ready | Unreachable | Unknown (not asked yet)
    reason: str = ""
    checked_at: datetime | None = None
    nodes: int = 0
    nodes_ready: int = 0
    cpu: float = 0
    memory_bytes: int = 0
    gpus: int = 0
    allocated_cpu: float = 0
    allocated_memory_bytes: int = 0
    allocated_gpus: int = 0
    #: what runs there now (status NAME only)
    work: list[str] = []


class LogChunk(_View):
    data: str
    offset: int
    attempt: int
    rank: int
    #: true when the attempt is over and everything it wrote has been returned
    complete: bool


class Health(_View):
    status: str


class System(_View):
    version: str
    database: str
    auth: bool
    home: str
    passes: int


class ReplicaView(_View):
    id: int
    state: str
    generation: int
    host: str
    port: int
    cluster: str = "local"
    node: str | None = None  # the engine's node id, on an engine's cluster
    created_at: datetime
    ready_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    reason: str = ""


class GenerationAnalysis(_View):
    """One generation's numbers over a canary step's window."""

    generation: int
    requests: int
    errors: int  # answered 5xx or failed
    error_rate: float | None = None  # None: no request in the window
    p99_ms: float | None = None


class RolloutAnalysis(_View):
    """The evidence of a canary rollout's latest judgement: both generations in the same window."""

    stable: GenerationAnalysis
    canary: GenerationAnalysis
    window_seconds: float
    max_error_rate: float
    max_p99_ms: float | None = None
    min_requests: int


class RolloutView(_View):
    """A deployment's canary rollout (`cumulo deployment rollout status`)."""

    deployment: str
    strategy: str = "canary"
    #: Progressing, Succeeded (the new version takes all the traffic) or RolledBack
    phase: str
    step: int  # 1-based index into steps
    steps: list[int]
    weight: int  # percent of the traffic the new version gets now
    stable_generation: int
    canary_generation: int
    started_at: datetime | None = None
    #: when the current step's window began (None: its canary is not serving yet)
    window_start: datetime | None = None
    reason: str = ""
    analysis: RolloutAnalysis | None = None
    #: promote or abort asked and not yet acted on
    pending: str | None = None


class DeploymentView(_View):
    id: str
    name: str
    state: str
    reason: str = ""
    #: where clients call it: the gateway's URL for this deployment
    url: str
    generation: int
    #: replicas wanted now (the autoscaler's choice when autoscaling is on)
    desired: int
    ready: int
    #: the autoscaler's latest reason, when autoscaling is on
    autoscaling: str = ""
    created_at: datetime
    updated_at: datetime
    spec: DeploymentSpec
    #: live replicas (Starting, Ready, Draining)
    replicas: list[ReplicaView] = []
    #: recently ended replicas, newest last (crashes show here with their reason)
    ended: list[ReplicaView] = []
    #: the latest canary rollout, if any (in progress, finished or rolled back)
    rollout: RolloutView | None = None


class NodeDetail(_View):
    """A provisioned machine (`cumulo resources list`)."""

    id: str
    pool: str | None = None
    provider: str
    region: str | None = None
    zone: str | None = None
    instance_type: str | None = None
    spot: bool = False
    state: str
    reason: str = ""
    machine_id: str | None = None
    price_per_hour: float = 0.0
    #: what it has cost so far: price x hours since it was launched (until it ended)
    cost: float = 0.0
    created_at: datetime | None = None
    ready_at: datetime | None = None
    finished_at: datetime | None = None


class NodePoolView(_View):
    """A node pool (`cumulo pool status`): its spec, what it runs and costs, and its last decision."""

    name: str
    cluster: str
    spec: dict
    state: str  # Ready | Deleting
    reason: str = ""  # its last decision
    nodes: list[NodeDetail] = []
    nodes_up: int = 0  # launching or ready
    price_per_hour: float = 0.0  # of its live machines
    spent_month: float = 0.0  # what its machines cost this calendar month
    #: what it does about each waiting workload ("job NAME" -> launching X / the limit that stops it)
    notes: dict[str, str] = {}
    created_at: datetime | None = None
    updated_at: datetime | None = None


class NodePoolApplied(NodePoolView):
    """The answer to POST /nodepools: the pool, and what the apply did."""

    action: str  # created | updated | unchanged
    changed: list[str] = []


class ApplyResult(_View):
    """What `cumulo apply` did to one object."""

    kind: str
    name: str
    action: str  # created | updated | unchanged
    changed: list[str] = []  # the top-level spec fields that changed (updated)


class PoolView(_View):
    id: str
    state: str  # Provisioning | Ready | Failed | Released
    reason: str = ""
    nodes: list[NodeDetail]
    price_per_hour: float
    cost: float


class TokenView(_View):
    id: str
    name: str
    workspace: str
    role: str
    deployment: str | None = None  # a deployment-scoped token: the deployment it opens
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    token: str | None = None  # only in the answer to create: it is never shown again


class SecretView(_View):
    """A secret's name and dates: never its value."""

    name: str
    workspace: str
    created_at: datetime
    updated_at: datetime


class WorkspaceView(_View):
    name: str
    created_at: datetime
    jobs: int = 0
    deployments: int = 0
    quota: dict[str, float] = {}  # cpu, gpu, nodes, price_per_hour, budget_per_month (absent: no limit)
    spent_this_month: float = 0.0


class CostLine(_View):
    """What one thing (or group) cost over the period."""

    key: str  # the workspace, job, deployment or node name
    workspace: str
    kind: str  # workspace, job, deployment or node
    cost: float  # dollars
    price_per_hour: float  # what it costs per hour now (0 when nothing runs)


class CostReport(_View):
    since: datetime
    until: datetime
    by: str
    total: float
    lines: list[CostLine]


class AlertView(_View):
    id: int
    workspace: str
    rule: str
    target: str  # job | deployment | node
    object: str
    instance: str = ""
    severity: str
    state: str  # pending | firing | resolved
    summary: str
    #: the values and window that made it fire (and why it resolved)
    evidence: dict
    started_at: datetime
    fired_at: datetime | None = None
    resolved_at: datetime | None = None
    fingerprint: str
    #: webhooks not yet told of its state, and why (empty when all were)
    notify_error: str = ""


class AlertRuleView(_View):
    name: str
    workspace: str
    spec: dict
    created_at: datetime
    updated_at: datetime
    #: alerts of this rule open now
    firing: int = 0
    pending: int = 0
# -- monitoring (monitor/) ---------------------------------------------------------------------------
class SeriesView(_View):
    """One monitored series: points are [Unix second, mean, max] per step, oldest first."""

    kind: str
    workspace: str = ""
    object: str
    instance: str = ""
    metric: str
    points: list[tuple[int, float, float]] = []


class SeriesReport(_View):
    kind: str
    object: str | None = None
    since: datetime
    until: datetime
    #: seconds per point
    step: int
    series: list[SeriesView] = []


class NodeStatus(_View):
    name: str
    cluster: str = "local"
    state: str = ""
    #: newest sample of each node metric (cpu_percent, memory_used_bytes, ...; engines: *_free, *_total)
    values: dict[str, float] = {}
    #: per GPU (gpu0, gpu1, ...): utilization, memory, temperature, ECC and XID errors
    gpus: dict[str, dict[str, float]] = {}


class JobStatus(_View):
    name: str
    state: str
    reason: str = ""
    attempts: int = 0
    cluster: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    step: int | None = None
    total_steps: int | None = None
    progress: float | None = None
    steps_per_second: float | None = None
    eta_seconds: float | None = None
    loss: float | None = None
    cpu_percent: float | None = None
    memory_bytes: int | None = None
    #: newest value of each reported metric
    metrics: dict[str, float] = {}


class DeploymentStatus(_View):
    name: str
    state: str
    reason: str = ""
    ready: int = 0
    desired: int = 0
    request_rate: float | None = None
    in_flight: float | None = None
    latency_p50_seconds: float | None = None
    latency_p99_seconds: float | None = None
    error_rate: float | None = None
    cpu_percent: float | None = None
    memory_bytes: int | None = None


class AlertsSection(_View):
    """Firing alerts. `available` is False until alert rules are evaluated by this control plane."""

    available: bool = False
    note: str = ""
    firing: list[dict[str, Any]] = []


class MonitorOverview(_View):
    """Everything `cumulo monitor` shows (GET /api/v1/monitor)."""

    time: datetime
    #: seconds between samples, and when the newest one was taken (None before the first)
    interval: float
    sampled_at: datetime | None = None
    nodes: list[NodeStatus] = []
    jobs: list[JobStatus] = []
    deployments: list[DeploymentStatus] = []
    alerts: AlertsSection = AlertsSection()
    events: list[EventView] = []
