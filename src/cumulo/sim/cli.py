"""``cumulo sim TRACE --policy NAME [options] [--json] [--sweep] [--plot FILE]``.

A Typer sub-app (``app``) and ``run_cli(argv)``; numpy and matplotlib load only when a command runs.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

import typer

__all__ = ["app", "run_cli", "sim"]

app = typer.Typer(help="Replay a request trace under an autoscaling policy.", add_completion=False)


def _parse_options(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise typer.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--set")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v
    return out


def _clean(v: Any) -> Any:
    """Strict JSON: nan is null, an infinite latency "inf" (nested dicts too, e.g. ``fit``)."""
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else "inf"
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    return v


def _require_requests(metrics: dict[str, Any], eval_from: float) -> None:
    """An evaluated part without a single request has no SLO attainment: say so, never 100 %."""
    from cumulo.core.errors import InvalidSpec

    if metrics["requests"] == 0:
        t0 = metrics["evaluated_from_s"]
        t1 = t0 + metrics["evaluated_seconds"]
        msg = (f"no requests arrive in the evaluated part of {metrics['trace']!r} ({t0:g} s to {t1:g} s, "
               f"--eval-from {eval_from:g}); choose an earlier --eval-from")
        raise InvalidSpec(f"eval_from: {msg}", errors=[{"field": "eval_from", "message": msg}])


@app.command("sim")
def sim(
    trace: Annotated[str, typer.Argument(help="Azure CSV, ServeGen chunk CSV or directory, *-total.csv, or JSONL (t_ms)")],
    policy: Annotated[str, typer.Option(help="hpa | kpa | rayserve | skyserve | predictive | oracle (comma-separate several)")] = "predictive",
    cold_start: Annotated[float, typer.Option(help="seconds until a new replica is ready")] = 30.0,
    concurrency: Annotated[int, typer.Option(help="requests one replica serves at once")] = 8,
    service_time: Annotated[float, typer.Option(help="seconds per request when the trace has no tokens")] = 1.0,
    utilization: Annotated[float, typer.Option(help="per-replica target as a share of capacity (main parameter)")] = 0.7,
    slo_wait: Annotated[float, typer.Option(help="SLO: latency <= service time + this many seconds")] = 1.0,
    min_replicas: Annotated[int, typer.Option()] = 1,
    max_replicas: Annotated[int, typer.Option()] = 1000,
    price: Annotated[float, typer.Option(help="$ per replica-hour")] = 1.0,
    step: Annotated[float, typer.Option(help="simulation step in seconds")] = 1.0,
    seed: Annotated[int, typer.Option(help="seed for synthesised arrivals")] = 0,
    eval_from: Annotated[float, typer.Option(help="report metrics from this second on (earlier = fitting)")] = 0.0,
    queue: Annotated[str, typer.Option(help="shared: one FIFO for all replicas; replica: each request joins the "
                                            "least-loaded replica's own queue, as behind cumulo's gateway "
                                            "(request traces only)")] = "shared",
    set_: Annotated[list[str], typer.Option("--set", help="policy option KEY=VALUE (e.g. z=1.5)")] = [],  # noqa: B006
    sweep: Annotated[bool, typer.Option("--sweep", help="sweep utilization 0.3..1.0 per policy")] = False,
    plot: Annotated[str | None, typer.Option(help="write a PNG plot here")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Replay TRACE and report SLO attainment, latency, replica-seconds and cost."""
    from dataclasses import replace

    from cumulo.core.errors import CumuloError
    from cumulo.sim import model as sim_model
    from cumulo.sim import sweep as sim_sweep
    from cumulo.sim.load import ServiceModel, build_load
    from cumulo.sim.traces import load_trace

    try:
        overrides = _parse_options(set_)
        m = sim_model.ReplicaModel(
            concurrency=concurrency, cold_start=cold_start, min_replicas=min_replicas, max_replicas=max_replicas,
            utilization=utilization, slo_wait=slo_wait, price_per_hour=price, queue=queue,
        )
        load = build_load(load_trace(trace), ServiceModel(service_time=service_time), step=step, seed=seed)
        policies = [p.strip() for p in policy.split(",") if p.strip()]
        out: dict[str, Any]
        if sweep:
            rows = []
            for p in policies:
                rows += sim_sweep.sweep(load, p, m, overrides=overrides, eval_from=eval_from)
            for r in rows:
                _require_requests(r, eval_from)
            out = {"sweep": [{k: _clean(v) for k, v in r.items()} for r in rows]}
            if plot:
                from cumulo.sim.plot import plot_sweep

                plot_sweep(rows, plot, f"{load.name}: cost vs SLO (cold start {cold_start:g}s)")
        else:
            results = []
            for p in policies:
                cfg = sim_model.make_config(p, load, m, overrides)
                results.append(sim_model.simulate(load, p, replace(m), config=cfg, eval_from=eval_from))
                _require_requests(results[-1].metrics, eval_from)
            out = {"runs": [{k: _clean(v) for k, v in r.metrics.items()} for r in results]}
            if plot:
                from cumulo.sim.plot import plot_run

                plot_run(results, plot)
    except CumuloError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    rows = out.get("runs") or out.get("sweep") or []
    head = f"{'policy':<11} {'util':>5} {'SLO %':>7} {'p50 s':>7} {'p99 s':>8} {'replica-h':>10} {'cost $':>9} {'under s':>8} {'actions':>7} {'cold':>6}"
    typer.echo(head)
    for r in rows:
        p99 = r["latency_p99_s"]
        p99s = f"{p99:8.2f}" if isinstance(p99, float) else f"{p99!s:>8}"
        typer.echo(
            f"{r['policy']:<11} {r.get('utilization', utilization):5.2f} {100 * r['slo_attainment']:7.2f} {r['latency_p50_s']:7.2f} "
            f"{p99s} {r['replica_seconds'] / 3600:10.1f} {r['cost']:9.2f} {r['seconds_under_provisioned']:8.0f} "
            f"{r['scaling_actions']:7d} {r['cold_starts']:6d}"
        )
    if plot:
        typer.echo(f"plot: {plot}")


def run_cli(argv: list[str] | None = None) -> int:
    """Run ``cumulo sim`` with ``argv`` (without the leading ``sim``); returns the exit code."""
    try:
        rc = app(args=list(argv or []), prog_name="cumulo sim", standalone_mode=False)
    except typer.Exit as e:
        return e.exit_code
    except Exception as e:
        # usage errors (Typer's click exceptions) print themselves and carry an exit code
        if hasattr(e, "show") and isinstance(getattr(e, "exit_code", None), int):
            e.show()
            return e.exit_code
        raise
    return rc if isinstance(rc, int) else 0
