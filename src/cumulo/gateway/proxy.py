"""The gateway's data plane: an ASGI app that proxies `/d/<name>/<path>` to a ready replica of
deployment <name> and hands every other path to the control plane's app.

    gw = Gateway()
    gw.update({"digits": [Endpoint("digits-0", "127.0.0.1", 9001, ready=True)]})  # any thread
    app = gw.asgi(control_plane_app)   # serve with uvicorn (httptools, uvloop)
    gw.stats("digits")                 # the autoscaler's load signal

Per request: look the deployment up in the current route table (404 if unknown), pick a ready
replica by power of two choices on requests in flight (503 + Retry-After if none is ready), and
exchange with it over a pooled keep-alive connection (`_upstream`). A connection failure before any
response byte is retried on another replica (bounded); a replica that refuses connections is left
out of the choice for a short while, until the control plane's table catches up. The response head
and body are passed through as they arrive (chunked, server-sent events); the request body is
streamed too. The timeout bounds each wait, never the whole exchange: every gap while the request
body streams (408 when the client pauses, 504 when the replica stops reading), the wait for the
response head once the body is sent (504), and every gap between response body chunks. A client
that goes away first is counted as 499 (nginx's convention) and its exchange with the replica is
dropped. Websockets under /d/ are proxied too (`websocket.py`).

All per-replica state (requests in flight, ejections, connection pools) lives per deployment
(`_Deployment`): replica ids are only unique within one (the control plane publishes ordinals), and
pools are keyed by id and address, so replica 0 of one deployment never shares anything with replica
0 of another.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping

from cumulo.gateway import websocket
from cumulo.gateway._upstream import Connection, Pool, UpstreamError
from cumulo.gateway.metrics import DeploymentStats, GenerationStats, exposition
from cumulo.gateway.routing import Endpoint, RouteTable, Split, choose_group, pick, split_path

__all__ = ["Gateway"]

log = logging.getLogger("cumulo.gateway")

# hop-by-hop headers (RFC 9110 7.6.1) and those the proxy sets itself
_HOP_REQ = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding",
                      b"upgrade", b"proxy-authorization", b"expect", b"content-length", b"x-forwarded-for",
                      b"x-forwarded-proto", b"x-forwarded-prefix"})
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_STALE_IDLE = 1.0  # a pooled connection idle this long may have been closed by the replica meanwhile
WATCH_AFTER = 0.05  # seconds: the ASGI path watches for a client that leaves once a response is this slow

ASGIApp = Callable


class _Timeout:
    """Aborts the exchange on `conn` when it fires (a cheap loop timer instead of asyncio.timeout)."""

    __slots__ = ("fired",)

    def __init__(self) -> None:
        self.fired = False

    def __call__(self, conn: Connection) -> None:
        self.fired = True
        conn.abort("it sent nothing in time")


class _SlowClient(Exception):
    """The client paused sending the request body for longer than the timeout."""


class _Deployment:
    """One deployment's state on the serving loop (created from any thread, mutated on the loop)."""

    __slots__ = ("stats", "outstanding", "ejected", "pools", "held", "generations", "replicas")

    def __init__(self, name: str) -> None:
        self.stats = DeploymentStats(name)
        #: per generation, the requests answered while a canary split was on (the canary analysis)
        self.generations: dict[int, GenerationStats] = {}
        self.outstanding: dict[str, int] = {}  # replica id -> requests (and websockets) in flight to it
        #: replica id -> [answers, failures (5xx or no answer), seconds summed]: the peer-outlier signal
        self.replicas: dict[str, list] = {}
        self.ejected: dict[str, float] = {}  # replica id -> monotonic time it may be tried again
        self.pools: dict[tuple[str, str, int], Pool] = {}  # (replica id, host, port) -> pool
        self.held = 0  # requests waiting for a first replica


