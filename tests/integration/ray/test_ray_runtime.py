"""The Ray runtime against a real 3-node Ray cluster on loopback (`bash .ci/ray.sh`)."""

from __future__ import annotations

import socket
import time
import urllib.request
from pathlib import Path

import pytest

from cumulo.core.states import ProcessPhase
from cumulo.runtimes.base import RuntimeUnavailable
from cumulo.runtimes.ray import RayRuntime

from .conftest import DONE, spec, wait_for

ENV_SHOWN = "RANK WORLD_SIZE LOCAL_RANK LOCAL_WORLD_SIZE MASTER_ADDR MASTER_PORT CUMULO_NODE_RANK CUMULO_NUM_NODES CUMULO_NODE_IPS"


def _env_of(log: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in log.splitlines() if "=" in line)


def test_nodes_lists_the_cluster_with_its_capacity(ray_runtime):
    nodes = [n for n in ray_runtime.nodes() if n.alive]
    assert len(nodes) >= 3
    assert len({n.id for n in nodes}) == len({n.address for n in nodes}) == len(nodes)
    assert all(n.cpu > 0 and n.memory > 0 and n.cpu_free is not None for n in nodes)
    assert {"127.0.0.2", "127.0.0.3", "127.0.0.4"} <= {n.address for n in nodes}


def test_an_unreachable_cluster_raises_runtime_unavailable_naming_it(tmp_path):
    refused = RayRuntime("http://127.0.0.1:9", tmp_path)
    with pytest.raises(RuntimeUnavailable, match="127.0.0.1:9"):
        refused.nodes()
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        mute = RayRuntime(f"http://127.0.0.1:{port}", tmp_path, http_timeout=0.5)
        with pytest.raises(RuntimeUnavailable, match=f"127.0.0.1:{port}.*dashboard"):
            mute.nodes()
        with pytest.raises(RuntimeUnavailable):
            mute.launch(spec("job/attempt-1", "true"))
        # the launch left no secrets behind: its submission never went through
        assert not list(Path(mute.handle_for("job/attempt-1").data["dir"]).glob("secrets-*"))


def test_spread_workers_land_on_different_nodes_with_the_environment_contract(ray_runtime):
    s = spec("spread/attempt-1", f"for v in {ENV_SHOWN}; do eval echo $v=\\$$v; done; echo SECRET=$SECRET",
             workers=2, placement="spread", env={"SECRET": "hunter2"})
    h = ray_runtime.launch(s)
    obs = wait_for(ray_runtime, h, DONE)
    assert obs.phase == ProcessPhase.EXITED and obs.exit_code == 0 and obs.exit_codes == (0, 0)
    w0, w1 = obs.workers
    assert w0.node != w1.node and w0.host != w1.host
    # cross-checked with the engine's own view of its nodes
    engine = {n.id: n.address for n in ray_runtime.nodes()}
    assert engine[w0.node] == w0.host and engine[w1.node] == w1.host
    envs = [_env_of(Path(ray_runtime.log_path(h, r)).read_text()) for r in (0, 1)]
    for rank, env in enumerate(envs):
        assert env["RANK"] == str(rank) and env["WORLD_SIZE"] == "2"
        assert env["MASTER_ADDR"] == w0.host and int(env["MASTER_PORT"]) > 0
        assert env["LOCAL_RANK"] == "0" and env["LOCAL_WORLD_SIZE"] == "1"
        assert env["CUMULO_NODE_RANK"] == str(rank) and env["CUMULO_NUM_NODES"] == "2"
        assert env["CUMULO_NODE_IPS"] == f"{w0.host},{w1.host}"
        assert env["SECRET"] == "hunter2"
    assert envs[0]["MASTER_PORT"] == envs[1]["MASTER_PORT"]
    run = Path(h.data["dir"])
    leftovers = [p.name for p in run.iterdir() if p.name.startswith(("secrets-", "env-"))]
    assert leftovers == []
    assert "hunter2" not in "".join(p.read_text() for p in run.iterdir() if p.suffix == ".json")


