"""The console in a real Chromium against a real control plane (one server and one browser for the
module): every page renders cleanly, every link answers, and the actions work from the page."""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

import pytest

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips, or fails when CI asked for Chromium
    expect = None

from tests.e2e.console.conftest import DEPLOYMENT, SHOTS, TRAINED, Watched, job_yaml, train_command, unique
from tests.helpers import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.browser]

PAGES = {
    "overview": "/",
    "jobs": "/jobs",
    "job": f"/jobs/{TRAINED}",
    "job-new": "/jobs/new",
    "deployments": "/deployments",
    "deployment": f"/deployments/{DEPLOYMENT}",
    "deployment-new": f"/deployments/new?update={DEPLOYMENT}",
    "nodes": "/nodes",
    "events": "/events",
    "alerts": "/alerts",
}


def unlabelled(page) -> list[str]:
    """Form controls a screen reader could not name: no <label for>, no wrapping label, no aria-label."""
    missing = []
    for control in page.locator("input:not([type=hidden]), select, textarea").all():
        cid = control.get_attribute("id")
        named = (cid and page.locator(f'label[for="{cid}"]').count() == 1) or control.get_attribute("aria-label") \
            or control.locator("xpath=ancestor::label").count() == 1
        if not named:
            missing.append(f"{cid or control.get_attribute('name')}")
    return missing


def test_every_page_renders_cleanly_and_every_link_answers(signed_in: Watched):
    page, server = signed_in.page, signed_in.server
    running = unique("training")  # so the overview and the jobs page show a job at work
    r = server.api("POST", "/jobs", json={"kind": "Job", "name": running, "command": train_command(300, 0.5),
                                          "workdir": str(server.work), "resources": {"cpu": 0.2, "memory": "128Mi"}})
    assert r.status_code == 201, r.text
    wait_until(lambda: server.api("GET", f"/jobs/{running}").json()["metrics"], 60, what="its first report")
    for name, path in PAGES.items():
        page.goto(signed_in.url(path))
        page.wait_for_load_state("networkidle")
        assert page.locator("h1").first.is_visible(), path
        assert not unlabelled(page), (path, unlabelled(page))
        if name == "job":  # the charts were drawn from the job's reports, and its whole log is there
            assert page.locator("#training-charts canvas").count() >= 3  # loss, accuracy, steps/s
            expect(page.locator("#log")).to_contain_text("done")
        page.wait_for_timeout(2300)  # at least one live poll of the page
        signed_in.expect_clean()
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
        page.keyboard.press("Tab")  # the keyboard's first stop skips the navigation
        expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    # the same page at a phone's width, in dark mode
    page.set_viewport_size({"width": 390, "height": 844})
    page.emulate_media(color_scheme="dark")
    page.goto(signed_in.url(f"/jobs/{TRAINED}"))
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(SHOTS / "job-phone-dark.png"), full_page=True)
    signed_in.expect_clean()

    # a crawl from / over every same-origin link (the browser's cookie, the server's answers)
    origin = signed_in.server.url
    seen: set[str] = set()
    todo = ["/"]
    while todo and len(seen) < 300:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        r = signed_in.context.request.get(origin + path, max_redirects=0)
        assert r.status < 400, f"{path} answered {r.status}"
        if "text/html" not in r.headers.get("content-type", "") or path.startswith("/docs"):
            continue
        for href in re.findall(r'href="([^"#]+)"', r.text()):
            url = urljoin(origin + path, href.replace("&amp;", "&"))
            parts = urlsplit(url)
            if url.startswith(origin):
                todo.append(parts.path + (f"?{parts.query}" if parts.query else ""))
    assert {"/jobs", f"/jobs/{TRAINED}", f"/jobs/{running}", f"/deployments/{DEPLOYMENT}", "/nodes", "/events",
            "/alerts"} <= seen
    server.api("POST", f"/jobs/{running}/cancel")


