"""Workspace quotas and budgets against a real control plane: work past the CPU quota waits with
the numbers and starts when room frees; spend accrues from the machine's price; budget alerts at
80 % and 100 %; then new work waits and new machines are refused with the numbers."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

import pytest

from tests.helpers import Server, kill_leftovers, wait_until


@pytest.fixture(scope="module")
def server(tmp_path_factory, module_database_url):
    # the machine costs $3,600/h (1 $/s) so that a budget is reached within a test; accounting every second
    s = Server(tmp_path_factory.mktemp("home"), module_database_url,
               extra_env={"CUMULO_LOCAL_PRICE_PER_HOUR": "3600", "CUMULO_COST_PERIOD": "1"}).start()
    yield s
    s.kill(signal.SIGTERM)
    kill_leftovers(s.home)


def as_lab(server, *args, check=False):
    env = {**server.env, "CUMULO_TOKEN": server.lab_token, "COLUMNS": "200"}
    r = subprocess.run([sys.executable, "-m", "cumulo.cli.main", *args], env=env, capture_output=True, text=True,
                       timeout=120)
    if check:
        assert r.returncode == 0, r.stdout + r.stderr
    return r


def job(folder, name: str, cpu: float, seconds: int) -> str:
    path = folder / f"{name}.yaml"
    path.write_text(textwrap.dedent(f"""
        kind: Job
        name: {name}
        command: sleep {seconds}
        resources: {{cpu: {cpu}, memory: 64Mi}}
    """))
    return str(path)


def status(server, name):
    return json.loads(as_lab(server, "job", "status", name, "--json", check=True).stdout)


def test_cpu_quota_holds_work_until_room_frees_then_the_budget_stops_work_and_machines(server, tmp_path):
    server.cli("workspace", "create", "lab", "--cpu", "1", check=True)
    made = json.loads(server.cli("token", "create", "lab-member", "--workspace", "lab", "--json", check=True).stdout)
    server.lab_token = made["token"]

    as_lab(server, "job", "submit", job(tmp_path, "first", 1, 600), check=True)
    wait_until(lambda: status(server, "first")["state"] == "Running", what="the first job running")
    as_lab(server, "job", "submit", job(tmp_path, "second", 0.5, 600), check=True)
    second = wait_until(lambda: (j := status(server, "second"))["state"] == "Pending" and "quota" in j["reason"] and j,
                        what="the second job waiting for the quota")
    assert second["reason"] == "workspace quota: CPU 1 of 1 in use and this needs 0.5"
    # the default workspace has no quota: its work is not held by lab's
    server.cli("job", "submit", job(tmp_path, "elsewhere", 0.5, 1), "--follow", check=True)

    as_lab(server, "job", "cancel", "first", check=True)
    wait_until(lambda: status(server, "second")["state"] == "Running", what="the second job starting once room freed")

    # a budget that the running job's share of the machine spends in about 10 more seconds
    rate = {line["key"]: line for line in json.loads(as_lab(server, "cost", "--by", "job", "--json", check=True).stdout)["lines"]}
    per_second = rate["second"]["price_per_hour"] / 3600
    assert per_second > 0
    spent = json.loads(server.cli("cost", "--all", "--json", check=True).stdout)["lines"]
    budget = round(next(x["cost"] for x in spent if x["key"] == "lab") + 10 * per_second, 2)
    server.cli("workspace", "quota", "lab", "--cpu", "1", "--budget", str(budget), check=True)

    def alerts():
        return [e["reason"] for e in json.loads(as_lab(server, "events", "--json", "--limit", "200", check=True).stdout)
                if e["kind"] == "Workspace"]
    wait_until(lambda: "BudgetExceeded" in alerts(), timeout=60, what="the budget alert")
    assert alerts().index("BudgetWarning") < alerts().index("BudgetExceeded")  # 80 % first, once each
    assert alerts().count("BudgetWarning") == 1

    as_lab(server, "job", "submit", job(tmp_path, "third", 0.1, 1), check=True)
    third = wait_until(lambda: (j := status(server, "third"))["state"] == "Pending" and "budget" in j["reason"] and j,
                       what="new work waiting on the budget")
    assert f"this month's budget of ${budget:,.2f} is spent" in third["reason"]
    r = as_lab(server, "resources", "create", "local", "--provider", "local", "--no-wait")
    assert r.returncode == 1 and "cannot add these machines" in r.stderr and f"budget of ${budget:,.2f} is spent" in r.stderr

    report = json.loads(as_lab(server, "cost", "--by", "job", "--json", check=True).stdout)
    by_name = {line["key"]: line for line in report["lines"]}
    assert by_name["first"]["cost"] > 0 and by_name["second"]["cost"] > 0 and "elsewhere" not in by_name
    assert by_name["second"]["price_per_hour"] > 0 and by_name["first"]["price_per_hour"] == 0  # ended
    everyone = json.loads(server.cli("cost", "--all", "--json", check=True).stdout)
    spent = {line["key"]: line["cost"] for line in everyone["lines"]}
    assert spent["lab"] >= budget and spent["default"] > 0
    assert as_lab(server, "cost", "--all").returncode == 1  # only an admin sees every workspace
    as_lab(server, "job", "cancel", "second", check=True)
    as_lab(server, "job", "cancel", "third", check=True)
