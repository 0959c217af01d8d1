"""`cumulo job ...`: submit, list, status, logs, metrics, cancel, delete."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import typer
from rich.table import Table

from cumulo.cli.monitor import SINCE, STEP, UNTIL, show_series
from cumulo.cli.render import JSON, console, emit_json, err, job_detail, jobs_table, state
from cumulo.core.errors import InvalidSpec, NotFound
from cumulo.core.specs import JobSpec
from cumulo.core.states import JobState
from cumulo.core.units import parse_duration
from cumulo.sdk.client import Client
from cumulo.sdk.specs import load_spec

app = typer.Typer(help="Training and batch jobs.", no_args_is_help=True)


def _follow(client: Client, name: str, attempt: int | None = None, rank: int = 0, from_first: bool = False) -> None:
    for text in client.follow_logs(name, attempt=attempt, rank=rank, from_first=from_first):
        sys.stdout.write(text)
        sys.stdout.flush()


def _exit_for(state_: JobState) -> None:
    if state_ in (JobState.FAILED, JobState.CANCELLED):
        raise typer.Exit(1)


@app.command()
def submit(
    file: Path = typer.Argument(..., help="YAML spec with kind: Job"),
    follow: bool = typer.Option(False, "--follow", "-f", help="stream the logs until the job ends; exit 1 unless it succeeds"),
    name: str = typer.Option(None, help="override the spec's name"),
    replace: bool = typer.Option(False, help="if a finished job has this name, delete it first"),
    json_: bool = JSON,
) -> None:
    """Submit a job from a YAML file."""
    spec = load_spec(file)
    if not isinstance(spec, JobSpec):
        raise InvalidSpec(f"{file}: kind: {spec.kind}; `cumulo job submit` takes kind: Job (use `cumulo deploy` for a Deployment)")
    if name:
        spec = spec.model_copy(update={"name": name})
    with Client() as client:
        if replace:
            try:
                old = client.get_job(spec.name)
                if old.state.terminal:
                    client.delete_job(spec.name)
            except NotFound:
                pass
        job = client.submit_job(spec)
        if json_ and not follow:
            emit_json(job)
            return
        err.print(f"job [bold]{job.name}[/] submitted ({state(job.state)})")
        if not follow:
            return
        _follow(client, job.name, from_first=True)
        job = client.wait_job(job.name)
        if json_:
            emit_json(job)
        else:
            err.print(f"job [bold]{job.name}[/] {state(job.state)}: {job.reason}")
        _exit_for(job.state)


@app.command("list")
def list_(
    state_: list[str] = typer.Option(None, "--state", help="only jobs in this state (repeatable)"),
    limit: int = typer.Option(100, min=1, max=10000, help="show the newest N jobs"),
    all_: bool = typer.Option(False, "--all", help="show every job (up to 10,000)"),
    json_: bool = JSON,
) -> None:
    """List jobs, newest first."""
    limit = 10000 if all_ else limit
    with Client() as client:
        jobs = client.list_jobs(states=state_, limit=limit)
    if json_:
        emit_json(jobs)
    elif not jobs:
        console.print("no jobs yet; submit one with `cumulo job submit FILE`")
    else:
        console.print(jobs_table(jobs))
        if len(jobs) == limit and not all_:
            err.print(f"[dim]showing the newest {limit}; --limit N or --all for more[/]")


@app.command()
def status(name: str, json_: bool = JSON) -> None:
    """A job's state, progress (steps/s; with total_steps reported, done and ETA), attempts, latest
    metrics, and the CPU and memory of its running processes."""
    with Client() as client:
        job = client.get_job(name)
    if json_:
        emit_json(job)
    else:
        job_detail(job)


@app.command()
def logs(
    name: str,
    follow: bool = typer.Option(False, "--follow", "-f", help="keep streaming until the job ends"),
    attempt: int = typer.Option(None, help="attempt number (default: the latest)"),
    rank: int = typer.Option(0, help="worker rank"),
) -> None:
    """Print a job's output (stdout and stderr of one worker)."""
    with Client() as client:
        if follow:
            _follow(client, name, attempt, rank)
            return
        offset = 0
        while True:
            chunk = client.job_logs(name, attempt=attempt, rank=rank, offset=offset)
            sys.stdout.write(chunk.data)
            if not chunk.data or chunk.offset == offset:
                break
            offset = chunk.offset


@app.command()
def metrics(
    name: str,
    metric: str = typer.Option(None, help="only this metric"),
    since: str = SINCE,
    until: str = UNTIL,
    system: bool = typer.Option(False, "--system", help="the sampled series instead: CPU, memory and GPU memory per "
                                                        "rank, steps/s, progress and ETA"),
    step: int = STEP,
    json_: bool = JSON,
) -> None:
    """The time series a job reported with cumulo.report() (with --system: what cumulo sampled)."""
    with Client() as client:
        if system:
            show_series(client.job_series(name, since=since, until=until, step=step, metric=metric), json_, "JOB", "RANK")
            return
        points = client.job_metrics(name, metric)
    if since or until:
        lo, hi = _window(since, until)
        points = [p for p in points if (lo is None or p.time >= lo) and (hi is None or p.time <= hi)]
    if json_:
        emit_json(points)
        return
    names = sorted({k for p in points for k in p.values})
    t = Table(box=None, header_style="bold")
    for col in ("ATTEMPT", "STEP", *[n.upper() for n in names]):
        t.add_column(col)
    for p in points:
        t.add_row(str(p.attempt), "-" if p.step is None else str(p.step), *[f"{p.values[n]:.4g}" if n in p.values else "" for n in names])
    console.print(t if points else "no metrics reported yet")


def _window(since: str | None, until: str | None) -> tuple[datetime | None, datetime | None]:
    """--since/--until as times: a duration back from now (15m, 2h) or an ISO time (UTC without an offset)."""
    now = datetime.now(UTC)
    out = []
    for flag, value in (("--since", since), ("--until", until)):
        if not value or value == "now":
            out.append(None if not value else now)
            continue
        try:
            out.append(now - timedelta(seconds=parse_duration(value)))
            continue
        except ValueError:
            pass
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidSpec(f"{flag} {value!r}: give a duration back from now (15m, 2h, 1d) or an ISO time") from None
        out.append(when if when.tzinfo else when.replace(tzinfo=UTC))
    return out[0], out[1]


@app.command()
def cancel(name: str, json_: bool = JSON) -> None:
    """Stop a job (SIGTERM, then SIGKILL after 10 s); it ends Cancelled."""
    with Client() as client:
        job = client.cancel_job(name)
    if json_:
        emit_json(job)
    else:
        err.print(f"cancelling job [bold]{name}[/]")


@app.command()
def delete(name: str) -> None:
    """Delete a finished job with its logs, metrics and artifacts."""
    with Client() as client:
        client.delete_job(name)
    err.print(f"job [bold]{name}[/] deleted")
