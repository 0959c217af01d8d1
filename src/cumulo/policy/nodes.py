"""A cloud node's lifecycle as a pure function, level-triggered against what the provider reports.

Provisioning -> Ready -> Terminating -> Terminated | Failed | Preempted. A machine gone from the
cloud is marked so; release, a failed pool-mate or an idle TTL terminate it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from cumulo.core.offerings import Machine, MachineState
from cumulo.core.states import NodeState

#: a launched machine the provider does not show after this long is given up on
APPEAR_TIMEOUT = timedelta(minutes=5)
POLL = 2.0


class NodeAct(StrEnum):
    NONE = "none"
    LAUNCH = "launch"
    TERMINATE = "terminate"


@dataclass(frozen=True)
class NodeSnapshot:
    now: datetime
    state: NodeState
    created_at: datetime
    machine_id: str | None
    machine: Machine | None  # what the provider reports now (None: not found)
    release_requested: bool = False
    pool_failed: bool = False
    ready_at: datetime | None = None
    idle_ttl: float | None = None


@dataclass(frozen=True)
class NodeDecision:
    state: NodeState
    reason: str
    act: NodeAct = NodeAct.NONE
    requeue_after: float | None = POLL


def decide_node(s: NodeSnapshot) -> NodeDecision:
    if s.state.terminal:
        return NodeDecision(s.state, "", requeue_after=None)
    m = s.machine
    gone = m is None or m.state == MachineState.TERMINATED
    if s.release_requested or s.pool_failed:
        why = "released" if s.release_requested else "another node of its pool failed: rolling the pool back"
        if s.machine_id is None or gone:  # never launched, or already gone (the orphan sweep covers a late one)
            return NodeDecision(NodeState.TERMINATED, why, requeue_after=None)
        return NodeDecision(NodeState.TERMINATING, why, act=NodeAct.TERMINATE)
    if m is not None and m.state == MachineState.PREEMPTED:
        return NodeDecision(NodeState.PREEMPTED, m.state_reason or "the provider reclaimed the spot machine",
                            requeue_after=None)
    if s.state == NodeState.PROVISIONING:
        if s.machine_id is None:
            return NodeDecision(NodeState.PROVISIONING, "launching", act=NodeAct.LAUNCH)
        if m is None:
            if s.now - s.created_at > APPEAR_TIMEOUT:
                return NodeDecision(NodeState.FAILED, f"machine {s.machine_id} never appeared at the provider",
                                    requeue_after=None)
            return NodeDecision(NodeState.PROVISIONING, f"waiting for {s.machine_id} to appear")
        if m.state == MachineState.RUNNING:
            return NodeDecision(NodeState.READY, f"{s.machine_id} is running")
        if gone or m.state == MachineState.TERMINATING:
            return NodeDecision(NodeState.FAILED, f"{s.machine_id} ended before it was ready: {m.state_reason or m.state}",
                                requeue_after=None)
        return NodeDecision(NodeState.PROVISIONING, f"{s.machine_id} is {m.state}")
    if s.state == NodeState.TERMINATING:
        if gone:
            return NodeDecision(NodeState.TERMINATED, "terminated", requeue_after=None)
        return NodeDecision(NodeState.TERMINATING, "terminating", act=NodeAct.TERMINATE)
    # Ready
    if gone:
        return NodeDecision(NodeState.TERMINATED, "the machine is gone from the cloud", requeue_after=None)
    if s.idle_ttl is not None and s.ready_at is not None and (s.now - s.ready_at).total_seconds() > s.idle_ttl:
        return NodeDecision(NodeState.TERMINATING, f"idle for more than {s.idle_ttl:g}s", act=NodeAct.TERMINATE)
    return NodeDecision(NodeState.READY, "running")
