"""The store on real SQLite and PostgreSQL: migrations, uniqueness, leases, metrics."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import inspect

from cumulo.core.errors import Conflict, NotFound
from cumulo.store import jobs as store
from cumulo.store import leases
from cumulo.store.db import Database
from cumulo.store.migrate import upgrade
from cumulo.store.models import Job

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def db(database_url):
    d = Database(database_url)
    upgrade(d.engine)
    yield d
    d.dispose()


def new_job(name="a", **kw):
    base = dict(id=name + "-id", name=name, created_at=T0, spec={"kind": "Job", "name": name, "command": "true"},
                cancel_requested=False, artifacts_dir="/tmp/x", state="Pending", reason="", attempts=0)
    base.update(kw)
    return Job(**base)


def test_migrations_create_every_table_and_are_idempotent(db):
    upgrade(db.engine)  # a second start applies nothing and fails nothing
    tables = set(inspect(db.engine).get_table_names())
    assert {"jobs", "attempts", "events", "metrics", "nodes", "alembic_version"} <= tables


def test_the_migrations_build_exactly_the_models_tables(db):
    """Alembic's autogenerate finds nothing to change: models and migrations agree on both backends."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from cumulo.store.models import Base

    with db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_names_are_unique_within_a_workspace(db):
    with db.tx() as s:
        store.insert(s, new_job("a", id="a-in-team", workspace="team"))  # another workspace: no conflict
    with db.tx() as s:
        store.insert(s, new_job("a"))
    with pytest.raises(Conflict, match="a job named 'a' already exists"):
        with db.tx() as s:
            store.insert(s, new_job("a", id="other"))
    with pytest.raises(Conflict):
        with db.tx() as s:
            store.insert(s, new_job("a", id="other-in-team", workspace="team"))
    with db.tx() as s:
        assert [j.name for j in store.listing(s)] == ["a"]


def test_unknown_name_is_not_found(db):
    with pytest.raises(NotFound, match="no job named 'zz'"):
        with db.tx() as s:
            store.by_name(s, "zz")


def test_timestamps_come_back_as_utc(db):
    with db.tx() as s:
        store.insert(s, new_job("a"))
    with db.tx() as s:
        assert store.by_name(s, "a").created_at == T0


def test_a_lease_is_exclusive_until_it_expires(db):
    with db.tx() as s:
        store.insert(s, new_job("a"))
    with db.tx() as s:
        assert leases.claim(s, Job, "a-id", "tok1", T0, ttl=30)
    with db.tx() as s:
        assert not leases.claim(s, Job, "a-id", "tok2", T0 + timedelta(seconds=10), ttl=30)
    with db.tx() as s:  # worker 1 is presumed dead after its lease ran out; worker 2 takes over
        assert leases.claim(s, Job, "a-id", "tok2", T0 + timedelta(seconds=31), ttl=30)
    with db.tx() as s:  # worker 1's late write is dropped
        assert not leases.guarded_update(s, Job, "a-id", "tok1", state="Failed")
    with db.tx() as s:
        assert leases.guarded_update(s, Job, "a-id", "tok2", state="Running")
    with db.tx() as s:
        job = store.by_name(s, "a")
        assert job.state == "Running" and job.lock_token is None


def test_latest_metrics_per_job_in_one_query(db):
    with db.tx() as s:
        store.insert(s, new_job("a"))
        store.insert(s, new_job("b"))
    with db.tx() as s:
        store.add_metrics(s, "a-id", 1, [(1, T0, {"loss": 2.0, "acc": 0.5}), (2, T0, {"loss": 1.0})])
        store.add_metrics(s, "b-id", 1, [(7, T0, {"loss": 9.0})])
    with db.tx() as s:
        latest = store.latest_metrics(s, ["a-id", "b-id"])
        assert latest == {"a-id": {"step": 2, "loss": 1.0, "acc": 0.5}, "b-id": {"step": 7, "loss": 9.0}}
        assert [m.value for m in store.metric_series(s, "a-id", name="loss")] == [2.0, 1.0]


def test_placement_counts_exactly_what_live_attempts_and_replicas_hold(db):
    """Placement decodes each allocation once and remembers it; what holds resources is still read
    from the store every time, so an attempt or replica that ends stops counting at once."""
    from cumulo.control.placement import Placement
    from cumulo.policy.capacity import Allocation
    from cumulo.store.models import Attempt, Deployment, Replica

    def attempt(job_id, number, state, cpu, gpus=()):
        return Attempt(job_id=job_id, number=number, state=state, created_at=T0, runtime="local", handle={},
                       allocation=Allocation(cpu, 2**20, (tuple(gpus),)).to_dict(), reason="", workers=[])

    placement = Placement("local")
    with db.tx() as s:
        store.insert(s, new_job("a", state="Running", attempts=2))
        store.insert(s, new_job("b", state="Running", attempts=1))
        s.add_all([attempt("a-id", 1, "Failed", 8.0), attempt("a-id", 2, "Running", 1.0, [0]),
                   attempt("b-id", 1, "Starting", 0.5)])
        s.add(Deployment(id="d1", name="web", created_at=T0, spec={}, updated_at=T0, workdir="/", state="Available"))
        s.flush()
        s.add(Replica(deployment_id="d1", ordinal=1, generation=1, state="Ready", created_at=T0, host="127.0.0.1",
                      port=1, runtime="local", handle={}, allocation=Allocation(0.25, 2**20, ((1,),)).to_dict()))
    with db.tx() as s:
        held = placement.used(s)
    assert sorted(a.cpu for a in held) == [0.25, 0.5, 1.0]  # the failed attempt holds nothing
    assert sorted(g for a in held for g in a.gpus) == [0, 1]
    with db.tx() as s:  # b's attempt ends, a third job starts: the next read follows the store
        s.query(Attempt).filter_by(job_id="b-id").update({"state": "Succeeded"})
        store.insert(s, new_job("c", state="Starting", attempts=1))
        s.add(attempt("c-id", 1, "Starting", 2.0, [2]))
    with db.tx() as s:
        held = placement.used(s)
    assert sorted(a.cpu for a in held) == [0.25, 1.0, 2.0]
    assert sorted(g for a in held for g in a.gpus) == [0, 1, 2]
    assert len(placement._known) == 3  # nothing that ended is remembered


def test_a_transaction_nested_in_another_is_an_error_on_sqlite_not_a_hang(tmp_path):
    """A reconciler that opened a transaction inside another one hung the whole control plane
    (every thread then waited on SQLite's lock forever); now it is an error at the nesting."""
    import pytest as _pytest

    from cumulo.store.db import Database

    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    with db.tx():
        with _pytest.raises(RuntimeError, match="inside another"):
            with db.tx():
                pass
    with db.tx():  # the first one finished: the next is fine
        pass
    db.dispose()
