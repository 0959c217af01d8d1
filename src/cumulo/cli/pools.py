"""`cumulo pool list | status | delete` and `cumulo apply FILE`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from cumulo.cli.render import JSON, ago, console, emit_json
from cumulo.core.views import NodePoolView
from cumulo.sdk.client import Client

app = typer.Typer(help="Node pools: a cluster's elastic capacity (`kind: NodePool`, created with `cumulo apply`).",
                  no_args_is_help=True)


def _limits(spec: dict) -> str:
    parts = [f"{spec.get('min_nodes', 0)}-{spec.get('max_nodes')} nodes"]
    if spec.get("max_price_per_hour") is not None:
        parts.append(f"<= ${spec['max_price_per_hour']:g}/h")
    if spec.get("budget_per_month") is not None:
        parts.append(f"${spec['budget_per_month']:g}/month")
    parts.append(f"idle {spec.get('idle_ttl', 0):g}s")
    return ", ".join(parts)


def _table(rows: list[NodePoolView]) -> Table:
    t = Table(box=None, header_style="bold")
    for col in ("NAME", "CLUSTER", "STATE", "NODES", "$/H", "THIS MONTH", "LIMITS", "LAST DECISION"):
        t.add_column(col, overflow="fold" if col == "LAST DECISION" else "ellipsis")
    for p in rows:
        spent = f"${p.spent_month:,.2f}" if p.spent_month >= 1 else f"${p.spent_month:.4f}"
        t.add_row(p.name, p.cluster, p.state, str(p.nodes_up), f"{p.price_per_hour:.3f}", spent, _limits(p.spec),
                  p.reason or "-")
    return t


@app.command("list")
def list_(json_: bool = JSON) -> None:
    """Every node pool: its machines, what they cost, its limits and its last decision."""
    with Client() as client:
        rows = client.node_pools()
    if json_:
        emit_json(rows)
    else:
        console.print(_table(rows) if rows else "no node pools yet (`cumulo apply pool.yaml`)")


@app.command()
def status(name: str = typer.Argument(...), json_: bool = JSON) -> None:
    """One node pool: its machines (ended ones too), and what it does about each waiting workload."""
    with Client() as client:
        p = client.node_pool(name)
    if json_:
        emit_json(p)
        return
    console.print(_table([p]))
    t = Table(box=None, header_style="bold")
    for col in ("NODE", "STATE", "TYPE", "WHERE", "SPOT", "$/H", "COST", "CREATED", "REASON"):
        t.add_column(col, overflow="fold" if col == "REASON" else "ellipsis")
    for n in p.nodes:
        t.add_row(n.id, n.state, n.instance_type or "-", f"{n.provider} {n.zone or n.region or ''}",
                  "yes" if n.spot else "no", f"{n.price_per_hour:.3f}", f"${n.cost:,.4f}", ago(n.created_at),
                  n.reason or "-")
    console.print(t if p.nodes else "no machines")
    for key, note in sorted(p.notes.items()):
        console.print(f"  {key}: {note}")


@app.command()
def delete(name: str = typer.Argument(...)) -> None:
    """Release the pool's machines; the pool goes once they have ended."""
    with Client() as client:
        p = client.delete_node_pool(name)
    console.print(f"node pool {name} deleting: releasing {p.nodes_up} machine(s)")


def apply(file: Path = typer.Argument(..., help="a YAML file; several documents (---) allowed, any kind"),
          json_: bool = JSON) -> None:
    """Create or update what a spec file describes: Job, Deployment, NodePool, AlertRule (node pools first)."""
    with Client() as client:
        results = client.apply(file)
    if json_:
        emit_json(results)
        return
    for r in results:
        extra = f" ({', '.join(r.changed)})" if r.changed else ""
        console.print(f"{r.kind.lower()}/{r.name} {r.action}{extra}")
