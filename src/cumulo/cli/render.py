"""Output for people (Rich) and for scripts (--json, a stable shape)."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from cumulo.core.units import format_memory
from cumulo.core.views import EventView, JobView, NodeView

console = Console()
err = Console(stderr=True)

#: `--json` on every read command
JSON = typer.Option(False, "--json", help="print JSON for scripts")

STATE_STYLE = {
    "Pending": "yellow", "Starting": "cyan", "Running": "blue",
    "Succeeded": "green", "Failed": "red", "Cancelled": "magenta",
}


def emit_json(obj: BaseModel | list[BaseModel] | dict[str, Any]) -> None:
    if isinstance(obj, list):
        data: Any = [o.model_dump(mode="json") for o in obj]
    elif isinstance(obj, BaseModel):
        data = obj.model_dump(mode="json")
    else:
        data = obj
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def state(s: str) -> str:
    return f"[{STATE_STYLE.get(s, 'white')}]{s}[/]"


def ago(t: datetime | None) -> str:
    if t is None:
        return "-"
    secs = (datetime.now(UTC) - t).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs / size:.0f}{unit} ago"
    return f"{max(secs, 0):.0f}s ago"


def duration(start: datetime | None, end: datetime | None) -> str:
    if start is None:
        return "-"
    secs = ((end or datetime.now(UTC)) - start).total_seconds()
    return f"{secs / 60:.1f}m" if secs >= 120 else f"{secs:.1f}s"


def fmt_metrics(metrics: dict[str, float], limit: int = 4) -> str:
    items = list(metrics.items())[:limit]
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in items) or "-"


def jobs_table(jobs: list[JobView]) -> Table:
    t = Table(box=None, header_style="bold")
    for col in ("NAME", "STATE", "ATTEMPTS", "EXIT", "AGE", "METRICS", "REASON"):
        t.add_column(col, overflow="fold" if col == "REASON" else "ellipsis")
    for j in jobs:
        t.add_row(j.name, state(j.state), str(j.attempts), "-" if j.exit_code is None else str(j.exit_code),
                  ago(j.created_at), fmt_metrics(j.metrics), j.reason)
    return t


def job_detail(j: JobView) -> None:
    console.print(f"[bold]{j.name}[/]  {state(j.state)}  {j.reason}")
    rows = [
        ("command", j.spec.command if isinstance(j.spec.command, str) else " ".join(j.spec.command)),
        ("workers", f"{j.spec.workers} x {j.spec.resources.cpu:g} CPU, {format_memory(j.spec.resources.memory)}"
                    + (f", {j.spec.resources.gpu} GPU" if j.spec.resources.gpu else "")),
        ("cluster", (j.cluster or j.spec.cluster or "not placed yet")
                    + (f" ({j.spec.placement})" if j.spec.workers > 1 else "")),
        ("attempts", f"{j.attempts} of {j.spec.max_retries + 1}"),
        ("exit code", "-" if j.exit_code is None else str(j.exit_code)),
        ("running for" if not j.state.terminal else "ran for", duration(j.started_at, j.finished_at)),
        ("artifacts", j.artifacts),
    ]
    p = j.progress
    if p is not None and p.step is not None:
        done = f"step {p.step}" + (f" of {p.total_steps} ({p.fraction * 100:.1f}%)" if p.total_steps and p.fraction is not None else "")
        if p.steps_per_second is not None:
            done += f", {p.steps_per_second:.3g} steps/s"
        if p.eta_seconds is not None:
            done += f", ETA {_eta(p.eta_seconds)}"
        if p.since_report is not None and not j.state.terminal:
            done += f" (last report {p.since_report:.0f}s ago)"
        rows.append(("progress", done))
    if j.cpu_percent is not None:
        rows.append(("processes", f"CPU {j.cpu_percent:.0f}%  memory {format_memory(j.memory_bytes or 0)}"))
    if j.metrics:
        rows.append(("metrics", fmt_metrics(j.metrics, limit=20)))
    t = Table(box=None, show_header=False)
    t.add_column(style="dim")
    t.add_column()
    for k, v in rows:
        t.add_row(k, v)
    console.print(t)
    if j.attempt_list:
        a = Table(box=None, header_style="bold", title="attempts", title_justify="left")
        for col in ("#", "STATE", "EXIT", "STARTED", "DURATION", "PIDS", "REASON"):
            a.add_column(col)
        for at in j.attempt_list:
            pids = ",".join(str(w.pid) for w in at.workers if w.pid) or "-"
            a.add_row(str(at.number), state(at.state), "-" if at.exit_code is None else str(at.exit_code),
                      ago(at.started_at), duration(at.started_at, at.finished_at), pids, at.reason)
        console.print(a)
        last = j.attempt_list[-1]
        if last.workers and any(w.address or w.node_id for w in last.workers):
            w_t = Table(box=None, header_style="bold", title=f"workers of attempt {last.number}", title_justify="left")
            for col in ("RANK", "NODE", "NODE ID", "PID", "CPU %", "MEMORY", "EXIT"):
                w_t.add_column(col)
            for w in last.workers:
                w_t.add_row(str(w.rank), w.address or "-", (w.node_id or "-")[:16], str(w.pid or "-"),
                            "-" if w.cpu_percent is None else f"{w.cpu_percent:.0f}",
                            "-" if w.memory_bytes is None else format_memory(w.memory_bytes),
                            "-" if w.exit_code is None else str(w.exit_code))
            console.print(w_t)


def _eta(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def events_table(events: list[EventView]) -> Table:
    t = Table(box=None, header_style="bold")
    for col in ("TIME", "KIND", "NAME", "TYPE", "REASON", "MESSAGE"):
        t.add_column(col, overflow="fold" if col == "MESSAGE" else "ellipsis")
    for e in events:
        style = "yellow" if e.type == "Warning" else ""
        t.add_row(e.time.astimezone().strftime("%H:%M:%S"), e.kind, e.name, f"[{style}]{e.type}[/]" if style else e.type,
                  e.reason, e.message)
    return t


def nodes_table(nodes: list[NodeView]) -> Table:
    """One row per node; an engine's node shows its address and GPU type, not cumulo's allocation
    (the engine places work on it; `cumulo cluster status` shows the cluster's share)."""
    t = Table(box=None, header_style="bold")
    for col in ("CLUSTER", "NAME", "PROVIDER", "STATE", "ADDRESS", "MACHINE", "CPU (used/total)", "MEMORY (used/total)",
                "GPU (used/total)", "LABELS"):
        t.add_column(col, overflow="fold" if col == "LABELS" else "ellipsis")
    for n in nodes:
        engine = n.engine_id is not None
        gpu_type = f" {n.gpu_names[0]}" if n.gpu_names else ""
        t.add_row(n.cluster, n.name, n.provider, (n.state if not n.reason else f"{n.state} ({n.reason})") + (f", cordoned: {n.cordoned}" if n.cordoned else ""),
                  n.address or "-",
                  f"{n.instance_type} {n.zone or ''} {'spot' if n.spot else 'on-demand'} ${n.price_per_hour:.3f}/h"
                  if n.instance_type else "-",
                  f"{n.cpu:g}" if engine else f"{n.allocated_cpu:g}/{n.cpu:g}",
                  format_memory(n.memory_bytes) if engine
                  else f"{format_memory(n.allocated_memory_bytes)}/{format_memory(n.memory_bytes)}",
                  (f"{len(n.gpus)}" if engine else f"{len(n.allocated_gpus)}/{len(n.gpus)}") + gpu_type,
                  ", ".join(f"{k}={v}" for k, v in sorted(n.labels.items())) or "-")
    return t
