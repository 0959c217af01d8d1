"""The monitoring store on real SQLite and PostgreSQL: samples, minute rollups, retention, queries.
Time is passed in (an injected clock), so a day of retention is tested in no time."""

import pytest
from sqlalchemy import func, select

from cumulo.store import metrics as m
from cumulo.store.db import Database
from cumulo.store.migrate import upgrade
from cumulo.store.models import Rollup, Sample, Series

T0 = 1_800_000_000 - 1_800_000_000 % 60  # a minute boundary
CPU = m.SeriesKey("node", "", "local", "", "cpu_percent")
RSS = m.SeriesKey("job", "default", "train", "0", "memory_bytes")
OTHER_WS = m.SeriesKey("job", "team", "train", "0", "memory_bytes")


@pytest.fixture
def db(database_url):
    d = Database(database_url)
    upgrade(d.engine)
    yield d
    d.dispose()


def fill(db, start, seconds, every=10, value=lambda t: float(t % 600)):
    ids = m.SeriesIds()
    for t in range(start, start + seconds, every):
        with db.tx() as s:
            m.write(s, t, {CPU: value(t), RSS: 1000.0 + t - start, OTHER_WS: 7.0}, ids)
    return ids


def test_write_query_raw_and_latest(db):
    fill(db, T0, 120)
    with db.tx() as s:
        got = m.query(s, kind="node", object="local", since=T0, until=T0 + 120, step=10)
        assert [d.key for d in got] == [CPU]
        assert [p[0] for p in got[0].points] == list(range(T0, T0 + 120, 10))
        assert got[0].points[3][1] == float((T0 + 30) % 600)
        # 30 s buckets: mean and max of three samples each
        got = m.query(s, kind="job", workspace="default", object="train", since=T0, until=T0 + 120, step=30)
        assert got[0].key == RSS and got[0].points[0] == (T0, 1010.0, 1020.0)
        assert m.latest(s, kind="job", workspace="default") == {RSS: (T0 + 110, 1110.0)}
        assert m.latest(s, kind="job", workspace="team") == {OTHER_WS: (T0 + 110, 7.0)}


def test_same_second_twice_keeps_the_first_and_non_finite_is_skipped(db):
    with db.tx() as s:
        assert m.write(s, T0, {CPU: 1.0, RSS: float("nan")}) == 1
    with db.tx() as s:
        m.write(s, T0, {CPU: 2.0})
        assert m.latest(s, kind="node") == {CPU: (T0, 1.0)}


def test_rollup_is_mean_and_max_per_minute_and_idempotent(db):
    fill(db, T0, 180, value=lambda t: float((t - T0) % 60))  # each minute: 0, 10, ..., 50
    with db.tx() as s:
        assert m.roll_up(s, now=T0 + 185) == (T0, T0 + 180)
        m.roll_up(s, now=T0 + 185, since=T0)  # again: nothing doubles
        rows = s.execute(select(Rollup.t, Rollup.avg, Rollup.max).join(Series, Series.id == Rollup.series_id)
                         .where(Series.metric == "cpu_percent").order_by(Rollup.t)).all()
        assert rows == [(T0, 25.0, 50.0), (T0 + 60, 25.0, 50.0), (T0 + 120, 25.0, 50.0)]
        assert m.rollup_watermark(s) == T0 + 180
        # the next pass starts at the watermark: a minute not complete yet is not rolled up
        assert m.roll_up(s, now=T0 + 200) == (T0 + 180, T0 + 180)


def test_retention_drops_raw_after_a_day_and_rollups_after_thirty_and_empty_series(db):
    retention = m.Retention(raw=24 * 3600, rollup=30 * 24 * 3600)
    fill(db, T0, 120)
    with db.tx() as s:
        m.roll_up(s, now=T0 + 120)
        m.prune(s, now=T0 + 3600, retention=retention)
        assert s.scalar(select(func.count()).select_from(Sample)) == 36  # a day not over: all kept
    with db.tx() as s:
        m.prune(s, now=T0 + 24 * 3600 + 120, retention=retention)
        assert s.scalar(select(func.count()).select_from(Sample)) == 0
        assert s.scalar(select(func.count()).select_from(Rollup)) == 6
        # past the raw retention, a query reads the minute rollups whatever the step asked
        now = T0 + 25 * 3600
        got = m.query(s, kind="node", since=T0, until=now, now=now, step=10, retention=retention)
        assert [(p[0], p[2]) for p in got[0].points] == [(T0, float(T0 % 600 + 50)), (T0 + 60, float((T0 + 110) % 600))]
    with db.tx() as s:
        m.prune(s, now=T0 + 31 * 24 * 3600, retention=retention)
        assert s.scalar(select(func.count()).select_from(Rollup)) == 0
        assert s.scalar(select(func.count()).select_from(Series)) == 0  # nothing left: the series go too


def test_a_minute_step_reads_rollups_and_the_raw_minutes_not_rolled_up_yet(db):
    fill(db, T0, 240, value=lambda t: 1.0)
    with db.tx() as s:
        m.roll_up(s, now=T0 + 120)  # two minutes rolled up; two more only raw
        got = m.query(s, kind="node", since=T0, until=T0 + 240, step=60)
        assert [(p[0], p[1]) for p in got[0].points] == [(T0 + 60 * i, 1.0) for i in range(4)]


def test_series_ids_survive_a_new_writer(db):
    fill(db, T0, 20)
    with db.tx() as s:  # a fresh cache (a restarted control plane) finds the existing rows
        m.write(s, T0 + 30, {CPU: 5.0}, m.SeriesIds())
        assert s.scalar(select(func.count()).select_from(Series)) == 3


def test_default_step():
    assert m.default_step(0, 600) == 10
    assert m.default_step(0, 86400) == 300
    assert m.default_step(0, 30 * 86400) == 86400
