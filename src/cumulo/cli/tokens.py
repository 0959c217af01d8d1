"""`cumulo token create | list | revoke` (admin)."""

from __future__ import annotations

import typer
from rich.table import Table

from cumulo.cli.render import JSON, ago, console, emit_json
from cumulo.sdk.client import Client

app = typer.Typer(help="API tokens: who may call this control plane, in which workspace, with which role.",
                  no_args_is_help=True)


@app.command()
def create(
    name: str = typer.Argument(..., help="who or what holds it (shown in audit events)"),
    role: str = typer.Option("member", help="admin, member, viewer, or metrics (reads /metrics only: Prometheus)"),
    workspace: str = typer.Option("default", help="the workspace it is scoped to"),
    expires: str = typer.Option(None, help="lifetime, e.g. 30d or 12h (default: never)"),
    deployment: str = typer.Option(None, "--deployment", help="a token for this deployment's /d/ routes only "
                                   "(its spec sets `auth: token`); no API access"),
    json_: bool = JSON,
) -> None:
    """Create a token and print it: this is the only time its value is shown."""
    with Client() as client:
        t = client.create_token(name, role=role, workspace=workspace, expires=expires, deployment=deployment)
    if json_:
        emit_json(t)
        return
    what = f"for deployment {t.deployment}" if t.deployment else f"{t.role}"
    console.print(f"token {t.id} ({what} of workspace {t.workspace}"
                  + (f", expires {t.expires_at:%Y-%m-%d %H:%M} UTC" if t.expires_at else "") + "):")
    console.print(t.token, highlight=False, soft_wrap=True)
    console.print("[dim]store it now: it is never shown again. Use it as CUMULO_TOKEN=... or "
                  "`Authorization: Bearer ...`[/]")


@app.command("list")
def list_(workspace: str = typer.Option(None, help="only this workspace's tokens"), json_: bool = JSON) -> None:
    """Every token (never their values)."""
    with Client() as client:
        rows = client.tokens(workspace=workspace)
    if json_:
        emit_json(rows)
        return
    table = Table("ID", "NAME", "WORKSPACE", "ROLE", "CREATED", "EXPIRES", "STATE")
    for t in rows:
        table.add_row(t.id, t.name, t.workspace, f"invoke {t.deployment}" if t.deployment else t.role, ago(t.created_at),
                      f"{t.expires_at:%Y-%m-%d %H:%M}" if t.expires_at else "never",
                      "revoked" if t.revoked_at else "active")
    console.print(table)


@app.command()
def revoke(token_id: str = typer.Argument(..., help="the token's id (`cumulo token list`)"), json_: bool = JSON) -> None:
    """Revoke a token: every request with it is refused from now on."""
    with Client() as client:
        t = client.revoke_token(token_id)
    if json_:
        emit_json(t)
    else:
        console.print(f"token {t.id} ({t.name}) revoked")
