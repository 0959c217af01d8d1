"""The `cumulo` command line."""

from __future__ import annotations

import os
import sys

import typer

from cumulo.cli import alerts, clusters, costs, deployments, jobs, pools, resources, secrets, server, tokens, workspaces
from cumulo.cli import monitor as monitor_cli
from cumulo.cli.render import JSON, console, emit_json, err, events_table, nodes_table
from cumulo.core.errors import CumuloError
from cumulo.sdk.client import Client
from cumulo.catalog import cli as catalog_cli
from cumulo.gateway import cli as gateway_cli
from cumulo.serving import cli as serving_cli
from cumulo.sim import cli as sim_cli

app = typer.Typer(
    help="cumulo: one control plane for AI workloads.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command()(server.up)
app.command()(server.down)
app.add_typer(jobs.app, name="job")
app.command()(deployments.deploy)
app.add_typer(deployments.app, name="deployment")
app.add_typer(resources.app, name="resources")
app.add_typer(tokens.app, name="token")
app.add_typer(secrets.app, name="secret")
app.add_typer(workspaces.app, name="workspace")
app.add_typer(clusters.app, name="cluster")
app.add_typer(pools.app, name="pool")
app.command("apply")(pools.apply)
app.command("cost")(costs.cost)
app.add_typer(alerts.app, name="alerts")
app.command("monitor")(monitor_cli.monitor)
app.add_typer(monitor_cli.node_app, name="node")


@app.callback()
def _global(
    workspace: str = typer.Option(None, "--workspace", "-w", envvar="CUMULO_WORKSPACE",
                                  help="act in this workspace (admins; others act in their token's)"),
) -> None:
    """cumulo: one control plane for AI workloads."""
    if workspace:
        os.environ["CUMULO_WORKSPACE"] = workspace
app.command("offers")(catalog_cli.offers)
catalog_app = typer.Typer(help="The offerings catalog (instance types and prices).", no_args_is_help=True)
catalog_app.command("refresh")(catalog_cli.refresh)
app.add_typer(catalog_app, name="catalog")
app.command("sim")(sim_cli.sim)
app.command("gateway")(gateway_cli.gateway)
app.command("serve")(serving_cli.serve)


@app.command()
def events(
    job: str = typer.Option(None, "--job", help="only this job's events"),
    limit: int = typer.Option(50, help="how many of the newest events"),
    json_: bool = JSON,
) -> None:
    """Recorded decisions and transitions, with their reasons."""
    with Client() as client:
        rows = client.events(kind="Job" if job else None, name=job, limit=limit)
    if json_:
        emit_json(rows)
    else:
        console.print(events_table(rows) if rows else "no events yet")


@app.command()
def nodes(cluster: str = typer.Option(None, "--cluster", "-c", help="only this cluster's nodes"),
          all_: bool = typer.Option(False, "--all", help="also the nodes an engine reports lost and machines that ended"),
          json_: bool = JSON) -> None:
    """Machines workloads run on, per cluster, with capacity and what is allocated."""
    with Client() as client:
        rows = client.nodes(cluster)
    if not all_:
        rows = [n for n in rows if not (n.engine_id and n.state == "Lost")
                and n.state not in ("Terminated", "Failed", "Preempted")]
    if json_:
        emit_json(rows)
    else:
        console.print(nodes_table(rows))


def main() -> None:
    try:
        app()
    except CumuloError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        for e in exc.errors:
            if e.get("field") and e["field"] not in str(exc):
                err.print(f"  {e['field']}: {e['message']}", highlight=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
