"""Monitoring time series in SQL: write samples, roll them up by the minute, prune, query.

Three tables (models.py): `series` (kind, workspace, object, instance, metric -> id), `samples`
(series id, Unix second, value: raw, kept `raw_retention`) and `samples_1m` (series id, minute,
mean, max: kept `rollup_retention`). Both sample tables are clustered on (series id, t) (no rowid on
SQLite), so a range read of one series is one index walk and a row costs ~20 bytes.

This module is what the sampler writes through and what the API, `cumulo monitor`, alert rules and
self-repair read through:

    key = SeriesKey("job", "default", "train", "", "steps_per_second")
    write(s, now_s, {key: 3.5, ...})
    query(s, kind="job", workspace="default", object="train", since=..., until=..., step=60)
    latest(s, kind="deployment", workspace="default", object="web")
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from sqlalchemy import delete, exists, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cumulo.store.models import Rollup, Sample, Series

MINUTE = 60


class SeriesKey(NamedTuple):
    kind: str  # node | job | deployment
    workspace: str  # '' for nodes
    object: str  # node, job or deployment name
    instance: str  # '' for the whole object; gpuN, a rank, a replica ordinal
    metric: str


@dataclass(frozen=True)
class Retention:
    """How long raw samples and minute rollups are kept (seconds)."""

    raw: int = 24 * 3600
    rollup: int = 30 * 24 * 3600


@dataclass
class SeriesData:
    key: SeriesKey
    #: (t, mean, max) per step, oldest first; t is the start of the step
    points: list[tuple[int, float, float]] = field(default_factory=list)


# -- series ids ----------------------------------------------------------------------------------
class SeriesIds:
    """key -> series id, cached (a series row is written once and never changes)."""

    def __init__(self) -> None:
        self._ids: dict[SeriesKey, int] = {}

    def resolve(self, s: Session, keys: Iterable[SeriesKey]) -> dict[SeriesKey, int]:
        missing = [k for k in keys if k not in self._ids]
        if missing:
            self._load(s, missing)
            for k in missing:
                if k not in self._ids:
                    try:
                        with s.begin_nested():
                            row = Series(kind=k.kind, workspace=k.workspace, object=k.object, instance=k.instance,
                                         metric=k.metric)
                            s.add(row)
                            s.flush()
                        self._ids[k] = row.id
                    except IntegrityError:  # another writer made it meanwhile
                        self._load(s, [k])
        return {k: self._ids[k] for k in keys}

    def _load(self, s: Session, keys: list[SeriesKey]) -> None:
        objects = {k.object for k in keys}
        for chunk in _chunks(sorted(objects), 500):
            for row in s.execute(select(Series.id, Series.kind, Series.workspace, Series.object, Series.instance,
                                        Series.metric).where(Series.object.in_(chunk))):
                self._ids[SeriesKey(*row[1:])] = row[0]

    def forget(self, ids: set[int]) -> None:
        self._ids = {k: v for k, v in self._ids.items() if v not in ids}


def _chunks(items: list, n: int) -> Iterable[list]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def _insert(s: Session, model):  # noqa: ANN001, ANN202 - a dialect's INSERT with ON CONFLICT
    dialect = s.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(model)
    if dialect == "sqlite":
        return sqlite.insert(model)
    return insert(model)


# -- writes --------------------------------------------------------------------------------------
def write(s: Session, t: int, values: Mapping[SeriesKey, float], ids: SeriesIds | None = None) -> int:
    """One sample per series at Unix second `t` (a second sample of a series at the same second is
    dropped). Non-finite values are skipped. Returns the rows written."""
    ids = ids or SeriesIds()
    clean = {k: float(v) for k, v in values.items() if v is not None and float(v) == float(v)
             and abs(float(v)) != float("inf")}
    if not clean:
        return 0
    resolved = ids.resolve(s, list(clean))
    rows = [{"series_id": resolved[k], "t": int(t), "value": v} for k, v in clean.items()]
    s.execute(_insert(s, Sample).on_conflict_do_nothing(), rows)
    return len(rows)


def rollup_watermark(s: Session) -> int | None:
    """The first minute not rolled up yet (None: nothing was ever rolled up)."""
    last = s.scalar(select(func.max(Rollup.t)))
    return None if last is None else int(last) + MINUTE


def roll_up(s: Session, now: int, since: int | None = None) -> tuple[int, int]:
    """Roll up every complete minute from `since` (default: the watermark, else the oldest sample)
    up to the minute `now` is in, into samples_1m (mean and max). Idempotent. Returns the minutes
    rolled [start, end)."""
    end = now - now % MINUTE
    start = since if since is not None else rollup_watermark(s)
    if start is None:
        first = s.scalar(select(func.min(Sample.t)))
        if first is None:
            return end, end
        start = int(first)
    start -= start % MINUTE
    if start >= end:
        return start, start
    minute = (Sample.t - Sample.t % MINUTE).label("m")
    src = (select(Sample.series_id, minute, func.avg(Sample.value), func.max(Sample.value))
           .where(Sample.t >= start, Sample.t < end)
           .group_by(Sample.series_id, minute))
    s.execute(_insert(s, Rollup).from_select(["series_id", "t", "avg", "max"], src).on_conflict_do_nothing())
    return start, end


def prune(s: Session, now: int, retention: Retention = Retention(), ids: SeriesIds | None = None) -> int:
    """Drop raw samples older than retention.raw, rollups older than retention.rollup, and series
    with nothing left. Returns the rows deleted."""
    n = s.execute(delete(Sample).where(Sample.t < now - retention.raw)).rowcount or 0
    n += s.execute(delete(Rollup).where(Rollup.t < now - retention.rollup)).rowcount or 0
    empty = select(Series.id).where(~exists().where(Sample.series_id == Series.id),
                                    ~exists().where(Rollup.series_id == Series.id))
    gone = set(s.scalars(empty))
    if gone:
        for chunk in _chunks(sorted(gone), 500):
            s.execute(delete(Series).where(Series.id.in_(chunk)))
        if ids is not None:
            ids.forget(gone)
    return n + len(gone)


# -- reads ---------------------------------------------------------------------------------------
def find(s: Session, *, kind: str, workspace: str | None = None, object: str | None = None,  # noqa: A002
         metric: str | Iterable[str] | None = None, instance: str | None = None) -> dict[int, SeriesKey]:
    """The series matching a selector (None: any)."""
    q = select(Series.id, Series.kind, Series.workspace, Series.object, Series.instance, Series.metric).where(
        Series.kind == kind)
    if workspace is not None:
        q = q.where(Series.workspace == workspace)
    if object is not None:
        q = q.where(Series.object == object)
    if instance is not None:
        q = q.where(Series.instance == instance)
    if isinstance(metric, str):
        q = q.where(Series.metric == metric)
    elif metric is not None:
        q = q.where(Series.metric.in_(list(metric)))
    return {row[0]: SeriesKey(*row[1:]) for row in s.execute(q)}


def default_step(since: int, until: int, points: int = 300, minimum: int = 10) -> int:
    """A step that gives at most ~`points` points over the range: 10 s, 30 s, 1, 5, 15 min, 1 h, 1 d."""
    span = max(until - since, 1)
    for step in (minimum, 30, 60, 300, 900, 3600, 86400):
        if step >= minimum and span / step <= points:
            return step
    return 86400


def query(s: Session, *, kind: str, since: int, until: int, step: int | None = None, now: int | None = None,
          workspace: str | None = None, object: str | None = None, metric: str | Iterable[str] | None = None,  # noqa: A002
          instance: str | None = None, retention: Retention = Retention()) -> list[SeriesData]:
    """Series matching the selector over [since, until), in buckets of `step` seconds (mean and max
    per bucket). Steps under a minute read raw samples (those within retention.raw); a minute or
    more reads the rollups, and raw samples for the minutes not rolled up yet."""
    now = until if now is None else now
    step = max(int(step or default_step(since, until)), 1)
    found = find(s, kind=kind, workspace=workspace, object=object, metric=metric, instance=instance)
    if not found:
        return []
    ids = sorted(found)
    raw_from = now - retention.raw
    watermark = rollup_watermark(s)
    if step < MINUTE:
        ranges = [(Sample, max(since, raw_from), until), (Rollup, since, min(raw_from, until))]
    else:
        cut = watermark if watermark is not None else since
        ranges = [(Rollup, since, min(cut, until)), (Sample, max(since, cut), until)]
    out: dict[int, dict[int, tuple[float, float, float]]] = {i: {} for i in ids}  # id -> bucket -> (sum, n, max)
    for model, lo, hi in ranges:
        if lo >= hi:
            continue
        t = model.t
        bucket = (t - t % step).label("b")
        mean_col, max_col = (model.value, model.value) if model is Sample else (model.avg, model.max)
        for chunk in _chunks(ids, 500):
            rows = s.execute(select(model.series_id, bucket, func.sum(mean_col), func.count(), func.max(max_col))
                             .where(model.series_id.in_(chunk), t >= lo, t < hi)
                             .group_by(model.series_id, bucket))
            for sid, b, total, n, mx in rows:
                acc = out[sid].get(int(b))
                out[sid][int(b)] = (total, n, mx) if acc is None else (acc[0] + total, acc[1] + n, max(acc[2], mx))
    result = []
    for sid in ids:
        buckets = out[sid]
        result.append(SeriesData(found[sid], [(b, round(tot / n, 6), mx) for b, (tot, n, mx) in sorted(buckets.items())]))
    result.sort(key=lambda d: d.key)
    return result


def latest(s: Session, *, kind: str, workspace: str | None = None, object: str | None = None,  # noqa: A002
           metric: str | Iterable[str] | None = None, since: int | None = None) -> dict[SeriesKey, tuple[int, float]]:
    """The newest raw sample (t, value) of each matching series (only those newer than `since`)."""
    found = find(s, kind=kind, workspace=workspace, object=object, metric=metric)
    out: dict[SeriesKey, tuple[int, float]] = {}
    for chunk in _chunks(sorted(found), 500):
        newest = (select(Sample.series_id, func.max(Sample.t).label("t")).where(Sample.series_id.in_(chunk))
                  .group_by(Sample.series_id))
        if since is not None:
            newest = newest.where(Sample.t >= since)
        sub = newest.subquery()
        rows = s.execute(select(Sample.series_id, Sample.t, Sample.value)
                         .join(sub, (Sample.series_id == sub.c.series_id) & (Sample.t == sub.c.t)))
        for sid, t, v in rows:
            out[found[sid]] = (int(t), v)
    return out


def forget_objects(s: Session, kind: str, workspace: str, object: str) -> None:  # noqa: A002
    """Delete an object's series and samples (e.g. when its job is deleted)."""
    ids = list(find(s, kind=kind, workspace=workspace, object=object))
    for chunk in _chunks(ids, 500):
        s.execute(delete(Sample).where(Sample.series_id.in_(chunk)))
        s.execute(delete(Rollup).where(Rollup.series_id.in_(chunk)))
        s.execute(delete(Series).where(Series.id.in_(chunk)))


__all__ = ["SeriesKey", "Retention", "SeriesData", "SeriesIds", "write", "roll_up", "rollup_watermark", "prune",
           "find", "query", "latest", "default_step", "forget_objects"]
