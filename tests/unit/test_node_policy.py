"""A cloud node's lifecycle, decision by decision."""

from datetime import UTC, datetime, timedelta

from cumulo.core.offerings import Machine, MachineState
from cumulo.core.states import NodeState
from cumulo.policy.nodes import APPEAR_TIMEOUT, NodeAct, NodeSnapshot, decide_node

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def machine(state=MachineState.RUNNING, reason=""):
    return Machine(id="i-1", provider="aws", region="us-east-1", zone="us-east-1a", instance_type="g4dn.xlarge",
                   state=state, state_reason=reason)


def snap(state=NodeState.PROVISIONING, machine_id="i-1", m=None, **kw):
    base = dict(now=T0 + timedelta(seconds=30), state=state, created_at=T0, machine_id=machine_id, machine=m)
    base.update(kw)
    return NodeSnapshot(**base)


def test_unlaunched_node_launches():
    assert decide_node(snap(machine_id=None)).act == NodeAct.LAUNCH


def test_running_machine_makes_the_node_ready():
    assert decide_node(snap(m=machine())).state == NodeState.READY


def test_machine_that_never_appears_fails_the_node():
    assert decide_node(snap()).state == NodeState.PROVISIONING
    late = T0 + APPEAR_TIMEOUT + timedelta(seconds=1)
    assert decide_node(snap(now=late)).state == NodeState.FAILED


def test_ready_node_whose_machine_is_gone_is_terminated():
    d = decide_node(snap(NodeState.READY, m=None))
    assert d.state == NodeState.TERMINATED and d.reason == "the machine is gone from the cloud"


def test_reclaimed_spot_machine_is_preempted():
    d = decide_node(snap(NodeState.READY, m=machine(MachineState.PREEMPTED, "Server.SpotInstanceTermination")))
    assert d.state == NodeState.PREEMPTED and "Spot" in d.reason


def test_release_and_pool_failure_terminate_then_finish():
    for kw in ({"release_requested": True}, {"pool_failed": True}):
        d = decide_node(snap(NodeState.READY, m=machine(), **kw))
        assert d.act == NodeAct.TERMINATE and d.state == NodeState.TERMINATING
        d = decide_node(snap(NodeState.TERMINATING, m=machine(MachineState.TERMINATED), **kw))
        assert d.state == NodeState.TERMINATED
    d = decide_node(snap(machine_id=None, pool_failed=True))
    assert d.state == NodeState.TERMINATED and d.act == NodeAct.NONE  # never launched: nothing to stop


def test_idle_ttl_releases_a_ready_node():
    d = decide_node(snap(NodeState.READY, m=machine(), ready_at=T0, idle_ttl=10))
    assert d.act == NodeAct.TERMINATE and "idle" in d.reason
    assert decide_node(snap(NodeState.READY, m=machine(), ready_at=T0, idle_ttl=60)).act == NodeAct.NONE


def test_terminal_nodes_are_left_alone():
    for state in (NodeState.TERMINATED, NodeState.FAILED, NodeState.PREEMPTED):
        d = decide_node(snap(state, m=machine()))
        assert d.act == NodeAct.NONE and d.requeue_after is None
