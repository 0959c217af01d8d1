"""Composition root: builds the store, runtime, reconcilers, services and the API, and serves them.

    python -m cumulo.app [--host H] [--port P] [--db URL] [--home DIR]

`cumulo up` runs this module (the CLI stays light and never imports the server side).
"""

from __future__ import annotations

import argparse
import fcntl
import ipaddress
import json
import logging
import os
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from sqlalchemy.exc import OperationalError

from cumulo.api import errors as api_errors
from cumulo.api.routes import ROUTERS
from cumulo.catalog import find_instance_type, load_catalog
from cumulo.console import install as install_console
from cumulo.control import provider_quotas
from cumulo.control.alerts import AlertReconciler, metric_reader, webhooks_from_env
from cumulo.control.detectors import ServiceDetectors
from cumulo.control.node_repair import NodeRepairReconciler
from cumulo.control.replica_repair import ReplicaRepairReconciler
from cumulo.control.autoscaler import AutoscalerReconciler, LoadSample
from cumulo.control.clusters import ClusterReconciler, Runtimes
from cumulo.control.costs import CostReconciler
from cumulo.control.deployments import DeploymentReconciler
from cumulo.control.jobs import JobReconciler, utcnow
from cumulo.control.loop import Loop
from cumulo.control.nodes import LOCAL_NODE, register_local_node
from cumulo.control.placement import Placement
from cumulo.control.node_pools import NodePoolReconciler
from cumulo.control.resources import JOIN_TIMEOUT, NodeReconciler
from cumulo.core import settings as env
from cumulo.core.errors import CumuloError
from cumulo.core.files import write_private
from cumulo.core.keyring import Keyring
from cumulo.core.views import System
from cumulo.gateway import Endpoint
from cumulo.gateway.metrics import BUCKETS
from cumulo.monitor import exposition as monitor_exposition
from cumulo.monitor.sampler import GatewayCounters, Sampler, interval_from_env, retention_from_env
from cumulo.monitor.service import MonitorService
from cumulo.gateway.routing import Split
from cumulo.gateway.proxy import Gateway
from cumulo.gateway.server import uvicorn_config
from cumulo.providers.aws import AWSProvider
from cumulo.providers.local import LocalProvider
from cumulo.providers.local_vm import LocalVMProvider
from cumulo.runtimes.local import LocalRuntime
from cumulo.services.alerts import AlertService
from cumulo.services.cluster import ClusterService
from cumulo.services.costs import CostService
from cumulo.services.deployments import DeploymentService
from cumulo.services.gateways import GatewayRegistry
from cumulo.services.jobs import JobService
from cumulo.services.node_pools import NodePoolService
from cumulo.services.resources import ResourceService
from cumulo.services.secrets import SecretService
from cumulo.services.tokens import TokenService
from cumulo.services.workspaces import WorkspaceService
from cumulo.store.db import Database
from cumulo.store.gateway_view import GatewayView, gateway_view
from cumulo.store.migrate import upgrade

log = logging.getLogger("cumulo")

#: job reconciler threads; more help when the database is across a network (each pass waits on
#: ~10 round trips); on one 2-core machine with PostgreSQL beside it they only trade places (bench/jobs.py)
JOB_WORKERS = int(os.environ.get("CUMULO_JOB_WORKERS", "1"))


@dataclass(frozen=True)
class ServerConfig:
    home: Path
    database_url: str
    host: str = "127.0.0.1"
    port: int = env.DEFAULT_PORT
    auth: bool = True  # False (`--no-auth`) only on a loopback address
    tls_cert: str | None = None
    tls_key: str | None = None
    #: $/hour of this machine: work here is charged its share of it (`cumulo cost`, budgets)
    local_price: float = 0.0
    #: every alert that fires or resolves is POSTed to these (Alertmanager's webhook format)
    alert_webhooks: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        """Where workloads and clients on this machine reach the server. A wildcard bind
        (0.0.0.0, ::) is reached over loopback: the URL is never 0.0.0.0."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"{'https' if self.tls_cert else 'http'}://{host}:{self.port}"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def server_key(home: Path) -> bytes:
    """This installation's secret key ($CUMULO_HOME/server.key, mode 0600): signs workload tokens."""
    path = home / "server.key"
    if not path.exists():  # CUMULO_HOME is locked: no other control plane writes it meanwhile
        write_private(path, os.urandom(32))
    return path.read_bytes()


