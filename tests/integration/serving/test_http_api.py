"""Typed handlers over HTTP: request/response schemas in OpenAPI, 422s naming the field, errors."""

from __future__ import annotations

import httpx

SERVICE = '''
from typing import Annotated

from fastapi import HTTPException
from pydantic import BaseModel, Field

from cumulo.serving import Batch, Service, handler


class Prediction(BaseModel):
    digit: int
    probabilities: list[float]


class Point(BaseModel):
    x: float
    y: float


class Typed(Service):
    """A service with typed handlers."""

    @handler
    def predict(self, pixels: Annotated[list[float], Field(min_length=4, max_length=4)],
                temperature: float = 1.0) -> Prediction:
        """Classify four pixels."""
        return Prediction(digit=int(sum(pixels)) % 10, probabilities=[p / temperature for p in pixels])

    @handler
    async def norm(self, point: Point) -> float:
        return (point.x ** 2 + point.y ** 2) ** 0.5

    @handler(method="GET")
    def square(self, n: int) -> int:
        return n * n

    @handler(path="/custom/path")
    async def renamed(self) -> dict[str, str]:
        return {"ok": "yes"}

    @handler(batch=Batch(max_size=4, max_wait_ms=1))
    def lengths(self, text: list[str]) -> list[int]:
        return [len(t) for t in text]

    @handler
    def broken(self) -> int:
        raise ValueError("the model is on fire")

    @handler
    async def teapot(self) -> int:
        raise HTTPException(418, "short and stout")

    @handler
    def bad_output(self) -> Prediction:
        return {"digit": "not a number"}
'''


def test_typed_inputs_outputs_and_openapi(start_replica):
    r = start_replica(SERVICE, "Typed")
    with httpx.Client(base_url=r.url) as c:
        res = c.post("/predict", json={"pixels": [1, 2, 3, 4]})
        assert res.status_code == 200
        assert res.json() == {"digit": 0, "probabilities": [1.0, 2.0, 3.0, 4.0]}
        assert c.post("/predict", json={"pixels": [1, 2, 3, 4], "temperature": 2}).json()["probabilities"][0] == 0.5
        assert c.post("/norm", json={"x": 3, "y": 4}).json() == 5.0  # a single model parameter is the body
        assert c.get("/square", params={"n": 7}).json() == 49
        assert c.post("/custom/path").json() == {"ok": "yes"}
        assert c.post("/lengths", json={"text": "abc"}).json() == 3  # batched: one item per request
        # no content-type at all is taken as JSON too
        assert c.post("/norm", content=b'{"x": 0, "y": 1}').json() == 1.0

        spec = c.get("/openapi.json").json()
    assert spec["info"]["title"] == "Typed"
    paths = spec["paths"]
    assert set(paths) == {"/predict", "/norm", "/square", "/custom/path", "/lengths", "/broken", "/teapot",
                          "/bad_output"}  # built-ins stay out of the schema
    op = paths["/predict"]["post"]
    assert op["operationId"] == "predict"
    assert op["summary"] == "Classify four pixels."
    body_ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    body = spec["components"]["schemas"][body_ref]
    assert body["required"] == ["pixels"]
    assert body["properties"]["pixels"]["minItems"] == 4
    assert body["properties"]["temperature"]["default"] == 1.0
    out_ref = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert out_ref.endswith("/Prediction")
    assert set(spec["components"]["schemas"]["Prediction"]["properties"]) == {"digit", "probabilities"}
    assert paths["/lengths"]["post"]["x-cumulo-handler"]["batch"] == {"max_size": 4, "max_wait_ms": 1}
    # per item: the batched handler's schema is one string in, one integer out
    lengths_body = paths["/lengths"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert spec["components"]["schemas"][lengths_body.rsplit("/", 1)[1]]["properties"]["text"]["type"] == "string"
    assert paths["/lengths"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]["type"] == "integer"
    assert "get" in paths["/square"]


def test_mismatched_requests_get_422_naming_the_field(start_replica):
    r = start_replica(SERVICE, "Typed")
    with httpx.Client(base_url=r.url) as c:
        cases = [
            ({"pixels": [1, 2, 3]}, ("body", "pixels"), "too_short"),
            ({"pixels": "abcd"}, ("body", "pixels"), "list_type"),
            ({"pixels": [1, 2, 3, "x"]}, ("body", "pixels", 3), "float_parsing"),
            ({}, ("body", "pixels"), "missing"),
            ({"pixels": [1, 2, 3, 4], "temprature": 2}, ("body", "temprature"), "extra_forbidden"),
            ({"pixels": [1, 2, 3, 4], "temperature": "hot"}, ("body", "temperature"), "float_parsing"),
        ]
        for payload, loc, kind in cases:
            res = c.post("/predict", json=payload)
            assert res.status_code == 422, payload
            errors = res.json()["detail"]
            assert any(tuple(e["loc"]) == loc and e["type"] == kind for e in errors), (payload, errors)
        res = c.post("/predict", content=b'{"pixels": [1,', headers={"content-type": "application/json"})
        assert res.status_code == 422 and res.json()["detail"][0]["type"] == "json_invalid"
        res = c.get("/square", params={"n": "seven"})
        assert res.status_code == 422 and res.json()["detail"][0]["loc"] == ["query", "n"]
        res = c.post("/lengths", json={"text": 5})
        assert res.status_code == 422 and res.json()["detail"][0]["loc"] == ["body", "text"]
        metrics = c.get("/metrics").text
    assert 'cumulo_serving_requests_total{handler="predict",status="422"} 7.0' in metrics


def test_handler_errors_are_5xx_with_the_error_and_http_exceptions_pass_through(start_replica):
    r = start_replica(SERVICE, "Typed")
    with httpx.Client(base_url=r.url) as c:
        res = c.post("/broken")
        assert res.status_code == 500
        assert res.json() == {"detail": "ValueError: the model is on fire"}
        res = c.post("/teapot")
        assert res.status_code == 418 and res.json() == {"detail": "short and stout"}
        assert c.post("/bad_output").status_code == 500  # the output is checked against its type
        assert c.post("/predict", json={"pixels": [1, 2, 3, 4]}).status_code == 200  # still serving
        metrics = c.get("/metrics").text
    assert 'cumulo_serving_requests_total{handler="broken",status="500"} 1.0' in metrics
    assert 'cumulo_serving_requests_total{handler="teapot",status="418"} 1.0' in metrics
    assert "ValueError: the model is on fire" in r.stderr()  # the traceback is logged


def test_metrics_exposition(start_replica):
    r = start_replica(SERVICE, "Typed")
    with httpx.Client(base_url=r.url) as c:
        for _ in range(3):
            c.post("/predict", json={"pixels": [1, 2, 3, 4]})
        c.post("/broken")
        res = c.get("/metrics")
    assert res.status_code == 200
    assert res.headers["content-type"].startswith("text/plain")
    text = res.text
    assert 'cumulo_serving_requests_total{handler="predict",status="200"} 3.0' in text
    assert 'cumulo_serving_requests_total{handler="norm",status="200"} 0.0' in text  # every handler listed
    assert 'cumulo_serving_request_duration_seconds_count{handler="predict"} 3.0' in text
    assert 'cumulo_serving_request_duration_seconds_bucket{handler="predict",le="0.005"}' in text
    assert 'cumulo_serving_in_flight_requests{handler="predict"} 0.0' in text
    assert 'cumulo_serving_batch_size_count{handler="lengths"} 0.0' in text
    assert "cumulo_serving_ready 1.0" in text
    assert "# TYPE cumulo_serving_request_duration_seconds histogram" in text
