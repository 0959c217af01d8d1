"""A cloud node's lifecycle as a pure function, level-triggered against what the provider reports.

Provisioning -> [Joining ->] Ready -> Terminating -> Terminated | Failed | Preempted. A machine gone
from the cloud is marked so; release, a failed pool-mate or an idle TTL terminate it.

A machine launched for an engine's cluster is Joining once the cloud reports it running, and Ready
only when the engine lists it alive (its bootstrap joined it, with the node's id as a label). One
that has not joined within ``join_timeout`` is replaced: its machine is terminated and the node goes
back to Provisioning for a new one. A Ready node the engine reports dead or no longer lists is
terminated: no work can reach it.
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
    #: terminate the machine (it did not join in time) and provision the node afresh
    REPLACE = "replace"


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
    #: the engine's cluster the machine must join (None: it joins nothing, Ready once running)
    cluster: str | None = None
    #: what that engine says of it: alive | dead | absent | None (never listed)
    engine_state: str | None = None
    join_timeout: float = 300.0


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
            return _joining(s) if s.cluster else NodeDecision(NodeState.READY, f"{s.machine_id} is running")
        if gone or m.state == MachineState.TERMINATING:
            return NodeDecision(NodeState.FAILED, f"{s.machine_id} ended before it was ready: {m.state_reason or m.state}",
                                requeue_after=None)
        return NodeDecision(NodeState.PROVISIONING, f"{s.machine_id} is {m.state}")
    if s.state == NodeState.JOINING:
        if gone or m.state == MachineState.TERMINATING:
            if _waited(s) > s.join_timeout:  # e.g. terminated by a replacement cut short by a crash
                return _replace(s)
            why = (m.state_reason or m.state) if m is not None else "gone from the cloud"
            return NodeDecision(NodeState.FAILED, f"{s.machine_id} ended before it joined cluster {s.cluster}: {why}",
                                requeue_after=None)
        return _joining(s)
    if s.state == NodeState.TERMINATING:
        if gone:
            return NodeDecision(NodeState.TERMINATED, "terminated", requeue_after=None)
        return NodeDecision(NodeState.TERMINATING, "terminating", act=NodeAct.TERMINATE)
    # Ready
    if gone:
        return NodeDecision(NodeState.TERMINATED, "the machine is gone from the cloud", requeue_after=None)
    if s.cluster and s.engine_state in ("dead", "absent"):
        how = "reports it dead" if s.engine_state == "dead" else "no longer lists it"
        return NodeDecision(NodeState.TERMINATING, f"cluster {s.cluster} {how}: terminating {s.machine_id}",
                            act=NodeAct.TERMINATE)
    if s.idle_ttl is not None and s.ready_at is not None and (s.now - s.ready_at).total_seconds() > s.idle_ttl:
        return NodeDecision(NodeState.TERMINATING, f"idle for more than {s.idle_ttl:g}s", act=NodeAct.TERMINATE)
    return NodeDecision(NodeState.READY, "running")


def _waited(s: NodeSnapshot) -> float:
    """Seconds since the current machine was launched (the node's creation when the cloud does not say)."""
    since = s.machine.launched_at if s.machine is not None and s.machine.launched_at else s.created_at
    return (s.now - since).total_seconds()


def _joining(s: NodeSnapshot) -> NodeDecision:
    if s.engine_state == "alive":
        return NodeDecision(NodeState.READY, f"{s.machine_id} joined cluster {s.cluster}")
    if _waited(s) > s.join_timeout:
        return _replace(s)
    return NodeDecision(NodeState.JOINING, f"{s.machine_id} is running; waiting for it to join cluster {s.cluster}")


def _replace(s: NodeSnapshot) -> NodeDecision:
    return NodeDecision(
        NodeState.PROVISIONING,
        f"{s.machine_id} did not join cluster {s.cluster} within {s.join_timeout:g}s: terminated it, launching another",
        act=NodeAct.REPLACE, requeue_after=0.0,
    )
