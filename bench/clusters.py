"""Benchmark cumulo on a Ray cluster and on Slurm against the engines' own interfaces; prints one
JSON object.

    bash .ci/ray.sh && bash .ci/slurm.sh
    python bench/clusters.py [--ray URL] [--partition debug] [--parts s2s,rate,cpu] [--quick] > result.json

Parts (each starts its own control plane, `python -m cumulo.app`, in a temporary home):

  s2s   submit to all workers running, one 2-worker job on Ray: cumulo (POST /jobs with
        `cluster: ray`) against Ray's Jobs API (POST /api/jobs/, what `ray job submit` calls) of a
        user's own driver that does what cumulo's does: a 2-bundle placement group (PACK), one actor
        per bundle, each running the command in a subprocess. Every worker command writes
        `date +%s.%N` to a file of its own; the time is from just before the submit call to the
        later of the two. Rounds alternate which side goes first.
  rate  launches per second of trivial jobs, cumulo against the engine's own interface, in
        interleaved bursts: a launch counts when the engine has accepted the job (Ray: the job's
        `start_time`, which Ray's JobManager stamps when it takes the submission; Slurm: `sbatch`
        returned a job id: for cumulo the mtime of the run folder's `jobid` file, which the runtime
        writes when its sbatch returns). Rate = jobs / (last acceptance - first submit call), summed
        over bursts. Each burst waits until its jobs have ended before the next starts.
  cpu   CPU of the control plane (the server process and its own descendants; Ray's processes are
        not its descendants) over a window with N sleeping jobs running on Ray, against the same
        control plane idle (the Ray cluster added, no jobs) just before.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx
import psutil

TERMINAL = {"Succeeded", "Failed", "Cancelled"}
RAY_TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}

#: what a Ray user writes to run N workers of a command with a placement group (the baseline)
USER_DRIVER = r'''
import logging, os, subprocess, sys
import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy


@ray.remote(max_restarts=0)
class Worker:
    def run(self, argv, env):
        return subprocess.run(argv, env={**os.environ, **env}).returncode


def main():
    n, cpu, mem, cmd = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    ray.init(address="auto", logging_level=logging.WARNING, log_to_driver=False, include_dashboard=False)
    pg = placement_group([{"CPU": cpu, "memory": mem} for _ in range(n)], strategy="PACK")
    ray.get(pg.ready())
    actors = [Worker.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=r),
                             num_cpus=cpu, memory=mem).remote() for r in range(n)]
    codes = ray.get([a.run.remote(["/bin/sh", "-c", cmd], {"RANK": str(r), "WORLD_SIZE": str(n)})
                     for r, a in enumerate(actors)])
    remove_placement_group(pg)
    sys.exit(max(codes))


main()
'''

CPU, MEMORY = 0.5, 64 * 2**20  # per worker, both sides


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def summary(values: list[float]) -> dict:
    return {"median_s": round(statistics.median(values), 3), "p90_s": round(pct(values, 90), 3),
            "min_s": round(min(values), 3), "max_s": round(max(values), 3), "n": len(values)}


def wait(pred, timeout: float, what: str, poll: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(poll)


class ControlPlane:
    """A real `python -m cumulo.app` in a temporary home, with the clusters the part needs."""

    def __init__(self, home: Path) -> None:
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "cumulo.app", "--port", str(port), "--home", str(home)],
                                     stdout=subprocess.DEVNULL, stderr=open(home / "server.log", "wb"),
                                     env={**os.environ, "CUMULO_LOG_LEVEL": "WARNING"})
        wait(lambda: self._healthy(), 60, "the control plane")
        token = (home / "token").read_text().strip()
        self.http = httpx.Client(base_url=self.url + "/api/v1", timeout=60, headers={"authorization": f"Bearer {token}"})

    def _healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise SystemExit(f"the control plane exited: see {self.home / 'server.log'}")
        try:
            return httpx.get(self.url + "/api/v1/health", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    def add_cluster(self, name: str, **body) -> None:
        self.http.post("/clusters", json={"name": name, **body}).raise_for_status()
        info = wait(lambda: (c := self.http.get(f"/clusters/{name}").json())["state"] != "Unknown" and c, 60,
                    f"cluster {name} asked", poll=0.2)
        if info["state"] != "Ready":
            raise SystemExit(f"cluster {name} is {info['state']}: {info.get('reason')}")

    def submit(self, body: dict) -> None:
        self.http.post("/jobs", json=body).raise_for_status()

    def states(self, prefix: str) -> dict[str, str]:
        return {j["name"]: j["state"] for j in self.http.get("/jobs", params={"limit": 10000}).json()
                if j["name"].startswith(prefix)}

    def wait_done(self, prefix: str, count: int, timeout: float) -> dict[str, int]:
        def done():
            s = self.states(prefix)
            return len(s) >= count and all(v in TERMINAL for v in s.values()) and s
        states = wait(done, timeout, f"{count} jobs {prefix}* to end", poll=0.5)
        out: dict[str, int] = {}
        for v in states.values():
            out[v] = out.get(v, 0) + 1
        return out

    def cpu_seconds(self) -> float:
        """The server's CPU time plus its descendants' (live ones, and reaped ones it waited for)."""
        ps = psutil.Process(self.proc.pid)
        t = ps.cpu_times()
        total = t.user + t.system + t.children_user + t.children_system
        for child in ps.children(recursive=True):
            try:
                c = child.cpu_times()
                total += c.user + c.system
            except psutil.Error:
                pass
        return total

    def stop(self) -> None:
        self.http.close()
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Ray:
    """Ray's Jobs REST API, what `ray job submit` and the Python JobSubmissionClient call."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, timeout=60, trust_env=False)

    def submit(self, sid: str, entrypoint: str) -> None:
        r = self.http.post("/api/jobs/", json={"entrypoint": entrypoint, "submission_id": sid})
        r.raise_for_status()

    def jobs(self) -> list[dict]:
        return self.http.get("/api/jobs/").json()

    def job(self, sid: str) -> dict | None:
        r = self.http.get(f"/api/jobs/{sid}")
        return r.json() if r.status_code == 200 else None

    def ours(self, marker: str) -> list[dict]:
        """Jobs whose submission id or entrypoint names `marker` (this run's home or id)."""
        return [j for j in self.jobs() if marker in (j.get("submission_id") or "") or marker in (j.get("entrypoint") or "")]

    def wait_ended(self, marker: str, count: int, timeout: float) -> None:
        wait(lambda: len(js := self.ours(marker)) >= count and all(j["status"] in RAY_TERMINAL for j in js),
             timeout, f"{count} Ray jobs of {marker} to end", poll=0.5)

    def delete(self, marker: str) -> int:
        n = 0
        for j in self.ours(marker):
            sid = j.get("submission_id")
            if not sid:
                continue
            if j["status"] not in RAY_TERMINAL:
                self.http.post(f"/api/jobs/{sid}/stop")
                wait(lambda sid=sid: (x := self.job(sid)) is None or x["status"] in RAY_TERMINAL, 60, f"{sid} stopped", 0.5)
            self.http.delete(f"/api/jobs/{sid}")
            n += 1
        return n

    def load(self) -> dict:
        """What the cluster runs that is not ours: jobs still running, CPU in use."""
        running = [j["submission_id"] for j in self.jobs() if j["status"] in ("PENDING", "RUNNING")]
        try:
            st = self.http.get("/api/cluster_status").json()["data"]["clusterStatus"]["loadMetricsReport"]
            used = st.get("usage", {}).get("CPU")
        except (KeyError, ValueError, TypeError):
            used = None
        return {"running_jobs": running, "cpu_used_total": used}