def test_pack_puts_workers_on_one_node_and_a_failing_rank_stops_the_other(ray_runtime):
    s = spec("fail/attempt-1", 'echo "$LOCAL_RANK/$LOCAL_WORLD_SIZE"; [ "$RANK" = 1 ] && exit 3; exec sleep 60',
             workers=2, stop_grace=5)
    h = ray_runtime.launch(s)
    obs = wait_for(ray_runtime, h, DONE)
    assert obs.phase == ProcessPhase.EXITED
    assert obs.exit_codes == (143, 3) and obs.exit_code == 3
    assert obs.workers[0].node == obs.workers[1].node
    logs = sorted(Path(ray_runtime.log_path(h, r)).read_text().strip() for r in (0, 1))
    assert logs == ["0/2", "1/2"]


def test_stop_ends_the_workers_sigkill_after_the_grace(ray_runtime):
    s = spec("stop/attempt-1", "[ \"$RANK\" = 1 ] && trap '' TERM; sleep 60 & wait; sleep 60",
             workers=2, stop_grace=2)
    h = ray_runtime.launch(s)
    wait_for(ray_runtime, h, (ProcessPhase.RUNNING,))
    ray_runtime.stop(h)
    obs = wait_for(ray_runtime, h, DONE, timeout=30)
    assert obs.phase == ProcessPhase.EXITED
    assert obs.exit_codes == (143, 137)  # rank 1 ignored SIGTERM: killed after the grace


def test_a_second_launch_of_the_same_key_does_not_start_the_work_twice(ray_runtime, tmp_path):
    marker = tmp_path / "ran"
    s = spec("twice/attempt-1", f"echo ran >> {marker}")
    h1 = ray_runtime.launch(s)
    h2 = ray_runtime.launch(s)  # the driver has not claimed the run yet: Ray refuses the duplicate
    assert h1 == h2
    obs = wait_for(ray_runtime, h1, DONE)
    assert obs.exit_code == 0
    assert ray_runtime.launch(s) == h1  # after it ran: nothing new starts either
    time.sleep(3)
    assert marker.read_text() == "ran\n"
    assert not list(Path(h1.data["dir"]).glob("secrets-*"))


def test_abandon_before_launch_means_it_never_runs(ray_runtime, tmp_path):
    marker = tmp_path / "ran"
    s = spec("abandoned/attempt-1", f"touch {marker}")
    h = ray_runtime.handle_for(s.key)
    assert ray_runtime.abandon(h) is True
    assert ray_runtime.launch(s) == h
    obs = wait_for(ray_runtime, h, DONE)
    assert obs.phase == ProcessPhase.LOST and "abandoned" in obs.detail
    assert not marker.exists()


def test_abandon_racing_a_submitted_launch(ray_runtime, tmp_path):
    """Submitted, then abandoned before its driver came up: the driver starts nothing."""
    marker = tmp_path / "ran"
    s = spec("late/attempt-1", f"touch {marker}")
    h = ray_runtime.launch(s)
    assert ray_runtime.abandon(h) is True  # the driver takes seconds to start
    obs = wait_for(ray_runtime, h, DONE)
    assert obs.phase == ProcessPhase.LOST
    sid = h.data["submission_id"]
    deadline = time.monotonic() + 60
    while ray_runtime._job(sid, fresh=True)["status"] not in ("SUCCEEDED", "FAILED", "STOPPED"):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert not marker.exists()
    assert not list(Path(h.data["dir"]).glob("secrets-*"))


def test_abandon_after_it_came_up_is_refused(ray_runtime):
    h = ray_runtime.launch(spec("up/attempt-1", "sleep 60"))
    wait_for(ray_runtime, h, (ProcessPhase.RUNNING,))
    assert ray_runtime.abandon(h) is False
    ray_runtime.kill(h)
    assert wait_for(ray_runtime, h, DONE, timeout=30).exit_code == 137


