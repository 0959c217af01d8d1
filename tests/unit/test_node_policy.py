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


# -- machines launched for an engine's cluster: Ready only once joined -------------------------

def joining(state=NodeState.PROVISIONING, m=None, **kw):
    return snap(state, m=m if m is not None else machine(), cluster="ray", join_timeout=60, **kw)


def test_a_running_machine_for_a_cluster_is_joining_until_the_engine_lists_it_alive():
    d = decide_node(joining())
    assert d.state == NodeState.JOINING and "waiting for it to join cluster ray" in d.reason and d.act == NodeAct.NONE
    assert decide_node(joining(NodeState.JOINING)).state == NodeState.JOINING
    for engine_state in (None, "dead", "absent"):
        assert decide_node(joining(NodeState.JOINING, engine_state=engine_state)).state == NodeState.JOINING
    d = decide_node(joining(NodeState.JOINING, engine_state="alive"))
    assert d.state == NodeState.READY and d.reason == "i-1 joined cluster ray"
    # already listed by the time the cloud says running: straight to Ready
    assert decide_node(joining(engine_state="alive")).state == NodeState.READY


def test_a_machine_that_does_not_join_in_time_is_replaced_with_the_reason():
    late = T0 + timedelta(seconds=61)
    d = decide_node(joining(NodeState.JOINING, now=late))
    assert d.act == NodeAct.REPLACE and d.state == NodeState.PROVISIONING and d.requeue_after == 0.0
    assert d.reason == "i-1 did not join cluster ray within 60s: terminated it, launching another"
    # the timer runs from the machine's launch, not the node's creation (a replacement gets its own time)
    relaunched = Machine(**{**machine().__dict__, "launched_at": T0 + timedelta(seconds=50)})
    assert decide_node(joining(NodeState.JOINING, m=relaunched, now=late)).state == NodeState.JOINING
    assert decide_node(joining(NodeState.JOINING, now=late, engine_state="alive")).state == NodeState.READY


def test_a_machine_that_ends_while_joining_fails_unless_its_time_was_up():
    d = decide_node(joining(NodeState.JOINING, m=machine(MachineState.TERMINATED, "the machine died")))
    assert d.state == NodeState.FAILED and "ended before it joined cluster ray: the machine died" in d.reason
    # past the timeout, a machine already gone is what a replacement cut short by a crash leaves
    d = decide_node(joining(NodeState.JOINING, m=machine(MachineState.TERMINATED), now=T0 + timedelta(seconds=90)))
    assert d.act == NodeAct.REPLACE
    d = decide_node(joining(NodeState.JOINING, m=machine(MachineState.PREEMPTED, "spot")))
    assert d.state == NodeState.PREEMPTED


def test_a_ready_node_the_engine_lost_is_terminated_and_one_without_a_cluster_ignores_the_engine():
    for engine_state, how in (("dead", "reports it dead"), ("absent", "no longer lists it")):
        d = decide_node(joining(NodeState.READY, engine_state=engine_state))
        assert d.state == NodeState.TERMINATING and d.act == NodeAct.TERMINATE and how in d.reason
    assert decide_node(joining(NodeState.READY, engine_state="alive")).state == NodeState.READY
    assert decide_node(snap(NodeState.READY, m=machine(), engine_state="dead")).state == NodeState.READY
