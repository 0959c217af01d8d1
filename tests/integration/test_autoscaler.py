"""The autoscaler reconciler on a real store, with a fake clock and a fake load signal: what each
policy is handed is the arrival rate (demand), as in the simulator, not the completion rate."""

from __future__ import annotations

import re

import pytest

from cumulo.control.autoscaler import AutoscalerReconciler, LoadSample
from cumulo.services.deployments import DeploymentService
from cumulo.store.db import Database
from cumulo.store.migrate import upgrade
from cumulo.store.models import Deployment, Replica

#: one replica completes 5 requests/s; 12/s arrive: a queue grows by 7/s
ARRIVALS, COMPLETIONS = 12.0, 5.0
#: what each policy is told one replica carries; the rate policies want ceil(12/8) = 2 replicas from
#: arrivals and 1 from completions (5/8)
TARGET_RPS = 8.0

FAST = {  # each policy's windows and delays shortened so it decides within a few fake seconds
    "kpa": {"stable_window": 6},
    "hpa": {"sync_period": 2},
    "rayserve": {"upscale_delay_s": 1, "look_back_period_s": 3},
    "skyserve": {"decision_interval": 1, "upscale_delay": 1, "qps_window": 5},
    "predictive": {"tick": 2, "rate_window": 5, "reactive_window": 5},
}


class Saturated:
    """A deployment driven past its capacity since t = 0: what a gateway would report."""

    def __init__(self, clock):
        self.clock = clock
        self.names: list[str] = []

    def __call__(self, name: str) -> LoadSample:
        self.names.append(name)
        t = self.clock.t
        return LoadSample(arrivals_total=ARRIVALS * t, requests_total=COMPLETIONS * t,
                          in_flight=(ARRIVALS - COMPLETIONS) * t, mean_latency=0.2)


class Clock:
    t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def db(database_url):
    d = Database(database_url)
    upgrade(d.engine)
    yield d
    d.dispose()


def deploy(db, tmp_path, policy: str) -> str:
    svc = DeploymentService(db, node="local", base_url="http://127.0.0.1:1", wake=lambda _id: None)
    view, _ = svc.deploy({
        "kind": "Deployment", "name": policy, "command": "true", "workdir": str(tmp_path), "replicas": 1,
        "autoscaling": {"policy": policy, "target": 1, "target_rps": TARGET_RPS, "min": 1, "max": 4,
                        "options": FAST[policy]},
    })
    with db.tx() as s:  # one ready replica, as the deployment reconciler would have started
        s.add(Replica(deployment_id=view.id, ordinal=1, generation=1, state="Ready", created_at=view.created_at,
                      host="127.0.0.1", port=1, runtime="local", handle={}, allocation={}, reason="ready",
                      probe_failures=0))
    return view.id


def run(db, dep_id: str, seconds: int) -> tuple[int | None, str]:
    clock = Clock()
    load = Saturated(clock)
    woken: list[str] = []
    rec = AutoscalerReconciler(db, load=load, wake_deployment=woken.append, clock=clock)
    for i in range(seconds + 1):
        clock.t = float(i)
        assert rec.reconcile(dep_id) == 1.0
    assert set(load.names) == {load.names[0]}
    with db.tx() as s:
        d = s.get(Deployment, dep_id)
        return d.desired_replicas, d.autoscale_reason


@pytest.mark.parametrize("policy, pattern", [
    ("skyserve", r"([\d.]+) req/s / 8 per replica"),
    ("predictive", r"L=([\d.]+) "),
])
def test_rate_policies_are_handed_the_arrival_rate_not_the_completion_rate(db, tmp_path, policy, pattern):
    dep_id = deploy(db, tmp_path, policy)
    desired, reason = run(db, dep_id, 8)
    seen = float(re.search(pattern, reason).group(1))
    assert seen == pytest.approx(ARRIVALS), reason  # the completion rate would read 5.00
    assert desired is not None and desired >= 2, reason  # 12/s over 8 per replica; completions ask for 1


@pytest.mark.parametrize("policy", ["kpa", "hpa", "rayserve"])
def test_concurrency_policies_are_handed_the_requests_in_flight(db, tmp_path, policy):
    dep_id = deploy(db, tmp_path, policy)
    desired, reason = run(db, dep_id, 8)
    assert desired == 4, reason  # in flight grows by 7/s against a target of 1 per replica: the max


def test_passes_woken_early_do_not_skew_the_rate(db, tmp_path):
    """The policies weigh each sample as one second (as the simulator's): a pass that comes 0.05 s
    after the last (an API write woke it) must not add a 0.05 s sample. Here 3 requests arrive each
    second, just before the whole second; half the passes come early."""
    dep_id = deploy(db, tmp_path, "skyserve")
    clock = Clock()

    def load(name: str) -> LoadSample:
        n = 3 * int(clock.t + 0.01)
        return LoadSample(arrivals_total=n, requests_total=n, in_flight=0, mean_latency=0.1)

    rec = AutoscalerReconciler(db, load=load, wake_deployment=lambda _id: None, clock=clock)
    for i in range(12):
        for t in (i, i + 0.05):
            clock.t = float(t)
            rec.reconcile(dep_id)
    with db.tx() as s:
        reason = s.get(Deployment, dep_id).autoscale_reason
    assert float(re.search(r"([\d.]+) req/s", reason).group(1)) == pytest.approx(3.0), reason


def test_the_first_decision_waits_one_policy_period(db, tmp_path):
    """A new track (a new deployment, a restarted control plane) decides one policy period after
    its first reading, as the simulator does, not on the first second it has seen: here the first
    second has no arrivals yet and the load comes after it."""
    dep_id = deploy(db, tmp_path, "predictive")  # tick 2 s
    clock = Clock()
    decided: list[float] = []

    def load(name: str) -> LoadSample:
        n = 0.0 if clock.t < 1.5 else ARRIVALS * (clock.t - 1.5)
        return LoadSample(arrivals_total=n, requests_total=n, in_flight=0, mean_latency=0.1)

    rec = AutoscalerReconciler(db, load=load, wake_deployment=lambda _id: decided.append(clock.t), clock=clock)
    for i in range(5):
        clock.t = float(i)
        rec.reconcile(dep_id)
        with db.tx() as s:
            reason = s.get(Deployment, dep_id).autoscale_reason
        if i < 2:
            assert not reason, f"decided at t={i} s on {i} s of load: {reason}"
    assert reason  # decided by t = 2 s


def test_the_policies_get_the_mean_concurrency_of_each_second_not_an_instant(db, tmp_path):
    """In flight is sampled once a second; a gateway's integral gives the second's mean. Here 10
    requests are in flight for the first 0.1 s of every second and none at the instants sampled:
    the mean is 1, the instants say 0."""
    dep_id = deploy(db, tmp_path, "kpa")
    clock = Clock()

    def load(name: str) -> LoadSample:
        return LoadSample(arrivals_total=10 * int(clock.t), requests_total=10 * int(clock.t), in_flight=0,
                          mean_latency=0.1, in_flight_seconds=1.0 * clock.t)

    rec = AutoscalerReconciler(db, load=load, wake_deployment=lambda _id: None, clock=clock)
    for i in range(10):
        clock.t = float(i)
        rec.reconcile(dep_id)
    track = rec._tracks[dep_id]
    assert list(track.in_flight)[-5:] == [1.0] * 5
