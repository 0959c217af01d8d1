"""Self-repair of jobs from their own reports, end to end: a real control plane, real job processes
that call cumulo.report, a hang that stays alive and a loss that goes NaN."""

from __future__ import annotations

import json
import signal
import sys
import textwrap
from datetime import datetime
from pathlib import Path

import pytest

from tests.helpers import Server, kill_leftovers, wait_until

# a training loop of the test's own: checkpoints each step to CUMULO_ARTIFACTS and resumes from it;
# FAULT decides what goes wrong in attempt 1
TRAIN = textwrap.dedent("""
    import math, os, sys, time
    import cumulo
    ckpt = os.path.join(os.environ["CUMULO_ARTIFACTS"], "step")
    start = int(open(ckpt).read()) + 1 if os.path.exists(ckpt) else 1
    fault, first_attempt = sys.argv[1], os.environ["CUMULO_ATTEMPT"] == "1"
    for step in range(start, 9):
        loss = 1.0 / step
        if fault == "nan" and step >= 4:
            loss = math.nan
        cumulo.report(step=step, loss=loss)
        open(ckpt, "w").write(str(step))
        if fault == "hang" and first_attempt and step == 4:
            time.sleep(3600)  # alive, and making no progress
        time.sleep(0.3)
""")


@pytest.fixture(scope="module")
def server(tmp_path_factory, sqlite_module_url, receiver):
    s = Server(tmp_path_factory.mktemp("home"), sqlite_module_url,
               extra_env={"CUMULO_ALERT_WEBHOOKS": receiver.url, "CUMULO_ALERT_INTERVAL": "1"}).start()
    yield s
    s.kill(signal.SIGTERM)
    kill_leftovers(s.home)


def submit(server, tmp_path: Path, name: str, fault: str, **spec) -> None:
    script = tmp_path / f"{name}.py"
    script.write_text(TRAIN)
    body = {"kind": "Job", "name": name, "command": [sys.executable, str(script), fault], **spec}
    r = server.api("POST", "/jobs", json=body)
    assert r.status_code == 201, r.text


def job(server, name: str) -> dict:
    return server.api("GET", f"/jobs/{name}").json()


def events(server, name: str) -> list[dict]:
    r = server.cli("events", "--json", check=True)
    return [e for e in json.loads(r.stdout) if e["name"] == name]


def test_a_job_that_hangs_alive_is_restarted_from_its_checkpoint_and_succeeds(server, receiver, tmp_path):
    # 8 s: long enough for a retry's interpreter to start and report under load, short for a test
    submit(server, tmp_path, "hangs", "hang", max_retries=1, health={"progress_timeout": "8s"})
    wait_until(lambda: job(server, "hangs")["state"] in ("Succeeded", "Failed"), timeout=90,
               what="the hung job to be repaired and finish")
    j = job(server, "hangs")
    assert j["state"] == "Succeeded" and j["attempts"] == 2, j
    first = j["attempt_list"][0]
    assert first["state"] == "Failed" and first["reason"].startswith("stalled: no progress after step 4"), first
    stalled = [e for e in events(server, "hangs") if e["reason"] == "Stalled"]
    assert len(stalled) == 1 and "no progress for" in stalled[0]["message"] and "since step 4" in stalled[0]["message"]
    # detected within its progress_timeout (plus the report flush and one poll), not at some later resync
    series = server.api("GET", "/jobs/hangs/metrics", params={"metric": "loss"}).json()
    last_progress = max(datetime.fromisoformat(p["time"]) for p in series if p["attempt"] == 1)
    delay = (datetime.fromisoformat(stalled[0]["time"]) - last_progress).total_seconds()
    assert 8 <= delay < 8 + 4, delay
    # the retry resumed from the newest checkpoint: no step was redone
    assert min(p["step"] for p in series if p["attempt"] == 2) == 5
    # an alert fired with the evidence, resolved once the new attempt replaced the stalled one, and a
    # webhook in Alertmanager's format was told both
    wait_until(lambda: receiver.statuses("JobStalled") == ["firing", "resolved"], timeout=15,
               what="the JobStalled alert to fire and resolve at the webhook")
    alerts = json.loads(server.cli("alerts", "--all", "--json", check=True).stdout)
    mine = [a for a in alerts if a["rule"] == "JobStalled" and a["object"] == "hangs"]
    assert len(mine) == 1 and mine[0]["state"] == "resolved" and "since step 4" in mine[0]["summary"]
    body = [b for b in receiver.bodies if b["groupLabels"]["alertname"] == "JobStalled"][0]
    assert body["alerts"][0]["labels"] == {"alertname": "JobStalled", "severity": "warning", "workspace": "default",
                                           "job": "hangs"}


def test_a_job_whose_loss_goes_nan_is_failed_at_once_and_not_retried(server, tmp_path):
    submit(server, tmp_path, "diverges", "nan", max_retries=3)
    wait_until(lambda: job(server, "diverges")["state"] in ("Succeeded", "Failed"), timeout=30,
               what="the job with a NaN loss to end")
    j = job(server, "diverges")
    assert j["state"] == "Failed" and j["attempts"] == 1, j
    assert j["attempt_list"][0]["reason"] == "loss is nan at step 4"
    assert j["metrics"]["loss"] == "NaN"  # the value itself reached the store
    told = [e for e in events(server, "diverges") if e["reason"] == "LossNotFinite"]
    assert len(told) == 1 and "failing the job" in told[0]["message"]
    # stopped within one report: the loop reports every 0.3 s and flushes every second
    series = server.api("GET", "/jobs/diverges/metrics", params={"metric": "loss"}).json()
    assert max(p["step"] for p in series) <= 4 + 5


def test_on_nan_alert_only_records_it_and_the_job_runs_on(server, tmp_path):
    submit(server, tmp_path, "watched", "nan", health={"on_nan": "alert"})
    wait_until(lambda: job(server, "watched")["state"] in ("Succeeded", "Failed"), timeout=30,
               what="the alert-only job to end")
    assert job(server, "watched")["state"] == "Succeeded"
    assert [e["reason"] for e in events(server, "watched")].count("LossNotFinite") == 1
