"""`cumulo deploy FILE` and `cumulo deployment ...`: list, status, logs, scale, delete."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import typer
from rich.table import Table

from cumulo.cli.monitor import METRIC, SINCE, STEP, UNTIL, show_series
from cumulo.cli.render import JSON, STATE_STYLE, ago, console, emit_json, err
from cumulo.core.errors import InvalidSpec, NotFound
from cumulo.core.specs import DeploymentSpec
from cumulo.core.views import DeploymentView
from cumulo.sdk.client import Client
from cumulo.sdk.specs import load_spec

app = typer.Typer(help="Inference services: replicas behind the gateway.", no_args_is_help=True)
DEPLOYMENT_STYLE = {**STATE_STYLE, "Progressing": "cyan", "Available": "green", "Degraded": "yellow",
                    "CrashLoopBackOff": "red", "Deleting": "magenta", "Ready": "green", "Draining": "magenta",
                    "Stopped": "dim"}


def _state(s: str) -> str:
    return f"[{DEPLOYMENT_STYLE.get(s, 'white')}]{s}[/]"


def deploy(
    file: Path = typer.Argument(..., help="YAML spec with kind: Deployment"),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="wait until every replica is ready"),
    timeout: float = typer.Option(300.0, help="with --wait: seconds to wait"),
    json_: bool = JSON,
) -> None:
    """Create a deployment, or update it (replicas are replaced one by one, no request dropped)."""
    spec = load_spec(file)
    if not isinstance(spec, DeploymentSpec):
        raise InvalidSpec(f"{file}: kind: {spec.kind}; `cumulo deploy` takes kind: Deployment (use `cumulo job submit` for jobs)")
    with Client() as client:
        d = client.deploy(spec)
        if wait:
            with console.status(f"deploying {d.name} ...") as status:
                deadline = time.monotonic() + timeout
                while d.state != "Available" and time.monotonic() < deadline:
                    time.sleep(0.3)
                    d = client.get_deployment(d.name)
                    status.update(f"deploying {d.name}: {d.state}, {d.reason}")
    if json_:
        emit_json(d)
        return
    err.print(f"deployment [bold]{d.name}[/] {_state(d.state)}: {d.reason}")
    err.print(f"call it at {d.url}/<handler>")
    if wait and d.state != "Available":
        raise typer.Exit(1)


@app.command("list")
def list_(json_: bool = JSON) -> None:
    """Every deployment with its state and ready replicas."""
    with Client() as client:
        rows = client.list_deployments()
    if json_:
        emit_json(rows)
        return
    if not rows:
        console.print("no deployments yet; create one with `cumulo deploy FILE`")
        return
    t = Table(box=None, header_style="bold")
    for col in ("NAME", "STATE", "READY", "VERSION", "URL", "REASON"):
        t.add_column(col, overflow="fold" if col == "REASON" else "ellipsis")
    for d in rows:
        t.add_row(d.name, _state(d.state), f"{d.ready}/{d.desired}", str(d.generation), d.url, d.reason)
    console.print(t)


def _detail(d: DeploymentView) -> None:
    console.print(f"[bold]{d.name}[/]  {_state(d.state)}  {d.reason}")
    console.print(f"[dim]url[/]      {d.url}")
    target = d.spec.service or (d.spec.command if isinstance(d.spec.command, str) else " ".join(d.spec.command or []))
    console.print(f"[dim]runs[/]     {target}  (version {d.generation}, {d.ready}/{d.desired} ready)")
    if d.spec.autoscaling is not None:
        a = d.spec.autoscaling
        console.print(f"[dim]scaling[/]  {a.policy}, {a.min}-{a.max} replicas, target {a.target:g} in flight each"
                      + (f": {d.autoscaling}" if d.autoscaling else ""))
    t = Table(box=None, header_style="bold", title="replicas", title_justify="left")
    for col in ("#", "STATE", "VERSION", "CLUSTER", "ADDRESS", "STARTED", "REASON"):
        t.add_column(col, overflow="fold" if col == "REASON" else "ellipsis")
    for r in d.replicas + d.ended[-5:]:
        where = f"{r.host}:{r.port}" if r.host and r.port else "placing"
        t.add_row(str(r.id), _state(r.state), str(r.generation), r.cluster, where, ago(r.created_at), r.reason)
    console.print(t)


@app.command()
def status(name: str, json_: bool = JSON) -> None:
    """A deployment's state, URL, replicas (with why any failed) and recent events."""
    with Client() as client:
        d = client.get_deployment(name)
        recent = [] if json_ else client.events(kind="Deployment", name=name, limit=8)
    if json_:
        emit_json(d)
        return
    _detail(d)
    if recent:
        t = Table(box=None, header_style="bold", title="recent events", title_justify="left")
        for col in ("AGE", "REASON", "MESSAGE"):
            t.add_column(col, overflow="fold" if col == "MESSAGE" else "ellipsis")
        for e in recent:
            t.add_row(ago(e.time), e.reason, e.message)
        console.print(t)


@app.command()
def logs(
    name: str,
    replica: int = typer.Option(None, help="replica number (default: the first live one)"),
    follow: bool = typer.Option(False, "--follow", "-f", help="keep streaming"),
) -> None:
    """Print a replica's output."""
    with Client() as client:
        offset = 0
        while True:
            chunk = client.deployment_logs(name, replica=replica, offset=offset)
            sys.stdout.write(chunk.data)
            sys.stdout.flush()
            replica = replica or chunk.attempt or None
            if chunk.offset == offset:
                if not follow or chunk.complete:
                    return
                time.sleep(0.3)
            offset = chunk.offset


@app.command()
def metrics(name: str, since: str = SINCE, until: str = UNTIL, step: int = STEP, metric: str = METRIC,
            json_: bool = JSON) -> None:
    """Sampled series of a deployment: request rate, p50/p99 latency, error rate, in flight, ready
    replicas; per replica CPU, memory and in flight."""
    with Client() as client:
        report = client.deployment_series(name, since=since, until=until, step=step, metric=metric)
    show_series(report, json_, "DEPLOYMENT", "REPLICA")


@app.command()
def scale(name: str, replicas: int = typer.Option(..., min=0, max=256, help="how many replicas"),
          json_: bool = JSON) -> None:
    """Set the number of replicas."""
    with Client() as client:
        d = client.scale_deployment(name, replicas)
    if json_:
        emit_json(d)
    else:
        err.print(f"deployment [bold]{name}[/] scaling to {replicas} replicas")


@app.command()
def delete(name: str, wait: bool = typer.Option(True, "--wait/--no-wait", help="wait until it is gone")) -> None:
    """Drain every replica (in-flight requests finish), then remove the deployment."""
    with Client() as client:
        client.delete_deployment(name)
        if wait:
            with console.status(f"draining {name} ..."):
                while True:
                    try:
                        client.get_deployment(name)
                    except NotFound:
                        break
                    time.sleep(0.3)
    err.print(f"deployment [bold]{name}[/] {'deleted' if wait else 'deleting'}")
