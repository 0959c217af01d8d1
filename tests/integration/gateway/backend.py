"""A replica for the gateway tests: a raw ASGI app on uvicorn, run as its own process.

    python -m tests.integration.gateway.backend PORT NAME
GET /any           -> "NAME METHOD PATH QUERY BODYLEN" plus the forwarded headers as JSON
GET /stream?n&gap  -> n chunks, one every `gap` seconds (server-sent events)
GET /slow?s        -> answers after s seconds
GET /status?code   -> that status
"""

import asyncio
import json
import sys
from urllib.parse import parse_qs

import uvicorn

NAME = "?"


async def app(scope, receive, send):
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
    status = int(q.get("code", 200)) if path == "/status" else 200
    headers = {k.decode(): v.decode() for k, v in scope["headers"]}
    out = json.dumps({"replica": NAME, "method": scope["method"], "path": path,
                      "query": scope["query_string"].decode(), "body_len": len(body), "headers": headers}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(out)).encode())]})
    await send({"type": "http.response.body", "body": out})


if __name__ == "__main__":
    NAME = sys.argv[2]
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
