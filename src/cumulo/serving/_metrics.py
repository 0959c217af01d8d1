"""Prometheus metrics of one replica, in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "cumulo_serving_requests", "Handler requests by handler and HTTP status.",
            ["handler", "status"], registry=r,
        )
        self.latency = Histogram(
            "cumulo_serving_request_duration_seconds",
            "Time from the handler being called to its response (or stream end).",
            ["handler"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.in_flight = Gauge(
            "cumulo_serving_in_flight_requests", "Handler requests being served now (queued included).",
            ["handler"], registry=r,
        )
        self.batch_size = Histogram(
            "cumulo_serving_batch_size", "Items per call of a batched handler.",
            ["handler"], buckets=BATCH_BUCKETS, registry=r,
        )
        self.ready = Gauge("cumulo_serving_ready", "1 once setup() has finished, 0 before and while draining.",
                           registry=r)


class HandlerMetrics:
    """Label children resolved once per handler, so a request costs a few lock-free-ish calls."""

    def __init__(self, metrics: Metrics, name: str, batched: bool = False) -> None:
        self._requests = metrics.requests
        self._name = name
        self._by_status: dict[int, Counter] = {}
        self.latency = metrics.latency.labels(name)
        self.in_flight = metrics.in_flight.labels(name)
        self.batch_size = metrics.batch_size.labels(name) if batched else None
        self.count(200, 0)  # every handler shows up in /metrics from the start

    def count(self, status: int, n: int = 1) -> None:
        child = self._by_status.get(status)
        if child is None:
            child = self._by_status[status] = self._requests.labels(self._name, str(status))
        if n:
            child.inc(n)
