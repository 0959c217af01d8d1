"""Engine and sessions for SQLite (WAL, immediate transactions) and PostgreSQL (psycopg 3)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from cumulo.core.errors import InvalidSpec


def make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except Exception:
        raise InvalidSpec(
            f"database URL {url!r} is not valid; use sqlite:///PATH or postgresql+psycopg://USER:PASS@HOST/DB"
        ) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            parsed,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=8,
            max_overflow=8,
        )
        _sqlite_pragmas(engine)
        return engine
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(parsed, pool_size=8, max_overflow=8, pool_pre_ping=True)
    raise InvalidSpec(f"database {backend!r} is not supported; use sqlite:///PATH or postgresql+psycopg://...")


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record):  # noqa: ANN001
        # the driver must not open transactions itself: we begin them (IMMEDIATE) below
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):  # noqa: ANN001
        # take the write lock up front: a deferred transaction that later writes can fail with
        # "database is locked" instead of waiting for busy_timeout
        conn.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """An engine plus a session factory; `tx()` is one short transaction.

    On SQLite every transaction takes the database's write lock (BEGIN IMMEDIATE), so threads of
    this process queue on a Python lock first: a waiter wakes the moment the lock is free instead
    of polling in SQLite's busy handler, whose sleeps (up to 100 ms each) made submit p99 ~100 ms
    under load. Other processes still wait through busy_timeout.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._serialize = threading.Lock() if self.backend == "sqlite" else None
        self._inside = threading.local()  # this thread is in a transaction (SQLite: nesting would deadlock)

    @property
    def backend(self) -> str:
        return self.engine.url.get_backend_name()

    @contextmanager
    def tx(self) -> Iterator[Session]:
        if self._serialize is not None and getattr(self._inside, "yes", False):
            # the thread already holds the lock: waiting for it would hang the whole process
            raise RuntimeError("a transaction was opened inside another on SQLite; finish the first one first")
        with self._serialize or nullcontext(), self._sessions.begin() as session:
            self._inside.yes = True
            try:
                yield session
            finally:
                self._inside.yes = False

    def dispose(self) -> None:
        self.engine.dispose()
