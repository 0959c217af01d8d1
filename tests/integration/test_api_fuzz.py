"""Property-based fuzzing of the REST API from its own OpenAPI document (schemathesis).

Every operation is called with generated valid and invalid inputs; whatever comes in, the answer
must not be a server error. The API runs for real (FastAPI app, services, SQLite store, migrations),
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


@asynccontextmanager
async def _reconcilers_off(_app):
    yield


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory):
    home: Path = tmp_path_factory.mktemp("fuzz-home")
    plane = build(ServerConfig(home=home, database_url=f"sqlite:///{home / 'cumulo.db'}"))
    register_local_node(plane.db, plane.runtime, utcnow())  # so submits are checked against a real node
    plane.app.router.lifespan_context = _reconcilers_off
    _auth["authorization"] = "Bearer " + (home / "token").read_text().strip()  # the admin token of its first start
    yield schemathesis.openapi.from_asgi("/openapi.json", plane.app)
    plane.db.dispose()


schema = schemathesis.pytest.from_fixture("api_schema")
_auth: dict[str, str] = {}


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_makes_the_api_answer_with_a_server_error(case):
    case.call_and_validate(checks=[not_a_server_error], headers=_auth)
