"""`cumulo resources create|list|release`: machines from the clouds, placed at the lowest price."""

from __future__ import annotations

import typer
from rich.table import Table

from cumulo.cli.render import JSON, ago, console, emit_json, err
from cumulo.core.views import NodeDetail
from cumulo.sdk.resources import ResourceManager

app = typer.Typer(help="Machines from AWS (and this one), placed at the lowest price that fits.", no_args_is_help=True)
NODE_STYLE = {"Provisioning": "cyan", "Ready": "green", "Terminating": "magenta", "Terminated": "dim",
              "Failed": "red", "Preempted": "yellow"}


def _table(nodes: list[NodeDetail]) -> Table:
    show_reason = any(n.state != "Ready" for n in nodes)
    t = Table(box=None, header_style="bold")
    cols = ["ID", "STATE", "PROVIDER", "TYPE", "ZONE", "MARKET", "$/H", "COST $", "MACHINE", "AGE"]
    for col in cols + (["REASON"] if show_reason else []):
        t.add_column(col, overflow="fold" if col == "REASON" else "ellipsis",
                     no_wrap=col in ("ID", "TYPE", "ZONE", "MACHINE"))
    for n in nodes:
        row = [n.id, f"[{NODE_STYLE.get(n.state, 'white')}]{n.state}[/]", n.provider, n.instance_type or "-",
               n.zone or n.region or "-", "spot" if n.spot else "on-demand", f"{n.price_per_hour:.3f}",
               f"{n.cost:.4f}", n.machine_id or "-", ago(n.created_at)]
        t.add_row(*row, *([n.reason] if show_reason else []))
    return t


@app.command()
def create(
    instance_type: str = typer.Argument(..., help="e.g. g4dn.xlarge"),
    count: int = typer.Option(1, "--count", "-n", min=1, max=1000, help="how many machines"),
    provider: list[str] = typer.Option(None, "--provider", help="allowed providers (default: any)"),
    region: list[str] = typer.Option(None, "--region", help="allowed regions (default: any)"),
    spot: bool = typer.Option(False, "--spot", help="allow spot capacity when it is cheaper"),
    max_price: float = typer.Option(None, help="$/hour per machine at most"),
    idle_ttl: float = typer.Option(None, help="release a node after this many seconds"),
    cluster: str = typer.Option(None, "--cluster", help="a Ray cluster the machines join (ready once joined)"),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="wait until every machine is ready"),
    timeout: float = typer.Option(600.0, help="with --wait: seconds"),
    json_: bool = JSON,
) -> None:
    """Provision COUNT machines of INSTANCE_TYPE; a batch that fails part way is rolled back."""
    rm = ResourceManager()
    kwargs = dict(count=count, provider=provider or None, regions=region or None, spot=spot, max_price=max_price,
                  idle_ttl=idle_ttl, cluster=cluster, wait=False)
    nodes = rm.create_resources(instance_type, **kwargs)
    if wait:
        pool_id = nodes[0].pool or ""
        with console.status(f"provisioning {count} x {instance_type} ..."):
            nodes = rm.wait_pool(pool_id, timeout=timeout).nodes
    if json_:
        emit_json(nodes)
    else:
        console.print(_table(nodes))


@app.command("list")
def list_(all_: bool = typer.Option(False, "--all", help="include ended nodes"), json_: bool = JSON) -> None:
    """Nodes with their state, price and the cost accrued so far."""
    nodes = ResourceManager().list(all=all_)
    if json_:
        emit_json(nodes)
    elif not nodes:
        console.print("no nodes; create some with `cumulo resources create TYPE --count N`")
    else:
        console.print(_table(nodes))
        total = sum(n.cost for n in nodes)
        err.print(f"[dim]{len(nodes)} nodes, ${sum(n.price_per_hour for n in nodes if n.state == 'Ready'):.3f}/h now, "
                  f"${total:.4f} so far[/]")


@app.command()
def release(ids: list[str] = typer.Argument(..., help="node ids"), json_: bool = JSON) -> None:
    """Terminate nodes."""
    nodes = ResourceManager().release(*ids)
    if json_:
        emit_json(nodes)
    else:
        for n in nodes:
            err.print(f"node [bold]{n.id}[/] {n.state}")