@dataclass
class ControlPlane:
    config: ServerConfig
    db: Database
    runtime: LocalRuntime
    loops: list[Loop]
    app: FastAPI
    gateway: Gateway

    def start(self) -> None:
        register_local_node(self.db, self.runtime, utcnow(), price=self.config.local_price)
        for loop in self.loops:
            loop.start()

    def stop(self) -> None:
        for loop in self.loops:
            loop.stop()
        self.db.dispose()


def build(config: ServerConfig) -> ControlPlane:
    config.home.mkdir(parents=True, exist_ok=True)
    db = Database(config.database_url)
    upgrade(db.engine)
    runtime = LocalRuntime(config.home / "jobs")
    placement = Placement(LOCAL_NODE)
    reconciler = JobReconciler(db, Runtimes(db, runtime), node=LOCAL_NODE, server_url=config.url, placement=placement)
    job_loop = Loop(reconciler, workers=JOB_WORKERS)
    reconciler.wake = job_loop.enqueue
    dep_reconciler = DeploymentReconciler(db, Runtimes(db, LocalRuntime(config.home / "deployments")),
                                          placement=placement, server_url=config.url)
    dep_loop = Loop(dep_reconciler)
    dep_reconciler.wake = dep_loop.enqueue  # a health probe finished: act on its result now
    dep_reconciler.capacity_freed = reconciler.wake_waiting
    gateway = Gateway(metrics_path=None)  # /metrics is an API route here: it needs a token (api/routes.py)

    gateways = GatewayRegistry(db)  # the standalone gateways (`cumulo gateway`) that sync with this plane

    def load_of(name: str) -> LoadSample:
        """Deployment `name`'s load: this process's gateway plus every live standalone one."""
        st, ext = gateway.stats(name), gateways.totals(name)
        lat = st["latency_seconds"]
        count = lat["count"] + ext.latency_count
        return LoadSample(arrivals_total=st["arrivals_total"] + ext.arrivals_total,
                          requests_total=st["requests_total"] + ext.requests_total,
                          in_flight=st["in_flight"] + ext.in_flight,
                          mean_latency=(lat["sum"] + ext.latency_sum) / count if count else 0.0,
                          in_flight_seconds=st["in_flight_seconds_total"] + ext.in_flight_seconds)

    autoscaler = AutoscalerReconciler(db, load=load_of, wake_deployment=dep_loop.enqueue)
    autoscale_loop = Loop(autoscaler)
    providers = {"aws": AWSProvider(), "local": LocalProvider(config.home / "providers" / "local.json"),
                 "local-vm": LocalVMProvider(config.home / "providers" / "local-vm")}
    nodes = NodeReconciler(db, providers, offerings=load_catalog, install_id=install_id(config.home),
                           join_timeout=float(os.environ.get("CUMULO_JOIN_TIMEOUT", JOIN_TIMEOUT)))
    node_loop = Loop(nodes)
    nodes.wake = node_loop.enqueue
    # each engine's nodes, read from the engine; an unreachable one is retried without holding up the rest
    cluster_reconciler = ClusterReconciler(db, Runtimes(db, runtime))
    cluster_loop = Loop(cluster_reconciler, workers=4)
    cluster_reconciler.wake = cluster_loop.enqueue
    # node pools: machines for the work waiting on their cluster; idle ones released
    node_pools = NodePoolReconciler(db, offerings=load_catalog, providers=sorted(providers), quotas=provider_quotas.limits)
    pool_loop = Loop(node_pools)
    node_pools.wake, node_pools.wake_node, node_pools.wake_job = pool_loop.enqueue, node_loop.enqueue, job_loop.enqueue
    reconciler.began_waiting = node_pools.wake_cluster

    def capacity_changed() -> None:
        reconciler.wake_waiting()
        node_pools.wake_cluster()

    cluster_reconciler.capacity_changed = capacity_changed
    cluster_reconciler.machine_changed = node_loop.enqueue
    nodes.wake_cluster = cluster_loop.enqueue
    nodes.capacity_changed = reconciler.wake_waiting
    # a drained replica's SIGTERM waits for the requests every gateway has in flight to it
    dep_reconciler.in_flight = lambda host, port: gateway.in_flight_to(host, port) + gateways.in_flight_to(host, port)
    dep_reconciler.publish = lambda view: gateway.update(
        {name: [Endpoint(str(o), host, port, generation=view.splits[name].generations.get(o, 0)
                         if name in view.splits else 0) for o, host, port in eps]
         for name, eps in view.routes.items()},
        view.hold, view.auth,
        {name: Split(sp.canary_generation, sp.weight, sp.stable_generation) for name, sp in view.splits.items()},
    )

    def generation_counts(name: str) -> dict[int, tuple[int, int, tuple[int, ...]]]:
        """Deployment `name`'s per-generation counters: this process's gateway plus every standalone one."""
        out = dict(gateways.generation_totals(name))
        for gen, c in gateway.generation_stats(name).items():
            req, err, buckets = out.get(gen, (0, 0, ()))
            n = max(len(buckets), len(c["buckets"]))
            mine = list(buckets) + [0] * (n - len(buckets))
            out[gen] = (req + c["requests"], err + c["errors"],
                        tuple(a + b for a, b in zip(mine, c["buckets"] + [0] * (n - len(c["buckets"])), strict=True)))
        return out

    dep_reconciler.generation_counts = generation_counts
    dep_reconciler.latency_bounds = BUCKETS

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        plane.start()
        try:
            yield
        finally:
            plane.stop()
            await gateway.aclose()

    app = FastAPI(
        title="cumulo",
        version=version("cumulo"),
        description="One control plane for AI workloads.",
        lifespan=lifespan,
    )
    api_errors.install(app)
    for r in ROUTERS:
        app.include_router(r)
    secrets = SecretService(db, Keyring.load(config.home))
    app.state.secrets = secrets
    reconciler.secret_values = dep_reconciler.secret_values = secrets.values
    app.state.workspaces = WorkspaceService(db)
    app.state.costs = CostService(db, local_node=LOCAL_NODE)
    tokens = TokenService(db, server_key(config.home))
    tokens.on_change = dep_reconciler.publish_routes
    app.state.tokens = tokens
    app.state.auth = config.auth  # False (--no-auth): every request is an anonymous admin
    if config.auth:
        reconciler.workload_token = tokens.for_workload
        dep_reconciler.workload_token = tokens.for_replica
        written = tokens.ensure_admin(config.home)
        if written:
            log.info("first start: an admin token was written to %s (mode 0600); the CLI and SDK read it there",
                     written)
    app.state.jobs = JobService(db, config.home, node=LOCAL_NODE, wake=job_loop.enqueue)
    app.state.cluster = clusters_service = ClusterService(db, home=config.home)
    clusters_service.wake = cluster_loop.enqueue
    clusters_service.capacity_changed = reconciler.wake_waiting
    def wake_deployment(dep_id: str) -> None:
        dep_loop.enqueue(dep_id)
        autoscale_loop.enqueue(dep_id)
        dep_reconciler.publish_routes()  # a spec's `auth` takes effect at the gateway now

    app.state.deployments = DeploymentService(db, node=LOCAL_NODE, base_url=config.url, wake=wake_deployment)

    def routes() -> GatewayView:
        with db.tx() as s:
            return gateway_view(s, utcnow())

    app.state.routes = routes
    app.state.gateways = gateways
    app.state.load = lambda name: {**asdict(load_of(name)), "standalone_gateways": gateways.arrivals_by_gateway(name)}
    app.state.gateway = gateway
    app.state.system = lambda: System(version=version("cumulo"), database=db.backend, auth=config.auth,
                                      home=str(config.home), passes=job_loop.passes)
    app.state.resources = ResourceService(db, offerings=load_catalog, providers=sorted(providers),
                                          find_instance_type=find_instance_type, wake=node_loop.enqueue)
    app.state.node_pools = NodePoolService(db, providers=sorted(providers), wake=pool_loop.enqueue)
    cost_loop = Loop(CostReconciler(db, local_node=LOCAL_NODE))
    alert_reconciler = AlertReconciler(db, webhooks=list(config.alert_webhooks), external_url=config.url,
                                       read_series=metric_reader(db, interval_from_env()),
                                       detectors=ServiceDetectors(interval_from_env()))
    alert_loop = Loop(alert_reconciler)
    # replicas that are outliers among their peers, or heading for OOM, are replaced (no request fails)
    repair = ReplicaRepairReconciler(db, replica_stats=gateway.replica_stats)
    repair_loop = Loop(repair)
    repair.wake_deployment = dep_loop.enqueue
    # nodes whose GPUs fail (XID, ECC) are cordoned, their replicas moved, pool machines released
    node_repair = NodeRepairReconciler(db)
    node_repair_loop = Loop(node_repair)
    node_repair.wake_deployment = dep_loop.enqueue
    alert_reconciler.wake = alert_loop.enqueue
    app.state.alerts = AlertService(db, wake=alert_loop.enqueue)

    def counters(key: str) -> GatewayCounters:
        """A deployment's gateway counters for the sampler: arrivals and in flight of every gateway,
        answers and latency of this process's (standalone gateways report no histogram)."""
        st, ext = gateway.stats(key), gateways.totals(key)
        return GatewayCounters(arrivals_total=st["arrivals_total"] + int(ext.arrivals_total),
                               in_flight=st["in_flight"] + int(ext.in_flight), requests_total=st["requests_total"],
                               errors_total=st["errors_total"],
                               latency_buckets=tuple(st["latency_seconds"]["buckets"].values()), bucket_bounds=BUCKETS)

    # every node, job worker and replica, every CUMULO_METRICS_INTERVAL seconds, into the database
    sampler = Sampler(db, local_node=LOCAL_NODE, interval=interval_from_env(), retention=retention_from_env(),
                      gateway=counters, replica_in_flight=gateway.in_flight_to, replica_counters=gateway.replica_stats)
    monitor_loop = Loop(sampler)
    app.state.monitor = MonitorService(db, sampler, jobs=app.state.jobs, deployments=app.state.deployments,
                                       cluster=clusters_service)
    app.state.monitor.alerts = lambda scope: [a.model_dump(mode="json") for a in app.state.alerts.alerts(scope=scope)]
    app.state.metrics_text = lambda: gateway.metrics_text() + monitor_exposition.exposition(
        lambda: (sampler.latest_t, sampler.latest), lambda: sampler.seconds_spent)
    install_console(app, db, key=server_key(config.home))  # the web console at / (same tokens as the API)
    plane = ControlPlane(config, db, runtime, [job_loop, dep_loop, autoscale_loop, node_loop, cost_loop, cluster_loop,
                                               monitor_loop, alert_loop, repair_loop, node_repair_loop,
                                               pool_loop], app, gateway)
    return plane