def test_a_serve_launch_answers_on_its_reported_host_and_port(ray_runtime, tmp_path):
    (tmp_path / "hello.txt").write_text("hello from a replica")
    s = spec("serve/replica-1", 'exec python -m http.server "$PORT" --bind "$HOST"', serve=True, workdir=str(tmp_path))
    h = ray_runtime.launch(s)
    obs = wait_for(ray_runtime, h, (ProcessPhase.RUNNING, *DONE))
    assert obs.phase == ProcessPhase.RUNNING
    (w,) = obs.workers
    assert w.host and w.host.startswith("127.0.0.") and w.port
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://{w.host}:{w.port}/hello.txt", timeout=2) as r:
                assert r.read() == b"hello from a replica"
            break
        except OSError:
            assert time.monotonic() < deadline, Path(ray_runtime.log_path(h)).read_text()
            time.sleep(0.3)
    ray_runtime.stop(h)
    assert wait_for(ray_runtime, h, DONE, timeout=30).phase == ProcessPhase.EXITED


def test_work_that_does_not_fit_is_queued_with_the_reason_and_can_be_stopped(ray_runtime):
    alive = len([n for n in ray_runtime.nodes() if n.alive])
    h = ray_runtime.launch(spec("toolarge/attempt-1", "true", workers=alive + 1, placement="spread"))
    deadline = time.monotonic() + 60
    obs = ray_runtime.observe(h)
    while not (obs.phase == ProcessPhase.QUEUED and "place" in obs.detail):
        assert time.monotonic() < deadline, obs
        time.sleep(0.3)
        obs = ray_runtime.observe(h)
    assert f"{alive + 1} nodes" in obs.detail
    ray_runtime.stop(h)
    obs = wait_for(ray_runtime, h, DONE, timeout=30)
    assert obs.phase == ProcessPhase.EXITED and obs.exit_code == 143


@pytest.mark.slow
def test_a_node_lost_under_a_worker_ends_the_launch_naming_the_node(ray_runtime, ray_extra_node):
    extra = ray_extra_node()
    alive = [n for n in ray_runtime.nodes() if n.alive]
    assert extra.ip in {n.address for n in alive}
    # one worker on every node (so one lands on the extra one)
    h = ray_runtime.launch(spec("nodeloss/attempt-1", "exec sleep 300", workers=len(alive), placement="spread",
                                stop_grace=3))
    obs = wait_for(ray_runtime, h, (ProcessPhase.RUNNING, *DONE))
    assert obs.phase == ProcessPhase.RUNNING
    on_extra = [w for w in obs.workers if w.host == extra.ip]
    assert len(on_extra) == 1 and on_extra[0].node == extra.node_id
    killed_at = time.monotonic()
    extra.kill()
    obs = wait_for(ray_runtime, h, DONE, timeout=120)
    print(f"node loss reported {time.monotonic() - killed_at:.1f}s after the kill")
    assert obs.phase == ProcessPhase.LOST
    assert obs.node_lost == extra.ip
    assert extra.ip in obs.detail and extra.node_id in obs.detail
    lost_rank = on_extra[0].rank
    assert obs.exit_codes[lost_rank] is None
    assert [c for r, c in enumerate(obs.exit_codes) if r != lost_rank] == [143] * (len(alive) - 1)


def test_two_control_planes_with_the_same_key_get_their_own_ray_jobs(ray_cluster, tmp_path):
    """The submission id is derived from the run folder too: same key, other run root, other job."""
    a = RayRuntime(ray_cluster, tmp_path / "a")
    b = RayRuntime(ray_cluster, tmp_path / "b")
    s = spec("same/attempt-1", f"echo $0 >> {tmp_path}/ran")
    ha, hb = a.launch(s), b.launch(s)
    assert ha.data["submission_id"] != hb.data["submission_id"]
    assert wait_for(a, ha, DONE).phase == wait_for(b, hb, DONE).phase == ProcessPhase.EXITED


