"""Shared fixtures: a fresh database per test on SQLite and (when reachable) PostgreSQL."""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

PG_URL = os.environ.get("CUMULO_TEST_POSTGRES_URL", "")


def _pg_admin():
    if not PG_URL:
        pytest.skip("PostgreSQL tests: set CUMULO_TEST_POSTGRES_URL (`bash .ci/postgres.sh` starts one and prints it)")
    return create_engine(PG_URL, isolation_level="AUTOCOMMIT")


@pytest.fixture
def pg_database_url():
    admin = _pg_admin()
    name = f"cumulo_t_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:  # fails loudly when the URL is set but the server is not there
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cumulo.db'}"
    return request.getfixturevalue("pg_database_url")