class Gateway:
    """Route table + balancing + proxy + metrics. `update` may be called from any thread; requests
    are served on one event loop (the server's)."""

    def __init__(
        self,
        routes: Mapping[str, Iterable[Endpoint]] | None = None,
        *,
        timeout: float = 60.0,
        connect_timeout: float = 5.0,
        max_attempts: int = 3,
        retry_after: int = 1,
        eject_seconds: float = 2.0,
        seed: int | None = None,
        metrics_path: str | None = "/metrics",
        hold_timeout: float = 60.0,
        hold_limit: int = 256,
    ) -> None:
        self.timeout = timeout
        self.hold_timeout = hold_timeout
        self.hold_limit = hold_limit
        self._hold: frozenset[str] = frozenset()
        self._auth: dict[str, dict[str, float | None]] = {}  # route key -> token digest -> expiry
        self.connect_timeout = connect_timeout
        self.max_attempts = max(1, max_attempts)
        self.retry_after = retry_after
        self.eject_seconds = eject_seconds
        self.metrics_path = metrics_path
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._table = RouteTable()
        self._deps: dict[str, _Deployment] = {}
        self._busy: dict[tuple[str, int], int] = {}  # (host, port) -> requests being proxied there now
        self._loop: asyncio.AbstractEventLoop | None = None
        if routes:
            self.update(routes)

    # -- control plane side -------------------------------------------------------------------

    def update(self, routes: Mapping[str, Iterable[Endpoint]], hold: Iterable[str] = (),
               auth: Mapping[str, Mapping[str, float | None]] | None = None,
               splits: Mapping[str, Split] | None = None) -> None:
        """Replace the whole route table (thread-safe; takes effect for the next request).

        Requests to a deployment named in `hold` that has no ready replica wait (bounded: at most
        `hold_limit` of them, `hold_timeout` seconds each) for one to start, instead of a 503: it
        may scale from zero, and a waiting request is the demand that wakes it.

        A deployment named in `auth` answers only requests whose `Authorization: Bearer` token's
        SHA-256 (hex) is among its keys and not past its expiry (epoch seconds; None: never); the
        header is consumed here, never passed to the replica.

        A deployment named in `splits` is in a canary rollout: its canary generation's ready
        endpoints get `weight` percent of its requests, and what each generation answered is counted
        apart (`generation_stats`).
        """
        table = RouteTable(routes, splits)
        tokens = {name: dict(digests) for name, digests in (auth or {}).items()}
        with self._lock:
            for name in table.names():
                if name not in self._deps:
                    self._deps[name] = _Deployment(name)
            self._table = table
            self._hold = frozenset(hold)
            self._auth = tokens
            loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._prune)
            except RuntimeError:  # loop closed meanwhile
                pass

    def in_flight_to(self, host: str, port: int) -> int:
        """Requests being proxied to this replica address right now (any thread may ask): the
        control plane waits for 0 before it stops a replica the routes no longer include."""
        return self._busy.get((host, port), 0)

    def routes(self) -> dict[str, list[Endpoint]]:
        return self._table.as_dict()

    def stats(self, name: str) -> dict:
        """A snapshot of deployment `name`'s request metrics (zeros if it has had no traffic)."""
        d = self._deps.get(name)
        return (d.stats if d is not None else DeploymentStats(name)).snapshot()

    def replica_stats(self, name: str) -> dict[str, tuple[int, int, float]]:
        """Deployment `name`'s per-replica counters (cumulative): answers, failures, seconds."""
        d = self._deps.get(name)
        return {} if d is None else {rid: (c[0], c[1], c[2]) for rid, c in list(d.replicas.items())}

    def generation_stats(self, name: str) -> dict[int, dict]:
        """Deployment `name`'s per-generation counters (cumulative; counted while a split was on)."""
        d = self._deps.get(name)
        return {} if d is None else {g: s.snapshot() for g, s in list(d.generations.items())}

    def metrics_text(self) -> bytes:
        """Prometheus text exposition of every deployment's metrics."""
        return exposition(lambda: [d.stats for d in list(self._deps.values())])

    async def aclose(self) -> None:
        """Close pooled connections (call on shutdown, on the serving loop)."""
        for d in list(self._deps.values()):
            for pool in list(d.pools.values()):
                pool.close()
            d.pools.clear()

    def _prune(self) -> None:
        """Drop the pools, ejections and idle counters of replicas no longer in the table."""
        table = self._table
        for name, d in list(self._deps.items()):
            eps = table.endpoints(name)
            keys = {e.key for e in eps}
            for key in [k for k in d.pools if k not in keys]:
                d.pools.pop(key).close()
            ids = {e.replica_id for e in eps}
            for rid in [r for r in d.ejected if r not in ids]:
                del d.ejected[rid]
            for rid in [r for r, n in d.outstanding.items() if not n and r not in ids]:
                del d.outstanding[rid]
            for rid in [r for r in d.replicas if r not in ids]:
                del d.replicas[rid]

    # -- ASGI ---------------------------------------------------------------------------------

    def asgi(self, fallback: ASGIApp | None = None) -> ASGIApp:
        """An ASGI app serving /d/<name>/... (and `metrics_path`) and handing the rest to `fallback`
        (lifespan events included). Without a fallback other paths are 404."""
        fallback = fallback or _not_found_app
        metrics_path = self.metrics_path
        proxy = self._proxy

        async def app(scope, receive, send):
            kind = scope["type"]
            if kind == "http" or kind == "websocket":
                # the raw path decides (see routing.split_path): the decoded one could disagree
                raw = scope.get("raw_path") or scope["path"].encode()
                where = split_path(raw)
                if where is not None:
                    if kind == "http":
                        return await proxy(scope, receive, send, raw, where)
                    return await self._proxy_websocket(scope, receive, send, where)
                if kind == "http" and scope["path"] == metrics_path:
                    return await _respond(send, 200, self.metrics_text(),
                                          b"text/plain; version=0.0.4; charset=utf-8")
            return await fallback(scope, receive, send)

        app.gateway = self  # type: ignore[attr-defined]
        return app

    async def _proxy(self, scope, receive, send, raw: bytes, where: tuple[str, bytes]) -> None:
        client = scope.get("client")
        io = AsgiIO(receive, send)
        await self.forward(io, scope["method"], raw, scope["query_string"], scope["headers"],
                           client[0] if client else None, scope.get("scheme", "http"), where)

    async def forward(self, io, method: str, raw_path: bytes, query: bytes, headers, client_ip: str | None,
                      scheme: str = "http", where: tuple[str, bytes] | None = None) -> None:
        """Serve one /d/<name>/... request through `io` (AsgiIO, or the raw protocol's); `where` is
        `split_path(raw_path)` when the caller has it already."""
        if where is None:
            where = split_path(raw_path)
        if where is None:
            await io.problem(404, "Not found", f"no such path {raw_path.decode('latin-1')!r}; deployments are "
                             "served at /d/<name>/<path>")
            return
        name, target = where
        table = self._table
        ready = table.ready(name)
        if ready is None:
            await io.problem(404, "Unknown deployment",
                             f"no deployment named {name!r} is served by this gateway; "
                             "`cumulo deployment list` shows the deployments")
            return
        if self._auth:
            tokens = self._auth.get(name)
            if tokens is not None:
                headers, why = _check_token(tokens, headers, name)
                if why:
                    await io.problem(401, "Unauthorized", why, headers=[_CHALLENGE])
                    return
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        dep = self._deps.get(name)
        if dep is None:
            dep = self._deps.setdefault(name, _Deployment(name))
        stats = dep.stats
        t0 = time.monotonic()
        stats.started(t0)
        status = 500
        gen = None
        try:
            if not ready and name in self._hold:
                ready = await self._wait_for_replica(name, dep)
                stats.queued(time.monotonic() - t0)
                if io.gone():
                    status = 499
                    return
            else:
                stats.queue_buckets[0] += 1  # handed on without waiting
            if table._groups and ready:  # a canary rollout: which generation serves this request
                groups = table.groups(name)
                if groups is not None:
                    ready, gen = choose_group(groups, self._rng)
            if query:
                target = target + b"?" + query
            status = await self._exchange(io, method, target, headers, client_ip, scheme, name, dep, ready, loop)
        finally:
            elapsed = time.monotonic() - t0
            stats.finished(status, elapsed, t0)
            if gen is not None and status != 499:  # a client that left says nothing of the replica
                g = dep.generations.get(gen)
                if g is None:
                    g = dep.generations[gen] = GenerationStats()
                g.finished(status, elapsed)

    async def _wait_for_replica(self, name: str, dep: _Deployment):
        """Hold a request while a deployment scaled to zero starts its first replica."""
        if dep.held >= self.hold_limit:
            return self._table.ready(name) or ()
        dep.held += 1
        try:
            deadline = time.monotonic() + self.hold_timeout
            ready = self._table.ready(name) or ()
            while not ready and time.monotonic() < deadline and name in self._hold:
                await asyncio.sleep(0.05)
                ready = self._table.ready(name) or ()
            return ready
        finally:
            dep.held -= 1

    def _choose(self, dep: _Deployment, ready, tried: set[str]) -> Endpoint | None:
        """A ready replica of `dep` not yet tried, avoiding ejected ones unless nothing else is left."""
        exclude = tried
        ejected = dep.ejected
        if ejected:
            now = time.monotonic()
            for r in [r for r, until in ejected.items() if until <= now]:
                del ejected[r]
            if ejected:
                exclude = tried | ejected.keys()
        ep = pick(ready, dep.outstanding, self._rng, exclude)
        if ep is None and exclude is not tried:  # every candidate is ejected: try them anyway
            ep = pick(ready, dep.outstanding, self._rng, tried)
        return ep

    async def _exchange(self, io, method, target, headers, client_ip, scheme, name, dep, ready, loop) -> int:
        # the request head, minus framing
        lines = [method.encode(), b" ", target, b" HTTP/1.1\r\n"]
        client_len = None
        xff = None
        conn_tokens = None
        for k, v in headers:
            if k in _HOP_REQ:
                if k == b"content-length":
                    client_len = v
                elif k == b"x-forwarded-for":
                    xff = v
                elif k == b"connection":
                    conn_tokens = v
                continue
            lines += (k, b": ", v, b"\r\n")
        if conn_tokens:  # headers named in Connection are hop-by-hop too
            named = {t.strip().lower() for t in conn_tokens.split(b",")}
            lines = _drop_named(lines, named)
        ip = client_ip.encode() if client_ip else b"unknown"
        lines += (b"x-forwarded-for: ", xff + b", " + ip if xff else ip, b"\r\n",
                  b"x-forwarded-proto: ", scheme.encode(), b"\r\n",
                  b"x-forwarded-prefix: /d/", name.encode(), b"\r\n")
        # the first piece of the body decides the framing
        first = await io.read()
        if first is None:
            return 499  # the client went away
        body, more = first
        if not more:
            if body or client_len is not None:
                lines += (b"content-length: ", str(len(body)).encode(), b"\r\n\r\n", body)
            else:
                lines.append(b"\r\n")
            chunked = False
        elif client_len is not None:
            lines += (b"content-length: ", client_len, b"\r\n\r\n", body)
            chunked = False
        else:
            lines += (b"transfer-encoding: chunked\r\n\r\n",
                      b"%x\r\n%s\r\n" % (len(body), body) if body else b"")
            chunked = True
        request = b"".join(lines)
        replayable = not more

        outstanding = dep.outstanding
        tried: set[str] = set()
        attempts = 0
        last_error: Exception | None = None
        while True:
            ep = self._choose(dep, ready, tried) if dep.ejected else pick(ready, outstanding, self._rng, tried)
            if ep is None:
                if not tried:
                    return await io.problem(503, "No ready replica",
                                            f"deployment {name!r} has no ready replica right now; retry shortly "
                                            "(`cumulo deployment status` shows why)",
                                            headers=[(b"retry-after", str(self.retry_after).encode())])
                return await io.problem(502, "Replicas unreachable",
                                        f"could not reach a replica of {name!r}: {last_error}")
            attempts += 1
            rid = ep.replica_id
            tried.add(rid)
            outstanding[rid] = outstanding.get(rid, 0) + 1
            addr = (ep.host, ep.port)
            busy = self._busy
            busy[addr] = busy.get(addr, 0) + 1
            counts = dep.replicas.get(rid)
            if counts is None:
                counts = dep.replicas[rid] = [0, 0, 0.0]
            t0 = time.monotonic()
            try:
                result = await self._attempt(io, dep, ep, request, chunked, more, method == "HEAD", loop)
                if result != 499:  # a client that left says nothing of the replica
                    counts[0] += 1
                    counts[1] += result >= 500
                    counts[2] += time.monotonic() - t0
            except _SlowClient:
                return await io.problem(408, "Request body timed out",
                                        f"the client sent no part of the request body for {self.timeout:g} s; "
                                        "send the body without pauses that long",
                                        headers=[(b"connection", b"close")])
            except UpstreamError as exc:
                if exc.client_gone:
                    return 499  # nobody to answer; not the replica's failure
                counts[0] += 1
                counts[1] += 1
                counts[2] += time.monotonic() - t0
                last_error = exc
                retry = attempts < self.max_attempts and (
                    exc.connect or (exc.got_nothing and not exc.timeout and replayable
                                    and (method in _IDEMPOTENT or exc.stale)))
                if exc.connect:
                    dep.ejected[rid] = time.monotonic() + self.eject_seconds
                if exc.timeout:
                    return await io.problem(504, "Replica timed out",
                                            f"a replica of {name!r} timed out: {exc} (the gateway's timeout "
                                            f"is {self.timeout:g} s)")
                if retry:
                    dep.stats.retries += 1
                    log.debug("retrying %s %s on another replica: %s", method, name, exc)
                    continue
                return await io.problem(502, "Replica failed", f"a replica of {name!r} failed before answering: {exc}")
            finally:
                outstanding[rid] -= 1
                left = busy[addr] - 1
                if left:
                    busy[addr] = left
                else:
                    del busy[addr]
            if rid in dep.ejected:
                del dep.ejected[rid]
            return result

    async def _attempt(self, io, dep, ep, request, chunked, more, head_only, loop) -> int:
        """One exchange with one replica; returns the status sent to the client."""
        key = (ep.replica_id, ep.host, ep.port)
        pool = dep.pools.get(key)
        if pool is None:
            pool = dep.pools[key] = Pool(ep.host, ep.port)
        conn = await pool.acquire(loop, self.connect_timeout)
        stale = conn.reused and time.monotonic() - conn.idle_since > _STALE_IDLE
        head = conn.begin(head_only=head_only)
        conn.write(request)
        if more:
            await self._pump_body(conn, io, chunked)
        io.watch(conn)  # from here a client that goes away aborts the exchange
        timer = _Timeout()  # the wait for the head starts once the whole body is sent
        th = loop.call_later(self.timeout, timer, conn)
        try:
            await head
        except UpstreamError as exc:
            io.stop_watching()
            exc.timeout = timer.fired
            exc.stale = stale
            raise
        except BaseException:
            io.stop_watching()
            raise
        finally:
            th.cancel()
        status = conn.status
        headers = conn.headers  # minus hop-by-hop ones (see _upstream.DROPPED)
        if conn.connection_header is not None:  # headers named in Connection are hop-by-hop too
            headers = _without_named(headers, conn.connection_header)
        if conn.done:  # the whole response is here: the common case for small responses
            await io.respond(status, headers, conn.take())  # (stops watching)
            conn.idle_since = time.monotonic()
            pool.release(conn)
            return status
        try:
            await io.start(status, headers)
            while True:
                data = conn.take()
                if conn.done:
                    await io.end(data)
                    break
                if data:
                    await io.chunk(data)
                    continue
                timer = _Timeout()
                th = loop.call_later(self.timeout, timer, conn)
                try:
                    await conn.wait_body()
                except UpstreamError as exc:
                    if exc.client_gone:
                        return 499
                    # too late for a 504 or a retry: the client has the head. Closing the client's
                    # connection makes it see a truncated body rather than a complete-looking one.
                    log.warning("response from %s:%s cut short: %s", pool.host, pool.port, exc)
                    io.cut()
                    return status
                finally:
                    th.cancel()
        finally:
            io.stop_watching()
        conn.idle_since = time.monotonic()
        pool.release(conn)
        return status

    async def _pump_body(self, conn: Connection, io, chunked: bool) -> None:
        """Stream the rest of the request body to the replica; the timeout bounds every gap."""
        timeout = self.timeout
        while True:
            try:
                async with asyncio.timeout(timeout):
                    got = await io.read()
            except TimeoutError:
                conn.abort("the client stopped sending the request body")
                raise _SlowClient from None
            if got is None:
                conn.abort("the client went away while sending the body", client_gone=True)
                err = UpstreamError("the client went away", got_nothing=False)
                err.client_gone = True
                raise err
            body, more = got
            if chunked:
                out = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + (b"" if more else b"0\r\n\r\n")
            else:
                out = body
            if out:
                if conn.closed:
                    raise conn.error or UpstreamError("the replica closed the connection",
                                                      got_nothing=not conn.got_bytes)
                conn.write(out)
                try:
                    async with asyncio.timeout(timeout):
                        await conn.drain()
                except TimeoutError:
                    conn.abort("it stopped reading the request body")
                    err = conn.error or UpstreamError("it stopped reading the request body", got_nothing=False)
                    err.timeout = True
                    raise err from None
            if not more:
                return

    async def _proxy_websocket(self, scope, receive, send, where: tuple[str, bytes]) -> None:
        """Proxy one websocket under /d/<name>/ to a ready replica (see websocket.py). The handshake
        counts as the request in the metrics (101 when it succeeds); an open session counts as load
        on its replica for the balancing choice."""
        name, target = where
        if scope.get("query_string"):
            target = target + b"?" + scope["query_string"]
        if (await receive())["type"] != "websocket.connect":
            return
        ready = self._table.ready(name)
        tokens = self._auth.get(name) if ready is not None else None
        if tokens is not None:
            headers, why = _check_token(tokens, scope["headers"], name)
            if why:
                await _ws_problem(scope, send, 401, "Unauthorized", why)
                return
            scope = {**scope, "headers": headers}
        if ready is None:
            await _ws_problem(scope, send, 404, "Unknown deployment",
                                 f"no deployment named {name!r} is served by this gateway; "
                                 "`cumulo deployment list` shows the deployments")
            return
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        dep = self._deps.get(name)
        if dep is None:
            dep = self._deps.setdefault(name, _Deployment(name))
        stats = dep.stats
        t0 = time.monotonic()
        stats.started(t0)
        status, opened = 500, None
        try:
            if not ready and name in self._hold:
                ready = await self._wait_for_replica(name, dep)
                stats.queued(time.monotonic() - t0)
            else:
                stats.queue_buckets[0] += 1
            status, opened = await self._open_websocket(scope, send, name, target, dep, ready)
        finally:
            stats.finished(status, time.monotonic() - t0, t0)
        if opened is None:
            return
        rid, upstream = opened
        dep.outstanding[rid] = dep.outstanding.get(rid, 0) + 1
        try:
            await websocket.relay(upstream, receive, send)
        finally:
            dep.outstanding[rid] -= 1

    async def _open_websocket(self, scope, send, name, target, dep, ready):
        """Open the upstream websocket (retrying refused connections elsewhere) and accept the client's;
        or answer the client's handshake with why not. Returns (status, (replica id, upstream) or None)."""
        client = scope.get("client")
        headers = websocket.request_headers(scope["headers"], client[0] if client else None,
                                            scope.get("scheme", "ws"), name)
        tried: set[str] = set()
        last_error: Exception | None = None
        while True:
            ep = self._choose(dep, ready, tried)
            if ep is None:
                if not tried:
                    return await _ws_problem(
                        scope, send, 503, "No ready replica",
                        f"deployment {name!r} has no ready replica right now; retry shortly "
                        "(`cumulo deployment status` shows why)",
                        headers=[(b"retry-after", str(self.retry_after).encode())]), None
                return await _ws_problem(scope, send, 502, "Replicas unreachable",
                                            f"could not reach a replica of {name!r}: {last_error}"), None
            rid = ep.replica_id
            tried.add(rid)
            dep.outstanding[rid] = dep.outstanding.get(rid, 0) + 1
            try:
                upstream = await websocket.open_upstream(ep, target, scope.get("subprotocols") or (), headers,
                                                         self.connect_timeout, self.timeout)
            except websocket.Refused as exc:  # the replica answered the handshake with an HTTP status
                return await websocket.relay_refusal(scope, send, exc), None
            except websocket.Unreachable as exc:
                last_error = exc
                dep.ejected[rid] = time.monotonic() + self.eject_seconds
                if len(tried) < self.max_attempts:
                    dep.stats.retries += 1
                    continue
                return await _ws_problem(scope, send, 502, "Replicas unreachable",
                                            f"could not reach a replica of {name!r}: {exc}"), None
            except websocket.HandshakeFailed as exc:
                if exc.timeout:
                    return await _ws_problem(scope, send, 504, "Replica timed out",
                                                f"a replica of {name!r} did not complete the websocket handshake "
                                                f"within {self.timeout:g} s"), None
                return await _ws_problem(scope, send, 502, "Replica failed",
                                            f"a replica of {name!r} failed the websocket handshake: {exc}"), None
            finally:
                dep.outstanding[rid] -= 1
            if rid in dep.ejected:
                del dep.ejected[rid]
            await websocket.accept(send, upstream)
            return 101, (rid, upstream)


