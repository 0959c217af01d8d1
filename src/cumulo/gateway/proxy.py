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
streamed too. The timeout bounds the wait for the response head and every gap between body chunks
(504 when nothing was sent yet).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from urllib.parse import unquote

from cumulo.gateway._upstream import Connection, Pool, UpstreamError
from cumulo.gateway.metrics import DeploymentStats, exposition
from cumulo.gateway.routing import Endpoint, RouteTable, pick

__all__ = ["Gateway"]

log = logging.getLogger("cumulo.gateway")

PREFIX = "/d/"
# hop-by-hop headers (RFC 9110 7.6.1) and those the proxy sets itself
_HOP_REQ = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding",
                      b"upgrade", b"proxy-authorization", b"expect", b"content-length", b"x-forwarded-for",
                      b"x-forwarded-proto", b"x-forwarded-prefix"})
_HOP_RESP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding",
                       b"upgrade", b"proxy-authenticate", b"date", b"server"})
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_STALE_IDLE = 1.0  # a pooled connection idle this long may have been closed by the replica meanwhile

ASGIApp = Callable


class _Timeout:
    """Aborts the exchange on `conn` when it fires (a cheap loop timer instead of asyncio.timeout)."""

    __slots__ = ("fired",)

    def __init__(self) -> None:
        self.fired = False

    def __call__(self, conn: Connection) -> None:
        self.fired = True
        conn.abort("the replica did not answer in time")


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
        self._held: dict[str, int] = {}
        self.connect_timeout = connect_timeout
        self.max_attempts = max(1, max_attempts)
        self.retry_after = retry_after
        self.eject_seconds = eject_seconds
        self.metrics_path = metrics_path
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._table = RouteTable()
        self._stats: dict[str, DeploymentStats] = {}
        self._pools: dict[tuple[str, str, int], Pool] = {}
        self._outstanding: dict[str, int] = {}
        self._busy: dict[tuple[str, int], int] = {}  # (host, port) -> requests being proxied there now
        self._ejected: dict[str, float] = {}  # replica id -> monotonic time it may be tried again
        self._loop: asyncio.AbstractEventLoop | None = None
        if routes:
            self.update(routes)

    # -- control plane side -------------------------------------------------------------------

    def update(self, routes: Mapping[str, Iterable[Endpoint]], hold: Iterable[str] = ()) -> None:
        """Replace the whole route table (thread-safe; takes effect for the next request).

        Requests to a deployment named in `hold` that has no ready replica wait (bounded: at most
        `hold_limit` of them, `hold_timeout` seconds each) for one to start, instead of a 503: it
        may scale from zero, and a waiting request is the demand that wakes it.
        """
        table = RouteTable(routes)
        with self._lock:
            self._table = table
            self._hold = frozenset(hold)
            for name in table.names():
                if name not in self._stats:
                    self._stats[name] = DeploymentStats(name)
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
        s = self._stats.get(name)
        return (s or DeploymentStats(name)).snapshot()

    def metrics_text(self) -> bytes:
        """Prometheus text exposition of every deployment's metrics."""
        return exposition(lambda: list(self._stats.values()))

    async def aclose(self) -> None:
        """Close pooled connections (call on shutdown, on the serving loop)."""
        for pool in list(self._pools.values()):
            pool.close()
        self._pools.clear()

    def _prune(self) -> None:
        keys = self._table.keys()
        for key in [k for k in self._pools if k not in keys]:
            self._pools.pop(key).close()
        ids = {k[0] for k in keys}
        for rid in [r for r in self._ejected if r not in ids]:
            del self._ejected[rid]

    # -- ASGI ---------------------------------------------------------------------------------

    def asgi(self, fallback: ASGIApp | None = None) -> ASGIApp:
        """An ASGI app serving /d/<name>/... (and `metrics_path`) and handing the rest to `fallback`
        (lifespan events included). Without a fallback other paths are 404."""
        fallback = fallback or _not_found_app
        metrics_path = self.metrics_path
        proxy = self._proxy

        async def app(scope, receive, send):
            if scope["type"] == "http":
                path = scope["path"]
                if path.startswith(PREFIX):
                    return await proxy(scope, receive, send)
                if path == metrics_path:
                    return await _respond(send, 200, self.metrics_text(),
                                          b"text/plain; version=0.0.4; charset=utf-8")
            return await fallback(scope, receive, send)

        app.gateway = self  # type: ignore[attr-defined]
        return app

    async def _proxy(self, scope, receive, send) -> None:
        raw = scope.get("raw_path") or scope["path"].encode()
        client = scope.get("client")
        io = AsgiIO(receive, send)
        await self.forward(io, scope["method"], raw, scope["query_string"], scope["headers"],
                           client[0] if client else None, scope.get("scheme", "http"))

    async def forward(self, io, method: str, raw_path: bytes, query: bytes, headers, client_ip: str | None,
                      scheme: str = "http") -> None:
        """Serve one /d/<name>/... request through `io` (AsgiIO, or the raw protocol's)."""
        slash = raw_path.find(b"/", 3)
        name_raw = raw_path[3:] if slash < 0 else raw_path[3:slash]
        target = b"/" if slash < 0 else raw_path[slash:]
        name = unquote(name_raw.decode("latin-1")) if b"%" in name_raw else name_raw.decode("latin-1")
        ready = self._table.ready(name)
        if ready is None:
            await io.problem(404, "Unknown deployment",
                             f"no deployment named {name!r} is served by this gateway; "
                             "`cumulo deployment list` shows the deployments")
            return
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        stats = self._stats.get(name)
        if stats is None:
            stats = self._stats.setdefault(name, DeploymentStats(name))
        t0 = time.monotonic()
        stats.started(t0)
        status = 500
        try:
            if not ready and name in self._hold:
                ready = await self._wait_for_replica(name)
            if query:
                target = target + b"?" + query
            status = await self._exchange(io, method, target, headers, client_ip, scheme, name, ready, loop, stats)
        finally:
            stats.finished(status, time.monotonic() - t0)

    async def _wait_for_replica(self, name: str):
        """Hold a request while a deployment scaled to zero starts its first replica."""
        held = self._held.get(name, 0)
        if held >= self.hold_limit:
            return self._table.ready(name) or ()
        self._held[name] = held + 1
        try:
            deadline = time.monotonic() + self.hold_timeout
            ready = self._table.ready(name) or ()
            while not ready and time.monotonic() < deadline and name in self._hold:
                await asyncio.sleep(0.05)
                ready = self._table.ready(name) or ()
            return ready
        finally:
            self._held[name] -= 1

    async def _exchange(self, io, method, target, headers, client_ip, scheme, name, ready, loop, stats) -> int:
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

        outstanding = self._outstanding
        tried: set[str] = set()
        attempts = 0
        last_error: Exception | None = None
        while True:
            exclude = tried
            if self._ejected:
                live = self._live_ejections()
                if live:
                    exclude = tried | live
            ep = pick(ready, outstanding, self._rng, exclude)
            if ep is None and exclude is not tried:  # every candidate is ejected: try them anyway
                ep = pick(ready, outstanding, self._rng, tried)
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
            try:
                result = await self._attempt(io, ep, request, chunked, more, method == "HEAD", loop)
            except UpstreamError as exc:
                last_error = exc
                retry = attempts < self.max_attempts and (
                    exc.connect or (exc.got_nothing and not exc.timeout and replayable
                                    and (method in _IDEMPOTENT or exc.stale)))
                if exc.connect:
                    self._ejected[rid] = time.monotonic() + self.eject_seconds
                if exc.timeout:
                    return await io.problem(504, "Replica timed out",
                                            f"a replica of {name!r} sent no response within {self.timeout:g} s")
                if retry:
                    stats.retries += 1
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
            if rid in self._ejected:
                del self._ejected[rid]
            return result

    def _live_ejections(self) -> set[str]:
        now = time.monotonic()
        live = {r for r, until in self._ejected.items() if until > now}
        for r in [r for r in self._ejected if r not in live]:
            del self._ejected[r]
        return live

    def _pool(self, ep: Endpoint) -> Pool:
        key = (ep.replica_id, ep.host, ep.port)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = Pool(ep.host, ep.port)
        return pool

    async def _attempt(self, io, ep, request, chunked, more, head_only, loop) -> int:
        """One exchange with one replica; returns the status sent to the client."""
        pool = self._pool(ep)
        conn = await pool.acquire(loop, self.connect_timeout)
        stale = conn.reused and time.monotonic() - conn.idle_since > _STALE_IDLE
        head = conn.begin(head_only=head_only)
        timer = _Timeout()
        th = loop.call_later(self.timeout, timer, conn)
        try:
            conn.write(request)
            if more:
                await _pump_body(conn, io, chunked)
            try:
                await head
            except UpstreamError as exc:
                exc.timeout = timer.fired
                exc.stale = stale
                raise
        finally:
            th.cancel()
        status = conn.status
        headers = [(k, v) for k, v in conn.headers if k not in _HOP_RESP]
        if conn.done:  # the whole response is here: the common case for small responses
            await io.respond(status, headers, conn.take())
            conn.idle_since = time.monotonic()
            pool.release(conn)
            return status
        await io.start(status, headers, conn)
        try:
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


