"""The driver of one Ray launch:  python -m cumulo.runtimes.ray.driver RUN_DIR NONCE

Submitted by RayRuntime.launch as a Ray job. It claims the run folder (a launch abandoned first
starts nothing), places one bundle per worker with a placement group (PACK, or STRICT_SPREAD for
one worker per node), starts a Worker actor per bundle, gives each worker the placement-dependent
environment, then polls the workers and rewrites status.json until every one has ended. The first
failing (or lost) rank stops the rest: SIGTERM, SIGKILL after the grace. A stop request (the control
file, or SIGTERM from Ray's stop_job) stops every worker the same way.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

from cumulo.core.files import write_private
from cumulo.runtimes.ray.rundir import HEARTBEAT, claim, read_json, write_json

POLL = 0.5  # seconds between polls of the workers
#: a worker whose actor does not answer is given up as lost after this long; a node Ray declares
#: dead ends it at once (Ray decides after its own health checks: about 15 s with Ray's defaults)
UNREACHABLE_LIMIT = 60.0


class Driver:
    def __init__(self, run_dir: Path, spec: dict) -> None:
        self.run = run_dir
        self.spec = spec
        self.n = int(spec["workers"])
        self.workers: list[dict] = [{"rank": r} for r in range(self.n)]
        self.codes: list[int | None] = [None] * self.n
        self.ended: set[int] = set()
        self.first_failure: int | None = None
        self.node_lost: str | None = None
        self.detail = ""
        self.stop_signal: int | None = None  # signal.SIGTERM or SIGKILL once stopping
        self.kill_at: float | None = None
        self.last_write = 0.0
        self.last_status: dict | None = None
        self.silent_since: dict[int, float] = {}  # rank -> when its actor stopped answering

    # -- status ------------------------------------------------------------------------------
    def write(self, phase: str, force: bool = False, **extra) -> None:
        status = {"phase": phase, "detail": self.detail, "workers": self.workers, **extra}
        now = time.time()
        if not force and status == self.last_status and now - self.last_write < HEARTBEAT:
            return
        self.last_status = json.loads(json.dumps(status))
        write_json(self.run / "status.json", {**status, "updated": now})
        self.last_write = now

    def requested_stop(self) -> int | None:
        control = read_json(self.run / "control")
        if isinstance(control, dict):
            return signal.SIGKILL if control.get("signal") == "KILL" else signal.SIGTERM
        return self.stop_signal

    # -- the launch --------------------------------------------------------------------------
    def run_all(self, envs: list[dict]) -> int:
        import ray
        from ray.util.placement_group import placement_group, remove_placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        from cumulo.runtimes.ray.worker import Worker

        sig = self.requested_stop()
        if sig is not None:
            return self.stopped_before_start(sig)
        res = self.spec["resources"]
        bundle = {"CPU": float(res["cpu"]), "memory": float(res["memory"])}
        if res.get("gpu"):
            bundle["GPU"] = float(res["gpu"])
        typed = _accelerator(ray, res.get("gpu_type")) if res.get("gpu") else None
        if typed:  # Ray's node resource for a GPU type ("accelerator_type:A100"): a sliver of it pins the type
            bundle[typed] = 0.001
        strategy = "STRICT_SPREAD" if self.spec["placement"] == "spread" else "PACK"
        pg = placement_group([dict(bundle) for _ in range(self.n)], strategy=strategy, name=self.spec["key"])
        shape = f"{self.n} x {_show(bundle)} ({strategy})"
        self.detail = f"waiting for the Ray cluster to place {shape}"
        ready = pg.ready()
        waited = time.monotonic()
        while True:
            done, _ = ray.wait([ready], timeout=POLL)
            if done:
                break
            sig = self.requested_stop()
            if sig is not None:
                remove_placement_group(pg)
                return self.stopped_before_start(sig)
            self.detail = (f"waiting {time.monotonic() - waited:.0f}s for the Ray cluster to place {shape}: "
                           f"{_cluster_shortfall(ray, bundle, self.n, strategy)}")
            self.write("queued")

        self.detail = f"placed {shape}; starting the workers"
        self.write("starting", force=True)
        actors = [
            Worker.options(
                scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=r),
                num_cpus=bundle["CPU"], num_gpus=bundle.get("GPU", 0), memory=bundle["memory"],
                resources={k: v for k, v in bundle.items() if k.startswith("accelerator_type:")},
            ).remote(str(self.run), r)
            for r in range(self.n)
        ]
        serve = bool(self.spec.get("serve"))
        infos = self.gather(ray, [a.info.remote(serve or r == 0) for r, a in enumerate(actors)], "starting")
        for r, info in enumerate(infos):
            self.workers[r].update(node=info["node"], host=info["host"], gpus=info["gpus"])
            if serve:
                self.workers[r]["port"] = info["port"]
        for r, env in enumerate(envs):
            write_private(self.run / f"env-{r}", json.dumps(env))
        placed = _placed_env(infos, serve)
        pids = self.gather(ray, [a.start.remote(self.spec["argv"], self.spec["workdir"], placed[r])
                                 for r, a in enumerate(actors)], "starting")
        for r, pid in enumerate(pids):
            self.workers[r]["pid"] = pid
        self.detail = ""
        self.write("running", force=True)
        self.follow(ray, actors)
        remove_placement_group(pg)
        codes = [self.workers[r].get("exit_code") for r in range(self.n)]
        first = self.first_failure
        exit_code = (codes[first] if first is not None else 0)
        self.write("exited", force=True, exit_codes=codes, exit_code=exit_code, node_lost=self.node_lost)
        return 0

    def stopped_before_start(self, sig: int) -> int:
        self.detail = "stopped before its workers were placed"
        self.workers = [{"rank": r, "exit_code": 128 + sig} for r in range(self.n)]
        self.write("exited", force=True, exit_codes=[128 + sig] * self.n, exit_code=128 + sig)
        return 0

    def gather(self, ray, refs: list, phase: str) -> list:
        """ray.get that keeps the status file's heartbeat going while it waits."""
        while True:
            done, _ = ray.wait(refs, num_returns=len(refs), timeout=HEARTBEAT)
            if len(done) == len(refs):
                return ray.get(refs)
            self.write(phase)

    def follow(self, ray, actors) -> None:
        from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError

        grace = float(self.spec["stop_grace"])
        while len(self.ended) < self.n:
            sig = self.requested_stop()
            if sig is not None and (self.stop_signal is None or sig == signal.SIGKILL and self.kill_at is not None):
                self.stop_others(actors, sig, grace)
            if self.kill_at is not None and time.monotonic() >= self.kill_at:
                self.kill_at = None
                for r, a in enumerate(actors):
                    if r not in self.ended:
                        a.signal.remote(signal.SIGKILL)
            live = [r for r in range(self.n) if r not in self.ended]
            refs = [actors[r].poll.remote() for r in live]
            ray.wait(refs, num_returns=len(refs), timeout=max(POLL, 5.0))
            for r, ref in zip(live, refs):
                try:
                    got = ray.get(ref, timeout=0)
                except (GetTimeoutError, ActorUnavailableError, RayActorError) as e:
                    # its node may be failing: Ray declares the node dead after its health checks
                    if self.silent(ray, r, e):
                        self.stop_others(actors, signal.SIGTERM, grace)
                    continue
                self.silent_since.pop(r, None)
                w = self.workers[r]
                if got.get("exit_code") is None:
                    w["cpu_percent"], w["memory_bytes"] = got.get("cpu_percent"), got.get("memory_bytes")
                    continue
                w["exit_code"] = got["exit_code"]
                w.pop("cpu_percent", None)
                w.pop("memory_bytes", None)
                self.ended.add(r)
                if got["exit_code"] != 0 and self.first_failure is None:
                    self.first_failure = r
                    if self.stop_signal is None:
                        self.detail = f"rank {r} failed with exit code {got['exit_code']}; stopping the others"
                    self.stop_others(actors, signal.SIGTERM, grace)
            self.write("running")
            time.sleep(POLL)

    def stop_others(self, actors, sig: int, grace: float) -> None:
        if self.stop_signal == signal.SIGKILL or (self.stop_signal is not None and sig == signal.SIGTERM):
            return
        self.stop_signal = sig
        for r, a in enumerate(actors):
            if r not in self.ended:
                a.signal.remote(sig)
        self.kill_at = time.monotonic() + grace if sig == signal.SIGTERM else None

    def silent(self, ray, rank: int, error: Exception) -> bool:
        """A poll of `rank` failed: True once the rank is lost (its node dead, or silent too long)."""
        w = self.workers[rank]
        node, host = w.get("node"), w.get("host")
        now = time.monotonic()
        since = self.silent_since.setdefault(rank, now)
        dead = node is not None and not _node_alive(ray, node)
        why = str(error).splitlines()[0][:300] if str(error) else type(error).__name__
        from ray.exceptions import ActorDiedError

        # an actor Ray declares dead on a live node died by itself (e.g. killed for memory): lost
        # now; one that does not answer may be on a node that is dying: wait for Ray's verdict
        if not dead and not isinstance(error, ActorDiedError) and now - since < UNREACHABLE_LIMIT:
            if self.first_failure is None and self.stop_signal is None:
                self.detail = (f"rank {rank} on node {host} does not answer for {now - since:.0f}s ({why}); "
                               "waiting for Ray to tell whether the node is lost")
            return False
        self.ended.add(rank)
        w["exit_code"] = None
        w["lost"] = True
        if self.first_failure is None:
            self.first_failure = rank
        if dead and self.node_lost is None:
            self.node_lost = host or node
            self.detail = f"node {host} (ray node id {node}) was lost under rank {rank}"
        elif self.first_failure == rank:
            self.detail = f"rank {rank}'s worker on node {host} was lost: {why}"
        return True


