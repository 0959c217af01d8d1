"""`cumulo workspace create | list | delete` (admin)."""

from __future__ import annotations

import typer
from rich.table import Table

from cumulo.cli.render import ago, console, emit_json
from cumulo.sdk.client import Client

app = typer.Typer(help="Workspaces: teams sharing one cumulo without seeing each other's work.",
                  no_args_is_help=True)
JSON = typer.Option(False, "--json", help="print JSON for scripts")


@app.command()
def create(name: str = typer.Argument(..., help="lowercase letters, digits and '-'"), json_: bool = JSON) -> None:
    """Create a workspace; give its members tokens with `cumulo token create NAME --workspace W`."""
    with Client() as client:
        w = client.create_workspace(name)
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
    table = Table("NAME", "JOBS", "DEPLOYMENTS", "CREATED")
    for w in rows:
        table.add_row(w.name, str(w.jobs), str(w.deployments), ago(w.created_at))
    console.print(table)


@app.command()
def delete(name: str = typer.Argument(...)) -> None:
    """Delete an empty workspace (its tokens and secrets go with it)."""
    with Client() as client:
        client.delete_workspace(name)
    console.print(f"workspace {name} deleted")
