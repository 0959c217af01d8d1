"""`cumulo secret create | list | delete | rotate-key`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from cumulo.cli.render import JSON, ago, console, emit_json
from cumulo.core.errors import InvalidSpec
from cumulo.sdk.client import Client

app = typer.Typer(help="Secrets: encrypted at rest, given to workloads through `env: {VAR: {secret: NAME}}`.",
                  no_args_is_help=True)


@app.command()
def create(
    name: str = typer.Argument(..., help="lowercase letters, digits and '-'"),
    from_literal: str = typer.Option(None, "--from-literal", help="the value (it may end up in your shell history)"),
    from_file: Path = typer.Option(None, "--from-file", help="read the value from this file"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace the value of an existing secret"),
    json_: bool = JSON,
) -> None:
    """Store a secret. Running workloads keep the value they started with."""
    if (from_literal is None) == (from_file is None):
        raise InvalidSpec("give the value with exactly one of --from-literal VALUE or --from-file PATH")
    if from_file is not None:
        try:
            value = from_file.read_text()
        except OSError as exc:
            raise InvalidSpec(f"--from-file: cannot read {from_file}: {exc.strerror}") from None
    else:
        value = from_literal
    with Client() as client:
        s = client.create_secret(name, value, overwrite=overwrite)
    if json_:
        emit_json(s)
    else:
        console.print(f"secret {s.name} stored; use it as `env: {{VAR: {{secret: {s.name}}}}}`")


@app.command("list")
def list_(json_: bool = JSON) -> None:
    """Secret names and dates (never their values)."""
    with Client() as client:
        rows = client.secrets()
    if json_:
        emit_json(rows)
        return
    table = Table("NAME", "CREATED", "UPDATED")
    for s in rows:
        table.add_row(s.name, ago(s.created_at), ago(s.updated_at))
    console.print(table if rows else "no secrets yet")


@app.command()
def delete(name: str = typer.Argument(...)) -> None:
    """Delete a secret (refused while a live job or a deployment uses it)."""
    with Client() as client:
        client.delete_secret(name)
    console.print(f"secret {name} deleted")


@app.command("rotate-key")
def rotate_key(json_: bool = JSON) -> None:
    """Seal every secret with a new key (admin). Old keys stay in the key file to decrypt; with
    CUMULO_SECRET_KEY, put the new key first there and restart, then run this to re-seal."""
    with Client() as client:
        n = client.rotate_secret_key()
    if json_:
        emit_json({"resealed": n})
    else:
        console.print(f"{n} secret(s) re-sealed with the new key")