def foreign_load(ray: Ray | None) -> dict:
    out: dict = {"machine_load_1m": round(os.getloadavg()[0], 2),
                 "memory_available_gib": round(psutil.virtual_memory().available / 2**30, 1)}
    if shutil.which("squeue"):
        q = subprocess.run(["squeue", "-h", "-t", "PENDING,RUNNING", "-o", "%i %j"], capture_output=True, text=True)
        out["slurm_active_jobs"] = len(q.stdout.splitlines())
    if ray is not None:
        out["ray"] = ray.load()
    out["cumulo_servers_running"] = sum(1 for p in psutil.process_iter(["cmdline"])
                                        if "cumulo.app" in " ".join(p.info["cmdline"] or []))
    return out


# -- part 1 --------------------------------------------------------------------------------------
def part_s2s(ray_url: str, rounds: int, work: Path, run_id: str) -> dict:
    ray = Ray(ray_url)
    home = work / "s2s"
    home.mkdir()
    marks = home / "marks"
    marks.mkdir()
    driver = home / "user_driver.py"
    driver.write_text(USER_DRIVER)
    cp = ControlPlane(home / "cumulo")
    try:
        cp.add_cluster("ray", kind="ray", address=ray_url, artifacts=str(home / "artifacts"))
        times: dict[str, list[float]] = {"cumulo": [], "ray": []}

        def run(side: str, i: int) -> float:
            tag = f"{side}-{i}"
            cmd = f"date +%s.%N > {marks}/{tag}-$RANK"
            t0 = time.time()
            if side == "cumulo":
                cp.submit({"name": f"s2s-{i}", "cluster": "ray", "workers": 2, "command": cmd,
                           "resources": {"cpu": CPU, "memory": f"{MEMORY // 2**20}Mi"}})
            else:
                ray.submit(f"bench-{run_id}-s2s-{i}",
                           f"{sys.executable} {driver} 2 {CPU} {MEMORY} '{cmd}'")
            files = [marks / f"{tag}-{r}" for r in (0, 1)]
            wait(lambda: all(f.exists() and f.read_text().strip() for f in files), 120, f"{tag}'s workers", 0.01)
            took = max(float(f.read_text()) for f in files) - t0
            if side == "cumulo":
                cp.wait_done(f"s2s-{i}", 1, 120)
            ray.wait_ended(f"bench-{run_id}-s2s-{i}" if side == "ray" else str(home / "artifacts"), 1 if side == "ray" else i + 1, 120)
            time.sleep(1.0)  # let the cluster settle (actors, placement groups released)
            return took

        before = foreign_load(ray)
        for i in range(rounds):
            order = ("cumulo", "ray") if i % 2 == 0 else ("ray", "cumulo")
            for side in order:
                times[side].append(run(side, i))
        out = {
            "what": ("one 2-worker job on Ray (PACK, 0.5 CPU + 64 MiB per worker); submit call to the later of "
                     "the two workers' first instruction (each writes date +%s.%N)"),
            "baseline": ("Ray Jobs REST API POST /api/jobs/ (what `ray job submit` calls) of a user driver: "
                         "ray.init, a 2-bundle placement group, one actor per bundle running the command"),
            "rounds": rounds,
            "cumulo": summary(times["cumulo"]),
            "ray_jobs_api": summary(times["ray"]),
            "raw_s": {k: [round(v, 3) for v in vs] for k, vs in times.items()},
            "load_before": before,
            "load_after": foreign_load(ray),
        }
        out["overhead_median_pct"] = round((out["cumulo"]["median_s"] / out["ray_jobs_api"]["median_s"] - 1) * 100, 1)
        out["overhead_p90_pct"] = round((out["cumulo"]["p90_s"] / out["ray_jobs_api"]["p90_s"] - 1) * 100, 1)
        return out
    finally:
        cp.stop()
        out_deleted = ray.delete(f"bench-{run_id}") + ray.delete(str(home / "artifacts"))
        print(f"s2s: deleted {out_deleted} Ray jobs", file=sys.stderr)


