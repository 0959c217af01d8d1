"""Serving the gateway: uvicorn with a fast path for proxied requests.

Under plain ASGI every proxied request pays uvicorn's per-request machinery: a scope dict, a
RequestResponseCycle, message dicts, and two socket writes per response (head, then body). On this
2-core machine that cost capped the gateway below half the direct throughput. `http_protocol(gw)`
returns a subclass of uvicorn's httptools protocol that serves the common `/d/` request itself,
straight from the parser callbacks: a small, fully received request (no body or a Content-Length
body up to 64 KiB, HTTP/1.1, no Expect or Upgrade) is forwarded as bytes and its response written
to the client in one write. Everything else (the control plane's API, the console, websockets,
large or chunked uploads, HTTP/1.0, a percent-encoded /d/ prefix) goes through uvicorn's ordinary
ASGI path untouched, and the ASGI app from `Gateway.asgi()` still serves /d/ for those requests,
streaming their bodies (and proxying websockets).

`serve(..., reuse_port=True)` binds with SO_REUSEPORT, so several gateway processes can share one
port (the kernel spreads new connections over them).

    uvicorn.run(gw.asgi(control_plane_app), host=..., port=..., http=http_protocol(gw),
                loop="uvloop")

Pipelining keeps its order: while a fast request is in flight the connection's `cycle` is a stand-in
that uvicorn sees as an unfinished response, so an ASGI request behind it waits in uvicorn's own
pipeline; a fast request behind an unfinished ASGI response waits in ours.
"""

from __future__ import annotations

import logging
import socket
from collections import deque
from http import HTTPStatus

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from cumulo.gateway._upstream import Connection
from cumulo.gateway.proxy import Gateway, _problem_parts

__all__ = ["http_protocol", "listen_socket", "serve", "uvicorn_config"]

log = logging.getLogger("cumulo.gateway")

FAST_BODY_LIMIT = 64 * 1024
_STATUS_LINES = {s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode()) for s in HTTPStatus}


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    return line if line is not None else b"HTTP/1.1 %d \r\n" % status


class _FastCycle:
    """Stands in for uvicorn's RequestResponseCycle while a fast request is in flight (see module doc)."""

    __slots__ = ("response_complete", "keep_alive", "disconnected", "conn", "message_event")

    def __init__(self, keep_alive: bool) -> None:
        self.response_complete = False
        self.keep_alive = keep_alive
        self.disconnected = False
        self.conn: Connection | None = None  # the upstream exchange, aborted if the client goes away
        self.message_event = self  # uvicorn calls cycle.message_event.set() when the client goes away

    def set(self) -> None:
        if self.disconnected and self.conn is not None and not self.response_complete:
            self.conn.abort("the client went away", client_gone=True)


class RawIO:
    """The client side of one fast-path request: writes straight to the client's transport."""

    __slots__ = ("proto", "body", "cycle", "chunked", "head_only")

    def __init__(self, proto, body: bytes, cycle: _FastCycle, head_only: bool) -> None:
        self.proto = proto
        self.body = body
        self.cycle = cycle
        self.chunked = False
        self.head_only = head_only

    async def read(self):
        return self.body, False

    def gone(self) -> bool:
        return self.cycle.disconnected

    def watch(self, conn: Connection) -> None:
        self.cycle.conn = conn  # uvicorn tells the cycle when the client goes away

    def _write(self, data: bytes) -> None:
        t = self.proto.transport
        if not t.is_closing():  # the client may have gone while the replica answered
            t.write(data)

    def _head(self, status: int, headers, extra: bytes) -> list[bytes]:
        out = [_status_line(status)]
        for k, v in self.proto.server_state.default_headers:  # date, server (as uvicorn sends them)
            out += (k, b": ", v, b"\r\n")
        for k, v in headers:
            out += (k, b": ", v, b"\r\n")
        if not self.cycle.keep_alive:
            out.append(b"connection: close\r\n")
        out += (extra, b"\r\n")
        return out

    async def respond(self, status: int, headers, body: bytes) -> None:
        """The whole response in one write (this ends watching for the client going away)."""
        self.cycle.conn = None
        has_len = any(k == b"content-length" for k, _ in headers)
        extra = b"" if has_len or status in (204, 304) or (100 <= status < 200) \
            else b"content-length: %d\r\n" % len(body)
        out = self._head(status, headers, extra)
        if not self.head_only:
            out.append(body)
        self._write(b"".join(out))

    async def start(self, status: int, headers) -> None:
        has_len = any(k == b"content-length" for k, _ in headers)
        self.chunked = not has_len and not self.head_only and status not in (204, 304)
        self._write(b"".join(self._head(status, headers, b"transfer-encoding: chunked\r\n" if self.chunked else b"")))

    async def chunk(self, data: bytes) -> None:
        self._write(b"%x\r\n%s\r\n" % (len(data), data) if self.chunked else data)
        flow = self.proto.flow
        if flow.write_paused:
            await flow.drain()

    async def end(self, data: bytes) -> None:
        if self.chunked:
            self._write((b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data)) if data else b"0\r\n\r\n")
        elif data:
            self._write(data)

    def cut(self) -> None:
        self.cycle.keep_alive = False
        self.proto.transport.close()

    def stop_watching(self) -> None:
        self.cycle.conn = None

    async def problem(self, status: int, title: str, detail: str, headers=()) -> int:
        body, hdrs = _problem_parts(status, title, detail, headers)
        await self.respond(status, hdrs, body)
        return status


