"""The local-vm provider with real processes (no Ray here: the user-data is a small script; the
join to a real Ray cluster is in tests/integration/ray/test_local_vm_join.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import psutil
import pytest

from cumulo.catalog import load_catalog
from cumulo.core.errors import CapacityError, InvalidSpec
from cumulo.core.offerings import MachineState
from cumulo.providers.base import LAUNCH_TOKEN_TAG, NODE_ID_TAG
from cumulo.providers.local_vm import LocalVMProvider

SCRIPT = """#!/bin/bash
env > "$HOME/env.txt"
sleep 300 &
wait
"""


def offering(instance_type="lvm.c2", zone="local-1a"):
    return next(o for o in load_catalog(["local-vm"]) if o.instance_type == instance_type and o.zone == zone)


@pytest.fixture
def provider(tmp_path):
    p = LocalVMProvider(tmp_path / "vms", ip_registry=tmp_path / "ips", max_machines=3)
    yield p
    for m in p.describe():
        p.kill(m.id)


def wait_for(fn, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_the_catalog_offers_shapes_with_and_without_a_gpu_spot_and_on_demand_in_two_zones():
    rows = load_catalog(["local-vm"])
    assert {o.vcpus for o in rows} == {1, 2, 4} and {o.zone for o in rows} == {"local-1a", "local-1b"}
    assert {o.accelerator_count for o in rows} == {0, 1}
    assert all(o.spot_price is not None and 0 < o.spot_price < o.price for o in rows)


def test_launch_runs_the_user_data_in_a_sandbox_and_is_idempotent_by_token(provider, tmp_path):
    o = offering()
    (m,) = provider.launch(o, 1, spot=False, tags={NODE_ID_TAG: "n-0"}, user_data=SCRIPT, client_token="t1")
    assert m.state == MachineState.RUNNING and m.private_ip.startswith("127.0.0.") and m.zone == "local-1a"
    assert m.tags == {NODE_ID_TAG: "n-0", LAUNCH_TOKEN_TAG: "t1"} and m.instance_type == "lvm.c2"
    folder = tmp_path / "vms" / m.id
    env = dict(line.split("=", 1) for line in wait_for(lambda: (folder / "env.txt").exists()
                                                        and (folder / "env.txt").read_text()).splitlines() if "=" in line)
    assert env["CUMULO_NODE_IP"] == m.private_ip and env["HOME"] == str(folder)
    assert "--dashboard-agent-listen-port=" in env["CUMULO_RAY_START_ARGS"]
    assert not any(k.startswith(("AWS_", "CUMULO_DATABASE", "CUMULO_TOKEN")) for k in env)  # never the control plane's
    again = provider.launch(o, 1, spot=False, tags={NODE_ID_TAG: "n-0"}, user_data=SCRIPT, client_token="t1")
    assert [x.id for x in again] == [m.id] and len(provider.describe()) == 1
    (other,) = provider.launch(o, 1, spot=False, tags={NODE_ID_TAG: "n-1"}, user_data=SCRIPT, client_token="t2")
    assert other.private_ip != m.private_ip  # never a live machine's address
    assert [x.id for x in provider.describe(tags={NODE_ID_TAG: "n-1"})] == [other.id]
    assert provider.describe(region="elsewhere") == []


def test_terminate_stops_every_process_of_the_machine_and_frees_its_address(provider):
    (m,) = provider.launch(offering(), 1, spot=False, tags={}, user_data=SCRIPT, client_token="t1")
    pids = wait_for(lambda: len(provider.pids(m.id)) >= 2 and provider.pids(m.id))  # bash and its sleep
    provider.terminate([m.id], region="local-1")
    provider.terminate([m.id, "lvm-nope"], region="local-1")  # again, and an unknown one: no-ops
    done = wait_for(lambda: (d := provider.describe()[0]).state == MachineState.TERMINATED and d)
    assert done.state_reason == "terminated"
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids)
    (n,) = provider.launch(offering(), 1, spot=False, tags={}, user_data=SCRIPT, client_token="t2")
    assert n.private_ip == m.private_ip  # free again


def test_a_killed_spot_machine_reads_preempted_and_an_on_demand_one_terminated_even_after_a_restart(provider, tmp_path):
    (spot,) = provider.launch(offering(), 1, spot=True, tags={}, user_data=SCRIPT, client_token="s")
    (od,) = provider.launch(offering(), 1, spot=False, tags={}, user_data=SCRIPT, client_token="o")
    assert spot.spot and not od.spot
    provider.kill(spot.id)
    provider.kill(od.id)
    fresh = LocalVMProvider(tmp_path / "vms", ip_registry=tmp_path / "ips")  # a control-plane restart
    states = {m.id: (m.state, m.state_reason) for m in fresh.describe()}
    assert states[spot.id][0] == MachineState.PREEMPTED and "spot" in states[spot.id][1]
    assert states[od.id] == (MachineState.TERMINATED, "the machine died (its processes ended)")


def test_a_machine_whose_user_data_exits_shut_down_with_its_exit_code_spot_or_not(provider):
    (m,) = provider.launch(offering(), 1, spot=True, tags={}, user_data="#!/bin/bash\necho no python here\nexit 3\n",
                           client_token="bad")
    done = wait_for(lambda: (d := provider.describe()[0]).state != MachineState.RUNNING and d)
    assert done.state == MachineState.TERMINATED and "user-data exited with code 3" in done.state_reason, done
    assert "console.log" in done.state_reason


def test_a_machine_that_outlives_the_provider_object_is_still_running_and_can_be_terminated(provider, tmp_path):
    (m,) = provider.launch(offering(), 1, spot=False, tags={}, user_data=SCRIPT, client_token="t")
    fresh = LocalVMProvider(tmp_path / "vms", ip_registry=tmp_path / "ips")
    assert [x.state for x in fresh.describe()] == [MachineState.RUNNING]
    fresh.terminate([m.id], region="local-1")
    wait_for(lambda: fresh.describe()[0].state == MachineState.TERMINATED, timeout=30)  # SIGKILL after KILL_AFTER at worst


def test_capacity_errors_name_what_ran_out_and_leave_nothing_behind(tmp_path):
    p = LocalVMProvider(tmp_path / "vms", ip_registry=tmp_path / "ips", max_machines=2, full_zones=("local-1b",))
    try:
        with pytest.raises(CapacityError, match="zone local-1b") as e:
            p.launch(offering(zone="local-1b"), 1, spot=False, tags={}, user_data=SCRIPT, client_token="z")
        assert e.value.scope == "zone"
        with pytest.raises(CapacityError, match="at most 2 machines") as e:
            p.launch(offering(), 3, spot=False, tags={}, user_data=SCRIPT, client_token="many")
        assert e.value.scope == "provider" and p.describe() == []
        with pytest.raises(InvalidSpec, match="client_token"):
            p.launch(offering(), 1, spot=False, tags={}, user_data=SCRIPT, client_token="")
        two = p.launch(offering(), 2, spot=False, tags={}, user_data=SCRIPT, client_token="two")
        assert len({m.id for m in two}) == 2 and len({m.private_ip for m in two}) == 2
    finally:
        for m in p.describe():
            p.kill(m.id)


def test_the_ip_claims_are_shared_by_every_provider_on_this_host(tmp_path):
    """Two control planes (two homes) on one host never hand out the same address."""
    a = LocalVMProvider(tmp_path / "a", ip_registry=tmp_path / "ips")
    b = LocalVMProvider(tmp_path / "b", ip_registry=tmp_path / "ips")
    try:
        (x,) = a.launch(offering(), 1, spot=False, tags={}, user_data=SCRIPT, client_token="t")
        (y,) = b.launch(offering(), 1, spot=False, tags={}, user_data=SCRIPT, client_token="t")
        assert x.private_ip != y.private_ip
        assert json.loads((tmp_path / "a" / x.id / "machine.json").read_text())["ip"] == x.private_ip
        assert Path(tmp_path / "ips" / x.private_ip).read_text() == str(tmp_path / "a" / x.id)
    finally:
        for p in (a, b):
            for m in p.describe():
                p.kill(m.id)
