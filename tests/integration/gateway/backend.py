"""A replica for the gateway tests: a raw ASGI app on uvicorn, run as its own process.

    python -m tests.integration.gateway.backend PORT NAME
GET /any           -> "NAME METHOD PATH QUERY BODYLEN" plus the forwarded headers as JSON
GET /stream?n&gap  -> n chunks, one every `gap` seconds (server-sent events)
GET /slow?s        -> answers after s seconds
GET /status?code   -> that status
GET /bighead?kb    -> 200 with a response head of about `kb` KiB (one long header)
GET /connection    -> 200 with `Connection: x-hop` and the headers x-hop (hop-by-hop) and x-end
GET /ws-last-close -> the close code and reason of the last websocket the client side closed
WS  /ws/...        -> sends {"path", "query", "subprotocols", "headers"} first, then echoes every
                      message; "close CODE REASON" closes with that code; accepts subprotocol "chat"
                      when offered; /ws/deny refuses the handshake with 403 "nope"
"""

import asyncio
import json
import sys
from urllib.parse import parse_qs

import uvicorn

NAME = "?"
LAST_CLOSE: dict = {}


async def websocket(scope, receive, send):
    await receive()  # websocket.connect
    if scope["path"] == "/ws/deny":
        await send({"type": "websocket.http.response.start", "status": 403,
                    "headers": [(b"content-type", b"text/plain"), (b"x-why", b"testing")]})
        await send({"type": "websocket.http.response.body", "body": b"nope"})
        return
    offered = scope.get("subprotocols") or []
    await send({"type": "websocket.accept", "subprotocol": "chat" if "chat" in offered else None,
                "headers": [(b"set-cookie", b"replica=" + NAME.encode())]})
    info = {"replica": NAME, "path": scope["path"], "raw_path": scope["raw_path"].decode("latin-1"),
            "query": scope["query_string"].decode(), "subprotocols": offered,
            "headers": {k.decode(): v.decode() for k, v in scope["headers"]}}
    await send({"type": "websocket.send", "text": json.dumps(info)})
    while True:
        m = await receive()
        if m["type"] == "websocket.disconnect":
            LAST_CLOSE.update(code=m.get("code"), reason=m.get("reason") or "")
            return
        text = m.get("text")
        if text is not None and text.startswith("close "):
            _, code, reason = text.split(" ", 2)
            await send({"type": "websocket.close", "code": int(code), "reason": reason})
            return
        await send({"type": "websocket.send", "text": text} if text is not None
                   else {"type": "websocket.send", "bytes": m.get("bytes")})


async def app(scope, receive, send):
    if scope["type"] == "websocket":
        return await websocket(scope, receive, send)
    if scope["type"] != "http":
        return
    q = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    path = scope["path"]
    body = b""
    while True:
        m = await receive()
        body += m.get("body", b"")
        if not m.get("more_body"):
            break
    if path == "/stream":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        for i in range(int(q.get("n", 5))):
            await send({"type": "http.response.body", "body": f"data: {i}\n\n".encode(), "more_body": True})
            await asyncio.sleep(float(q.get("gap", 0.2)))
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/slow":
        await asyncio.sleep(float(q.get("s", 1)))
    if path in ("/bighead", "/connection", "/ws-last-close"):
        if path == "/bighead":
            extra = [(b"x-big", b"a" * (int(q["kb"]) * 1024))]
        elif path == "/connection":
            extra = [(b"connection", b"x-hop"), (b"x-hop", b"secret"), (b"x-end", b"kept")]
        else:
            extra = []
        out = json.dumps(LAST_CLOSE).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(out)).encode()), *extra]})
        await send({"type": "http.response.body", "body": out})
        return
    status = int(q.get("code", 200)) if path == "/status" else 200
    headers = {k.decode(): v.decode() for k, v in scope["headers"]}
    out = json.dumps({"replica": NAME, "method": scope["method"], "path": path,
                      "raw_path": scope["raw_path"].decode("latin-1"),
                      "query": scope["query_string"].decode(), "body_len": len(body), "headers": headers}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(out)).encode())]})
    await send({"type": "http.response.body", "body": out})


if __name__ == "__main__":
    NAME = sys.argv[2]
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
