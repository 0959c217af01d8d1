"""Self-repair of nodes on a real store: GPU counters the sampler would write (this machine has no
GPU; NVML's readings are written as the sampler writes them) make the node repair cordon a node
with a hardware XID or new uncorrected ECC errors, release a pool's machine, and tell it as an
event and an alert; an application XID or an old count does nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cumulo.control.nodes import register_local_node
from cumulo.control.node_repair import NodeRepairReconciler
from cumulo.policy.node_repair import GpuReading, gpu_fault
from cumulo.runtimes.local import LocalRuntime
from cumulo.services.alerts import AlertService
from cumulo.services.cluster import ClusterService
from cumulo.store import metrics
from cumulo.store.db import Database
from cumulo.store.migrate import upgrade
from cumulo.store.models import Node

T0 = datetime(2026, 5, 1, tzinfo=UTC)


@pytest.mark.parametrize("before,now,fault", [
    ({}, {"gpu0": GpuReading(5, 79, 3)}, None),  # first reading: the baseline
    ({"gpu0": GpuReading(0, None, 0)}, {"gpu0": GpuReading(1, 79, 0)}, "gpu0: XID 79 (GPU has fallen off the bus)"),
    ({"gpu0": GpuReading(0, None, 0)}, {"gpu0": GpuReading(1, 13, 0)}, None),  # the program's fault
    ({"gpu1": GpuReading(0, None, 2)}, {"gpu1": GpuReading(0, None, 3)}, "gpu1: 1 new uncorrected ECC error(s) (3 in all)"),
    ({"gpu0": GpuReading(2, 48, 0)}, {"gpu0": GpuReading(2, 48, 0)}, None),  # nothing new
])
def test_gpu_fault(before, now, fault):
    assert gpu_fault(before, now) == fault


@pytest.fixture
def db(database_url, tmp_path):
    d = Database(database_url)
    upgrade(d.engine)
    register_local_node(d, LocalRuntime(tmp_path / "jobs"), T0)
    yield d
    d.dispose()


def sample(db, t, node, gpu, **values):
    with db.tx() as s:
        metrics.write(s, t, {metrics.SeriesKey("node", "", node, gpu, m): v for m, v in values.items()})


def test_a_hardware_xid_cordons_the_node_and_a_person_can_uncordon_it(db):
    rec = NodeRepairReconciler(db, clock=lambda: T0)
    t = int(T0.timestamp())
    sample(db, t, "local", "gpu0", gpu_xid_errors=0, gpu_ecc_errors_uncorrected=0)
    rec.reconcile("nodes")
    sample(db, t + 10, "local", "gpu0", gpu_xid_errors=1, gpu_last_xid=13, gpu_ecc_errors_uncorrected=0)
    rec.reconcile("nodes")
    assert ClusterService(db).nodes("local")[0].cordoned is None  # XID 13: the program's, not the node's
    sample(db, t + 20, "local", "gpu0", gpu_xid_errors=2, gpu_last_xid=79, gpu_ecc_errors_uncorrected=0)
    rec.reconcile("nodes")
    node = ClusterService(db).nodes("local")[0]
    assert node.cordoned == "GPU fault: gpu0: XID 79 (GPU has fallen off the bus)"
    alerts = AlertService(db).alerts()
    assert [(a.rule, a.object, a.severity) for a in alerts] == [("NodeGpuFault", "local", "critical")]
    events = ClusterService(db).events(kind="Node", name="local")
    assert [e.reason for e in events] == ["NodeCordoned", "AlertFiring"]
    ClusterService(db).uncordon("local", actor="ops")
    assert ClusterService(db).nodes("local")[0].cordoned is None
    assert [e.reason for e in ClusterService(db).events(kind="Node", name="local")][-1] == "NodeUncordoned"
    sample(db, t + 30, "local", "gpu0", gpu_xid_errors=2, gpu_last_xid=79, gpu_ecc_errors_uncorrected=0)
    rec.reconcile("nodes")
    assert ClusterService(db).nodes("local")[0].cordoned is None  # the old count does not cordon it again


def test_a_pool_machine_with_new_ecc_errors_is_cordoned_and_released(db):
    with db.tx() as s:
        s.add(Node(name="gpu-pool-1", provider="aws", cluster="local", state="Ready", cpu=8, memory=32 * 2**30,
                   gpus=[0], gpu_names=["A10G"], created_at=T0, updated_at=T0, node_pool="gpu-pool"))
    rec = NodeRepairReconciler(db, clock=lambda: T0 + timedelta(seconds=20))
    t = int(T0.timestamp())
    sample(db, t, "gpu-pool-1", "gpu0", gpu_ecc_errors_uncorrected=0)
    rec.reconcile("nodes")
    sample(db, t + 10, "gpu-pool-1", "gpu0", gpu_ecc_errors_uncorrected=2)
    rec.reconcile("nodes")
    with db.tx() as s:
        n = s.get(Node, "gpu-pool-1")
        assert n.cordoned.startswith("GPU fault: gpu0: 2 new uncorrected ECC error(s)") and n.release_requested