def _node_alive(ray, node_id: str) -> bool:
    for n in ray.nodes():
        if n.get("NodeID") == node_id:
            return bool(n.get("Alive"))
    return False


def _placed_env(infos: list[dict], serve: bool) -> list[dict[str, str]]:
    """The environment placement decides, per rank (node ranks in order of their first rank)."""
    nodes: list[str] = []
    for info in infos:
        if info["node"] not in nodes:
            nodes.append(info["node"])
    ip_of = {info["node"]: info["host"] for info in infos}
    master = infos[0]
    out = []
    for info in infos:
        same = [i for i, other in enumerate(infos) if other["node"] == info["node"]]
        env = {
            "LOCAL_RANK": str(same.index(infos.index(info))),
            "LOCAL_WORLD_SIZE": str(len(same)),
            "MASTER_ADDR": master["host"],
            "MASTER_PORT": str(master["port"]),
            "CUMULO_NODE_RANK": str(nodes.index(info["node"])),
            "CUMULO_NUM_NODES": str(len(nodes)),
            "CUMULO_NODE_IPS": ",".join(ip_of[n] for n in nodes),
            "CUDA_VISIBLE_DEVICES": ",".join(info["gpus"]),
        }
        if serve:
            env["HOST"], env["PORT"] = info["host"], str(info["port"])
        out.append(env)
    return out


