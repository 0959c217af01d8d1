"""`cumulo cluster add | list | status | remove`: the engines cumulo runs work on besides this machine."""

from __future__ import annotations

import typer
from rich.table import Table

from cumulo.cli.render import JSON, ago, console, emit_json, err, nodes_table
from cumulo.core.units import format_memory
from cumulo.core.views import ClusterInfo
from cumulo.sdk.client import Client

app = typer.Typer(help="Clusters: `local` (this machine), Ray clusters and Slurm. Jobs and deployments take "
                       "`cluster: NAME`, or run where they fit.", no_args_is_help=True)
STATE_STYLE = {"Ready": "green", "Unreachable": "red", "Unknown": "yellow"}


def _table(rows: list[ClusterInfo]) -> Table:
    t = Table(box=None, header_style="bold")
    show_reason = any(c.reason for c in rows)
    for col in ["NAME", "KIND", "STATE", "NODES", "CPU (cumulo/total)", "MEMORY", "GPU", "ADDRESS", "CHECKED"] + \
            (["REASON"] if show_reason else []):
        t.add_column(col, overflow="fold" if col == "REASON" else "ellipsis")
    for c in rows:
        row = [c.name, c.kind, f"[{STATE_STYLE.get(c.state, 'white')}]{c.state}[/]", f"{c.nodes_ready}/{c.nodes}",
               f"{c.allocated_cpu:g}/{c.cpu:g}",
               f"{format_memory(c.allocated_memory_bytes)}/{format_memory(c.memory_bytes)}",
               f"{c.allocated_gpus}/{c.gpus}", c.address or (f"partition {c.partition}" if c.partition else "-"),
               ago(c.checked_at) if c.checked_at else "-"]
        t.add_row(*row, *([c.reason] if show_reason else []))
    return t


@app.command()
def add(
    name: str = typer.Argument(..., help="lowercase letters, digits and '-'"),
    ray: str = typer.Option(None, "--ray", help="a Ray cluster's dashboard address (what `ray job submit "
                                                "--address` takes), e.g. http://10.0.0.5:8265"),
    slurm: bool = typer.Option(False, "--slurm", help="the Slurm cluster this machine's sbatch/squeue reach"),
    partition: str = typer.Option(None, "--partition", help="Slurm: the partition to submit to"),
    artifacts: str = typer.Option(None, "--artifacts", help="a folder every node sees: CUMULO_ARTIFACTS, "
                                                            "checkpoints and logs live under it"),
    join: str = typer.Option(None, "--join", help="Ray: the GCS address (HOST:PORT) machines launched for the "
                                                  "cluster join (default: the dashboard's host, port 6379)"),
    json_: bool = JSON,
) -> None:
    """Add a Ray cluster or Slurm; its nodes are read from the engine right away."""
    if (ray is None) == (not slurm):
        err("give exactly one of --ray http://HOST:PORT or --slurm")
        raise typer.Exit(2)
    with Client() as client:
        client.add_cluster(name, ray=ray, slurm=slurm, partition=partition, artifacts=artifacts, join=join)
        with console.status(f"asking {name} for its nodes ..."):
            info = client.wait_cluster(name, timeout=15.0)
        nodes = client.nodes(name) if info.state == "Ready" else []
    if json_:
        emit_json(info)
        return
    if info.state == "Ready":
        console.print(f"cluster {name} added: {info.nodes_ready} node(s), {info.cpu:g} CPU, "
                      f"{format_memory(info.memory_bytes)}, {info.gpus} GPU")
        _nodes(nodes, name)
        console.print(f"next: put `cluster: {name}` in a job or deployment spec")
    else:
        console.print(f"cluster {name} added but [red]{info.state}[/]: {info.reason or 'not answered yet'}; "
                      "it is retried every few seconds (`cumulo cluster status " + name + "`)")


@app.command("list")
def list_(json_: bool = JSON) -> None:
    """Every cluster with its state and capacity."""
    with Client() as client:
        rows = client.clusters()
    if json_:
        emit_json(rows)
    else:
        console.print(_table(rows))


@app.command()
def status(name: str = typer.Argument(...), json_: bool = JSON) -> None:
    """One cluster: state (and why), its nodes, and the work running on it."""
    with Client() as client:
        info = client.cluster(name)
        nodes = client.nodes(name)
    if json_:
        emit_json({**info.model_dump(mode="json"), "node_list": [n.model_dump(mode="json") for n in nodes]})
        return
    console.print(_table([info]))
    _nodes(nodes, name)
    console.print("work: " + (", ".join(info.work) if info.work else "none"))


def _nodes(nodes, name: str) -> None:
    """The live nodes; the engine's dead ones (it keeps listing them) only counted."""
    live = [n for n in nodes if n.state != "Lost"]
    console.print(nodes_table(live) if live else "no live nodes known yet")
    if len(live) < len(nodes):
        console.print(f"[dim]{len(nodes) - len(live)} lost node(s) not shown: `cumulo nodes --cluster {name} --all`[/]")


@app.command()
def remove(name: str = typer.Argument(...)) -> None:
    """Remove a cluster (refused while work runs on it)."""
    with Client() as client:
        client.remove_cluster(name)
    console.print(f"cluster {name} removed")
