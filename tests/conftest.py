"""Shared fixtures: a fresh database per test on SQLite and (when reachable) PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import settings
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

PG_URL = os.environ.get("CUMULO_TEST_POSTGRES_URL", "")

#: the engines (Ray, Slurm) the cluster tests share: started by .ci/, skipped with the command when absent
pytest_plugins = ["tests.engines.ray", "tests.engines.slurm", "tests.engines.prometheus"]

# CI explores the same examples every run (a landing must not hinge on a lucky draw); locally,
# property tests draw new examples each time and keep failures in .hypothesis/ to replay.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


def _pg_admin():
    if not PG_URL:
        pytest.skip("PostgreSQL tests: set CUMULO_TEST_POSTGRES_URL (`bash .ci/postgres.sh` starts one and prints it)")
    return create_engine(PG_URL, isolation_level="AUTOCOMMIT")


@contextmanager
def fresh_database(kind: str, folder: Path) -> Iterator[str]:
    """A new, empty database: a SQLite file in `folder`, or a new PostgreSQL database."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'cumulo.db'}"
        return
    admin = _pg_admin()
    name = f"cumulo_t_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:  # fails loudly when the URL is set but the server is not there
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def database_url(request, tmp_path):
    with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture(scope="module", params=BACKENDS)
def module_database_url(request, tmp_path_factory):
    with fresh_database(request.param, tmp_path_factory.mktemp("db")) as url:
        yield url


@pytest.fixture(scope="module")
def sqlite_module_url(tmp_path_factory):
    """One SQLite database for a module of end-to-end tests whose store code the integration tests
    already run on both backends (so the long end-to-end cases run once, not once per backend)."""
    with fresh_database("sqlite", tmp_path_factory.mktemp("db")) as url:
        yield url
