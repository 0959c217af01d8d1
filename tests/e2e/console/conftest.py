"""Fixtures for the console tests: one control plane per module, seeded with real work, and
(for the browser tests) Debian's Chromium driven by Playwright.

Chromium: `bash .ci/chromium.sh` installs it and prints its path; export
CUMULO_TEST_CHROMIUM=<that path>. Without the variable the browser tests are skipped with that
command; with it set but no Chromium (or no Playwright) they FAIL, so CI cannot pass by skipping
(as tests/engines/ray.py does for Ray).
"""

from __future__ import annotations

import os
import re
import shutil
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Server, kill_leftovers, wait_until

CHROMIUM_ENV = "CUMULO_TEST_CHROMIUM"
SKIP = (f"Chromium not set up: run `bash .ci/chromium.sh` and export {CHROMIUM_ENV}=<its last line> "
        "(with `pip install -e '.[console-test]'` for Playwright)")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
#: where the screenshots of every page go (committed: a reader sees the console without running it)
SHOTS = Path(__file__).resolve().parents[3] / "docs" / "console"

DEPLOYMENT = "web"
TRAINED = "trained"


def chromium_path() -> str:
    path = os.environ.get(CHROMIUM_ENV, "").strip()
    if not path:
        pytest.skip(SKIP)
    if not (shutil.which(path) or os.access(path, os.X_OK)):
        pytest.fail(f"{CHROMIUM_ENV}={path} is not an executable Chromium: run `bash .ci/chromium.sh`")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.fail(f"{CHROMIUM_ENV} is set but Playwright is not installed: pip install -e '.[console-test]'")
    return path


def train_command(steps: int, pause: float) -> str:
    """A job that reports loss, accuracy and prints a line per step (a stand-in for a training loop)."""
    return ("python -c \"import cumulo, time\n"
            f"for i in range({steps}):\n"
            "    cumulo.report(step=i, loss=1.0 / (i + 1), accuracy=i / " + str(steps) + ")\n"
            "    print('step', i, 'loss', round(1.0 / (i + 1), 4), flush=True)\n"
            f"    time.sleep({pause})\n"
            "print('done', flush=True)\"")


@pytest.fixture(scope="module")
def console_server(tmp_path_factory) -> Iterator[Server]:
    """A real control plane on SQLite with one finished job (with metrics and logs) and one ready deployment."""
    home = tmp_path_factory.mktemp("console")
    yield from seeded_plane(home, f"sqlite:///{home / 'cumulo.db'}")


def seeded_plane(home: Path, database_url: str) -> Iterator[Server]:
    server = Server(home=home / "home", database_url=database_url,
                    extra_env={"CUMULO_LOCAL_PRICE_PER_HOUR": "0.40"}).start(timeout=120)  # costs to show
    work = home / "work"
    work.mkdir()
    try:
        r = server.api("POST", "/jobs", json={"kind": "Job", "name": TRAINED, "command": train_command(8, 0.2),
                                              "workdir": str(work), "resources": {"cpu": 0.2, "memory": "128Mi"}})
        assert r.status_code == 201, r.text
        r = server.api("POST", "/deployments", json={
            "kind": "Deployment", "name": DEPLOYMENT, "command": "python -m http.server $PORT --bind 127.0.0.1",
            "workdir": str(work), "replicas": 1, "resources": {"cpu": 0.1, "memory": "64Mi"},
            "health": {"period": 0.5}})
        assert r.status_code == 201, r.text
        wait_until(lambda: server.api("GET", f"/jobs/{TRAINED}").json()["state"] == "Succeeded", 90,
                   what="the seeded job to succeed")
        wait_until(lambda: server.api("GET", f"/deployments/{DEPLOYMENT}").json()["ready"] == 1, 90,
                   what="the seeded deployment to be ready")
        server.work = work  # type: ignore[attr-defined]
        yield server
    finally:
        server.kill()
        kill_leftovers(server.home)


@pytest.fixture(scope="module")
def browser(console_server: Server):
    path = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=path, args=ARGS)
        try:
            yield b
        finally:
            b.close()


class Watched:
    """A signed-in page that records every console error, page error and failed request."""

    def __init__(self, context, server: Server) -> None:
        self.context = context
        self.server = server
        self.page = context.new_page()
        self.problems: list[str] = []
        self.page.on("console", lambda m: self.problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        # a request the browser itself abandons because the page navigated (a form's redirect while
        # the favicon loads) is not a failure; any other failed request is
        self.navigations = 0  # navigation requests of the main frame so far (they start before it unloads)
        self.aborted_polls: list[str] = []
        self.started: dict = {}
        self.page.on("request", self._request)
        self.page.on("requestfailed", self._failed)
        self.page.on("response", lambda r: self.problems.append(f"HTTP {r.status}: {r.request.method} {r.url}")
                     if r.status >= 400 else None)

    def _request(self, r) -> None:
        if r.is_navigation_request() and r.frame == self.page.main_frame:
            self.navigations += 1
        self.started[r] = self.navigations

    def _failed(self, r) -> None:
        if r.failure == "net::ERR_ABORTED" and self.started.get(r, self.navigations) < self.navigations:
            return
        if r.failure == "net::ERR_ABORTED" and (r.headers.get("hx-request") or r.headers.get("x-cumulo-poll")):
            # a live poll (htmx's, or the log/chart reads) the browser gave up on (seen rarely on this
            # loaded machine, never with an error status); the next poll refreshes the region, so it
            # is counted, not failed
            self.aborted_polls.append(r.url)
            return
        self.problems.append(f"failed: {r.method} {r.url} {r.failure}")

    def url(self, path: str) -> str:
        return self.server.url + path

    def sign_in(self) -> None:
        self.page.goto(self.url("/"))
        assert re.search(r"/login\?next=%2F$", self.page.url), self.page.url
        self.page.get_by_label("Token").fill(self.server.token or "")
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_url(self.url("/"))

    def expect_clean(self) -> None:
        assert not self.problems, "\n".join(self.problems)


@pytest.fixture
def signed_in(browser, console_server: Server) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    w = Watched(context, console_server)
    w.page.on("dialog", lambda d: d.accept())  # the confirmations of cancel and delete
    w.sign_in()
    try:
        yield w
    finally:
        context.close()


def job_yaml(name: str, command: str, workdir: Path) -> str:
    return textwrap.dedent(f"""\
        kind: Job
        name: {name}
        workdir: {workdir}
        resources: {{cpu: 0.2, memory: 128Mi}}
        """) + "command: |-\n" + textwrap.indent(command, "  ") + "\n"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"