def install_id(home: Path) -> str:
    """This installation's id, tagged on every cloud machine it launches (the orphan sweep's key)."""
    path = home / "install-id"
    if not path.exists():
        path.write_text(uuid.uuid4().hex[:16])
    return path.read_text().strip()


def _lock_home(home: Path):
    home.mkdir(parents=True, exist_ok=True)
    f = open(home / "server.lock", "a+")  # held open (and locked) for the life of the process
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        raise CumuloError(
            f"another cumulo control plane is already running with CUMULO_HOME={home}; "
            "stop it with `cumulo down`, or set CUMULO_HOME to another directory"
        ) from None
    return f


def _safe_url(url: str) -> str:
    """The URL with its password hidden, for messages."""
    head, sep, tail = url.rpartition("@")
    if not sep or ":" not in head.split("//", 1)[-1]:
        return url
    scheme, _, cred = head.partition("//")
    return f"{scheme}//{cred.split(':', 1)[0]}:***@{tail}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="cumulo up", description="Run the cumulo control plane.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=env.DEFAULT_PORT)
    p.add_argument("--db", default=None, help="database URL (default: SQLite in CUMULO_HOME)")
    p.add_argument("--home", default=None, help="state directory (default: CUMULO_HOME or ~/.cumulo)")
    p.add_argument("--no-auth", action="store_true", help="serve without tokens (only on a loopback address)")
    p.add_argument("--tls-cert", default=None, help="certificate file (PEM): serve HTTPS")
    p.add_argument("--tls-key", default=None, help="private key file (PEM) of --tls-cert")
    p.add_argument("--alert-webhook", action="append", default=None,
                   help="POST alerts here in Alertmanager's webhook format (repeatable; default: CUMULO_ALERT_WEBHOOKS)")
    p.add_argument("--local-price", type=float, default=float(os.environ.get("CUMULO_LOCAL_PRICE_PER_HOUR", "0")),
                   help="$/hour of this machine; work here is charged its share (default: CUMULO_LOCAL_PRICE_PER_HOUR or 0)")
    args = p.parse_args(argv)
    if args.no_auth and not is_loopback(args.host):
        print(f"error: --no-auth is allowed only on a loopback address, not on --host {args.host}: anyone who "
              "reaches the port could run commands as this user. Drop --no-auth (clients then need a token: "
              "`cumulo token create`), or bind 127.0.0.1.", file=sys.stderr)
        return 2
    if not 0 <= args.local_price < 1e6:
        print(f"error: --local-price {args.local_price} must be a price in $/hour, 0 or more", file=sys.stderr)
        return 2
    if bool(args.tls_cert) != bool(args.tls_key):
        print("error: --tls-cert and --tls-key go together: give both files, or neither", file=sys.stderr)
        return 2
    logging.basicConfig(level=os.environ.get("CUMULO_LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    home = Path(args.home).expanduser().resolve() if args.home else env.home()
    try:
        lock = _lock_home(home)
        config = ServerConfig(home=home, database_url=args.db or env.database_url(home), host=args.host, port=args.port,
                              auth=not args.no_auth, tls_cert=args.tls_cert, tls_key=args.tls_key,
                              local_price=args.local_price,
                              alert_webhooks=tuple(args.alert_webhook or webhooks_from_env()))
        plane = build(config)
    except CumuloError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OperationalError as exc:
        print(f"error: cannot use the database {_safe_url(args.db or env.database_url(home))}: {exc.orig}\n"
              "Check that it is running and the URL (--db or CUMULO_DATABASE_URL) is right.", file=sys.stderr)
        return 2
    lock.truncate(0)
    lock.write(json.dumps({"pid": os.getpid(), "url": config.url}))
    lock.flush()
    log.info("cumulo %s serving %s (state in %s, database %s)", version("cumulo"), config.url, home, plane.db.backend)
    # one port: /d/<deployment>/... is proxied by the gateway's fast path, the rest is the API
    tls = {"ssl_certfile": config.tls_cert, "ssl_keyfile": config.tls_key} if config.tls_cert else {}
    uvicorn.Server(uvicorn_config(plane.gateway, plane.app, host=config.host, port=config.port, **tls)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
