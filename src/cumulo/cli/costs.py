"""`cumulo cost`: what work cost."""

from __future__ import annotations

import typer
from rich.table import Table

from cumulo.cli.render import JSON, console, emit_json
from cumulo.sdk.client import Client


def cost(
    by: str = typer.Option("workspace", "--by", help="workspace, job, deployment or node"),
    since: str = typer.Option(None, "--since", help="start date, e.g. 2026-11-01 (default: the 1st of this month)"),
    all_: bool = typer.Option(False, "--all", help="every workspace (admin)"),
    json_: bool = JSON,
) -> None:
    """What work cost: cloud nodes at their price, work on this machine at its share of
    `cumulo up --local-price`."""
    with Client() as client:
        report = client.costs(by=by, since=since, all_workspaces=all_)
    if json_:
        emit_json(report)
        return
    table = Table(by.upper(), "WORKSPACE", "COST", "$/H NOW", title=f"since {report.since:%Y-%m-%d %H:%M} UTC")
    for line in report.lines:
        table.add_row(line.key, line.workspace, f"${line.cost:,.4f}", f"${line.price_per_hour:,.4f}")
    console.print(table if report.lines else f"nothing cost anything since {report.since:%Y-%m-%d %H:%M} UTC")
    console.print(f"total ${report.total:,.4f}")
