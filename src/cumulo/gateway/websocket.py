"""Websockets under /d/<name>/: the client's websocket (ASGI) relayed to one on a ready replica.

    upstream = await open_upstream(endpoint, target, subprotocols, headers, connect_timeout, timeout)
    await accept(send, upstream)         # the client gets the subprotocol the replica chose
    await relay(upstream, receive, send)

The replica's websocket is opened first (with the `websockets` client that uvicorn[standard]
brings) and the client's is accepted only once that succeeded, so a client sees the replica's
refusal as it was (its HTTP status and body) or the gateway's (404, 502, 503, 504 as problem+json),
through ASGI's websocket denial response where the server offers it (uvicorn does). Then messages
flow both ways as they come, and the side that closes first has its close code and reason passed on
to the other. A replica that goes away without a close frame (crash, kill -9, lost connection)
closes the client's websocket with 1014 (Bad Gateway, IANA's code for a proxy's upstream failure).
"""

from __future__ import annotations

import asyncio
import socket

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

__all__ = ["HandshakeFailed", "Refused", "Unreachable", "accept", "deny", "open_upstream", "relay",
           "relay_refusal", "request_headers"]

MAX_MESSAGE = 16 * 1024 * 1024  # a replica's message may be as large as uvicorn lets a client's be
BAD_GATEWAY = 1014
_UNSENDABLE = frozenset({1005, 1006, 1015})  # close codes that report, never travel in a close frame
# request headers that are hop-by-hop, belong to the handshake the client library makes itself, or
# that the gateway sets
_SKIP_REQ = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding",
                       b"upgrade", b"proxy-authorization", b"content-length", b"host", b"sec-websocket-key",
                       b"sec-websocket-version", b"sec-websocket-extensions", b"sec-websocket-protocol",
                       b"sec-websocket-accept", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-prefix"})
_SKIP_RESP = frozenset({"connection", "keep-alive", "transfer-encoding", "upgrade", "content-length", "date",
                        "server", "sec-websocket-accept", "sec-websocket-extensions", "sec-websocket-protocol"})


class Unreachable(Exception):
    """No connection to the replica (refused, unreachable, timed out): another replica may be tried."""


class Refused(Exception):
    """The replica answered the handshake with an HTTP status instead of 101."""

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        super().__init__(f"the replica answered {status}")
        self.status = status
        self.headers = headers
        self.body = body


class HandshakeFailed(Exception):
    """The replica accepted the connection but the handshake did not complete."""

    def __init__(self, message: str, *, timeout: bool = False) -> None:
        super().__init__(message)
        self.timeout = timeout


def request_headers(headers, client_ip: str | None, scheme: str, name: str) -> list[tuple[str, str]]:
    """The client's handshake headers to pass on (cookies, authorization, origin...) plus X-Forwarded-*."""
    out: list[tuple[str, str]] = []
    xff = None
    named: set[bytes] = set()
    for k, v in headers:
        if k == b"connection":
            named |= {t.strip().lower() for t in v.split(b",")}
        elif k == b"x-forwarded-for":
            xff = v.decode("latin-1")
        if k not in _SKIP_REQ:
            out.append((k.decode("latin-1"), v.decode("latin-1")))
    if named:
        out = [(k, v) for k, v in out if k.encode("latin-1") not in named]
    ip = client_ip or "unknown"
    out += [("x-forwarded-for", f"{xff}, {ip}" if xff else ip), ("x-forwarded-proto", scheme),
            ("x-forwarded-prefix", f"/d/{name}")]
    return out


