"""Websockets under /d/<name>/ through the gateway to real uvicorn replicas (both server setups)."""

from __future__ import annotations

import json
import time

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from cumulo.gateway import Endpoint

from .conftest import free_port, wait_until


def ws_url(gw, path: str) -> str:
    return f"ws://127.0.0.1:{gw.port}{path}"


def test_echo_through_the_gateway(replicas, start_gateway):
    (a,) = replicas(1)
    gw = start_gateway(routes={"m": [a.endpoint()]})
    with connect(ws_url(gw, "/d/m/ws/echo?x=1"), additional_headers={"X-Custom": "yes"}) as ws:
        info = json.loads(ws.recv(timeout=5))
        assert info["replica"] == "r0" and info["path"] == "/ws/echo" and info["query"] == "x=1"
        h = info["headers"]
        assert h["x-custom"] == "yes" and h["x-forwarded-prefix"] == "/d/m" and h["x-forwarded-for"] == "127.0.0.1"
        assert ws.response.headers["set-cookie"] == "replica=r0"  # the replica's handshake headers reach the client
        ws.send("hello")
        assert ws.recv(timeout=5) == "hello"
        ws.send(b"\x00\x01binary")
        assert ws.recv(timeout=5) == b"\x00\x01binary"
        big = "z" * 300_000
        ws.send(big)
        assert ws.recv(timeout=5) == big
    s = gw.gateway.stats("m")
    assert s["status_codes"] == {"101": 1} and s["arrivals_total"] == 1


def test_subprotocol_is_negotiated_with_the_replica(replicas, start_gateway):
    (a,) = replicas(1)
    gw = start_gateway(routes={"m": [a.endpoint()]})
    with connect(ws_url(gw, "/d/m/ws/echo"), subprotocols=["v2.other", "chat"]) as ws:
        assert ws.subprotocol == "chat"
        assert json.loads(ws.recv(timeout=5))["subprotocols"] == ["v2.other", "chat"]
    with connect(ws_url(gw, "/d/m/ws/echo")) as ws:
        assert ws.subprotocol is None
        assert json.loads(ws.recv(timeout=5))["subprotocols"] == []


def test_close_codes_pass_both_ways(replicas, start_gateway, client):
    (a,) = replicas(1)
    gw = start_gateway(routes={"m": [a.endpoint()]})
    with connect(ws_url(gw, "/d/m/ws/echo")) as ws:  # the replica closes
        ws.recv(timeout=5)
        ws.send("close 4001 replica says bye")
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=5)
        assert info.value.rcvd.code == 4001 and info.value.rcvd.reason == "replica says bye"
    with connect(ws_url(gw, "/d/m/ws/echo")) as ws:  # the client closes
        ws.recv(timeout=5)
        ws.close(4002, "client says bye")
    last = wait_until(lambda: client.get(f"http://127.0.0.1:{a.port}/ws-last-close").json() or None,
                      what="the replica saw the close")
    assert last == {"code": 4002, "reason": "client says bye"}


def test_the_replica_going_away_closes_the_clients_websocket(replicas, start_gateway):
    (a,) = replicas(1)
    gw = start_gateway(routes={"m": [a.endpoint()]})
    with connect(ws_url(gw, "/d/m/ws/echo")) as ws:
        ws.recv(timeout=5)
        ws.send("ping")
        assert ws.recv(timeout=5) == "ping"
        a.kill9()
        t0 = time.monotonic()
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=10)
        assert time.monotonic() - t0 < 5
        assert info.value.rcvd.code == 1014 and "replica went away" in info.value.rcvd.reason


def test_refusals_reach_the_client_as_http_answers(replicas, start_gateway):
    (a,) = replicas(1)
    gw = start_gateway(routes={"m": [a.endpoint()], "down": [a.endpoint(False)]})
    cases = [("/d/nope/ws", 404, b"Unknown deployment"), ("/d/down/ws", 503, b"No ready replica"),
             ("/d/m/ws/deny", 403, b"nope")]  # the last: the replica's own refusal, passed on
    for path, status, text in cases:
        with pytest.raises(InvalidStatus) as info:
            connect(ws_url(gw, path), open_timeout=5)
        assert info.value.response.status_code == status, path
        assert text in info.value.response.body, info.value.response.body
    assert info.value.response.headers["x-why"] == "testing"
    assert gw.gateway.stats("down")["status_codes"] == {"503": 1}


def test_a_refused_connection_is_retried_on_another_replica(replicas, start_gateway):
    (a,) = replicas(1)
    dead = Endpoint("dead", "127.0.0.1", free_port())
    gw = start_gateway(routes={"m": [dead, a.endpoint()]}, seed=1)
    for _ in range(6):
        with connect(ws_url(gw, "/d/m/ws/echo"), open_timeout=5) as ws:
            assert json.loads(ws.recv(timeout=5))["replica"] == "r0"
    assert gw.gateway.stats("m")["retries_total"] >= 1
    gw.gateway.update({"m": [dead]})
    with pytest.raises(InvalidStatus) as info:
        connect(ws_url(gw, "/d/m/ws/echo"), open_timeout=5)
    assert info.value.response.status_code == 502
    assert b"Replicas unreachable" in info.value.response.body


def test_a_replica_shutting_down_closes_the_clients_websocket_with_its_code(replicas, start_gateway):
    (a,) = replicas(1)
    gw = start_gateway(routes={"m": [a.endpoint()]})
    with connect(ws_url(gw, "/d/m/ws/echo")) as ws:
        ws.recv(timeout=5)
        a.proc.terminate()  # SIGTERM: uvicorn closes its websockets with 1012 (service restart)
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=10)
        assert info.value.rcvd.code == 1012
    a.proc.wait(10)
