"""`cumulo deploy FILE` and `cumulo deployment ...`: list, status, logs, scale, delete, rollout."""

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
from cumulo.core.views import DeploymentView, RolloutView
from cumulo.sdk.client import Client
from cumulo.sdk.specs import load_spec

app = typer.Typer(help="Inference services: replicas behind the gateway.", no_args_is_help=True)
rollout_app = typer.Typer(help="Canary rollouts: status, promote, abort.", no_args_is_help=True)
app.add_typer(rollout_app, name="rollout")
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
        target = d.generation

        def canary_running(d: DeploymentView) -> bool:
            return d.rollout is not None and d.rollout.canary_generation == target and d.rollout.phase == "Progressing"

        if wait:
            with console.status(f"deploying {d.name} ...") as status:
                deadline = time.monotonic() + timeout
                while (d.state != "Available" or canary_running(d)) and time.monotonic() < deadline:
                    time.sleep(0.3)
                    d = client.get_deployment(d.name)
                    status.update(f"deploying {d.name}: {d.state}, {d.reason}")
    rolled_back = d.rollout is not None and d.rollout.canary_generation == target and d.rollout.phase == "RolledBack"
    if json_:
        emit_json(d)
    else:
        err.print(f"deployment [bold]{d.name}[/] {_state(d.state)}: {d.reason}")
        if rolled_back:
            err.print(f"[red]version {target} was rolled back[/]: {d.rollout.reason}")
        else:
            err.print(f"call it at {d.url}/<handler>")
    if wait and (d.state != "Available" or rolled_back or canary_running(d)):
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
    if d.rollout is not None and (d.rollout.phase == "Progressing" or d.rollout.canary_generation >= d.generation):
        r = d.rollout
        console.print(f"[dim]rollout[/]  canary version {r.canary_generation} {_rollout_phase(r.phase)}, "
                      f"{r.weight}% of the traffic: {r.reason}")
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


ROLLOUT_STYLE = {"Progressing": "cyan", "Succeeded": "green", "RolledBack": "red", "Superseded": "dim"}


def _rollout_phase(phase: str) -> str:
    return f"[{ROLLOUT_STYLE.get(phase, 'white')}]{phase}[/]"


def _rollout_detail(r: RolloutView) -> None:
    console.print(f"[bold]{r.deployment}[/]  canary {_rollout_phase(r.phase)}  step {r.step}/{len(r.steps)} "
                  f"(steps {r.steps} %), version {r.canary_generation} gets {r.weight}% of the traffic, "
                  f"version {r.stable_generation} (stable) the rest")
    console.print(f"[dim]why[/]      {r.reason}")
    if r.pending:
        console.print(f"[dim]pending[/]  {r.pending} (acted on at the next pass)")
    a = r.analysis
    if a is None:
        return
    t = Table(box=None, header_style="bold", title=f"analysis over {a.window_seconds:.0f}s (the same window for both)",
              title_justify="left")
    for col in ("VERSION", "", "REQUESTS", "FAILED", "ERROR RATE", "P99"):
        t.add_column(col)
    for role, g in (("canary", a.canary), ("stable", a.stable)):
        t.add_row(str(g.generation), role, str(g.requests), str(g.errors),
                  "-" if g.error_rate is None else f"{g.error_rate:.2%}", "-" if g.p99_ms is None else f"{g.p99_ms:.0f} ms")
    t.add_row("", "limit", f">= {a.min_requests}", "", f"<= {a.max_error_rate:.2%}",
              "-" if a.max_p99_ms is None else f"<= {a.max_p99_ms:g} ms")
    console.print(t)


@rollout_app.command("status")
def rollout_status(name: str, json_: bool = JSON) -> None:
    """The canary rollout: phase, step, traffic weight, and both versions' numbers over the same window."""
    with Client() as client:
        r = client.rollout(name)
    if json_:
        emit_json(r)
        return
    _rollout_detail(r)


@rollout_app.command("promote")
def rollout_promote(name: str, json_: bool = JSON) -> None:
    """Move the canary to its next step now (the last step: the new version takes all the traffic)."""
    with Client() as client:
        r = client.promote_rollout(name)
    if json_:
        emit_json(r)
        return
    err.print(f"deployment [bold]{name}[/]: promoting version {r.canary_generation} past step {r.step}/{len(r.steps)}")


@rollout_app.command("abort")
def rollout_abort(name: str, json_: bool = JSON) -> None:
    """Roll the canary back now: its replicas go, the stable version takes all the traffic again."""
    with Client() as client:
        r = client.abort_rollout(name)
    if json_:
        emit_json(r)
        return
    err.print(f"deployment [bold]{name}[/]: rolling version {r.canary_generation} back to version {r.stable_generation}")