_CHALLENGE = (b"www-authenticate", b'Bearer realm="cumulo"')


#: Authorization header value -> SHA-256 hex of its token (the hash is the costly part of a check;
#: bounded: cleared when it fills)
_DIGESTS: dict[bytes, str] = {}
_BEARER = (b"Bearer ", b"bearer ", b"BEARER ")


def _check_token(tokens: Mapping[str, float | None], headers, name: str):
    """(the headers without Authorization, None) when it carries a token made for this deployment,
    else (headers, why not). On the hot path of `auth: token` deployments: one pass over the headers,
    a dict lookup for a token seen before."""
    i = 0
    for k, v in headers:
        if k == b"authorization":
            break
        i += 1
    else:
        v = None
    if v is None or v[:7] not in _BEARER:
        return headers, (f"deployment {name!r} needs a token: send `Authorization: Bearer <token>` with a token "
                         f"made by `cumulo token create NAME --deployment {name.split('.')[0]}`")
    digest = _DIGESTS.get(v)
    if digest is None:
        if len(_DIGESTS) >= 4096:
            _DIGESTS.clear()
        digest = _DIGESTS[v] = hashlib.sha256(v[7:].strip()).hexdigest()
    expiry = tokens.get(digest, 0.0)
    if expiry is not None and (expiry == 0.0 or expiry <= time.time()):
        return headers, f"this token does not open deployment {name!r} (unknown, revoked, expired or made for another)"
    kept = list(headers)
    del kept[i]
    return kept, None