# -- part 2 --------------------------------------------------------------------------------------
class Profile:
    """py-spy (wall clock, idle included) of the control plane while a block runs, if asked for."""

    def __init__(self, folder: str | None, pid: int, name: str) -> None:
        self.proc = None
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            self.proc = subprocess.Popen(["py-spy", "record", "--pid", str(pid), "--idle", "--rate", "500",
                                          "--format", "raw", "--nonblocking", "-o", f"{folder}/{name}.txt"],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)  # attached

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.send_signal(2)  # SIGINT: py-spy writes what it has and exits
            self.proc.wait(30)


def part_rate(engine: str, ray_url: str, partition: str, jobs: int, burst: int, work: Path, run_id: str,
              pyspy: str | None = None) -> dict:
    ray = Ray(ray_url) if engine == "ray" else None
    home = work / f"rate-{engine}"
    home.mkdir()
    driver = home / "user_driver.py"
    driver.write_text(USER_DRIVER)
    logs = home / "sbatch-logs"
    logs.mkdir()
    cp = ControlPlane(home / "cumulo")
    cpu = 0.01  # cumulo's placement must not be what limits the rate (Slurm rounds up to 1 CPU)
    try:
        if engine == "ray":
            cp.add_cluster("ray", kind="ray", address=ray_url, artifacts=str(home / "artifacts"))
        else:
            cp.add_cluster("slurm", kind="slurm", partition=partition, artifacts=str(home / "artifacts"))
        spans: dict[str, list[float]] = {"cumulo": [], "engine": []}
        server_cpu: list[float] = []
        sent = {"cumulo": 0, "engine": 0}

        def cumulo_burst(b: int) -> float:
            prefix = f"r{b}-"
            c0 = cp.cpu_seconds()
            with Profile(pyspy, cp.proc.pid, f"rate-{engine}-burst{b}"):
                accepted = cumulo_submit(prefix)
            span = max(accepted) - accepted[0]
            cp.wait_done(prefix, burst, 600)
            if engine == "ray":
                ray.wait_ended(str(home / "artifacts"), sent["cumulo"] + burst, 600)
            server_cpu.append(cp.cpu_seconds() - c0)
            sent["cumulo"] += burst
            return span

        def cumulo_submit(prefix: str) -> list[float]:
            """[first submit call, acceptances...]"""
            t0 = time.time()
            for i in range(burst):
                cp.submit({"name": f"{prefix}{i}", "cluster": engine, "command": ["true"],
                           "resources": {"cpu": cpu, "memory": "1Mi" if engine == "slurm" else "64Mi"}})
            if engine == "ray":
                marker = str(home / "artifacts")
                # accepted: Ray has the submission (every cumulo job of this burst listed)
                js = wait(lambda: len(x := ray.ours(marker)) >= sent["cumulo"] + burst and x,
                          300, "cumulo's Ray submissions", poll=0.5)
                accepted = sorted(j["start_time"] / 1000 for j in js)[-burst:]
            else:
                run_root = home / "artifacts"
                def jobids():
                    found = list(run_root.rglob("jobid"))
                    return len(found) >= sent["cumulo"] + burst and found
                found = wait(jobids, 300, "cumulo's sbatch calls", poll=0.2)
                accepted = sorted(f.stat().st_mtime for f in found)[-burst:]
            return [t0, *accepted]

        def engine_burst(b: int) -> float:
            t0 = time.time()
            accepted = []
            ids = []
            for i in range(burst):
                if engine == "ray":
                    ray.submit(f"bench-{run_id}-rate-{b}-{i}", f"{sys.executable} {driver} 1 {cpu} {64 * 2**20} true")
                else:
                    p = subprocess.run(["sbatch", "--parsable", f"--job-name=bench-{run_id}-{b}-{i}", "--ntasks=1",
                                        "--cpus-per-task=1", "--mem-per-cpu=1M", f"--output={logs}/{b}-{i}.log",
                                        "--no-requeue", "--export=NONE", f"--partition={partition}",
                                        "--wrap", "srun true"], capture_output=True, text=True, check=True)
                    accepted.append(time.time())
                    ids.append(p.stdout.strip().split(";")[0])
            if engine == "ray":
                js = [j for j in ray.ours(f"bench-{run_id}-rate-{b}-")]
                accepted = [j["start_time"] / 1000 for j in js]
                span = max(accepted) - t0
                ray.wait_ended(f"bench-{run_id}-rate-{b}-", burst, 600)
            else:
                span = max(accepted) - t0
                wait(lambda: not subprocess.run(["squeue", "-h", "-j", ",".join(ids), "-t", "PENDING,RUNNING,COMPLETING"],
                                                capture_output=True, text=True).stdout.strip(), 600, "sbatch jobs to end", 0.5)
            sent["engine"] += burst
            return span

        before = foreign_load(ray)
        for b in range(max(1, jobs // burst)):
            order = ("cumulo", "engine") if b % 2 == 0 else ("engine", "cumulo")
            for side in order:
                spans[side].append(cumulo_burst(b) if side == "cumulo" else engine_burst(b))
                # past the clusters reconciler's next read of the nodes (every 5 s): cumulo places
                # on what the engine reports free, and the other side's jobs have just ended
                time.sleep(6.0)
        n = burst * len(spans["cumulo"])
        rate = {k: round(n / sum(v), 2) for k, v in spans.items()}
        states = {}
        for v in cp.states("r").values():
            states[v] = states.get(v, 0) + 1
        return {
            "engine": engine,
            "jobs_per_side": n,
            "bursts": len(spans["cumulo"]),
            "burst": burst,
            "accepted_means": ("Ray: the job's start_time (stamped by Ray's JobManager when it takes the submission)"
                               if engine == "ray" else "sbatch returned a job id"),
            "baseline": ("Ray Jobs REST API, sequential on one keep-alive connection, of the user driver (1 worker, `true`)"
                         if engine == "ray" else "sbatch --parsable --wrap 'srun true', sequential from Python"),
            "cumulo_launches_per_s": rate["cumulo"],
            "engine_launches_per_s": rate["engine"],
            "ratio": round(rate["cumulo"] / rate["engine"], 2),
            "burst_spans_s": {k: [round(x, 3) for x in v] for k, v in spans.items()},
            "cumulo_server_cpu_s_per_burst": [round(x, 2) for x in server_cpu],
            "cumulo_final_states": states,
            "job_workers": int(os.environ.get("CUMULO_JOB_WORKERS", "1")),
            "load_before": before,
            "load_after": foreign_load(ray),
        }
    finally:
        cp.stop()
        if ray is not None:
            n = ray.delete(f"bench-{run_id}") + ray.delete(str(home / "artifacts"))
            print(f"rate-ray: deleted {n} Ray jobs", file=sys.stderr)
        else:
            subprocess.run(["scancel", f"--name=bench-{run_id}"], check=False)  # any left (none expected)


# -- part 3 --------------------------------------------------------------------------------------
def part_cpu(ray_url: str, jobs: int, window: float, work: Path, min_free_gib: float, pyspy: str | None = None) -> dict:
    ray = Ray(ray_url)
    home = work / "cpu"
    home.mkdir()
    cp = ControlPlane(home / "cumulo")
    try:
        cp.add_cluster("ray", kind="ray", address=ray_url, artifacts=str(home / "artifacts"))
        time.sleep(5)
        before = foreign_load(ray)
        c0, t0 = cp.cpu_seconds(), time.monotonic()
        time.sleep(window)
        idle = (cp.cpu_seconds() - c0) / (time.monotonic() - t0) * 100
        rss_idle = psutil.Process(cp.proc.pid).memory_info().rss

        # submit in steps of 10, stopping where the machine's free memory gets low
        started = 0
        mem0 = psutil.virtual_memory().available
        stopped_for_memory = False
        while started < jobs:
            step = min(10, jobs - started)
            for i in range(started, started + step):
                cp.submit({"name": f"sleep-{i}", "cluster": "ray", "command": "sleep 3600",
                           "resources": {"cpu": 0.1, "memory": "64Mi"}})
            started += step

            def settled():  # every job Running, or ended (a node of the shared cluster lost under it)
                js = [j for j in cp.http.get("/jobs", params={"limit": 1000}).json() if j["name"].startswith("sleep-")]
                return len(js) >= started and all(j["state"] == "Running" or j["state"] in TERMINAL for j in js)
            wait(settled, 600, f"{started} jobs Running", poll=1.0)
            if psutil.virtual_memory().available / 2**30 < min_free_gib and started < jobs:
                stopped_for_memory = True
                break
        mem_per_job = (mem0 - psutil.virtual_memory().available) / started
        time.sleep(10)  # past the launches' own work
        c0, t0 = cp.cpu_seconds(), time.monotonic()
        time.sleep(window)
        busy = (cp.cpu_seconds() - c0) / (time.monotonic() - t0) * 100
        if pyspy:  # after the window, so that py-spy's own sampling is not in it
            with Profile(pyspy, cp.proc.pid, "cpu-following"):
                time.sleep(min(window, 30))
        js = cp.http.get("/jobs", params={"limit": 1000}).json()
        still = sum(1 for j in js if j["name"].startswith("sleep-") and j["state"] == "Running")
        ended = {j["name"]: j["reason"] for j in js if j["state"] in TERMINAL}
        return {
            "window_s": window,
            "jobs_running": started,
            "jobs_running_at_window_end": still,
            "jobs_ended_early": ended,
            "stopped_for_memory": stopped_for_memory,
            "memory_per_ray_job_mib": round(mem_per_job / 2**20),
            "idle_cpu_percent_of_one_core": round(idle, 2),
            "following_cpu_percent_of_one_core": round(busy, 2),
            "rss_idle_mib": round(rss_idle / 2**20, 1),
            "rss_following_mib": round(psutil.Process(cp.proc.pid).memory_info().rss / 2**20, 1),
            "job_workers": int(os.environ.get("CUMULO_JOB_WORKERS", "1")),
            "load_before": before,
        }
    finally:
        try:
            for j in cp.http.get("/jobs", params={"limit": 1000}).json():
                if j["state"] not in TERMINAL:
                    cp.http.post(f"/jobs/{j['name']}/cancel")
            wait(lambda: all(j["state"] in TERMINAL for j in cp.http.get("/jobs", params={"limit": 1000}).json()),
                 300, "the sleeping jobs cancelled", poll=1.0)
        finally:
            cp.stop()
            n = ray.delete(str(home / "artifacts"))
            print(f"cpu: deleted {n} Ray jobs", file=sys.stderr)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--ray", default="http://127.0.0.2:8265", help="the Ray dashboard address (bash .ci/ray.sh)")
    p.add_argument("--partition", default="debug", help="the Slurm partition (bash .ci/slurm.sh)")
    p.add_argument("--parts", default="s2s,rate-ray,rate-slurm,cpu")
    p.add_argument("--quick", action="store_true", help="a smoke run: few rounds, few jobs, short windows")
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--jobs", type=int, default=100)
    p.add_argument("--burst", type=int, default=20)
    p.add_argument("--cpu-jobs", type=int, default=50)
    p.add_argument("--window", type=float, default=60.0)
    p.add_argument("--min-free-gib", type=float, default=3.0)
    p.add_argument("--pyspy", default=None, help="a folder: record the control plane with py-spy during cumulo's bursts")
    args = p.parse_args()
    if args.quick:
        args.rounds, args.jobs, args.burst, args.cpu_jobs, args.window = 2, 10, 5, 4, 10.0
    parts = args.parts.split(",")
    out: dict = {
        "machine": {"cpus": psutil.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
                    "python": platform.python_version(), "platform": platform.platform()},
        "when": datetime.now().isoformat(timespec="seconds"),
        "quick": args.quick,
    }
    work = Path(tempfile.mkdtemp(prefix="cumulo-bench-clusters-"))
    run_id = uuid.uuid4().hex[:8]
    try:
        if "s2s" in parts:
            out["s2s"] = part_s2s(args.ray, args.rounds, work, run_id)
        if "rate-ray" in parts:
            out["rate_ray"] = part_rate("ray", args.ray, args.partition, args.jobs, args.burst, work, run_id, args.pyspy)
        if "rate-slurm" in parts:
            out["rate_slurm"] = part_rate("slurm", args.ray, args.partition, args.jobs, args.burst, work, run_id, args.pyspy)
        if "cpu" in parts:
            out["cpu"] = part_cpu(args.ray, args.cpu_jobs, args.window, work, args.min_free_gib, args.pyspy)
    finally:
        print(f"work folder: {work}", file=sys.stderr)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
