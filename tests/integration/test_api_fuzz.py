"""Property-based fuzzing of the REST API from its own OpenAPI document (schemathesis).

Every operation is called with generated valid and invalid inputs, on SQLite and PostgreSQL, with
the admin token of the default workspace and with a member token of a second workspace; whatever
comes in, the answer must not be a server error, and nothing the second workspace gets back may
name an object of the first. The API runs for real (FastAPI app, services, store, migrations),
with the reconcilers left off so that generated jobs and deployments are recorded but never run.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

from cumulo.app import ServerConfig, build  # noqa: E402
from cumulo.control.jobs import utcnow  # noqa: E402
from cumulo.control.nodes import register_local_node  # noqa: E402
from cumulo.core.tokens import Scope  # noqa: E402


@asynccontextmanager
async def _reconcilers_off(_app):
    yield


#: per backend: the admin token, a member token of workspace "other", and the ids of objects in "default"
_state: dict[str, dict] = {}


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory, module_database_url):
    home: Path = tmp_path_factory.mktemp("fuzz-home")
    plane = build(ServerConfig(home=home, database_url=module_database_url))
    register_local_node(plane.db, plane.runtime, utcnow())  # so submits are checked against a real node
    plane.app.router.lifespan_context = _reconcilers_off
    app = plane.app.state
    app.workspaces.create("other")
    other = app.tokens.create(name="other-member", workspace="other", role="member").token
    job = app.jobs.submit({"kind": "Job", "name": "default-only", "command": "true", "workdir": str(home)}, Scope())
    _state.clear()
    _state.update(admin="Bearer " + (home / "token").read_text().strip(), other="Bearer " + other,
                  private=[job.id, "default-only"])
    yield schemathesis.openapi.from_asgi("/openapi.json", plane.app)
    plane.db.dispose()


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_makes_the_api_answer_with_a_server_error(case):
    case.call_and_validate(checks=[not_a_server_error], headers={"authorization": _state["admin"]})


@schema.parametrize()
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
def test_another_workspace_never_reads_this_ones_objects(case):
    response = case.call_and_validate(checks=[not_a_server_error], headers={"authorization": _state["other"]})
    leaked = [x for x in _state["private"] if x in response.text]
    assert not leaked, f"{case.method} {case.formatted_path} showed {leaked} to another workspace"
