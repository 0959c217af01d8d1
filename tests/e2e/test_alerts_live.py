"""Alert rules on the series a live control plane samples: a rule on a running job's memory fires,
is told to a webhook, and resolves when the job is gone (no data)."""

from __future__ import annotations

import json
import signal
import sys

import pytest

from tests.helpers import Server, kill_leftovers, wait_until


@pytest.fixture(scope="module")
def server(tmp_path_factory, sqlite_module_url, receiver):
    s = Server(tmp_path_factory.mktemp("home"), sqlite_module_url,
               extra_env={"CUMULO_ALERT_WEBHOOKS": receiver.url, "CUMULO_ALERT_INTERVAL": "1",
                          "CUMULO_METRICS_INTERVAL": "1"}).start()
    yield s
    s.kill(signal.SIGTERM)
    kill_leftovers(s.home)


def test_a_rule_on_a_jobs_sampled_memory_fires_and_resolves_when_the_job_is_gone(server, receiver, tmp_path):
    rule = tmp_path / "rule.yaml"
    spec = {"kind": "AlertRule", "name": "big-worker", "target": "job", "object": "hog*", "metric": "memory_bytes",
            "threshold": {"above": 1_000_000}, "for": "2s", "severity": "critical"}
    r = server.api("PUT", "/alertrules/big-worker", json=spec)
    assert r.status_code == 201, r.text
    # the rule applies to matching jobs only: this one is not a hog
    server.api("POST", "/jobs", json={"name": "small", "command": [sys.executable, "-c", "import time; time.sleep(6)"]})
    server.api("POST", "/jobs", json={"name": "hog-1", "command": [
        sys.executable, "-c", "import time; x = bytearray(50_000_000); time.sleep(6)"]})
    wait_until(lambda: receiver.statuses("big-worker") == ["firing"], timeout=30, what="the rule to fire")
    firing = json.loads(server.cli("alerts", "--json", check=True).stdout)
    assert [(a["rule"], a["object"], a["instance"]) for a in firing] == [("big-worker", "hog-1", "0")]
    assert firing[0]["evidence"]["value"] > 50_000_000 and firing[0]["evidence"]["threshold"] == {"above": 1e6}
    rules = json.loads(server.cli("alerts", "rules", "--json", check=True).stdout)
    assert rules[0]["name"] == "big-worker" and rules[0]["firing"] == 1
    wait_until(lambda: receiver.statuses("big-worker") == ["firing", "resolved"], timeout=40,
               what="the alert to resolve once the job ended")
    body = [b for b in receiver.bodies if b["status"] == "resolved"][0]
    assert body["alerts"][0]["labels"]["job"] == "hog-1" and body["alerts"][0]["endsAt"] != "0001-01-01T00:00:00Z"
    events = json.loads(server.cli("events", "--json", "--limit", "200", check=True).stdout)
    assert {"AlertFiring", "AlertResolved"} <= {e["reason"] for e in events if e["name"] == "hog-1"}


def test_bad_alert_rules_are_a_422_naming_the_field(server):
    r = server.api("PUT", "/alertrules/x", json={"kind": "AlertRule", "name": "x", "target": "pod", "metric": "m",
                                                 "threshold": {"above": 1}})
    assert r.status_code == 422 and "target" in r.text
    r = server.api("PUT", "/alertrules/x", json={"name": "y", "target": "job", "metric": "m", "threshold": {"above": 1}})
    assert r.status_code == 422 and "must match the path" in r.text
    assert all(rule["name"] != "x" for rule in server.api("GET", "/alertrules").json())  # nothing half-made
