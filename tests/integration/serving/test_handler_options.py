"""Per-handler options on a real replica: batching, streaming, max_concurrency, timeout."""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

SERVICE = '''
import asyncio, time
from cumulo.serving import Batch, Service, handler


class Options(Service):
    @handler(batch=Batch(max_size=8, max_wait_ms=300))
    def batched(self, text: list[str], repeat: list[int]) -> list[dict]:
        # every item learns the size of the batch it was part of
        return [{"echo": t * r, "batch": len(text)} for t, r in zip(text, repeat)]

    @handler(batch=Batch(max_size=4, max_wait_ms=5))
    async def batched_async(self, x: list[int]) -> list[int]:
        await asyncio.sleep(0.2)
        return [v * 10 for v in x]

    @handler(batch=Batch(max_size=4, max_wait_ms=1))
    def wrong_length(self, x: list[int]) -> list[int]:
        return []

    @handler
    async def tokens(self, n: int, delay: float = 0.3):
        for i in range(n):
            yield {"token": i}
            await asyncio.sleep(delay)

    @handler
    def words(self, n: int, delay: float = 0.3):
        for i in range(n):
            yield f"word{i} "
            time.sleep(delay)

    @handler
    async def fails_mid_stream(self):
        yield "one"
        raise RuntimeError("lost the GPU")

    @handler(max_concurrency=2)
    async def limited(self, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "ok"

    @handler(max_concurrency=1, max_queue=3)
    def queued(self, seconds: float) -> float:
        time.sleep(seconds)
        return time.time()

    @handler(timeout=0.3)
    async def slow(self, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "ok"

    @handler(timeout=0.3)
    def slow_sync(self, seconds: float) -> str:
        time.sleep(seconds)
        return "ok"

    @handler(timeout=0.5, batch=Batch(max_size=2, max_wait_ms=1))
    def slow_batch(self, seconds: list[float]) -> list[str]:
        time.sleep(max(seconds))
        return ["ok"] * len(seconds)

    @handler(timeout=0.5)
    async def slow_stream(self, first: float):
        await asyncio.sleep(first)
        yield "a"
        await asyncio.sleep(10)
        yield "b"
'''


def metric(text: str, name: str, handler: str) -> float:
    m = re.search(rf'^{name}{{handler="{handler}"}} ([\d.e+-]+)$', text, re.M)
    assert m, f"{name} for {handler} not in /metrics"
    return float(m.group(1))


def test_batching_groups_concurrent_requests(start_replica):
    r = start_replica(SERVICE, "Options")
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(httpx.post, r.url + "/batched", json={"text": f"t{i}", "repeat": 2}, timeout=10)
                   for i in range(8)]
        results = [f.result() for f in futures]
    assert all(res.status_code == 200 for res in results)
    assert [res.json()["echo"] for res in results] == [f"t{i}t{i}" for i in range(8)]  # each gets its own
    assert all(res.json()["batch"] == 8 for res in results)  # one call with all eight
    metrics = httpx.get(r.url + "/metrics").text
    assert metric(metrics, "cumulo_serving_batch_size_count", "batched") == 1
    assert metric(metrics, "cumulo_serving_batch_size_sum", "batched") == 8
    assert 'cumulo_serving_batch_size_bucket{handler="batched",le="4.0"} 0.0' in metrics
    assert 'cumulo_serving_batch_size_bucket{handler="batched",le="8.0"} 1.0' in metrics

    # a lone request waits at most max_wait_ms, then runs as a batch of one
    t0 = time.monotonic()
    res = httpx.post(r.url + "/batched", json={"text": "x", "repeat": 1})
    assert res.json() == {"echo": "x", "batch": 1}
    assert 0.25 < time.monotonic() - t0 < 3


def test_batching_fills_the_next_batch_while_one_runs(start_replica):
    r = start_replica(SERVICE, "Options")
    with ThreadPoolExecutor(12) as pool:
        futures = [pool.submit(httpx.post, r.url + "/batched_async", json={"x": i}, timeout=10) for i in range(12)]
        assert sorted(f.result().json() for f in futures) == [i * 10 for i in range(12)]
    metrics = httpx.get(r.url + "/metrics").text
    calls = metric(metrics, "cumulo_serving_batch_size_count", "batched_async")
    assert metric(metrics, "cumulo_serving_batch_size_sum", "batched_async") == 12
    assert calls <= 6  # max_size 4: at least 3 calls, far fewer than 12
    res = httpx.post(r.url + "/wrong_length", json={"x": 1})
    assert res.status_code == 500 and "one result per item" in res.json()["detail"]


def read_incrementally(url: str, payload: dict, headers: dict | None = None) -> list[tuple[float, bytes]]:
    chunks = []
    t0 = time.monotonic()
    with httpx.stream("POST", url, json=payload, headers=headers, timeout=10) as res:
        assert res.status_code == 200
        for chunk in res.iter_raw():
            chunks.append((time.monotonic() - t0, chunk))
    return chunks