def http_protocol(gateway: Gateway) -> type[HttpToolsProtocol]:
    """A uvicorn `http=` protocol class that serves small /d/ requests on a fast path."""

    class GatewayHttpProtocol(HttpToolsProtocol):
        _gateway = gateway

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self._fast: list | None = None  # the fast request being parsed: [method, body parts, keep_alive]
            self._waiting: deque = deque()  # fast requests behind an unfinished response

        def on_headers_complete(self) -> None:
            url = self.url
            if url.startswith(b"/d/") and self._fast_ok():
                p = self.parser
                self._fast = [p.get_method().decode("ascii"), url, self.headers, [], p.should_keep_alive()]
                return
            self._fast = None
            super().on_headers_complete()

        def _fast_ok(self) -> bool:
            p = self.parser
            if p.get_http_version() != "1.1" or p.should_upgrade() or self.expect_100_continue:
                return False
            for k, v in self.headers:
                if k == b"content-length":
                    try:
                        if int(v) > FAST_BODY_LIMIT:
                            return False
                    except ValueError:
                        return False
                elif k == b"transfer-encoding":
                    return False
            return True

        def on_body(self, body: bytes) -> None:
            if self._fast is not None:
                self._fast[3].append(body)
            else:
                super().on_body(body)

        def on_message_complete(self) -> None:
            req = self._fast
            if req is None:
                super().on_message_complete()
                return
            self._fast = None
            cycle = self.cycle
            if cycle is not None and not cycle.response_complete:  # behind an unfinished response
                self.flow.pause_reading()
                self._waiting.append(req)
            else:
                self._dispatch(req)

        def _dispatch(self, req: list) -> None:
            cycle = _FastCycle(req[4])
            self.cycle = cycle  # uvicorn now queues ASGI requests behind this one
            task = self.loop.create_task(self._run(req, cycle))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

        async def _run(self, req: list, cycle: _FastCycle) -> None:
            method, url, headers, parts, _ = req
            q = url.find(b"?")
            raw_path, query = (url, b"") if q < 0 else (url[:q], url[q + 1:])
            hash_ = raw_path.find(b"#")
            if hash_ >= 0:
                raw_path = raw_path[:hash_]
            body = parts[0] if len(parts) == 1 else b"".join(parts)
            io = RawIO(self, body, cycle, method == "HEAD")
            client = self.client
            try:
                await self._gateway.forward(io, method, raw_path, query, headers,
                                            client[0] if client else None, self.scheme or "http")
            except Exception:
                log.exception("gateway: unexpected error")
                cycle.keep_alive = False
                self.transport.close()
            finally:
                cycle.response_complete = True
            if self.transport.is_closing():
                return
            if not cycle.keep_alive:
                self.transport.close()
                return
            self.on_response_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self._waiting and not self.transport.is_closing():
                cycle = self.cycle
                if cycle is None or cycle.response_complete:
                    self._unset_keepalive_if_required()
                    self._dispatch(self._waiting.popleft())
                    if not self._waiting:
                        self.flow.resume_reading()

    GatewayHttpProtocol.__qualname__ = GatewayHttpProtocol.__name__ = "GatewayHttpProtocol"
    return GatewayHttpProtocol


def uvicorn_config(gateway: Gateway, fallback=None, *, host: str = "127.0.0.1", port: int = 8300, **kwargs):
    """A uvicorn Config serving `gateway.asgi(fallback)` with the fast path."""
    kwargs.setdefault("log_level", "warning")
    kwargs.setdefault("access_log", False)
    kwargs.setdefault("proxy_headers", False)  # the gateway adds X-Forwarded-For itself, from the real peer
    return uvicorn.Config(gateway.asgi(fallback), host=host, port=port, http=http_protocol(gateway),
                          loop="uvloop", lifespan="auto" if fallback is not None else "off", **kwargs)


def listen_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A bound TCP socket for uvicorn (`Server.run(sockets=[...])`). With `reuse_port`, SO_REUSEPORT
    lets other processes bind the same address too (each must set it), and the kernel balances new
    connections across them."""
    family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                      flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(addr)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def serve(gateway: Gateway, fallback=None, *, host: str = "127.0.0.1", port: int = 8300, reuse_port: bool = False,
          **kwargs) -> None:
    """Serve until interrupted (blocking). With `reuse_port`, several processes may serve one port."""
    server = uvicorn.Server(uvicorn_config(gateway, fallback, host=host, port=port, **kwargs))
    if reuse_port:
        server.run(sockets=[listen_socket(host, port, reuse_port=True)])
    else:
        server.run()

