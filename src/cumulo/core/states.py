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
    RUNNING = "running"
    EXITED = "exited"  # every process ended and the exit status is recorded
    LOST = "lost"  # gone without a recorded exit status (or abandoned before it started)
