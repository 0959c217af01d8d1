"""`cumulo monitor` (a live view of everything) and the sampled series behind
`cumulo job|deployment|node metrics`."""

from __future__ import annotations

import time

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from cumulo.cli.render import JSON, ago, console, emit_json, state
from cumulo.core.units import format_memory
from cumulo.core.views import MonitorOverview, SeriesReport
from cumulo.sdk.client import Client

SINCE = typer.Option(None, "--since", help="start: a duration back from now (15m, 2h, 1d) or an ISO time; default 1h")
UNTIL = typer.Option(None, "--until", help="end: 'now' (default), a duration back from now, or an ISO time")
STEP = typer.Option(None, "--step", min=1, max=86400, help="seconds per point (default: ~300 points over the range)")
METRIC = typer.Option(None, "--metric", help="only this metric")

SPARK = "▁▂▃▄▅▆▇█"


def fmt(metric: str, value: float | None) -> str:
    """A value for people, by the unit its name ends with."""
    if value is None:
        return "-"
    if metric.endswith("_bytes"):
        return format_memory(value)
    if metric.endswith("_percent"):
        return f"{value:.1f}%"
    if metric.endswith("_seconds") and "eta" not in metric and "since" not in metric:
        return f"{value * 1000:.1f}ms" if value < 1 else f"{value:.2f}s"
    if metric in ("eta_seconds", "seconds_since_report"):
        return fmt_duration(value)
    if metric in ("error_rate", "progress"):
        return f"{value * 100:.1f}%"
    return f"{value:.4g}"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def sparkline(values: list[float], width: int = 30) -> str:
    if not values:
        return ""
    if len(values) > width:  # the newest `width` buckets' worth, averaged
        size = len(values) / width
        values = [sum(values[int(i * size):max(int((i + 1) * size), int(i * size) + 1)])
                  / max(int((i + 1) * size) - int(i * size), 1) for i in range(width)]
    lo, hi = min(values), max(values)
    if hi == lo:
        return SPARK[0] * len(values)
    return "".join(SPARK[min(int((v - lo) / (hi - lo) * (len(SPARK) - 1) + 0.5), len(SPARK) - 1)] for v in values)


def series_table(report: SeriesReport, object_label: str, instance_label: str) -> Table:
    t = Table(box=None, header_style="bold",
              title=f"{report.since.astimezone():%Y-%m-%d %H:%M:%S} to {report.until.astimezone():%H:%M:%S}, "
                    f"{report.step}s per point", title_justify="left")
    cols = ([object_label] if report.object is None else []) + [instance_label, "METRIC", "LATEST", "MEAN", "MAX", "TREND"]
    for col in cols:
        t.add_column(col, no_wrap=col == "TREND")
    for s in report.series:
        if not s.points:
            continue
        means = [p[1] for p in s.points]
        weights = len(means)
        row = ([s.object] if report.object is None else []) + [
            s.instance or "-", s.metric, fmt(s.metric, means[-1]), fmt(s.metric, sum(means) / weights),
            fmt(s.metric, max(p[2] for p in s.points)), sparkline(means)]
        t.add_row(*row)
    return t


def show_series(report: SeriesReport, json_: bool, object_label: str, instance_label: str) -> None:
    if json_:
        emit_json(report)
    elif not any(s.points for s in report.series):
        console.print("no samples in this range yet (the control plane samples every few seconds; try --since 1h)")
    else:
        console.print(series_table(report, object_label, instance_label))


# -- cumulo node metrics ----------------------------------------------------------------------------
node_app = typer.Typer(help="Nodes: the machines workloads run on (`cumulo nodes` lists them).", no_args_is_help=True)


@node_app.command("metrics")
def node_metrics(name: str = typer.Argument(None, help="a node (default: every node)"), since: str = SINCE,
                 until: str = UNTIL, step: int = STEP, metric: str = METRIC, json_: bool = JSON) -> None:
    """Sampled series of a node (CPU, memory; each GPU's utilization, memory, temperature, ECC and
    XID errors; an engine node's free and total)."""
    with Client() as client:
        report = client.node_series(name, since=since, until=until, step=step, metric=metric)
    show_series(report, json_, "NODE", "GPU")