async def open_upstream(endpoint, target: bytes, subprotocols, headers: list[tuple[str, str]],
                        connect_timeout: float, timeout: float) -> ClientConnection:
    """Connect to `endpoint` (bounded by `connect_timeout`) and make the websocket handshake for
    `target` (path and query, as the client sent them; bounded by `timeout`)."""
    loop = asyncio.get_running_loop()
    host, port = endpoint.host, endpoint.port
    try:
        async with asyncio.timeout(connect_timeout):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            family, kind, proto, _, addr = infos[0]
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                await loop.sock_connect(sock, addr)
            except BaseException:
                sock.close()
                raise
    except TimeoutError:
        raise Unreachable(f"connecting to {host}:{port} timed out") from None
    except OSError as exc:
        raise Unreachable(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        return await connect(
            f"ws://{netloc}{target.decode('latin-1')}", sock=sock, additional_headers=headers,
            user_agent_header=None, subprotocols=list(subprotocols) or None, compression=None, proxy=None,
            open_timeout=timeout, max_size=MAX_MESSAGE)
    except InvalidStatus as exc:
        r = exc.response
        raise Refused(r.status_code, [(k.encode("latin-1"), v.encode("latin-1")) for k, v in r.headers.raw_items()
                                      if k.lower() not in _SKIP_RESP], r.body or b"") from None
    except TimeoutError:
        sock.close()
        raise HandshakeFailed("the handshake timed out", timeout=True) from None
    except (InvalidHandshake, OSError, EOFError) as exc:
        sock.close()
        raise HandshakeFailed(str(exc) or type(exc).__name__) from None


async def accept(send, upstream: ClientConnection) -> None:
    """Accept the client's websocket with the replica's subprotocol and response headers (cookies...)."""
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in upstream.response.headers.raw_items()
               if k.lower() not in _SKIP_RESP]
    try:
        await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol, "headers": headers})
    except BaseException:
        await upstream.close(1001, "the client went away")
        raise


async def deny(scope, send, status: int, body: bytes, headers) -> int:
    """Refuse the client's handshake with an HTTP response, where the server supports sending one
    (else uvicorn answers 403)."""
    if "websocket.http.response" in (scope.get("extensions") or {}):
        await send({"type": "websocket.http.response.start", "status": status, "headers": list(headers)})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1013 if status == 503 else 1011})
    return status


async def relay_refusal(scope, send, exc: Refused) -> int:
    """Pass the replica's refusal of the handshake on to the client."""
    return await deny(scope, send, exc.status, exc.body, exc.headers)


async def relay(upstream: ClientConnection, receive, send) -> None:
    """Messages both ways until one side closes; its close code and reason go to the other side."""
    up = asyncio.create_task(_upstream_to_client(upstream, send))
    down = asyncio.create_task(_client_to_upstream(upstream, receive))
    try:
        await asyncio.wait((up, down), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (up, down):
            if not task.done():
                task.cancel()
        await asyncio.gather(up, down, return_exceptions=True)
        if upstream.state.name != "CLOSED":
            await upstream.close(1001, "the gateway closed the connection")


async def _client_to_upstream(upstream: ClientConnection, receive) -> None:
    while True:
        msg = await receive()
        kind = msg["type"]
        if kind == "websocket.receive":
            text = msg.get("text")
            try:
                await upstream.send(text if text is not None else msg.get("bytes") or b"")
            except ConnectionClosed:
                return  # the other task reports the replica's close
        elif kind == "websocket.disconnect":
            code = msg.get("code", 1000)
            if code in _UNSENDABLE:  # the client vanished, or closed without a code
                code = 1000 if code == 1005 else 1001
            await upstream.close(code, msg.get("reason") or "")
            return


async def _upstream_to_client(upstream: ClientConnection, send) -> None:
    try:
        while True:
            data = await upstream.recv()
            if isinstance(data, str):
                await send({"type": "websocket.send", "text": data})
            else:
                await send({"type": "websocket.send", "bytes": data})
    except ConnectionClosed as exc:
        rcvd = exc.rcvd
    except OSError:  # the client went away (uvicorn's ClientDisconnected): the other task sees it too
        await upstream.close(1001, "the client went away")
        return
    if rcvd is None:
        code, reason = BAD_GATEWAY, "the replica went away"
    else:
        code, reason = rcvd.code, rcvd.reason
        if code in _UNSENDABLE:
            code = 1000
    try:
        await send({"type": "websocket.close", "code": code, "reason": reason})
    except (OSError, RuntimeError):
        pass  # the client closed meanwhile