def test_submit_a_job_and_watch_it_succeed_with_its_logs_streaming(signed_in: Watched):
    page, name = signed_in.page, unique("from-page")
    page.goto(signed_in.url("/jobs/new"))
    page.get_by_label(re.compile("Job spec")).fill(job_yaml(name, train_command(12, 0.5), signed_in.server.work))
    page.get_by_role("button", name="Submit").click()
    page.wait_for_url(signed_in.url(f"/jobs/{name}"))
    log = page.locator("#log")
    # lines arrive while it runs (the page follows the log), then it succeeds with the whole log
    expect(log).to_contain_text("step 2", timeout=60_000)
    assert "done" not in log.text_content()
    page.locator(".status .badge", has_text="Succeeded").wait_for(timeout=90_000)
    expect(log).to_contain_text("done", timeout=10_000)
    text = log.text_content()
    assert [f"step {i} " in text for i in range(12)] == [True] * 12
    assert text.count("step 0 ") == 1  # appended once, not repeated by the polls
    signed_in.expect_clean()


def test_cancel_a_running_job_from_its_page(signed_in: Watched):
    name = unique("long")
    r = signed_in.server.api("POST", "/jobs", json={"kind": "Job", "name": name, "command": "sleep 300",
                                                     "workdir": str(signed_in.server.work),
                                                     "resources": {"cpu": 0.1, "memory": "64Mi"}})
    assert r.status_code == 201, r.text
    page = signed_in.page
    page.goto(signed_in.url(f"/jobs/{name}"))
    page.locator(".status .badge", has_text="Running").wait_for(timeout=60_000)
    page.get_by_role("button", name="Cancel").click()
    page.locator(".status .badge", has_text="Cancelled").wait_for(timeout=60_000)
    assert signed_in.server.api("GET", f"/jobs/{name}").json()["state"] == "Cancelled"
    expect(page.get_by_role("button", name="Delete")).to_be_visible()  # the live region offers what fits now
    signed_in.expect_clean()


def test_scale_a_deployment_and_see_the_replicas_change(signed_in: Watched):
    page = signed_in.page
    page.goto(signed_in.url(f"/deployments/{DEPLOYMENT}"))
    page.get_by_role("spinbutton", name="Replicas").fill("2")
    page.get_by_role("button", name="Scale").click()
    page.locator("#ready-count", has_text="2 / 2").wait_for(timeout=90_000)
    assert page.locator("#replicas-table tbody tr").count() == 2
    assert signed_in.server.api("GET", f"/deployments/{DEPLOYMENT}").json()["ready"] == 2
    signed_in.expect_clean()


def test_an_invalid_spec_shows_the_apis_field_error_and_creates_nothing(signed_in: Watched):
    page, name = signed_in.page, unique("bad")
    spec = {"kind": "Job", "name": name, "command": "true", "resources": {"cpu": -1}}
    api = signed_in.server.api("POST", "/jobs", json=spec)  # what the API says about the same spec
    assert api.status_code == 422
    page.goto(signed_in.url("/jobs/new"))
    page.get_by_label(re.compile("Job spec")).fill(f"kind: Job\nname: {name}\ncommand: 'true'\nresources: {{cpu: -1}}\n")
    page.get_by_role("button", name="Submit").click()
    error = page.locator("#form-error")
    error.wait_for()
    assert api.json()["detail"] in error.text_content()
    field = api.json()["errors"][0]
    assert field["field"] == "resources.cpu"
    assert f"{field['field']}: {field['message']}" in " ".join(error.text_content().split())
    assert page.get_by_label(re.compile("Job spec")).get_attribute("aria-invalid") == "true"
    # a YAML syntax error names the line
    page.get_by_label(re.compile("Job spec")).fill(f"kind: Job\nname: {name}\ncommand: [unclosed\n")
    page.get_by_role("button", name="Submit").click()
    page.locator("#form-error", has_text="line 4").wait_for()
    assert signed_in.server.api("GET", f"/jobs/{name}").status_code == 404
    assert all(not p.startswith("console error") or "422" in p for p in signed_in.problems), signed_in.problems
