"""Lifecycle states. Only reconcilers move an object from one state to another."""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    PENDING = "Pending"
    STARTING = "Starting"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class AttemptState(StrEnum):
    STARTING = "Starting"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @property
    def terminal(self) -> bool:
        return self in (AttemptState.SUCCEEDED, AttemptState.FAILED, AttemptState.CANCELLED)


class ProcessPhase(StrEnum):
    """What a runtime sees of a launched workload's processes."""

    BOOTING = "booting"  # launched, its supervisor not up yet
    QUEUED = "queued"  # accepted by the engine, waiting there for resources (no boot timeout)
    RUNNING = "running"
    EXITED = "exited"  # every process ended and the exit status is recorded
    LOST = "lost"  # gone without a recorded exit status (or abandoned before it started)


class DeploymentState(StrEnum):
    PROGRESSING = "Progressing"  # replicas starting, or a rollout in progress
    AVAILABLE = "Available"  # every desired replica ready on the current spec
    DEGRADED = "Degraded"  # fewer ready replicas than desired, replacements under way
    CRASH_LOOP = "CrashLoopBackOff"  # replicas keep failing; restarts are backing off
    DELETING = "Deleting"  # draining replicas before the deployment is removed


class ReplicaState(StrEnum):
    STARTING = "Starting"  # launched, not ready yet: gets no traffic
    READY = "Ready"  # passes its health check: gets traffic
    DRAINING = "Draining"  # asked to stop; finishing in-flight requests
    STOPPED = "Stopped"
    FAILED = "Failed"

    @property
    def terminal(self) -> bool:
        return self in (ReplicaState.STOPPED, ReplicaState.FAILED)


class NodeState(StrEnum):
    PROVISIONING = "Provisioning"
    #: launched for an engine's cluster and running, not seen in the engine yet
    JOINING = "Joining"
    READY = "Ready"
    TERMINATING = "Terminating"
    TERMINATED = "Terminated"
    FAILED = "Failed"
    PREEMPTED = "Preempted"

    @property
    def terminal(self) -> bool:
        return self in (NodeState.TERMINATED, NodeState.FAILED, NodeState.PREEMPTED)