def test_async_generator_streams_chunk_by_chunk(start_replica):
    r = start_replica(SERVICE, "Options")
    with httpx.stream("POST", r.url + "/tokens", json={"n": 4}) as res:
        assert res.headers["content-type"] == "application/x-ndjson"
        assert res.headers["transfer-encoding"] == "chunked"
        t0 = time.monotonic()
        lines = []
        for line in res.iter_lines():
            lines.append((time.monotonic() - t0, json.loads(line)))
    assert [item for _, item in lines] == [{"token": i} for i in range(4)]
    times = [t for t, _ in lines]
    # each token arrives on its own, ~0.3 s apart, not all at the end
    assert times[0] < 0.25
    assert all(b - a > 0.15 for a, b in zip(times, times[1:])), times


def test_sync_generator_streams_and_sse_on_request(start_replica):
    r = start_replica(SERVICE, "Options")
    chunks = read_incrementally(r.url + "/words", {"n": 3})
    assert b"".join(c for _, c in chunks) == b"word0 word1 word2 "
    assert len(chunks) >= 3 and chunks[-1][0] - chunks[0][0] > 0.4  # spread over time

    with httpx.stream("POST", r.url + "/tokens", json={"n": 3, "delay": 0.2},
                      headers={"accept": "text/event-stream"}) as res:
        assert res.headers["content-type"].startswith("text/event-stream")
        t0 = time.monotonic()
        events = []
        for line in res.iter_lines():
            if line.startswith("data: "):
                events.append((time.monotonic() - t0, json.loads(line[6:])))
    assert [e for _, e in events] == [{"token": i} for i in range(3)]
    assert events[1][0] - events[0][0] > 0.1 and events[2][0] - events[1][0] > 0.1

    with httpx.stream("POST", r.url + "/fails_mid_stream", headers={"accept": "text/event-stream"}) as res:
        body = res.read().decode()
    assert body.startswith("data: one\n\n")
    assert 'event: error\ndata: {"detail":"RuntimeError: lost the GPU"}' in body
    metrics = httpx.get(r.url + "/metrics").text
    assert 'cumulo_serving_requests_total{handler="fails_mid_stream",status="500"} 1.0' in metrics
    assert metric(metrics, "cumulo_serving_in_flight_requests", "tokens") == 0


def test_max_concurrency_rejects_the_excess_with_503(start_replica):
    r = start_replica(SERVICE, "Options")
    with ThreadPoolExecutor(5) as pool:
        futures = [pool.submit(httpx.post, r.url + "/limited", json={"seconds": 0.6}, timeout=10) for _ in range(5)]
        results = [f.result() for f in futures]
    codes = sorted(res.status_code for res in results)
    assert codes == [200, 200, 503, 503, 503]
    busy = next(res for res in results if res.status_code == 503)
    assert busy.headers["retry-after"] == "1" and "max_concurrency=2" in busy.json()["detail"]
    assert httpx.post(r.url + "/limited", json={"seconds": 0}).status_code == 200  # slots are given back
    metrics = httpx.get(r.url + "/metrics").text
    assert 'cumulo_serving_requests_total{handler="limited",status="503"} 3.0' in metrics


def test_max_queue_lets_the_excess_wait_its_turn(start_replica):
    r = start_replica(SERVICE, "Options")
    with ThreadPoolExecutor(5) as pool:
        futures = [pool.submit(httpx.post, r.url + "/queued", json={"seconds": 0.3}, timeout=10) for _ in range(5)]
        results = [f.result() for f in futures]
    codes = sorted(res.status_code for res in results)
    assert codes == [200, 200, 200, 200, 503]  # 1 running + 3 waiting; the fifth is turned away
    finished = sorted(res.json() for res in results if res.status_code == 200)
    assert all(b - a > 0.2 for a, b in zip(finished, finished[1:]))  # one at a time


def test_timeout_answers_504(start_replica):
    r = start_replica(SERVICE, "Options")
    with httpx.Client(base_url=r.url, timeout=10) as c:
        for path in ("/slow", "/slow_sync"):
            t0 = time.monotonic()
            res = c.post(path, json={"seconds": 3})
            assert res.status_code == 504, path
            assert "took longer than 0.3s" in res.json()["detail"]
            assert time.monotonic() - t0 < 2
            assert c.post(path, json={"seconds": 0.01}).json() == "ok"
        res = c.post("/slow_batch", json={"seconds": 3})
        assert res.status_code == 504
        res = c.post("/slow_stream", json={"first": 2})  # nothing sent in time: a real 504
        assert res.status_code == 504
        t0 = time.monotonic()
        with c.stream("POST", "/slow_stream", json={"first": 0}, headers={"accept": "text/event-stream"}) as res:
            body = res.read().decode()
        assert body.startswith("data: a\n\n") and "event: error" in body and "timeout" in body
        assert time.monotonic() - t0 < 3
        metrics = c.get("/metrics").text
    assert 'cumulo_serving_requests_total{handler="slow",status="504"} 1.0' in metrics
    assert 'cumulo_serving_requests_total{handler="slow_sync",status="504"} 1.0' in metrics
    assert 'cumulo_serving_requests_total{handler="slow_stream",status="504"} 2.0' in metrics
