"""`cumulo alerts [--all] [--json]`, `cumulo alerts rules`, `cumulo alerts delete-rule NAME`.

Rules are applied with `cumulo apply FILE` (`kind: AlertRule`) or the SDK's `apply_alert_rule`."""

from __future__ import annotations

import typer
from rich.table import Table

from cumulo.cli.render import JSON, ago, console, emit_json
from cumulo.core.views import AlertRuleView, AlertView
from cumulo.sdk.client import Client

app = typer.Typer(help="Alerts: firing and resolved, with their evidence; alert rules.", invoke_without_command=True)
SEVERITY_STYLE = {"critical": "red", "warning": "yellow", "info": "cyan"}
STATE_STYLE = {"firing": "red", "pending": "yellow", "resolved": "green"}


@app.callback()
def alerts(
    ctx: typer.Context,
    all_: bool = typer.Option(False, "--all", help="also pending and resolved alerts (newest first)"),
    limit: int = typer.Option(100, help="at most this many"),
    json_: bool = JSON,
) -> None:
    """Firing alerts (`--all`: pending and resolved too), each with what made it fire."""
    if ctx.invoked_subcommand is not None:
        return
    with Client() as client:
        rows = client.alerts(states=["pending", "firing", "resolved"] if all_ else None, limit=limit)
    if json_:
        emit_json(rows)
    elif not rows:
        console.print("no alerts firing" + ("" if all_ else " (`cumulo alerts --all` shows resolved ones)"))
    else:
        console.print(alerts_table(rows))


def alerts_table(rows: list[AlertView]) -> Table:
    t = Table(box=None, header_style="bold")
    for col in ("STATE", "SEVERITY", "RULE", "ON", "SINCE", "SUMMARY"):
        t.add_column(col, overflow="fold" if col == "SUMMARY" else "ellipsis")
    for a in rows:
        on = f"{a.target} {a.object}" + (f"/{a.instance}" if a.instance else "")
        since = ago(a.resolved_at if a.state == "resolved" else a.fired_at or a.started_at)
        summary = a.summary + (f" [dim](resolved: {a.evidence['resolved']})[/]" if a.evidence.get("resolved") else "")
        if a.notify_error:
            summary += f" [red](webhook: {a.notify_error})[/]"
        t.add_row(f"[{STATE_STYLE.get(a.state, 'white')}]{a.state}[/]",
                  f"[{SEVERITY_STYLE.get(a.severity, 'white')}]{a.severity}[/]", a.rule, on, since, summary)
    return t


@app.command()
def rules(json_: bool = JSON) -> None:
    """The workspace's alert rules and how many of their alerts fire now."""
    with Client() as client:
        rows = client.alert_rules()
    if json_:
        emit_json(rows)
    elif not rows:
        console.print("no alert rules (apply one with `cumulo apply rule.yaml`, `kind: AlertRule`)")
    else:
        console.print(rules_table(rows))


def rules_table(rows: list[AlertRuleView]) -> Table:
    t = Table(box=None, header_style="bold")
    for col in ("NAME", "ON", "METRIC", "THRESHOLD", "FOR", "SEVERITY", "FIRING", "PENDING"):
        t.add_column(col)
    for r in rows:
        s = r.spec
        th = s.get("threshold", {})
        cond = f"> {th['above']:g}" if th.get("above") is not None else f"< {th['below']:g}"
        t.add_row(r.name, f"{s['target']} {s.get('object', '*')}", s["metric"], cond, f"{s.get('for', 0):g}s",
                  s.get("severity", "warning"), str(r.firing), str(r.pending))
    return t


@app.command("delete-rule")
def delete_rule(name: str = typer.Argument(..., help="the rule's name")) -> None:
    """Delete an alert rule; its open alerts resolve."""
    with Client() as client:
        client.delete_alert_rule(name)
    console.print(f"alert rule {name} deleted")
