"""The exchange with a replica: what the timeout bounds, response headers, the response head's size
limit, clients that go away (499), and which view of the path routes (fast path and plain ASGI)."""

from __future__ import annotations

import json
import socket
import threading
import time

from cumulo.gateway import Endpoint

from .conftest import raw_exchange, wait_until


def raw_get(port: int, path: str) -> tuple[int, bytes]:
    out = raw_exchange(port, f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
    head, _, body = out.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


# -- the timeout bounds waits, not the upload ------------------------------------------------------

def test_a_slow_upload_longer_than_the_timeout_is_not_cut_off(replicas, start_gateway, client):
    (a,) = replicas(1)
    gw = start_gateway(routes={"m": [a.endpoint()]}, timeout=0.5)

    def chunks():
        for _ in range(6):  # 1.2 s in all, never a pause near 0.5 s
            yield b"x" * 1000
            time.sleep(0.2)

    r = client.post(f"{gw.url}/d/m/upload", content=chunks())
    assert r.status_code == 200, r.text
    assert r.json()["body_len"] == 6000
    assert gw.gateway.stats("m")["status_codes"] == {"200": 1}


def test_a_client_that_stalls_mid_body_gets_408(replicas, start_gateway):
    (a,) = replicas(1)
    gw = start_gateway(routes={"m": [a.endpoint()]}, timeout=0.5)
    head = b"POST /d/m/upload HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n"  # over the fast path's limit
    t0 = time.monotonic()
    out = raw_exchange(gw.port, head + b"x" * 1000, timeout=5)
    assert out.startswith(b"HTTP/1.1 408 "), out[:200]
    assert b"sent no part of the request body for 0.5 s" in out
    assert time.monotonic() - t0 < 4
    assert gw.gateway.stats("m")["status_codes"] == {"408": 1}


# -- response headers --------------------------------------------------------------------------------

def test_headers_named_in_the_responses_connection_header_are_dropped(replicas, start_gateway, client):
    (a,) = replicas(1)
    gw = start_gateway(routes={"m": [a.endpoint()]})
    direct = client.get(f"http://127.0.0.1:{a.port}/connection")
    assert direct.headers["x-hop"] == "secret"  # the replica does send it
    r = client.get(f"{gw.url}/d/m/connection")
    assert r.status_code == 200
    assert "x-hop" not in r.headers and r.headers["x-end"] == "kept"
    assert "x-hop" not in r.headers.get("connection", "")


def test_a_response_head_over_64_kib_is_502(replicas, start_gateway):
    (a,) = replicas(1)
    gw = start_gateway(routes={"m": [a.endpoint()]})
    status, body = raw_get(gw.port, "/d/m/bighead?kb=60")  # within the limit: passed on whole
    assert status == 200
    status, body = raw_get(gw.port, "/d/m/bighead?kb=70")
    assert status == 502
    problem = json.loads(body)
    assert "larger than the gateway's limit of 64 KiB" in problem["detail"], problem
    status, _ = raw_get(gw.port, "/d/m/x")  # the gateway is fine afterwards
    assert status == 200


class EndlessHead:
    """A 'replica' that answers every request with a response head that never ends."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.sent = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            try:
                conn.sendall(b"HTTP/1.1 200 OK\r\nx-endless: ")
                while self.sent < 10 * 1024 * 1024:
                    conn.sendall(b"a" * 4096)
                    self.sent += 4096
                    time.sleep(0.001)
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()


def test_a_response_head_that_never_ends_is_cut_at_the_limit(start_gateway):
    bad = EndlessHead()
    try:
        gw = start_gateway(routes={"m": [Endpoint("0", "127.0.0.1", bad.port)]}, timeout=30)
        t0 = time.monotonic()
        status, body = raw_get(gw.port, "/d/m/x")
        assert status == 502 and b"64 KiB" in body
        assert time.monotonic() - t0 < 10  # not the 30 s timeout
        assert bad.sent < 4 * 1024 * 1024  # the gateway stopped reading long before
    finally:
        bad.close()


# -- clients that go away ---------------------------------------------------------------------------

def test_a_client_that_leaves_while_waiting_is_499(replicas, start_gateway):
    reps = replicas(2)
    gw = start_gateway(routes={"m": [r.endpoint() for r in reps]})
    with socket.create_connection(("127.0.0.1", gw.port)) as s:
        s.sendall(b"GET /d/m/slow?s=1.5 HTTP/1.1\r\nHost: t\r\n\r\n")
        wait_until(lambda: gw.gateway.stats("m")["in_flight"] == 1, what="the request in flight")
    # closed: the gateway drops the exchange (no retry elsewhere) and counts 499, not the replica's 200
    wait_until(lambda: gw.gateway.stats("m")["in_flight"] == 0, timeout=1.2, what="the request ended")
    s = gw.gateway.stats("m")
    assert s["status_codes"] == {"499": 1} and s["errors_total"] == 0 and s["retries_total"] == 0


def test_a_client_that_leaves_mid_upload_is_499(replicas, start_gateway):
    (a,) = replicas(1)
    gw = start_gateway(routes={"m": [a.endpoint()]})
    with socket.create_connection(("127.0.0.1", gw.port)) as s:
        s.sendall(b"POST /d/m/upload HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
        wait_until(lambda: gw.gateway.stats("m")["in_flight"] == 1, what="the request in flight")
    wait_until(lambda: gw.gateway.stats("m")["in_flight"] == 0, what="the request ended")
    assert gw.gateway.stats("m")["status_codes"] == {"499": 1}


def test_a_client_that_leaves_mid_stream_is_499(replicas, start_gateway):
    (a,) = replicas(1)
    gw = start_gateway(routes={"m": [a.endpoint()]})
    with socket.create_connection(("127.0.0.1", gw.port)) as s:
        s.sendall(b"GET /d/m/stream?n=20&gap=0.1 HTTP/1.1\r\nHost: t\r\n\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.1 200 ")
    wait_until(lambda: gw.gateway.stats("m")["in_flight"] == 0, timeout=1.5, what="the request ended")
    assert gw.gateway.stats("m")["status_codes"] == {"499": 1}


# -- one view of the path ---------------------------------------------------------------------------

def test_an_encoded_prefix_routes_by_the_same_view_as_the_name(replicas, start_gateway):
    (a,) = replicas(1)
    gw = start_gateway(routes={"m": [a.endpoint()]})
    status, body = raw_get(gw.port, "/%64/m/x?q=1")  # %64 is "d"
    assert status == 200, body
    got = json.loads(body)
    assert got["path"] == "/x" and got["query"] == "q=1"
    assert json.loads(raw_get(gw.port, "/%64/m")[1])["path"] == "/"


def test_an_encoded_name_is_decoded_and_the_rest_passed_on_as_sent(replicas, start_gateway):
    (a,) = replicas(1)
    gw = start_gateway(routes={"m": [a.endpoint()], "a b": [a.endpoint()]})
    status, body = raw_get(gw.port, "/d/%6D/x")
    assert status == 200 and json.loads(body)["path"] == "/x"
    status, body = raw_get(gw.port, "/d/a%20b/p%2Fq/r")
    assert status == 200
    got = json.loads(body)
    assert got["raw_path"] == "/p%2Fq/r" and got["headers"]["x-forwarded-prefix"] == "/d/a b"


def test_an_encoded_slash_is_not_a_separator(replicas, start_gateway):
    (a,) = replicas(1)
    gw = start_gateway(routes={"m": [a.endpoint()]})
    status, body = raw_get(gw.port, "/d%2Fm/x")  # one segment "d/m": not under /d/
    assert status == 404 and json.loads(body)["title"] == "Not found"
    status, body = raw_get(gw.port, "/d/m%2Fx/y")  # the name "m/x": no such deployment
    assert status == 404 and json.loads(body)["title"] == "Unknown deployment" and "m/x" in body.decode()
    assert gw.gateway.stats("m")["arrivals_total"] == 0


def test_a_client_that_leaves_while_held_for_a_first_replica_is_499(replicas, start_gateway):
    (a,) = replicas(1)
    gw = start_gateway(hold_timeout=10)
    gw.gateway.update({"z": []}, hold=["z"])
    with socket.create_connection(("127.0.0.1", gw.port)) as s:
        s.sendall(b"GET /d/z/x HTTP/1.1\r\nHost: t\r\n\r\n")
        wait_until(lambda: gw.gateway.stats("z")["in_flight"] == 1, what="the held request")
    time.sleep(0.2)
    gw.gateway.update({"z": [a.endpoint()]}, hold=["z"])  # a replica is ready, but nobody is waiting
    wait_until(lambda: gw.gateway.stats("z")["in_flight"] == 0, what="the request ended")
    s = gw.gateway.stats("z")
    assert s["status_codes"] == {"499": 1} and s["queue_seconds"]["count"] == 1
