"""`cumulo workspace create | list | delete` (admin)."""

from __future__ import annotations

import typer
from rich.table import Table

from cumulo.cli.render import JSON, ago, console, emit_json
from cumulo.sdk.client import Client

app = typer.Typer(help="Workspaces: teams sharing one cumulo without seeing each other's work.",
                  no_args_is_help=True)


CPU = typer.Option(None, "--cpu", help="CPUs its running work may hold")
GPU = typer.Option(None, "--gpu", help="GPUs its running work may hold")
NODES = typer.Option(None, "--nodes", help="cloud nodes it may keep")
PRICE = typer.Option(None, "--max-price", help="$/hour its cloud nodes may cost together")
BUDGET = typer.Option(None, "--budget", help="$ it may spend per calendar month (UTC)")


def _quota(cpu, gpu, nodes, price, budget) -> dict:
    return {"cpu": cpu, "gpu": gpu, "nodes": nodes, "price_per_hour": price, "budget_per_month": budget}


@app.command()
def create(name: str = typer.Argument(..., help="lowercase letters, digits and '-'"),
           cpu: float = CPU, gpu: int = GPU, nodes: int = NODES, max_price: float = PRICE, budget: float = BUDGET,
           json_: bool = JSON) -> None:
    """Create a workspace; give its members tokens with `cumulo token create NAME --workspace W`."""
    with Client() as client:
        w = client.create_workspace(name, quota=_quota(cpu, gpu, nodes, max_price, budget))
    if json_:
        emit_json(w)
    else:
        console.print(f"workspace {w.name} created; next: `cumulo token create <who> --workspace {w.name} --role member`")


@app.command("list")
def list_(json_: bool = JSON) -> None:
    """Every workspace, with how many jobs and deployments it holds."""
    with Client() as client:
        rows = client.workspaces()
    if json_:
        emit_json(rows)
        return
    table = Table("NAME", "JOBS", "DEPLOYMENTS", "QUOTA", "SPENT THIS MONTH", "CREATED")
    for w in rows:
        quota = ", ".join(f"{k}={v:g}" for k, v in w.quota.items()) or "none"
        table.add_row(w.name, str(w.jobs), str(w.deployments), quota, f"${w.spent_this_month:,.2f}", ago(w.created_at))
    console.print(table)


@app.command()
def delete(name: str = typer.Argument(...)) -> None:
    """Delete an empty workspace (its tokens and secrets go with it)."""
    with Client() as client:
        client.delete_workspace(name)
    console.print(f"workspace {name} deleted")


@app.command()
def quota(name: str = typer.Argument(...), cpu: float = CPU, gpu: int = GPU, nodes: int = NODES,
          max_price: float = PRICE, budget: float = BUDGET, json_: bool = JSON) -> None:
    """Set a workspace's limits (every limit not given is removed)."""
    with Client() as client:
        w = client.set_quota(name, **_quota(cpu, gpu, nodes, max_price, budget))
    if json_:
        emit_json(w)
    else:
        console.print(f"workspace {w.name}: quota " + (", ".join(f"{k}={v:g}" for k, v in w.quota.items()) or "none"))