class AsgiIO:
    """The client side of one proxied request, over ASGI."""

    __slots__ = ("receive", "send", "watcher", "conn")

    def __init__(self, receive, send) -> None:
        self.receive = receive
        self.send = send
        self.watcher: asyncio.TimerHandle | asyncio.Task | None = None
        self.conn: Connection | None = None

    async def read(self) -> tuple[bytes, bool] | None:
        msg = await self.receive()
        if msg["type"] == "http.disconnect":
            return None
        return msg.get("body", b""), msg.get("more_body", False)

    def gone(self) -> bool:
        return False  # over ASGI the next read says so

    def watch(self, conn: Connection) -> None:
        """Abort `conn` if the client goes away (called once the request body has been read). ASGI
        tells only a reader of `receive`, and a task for that would cost more than the rest of a
        small request, so the watch starts once the response is slower than WATCH_AFTER."""
        self.conn = conn
        self.watcher = asyncio.get_running_loop().call_later(WATCH_AFTER, self._watch)

    def _watch(self) -> None:
        self.watcher = asyncio.get_running_loop().create_task(_watch_disconnect(self.receive, self.conn))

    async def respond(self, status: int, headers, body: bytes) -> None:
        """The whole response at once (this ends watching for the client going away)."""
        if self.watcher is not None:
            self.stop_watching()
        await self.send({"type": "http.response.start", "status": status, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})

    async def start(self, status: int, headers) -> None:
        await self.send({"type": "http.response.start", "status": status, "headers": headers})

    async def chunk(self, data: bytes) -> None:
        await self.send({"type": "http.response.body", "body": data, "more_body": True})

    async def end(self, data: bytes) -> None:
        await self.send({"type": "http.response.body", "body": data})

    def cut(self) -> None:
        pass  # returning without finishing the response makes uvicorn close the connection

    def stop_watching(self) -> None:
        if self.watcher is not None:
            self.watcher.cancel()
            self.watcher = None
            self.conn = None

    async def problem(self, status: int, title: str, detail: str, headers=()) -> int:
        body, hdrs = _problem_parts(status, title, detail, headers)
        await self.respond(status, hdrs, body)
        return status