@pytest.mark.slow
def test_workers_die_with_their_driver(ray_runtime):
    """SIGKILL of the driver: Ray kills its actors, each worker dies with its actor (PDEATHSIG)."""
    import json
    import os
    import signal

    import psutil

    h = ray_runtime.launch(spec("orphan/attempt-1", "exec sleep 300", workers=2))
    obs = wait_for(ray_runtime, h, (ProcessPhase.RUNNING,))
    pids = [w.pid for w in obs.workers]
    assert all(psutil.pid_exists(p) for p in pids)
    driver = json.loads((Path(h.data["dir"]) / "claim").read_text())["driver_pid"]
    os.kill(driver, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids):
        assert time.monotonic() < deadline, "a worker outlived its driver and actor"
        time.sleep(0.5)
    obs = wait_for(ray_runtime, h, DONE, timeout=60)
    assert obs.phase == ProcessPhase.LOST and "without recording exit codes" in obs.detail


@pytest.mark.slow
def test_gpus_as_ray_assigns_them(ray_runtime, ray_extra_node):
    """A node that declares 2 GPUs of a type (as `ray start --num-gpus` allows on any machine)."""
    from cumulo.runtimes.base import WorkerResources

    gpu_node = ray_extra_node("--num-gpus=2", '--resources={"accelerator_type:T4": 1}')
    deadline = time.monotonic() + 30
    while True:  # what is free comes from Ray's usage report, refreshed every few seconds
        (mine,) = [n for n in ray_runtime.nodes() if n.id == gpu_node.node_id]
        if mine.gpus_free is not None or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert (mine.gpus, mine.gpu_type, mine.gpus_free) == (2, "T4", 2)
    s = spec("gpu/attempt-1", "echo CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES; sleep 2", workers=2,
             resources=WorkerResources(cpu=1, memory=64 * 2**20, gpu=1))
    h = ray_runtime.launch(s)
    obs = wait_for(ray_runtime, h, DONE)
    assert obs.phase == ProcessPhase.EXITED and obs.exit_code == 0
    assert {w.node for w in obs.workers} == {gpu_node.node_id}
    seen = sorted(_env_of(Path(ray_runtime.log_path(h, r)).read_text())["CUDA_VISIBLE_DEVICES"] for r in (0, 1))
    assert seen == ["0", "1"]


def test_a_worker_actor_killed_on_a_live_node_ends_the_launch_at_once(ray_runtime):
    """Not a node loss: the actor process dies (as when killed for memory); its node lives on."""
    import os
    import signal

    import psutil

    h = ray_runtime.launch(spec("actordied/attempt-1", "exec sleep 300", workers=2, stop_grace=3))
    obs = wait_for(ray_runtime, h, (ProcessPhase.RUNNING,))
    actor = psutil.Process(obs.workers[1].pid).parent()
    assert actor is not None and "Worker" in " ".join(actor.cmdline())
    os.kill(actor.pid, signal.SIGKILL)
    obs = wait_for(ray_runtime, h, DONE, timeout=40)
    assert obs.phase == ProcessPhase.LOST and obs.node_lost is None
    assert obs.exit_codes == (143, None)
    assert "rank 1" in obs.detail


def test_crash_safety_on_both_sides_of_the_launch(ray_cluster, tmp_path):
    """The control plane records handle_for(key) first. Crashed before launch(): a new runtime sees
    nothing launched and abandons it; crashed after: a new runtime re-adopts the running launch."""
    before = RayRuntime(ray_cluster, tmp_path)
    h = before.handle_for("crash/attempt-1")
    restarted = RayRuntime(ray_cluster, tmp_path)
    assert restarted.observe(h).phase == ProcessPhase.BOOTING
    assert restarted.abandon(h) is True
    assert restarted.observe(h).phase == ProcessPhase.LOST

    s = spec("crash/attempt-2", "exec sleep 300", workers=2)
    h = RayRuntime(ray_cluster, tmp_path).launch(s)  # then the control plane dies
    restarted = RayRuntime(ray_cluster, tmp_path)
    assert restarted.handle_for(s.key) == h
    obs = wait_for(restarted, h, (ProcessPhase.RUNNING,))
    assert all(w.pid and w.node for w in obs.workers)
    assert restarted.launch(s) == h  # relaunching it (unsure whether it went out) starts nothing new
    restarted.stop(h)
    obs = wait_for(restarted, h, DONE, timeout=30)
    assert obs.phase == ProcessPhase.EXITED and obs.exit_codes == (143, 143)