# -- cumulo monitor ---------------------------------------------------------------------------------
def frame(o: MonitorOverview) -> Group:
    """One screen of `cumulo monitor`."""
    parts: list = []
    sampled = f"sampled {ago(o.sampled_at)}" if o.sampled_at else "no sample yet"
    parts.append(Text.from_markup(f"[bold]cumulo monitor[/]  {o.time.astimezone():%H:%M:%S}  "
                                  f"[dim]{sampled}, every {o.interval:g}s[/]"))
    n = Table(box=None, header_style="bold", title="nodes", title_justify="left", title_style="bold cyan")
    for col in ("NODE", "CLUSTER", "STATE", "CPU", "MEMORY", "GPUS"):
        n.add_column(col)
    for node in o.nodes:
        v = node.values
        if "cpu_percent" in v:
            cpu = fmt("cpu_percent", v["cpu_percent"])
            mem = f"{format_memory(v.get('memory_used_bytes', 0))}/{format_memory(v.get('memory_total_bytes', 0))}"
        elif "cpu_total" in v:
            cpu = f"{v.get('cpu_free', float('nan')):g}/{v['cpu_total']:g} free" if "cpu_free" in v else f"{v['cpu_total']:g}"
            mem = (f"{format_memory(v['memory_free_bytes'])}/{format_memory(v.get('memory_total_bytes', 0))} free"
                   if "memory_free_bytes" in v else format_memory(v.get("memory_total_bytes", 0)))
        else:
            cpu = mem = "-"
        gpus = "  ".join(
            f"{g}: {g_v.get('gpu_utilization_percent', 0):.0f}% "
            f"{format_memory(g_v.get('gpu_memory_used_bytes', 0))} {g_v.get('gpu_temperature_celsius', 0):.0f}C"
            + (f" [red]xid {g_v['gpu_xid_errors']:.0f}[/]" if g_v.get("gpu_xid_errors") else "")
            + (f" [red]ecc {g_v['gpu_ecc_errors_uncorrected']:.0f}[/]" if g_v.get("gpu_ecc_errors_uncorrected") else "")
            for g, g_v in node.gpus.items()) or "-"
        n.add_row(node.name, node.cluster, node.state, cpu, mem, gpus)
    parts.append(n)
    j = Table(box=None, header_style="bold", title="jobs", title_justify="left", title_style="bold cyan")
    for col in ("JOB", "STATE", "STEP", "PROGRESS", "STEPS/S", "LOSS", "ETA", "CPU", "MEMORY", "REASON"):
        j.add_column(col, overflow="ellipsis", no_wrap=col != "REASON", max_width=60 if col == "REASON" else None)
    for job in o.jobs:
        step = "-" if job.step is None else (f"{job.step}/{job.total_steps}" if job.total_steps else str(job.step))
        j.add_row(job.name, state(job.state), step, bar(job.progress), fmt("x", job.steps_per_second),
                  fmt("x", job.loss), fmt_duration(job.eta_seconds), fmt("cpu_percent", job.cpu_percent),
                  fmt("memory_bytes", job.memory_bytes), job.reason)
    parts.append(j if o.jobs else Text("jobs: none", style="dim"))
    d = Table(box=None, header_style="bold", title="deployments", title_justify="left", title_style="bold cyan")
    for col in ("DEPLOYMENT", "STATE", "REPLICAS", "REQ/S", "P50", "P99", "ERRORS", "IN FLIGHT", "CPU", "MEMORY"):
        d.add_column(col)
    for dep in o.deployments:
        d.add_row(dep.name, dep.state, f"{dep.ready}/{dep.desired}", fmt("x", dep.request_rate),
                  fmt("latency_seconds", dep.latency_p50_seconds), fmt("latency_seconds", dep.latency_p99_seconds),
                  fmt("error_rate", dep.error_rate), fmt("x", dep.in_flight), fmt("cpu_percent", dep.cpu_percent),
                  fmt("memory_bytes", dep.memory_bytes))
    parts.append(d if o.deployments else Text("deployments: none", style="dim"))
    parts.append(Text.from_markup("[bold cyan]firing alerts[/]"))
    if not o.alerts.available:
        parts.append(Text(f"  ({o.alerts.note})", style="dim"))
    elif not o.alerts.firing:
        parts.append(Text("  none", style="green"))
    else:
        for a in o.alerts.firing:
            on = f"{a.get('target', '')} {a.get('object', '')}".strip()
            parts.append(Text.from_markup(f"  [red]{a.get('severity', 'alert')}[/] {a.get('rule', '')} ({on}): "
                                          f"{a.get('summary') or ''}", emoji=False))
    e = Table(box=None, header_style="bold", title="latest events", title_justify="left", title_style="bold cyan")
    for col in ("AGE", "KIND", "NAME", "REASON", "MESSAGE"):
        e.add_column(col, overflow="ellipsis", no_wrap=col != "MESSAGE")
    for ev in o.events:
        e.add_row(ago(ev.time), ev.kind, ev.name, f"[yellow]{ev.reason}[/]" if ev.type == "Warning" else ev.reason,
                  ev.message)
    parts.append(e if o.events else Text("latest events: none", style="dim"))
    return Group(*parts)


def bar(fraction: float | None, width: int = 12) -> str:
    if fraction is None:
        return "-"
    filled = int(round(max(0.0, min(fraction, 1.0)) * width))
    return f"{'█' * filled}{'░' * (width - filled)} {fraction * 100:.0f}%"


def monitor(once: bool = typer.Option(False, "--once", help="print one frame and exit"),
            refresh: float = typer.Option(2.0, "--refresh", min=0.2, max=3600, help="seconds between refreshes"),
            events: int = typer.Option(10, "--events", min=1, max=100, help="how many of the newest events"),
            json_: bool = JSON) -> None:
    """A live view of nodes, jobs (step, steps/s, loss, ETA), deployments (req/s, p99, errors),
    firing alerts and the latest events, refreshing in place (Ctrl-C to leave)."""
    with Client() as client:
        if json_:
            emit_json(client.monitor(events=events))
            return
        if once:
            console.print(frame(client.monitor(events=events)))
            return
        try:
            with Live(frame(client.monitor(events=events)), console=console, screen=False, auto_refresh=False) as live:
                while True:
                    time.sleep(refresh)
                    live.update(frame(client.monitor(events=events)), refresh=True)
        except KeyboardInterrupt:
            pass


@node_app.command("cordon")
def cordon(name: str = typer.Argument(..., help="the node (`cumulo nodes`)"),
           reason: str = typer.Option("", "--reason", help="why (shown in `cumulo nodes` and the event)"),
           json_: bool = JSON) -> None:
    """No new work lands on the node; what runs there goes on (admin). `uncordon` undoes it."""
    with Client() as client:
        node = client.cordon_node(name, reason)
    if json_:
        emit_json(node)
    else:
        console.print(f"node {name} cordoned: {node.cordoned}")


@node_app.command("uncordon")
def uncordon(name: str = typer.Argument(..., help="the node"), json_: bool = JSON) -> None:
    """The node takes new work again (admin)."""
    with Client() as client:
        node = client.uncordon_node(name)
    if json_:
        emit_json(node)
    else:
        console.print(f"node {name} takes new work again")
