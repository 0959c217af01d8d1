"""Canary rollouts under steady load: how many requests fail before a bad version is rolled back,
how long detection takes, and whether a good version is ever rolled back (a false alarm).

    flock /tmp/cumulo-bench.lock python bench/canary.py [--rounds 3] [--clients 4]

A control plane (`python -m cumulo.app`, SQLite, a temporary home) runs a 2-replica deployment of
tests/e2e/flaky_server.py; `--clients` threads call it back to back through its gateway. Each round
deploys a bad version (every 5th answer a 500: 20 % errors) as a canary (steps 10/50/100, interval
2 s, max error rate 1 %, max p99 500 ms, min 20 requests) and waits for the rollback, then a good
version, and waits for it to finish (the next round's stable version). Prints JSON: per round, the
requests and failures between the deploy and the rollback (all clients' answers), the seconds from
the deploy to the canary's first answer and from there to the rollback, and for the good version
whether it was promoted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.helpers import Server, kill_leftovers, wait_until  # noqa: E402

SPEC = """\
kind: Deployment
name: bench
command: [python, {server}]
workdir: {workdir}
replicas: 2
resources: {{cpu: 0.1, memory: 64Mi}}
health: {{path: /healthz, period: 0.5, failure_threshold: 2}}
env: {{VERSION: "{version}", FAIL_EVERY: "{fail_every}"}}
rollout:
  strategy: canary
  steps: [10, 50, 100]
  interval: 2s
  analysis: {{max_error_rate: 0.01, max_p99_ms: 500, min_requests: 20}}
"""


class Load:
    def __init__(self, url: str, clients: int) -> None:
        self.url, self.log, self._lock, self._stop = url, [], threading.Lock(), threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        with httpx.Client(timeout=10) as c:
            while not self._stop.is_set():
                try:
                    r = c.get(self.url)
                    got = (time.monotonic(), r.status_code, r.text)
                except httpx.HTTPError as exc:
                    got = (time.monotonic(), 0, repr(exc))
                with self._lock:
                    self.log.append(got)

    def between(self, t0: float, t1: float) -> list:
        with self._lock:
            return [x for x in self.log if t0 <= x[0] <= t1]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)


def rollout(server: Server, folder: Path, version: int, fail_every: int) -> dict:
    path = folder / f"v{version}.yaml"
    path.write_text(SPEC.format(server=ROOT / "tests/e2e/flaky_server.py", workdir=folder, version=version,
                                fail_every=fail_every))
    r = server.cli("deploy", str(path), "--no-wait", "--json")
    assert r.returncode == 0, r.stderr

    def done():
        ro = server.api("GET", "/deployments/bench/rollout").json()
        return ro if ro.get("canary_generation") == json.loads(r.stdout)["generation"] \
            and ro["phase"] in ("RolledBack", "Succeeded") else None

    return wait_until(done, timeout=180, interval=0.05, what=f"version {version}'s rollout to end")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--clients", type=int, default=4)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        home, folder = Path(d) / "home", Path(d) / "specs"
        folder.mkdir()
        server = Server(home, f"sqlite:///{d}/cumulo.db").start()
        load = Load(f"{server.url}/d/bench/", a.clients)
        rounds = []
        try:
            first = folder / "v1.yaml"
            first.write_text(SPEC.format(server=ROOT / "tests/e2e/flaky_server.py", workdir=folder, version=1,
                                         fail_every=0))
            server.cli("deploy", str(first), check=True)
            load.start()
            time.sleep(3)
            version = 1
            for _ in range(a.rounds):
                version += 1
                bad_v = version
                t0 = time.monotonic()
                ro = rollout(server, folder, bad_v, fail_every=5)
                t1 = time.monotonic()
                during = load.between(t0, t1)
                canary = [x for x in during if x[2] in (f"v{bad_v}", "boom")]
                failed = [x for x in during if x[1] != 200]
                first_canary = canary[0][0] if canary else None
                version += 1
                good = rollout(server, folder, version, fail_every=0)
                rounds.append({
                    "bad": {"phase": ro["phase"], "requests": len(during), "failed": len(failed),
                            "failed_share": round(len(failed) / len(during), 4) if during else None,
                            "canary_answers": len(canary),
                            "deploy_to_first_canary_answer_s": round(first_canary - t0, 2) if first_canary else None,
                            "first_canary_answer_to_rollback_s": round(t1 - first_canary, 2) if first_canary else None,
                            "evidence": ro["analysis"], "reason": ro["reason"]},
                    "good": {"phase": good["phase"], "false_rollback": good["phase"] != "Succeeded"},
                })
        finally:
            load.stop()
            server.kill(signal.SIGTERM)
            kill_leftovers(home)
    total = sum(r["bad"]["requests"] for r in rounds)
    failed = sum(r["bad"]["failed"] for r in rounds)
    print(json.dumps({
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_average_1m": os.getloadavg()[0]},
        "setup": {"replicas": 2, "clients": a.clients, "bad_version": "every 5th answer a 500 (20 %)",
                  "steps": [10, 50, 100], "interval_s": 2, "max_error_rate": 0.01, "min_requests": 20},
        "summary": {"bad_rolled_back": sum(r["bad"]["phase"] == "RolledBack" for r in rounds), "rounds": len(rounds),
                    "failed_share_during_bad_rollouts": round(failed / total, 4) if total else None,
                    "good_false_rollbacks": sum(r["good"]["false_rollback"] for r in rounds)},
        "rounds": rounds,
    }, indent=2))


if __name__ == "__main__":
    main()
