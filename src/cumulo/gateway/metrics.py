"""Per-deployment request metrics: counted with plain integers on the hot path, turned into
Prometheus text (prometheus-client) only when scraped.

`DeploymentStats.snapshot()` is the load signal the autoscaler reads: arrivals (demand, counted
before a replica is chosen), request rate, requests in flight, latency percentiles, status codes
(499: the client went away first, nginx's convention), and queue time: how long requests waited in
the gateway before being handed to a replica (today: held while a deployment scaled to zero starts
a replica; a request that did not wait counts in the first bucket).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

# seconds; the upper bounds of the latency histogram's buckets (+Inf is implied)
BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)
RATE_WINDOW = 10  # seconds of arrivals the request rate is averaged over


class DeploymentStats:
    """Counters for one deployment. Updated only from the gateway's event loop thread; read from
    any thread (a reader may see a request counted in one field and not yet in another)."""

    __slots__ = ("name", "arrivals", "requests", "in_flight", "codes", "buckets", "latency_sum", "retries",
                 "queue_buckets", "queue_sum", "_open_starts", "_sec", "_window", "_clock")

    def __init__(self, name: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.arrivals = 0  # requests that arrived (demand), counted before any replica is chosen
        self.requests = 0  # finished requests
        self.in_flight = 0
        self.codes: dict[int, int] = {}
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.latency_sum = 0.0
        self.retries = 0
        # queue time histogram (same bounds): `queue_buckets[0] += 1` for a request that did not wait
        self.queue_buckets = [0] * (len(BUCKETS) + 1)
        self.queue_sum = 0.0
        self._open_starts = 0.0  # the start times of the requests in flight, summed
        self._clock = clock
        self._sec = int(clock())
        self._window = [0] * RATE_WINDOW  # arrivals per second, a ring indexed by second

    def started(self, now: float) -> None:
        self.arrivals += 1
        self.in_flight += 1
        self._open_starts += now
        sec = int(now)
        if sec != self._sec:
            self._advance(sec)
        self._window[sec % RATE_WINDOW] += 1

    def finished(self, status: int, seconds: float, start: float | None = None) -> None:
        """A request that arrived at `start` (monotonic seconds, as given to `started`) ended after
        `seconds`."""
        self.in_flight -= 1
        self._open_starts -= start if start is not None else self._clock() - seconds
        self.requests += 1
        codes = self.codes
        codes[status] = codes.get(status, 0) + 1
        self.buckets[bisect_left(BUCKETS, seconds)] += 1
        self.latency_sum += seconds

    def in_flight_seconds(self, now: float | None = None) -> float:
        """The integral of requests in flight over time so far: its growth over an interval divided by
        the interval's length is the mean concurrency in it (what the simulator hands the policies),
        where `in_flight` is one instant. Finished requests add their latency; open ones their age."""
        now = self._clock() if now is None else now
        return max(0.0, self.latency_sum + self.in_flight * now - self._open_starts)

    def queued(self, seconds: float) -> None:
        """A request waited `seconds` in the gateway before it was handed to a replica (or gave up)."""
        self.queue_buckets[bisect_left(BUCKETS, seconds)] += 1
        self.queue_sum += seconds

    def _advance(self, sec: int) -> None:
        w = self._window
        gap = sec - self._sec
        if gap >= RATE_WINDOW or gap < 0:
            for i in range(RATE_WINDOW):
                w[i] = 0
        else:
            for s in range(self._sec + 1, sec + 1):
                w[s % RATE_WINDOW] = 0
        self._sec = sec

    def rate(self) -> float:
        """Arrivals per second over the last RATE_WINDOW full seconds plus the current partial one."""
        now = self._clock()
        sec = int(now)
        if sec != self._sec:
            self._advance(sec)
        span = (RATE_WINDOW - 1) + (now - sec)
        return sum(self._window) / span if span > 0 else 0.0

    def quantile(self, q: float) -> float | None:
        """Latency quantile estimated from the histogram (linear within a bucket)."""
        return _quantile(list(self.buckets), q)

    def snapshot(self) -> dict:
        return {
            "deployment": self.name,
            "arrivals_total": self.arrivals,
            "requests_total": self.requests,
            "in_flight": self.in_flight,
            "in_flight_seconds_total": round(self.in_flight_seconds(), 6),
            "request_rate": round(self.rate(), 3),
            "status_codes": {str(k): v for k, v in sorted(self.codes.items())},
            "errors_total": sum(v for k, v in self.codes.items() if k >= 500),
            "retries_total": self.retries,
            "latency_seconds": _histogram(list(self.buckets), self.latency_sum),
            "queue_seconds": _histogram(list(self.queue_buckets), self.queue_sum),
        }


class GenerationStats:
    """Counters of the requests one generation of a deployment answered while a canary split was on
    (the canary analysis compares them): answered, 5xx or failed, and a latency histogram."""

    __slots__ = ("requests", "errors", "buckets")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.buckets = [0] * (len(BUCKETS) + 1)

    def finished(self, status: int, seconds: float) -> None:
        self.requests += 1
        if status >= 500:
            self.errors += 1
        self.buckets[bisect_left(BUCKETS, seconds)] += 1

    def snapshot(self) -> dict:
        return {"requests": self.requests, "errors": self.errors, "buckets": list(self.buckets)}


def _histogram(counts: list[int], total: float) -> dict:
    count = sum(counts)
    return {
        "count": count,
        "sum": total,
        "mean": total / count if count else None,
        "p50": _quantile(counts, 0.5),
        "p90": _quantile(counts, 0.9),
        "p99": _quantile(counts, 0.99),
        "buckets": {("+Inf" if i == len(BUCKETS) else repr(BUCKETS[i])): c for i, c in enumerate(counts)},
    }


def _quantile(counts: list[int], q: float) -> float | None:
    """A quantile estimated from histogram counts over BUCKETS (linear within a bucket)."""
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    lower = 0.0
    for i, c in enumerate(counts):
        upper = BUCKETS[i] if i < len(BUCKETS) else BUCKETS[-1]
        if seen + c >= rank and c > 0:
            return lower + (upper - lower) * ((rank - seen) / c)
        seen += c
        lower = upper
    return BUCKETS[-1]


def _cumulative(counts: list[int]) -> list[tuple[str, int]]:
    cum, out = 0, []
    for i, c in enumerate(counts):
        cum += c
        out.append(("+Inf" if i == len(BUCKETS) else repr(BUCKETS[i]), cum))
    return out


class GatewayCollector(Collector):
    """Prometheus families built from the stats at scrape time."""

    def __init__(self, stats: Callable[[], list[DeploymentStats]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator:
        stats = self._stats()
        arrivals = CounterMetricFamily("cumulo_gateway_arrivals", "Requests that arrived (demand), counted "
                                       "before a replica is chosen", labels=["deployment"])
        req = CounterMetricFamily("cumulo_gateway_requests", "Requests proxied, by deployment and status code",
                                  labels=["deployment", "code"])
        inflight = GaugeMetricFamily("cumulo_gateway_requests_in_flight", "Requests being proxied now",
                                     labels=["deployment"])
        rate = GaugeMetricFamily("cumulo_gateway_request_rate", f"Request arrivals per second over {RATE_WINDOW} s",
                                 labels=["deployment"])
        retries = CounterMetricFamily("cumulo_gateway_retries", "Requests retried on another replica "
                                      "after a connection failure", labels=["deployment"])
        lat = HistogramMetricFamily("cumulo_gateway_request_duration_seconds",
                                    "Time from request arrival to the end of the response", labels=["deployment"])
        queue = HistogramMetricFamily("cumulo_gateway_queue_seconds", "Time a request waited in the gateway "
                                      "before it was handed to a replica (held while scaling from zero)",
                                      labels=["deployment"])
        for s in stats:
            arrivals.add_metric([s.name], s.arrivals)
            for code, n in sorted(s.codes.items()):
                req.add_metric([s.name, str(code)], n)
            inflight.add_metric([s.name], s.in_flight)
            rate.add_metric([s.name], s.rate())
            retries.add_metric([s.name], s.retries)
            lat.add_metric([s.name], _cumulative(list(s.buckets)), s.latency_sum)
            queue.add_metric([s.name], _cumulative(list(s.queue_buckets)), s.queue_sum)
        yield from (arrivals, req, inflight, rate, retries, lat, queue)


def exposition(stats: Callable[[], list[DeploymentStats]]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatewayCollector(stats))
    return generate_latest(registry)