class AsgiIO:
    """The client side of one proxied request, over ASGI."""

    __slots__ = ("receive", "send", "watcher")

    def __init__(self, receive, send) -> None:
        self.receive = receive
        self.send = send
        self.watcher: asyncio.Task | None = None

    async def read(self) -> tuple[bytes, bool] | None:
        msg = await self.receive()
        if msg["type"] == "http.disconnect":
            return None
        return msg.get("body", b""), msg.get("more_body", False)

    async def respond(self, status: int, headers, body: bytes) -> None:
        await self.send({"type": "http.response.start", "status": status, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})

    async def start(self, status: int, headers, conn: Connection) -> None:
        await self.send({"type": "http.response.start", "status": status, "headers": headers})
        self.watcher = asyncio.get_running_loop().create_task(_watch_disconnect(self.receive, conn))

    async def chunk(self, data: bytes) -> None:
        await self.send({"type": "http.response.body", "body": data, "more_body": True})

    async def end(self, data: bytes) -> None:
        await self.send({"type": "http.response.body", "body": data})

    def cut(self) -> None:
        pass  # returning without finishing the response makes uvicorn close the connection

    def stop_watching(self) -> None:
        if self.watcher is not None:
            self.watcher.cancel()

    async def problem(self, status: int, title: str, detail: str, headers=()) -> int:
        body, hdrs = _problem_parts(status, title, detail, headers)
        await self.respond(status, hdrs, body)
        return status


async def _pump_body(conn: Connection, io, chunked: bool) -> None:
    while True:
        got = await io.read()
        if got is None:
            conn.abort("the client went away while sending the body")
            raise UpstreamError("the client went away", got_nothing=False)
        body, more = got
        if chunked:
            out = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + (b"" if more else b"0\r\n\r\n")
        else:
            out = body
        if out:
            if conn.closed:
                raise conn.error or UpstreamError("the replica closed the connection", got_nothing=not conn.got_bytes)
            conn.write(out)
            await conn.drain()
        if not more:
            return


async def _watch_disconnect(receive, conn: Connection) -> None:
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            conn.abort("the client went away")
            return


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