def _accelerator(ray, wanted: str | None) -> str | None:
    """The cluster's `accelerator_type:<T>` resource whose T contains `wanted` (case-insensitive),
    or a made-up one no node has when none does (the placement group then waits, and says so)."""
    if not wanted:
        return None
    keys = sorted(k for k in ray.cluster_resources() if k.startswith("accelerator_type:"))
    match = next((k for k in keys if wanted.lower() in k.split(":", 1)[1].lower()), None)
    return match or f"accelerator_type:{wanted}"


def _show(bundle: dict) -> str:
    parts = [f"{bundle['CPU']:g} CPU", f"{bundle['memory'] / 2**20:.0f} MiB"]
    if bundle.get("GPU"):
        parts.append(f"{bundle['GPU']:g} GPU")
    return "{" + ", ".join(parts) + "}"


def _cluster_shortfall(ray, bundle: dict, n: int, strategy: str) -> str:
    """Why the bundles do not fit now, from what each alive node has free."""
    try:
        free = ray.available_resources()
        alive = [x for x in ray.nodes() if x.get("Alive")]
    except Exception as e:  # noqa: BLE001 -- only for the message
        return f"(cluster state unavailable: {e})"
    have = ", ".join(f"{k} {free.get(k, 0):g}" for k in ("CPU", "GPU") if k in bundle or k == "CPU")
    if strategy == "STRICT_SPREAD" and len(alive) < n:
        return f"one worker per node needs {n} nodes, the cluster has {len(alive)} alive"
    return f"the cluster has {have} free on {len(alive)} alive nodes (others' work holds the rest)"


def main(argv: list[str]) -> int:
    run_dir, nonce = Path(argv[0]), argv[1]
    secrets = run_dir / f"secrets-{nonce}"
    if not claim(run_dir, {"driver_pid": os.getpid(), "nonce": nonce, "started": time.time()}):
        secrets.unlink(missing_ok=True)
        print(f"cumulo: {run_dir} is claimed already (abandoned, or another driver): nothing to start")
        return 0
    try:
        envs = json.loads(secrets.read_text())
    finally:
        secrets.unlink(missing_ok=True)
    spec = json.loads((run_dir / "spec.json").read_text())
    driver = Driver(run_dir, spec)
    signal.signal(signal.SIGTERM, lambda *_: _on_term(driver))

    import ray

    try:
        ray.init(address="auto", logging_level=logging.WARNING, log_to_driver=False, include_dashboard=False)
        return driver.run_all(envs)
    except BaseException as e:
        driver.detail = f"the cumulo driver failed: {type(e).__name__}: {e}"
        driver.write("exited", force=True, exit_codes=[w.get("exit_code") for w in driver.workers],
                     exit_code=None, node_lost=driver.node_lost, driver_failed=True)
        raise
    finally:
        for r in range(driver.n):
            (run_dir / f"env-{r}").unlink(missing_ok=True)


def _on_term(driver: Driver) -> None:
    """Ray's stop_job sends SIGTERM (SIGKILL 3 s later): treat it as a stop request."""
    if not (driver.run / "control").exists():
        write_json(driver.run / "control", {"signal": "TERM"})


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