async def _watch_disconnect(receive, conn: Connection) -> None:
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            conn.abort("the client went away", client_gone=True)
            return


def _without_named(headers: list, connection: bytes) -> list:
    """`headers` minus those named in a Connection header's value (RFC 9110 7.6.1)."""
    named = {t.strip().lower() for t in connection.split(b",")}
    return [(k, v) for k, v in headers if k not in named]


def _drop_named(lines: list[bytes], named: set[bytes]) -> list[bytes]:
    """Remove header lines whose names are in `named` from a flat [k, b': ', v, b'\\r\\n', ...] list
    (the first 4 items are the request line)."""
    out = lines[:4]
    for i in range(4, len(lines), 4):
        if lines[i] not in named:
            out += lines[i:i + 4]
    return out


async def _respond(send, status: int, body: bytes, ctype: bytes, headers=()) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


def _problem_parts(status: int, title: str, detail: str, headers=()):
    body = json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail}).encode()
    return body, [(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode()),
                  *headers]


async def _ws_problem(scope, send, status: int, title: str, detail: str, headers=()) -> int:
    """Refuse a websocket handshake with a problem+json response."""
    body, hdrs = _problem_parts(status, title, detail, headers)
    return await websocket.deny(scope, send, status, body, hdrs)


async def _problem(send, status: int, title: str, detail: str, headers=()) -> int:
    body, hdrs = _problem_parts(status, title, detail, headers)
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})
    return status


async def _not_found_app(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "http":
        await _problem(send, 404, "Not found",
                       f"no such path {scope['path']!r}; deployments are served at /d/<name>/<path>")
    elif scope["type"] == "websocket":
        await receive()
        await _ws_problem(scope, send, 404, "Not found",
                          f"no such path {scope['path']!r}; deployments are served at /d/<name>/<path>")
